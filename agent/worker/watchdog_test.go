package worker_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/task"
	"github.com/gpufleet/clearml-agent-go/agent/worker"
	"github.com/gpufleet/clearml-agent-go/internal/gittest"
)

// fakeClock is the daemon's clock in the watchdog tests: time moves only
// when the test says so.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// steppedRunner stands for a supervised task: it reports that it runs, then
// calls Options.Progress once per value on step (answering on stepped) until
// ctx ends; a started runner (services) reports its process first.
type steppedRunner struct {
	running chan struct{}
	step    chan struct{}
	stepped chan struct{}
	started bool
}

func newSteppedRunner(started bool) *steppedRunner {
	return &steppedRunner{running: make(chan struct{}, 10), step: make(chan struct{}), stepped: make(chan struct{}), started: started}
}

func (r *steppedRunner) Run(ctx context.Context, id string, o task.Options) (task.Outcome, error) {
	if r.started && o.Started != nil {
		o.Started(1)
	}
	r.running <- struct{}{}
	for {
		select {
		case <-ctx.Done():
			return task.Outcome{TaskID: id, Status: api.StatusStopped}, nil
		case <-r.step:
			if o.Progress != nil {
				o.Progress()
			}
			r.stepped <- struct{}{}
		}
	}
}

// progress makes the running task's supervision go round once.
func (r *steppedRunner) progress(t *testing.T) {
	t.Helper()
	select {
	case r.step <- struct{}{}:
	case <-time.After(time.Minute):
		t.Fatal("the runner does not take a step")
	}
	<-r.stepped
}

func TestHealthyFollowsTaskSupervision(t *testing.T) {
	f := newFixture(t)
	f.cfg.Queues = []string{"default"}
	f.cfg.PollInterval = 50 * time.Millisecond // loop limit: 3 polls + 1 min
	clk := newFakeClock()
	f.cfg.Clock = clk.now
	r := newSteppedRunner(false)
	f.cfg.Runner = r
	f.bashTask(t, "default", "long", "true")
	ctx, cancel := context.WithCancel(t.Context())
	d, _ := f.start(t, ctx)
	t.Cleanup(cancel)
	<-r.running

	if !d.Healthy() {
		t.Fatal("unhealthy when the task has just started")
	}
	// The supervision goes round: healthy long after the loop's last poll.
	for range 4 {
		clk.add(50 * time.Second)
		r.progress(t)
		if !d.Healthy() {
			t.Fatalf("unhealthy although the task's supervision made progress (%d running)", d.Running())
		}
	}
	// It stops: a running task is not progress.
	clk.add(61 * time.Second)
	if d.Running() != 1 {
		t.Fatalf("%d tasks running, want 1", d.Running())
	}
	if d.Healthy() {
		t.Error("healthy although nothing progressed for 61 s while a task runs")
	}
	// It goes on again.
	r.progress(t)
	if !d.Healthy() {
		t.Error("unhealthy after the supervision made progress again")
	}
}

func TestHealthyIgnoresRunningServices(t *testing.T) {
	f := newFixture(t)
	f.cfg.Queues = []string{"services"}
	f.cfg.Services = true
	f.cfg.ServicesMax = 1
	f.cfg.PollInterval = 10 * time.Millisecond
	clk := newFakeClock()
	f.cfg.Clock = clk.now
	r := newSteppedRunner(true)
	f.cfg.NewServiceRunner = func(string) worker.Runner { return r }
	// Each pass of the main loop counts the services; hang makes the
	// count hang as a docker engine that stopped answering would.
	passes := make(chan struct{}, 1000)
	var hang atomic.Bool
	hung := make(chan struct{}, 1)
	f.cfg.ServiceCount = func(ctx context.Context) (int, error) {
		if hang.Load() {
			hung <- struct{}{}
			<-ctx.Done()
			return 0, ctx.Err()
		}
		select {
		case passes <- struct{}{}:
		default:
		}
		return 0, nil
	}
	f.bashTask(t, "services", "svc", "true")
	ctx, cancel := context.WithCancel(t.Context())
	d, _ := f.start(t, ctx)
	t.Cleanup(cancel)
	<-r.running

	// The loop goes round at the cap: healthy, however long the service runs.
	for range 3 {
		clk.add(50 * time.Second)
		for len(passes) > 0 {
			<-passes
		}
		<-passes // a pass that began before the clock moved
		<-passes // one that began after: it beat at the new time
		if !d.Healthy() {
			t.Fatal("unhealthy although the main loop goes round")
		}
	}
	// The loop hangs (counting the services); the service still runs and
	// its supervision still goes round, which is not the loop's progress.
	hang.Store(true)
	<-hung
	clk.add(61 * time.Second)
	r.progress(t)
	if d.Running() != 1 {
		t.Fatalf("%d services running, want 1", d.Running())
	}
	if d.Healthy() {
		t.Error("healthy although the main loop is stuck for 61 s while a service runs")
	}
}

// TestHungGitServerFailsTask: a task whose repository is on a git server
// that accepts connections and never answers fails with a reason that names
// agent.git_timeout_sec, and the daemon goes on to the next task.
func TestHungGitServerFailsTask(t *testing.T) {
	addr := gittest.HungServer(t)

	f := newFixture(t)
	f.cfg.Queues = []string{"default"}
	f.runner.r = task.NewRunner(f.c, task.Settings{WorkerID: workerID, VenvsDir: filepath.Join(t.TempDir(), "venvs"),
		AbortGrace: 2 * time.Second, StatusPoll: 100 * time.Millisecond, PingInterval: -1, GitTimeout: 500 * time.Millisecond})
	q := f.emu.CreateQueue("default")
	hung := f.emu.CreateTask(api.Task{Name: "hung clone", Script: &api.Script{
		Repository: "http://" + addr + "/team/project.git", EntryPoint: "run.sh", Binary: "bash"}})
	if err := f.emu.Enqueue(hung, q); err != nil {
		t.Fatal(err)
	}
	next := f.bashTask(t, "default", "next", "echo next ran\n")
	f.start(t, t.Context())

	f.waitStatus(t, hung, api.StatusFailed)
	reason := f.emu.Task(hung).StatusReason
	if !strings.Contains(reason, "agent.git_timeout_sec") || !strings.Contains(reason, "500ms") || strings.Contains(reason, "\n") {
		t.Errorf("status_reason %q: want one line naming agent.git_timeout_sec and its value", reason)
	}
	f.waitStatus(t, next, api.StatusCompleted)
	if !f.logHas(next, "next ran") {
		t.Error("the next task did not run")
	}
}
