package instance

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }
func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "trap", dir, "host:gpu0") // ignores every SIGTERM
	h.wantLocked(t)

	var log logLines
	if err := Stop(t.Context(), dir, "host:gpu0", 300*time.Millisecond, log.add); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := h.next(t); got != "SIGTERM 1" {
		t.Errorf("helper saw %q, want SIGTERM 1", got)
	}
	if got := h.next(t); got != "SIGTERM 2" {
		t.Errorf("helper saw %q, want SIGTERM 2", got)
	}
	err := h.wait(t)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("helper exit = %v, want killed by SIGKILL", err)
	}
	for _, want := range []string{"drain", "second SIGTERM", "SIGKILL", "stopped"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("Stop log does not mention %q:\n%s", want, log.String())
		}
	}
	if running, _ := List(dir); len(running) != 0 {
		t.Errorf("after Stop, List = %+v, want none", running)
	}
}

func TestStopDrainsOnFirstSIGTERM(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "trap", dir, "host:cpu:0", envExitOn+"=1")
	h.wantLocked(t)

	var log logLines
	// Empty selector: the only running agent.
	if err := Stop(t.Context(), dir, "", time.Minute, log.add); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := h.wait(t); err != nil {
		t.Errorf("helper exit = %v, want a clean exit after the first SIGTERM", err)
	}
	if strings.Contains(log.String(), "second SIGTERM") {
		t.Errorf("Stop escalated although the agent drained:\n%s", log.String())
	}
}

func TestStopSecondSIGTERMAborts(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "trap", dir, "host:gpu1", envExitOn+"=2")
	h.wantLocked(t)
	var log logLines
	if err := Stop(t.Context(), dir, "host:gpu1", 200*time.Millisecond, log.add); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := h.wait(t); err != nil {
		t.Errorf("helper exit = %v, want a clean exit after the second SIGTERM", err)
	}
	if strings.Contains(log.String(), "SIGKILL") {
		t.Errorf("Stop sent SIGKILL although the agent exited on the second SIGTERM:\n%s", log.String())
	}
}

func TestStopSelection(t *testing.T) {
	dir := t.TempDir()
	a := startHelper(t, "hold", dir, "host:gpu0")
	a.wantLocked(t)
	b := startHelper(t, "hold", dir, "host:gpu1")
	b.wantLocked(t)

	err := Stop(t.Context(), dir, "", time.Second, nil)
	if err == nil || !strings.Contains(err.Error(), "host:gpu0, host:gpu1") || !strings.Contains(err.Error(), "--stop") {
		t.Errorf("Stop with two agents and no id: got %v, want a refusal listing both", err)
	}
	err = Stop(t.Context(), dir, "host:gpu7", time.Second, nil)
	want := `no running clearml-agent with worker id "host:gpu7" under ` + dir + ` (running: host:gpu0, host:gpu1)`
	if err == nil || err.Error() != want {
		t.Errorf("Stop unknown id:\n got %v\nwant %s", err, want)
	}
	// Neither agent was signalled.
	if got, _ := List(dir); len(got) != 2 {
		t.Errorf("List after refused stops = %+v, want both still running", got)
	}

	empty := filepath.Join(t.TempDir(), "empty")
	if err := Stop(t.Context(), empty, "", time.Second, nil); err == nil || !strings.Contains(err.Error(), "no running clearml-agent") {
		t.Errorf("Stop with nothing running: got %v", err)
	}
}

func TestStopHonoursContext(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "trap", dir, "host:gpu0")
	h.wantLocked(t)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-h.lines; cancel() }() // cancel once the first SIGTERM arrived
	err := Stop(ctx, dir, "host:gpu0", time.Hour, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Stop = %v, want context.Canceled", err)
	}
}
