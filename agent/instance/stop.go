package instance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// killWait is how long Stop waits for the process to vanish after SIGKILL.
const killWait = 5 * time.Second

// Stop stops the running agent chosen by selector: an exact worker id, or ""
// for the only agent running in stateDir (with several it refuses and lists
// them rather than guessing). It follows the agent's signal contract: SIGTERM
// (drain: finish the current task, take no new one), wait up to grace, SIGTERM
// again (abort the task), wait up to grace, then SIGKILL. log, if not nil,
// receives one line per step.
func Stop(ctx context.Context, stateDir, selector string, grace time.Duration, log func(string)) error {
	if log == nil {
		log = func(string) {}
	}
	running, err := List(stateDir)
	if err != nil {
		return err
	}
	ids := make([]string, len(running))
	for i, r := range running {
		ids[i] = r.WorkerID
	}
	var target *Running
	switch {
	case selector != "":
		for i := range running {
			if running[i].WorkerID == selector {
				target = &running[i]
			}
		}
		if target == nil {
			return fmt.Errorf("no running clearml-agent with worker id %q under %s (running: %s)",
				selector, stateDir, listOrNone(ids))
		}
	case len(running) == 0:
		return fmt.Errorf("no running clearml-agent under %s; pass the state dir it uses with %s", stateDir, EnvStateDir)
	case len(running) > 1:
		return fmt.Errorf("%d clearml-agents are running under %s (%s); say which one, e.g. 'clearml-agent daemon --stop %s'",
			len(running), stateDir, strings.Join(ids, ", "), ids[0])
	default:
		target = &running[0]
	}
	if target.PID <= 0 || target.PID == os.Getpid() {
		return fmt.Errorf("clearml-agent %q has no usable pid (%d) in %s; stop it through its service manager",
			target.WorkerID, target.PID, target.PIDFile)
	}

	pid, id := target.PID, target.WorkerID
	start := startTime(pid)
	gone := func() bool { return processGone(pid, start) }
	wait := func(d time.Duration) (bool, error) {
		t := time.NewTimer(d)
		defer t.Stop()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if gone() {
				return true, nil
			}
			select {
			case <-ctx.Done():
				return false, fmt.Errorf("stopping clearml-agent %q (pid %d): %w", id, pid, ctx.Err())
			case <-t.C:
				return gone(), nil
			case <-tick.C:
			}
		}
	}
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
		msg  string
	}{
		{syscall.SIGTERM, grace, "sent SIGTERM (drain: finish the current task, then exit)"},
		{syscall.SIGTERM, grace, "sent a second SIGTERM (abort the running task)"},
		{syscall.SIGKILL, killWait, "sent SIGKILL"},
	}
	for _, s := range steps {
		if err := syscall.Kill(pid, s.sig); err != nil {
			if errors.Is(err, syscall.ESRCH) {
				break
			}
			return fmt.Errorf("signal clearml-agent %q (pid %d): %w; run as the user that started it", id, pid, err)
		}
		log(fmt.Sprintf("%s to clearml-agent %s (pid %d); waiting up to %s", s.msg, id, pid, s.wait))
		done, err := wait(s.wait)
		if err != nil {
			return err
		}
		if done {
			break
		}
	}
	if !gone() {
		return fmt.Errorf("clearml-agent %q (pid %d) is still running after SIGKILL; check 'ps -o stat -p %d' for a process stuck in the kernel",
			id, pid, pid)
	}
	log(fmt.Sprintf("clearml-agent %s (pid %d) stopped", id, pid))
	_, _ = List(stateDir) // remove its files if it could not
	return nil
}

func listOrNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// startTime is field 22 of /proc/<pid>/stat, used to tell a reused pid apart.
func startTime(pid int) string {
	_, start, ok := procStat(pid)
	if !ok {
		return ""
	}
	return start
}

// processGone reports whether pid has exited (or is a zombie, or was reused).
func processGone(pid int, start string) bool {
	state, st, ok := procStat(pid)
	if !ok {
		return syscall.Kill(pid, 0) == syscall.ESRCH
	}
	return state == "Z" || state == "X" || (start != "" && st != start)
}

func procStat(pid int) (state, start string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", "", false
	}
	// The command name in field 2 may hold spaces; the fields after ")" do not.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", "", false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", "", false
	}
	return f[0], f[19], true // fields 3 and 22
}
