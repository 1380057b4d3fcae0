package instance

import (
	"github.com/gpufleet/clearml-agent-go/agent/workerid"

	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestLockAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "hold", dir, "host:gpu0")
	h.wantLocked(t)

	_, err := Lock(dir, "host:gpu0")
	var are *AlreadyRunningError
	if !errors.As(err, &are) {
		t.Fatalf("second Lock: got %v, want AlreadyRunningError", err)
	}
	if are.PID != h.cmd.Process.Pid {
		t.Errorf("AlreadyRunningError.PID = %d, want the helper's %d", are.PID, h.cmd.Process.Pid)
	}
	for _, part := range []string{`worker id "host:gpu0" is already running`, "state dir " + dir, "clearml-agent daemon --stop host:gpu0", "CLEARML_WORKER_ID"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not mention %q", err, part)
		}
	}

	// A different id on the same host is fine, and gets the next slot.
	other, err := Lock(dir, "host:gpu1")
	if err != nil {
		t.Fatalf("Lock other id: %v", err)
	}
	if other.Slot != 1 {
		t.Errorf("second agent slot = %d, want 1", other.Slot)
	}
	running, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Running{
		{WorkerID: "host:gpu0", PID: h.cmd.Process.Pid, Slot: 0},
		{WorkerID: "host:gpu1", PID: os.Getpid(), Slot: 1},
	}
	if d := cmp.Diff(want, running, cmpopts.IgnoreFields(Running{}, "Started", "PIDFile", "LogFile")); d != "" {
		t.Errorf("List (-want +got):\n%s", d)
	}
	if err := other.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(other.PIDFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file %s still there after Close (err %v)", other.PIDFile, err)
	}

	// The holder exits cleanly: the id is free again.
	_ = h.stdin.Close()
	if err := h.wait(t); err != nil {
		t.Fatalf("helper: %v", err)
	}
	inst, err := Lock(dir, "host:gpu0")
	if err != nil {
		t.Fatalf("Lock after the holder exited: %v", err)
	}
	_ = inst.Close()
}

func TestCrashedAgentDoesNotBlockRestart(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "hold", dir, "host:gpu0")
	h.wantLocked(t)
	if err := h.cmd.Process.Kill(); err != nil { // no Close: pid and lock files stay
		t.Fatal(err)
	}
	_ = h.wait(t)
	if _, err := os.Stat(filepath.Join(dir, "host:gpu0.pid")); err != nil {
		t.Fatalf("the killed helper should have left its pid file: %v", err)
	}

	running, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(running) != 0 {
		t.Errorf("List = %+v, want nothing running", running)
	}
	for _, f := range []string{"host:gpu0.pid", "host:gpu0.lock"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale %s not pruned (stat err %v)", f, err)
		}
	}
	inst, err := Lock(dir, "host:gpu0")
	if err != nil {
		t.Fatalf("Lock after a crash: %v", err)
	}
	if inst.Slot != 0 {
		t.Errorf("slot = %d, want 0 (the dead agent's slot is free)", inst.Slot)
	}
	_ = inst.Close()
}

func TestStalePIDFile(t *testing.T) {
	dir := t.TempDir()
	// A pid file left by a crash with no lock file, and one with a free lock file.
	stale := Running{WorkerID: "host:0", PID: 999999, Slot: 0, Started: time.Now()}
	if err := writePIDFile(filepath.Join(dir, "host:0.pid"), stale); err != nil {
		t.Fatal(err)
	}
	stale.WorkerID, stale.Slot = "host:1", 1
	if err := writePIDFile(filepath.Join(dir, "host:1.pid"), stale); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "host:1.lock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	running, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(running) != 0 {
		t.Errorf("List = %+v, want none", running)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "host*"))
	if len(left) != 0 {
		t.Errorf("stale files left: %q", left)
	}
}

func TestListMissingDir(t *testing.T) {
	running, err := List(filepath.Join(t.TempDir(), "nope"))
	if err != nil || running != nil {
		t.Errorf("List(missing) = %v, %v; want nothing, no error", running, err)
	}
}

func TestSlotAllocation(t *testing.T) {
	dir := t.TempDir()
	opts := workerid.Options{Hostname: "host", Getenv: func(string) string { return "" }}

	h := startHelper(t, "hold", dir, "host:0") // another process holds slot 0
	h.wantLocked(t)

	a, err := Acquire(dir, opts, "")
	if err != nil {
		t.Fatal(err)
	}
	cpu := opts
	cpu.CPUOnly = true
	b, err := Acquire(dir, cpu, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Acquire(dir, opts, "")
	if err != nil {
		t.Fatal(err)
	}
	got := []string{a.WorkerID, b.WorkerID, c.WorkerID}
	if d := cmp.Diff([]string{"host:1", "host:cpu:2", "host:3"}, got); d != "" {
		t.Errorf("worker ids (-want +got):\n%s", d)
	}

	// Freed slots are reused, lowest first.
	_ = b.Close()
	_ = h.stdin.Close()
	_ = h.wait(t)
	d, err := Acquire(dir, cpu, "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := Acquire(dir, opts, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.WorkerID != "host:cpu:0" || e.WorkerID != "host:2" {
		t.Errorf("after freeing slots 0 and 2: got %q and %q, want host:cpu:0 and host:2", d.WorkerID, e.WorkerID)
	}
	for _, i := range []*Instance{a, c, d, e} {
		if err := i.Close(); err != nil {
			t.Error(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "host*"))
	if len(left) != 0 {
		t.Errorf("files left after every agent closed: %q", left)
	}
}

func TestPIDFileContents(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvDetachedLog, "/var/lib/clearml-agent/host:gpu0.log")
	inst, err := Lock(dir, "host:gpu0")
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	got, err := readPIDFile(filepath.Join(dir, "host:gpu0.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(inst.Running, got, cmpopts.EquateApproxTime(time.Second)); d != "" {
		t.Errorf("pid file (-want +got):\n%s", d)
	}
	if got.LogFile != "/var/lib/clearml-agent/host:gpu0.log" {
		t.Errorf("log_file = %q", got.LogFile)
	}
}
