package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// agentProc is one started agent command.
type agentProc struct {
	cmd     *exec.Cmd
	started time.Time
	logPath string
	done    chan struct{}
	err     error
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commandLine fills the {agent} and {conf} placeholders of the template.
func commandLine(tmpl, agentBin, conf string) string {
	return strings.NewReplacer("{agent}", shellQuote(agentBin), "{conf}", shellQuote(conf)).Replace(tmpl)
}

// startAgent runs the agent command line through /bin/sh with exec, so the
// pid we sample is the agent's own, in a process group of its own.
func (h *harness) startAgent(name string, extraEnv ...string) (*agentProc, error) {
	return h.startAgentCmd(name, h.cfg.AgentCmd, extraEnv...)
}

// startAgentCmd is startAgent with another command template.
func (h *harness) startAgentCmd(name, tmpl string, extraEnv ...string) (*agentProc, error) {
	line := commandLine(tmpl, h.cfg.AgentBin, h.conf)
	logPath := filepath.Join(h.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/bin/sh", "-c", "exec "+line)
	cmd.Env = append(os.Environ(),
		"NOTIFY_SOCKET="+h.notify.path,
		"CLEARML_AGENT_STATE_DIR="+filepath.Join(h.dir, "state"),
		"CLEARML_WORKER_ID="+h.workerID,
		"CLEARML_CONFIG_FILE="+h.conf,
	)
	// Drop systemd's markers so the agent logs like a foreground process.
	cmd.Env = append(cmd.Env, "INVOCATION_ID=", "JOURNAL_STREAM=")
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &agentProc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %q: %w", line, err)
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	h.logf("started %s (pid %d): %s", name, cmd.Process.Pid, line)
	return p, nil
}

func (p *agentProc) pid() int { return p.cmd.Process.Pid }

func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM (the agent drains: idle, it exits), then a second
// SIGTERM, then SIGKILL to the whole group.
func (p *agentProc) stop(ctx context.Context) error {
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGTERM, 15 * time.Second}, {syscall.SIGTERM, 10 * time.Second}, {syscall.SIGKILL, 5 * time.Second}}
	for _, s := range steps {
		if p.exited() {
			break
		}
		if s.sig == syscall.SIGKILL {
			_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		} else {
			_ = p.cmd.Process.Signal(s.sig)
		}
		select {
		case <-p.done:
		case <-time.After(s.wait):
		case <-ctx.Done():
			_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
			<-p.done
			return ctx.Err()
		}
	}
	// Sweep task processes left in the group, if any.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		return p.err
	}
	return nil
}

// tail returns the last n lines of the agent's log, for error messages.
func (p *agentProc) tail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
