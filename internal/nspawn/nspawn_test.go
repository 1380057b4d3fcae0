package nspawn

import (
	"os"
	"testing"
)

func TestChildNamed(t *testing.T) {
	// This test process is a child of its parent, under its own comm.
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skip("no /proc")
	}
	name := string(comm[:len(comm)-1])
	if got := childNamed(os.Getppid(), name); got != os.Getpid() {
		t.Errorf("childNamed(ppid, %q) = %d, want %d", name, got, os.Getpid())
	}
	if got := childNamed(os.Getppid(), "no-such-comm"); got != 0 {
		t.Errorf("childNamed(ppid, no-such-comm) = %d, want 0", got)
	}
}

func TestTail(t *testing.T) {
	if got := tail("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("tail = %q", got)
	}
}
