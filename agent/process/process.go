package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LineSink receives every output line, in order, from a single goroutine.
type LineSink func(Line)

// Spec says what to run and how to treat its output.
type Spec struct {
	Path string   // executable; a bare name is looked up in PATH
	Args []string // arguments, without argv[0]
	Dir  string   // working directory; "" = the agent's
	Env  []string // full environment; nil = the agent's own environment

	// Sink receives the output lines; nil discards them.
	Sink LineSink
	// KeepCarriageReturn is the inverse of agent.suppress_carriage_return:
	// false (default) keeps only the last '\r' segment of a line (progress
	// bars), true turns every '\r' into a line break.
	KeepCarriageReturn bool
	// MaxLineBytes splits longer lines into chunks; 0 = DefaultMaxLineBytes.
	MaxLineBytes int
	// CancelGrace is the grace Terminate gets when ctx passed to Start is
	// cancelled; 0 = SIGKILL at once, as the reference agent aborts a task.
	CancelGrace time.Duration
	// PartialLineAfter, when > 0, delivers a line that has been incomplete
	// for that long (a progress bar without '\n') as it stands; the rest of
	// it then arrives as a new line. The reference agent does this on every
	// 5 s read. 0 = only complete lines (and the last one at EOF).
	PartialLineAfter time.Duration
	// OutputDrain bounds how long to wait, after the group was killed, for
	// output from processes that left the group but hold the pipe open;
	// 0 = 2 s.
	OutputDrain time.Duration
}

// Process is a started command running in its own process group.
type Process struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{} // the leader exited
	done   chan struct{}

	mu         sync.Mutex
	leaderGone bool // the leader exited: the group id may not be signalled any more
	terminated bool
	result     ExitResult
}

// Start runs spec in a new process group. When the command cannot be started
// it returns the error and also a Process that is already done, whose Wait
// reports NotStarted. Cancelling ctx terminates the group with
// spec.CancelGrace.
func Start(ctx context.Context, spec Spec) (*Process, error) {
	p := &Process{exited: make(chan struct{}), done: make(chan struct{})}
	fail := func(err error) (*Process, error) {
		p.result = ExitResult{Code: -1, NotStarted: true, StartErr: err}
		close(p.exited)
		close(p.done)
		return p, p.result
	}
	if spec.Path == "" {
		return fail(errors.New("process: empty Spec.Path; set it to the program to run"))
	}
	if err := ctx.Err(); err != nil {
		return fail(fmt.Errorf("process: %q not started: %w", spec.Path, err))
	}
	// One pipe for stdout and stderr, as the reference agent: the order of
	// the lines is exactly the order the task wrote them.
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("process: pipe for %q: %w", spec.Path, err))
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.Stdout = outW
	cmd.Stderr = outW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	outW.Close() // the child holds its own copy
	if err != nil {
		outR.Close()
		return fail(fmt.Errorf("process: start %q (dir %q): %w; check that the program exists and is executable", spec.Path, spec.Dir, err))
	}
	p.cmd = cmd
	p.pid = cmd.Process.Pid
	live.add(p.pid)

	lines := make(chan Line, 256)
	sp := newSplitter(spec.KeepCarriageReturn, spec.MaxLineBytes, func(l Line) { lines <- l })
	pr := &pipeReader{f: outR, sp: sp, partialAfter: spec.PartialLineAfter}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(lines)
		pr.run()
	}()
	sinkDone := make(chan struct{})
	go func() {
		defer close(sinkDone)
		for l := range lines {
			if spec.Sink != nil {
				spec.Sink(l)
			}
		}
	}()
	drain := spec.OutputDrain
	if drain <= 0 {
		drain = 2 * time.Second
	}
	go p.supervise(pr, readerDone, sinkDone, drain)
	go func() {
		select {
		case <-ctx.Done():
			p.Terminate(spec.CancelGrace)
		case <-p.done:
		}
	}()
	return p, nil
}

// pipeReader feeds one pipe into a splitter until EOF or stop.
type pipeReader struct {
	f            *os.File
	sp           *splitter
	partialAfter time.Duration

	mu       sync.Mutex // orders deadline changes between run and stop
	stopping bool
}

func (pr *pipeReader) run() {
	defer pr.f.Close()
	buf := make([]byte, 32<<10)
	for {
		if pr.partialAfter > 0 {
			pr.mu.Lock()
			if !pr.stopping {
				var d time.Time // none while no partial line waits
				if !pr.sp.since.IsZero() {
					d = pr.sp.since.Add(pr.partialAfter)
				}
				_ = pr.f.SetReadDeadline(d)
			}
			pr.mu.Unlock()
		}
		n, err := pr.f.Read(buf)
		if n > 0 {
			pr.sp.write(buf[:n])
		}
		if pr.partialAfter > 0 && !pr.sp.since.IsZero() && pr.sp.now().Sub(pr.sp.since) >= pr.partialAfter {
			pr.sp.flushPartial()
		}
		if err != nil {
			pr.mu.Lock()
			stopping := pr.stopping
			pr.mu.Unlock()
			if errors.Is(err, os.ErrDeadlineExceeded) && !stopping {
				continue
			}
			pr.sp.flush() // io.EOF, or stop
			return
		}
	}
}

// stop makes run return soon, keeping what was read.
func (pr *pipeReader) stop() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.stopping = true
	_ = pr.f.SetReadDeadline(time.Now())
}

// supervise waits for the leader to exit without reaping it, kills whatever
// is left in its group while the group id is still reserved, reaps the
// leader, then waits for the output to drain and closes done.
func (p *Process) supervise(pr *pipeReader, readerDone, sinkDone <-chan struct{}, drain time.Duration) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	p.mu.Lock()
	_ = signalGroup(p.pid, syscall.SIGKILL) // stragglers: the zombie leader keeps the pgid ours
	p.leaderGone = true
	p.mu.Unlock()
	close(p.exited)

	err := p.cmd.Wait()
	var res ExitResult
	if ps := p.cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			res = resultFromWaitStatus(ws)
		}
	} else {
		// Someone else reaped the leader; its status is unknown.
		res = ExitResult{Code: -1, StartErr: fmt.Errorf("process: wait for pid %d: %w", p.pid, err)}
	}

	// Processes that left the group (setsid) may still hold the pipe.
	select {
	case <-readerDone:
	case <-time.After(drain):
		pr.stop()
		<-readerDone
	}
	<-sinkDone

	p.mu.Lock()
	res.Terminated = p.terminated
	p.result = res
	p.mu.Unlock()
	live.remove(p.pid)
	close(p.done)
}

// live holds the process groups this process started that have not been
// reaped yet, so that an agent exiting at once can take them down with it.
var live = groups{m: map[int]struct{}{}}

type groups struct {
	mu sync.Mutex
	m  map[int]struct{}
}

func (g *groups) add(pgid int) {
	g.mu.Lock()
	g.m[pgid] = struct{}{}
	g.mu.Unlock()
}

func (g *groups) remove(pgid int) {
	g.mu.Lock()
	delete(g.m, pgid)
	g.mu.Unlock()
}

// KillAll sends SIGKILL to every process group started by Start that has not
// been reaped yet. The agent calls it before exiting at once (the third
// signal), so no task outlives it.
func KillAll() {
	live.mu.Lock()
	defer live.mu.Unlock()
	for pgid := range live.m {
		_ = signalGroup(pgid, syscall.SIGKILL)
	}
}

// Track adds a process group that this process started by other means (the
// daemon's `execute` children, the tasks they report) to the ones KillAll
// takes down; call the returned function once the group is gone.
func Track(pgid int) (untrack func()) {
	if pgid <= 1 {
		return func() {}
	}
	live.add(pgid)
	return func() { live.remove(pgid) }
}

// signalGroup signals every process in group pgid; ESRCH (gone) is not an error.
func signalGroup(pgid int, sig syscall.Signal) error {
	err := syscall.Kill(-pgid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// Pid returns the leader's process id (= the process group id), 0 when the
// command never started.
func (p *Process) Pid() int { return p.pid }

// Done is closed once the leader was reaped, the group was killed and every
// output line was handed to the sink.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until Done and returns how the process ended.
func (p *Process) Wait() ExitResult {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.result
}

// Terminate sends SIGTERM to the whole group, waits up to grace for the
// leader to exit, then sends SIGKILL to the group. grace <= 0 sends SIGKILL
// at once. It returns when the signals were sent, not when the process is
// gone (use Wait). A process that already exited is not an error.
func (p *Process) Terminate(grace time.Duration) error {
	if p.pid == 0 {
		return nil
	}
	if grace > 0 {
		if err := p.signal(syscall.SIGTERM); err != nil {
			return err
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.exited:
			return nil
		case <-t.C:
		}
	}
	return p.signal(syscall.SIGKILL)
}

// Signal sends sig to the whole process group (e.g. SIGINT).
func (p *Process) Signal(sig syscall.Signal) error {
	if p.pid == 0 {
		return nil
	}
	return p.signal(sig)
}

func (p *Process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leaderGone {
		return nil
	}
	if sig == syscall.SIGTERM || sig == syscall.SIGKILL {
		p.terminated = true
	}
	if err := signalGroup(p.pid, sig); err != nil {
		return fmt.Errorf("process: %s to group %d: %w", signalName(sig), p.pid, err)
	}
	return nil
}
