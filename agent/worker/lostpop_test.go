package worker_test

import (
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// The server carries out a pop and the connection drops before its answer:
// the task is queued in no queue. After the window the daemon puts it back,
// runs it, and the task log says why. A task another agent popped and
// started within the window is left alone.
func TestLostPopPutBack(t *testing.T) {
	f := newFixture(t)
	const window = 400 * time.Millisecond
	f.cfg.Queues = []string{"q"}
	f.cfg.LostPopAfter = window
	other := f.bashTask(t, "q", "other", "echo other\n")
	lost := f.bashTask(t, "q", "lost", "echo ran after all\n")
	q, _ := f.emu.Queue("q")
	// Another agent pops the first task; it starts it only after the
	// daemon's first look.
	if _, err := f.emu.Call("queues.get_next_task", map[string]any{"queue": q.ID}); err != nil {
		t.Fatal(err)
	}
	f.emu.DropAnswers("queues.get_next_task", 1)
	start := time.Now()
	_, _ = f.start(t, t.Context())

	eventually(t, "the daemon's first look", func() bool { return f.emu.Requests()["tasks.get_all"] >= 1 })
	if got := f.emu.Task(lost).Status; got != api.StatusQueued {
		t.Fatalf("lost task %s before the window, want queued", got)
	}
	if q, _ := f.emu.Queue("q"); len(q.Entries) != 0 {
		t.Fatalf("queue entries before the window: %v, want none (popped)", q.Entries)
	}
	if _, err := f.emu.Call("tasks.started", map[string]any{"task": other, "force": true}); err != nil {
		t.Fatal(err)
	}

	f.waitStatus(t, lost, api.StatusCompleted)
	if took := time.Since(start); took < window {
		t.Errorf("lost task put back after %s, want not before the %s window", took, window)
	}
	if !f.logHas(lost, "put back on queue q") || !f.logHas(lost, "the answer to queues.get_next_task was lost") {
		t.Errorf("log of the lost task: %+v, want the line saying why it was put back", f.emu.TaskLog(lost))
	}
	if !f.logHas(lost, "ran after all") {
		t.Error("the lost task did not run")
	}
	if got := f.emu.Task(other).Status; got != api.StatusInProgress || f.logHas(other, "put back") {
		t.Errorf("task started by another agent: status %s, log %+v; want in_progress, not put back", got, f.emu.TaskLog(other))
	}
	if n := f.emu.Requests()["tasks.get_all"]; n < 2 {
		t.Errorf("tasks.get_all calls = %d, want the two looks", n)
	}
	// One burst, two looks: no more looks while polls succeed.
	n := f.emu.Requests()["queues.get_all"]
	time.Sleep(3 * window)
	if m := f.emu.Requests()["queues.get_all"]; m != n {
		t.Errorf("queues.get_all calls went from %d to %d after the burst was handled, want no more looks", n, m)
	}
}
