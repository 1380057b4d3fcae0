package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/task"
	"github.com/gpufleet/clearml-agent-go/agent/worker"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

const workerID = "testhost:cpu:0"

// notifier records the service manager notifications.
type notifier struct {
	mu     sync.Mutex
	events []string // "READY", "STATUS=...", "STOPPING"
}

func (n *notifier) add(s string) error {
	n.mu.Lock()
	n.events = append(n.events, s)
	n.mu.Unlock()
	return nil
}
func (n *notifier) Ready() error           { return n.add("READY") }
func (n *notifier) Status(s string) error  { return n.add("STATUS=" + s) }
func (n *notifier) Stopping() error        { return n.add("STOPPING") }
func (n *notifier) list() []string         { n.mu.Lock(); defer n.mu.Unlock(); return slices.Clone(n.events) }
func (n *notifier) has(prefix string) bool { return n.index(prefix) >= 0 }
func (n *notifier) index(prefix string) int {
	return slices.IndexFunc(n.list(), func(s string) bool { return strings.HasPrefix(s, prefix) })
}

// recordingClient is the real client; it records the status reports sent.
type recordingClient struct {
	*api.Client
	mu      sync.Mutex
	reports []api.StatusReport
}

func (c *recordingClient) ReportStatus(ctx context.Context, r api.StatusReport) error {
	c.mu.Lock()
	c.reports = append(c.reports, r)
	c.mu.Unlock()
	return c.Client.ReportStatus(ctx, r)
}

func (c *recordingClient) sent() []api.StatusReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reports)
}

// orderRunner runs tasks with the real task runner and records their order;
// before is called with each task id before it runs.
type orderRunner struct {
	r      *task.Runner
	mu     sync.Mutex
	order  []string
	before func(id string)
}

func (o *orderRunner) Run(ctx context.Context, id string, opt task.Options) (task.Outcome, error) {
	o.mu.Lock()
	o.order = append(o.order, id)
	o.mu.Unlock()
	if o.before != nil {
		o.before(id)
	}
	return o.r.Run(ctx, id, opt)
}

func (o *orderRunner) ran() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.order)
}

type fixture struct {
	emu    *emulator.Server
	c      *recordingClient
	runner *orderRunner
	notify *notifier
	cfg    worker.Config
}

func newClient(t *testing.T, url, secret string) *api.Client {
	t.Helper()
	c, err := api.New(api.Config{Host: url, AccessKey: "AK", SecretKey: secret, WorkerHeader: workerID,
		RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 50 * time.Millisecond, MaxRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	emu := emulator.New(emulator.Options{Credentials: map[string]string{"AK": "SK"}})
	srv := httptest.NewServer(emu.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(func() { emu.Close() })
	c := &recordingClient{Client: newClient(t, srv.URL, "SK")}
	base := t.TempDir()
	tr := task.NewRunner(c, task.Settings{WorkerID: workerID, VenvsDir: filepath.Join(base, "venvs"),
		AbortGrace: 2 * time.Second, StatusPoll: 100 * time.Millisecond, PingInterval: -1})
	f := &fixture{emu: emu, c: c, runner: &orderRunner{r: tr}, notify: &notifier{}}
	f.cfg = worker.Config{WorkerID: workerID, PollInterval: 50 * time.Millisecond, ReportInterval: time.Hour,
		Runner: f.runner, Notify: f.notify, Logger: slog.New(slog.DiscardHandler)}
	return f
}

// bashTask creates a task running script with bash (no venv, fast) and
// enqueues it on queue.
func (f *fixture) bashTask(t *testing.T, queue, name, script string) string {
	t.Helper()
	id := f.emu.CreateTask(api.Task{Name: name, Script: &api.Script{EntryPoint: "run.sh", Binary: "bash", Diff: script}})
	if queue != "" {
		if err := f.emu.Enqueue(id, f.emu.CreateQueue(queue)); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// start runs the daemon in the background; the returned function waits for
// Run's error.
func (f *fixture) start(t *testing.T, ctx context.Context) (*worker.Daemon, func() error) {
	t.Helper()
	d := worker.New(f.c, f.cfg)
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()
	var once sync.Once
	var err error
	wait := func() error {
		once.Do(func() {
			select {
			case err = <-errc:
			case <-time.After(2 * time.Minute):
				err = errors.New("daemon did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { d.Drain(); _ = wait() })
	return d, wait
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) waitStatus(t *testing.T, id string, statuses ...string) {
	t.Helper()
	eventually(t, "task "+id+" to reach "+strings.Join(statuses, "/"), func() bool {
		return slices.Contains(statuses, f.emu.Task(id).Status)
	})
}

func (f *fixture) logHas(id, s string) bool {
	for _, e := range f.emu.TaskLog(id) {
		if strings.Contains(e.Msg, s) {
			return true
		}
	}
	return false
}

func TestPriorityOrder(t *testing.T) {
	f := newFixture(t)
	f.cfg.Queues = []string{"high", "low"}
	f.emu.CreateQueue("high")
	l1 := f.bashTask(t, "low", "l1", "echo l1\n")
	l2 := f.bashTask(t, "low", "l2", "echo l2\n")
	h1 := f.bashTask(t, "high", "h1", "echo h1\n")
	h2 := f.bashTask(t, "", "h2", "echo h2\n")
	// while l1 runs, h2 arrives on the high queue: it must run before l2
	f.runner.before = func(id string) {
		if id == l1 {
			if err := f.emu.Enqueue(h2, f.emu.CreateQueue("high")); err != nil {
				t.Error(err)
			}
		}
	}
	d, wait := f.start(t, t.Context())
	for _, id := range []string{l1, l2, h1, h2} {
		f.waitStatus(t, id, api.StatusCompleted)
	}
	d.Drain()
	if err := wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if diff := cmp.Diff([]string{h1, l1, h2, l2}, f.runner.ran()); diff != "" {
		t.Errorf("run order (-want +got):\n%s", diff)
	}
	if len(f.emu.Workers()) != 0 {
		t.Errorf("worker still registered after drain: %+v", f.emu.Workers())
	}
	ev := f.notify.list()
	if i, j := f.notify.index("READY"), f.notify.index("STOPPING"); i < 0 || j < i {
		t.Errorf("want READY then STOPPING, got %q", ev)
	}
	if !f.notify.has("STATUS=idle, polling high, low") {
		t.Errorf("no idle STATUS in %q", ev)
	}
	if !f.notify.has("STATUS=running task " + h1 + " (h1)") {
		t.Errorf("no running-task STATUS for %s in %q", h1, ev)
	}
}

func TestOrderFairness(t *testing.T) {
	f := newFixture(t)
	f.cfg.Queues = []string{"a", "b"}
	f.cfg.OrderFairness = true
	a1 := f.bashTask(t, "a", "a1", "echo a1\n")
	a2 := f.bashTask(t, "a", "a2", "echo a2\n")
	b1 := f.bashTask(t, "b", "b1", "echo b1\n")
	b2 := f.bashTask(t, "b", "b2", "echo b2\n")
	d, wait := f.start(t, t.Context())
	for _, id := range []string{a1, a2, b1, b2} {
		f.waitStatus(t, id, api.StatusCompleted)
	}
	d.Drain()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{a1, b1, a2, b2}, f.runner.ran()); diff != "" {
		t.Errorf("round robin order (-want +got):\n%s", diff)
	}
}

func TestQueueResolution(t *testing.T) {
	f := newFixture(t)
	gpu := f.emu.CreateQueue("GPU-Queue")
	f.emu.CreateQueue("other")
	dflt := f.emu.CreateQueue("default")

	t.Run("unknown queue lists the existing ones", func(t *testing.T) {
		cfg := f.cfg
		cfg.Queues = []string{"nope"}
		err := worker.New(f.c, cfg).Run(t.Context())
		if !errors.Is(err, worker.ErrFatal) {
			t.Fatalf("Run = %v, want ErrFatal", err)
		}
		for _, s := range []string{`"nope"`, "GPU-Queue, default, other", "--create-queue"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not contain %q", err, s)
			}
		}
		if len(f.emu.Workers()) != 0 {
			t.Errorf("a worker was registered: %+v", f.emu.Workers())
		}
	})

	resolve := func(t *testing.T, cfg worker.Config) []worker.Queue {
		t.Helper()
		d := worker.New(f.c, cfg)
		d.Drain() // resolve, register, then stop at once
		if err := d.Run(t.Context()); err != nil {
			t.Fatalf("Run: %v", err)
		}
		return d.Queues()
	}
	t.Run("case-insensitive name, id, default", func(t *testing.T) {
		cfg := f.cfg
		cfg.Queues = []string{"gpu-queue", dflt}
		want := []worker.Queue{{ID: gpu, Name: "GPU-Queue"}, {ID: dflt, Name: "default"}}
		if diff := cmp.Diff(want, resolve(t, cfg)); diff != "" {
			t.Errorf("queues (-want +got):\n%s", diff)
		}
		cfg.Queues = nil
		if diff := cmp.Diff(want[1:], resolve(t, cfg)); diff != "" {
			t.Errorf("no --queue: (-want +got):\n%s", diff)
		}
	})
	t.Run("create-queue", func(t *testing.T) {
		cfg := f.cfg
		cfg.Queues = []string{"brand-new"}
		cfg.CreateQueue = true
		got := resolve(t, cfg)
		q, ok := f.emu.Queue("brand-new")
		if !ok {
			t.Fatal("queue brand-new was not created")
		}
		if diff := cmp.Diff([]worker.Queue{{ID: q.ID, Name: "brand-new"}}, got); diff != "" {
			t.Errorf("queues (-want +got):\n%s", diff)
		}
	})
}

func TestDrainFinishesRunningTask(t *testing.T) {
	f := newFixture(t)
	f.cfg.Queues = []string{"default"}
	first := f.bashTask(t, "default", "first", "echo started\nsleep 1\necho finished\n")
	second := f.bashTask(t, "default", "second", "echo second\n")
	d, wait := f.start(t, t.Context())
	eventually(t, "the first task to start", func() bool { return len(f.runner.ran()) == 1 })
	d.Drain()
	if err := wait(); err != nil {
		t.Fatalf("Run after drain = %v, want nil", err)
	}
	if got := f.emu.Task(first); got.Status != api.StatusCompleted {
		t.Errorf("running task %s after drain, want completed", got.Status)
	}
	if !f.logHas(first, "finished") {
		t.Error("the running task did not finish")
	}
	if got := f.emu.Task(second); got.Status != api.StatusQueued {
		t.Errorf("second task %s, want still queued (no new task while draining)", got.Status)
	}
	if len(f.emu.Workers()) != 0 {
		t.Errorf("worker still registered: %+v", f.emu.Workers())
	}
	if !f.notify.has("STATUS=draining") || !f.notify.has("STOPPING") {
		t.Errorf("notifications %q: want draining STATUS and STOPPING", f.notify.list())
	}
}

func TestAbortStopsRunningTask(t *testing.T) {
	f := newFixture(t)
	f.cfg.Queues = []string{"default"}
	id := f.bashTask(t, "default", "long", "echo started\nwhile true; do sleep 0.05; done\n")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, wait := f.start(t, ctx)
	eventually(t, "the task to start", func() bool { return f.logHas(id, "started") })
	cancel()
	if err := wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	got := f.emu.Task(id)
	if got.Status != api.StatusStopped || !strings.Contains(got.StatusReason, "aborted by clearml-agent") {
		t.Errorf("task %s (%q), want stopped by the agent", got.Status, got.StatusReason)
	}
	if len(f.emu.Workers()) != 0 {
		t.Errorf("worker still registered: %+v", f.emu.Workers())
	}
}

func TestServicesMode(t *testing.T) {
	f := newFixture(t)
	f.cfg.Queues = []string{"services"}
	f.cfg.Services = true
	f.cfg.ServicesMax = 2
	// Each pass of the main loop counts the running services first: a
	// pass is the event that proves the loop went round without polling.
	passes := make(chan struct{}, 1000)
	f.cfg.ServiceCount = func(context.Context) (int, error) {
		select {
		case passes <- struct{}{}:
		default:
		}
		return 0, nil // no services but this process's own
	}
	release := filepath.Join(t.TempDir(), "release")
	script := "echo up\nwhile [ ! -e " + release + " ]; do sleep 0.05; done\necho down\n"
	ids := []string{f.bashTask(t, "services", "s1", script), f.bashTask(t, "services", "s2", script),
		f.bashTask(t, "services", "s3", script)}
	d, wait := f.start(t, t.Context())
	// two run at once
	eventually(t, "two services up", func() bool { return f.logHas(ids[0], "up") && f.logHas(ids[1], "up") })
	// the third waits for a free slot while the daemon keeps going
	eventually(t, "the cap STATUS", func() bool { return f.notify.has("STATUS=services mode: 2 of 2 services running") })
	// each running service shows on the server as its own worker
	serviceWorkers := func() []string {
		var out []string
		for _, w := range f.emu.Workers() {
			if strings.Contains(w.ID, ":service:") {
				out = append(out, w.ID)
			}
		}
		return out
	}
	eventually(t, "two service workers", func() bool { return len(serviceWorkers()) == 2 })
	for _, id := range ids[:2] {
		if !slices.Contains(serviceWorkers(), f.cfg.WorkerID+":service:"+id) {
			t.Errorf("service workers %v lack %s", serviceWorkers(), f.cfg.WorkerID+":service:"+id)
		}
	}
	before := f.emu.Requests()["queues.get_next_task"]
	for len(passes) > 0 { // passes counted before before
		<-passes
	}
	for range 3 { // the loop goes round at the cap: the first pass began after before, the next ones after it ended
		select {
		case <-passes:
		case <-time.After(time.Minute):
			t.Fatal("the main loop does not go round at the cap")
		}
	}
	if got := f.emu.Task(ids[2]); got.Status != api.StatusQueued {
		t.Errorf("third service %s, want queued while 2 of 2 run", got.Status)
	}
	if after := f.emu.Requests()["queues.get_next_task"]; after != before {
		t.Errorf("polled the queue %d times while at the cap", after-before)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		f.waitStatus(t, id, api.StatusCompleted)
	}
	d.Drain()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if left := serviceWorkers(); len(left) != 0 {
		t.Errorf("service workers left registered: %v", left)
	}
}

func TestServerDownAtStart(t *testing.T) {
	f := newFixture(t)
	f.emu.CreateQueue("default")
	f.cfg.Queues = []string{"default"}
	f.emu.SetDown(true)
	d, wait := f.start(t, t.Context())
	eventually(t, "the unreachable STATUS", func() bool { return f.notify.has("STATUS=server unreachable, retrying") })
	if f.notify.has("READY") {
		t.Fatalf("READY before the server answered: %q", f.notify.list())
	}
	f.emu.SetDown(false)
	eventually(t, "READY", func() bool { return f.notify.has("READY") })
	if i, j := f.notify.index("STATUS=server unreachable"), f.notify.index("READY"); i > j {
		t.Errorf("notifications %q", f.notify.list())
	}
	if !strings.HasPrefix(d.Status(), "idle, polling default") {
		t.Errorf("Status() = %q", d.Status())
	}
	// down again while polling, then back: STATUS follows
	f.emu.SetDown(true)
	eventually(t, "unreachable while polling", func() bool {
		return strings.HasPrefix(d.Status(), "server unreachable, retrying")
	})
	f.emu.SetDown(false)
	eventually(t, "idle again", func() bool { return d.Status() == "idle, polling default" })
	d.Drain()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

func TestBadCredentials(t *testing.T) {
	f := newFixture(t)
	f.emu.CreateQueue("default")
	srv := httptest.NewServer(f.emu.Handler())
	defer srv.Close()
	cfg := f.cfg
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := worker.New(newClient(t, srv.URL, "wrong"), cfg).Run(ctx)
	if !errors.Is(err, worker.ErrFatal) {
		t.Fatalf("Run = %v, want ErrFatal", err)
	}
	if f.notify.has("READY") {
		t.Error("READY with bad credentials")
	}
}

// stats is a fixed machine stats source.
type stats struct{}

func (stats) Report() api.MachineStats {
	return api.MachineStats{CPUUsage: []float64{12.5}, MemoryUsed: 1024, MemoryFree: 2048, DiskFreeHome: 50}
}

func TestStatusReports(t *testing.T) {
	f := newFixture(t)
	f.cfg.Queues = []string{"default"}
	f.cfg.ReportInterval = 50 * time.Millisecond
	f.cfg.Stats = stats{}
	f.emu.CreateQueue("default")
	d, wait := f.start(t, t.Context())
	eventually(t, "an idle report", func() bool { return len(f.c.sent()) > 0 })
	id := f.bashTask(t, "default", "reported", "echo started\nsleep 0.4\n")
	f.waitStatus(t, id, api.StatusCompleted)
	d.Drain()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	q, _ := f.emu.Queue("default")
	var withTask, idle int
	for _, r := range f.c.sent() {
		if r.Worker != workerID || r.MachineStats == nil || r.MachineStats.MemoryFree != 2048 ||
			!slices.Equal(r.Queues, []string{q.ID}) {
			t.Errorf("report %+v: want worker, queues and machine stats", r)
		}
		switch r.Task {
		case id:
			withTask++
			if r.Queue != q.ID {
				t.Errorf("report with task has queue %q, want %q", r.Queue, q.ID)
			}
		case "":
			idle++
		default:
			t.Errorf("report names task %q", r.Task)
		}
	}
	if withTask == 0 || idle == 0 {
		t.Errorf("%d reports with the running task, %d idle; want both", withTask, idle)
	}
}

func TestIdleRequests(t *testing.T) {
	f := newFixture(t)
	f.emu.CreateQueue("a")
	f.emu.CreateQueue("b")
	f.cfg.Queues = []string{"a", "b"}
	f.cfg.ReportInterval = 200 * time.Millisecond
	d, wait := f.start(t, t.Context())
	eventually(t, "READY", func() bool { return f.notify.has("READY") })
	f.emu.ResetRequests()
	eventually(t, "20 polls", func() bool { return f.emu.Requests()["queues.get_next_task"] >= 20 })
	d.Drain()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	for ep, n := range f.emu.Requests() {
		switch ep {
		case "queues.get_next_task", "workers.status_report", "workers.unregister":
		default:
			t.Errorf("idle loop called %s %d times; want only get_next_task and status_report", ep, n)
		}
	}
}

// A failing preflight (docker mode: the engine does not answer) keeps the
// daemon NOT ready and taking no task, with the reason in STATUS, until it
// passes; the daemon never exits over it. It runs after the
// registration, which it does not hold up.
func TestPreflightHoldsReady(t *testing.T) {
	f := newFixture(t)
	f.emu.CreateQueue("default")
	f.cfg.Queues = []string{"default"}
	var mu sync.Mutex
	engineUp, calls := false, 0
	f.cfg.Preflight = func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if !engineUp {
			return errors.New("docker engine at unix:///nope.sock does not answer; start it")
		}
		return nil
	}
	d, wait := f.start(t, t.Context())
	eventually(t, "the not-ready STATUS", func() bool { return f.notify.has("STATUS=not ready: docker engine at unix:///nope.sock") })
	eventually(t, "the registration", func() bool { return len(f.emu.Workers()) == 1 })
	held := f.bashTask(t, "default", "held", "echo ran\n")
	mu.Lock()
	seen := calls
	mu.Unlock()
	// Two more failed checks after the task was queued: it is still queued.
	eventually(t, "two more preflight failures", func() bool { mu.Lock(); defer mu.Unlock(); return calls >= seen+2 })
	if f.notify.has("READY") || f.emu.Task(held).Status != api.StatusQueued {
		t.Fatalf("READY or a task taken before the preflight passed: %q, task %s", f.notify.list(), f.emu.Task(held).Status)
	}
	mu.Lock()
	engineUp = true
	mu.Unlock()
	eventually(t, "READY", func() bool { return f.notify.has("READY") })
	f.waitStatus(t, held, api.StatusCompleted)
	eventually(t, "idle", func() bool { return d.Status() == "idle, polling default" })
	d.Drain()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}
