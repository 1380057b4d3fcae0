package systemd

import (
	"strings"
	"testing"
	"time"
)

func TestWaitError(t *testing.T) {
	states := []UnitState{
		{Name: "a.service", LoadState: "loaded", ActiveState: "active", SubState: "running", StatusText: "hello"},
		{Name: "b.service", LoadState: "loaded", ActiveState: "failed", SubState: "failed", Result: "timeout",
			Journal: "line one\nline two\n"},
		{Name: "c.service", LoadState: "loaded", ActiveState: "activating", SubState: "start"},
	}
	err := waitError(states, 3*time.Second)
	if err == nil {
		t.Fatal("waitError = nil, want an error for b and c")
	}
	msg := err.Error()
	first, rest, _ := strings.Cut(msg, "\n")
	for _, want := range []string{"b.service failed/failed result timeout", "c.service activating/start (still activating after 3s)"} {
		if !strings.Contains(first, want) {
			t.Errorf("first line %q lacks %q", first, want)
		}
	}
	if strings.Contains(first, "a.service") {
		t.Errorf("first line names the active unit: %q", first)
	}
	if !strings.Contains(rest, "last journal lines of b.service:\n    line one\n    line two") {
		t.Errorf("journal lines missing from error:\n%s", msg)
	}
	if err := waitError(states[:1], time.Second); err != nil {
		t.Errorf("waitError(all active) = %v", err)
	}
}
