package executor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/process"
	"github.com/gpufleet/clearml-agent-go/agent/task"
)

// API is what the daemon side needs from the server: marking a task failed
// when its child died without saying how the task ended, and in docker mode
// reading the task's container and writing the lines of the container's set-up
// (image choice, pull progress) to the task log.
type API interface {
	Failed(ctx context.Context, req api.StatusRequest) (api.Updated, error)
	GetTask(ctx context.Context, id string) (*api.Task, error)
	AddBatch(ctx context.Context, events []api.Event) (api.AddBatchResult, error)
}

// Config says how to start the children.
type Config struct {
	Binary     string   // the clearml-agent binary; "" = this executable
	GlobalArgs []string // flags before "execute", e.g. --config-file F
	Args       []string // flags after "execute --id T", e.g. --gpus 0 --log-level INFO
	Env        []string // the child's environment (nil: this process's); CLEARML_AUTH_TOKEN is set from Token; NOTIFY_SOCKET, WATCHDOG_* and LISTEN_* are left out
	WorkerID   string   // the worker the task runs under (execute --worker-id)

	// Token returns the daemon's session token for the child; nil (or an
	// error) lets the child log in itself.
	Token func(ctx context.Context) (string, error)

	API    API
	Stderr io.Writer // the child's own messages (not the task's output); nil discards
	Logger *slog.Logger

	// Groups, when set, records the process groups of each execute child and
	// of its task while they run (agent/instance.Groups), so that the next
	// start of the agent can end what a killed agent left behind.
	Groups Recorder

	// ProgressInterval is how often task.Options.Progress is called while
	// a child is supervised; 0 = 5 s.
	ProgressInterval time.Duration

	// Docker, when set, runs the children in containers (docker mode).
	Docker *DockerConfig
	// Editor writes the chosen container back into the task (docker mode);
	// nil skips that.
	Editor interface {
		EditTask(ctx context.Context, req api.EditTaskRequest) (api.Updated, error)
	}
}

// Recorder records a process group led by pgid for a task until remove is
// called.
type Recorder interface {
	Add(taskID string, pgid int, role string) (remove func(), err error)
}

// Runner runs each task in its own `clearml-agent execute` child. It
// implements the daemon's task runner and is safe for concurrent use
// (services mode).
type Runner struct {
	cfg        Config
	containers *containerSet // shared with the runners WithWorker returns
}

// containerSet is the ids of the task containers that run now.
type containerSet struct {
	mu  sync.Mutex
	ids map[string]int
}

// add records id until the returned func is called.
func (s *containerSet) add(id string) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[string]int{}
	}
	s.ids[id]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.ids[id]--; s.ids[id] <= 0 {
				delete(s.ids, id)
			}
		})
	}
}

// Containers returns the ids of the task containers this runner (and the
// runners WithWorker made from it) runs now, in docker mode: the busy-GPU
// check counts their processes as the agent's own.
func (r *Runner) Containers() []string {
	r.containers.mu.Lock()
	defer r.containers.mu.Unlock()
	out := make([]string, 0, len(r.containers.ids))
	for id := range r.containers.ids {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// New returns a Runner.
func New(cfg Config) (*Runner, error) {
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the clearml-agent binary for task children: %w", err)
		}
		cfg.Binary = exe
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = 5 * time.Second
	}
	return &Runner{cfg: cfg, containers: &containerSet{}}, nil
}

// WithWorker returns a Runner whose children run under another worker id and
// with extra arguments (a services-mode child: its own worker and venvs dir).
func (r *Runner) WithWorker(workerID string, extraArgs ...string) *Runner {
	c := r.cfg
	c.WorkerID = workerID
	c.Args = append(append([]string(nil), c.Args...), extraArgs...)
	return &Runner{cfg: c, containers: r.containers}
}

// Command is the child's command line for task id (without the binary).
func (r *Runner) Command(id string, o task.Options) []string {
	args := append(append([]string(nil), r.cfg.GlobalArgs...), "execute", "--id", id,
		"--events-fd", strconv.Itoa(EventsFD), "--lifeline-fd", strconv.Itoa(LifelineFD))
	if r.cfg.WorkerID != "" {
		args = append(args, "--worker-id", r.cfg.WorkerID)
	}
	if o.FromQueue {
		args = append(args, "--from-queue")
	}
	if o.Clone {
		args = append(args, "--clone")
	}
	return append(args, r.cfg.Args...)
}

// Run starts the child for task id and waits for it. Cancelling ctx aborts
// the task: the child gets SIGTERM and reports the task stopped. When the
// child dies without reporting how the task ended, the task is marked failed
// with the reason, and Run returns an error.
func (r *Runner) Run(ctx context.Context, id string, o task.Options) (task.Outcome, error) {
	if r.cfg.Docker != nil {
		return r.runDocker(ctx, id, o)
	}
	base := r.cfg.Env
	if base == nil {
		base = os.Environ()
	}
	env := withoutServiceEnv(base)
	if tok := sessionEnv(ctx, r.cfg.Token, r.cfg.Logger); tok != "" {
		env = append(env, tok)
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		return task.Outcome{TaskID: id}, fmt.Errorf("task %s: events pipe: %w", id, err)
	}
	defer evR.Close()
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		evW.Close()
		return task.Outcome{TaskID: id}, fmt.Errorf("task %s: lifeline pipe: %w", id, err)
	}
	defer lifeW.Close()

	cmd := exec.Command(r.cfg.Binary, r.Command(id, o)...)
	cmd.Env = env
	cmd.Stderr = r.cfg.Stderr
	cmd.ExtraFiles = []*os.File{evW, lifeR} // fds 3 and 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	evW.Close()
	lifeR.Close()
	if err != nil {
		return task.Outcome{TaskID: id}, r.fail(ctx, id, fmt.Sprintf("could not start the execute process %s: %v", r.cfg.Binary, err))
	}
	untrack := process.Track(cmd.Process.Pid)
	defer untrack()
	defer r.record(id, cmd.Process.Pid, "execute")()

	ev := newEvents(r.cfg.Logger, id, o, true)
	ev.record = func(pid int) func() { return r.record(id, pid, "task") }
	defer ev.untrackAll()
	read := make(chan struct{})
	go func() {
		defer close(read)
		ev.read(evR)
	}()

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	tick := time.NewTicker(r.cfg.ProgressInterval)
	defer tick.Stop()
	var werr error
supervise:
	for {
		select {
		case werr = <-waited:
			break supervise
		case <-tick.C:
			// Progress: this loop runs, the child is alive and its
			// events are being read (not stuck in a callback).
			if cmd.Process.Signal(syscall.Signal(0)) == nil && ev.serviced(r.cfg.ProgressInterval) {
				progress(o)
			}
		case <-ctx.Done():
			if cause := task.AbortCauseOf(ctx); cause != nil {
				// An abort with a reason: the child aborts its task
				// itself once it read the reason on its lifeline.
				r.cfg.Logger.Info("aborting the task through its execute process", "task", id, "pid", cmd.Process.Pid, "reason", cause.Reason)
				if err := writeAbort(lifeW, cause); err == nil {
					t := time.NewTimer(abortAckWait)
					select {
					case <-ev.ack:
						t.Stop()
						werr = <-waited
						break supervise
					case werr = <-waited:
						t.Stop()
						break supervise
					case <-t.C:
						r.cfg.Logger.Warn("the execute process did not acknowledge the abort; sending SIGTERM", "task", id)
					}
				}
			}
			r.cfg.Logger.Info("aborting the task: SIGTERM to its execute process", "task", id, "pid", cmd.Process.Pid)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			werr = <-waited
			break supervise
		}
	}
	select {
	case <-read:
	case <-time.After(5 * time.Second): // something still holds the pipe open
		evR.Close()
		<-read
	}
	if e := ev.outcome(); e != nil {
		return e.outcome()
	}
	how := "exit status 0"
	if werr != nil {
		how = werr.Error()
	}
	return task.Outcome{TaskID: id, Status: "failed"},
		r.fail(ctx, id, fmt.Sprintf("the execute process ended (%s) without reporting how the task ended", how))
}

// progress calls o.Progress when it is set.
func progress(o task.Options) {
	if o.Progress != nil {
		o.Progress()
	}
}

// abortAckWait is how long the daemon waits for a child to acknowledge an
// abort line on its lifeline before it falls back to SIGTERM (a child of an
// older binary ignores the line).
const abortAckWait = 5 * time.Second

// events collects what a child reports on its events stream.
type events struct {
	log   *slog.Logger
	id    string
	o     task.Options
	track bool // the started pid is in our pid namespace: KillAll may take it down
	// record, when set, records the task's process group; the func it
	// returns drops the record.
	record func(pid int) func()

	busy atomic.Int64 // unix nanos since which a callback runs; 0 = none

	mu      sync.Mutex
	got     *event
	untrack []func()

	ackOnce sync.Once
	ack     chan struct{} // closed on the "aborting" event
}

// serviced reports whether the reader is free to read the next event: not
// inside a callback for longer than limit.
func (ev *events) serviced(limit time.Duration) bool {
	b := ev.busy.Load()
	return b == 0 || time.Since(time.Unix(0, b)) < limit
}

func newEvents(log *slog.Logger, id string, o task.Options, track bool) *events {
	return &events{log: log, id: id, o: o, track: track, ack: make(chan struct{})}
}

// read consumes the stream until it ends.
func (ev *events) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Kind == "" {
			ev.log.Warn("unreadable event from the task child", "task", ev.id, "line", sc.Text())
			continue
		}
		ev.busy.Store(time.Now().UnixNano())
		switch e.Kind {
		case "loaded":
			if ev.o.Loaded != nil {
				ev.o.Loaded(&api.Task{ID: e.TaskID, Name: e.Name})
			}
		case "started":
			if ev.track {
				ev.mu.Lock()
				ev.untrack = append(ev.untrack, process.Track(e.PID))
				ev.mu.Unlock()
			}
			if ev.record != nil {
				forget := ev.record(e.PID)
				ev.mu.Lock()
				ev.untrack = append(ev.untrack, forget)
				ev.mu.Unlock()
			}
			if ev.o.Started != nil {
				ev.o.Started(e.PID)
			}
		case "phase":
			if ev.o.Phase != nil && e.Phase != "" {
				ev.o.Phase(e.Phase, time.Duration(e.Seconds*float64(time.Second)))
			}
		case "aborting":
			ev.ackOnce.Do(func() { close(ev.ack) })
		case "outcome":
			ev.mu.Lock()
			ev.got = &e
			ev.mu.Unlock()
		}
		ev.busy.Store(0)
	}
}

func (ev *events) outcome() *event {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return ev.got
}

func (ev *events) untrackAll() {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, u := range ev.untrack {
		u()
	}
}

// fail marks the task failed with reason (best effort) and returns reason as
// the run's error.
func (r *Runner) fail(ctx context.Context, id, reason string) error {
	if r.cfg.API != nil {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := r.cfg.API.Failed(c, api.StatusRequest{Task: id, Force: true,
			StatusReason: "agent error: " + reason, StatusMessage: "agent error"}); err != nil {
			r.cfg.Logger.Warn("could not mark the task failed", "task", id, "err", err)
		}
	}
	return fmt.Errorf("task %s: %s", id, reason)
}
