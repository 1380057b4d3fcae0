package instance

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Environment markers set by Detach for the background process.
const (
	// EnvDetached is "1" in a process started by Detach.
	EnvDetached = "CLEARML_AGENT_DETACHED"
	// EnvDetachedLog is the log file a detached agent writes to; LockSlot
	// records it in the pid file.
	EnvDetachedLog = "CLEARML_AGENT_DETACHED_LOG"
)

// detachWait bounds how long Detach waits for the child's pid file.
const detachWait = 10 * time.Second

// IsDetachedChild reports whether this process was started by Detach (so it
// must not detach again).
func IsDetachedChild() bool { return os.Getenv(EnvDetached) == "1" }

// LogPath is the log file of a detached agent: <stateDir>/<worker id>.log.
func LogPath(stateDir, workerID string) string {
	return filepath.Join(stateDir, escapeID(workerID)+".log")
}

// Detach starts this binary again in the background: the same args without
// --detached (and without -d after "daemon"), env (nil means os.Environ())
// plus EnvDetached, EnvDetachedLog and CLEARML_AGENT_STATE_DIR, in a new
// session, cwd kept, stdin from /dev/null, stdout and stderr appended to
// logPath. The state directory is the directory of logPath. It returns the
// child's pid once the child has written its pid file there; if the child
// exits first, the error carries the end of its log.
func Detach(logPath string, args []string, env []string) (pid int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find the clearml-agent binary to run in the background: %w", err)
	}
	stateDir := filepath.Dir(logPath)
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return 0, fmt.Errorf("create agent state dir for the detached log %s: %w; set %s", logPath, err, EnvStateDir)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return 0, fmt.Errorf("open detached log %s: %w; set %s to a writable directory", logPath, err, EnvStateDir)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	offset, _ := logf.Seek(0, io.SeekEnd)

	if env == nil {
		env = os.Environ()
	}
	cmd := exec.Command(exe, StripDetached(args)...)
	cmd.Env = append(slices.Clone(env), EnvDetached+"=1", EnvDetachedLog+"="+logPath, EnvStateDir+"="+stateDir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s in the background: %w", exe, err)
	}
	pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap it if it dies while we watch

	deadline := time.NewTimer(detachWait)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		if hasPIDFile(stateDir, pid) {
			return pid, nil
		}
		select {
		case werr := <-exited:
			if hasPIDFile(stateDir, pid) { // it started, then stopped already
				return pid, nil
			}
			return 0, fmt.Errorf("the background clearml-agent (pid %d) exited (%v) before it started; end of %s:\n%s",
				pid, werr, logPath, logTail(logPath, offset))
		case <-deadline.C:
			return pid, fmt.Errorf("the background clearml-agent (pid %d) wrote no pid file under %s within %s; "+
				"it may still be starting, see %s", pid, stateDir, detachWait, logPath)
		case <-tick.C:
		}
	}
}

// StripDetached removes --detached / --detached=<v> anywhere, and the short
// -d after the "daemon" word (before it, -d means --debug).
func StripDetached(args []string) []string {
	out := make([]string, 0, len(args))
	inDaemon := false
	for _, a := range args {
		switch {
		case a == "daemon":
			inDaemon = true
		case a == "--detached", strings.HasPrefix(a, "--detached="):
			continue
		case a == "-d" && inDaemon:
			continue
		}
		out = append(out, a)
	}
	return out
}

func hasPIDFile(stateDir string, pid int) bool {
	files, _ := filepath.Glob(filepath.Join(stateDir, "*.pid"))
	for _, f := range files {
		if r, err := readPIDFile(f); err == nil && r.PID == pid {
			return true
		}
	}
	return false
}

// logTail returns the last lines the child wrote (from offset on), at most 2 KiB.
func logTail(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return "(log unreadable)"
	}
	b = b[offset:]
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	b = bytes.TrimRight(b, "\n")
	if len(b) == 0 {
		return "(no output)"
	}
	return string(b)
}
