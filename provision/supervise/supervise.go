package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/instance"
)

// Child is one supervised agent.
type Child struct {
	Name string   // shown in every line, e.g. "gpu0"
	Argv []string // Argv[0] is the program
	Env  []string // the complete environment, KEY=VALUE; NOTIFY_SOCKET is added
	Dir  string   // working directory; "" is the supervisor's
	// Watchdog, when positive, is passed as WATCHDOG_USEC like systemd's
	// WatchdogSec=: once the child has sent WATCHDOG=1, a silence longer
	// than Watchdog gets its process group SIGKILLed and it is restarted.
	// A child that never sends WATCHDOG=1 is never killed for silence.
	Watchdog time.Duration
	// StateDir is the agent's state directory (agent/instance); "" is the
	// last CLEARML_AGENT_STATE_DIR in Env. Before each start, and after the
	// child was killed for good, the task process groups a dead run of the
	// agent recorded there and left running are ended (the restarted agent
	// then marks their tasks failed).
	StateDir string
}

// stateDir is c.StateDir or the CLEARML_AGENT_STATE_DIR of its environment.
func (c Child) stateDir() string {
	if c.StateDir != "" {
		return c.StateDir
	}
	d := ""
	for _, kv := range c.Env {
		if v, ok := strings.CutPrefix(kv, instance.EnvStateDir+"="); ok {
			d = v
		}
	}
	return d
}

// Options configure Run. Zero durations get the defaults.
type Options struct {
	Children []Child
	// Out receives one line per state change (default os.Stdout); child
	// stdout/stderr go to Stdout/Stderr (default os.Stdout/os.Stderr).
	Out, Stdout, Stderr io.Writer
	MinBackoff          time.Duration // first restart delay, default 1s
	MaxBackoff          time.Duration // cap, default 1m
	// ResetAfter: a child that ran at least this long restarts after
	// MinBackoff again (default 30s).
	ResetAfter time.Duration
}

// ErrKilled is returned when a third signal made Run SIGKILL the children.
var ErrKilled = errors.New("supervise: third signal, children killed")

type supervisor struct {
	opts    Options
	outMu   sync.Mutex
	stop    chan struct{}
	stopped bool
	mu      sync.Mutex // guards procs, stopped and every watch
	procs   map[string]*os.Process
	watches map[string]*watch
}

// watch is one child's watchdog state; supervisor.mu guards it.
type watch struct {
	pinged   bool      // WATCHDOG=1 seen since the current start
	last     time.Time // last WATCHDOG=1 (or the start)
	timedOut bool      // the watchdog killed the current process

	pid     int          // the running agent's pid, 0 between runs
	past    map[int]bool // pids of earlier runs: their late messages are dropped quietly
	foreign bool         // a message from another process was logged
}

func (s *supervisor) printf(name, format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(s.opts.Out, "%s %s: %s\n", time.Now().Format("15:04:05"), name, fmt.Sprintf(format, args...))
}

// Run starts every child and supervises them until all have exited for good
// (exit 0, or stopped after a signal), ctx ends (children are killed), or a
// third signal arrives on signals.
func Run(ctx context.Context, opts Options, signals <-chan os.Signal) error {
	if len(opts.Children) == 0 {
		return errors.New("supervise: no agents to run; give e.g. --gpus 0 or --cpu-agents 1")
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(time.Minute, opts.MinBackoff)
	}
	if opts.ResetAfter <= 0 {
		opts.ResetAfter = 30 * time.Second
	}
	seen := map[string]bool{}
	for _, c := range opts.Children {
		if c.Name == "" || seen[c.Name] || len(c.Argv) == 0 {
			return fmt.Errorf("supervise: child %q: needs a unique name and a program", c.Name)
		}
		seen[c.Name] = true
	}
	sockDir, err := os.MkdirTemp("", "agent-provision-run-")
	if err != nil {
		return fmt.Errorf("supervise: notify socket directory: %v; set TMPDIR to a writable directory", err)
	}
	defer os.RemoveAll(sockDir)

	s := &supervisor{opts: opts, stop: make(chan struct{}), procs: map[string]*os.Process{}, watches: map[string]*watch{}}
	for _, c := range opts.Children {
		s.watches[c.Name] = &watch{}
	}
	var wg sync.WaitGroup
	for i, c := range opts.Children {
		sock := filepath.Join(sockDir, fmt.Sprintf("%d.sock", i))
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err != nil {
			s.halt(syscall.SIGKILL)
			wg.Wait()
			return fmt.Errorf("supervise: %s: notify socket: %v", c.Name, err)
		}
		defer conn.Close()
		if err := passCred(conn); err != nil {
			s.halt(syscall.SIGKILL)
			wg.Wait()
			return fmt.Errorf("supervise: %s: notify socket: SO_PASSCRED: %v", c.Name, err)
		}
		go s.readNotify(c.Name, conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.loop(c, sock)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	n := 0
	for {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			s.halt(syscall.SIGKILL)
			<-done
			s.endOrphans()
			return ctx.Err()
		case sig := <-signals:
			n++
			switch n {
			case 1:
				s.printf("supervisor", "got %v: draining (SIGTERM to every agent; send again to abort running tasks, a third time to kill)", sig)
				s.halt(syscall.SIGTERM)
			case 2:
				s.printf("supervisor", "got %v again: aborting running tasks (SIGTERM again)", sig)
				s.halt(syscall.SIGTERM)
			default:
				s.printf("supervisor", "got %v a third time: killing every agent", sig)
				s.halt(syscall.SIGKILL)
				<-done
				s.endOrphans()
				return ErrKilled
			}
		}
	}
}

// halt stops restarts and sends sig to every running child.
func (s *supervisor) halt(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		close(s.stop)
	}
	for _, p := range s.procs {
		_ = p.Signal(sig)
	}
}

// endOrphans ends the task process groups that the (dead) agents recorded
// and left running, in every child's state directory.
func (s *supervisor) endOrphans() {
	for _, c := range s.opts.Children {
		s.endOrphansOf(c)
	}
}

func (s *supervisor) endOrphansOf(c Child) {
	dir := c.stateDir()
	if dir == "" {
		return
	}
	if _, err := instance.EndOrphans(dir, func(m string) { s.printf(c.Name, "%s", m) }); err != nil {
		s.printf(c.Name, "could not end the task processes its last run left: %v", err)
	}
}

func (s *supervisor) loop(c Child, sock string) {
	backoff := s.opts.MinBackoff
	for {
		// Task processes of a run that died (watchdog, SIGKILL, crash)
		// would keep their GPUs while the new run takes work.
		s.endOrphansOf(c)
		cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
		cmd.Env = append(withoutNotify(c.Env), "NOTIFY_SOCKET="+sock)
		if c.Watchdog > 0 {
			cmd.Env = append(cmd.Env, fmt.Sprintf("WATCHDOG_USEC=%d", c.Watchdog.Microseconds()))
		}
		cmd.Dir = c.Dir
		cmd.WaitDelay = 10 * time.Second
		cmd.Stdout, cmd.Stderr = s.opts.Stdout, s.opts.Stderr
		// Own process group: a terminal's Ctrl-C reaches only the
		// supervisor, which forwards it per the drain contract.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return
		}
		err := cmd.Start()
		started := time.Now()
		if err == nil {
			s.procs[c.Name] = cmd.Process
			w := s.watches[c.Name]
			*w = watch{last: started, pid: cmd.Process.Pid, past: w.past, foreign: w.foreign}
		}
		s.mu.Unlock()
		if err != nil {
			s.printf(c.Name, "failed to start %s: %v", c.Argv[0], err)
		} else {
			s.printf(c.Name, "started, pid %d", cmd.Process.Pid)
			exited := make(chan struct{})
			if c.Watchdog > 0 {
				go s.watchdog(c, cmd.Process, exited)
			}
			err = cmd.Wait()
			close(exited)
			s.mu.Lock()
			delete(s.procs, c.Name)
			if w := s.watches[c.Name]; w.pid != 0 {
				if w.past == nil {
					w.past = map[int]bool{}
				}
				w.past[w.pid], w.pid = true, 0
			}
			stopped := s.stopped
			timedOut := s.watches[c.Name].timedOut
			s.mu.Unlock()
			if timedOut && err != nil {
				err = errors.New("watchdog timeout, " + exitText(err))
			}
			switch {
			case stopped:
				s.printf(c.Name, "stopped (%s)", exitText(err))
				return
			case err == nil:
				s.printf(c.Name, "exited with status 0; not restarting (like Restart=on-failure)")
				return
			}
			if time.Since(started) >= s.opts.ResetAfter {
				backoff = s.opts.MinBackoff
			}
		}
		s.printf(c.Name, "%s; restarting in %s", exitText(err), backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.stop:
			t.Stop()
			return
		}
		backoff = min(backoff*2, s.opts.MaxBackoff)
	}
}

// watchdog SIGKILLs p's process group when the child, having sent WATCHDOG=1
// at least once, stays silent longer than c.Watchdog (systemd's
// WatchdogSec= with WatchdogSignal=SIGKILL). It returns when exited closes.
func (s *supervisor) watchdog(c Child, p *os.Process, exited <-chan struct{}) {
	t := time.NewTicker(max(c.Watchdog/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-exited:
			return
		case now := <-t.C:
			s.mu.Lock()
			w := s.watches[c.Name]
			late := w.pinged && !w.timedOut && now.Sub(w.last) > c.Watchdog
			if late {
				w.timedOut = true
			}
			silent := now.Sub(w.last).Round(time.Millisecond)
			s.mu.Unlock()
			if late {
				s.printf(c.Name, "watchdog timeout: no WATCHDOG=1 for %s (limit %s); killing pid %d", silent, c.Watchdog, p.Pid)
				// The child leads its own process group (Setpgid).
				if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
					_ = p.Kill()
				}
			}
		}
	}
}

func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exited with status %d", ee.ExitCode())
	}
	if err == nil {
		return "exited with status 0"
	}
	return err.Error()
}

// passCred turns on SO_PASSCRED, so that every message carries its
// sender's pid.
func passCred(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	return serr
}

// senderPID is the pid in the SCM_CREDENTIALS of oob, 0 if none.
func senderPID(oob []byte) int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for i := range msgs {
		if cred, err := syscall.ParseUnixCredentials(&msgs[i]); err == nil {
			return int(cred.Pid)
		}
	}
	return 0
}

// fromAgent reports whether a message from pid is the running agent's (like
// systemd's NotifyAccess=main): a task, or any other process that found the
// socket, must not report READY or feed the watchdog for the agent. The
// first foreign message of each child is logged; late messages of an earlier
// run of the agent are dropped quietly.
func (s *supervisor) fromAgent(name string, pid int) bool {
	s.mu.Lock()
	w := s.watches[name]
	if w == nil || (pid != 0 && pid == w.pid) {
		s.mu.Unlock()
		return w != nil
	}
	log := !w.past[pid] && !w.foreign
	if log {
		w.foreign = true
	}
	agent := w.pid
	s.mu.Unlock()
	if log {
		s.printf(name, "ignoring notify messages from pid %d: only the agent (pid %d) may send them (logged once)", pid, agent)
	}
	return false
}

// readNotify prints READY/STATUS/STOPPING messages of one child and feeds
// its watchdog; messages from any process but the agent are ignored.
func (s *supervisor) readNotify(name string, conn *net.UnixConn) {
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(syscall.SizeofUcred))
	for {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		if !s.fromAgent(name, senderPID(oob[:oobn])) {
			continue
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "WATCHDOG":
				if v == "1" {
					s.mu.Lock()
					if w := s.watches[name]; w != nil {
						w.pinged, w.last = true, time.Now()
					}
					s.mu.Unlock()
				}
			case "READY":
				if v == "1" {
					s.printf(name, "ready")
				}
			case "STATUS":
				s.printf(name, "status %q", v)
			case "STOPPING":
				if v == "1" {
					s.printf(name, "stopping")
				}
			case "RELOADING":
				if v == "1" {
					s.printf(name, "reloading")
				}
			}
		}
	}
}

func withoutNotify(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, "NOTIFY_SOCKET=") && !strings.HasPrefix(e, "WATCHDOG_USEC=") && !strings.HasPrefix(e, "WATCHDOG_PID=") {
			out = append(out, e)
		}
	}
	return out
}
