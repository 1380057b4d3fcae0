package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/metrics"
	"github.com/gpufleet/clearml-agent-go/agent/task"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// API is what the daemon loop needs from the server; *api.Client has it.
type API interface {
	Login(ctx context.Context) (api.ServerInfo, error)
	QueuesByName(ctx context.Context, name string) ([]api.Queue, error)
	GetQueue(ctx context.Context, id string) (*api.Queue, error)
	GetAllQueues(ctx context.Context, req api.GetAllQueuesRequest) ([]api.Queue, error)
	CreateQueue(ctx context.Context, req api.CreateQueueRequest) (string, error)
	GetDefaultQueue(ctx context.Context) (id, name string, err error)
	GetNextTask(ctx context.Context, queueID string) (string, error)
	Started(ctx context.Context, req api.StatusRequest) (api.Updated, error)
	RegisterWorker(ctx context.Context, worker string, queueIDs []string, timeoutSec int) error
	UnregisterWorker(ctx context.Context, worker string) error
	ReportStatus(ctx context.Context, r api.StatusReport) error
}

// Runner runs one task; *task.Runner is one.
type Runner interface {
	Run(ctx context.Context, id string, o task.Options) (task.Outcome, error)
}

// Notifier receives the service manager notifications; *sdnotify.Notifier is one.
type Notifier interface {
	Ready() error
	Status(string) error
	Stopping() error
}

// StatsSource gives the machine stats of one status report.
type StatsSource interface {
	Report() api.MachineStats
}

// Config is the daemon's configuration, built by the CLI.
type Config struct {
	WorkerID      string
	Queues        []string // names or ids, in priority order; empty = the server's default queue
	OrderFairness bool
	CreateQueue   bool
	Tags          []string

	PollInterval   time.Duration // default 5 s; jittered by ±10 %
	ReportInterval time.Duration // default 30 s
	// LostPopAfter is how long a task lost in a queues.get_next_task answer
	// must stay unchanged before it is put back on its queue (lostpop.go);
	// 0 means DefaultLostPopAfter (60 s), negative turns the recovery off.
	LostPopAfter time.Duration

	Services    bool
	ServicesMax int // <= 0: unlimited
	// ServiceCount, when set, counts the running services for ServicesMax
	// instead of this process's own (docker mode counts the containers
	// labelled with this worker, so services adopted after a restart count).
	ServiceCount func(ctx context.Context) (int, error)
	// ServicesDetached leaves running services behind on exit instead of
	// waiting for them (docker mode: service containers outlive the agent).
	ServicesDetached bool

	// Runner runs the tasks; NewServiceRunner, when set, gives the runner of
	// one services-mode child (worker id "<wid>:service:<task>").
	Runner           Runner
	NewServiceRunner func(childWorkerID string) Runner

	// Preflight, when set, must pass before the worker says READY and takes
	// a task (python and venv, the docker engine, GPUs, disk, git host).
	// It runs once the worker is registered, so a slow check (a trial
	// venv) neither delays workers.register nor competes with it for the
	// CPU; while it fails the worker is registered and reporting but NOT
	// ready, STATUS says why and it is retried with backoff; it never ends
	// the daemon.
	Preflight func(ctx context.Context) error

	// Gate, when set, is asked before every pop (each pass of the poll
	// loop): while it says !ok the daemon pops nothing, shows status in
	// STATUS= (logged once per change) and stays healthy (a gated agent is
	// waiting, not stuck); it is asked again every poll interval, and the
	// daemon polls again once it says ok. The busy-GPU check and the disk
	// floor are gates.
	Gate func(ctx context.Context) (ok bool, status string)

	// Metrics, when set, hears the agent's state, each task's outcome,
	// duration, setup phases and log counts, and each successful poll
	// (nil: no metrics; its methods are no-ops).
	Metrics *metrics.Metrics

	Notify Notifier    // nil: no notifications
	Stats  StatsSource // nil: reports without machine stats
	// Clock reads the time for Healthy and the progress marks; nil =
	// time.Now (tests pass a fake clock).
	Clock  func() time.Time
	Logger *slog.Logger
	Out    io.Writer // human-readable progress lines ("task X pulled from Y"); nil = none
}

// Queue is a resolved queue.
type Queue struct{ ID, Name string }

// Daemon is one agent's main loop.
type Daemon struct {
	c   API
	cfg Config
	log *slog.Logger

	drainOnce sync.Once
	drain     chan struct{}

	beat     atomic.Int64 // unix nanos of the main loop's last progress
	reported atomic.Int64 // unix nanos of the report loop's last progress
	running  atomic.Int32 // tasks running now
	taken    atomic.Int64 // tasks pulled since start

	mu       sync.Mutex
	queues   []Queue
	curTask  string
	curQueue string
	status   string
	tasks    map[string]*runningTask // by task id
	preempt  *preemption             // set once by Preempt

	lost    lostPops // main loop only
	gateMsg string   // main loop only: why the gate holds pops, "" when open
}

// runningTask is a task the daemon runs now.
type runningTask struct {
	queue Queue
	abort context.CancelCauseFunc
	cause *task.AbortCause // set when the daemon aborted it with a reason
}

// preemption is the termination notice the daemon drains for.
type preemption struct{ reason, detail string }

// New returns a daemon; call Run.
func New(c API, cfg Config) *Daemon {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	d := &Daemon{c: c, cfg: cfg, log: cfg.Logger, drain: make(chan struct{}), tasks: map[string]*runningTask{}}
	d.Beat()
	d.reportProgress()
	return d
}

// Drain asks the daemon to take no new task, finish the running one and
// return. Safe to call more than once and from any goroutine.
func (d *Daemon) Drain() {
	d.drainOnce.Do(func() {
		close(d.drain)
		d.cfg.Metrics.SetState(metrics.StateDraining)
		d.setStatus("draining: finishing the running task, taking no new one")
	})
}

// Preempt handles the cloud's termination notice: the daemon takes no new
// task, aborts the running ones (SIGTERM to the task, the grace period,
// SIGKILL) with reason as their status reason, after a line in their log
// that names detail and the queue, puts each back on the queue it came from
// so that another agent runs it, then unregisters, and Run returns nil.
// reason is e.g. "instance preempted (gce)", detail the notice as the cloud
// gave it. Safe to call from any goroutine; calls after the first are
// ignored.
func (d *Daemon) Preempt(reason, detail string) {
	d.mu.Lock()
	if d.preempt != nil {
		d.mu.Unlock()
		return
	}
	d.preempt = &preemption{reason: reason, detail: cmp.Or(detail, reason)}
	var abort []*runningTask
	for _, rt := range d.tasks {
		abort = append(abort, rt)
	}
	d.mu.Unlock()
	d.log.Warn("termination notice: draining, aborting the running tasks and putting them back on their queues", "reason", detail)
	d.Drain()
	d.cfg.Metrics.SetState(metrics.StatePreempted)
	d.setStatus("preempted: " + cmp.Or(detail, reason) + "; putting the running tasks back on their queues")
	for _, rt := range abort {
		d.abortPreempted(rt)
	}
}

// abortPreempted aborts one running task for the preemption; d.preempt is set.
func (d *Daemon) abortPreempted(rt *runningTask) {
	d.mu.Lock()
	p := d.preempt
	c := &task.AbortCause{Reason: p.reason,
		Note: fmt.Sprintf("clearml-agent: %s: stopping the task and putting it back on queue %s", p.detail, rt.queue.Name)}
	rt.cause = c
	d.mu.Unlock()
	rt.abort(c)
}

// track records a task the daemon is about to run and returns its context
// (cancelled when it is to be aborted with a reason) and the func that
// drops the record and says whether the task was aborted for a preemption.
func (d *Daemon) track(ctx context.Context, id string, q Queue) (context.Context, func() *task.AbortCause) {
	tctx, cancel := context.WithCancelCause(ctx)
	rt := &runningTask{queue: q, abort: cancel}
	d.mu.Lock()
	d.tasks[id] = rt
	preempted := d.preempt != nil
	d.mu.Unlock()
	if preempted { // the notice came between the pop and now
		d.abortPreempted(rt)
	}
	return tctx, func() *task.AbortCause {
		d.mu.Lock()
		delete(d.tasks, id)
		c := rt.cause
		d.mu.Unlock()
		cancel(nil)
		return c
	}
}

// Preempted reports whether a termination notice came (Preempt).
func (d *Daemon) Preempted() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.preempt != nil
}

func (d *Daemon) draining() bool {
	select {
	case <-d.drain:
		return true
	default:
		return false
	}
}

// Beat records progress of the main loop: a pass of the poll loop, a tick
// of the supervision of the task it runs (task.Options.Progress), and a
// retry of a call it waits on (the API client's retry hook while the server
// is unreachable).
func (d *Daemon) Beat() { d.beat.Store(d.cfg.Clock().UnixNano()) }

func (d *Daemon) reportProgress() { d.reported.Store(d.cfg.Clock().UnixNano()) }

// reportCallLimit bounds one workers.status_report of the report loop, so
// that an unreachable server (the client retries for ever) does not stall it.
const reportCallLimit = time.Minute

// Healthy reports whether the daemon makes progress: the main loop passed,
// or supervised its task, within 3 poll intervals + 1 min, and the report
// loop reported (or gave up on a report) within a report interval + 2 min.
// A running task or service is not progress by itself: a loop stuck behind
// it is unhealthy. The systemd watchdog is fed only while it is healthy.
func (d *Daemon) Healthy() bool {
	now := d.cfg.Clock()
	if now.Sub(time.Unix(0, d.beat.Load())) >= 3*d.cfg.PollInterval+time.Minute {
		return false
	}
	return now.Sub(time.Unix(0, d.reported.Load())) < d.cfg.ReportInterval+2*reportCallLimit
}

// Running returns how many tasks run now.
func (d *Daemon) Running() int { return int(d.running.Load()) }

// Taken returns how many tasks the daemon pulled since it started.
func (d *Daemon) Taken() int64 { return d.taken.Load() }

// Queues returns the resolved queues (after Run registered the worker).
func (d *Daemon) Queues() []Queue {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Queue(nil), d.queues...)
}

// Status returns the last STATUS text.
func (d *Daemon) Status() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

func (d *Daemon) setStatus(s string) {
	d.mu.Lock()
	changed := d.status != s
	d.status = s
	d.mu.Unlock()
	if changed && d.cfg.Notify != nil {
		_ = d.cfg.Notify.Status(s)
	}
}

// ErrFatal marks errors that retrying cannot fix (bad credentials, unknown
// queue); Run returns them at once.
var ErrFatal = errors.New("fatal")

// Run logs in (retrying while the server is unreachable), resolves the
// queues, registers, then polls until drained or ctx is cancelled.
// Cancelling ctx aborts a running task (it is marked stopped).
func (d *Daemon) Run(ctx context.Context) error {
	if err := d.connect(ctx); err != nil {
		return err
	}
	queues, err := d.resolveQueues(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.queues = queues
	d.mu.Unlock()
	ids := queueIDs(queues)
	if err := d.c.RegisterWorker(ctx, d.cfg.WorkerID, ids, 0); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.log.Warn("workers.register failed; the first status report registers the worker", "err", err)
	}
	defer d.unregister(ctx)

	reportCtx, stopReports := context.WithCancel(ctx)
	defer stopReports()
	go d.reportLoop(reportCtx)
	if err := d.preflight(ctx); err != nil {
		return err
	}

	fmt.Fprintf(d.cfg.Out, "Worker %q - Listening to queues: %s\n", d.cfg.WorkerID, queueNames(queues))
	d.idle()
	if d.cfg.Notify != nil {
		_ = d.cfg.Notify.Ready()
	}

	var children sync.WaitGroup
	waitChildren := func() {
		if !d.cfg.ServicesDetached {
			children.Wait()
		}
	}
	defer waitChildren()
	start := 0 // round robin: the queue to poll first
	for {
		d.Beat()
		if d.draining() || ctx.Err() != nil {
			break
		}
		d.recoverLostPops(ctx)
		if n := d.services(ctx); d.cfg.Services && d.cfg.ServicesMax > 0 && n >= d.cfg.ServicesMax {
			d.setStatus(fmt.Sprintf("services mode: %d of %d services running, waiting for one to end", n, d.cfg.ServicesMax))
			if !d.sleep(ctx, d.cfg.PollInterval) {
				break
			}
			continue
		}
		if !d.gate(ctx) {
			if !d.sleep(ctx, d.cfg.PollInterval) {
				break
			}
			continue
		}
		took := false
		for i := range queues {
			qi := i
			if d.cfg.OrderFairness {
				qi = (start + i) % len(queues)
			}
			if d.draining() || ctx.Err() != nil {
				break
			}
			q := queues[qi]
			id, err := d.c.GetNextTask(ctx, q.ID)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				d.lostPop(err)
				d.unreachable(err, "queues.get_next_task "+q.Name)
				continue
			}
			d.Beat()
			d.cfg.Metrics.PollSucceeded(d.cfg.Clock())
			if id == "" {
				d.idle() // the server answers again: no longer "unreachable"
				continue
			}
			took = true
			if d.cfg.Services {
				d.startService(ctx, &children, id, q)
			} else {
				d.runTask(ctx, id, q)
			}
			d.idle()
			if d.cfg.OrderFairness {
				start = (qi + 1) % len(queues)
			}
			break // priority: start again from the first queue at once
		}
		if took {
			continue
		}
		if !d.sleep(ctx, jitter(d.cfg.PollInterval)) {
			break
		}
	}
	if d.cfg.Notify != nil {
		_ = d.cfg.Notify.Stopping()
	}
	if !d.Preempted() {
		d.cfg.Metrics.SetState(metrics.StateStopping)
	}
	if n := d.running.Load(); n > 0 && !d.cfg.ServicesDetached {
		d.setStatus(fmt.Sprintf("stopping: waiting for %d running task(s)", n))
	} else {
		d.setStatus("stopping")
	}
	waitChildren()
	if ctx.Err() != nil && !d.draining() {
		return ctx.Err()
	}
	return nil
}

// gate asks Config.Gate whether the daemon may pop now; while it may not,
// STATUS= says why (logged once per change).
func (d *Daemon) gate(ctx context.Context) bool {
	if d.cfg.Gate == nil {
		return true
	}
	ok, why := d.cfg.Gate(ctx)
	if ok {
		if d.gateMsg != "" {
			d.log.Info("taking tasks again", "was", d.gateMsg)
			d.gateMsg = ""
			d.idle()
		}
		return true
	}
	why = cmp.Or(why, "not taking tasks")
	if why != d.gateMsg {
		d.log.Warn("taking no task", "why", why)
		d.gateMsg = why
	}
	if !d.draining() {
		d.cfg.Metrics.SetState(metrics.StateNotReady)
		d.setStatus(why)
	}
	return false
}

// services is how many services run now (ServiceCount, else this
// process's own count).
func (d *Daemon) services(ctx context.Context) int {
	n := int(d.running.Load())
	if d.cfg.Services && d.cfg.ServiceCount != nil {
		if c, err := d.cfg.ServiceCount(ctx); err == nil {
			n = max(n, c)
		} else if ctx.Err() == nil {
			d.log.Warn("could not count the running services; counting this agent's own", "err", err)
		}
	}
	return n
}

// connect logs in, retrying while the server cannot be reached. Bad
// credentials are fatal.
func (d *Daemon) connect(ctx context.Context) error {
	delay := time.Second
	for {
		d.Beat()
		info, err := d.c.Login(ctx)
		if err == nil {
			d.log.Info("connected", "server_version", info.ServerVersion, "api_version", info.APIVersion)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var le *api.LoginError
		if errors.As(err, &le) || api.IsUnauthorized(err) {
			return fmt.Errorf("%w: %v", ErrFatal, err)
		}
		d.unreachable(err, "auth.login")
		if d.draining() || !d.sleep(ctx, delay) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errors.New("stopped before the server could be reached")
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// preflight runs Config.Preflight until it passes (logging each new
// failure once), the daemon drains, or ctx ends.
func (d *Daemon) preflight(ctx context.Context) error {
	if d.cfg.Preflight == nil {
		return nil
	}
	delay := time.Second
	last := ""
	for {
		d.Beat()
		err := d.cfg.Preflight(ctx)
		if err == nil {
			if last != "" {
				d.log.Info("preflight passed", "was", last)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if msg := oneline.Of(err); msg != last {
			d.log.Warn("not ready: retrying", "err", msg)
			last = msg
		}
		d.cfg.Metrics.SetState(metrics.StateNotReady)
		d.setStatus("not ready: " + oneline.Of(err))
		if !d.sleep(ctx, delay) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errors.New("stopped before the preflight check passed: " + last)
		}
		delay = min(delay*2, 30*time.Second)
	}
}

func (d *Daemon) unreachable(err error, what string) {
	d.log.Warn("server unreachable, retrying", "call", what, "err", err)
	d.setStatus("server unreachable, retrying: " + oneline.Of(err))
}

func (d *Daemon) idle() {
	if d.draining() {
		return
	}
	if d.running.Load() > 0 {
		d.cfg.Metrics.SetState(metrics.StateRunning) // services run
	} else {
		d.cfg.Metrics.SetState(metrics.StateIdle)
	}
	d.setStatus("idle, polling " + queueNames(d.Queues()))
}

// resolveQueues turns the configured names or ids into queues, once.
var queueIDPattern = regexp.MustCompile(`^[-a-f0-9]{30,}$`)

func (d *Daemon) resolveQueues(ctx context.Context) ([]Queue, error) {
	names := d.cfg.Queues
	if len(names) == 0 {
		id, name, err := d.c.GetDefaultQueue(ctx)
		if err == nil && id != "" {
			return []Queue{{ID: id, Name: name}}, nil
		}
		names = []string{"default"}
	}
	var out []Queue
	seen := map[string]bool{}
	for _, n := range names {
		q, err := d.resolveQueue(ctx, n)
		if err != nil {
			return nil, err
		}
		if !seen[q.ID] {
			seen[q.ID] = true
			out = append(out, q)
		}
	}
	return out, nil
}

func (d *Daemon) resolveQueue(ctx context.Context, name string) (Queue, error) {
	if queueIDPattern.MatchString(name) {
		q, err := d.c.GetQueue(ctx, name)
		if err == nil {
			return Queue{ID: q.ID, Name: q.Name}, nil
		}
		if !api.IsInvalidQueue(err) {
			return Queue{}, err
		}
	}
	qs, err := d.c.QueuesByName(ctx, name)
	if err != nil {
		return Queue{}, err
	}
	switch len(qs) {
	case 1:
		return Queue{ID: qs[0].ID, Name: qs[0].Name}, nil
	case 0:
		if d.cfg.CreateQueue {
			id, err := d.c.CreateQueue(ctx, api.CreateQueueRequest{Name: name})
			if err != nil {
				return Queue{}, fmt.Errorf("creating queue %q: %w", name, err)
			}
			fmt.Fprintf(d.cfg.Out, "Created queue %q (%s)\n", name, id)
			return Queue{ID: id, Name: name}, nil
		}
		all, _ := d.c.GetAllQueues(ctx, api.GetAllQueuesRequest{OnlyFields: []string{"id", "name"}})
		var have []string
		for _, q := range all {
			have = append(have, q.Name)
		}
		sort.Strings(have)
		existing := "none"
		if len(have) > 0 {
			existing = strings.Join(have, ", ")
		}
		return Queue{}, fmt.Errorf("%w: unknown queue %q (existing queues: %s); create it with --create-queue", ErrFatal, name, existing)
	default:
		var ids []string
		for _, q := range qs {
			ids = append(ids, q.Name+"="+q.ID)
		}
		return Queue{}, fmt.Errorf("%w: queue name %q matches several queues (%s); pass the queue id instead", ErrFatal, name, strings.Join(ids, ", "))
	}
}

// runTask runs one task to its end under ctx (cancelling ctx aborts it).
func (d *Daemon) runTask(ctx context.Context, id string, q Queue) {
	d.running.Add(1)
	defer d.running.Add(-1)
	tctx, done := d.track(ctx, id, q)
	start := d.cfg.Clock()
	d.pulled(ctx, id, q)
	out, err := d.cfg.Runner.Run(tctx, id, task.Options{FromQueue: true, Loaded: d.loaded(q), Progress: d.Beat,
		Phase: d.cfg.Metrics.SetupPhase})
	d.finished(ctx, id, q, start, done(), out, err)
}

func (d *Daemon) startService(ctx context.Context, wg *sync.WaitGroup, id string, q Queue) {
	d.running.Add(1)
	d.pulled(ctx, id, q)
	child := d.cfg.WorkerID + ":service:" + id
	r := d.cfg.Runner
	if d.cfg.NewServiceRunner != nil {
		r = d.cfg.NewServiceRunner(child)
	}
	started := make(chan struct{})
	var once sync.Once
	wg.Add(2)
	tctx, done := d.track(ctx, id, q)
	start := d.cfg.Clock()
	svcCtx, svcDone := context.WithCancel(ctx)
	go func() {
		defer wg.Done()
		d.serviceWorker(svcCtx, child, id, q.ID)
	}()
	go func() {
		defer wg.Done()
		defer d.running.Add(-1)
		defer svcDone()
		// Until the service's process starts, the main loop waits on its
		// set-up: the supervision's progress is the loop's. After that the
		// loop goes back to polling and beats by itself.
		progress := func() {
			select {
			case <-started:
			default:
				d.Beat()
			}
		}
		out, err := r.Run(tctx, id, task.Options{FromQueue: true, Loaded: d.loaded(q), Progress: progress,
			Phase: d.cfg.Metrics.SetupPhase, Started: func(int) { once.Do(func() { close(started) }) }})
		once.Do(func() { close(started) })
		d.finished(ctx, id, q, start, done(), out, err)
	}()
	<-started
	fmt.Fprintf(d.cfg.Out, "Service %s started, running in the background\n", id)
	d.mu.Lock()
	d.curTask, d.curQueue = "", ""
	d.mu.Unlock()
}

// serviceWorker makes a services-mode child visible on the server as its own
// worker ("<wid>:service:<task>", as the Python agent's child agent does):
// registered, reporting the task it runs, and unregistered when it ends.
func (d *Daemon) serviceWorker(ctx context.Context, child, taskID, queueID string) {
	if err := d.c.RegisterWorker(ctx, child, []string{queueID}, 0); err != nil && ctx.Err() == nil {
		d.log.Debug("workers.register failed", "worker", child, "err", err)
	}
	defer func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := d.c.UnregisterWorker(c, child); err != nil {
			d.log.Debug("workers.unregister failed", "worker", child, "err", err)
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r := api.StatusReport{Worker: child, Timestamp: time.Now().UnixMilli(), Task: taskID, Queue: queueID, Tags: d.cfg.Tags}
		if err := d.c.ReportStatus(ctx, r); err != nil && ctx.Err() == nil {
			d.log.Debug("workers.status_report failed", "worker", child, "err", err)
		}
		t.Reset(d.cfg.ReportInterval)
	}
}

func (d *Daemon) pulled(ctx context.Context, id string, q Queue) {
	d.taken.Add(1)
	if _, err := d.c.Started(ctx, api.StatusRequest{Task: id, StatusMessage: "pulled by agent", Force: true}); err != nil {
		d.log.Warn("tasks.started failed", "task", id, "err", err)
	}
	d.mu.Lock()
	d.curTask, d.curQueue = id, q.ID
	d.mu.Unlock()
	d.report(ctx)
	fmt.Fprintf(d.cfg.Out, "task %s pulled from %s by worker %s\n", id, q.Name, d.cfg.WorkerID)
	if !d.draining() {
		d.cfg.Metrics.SetState(metrics.StateRunning)
	}
	d.setStatus(fmt.Sprintf("running task %s from queue %s", id, q.Name))
}

// loaded names the task in STATUS once the runner has read it (no second
// tasks.get_by_id just for the name).
func (d *Daemon) loaded(q Queue) func(*api.Task) {
	return func(t *api.Task) {
		if t.Name != "" && !d.draining() {
			d.setStatus(fmt.Sprintf("running task %s (%s) from queue %s", t.ID, t.Name, q.Name))
		}
	}
}

// finished ends the run of task id from queue q, started at start: a task
// aborted for a preemption (cause) goes back on q; the metrics count it.
func (d *Daemon) finished(ctx context.Context, id string, q Queue, start time.Time, cause *task.AbortCause, out task.Outcome, err error) {
	if err != nil {
		d.log.Error("task could not run", "task", id, "err", err)
		fmt.Fprintf(d.cfg.Out, "task %s could not run: %v\n", id, err)
	} else {
		fmt.Fprintf(d.cfg.Out, "task %s finished: %s (%s)\n", out.TaskID, cmp.Or(out.Status, "-"), out.Reason)
	}
	requeued := false
	if cause != nil && (out.Status == api.StatusStopped || err != nil) {
		requeued = d.requeue(ctx, cmp.Or(out.TaskID, id), q, cause)
	}
	m := d.cfg.Metrics
	m.TaskEnded(outcomeOf(out, err, requeued), d.cfg.Clock().Sub(start))
	m.LogShipped(int(out.Log.Shipped))
	m.LogSpooled(int(out.Log.Spooled))
	m.LogDropped(int(out.Log.Dropped))
	d.mu.Lock()
	if d.curTask == id {
		d.curTask, d.curQueue = "", ""
	}
	d.mu.Unlock()
}

// outcomeOf is the metrics outcome of a run.
func outcomeOf(out task.Outcome, err error, requeued bool) string {
	switch {
	case requeued:
		return metrics.OutcomePreempted
	case err != nil, out.Status == api.StatusFailed:
		return metrics.OutcomeFailed
	case out.Status == api.StatusCompleted:
		return metrics.OutcomeCompleted
	case out.Status == api.StatusStopped && strings.HasPrefix(out.Reason, "aborted by clearml-agent"):
		return metrics.OutcomeAborted // the agent's own abort (shutdown)
	default:
		return metrics.OutcomeStopped // a user abort, or someone changed its status
	}
}

// requeueAPI is what putting a preempted task back needs beyond API;
// *api.Client has it.
type requeueAPI interface {
	Enqueue(ctx context.Context, req api.EnqueueRequest) (api.EnqueueResult, error)
	AddBatch(ctx context.Context, events []api.Event) (api.AddBatchResult, error)
}

// requeue puts task id, stopped for a preemption, back on queue q
// (tasks.enqueue: the server moves a stopped task to queued), and says so
// in its log. It reports whether the task is queued again.
func (d *Daemon) requeue(ctx context.Context, id string, q Queue, cause *task.AbortCause) bool {
	c, ok := d.c.(requeueAPI)
	if !ok {
		return false
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	_, err := c.Enqueue(rctx, api.EnqueueRequest{Task: id, Queue: q.ID, StatusReason: cause.Reason,
		StatusMessage: "requeued by clearml-agent " + d.cfg.WorkerID})
	level, msg := "WARNING", fmt.Sprintf("clearml-agent: task put back on queue %s (%s)", q.Name, cause.Reason)
	if err != nil {
		level, msg = "ERROR", fmt.Sprintf("clearml-agent: could not put the task back on queue %s (%s): %s", q.Name, cause.Reason, oneline.Of(err))
		d.log.Error("could not put the preempted task back on its queue", "task", id, "queue", q.Name, "err", err)
	} else {
		d.log.Warn("preempted task put back on its queue", "task", id, "queue", q.Name)
		fmt.Fprintf(d.cfg.Out, "task %s put back on queue %s (%s)\n", id, q.Name, cause.Reason)
	}
	if _, lerr := c.AddBatch(rctx, []api.Event{{Type: "log", Level: level, Task: id, Worker: d.cfg.WorkerID,
		Msg: msg, Timestamp: time.Now().UnixMilli()}}); lerr != nil {
		d.log.Debug("could not write to the task log", "task", id, "err", lerr)
	}
	return err == nil
}

// reportLoop sends workers.status_report: first after 3 s (or
// ReportInterval when shorter), then every ReportInterval; a final one is not
// needed (unregister follows).
func (d *Daemon) reportLoop(ctx context.Context) {
	t := time.NewTimer(min(3*time.Second, d.cfg.ReportInterval))
	defer t.Stop()
	for {
		d.reportProgress()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.reportProgress()
		rctx, cancel := context.WithTimeout(ctx, reportCallLimit)
		d.report(rctx)
		cancel()
		t.Reset(d.cfg.ReportInterval)
	}
}

func (d *Daemon) report(ctx context.Context) {
	d.mu.Lock()
	r := api.StatusReport{Worker: d.cfg.WorkerID, Timestamp: time.Now().UnixMilli(), Task: d.curTask,
		Queue: d.curQueue, Queues: queueIDs(d.queues), Tags: d.cfg.Tags}
	d.mu.Unlock()
	if d.cfg.Stats != nil {
		ms := d.cfg.Stats.Report()
		r.MachineStats = &ms
	}
	if err := d.c.ReportStatus(ctx, r); err != nil && ctx.Err() == nil {
		d.log.Debug("workers.status_report failed", "err", err)
	}
}

func (d *Daemon) unregister(ctx context.Context) {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.c.UnregisterWorker(c, d.cfg.WorkerID); err != nil {
		d.log.Warn("workers.unregister failed", "err", err)
	}
}

// sleep waits for dur, the drain signal or ctx; it reports whether the loop
// should go on.
func (d *Daemon) sleep(ctx context.Context, dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-d.drain:
		return false
	case <-ctx.Done():
		return false
	}
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

func queueIDs(qs []Queue) []string {
	ids := make([]string, len(qs))
	for i, q := range qs {
		ids[i] = q.ID
	}
	return ids
}

func queueNames(qs []Queue) string {
	n := make([]string, len(qs))
	for i, q := range qs {
		n[i] = q.Name
	}
	return strings.Join(n, ", ")
}
