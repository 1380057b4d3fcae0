package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/metrics"
	"github.com/gpufleet/clearml-agent-go/agent/worker"
)

// logRecorder is a slog handler that keeps the messages of the records.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }
func (l *logRecorder) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// The gate holds every pop while it says no: STATUS= says why, the log
// says it once, the daemon stays healthy, and it takes the task once the
// gate opens.
func TestGateHoldsPops(t *testing.T) {
	f := newFixture(t)
	f.cfg.Queues = []string{"default"}
	logs := &logRecorder{}
	f.cfg.Logger = slog.New(logs)
	clock := newFakeClock()
	f.cfg.Clock = clock.now
	m := metrics.New()
	f.cfg.Metrics = m
	id := f.bashTask(t, "default", "gated", "echo ran\n")
	const busy = "GPU 0 busy: pid 4242 (python train.py) 10240 MiB, not this agent's; waiting (agent.gpu_busy_policy=wait)"
	var open atomic.Bool
	var calls atomic.Int32
	var d atomicDaemon
	var unhealthy atomic.Int32
	f.cfg.Gate = func(context.Context) (bool, string) {
		if dd := d.Load(); dd != nil && !dd.Healthy() {
			unhealthy.Add(1)
		}
		// More than the watchdog's limit passes between two passes: a
		// gated daemon is still healthy because the loop goes round.
		clock.add(70 * time.Second)
		calls.Add(1)
		if open.Load() {
			return true, ""
		}
		return false, busy
	}
	daemon, wait := f.start(t, t.Context())
	d.Store(daemon)
	f.emu.ResetRequests()
	eventually(t, "STATUS= naming the busy GPU", func() bool { return f.notify.has("STATUS=" + busy) })
	eventually(t, "a few gated passes", func() bool { return calls.Load() >= 5 })
	if n := f.emu.Requests()["queues.get_next_task"]; n != 0 {
		t.Errorf("%d queues.get_next_task calls while gated, want none", n)
	}
	if got := f.emu.Task(id).Status; got != api.StatusQueued {
		t.Errorf("task %s while gated, want queued", got)
	}
	if n := unhealthy.Load(); n != 0 {
		t.Errorf("the gated daemon was unhealthy %d times", n)
	}
	if n := logs.count("taking no task"); n != 1 {
		t.Errorf("logged the gate %d times, want once per change", n)
	}
	if got := m.Values()[`clearml_agent_state{state="not_ready"}`]; got != "1" {
		t.Errorf("state not_ready = %s while gated, want 1", got)
	}
	open.Store(true)
	f.waitStatus(t, id, api.StatusCompleted)
	eventually(t, "STATUS=idle after the gate opened", func() bool {
		l := f.notify.list()
		return l[len(l)-1] == "STATUS=idle, polling default"
	})
	if n := logs.count("taking tasks again"); n != 1 {
		t.Errorf("logged the reopening %d times, want 1", n)
	}
	got := m.Values()
	if got[`clearml_agent_tasks_total{outcome="completed"}`] != "1" || got[`clearml_agent_state{state="idle"}`] != "1" {
		t.Errorf("metrics after the task: completed=%s idle=%s", got[`clearml_agent_tasks_total{outcome="completed"}`], got[`clearml_agent_state{state="idle"}`])
	}
	daemon.Drain()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// A termination notice aborts the running task with the preemption as its
// reason, puts it back on the queue it came from with a line in its log,
// unregisters the worker and ends Run without an error.
func TestPreemptRequeuesRunningTask(t *testing.T) {
	f := newFixture(t)
	f.cfg.Queues = []string{"high", "low"}
	f.emu.CreateQueue("high")
	m := metrics.New()
	f.cfg.Metrics = m
	id := f.bashTask(t, "low", "long", "trap 'echo term; exit 1' TERM\necho started\nwhile true; do sleep 0.05; done\n")
	other := f.bashTask(t, "low", "next", "echo next\n")
	d, wait := f.start(t, t.Context())
	eventually(t, "the task to start", func() bool { return f.logHas(id, "started") })
	d.Preempt("instance preempted (gce)", "instance preempted (gce)")
	d.Preempt("again", "again") // ignored
	if err := wait(); err != nil {
		t.Fatalf("Run after the notice = %v, want nil", err)
	}
	got := f.emu.Task(id)
	if got.Status != api.StatusQueued || got.StatusReason != "instance preempted (gce)" {
		t.Errorf("preempted task %s (%q), want queued with the preemption as reason", got.Status, got.StatusReason)
	}
	low, _ := f.emu.Queue("low")
	var entries []string
	for _, e := range low.Entries {
		entries = append(entries, e.Task)
	}
	if want := fmt.Sprint([]string{other, id}); fmt.Sprint(entries) != want {
		t.Errorf("queue low = %v, want %s (the preempted task back at its end)", entries, want)
	}
	for _, s := range []string{"term", "clearml-agent: instance preempted (gce): stopping the task and putting it back on queue low",
		"clearml-agent: task put back on queue low (instance preempted (gce))"} {
		if !f.logHas(id, s) {
			t.Errorf("task log lacks %q", s)
		}
	}
	if st := f.emu.Task(other).Status; st != api.StatusQueued {
		t.Errorf("the next task %s, want still queued (none taken after the notice)", st)
	}
	if len(f.emu.Workers()) != 0 {
		t.Errorf("worker still registered: %+v", f.emu.Workers())
	}
	if !f.notify.has("STATUS=preempted: instance preempted (gce)") {
		t.Errorf("notifications %q: want the preemption in STATUS=", f.notify.list())
	}
	s := m.Values()
	if s[`clearml_agent_tasks_total{outcome="preempted"}`] != "1" || s[`clearml_agent_state{state="preempted"}`] != "1" {
		t.Errorf("metrics: preempted tasks %s, state preempted %s; want 1 and 1", s[`clearml_agent_tasks_total{outcome="preempted"}`], s[`clearml_agent_state{state="preempted"}`])
	}
}

type atomicDaemon = atomic.Pointer[worker.Daemon]
