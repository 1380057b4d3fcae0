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

func (s *supervisor) loop(c Child, sock string) {
	backoff := s.opts.MinBackoff
	for {
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
			*s.watches[c.Name] = watch{last: started}
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

// readNotify prints READY/STATUS/STOPPING messages of one child.
func (s *supervisor) readNotify(name string, conn *net.UnixConn) {
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return
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
