package instance

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDetach(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	logPath := LogPath(dir, "host:gpu0")
	env := append(os.Environ(), envHelper+"=detached", envID+"=host:gpu0", "GORACE=atexit_sleep_ms=0")
	args := []string{"-test.run=^$", "daemon", "--detached", "--queue", "default", "-d"}

	pid, err := Detach(logPath, args, env)
	if err != nil {
		t.Fatalf("Detach: %v", err)
	}
	running, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(running) != 1 || running[0].PID != pid || running[0].WorkerID != "host:gpu0" || running[0].LogFile != logPath {
		t.Fatalf("List = %+v, want host:gpu0 with pid %d and log %s", running, pid, logPath)
	}
	sid, _, _ := procSID(pid)
	if sid != pid {
		t.Errorf("detached child session id = %d, want its own session (%d)", sid, pid)
	}

	if err := Stop(t.Context(), dir, "", 10*time.Second, nil); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	want := `agent host:gpu0 running in the background, args ["-test.run=^$" "daemon" "--queue" "default"], log ` + logPath
	if !strings.Contains(string(b), want) {
		t.Errorf("log %s:\n%s\nwant a line %q", logPath, b, want)
	}
}

func TestDetachReportsEarlyExit(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "host:gpu0.log")
	if err := os.WriteFile(logPath, []byte("output of an earlier run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), envHelper+"=fail", "GORACE=atexit_sleep_ms=0")
	_, err := Detach(logPath, []string{"-test.run=^$", "daemon", "--detached"}, env)
	if err == nil {
		t.Fatal("Detach of a failing agent: got no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "boom: clearml.conf: api.host is not set") || !strings.Contains(msg, "exit status 2") {
		t.Errorf("error %q should carry the child's exit status and last log lines", msg)
	}
	if strings.Contains(msg, "earlier run") {
		t.Errorf("error %q quotes output of an earlier run", msg)
	}
}

// procSID is field 6 of /proc/<pid>/stat.
func procSID(pid int) (int, string, bool) {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return 0, "", false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 4 {
		return 0, "", false
	}
	sid, _ := strconv.Atoi(f[3])
	return sid, f[0], true
}
