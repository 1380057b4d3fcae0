package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/docker"
	"github.com/gpufleet/clearml-agent-go/agent/task"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// DockerConfig runs the execute children in containers: the agent's own
// static binary, bind-mounted read-only, runs `execute` inside the task's
// image and reports on its stdout (events) and stdin (lifeline).
type DockerConfig struct {
	Engine *docker.Engine

	// Spec builds the container of task t (agent/docker.Build with the
	// configuration); executeArgs are the arguments of the agent binary
	// inside the container ("execute --id T ..."), which Spec may extend.
	Spec func(ctx context.Context, t *api.Task, workerID string, executeArgs []string) (*ContainerSpec, error)

	// ExecuteArgs are extra execute flags inside the container (--log-level).
	ExecuteArgs []string

	// StopGrace is how long an aborted container gets between SIGTERM and
	// SIGKILL: the agent inside needs the task's abort grace period plus the
	// time to report the task stopped.
	StopGrace time.Duration

	// Detached leaves the container running when this process goes away
	// (services mode: the service outlives an agent restart), so it gets no
	// lifeline; it is still removed once it ended while watched.
	Detached bool
}

// ContainerSpec is what docker mode creates for one task.
type ContainerSpec struct {
	Image     string
	Name      string
	Config    *container.Config
	Host      *container.HostConfig
	Network   *network.NetworkingConfig
	ForcePull bool
	Log       []string // lines for the task log before the container starts (image choice, warnings)
	// WriteBack, when set, is written into the task's container section
	// (tasks.edit, force) before it runs: the agent's default image (or a
	// match rule's) becomes the task's own, as the Python agent does.
	WriteBack *api.Container
}

// runDocker runs task id's execute child in a container.
func (r *Runner) runDocker(ctx context.Context, id string, o task.Options) (task.Outcome, error) {
	d := r.cfg.Docker
	tl := &taskLog{api: r.cfg.API, task: id, worker: r.cfg.WorkerID}
	t, err := r.cfg.API.GetTask(ctx, id)
	if err != nil {
		return task.Outcome{TaskID: id}, r.fail(ctx, id, "reading the task for its container: "+oneline.Of(err))
	}
	if o.Loaded != nil {
		o.Loaded(t)
	}
	args := []string{"execute", "--id", id, "--events-fd", "1", "--worker-id", r.cfg.WorkerID}
	if !d.Detached {
		args = append(args, "--lifeline-fd", "0")
	}
	if o.FromQueue {
		args = append(args, "--from-queue")
	}
	if o.Clone {
		args = append(args, "--clone")
	}
	args = append(args, d.ExecuteArgs...)
	spec, err := d.Spec(ctx, t, r.cfg.WorkerID, args)
	if err != nil {
		tl.line("ERROR", err.Error())
		return task.Outcome{TaskID: id, Status: "failed"}, r.fail(ctx, id, oneline.Of(err))
	}
	for _, l := range spec.Log {
		tl.line("INFO", l)
	}
	if wb := spec.WriteBack; wb != nil && r.cfg.Editor != nil {
		if _, err := r.cfg.Editor.EditTask(ctx, api.EditTaskRequest{Task: id, Force: true, Fields: map[string]any{
			"container": map[string]any{"image": wb.Image, "arguments": wb.Arguments, "setup_shell_script": wb.SetupShellScript}}}); err != nil {
			r.cfg.Logger.Warn("could not write the container into the task", "task", id, "err", err)
		}
	}
	// Each line of the pull is progress; a registry that stops answering
	// sends none, and the daemon's watchdog sees it.
	pullStart := time.Now()
	if err := d.Engine.EnsureImage(ctx, spec.Image, spec.ForcePull, func(l string) { tl.line("INFO", l); progress(o) }); err != nil {
		tl.line("ERROR", err.Error())
		return task.Outcome{TaskID: id, Status: "failed"}, r.fail(ctx, id, oneline.Of(err))
	}
	if o.Phase != nil {
		o.Phase(task.PhaseDockerPull, time.Since(pullStart))
	}
	tl.flush(ctx)
	if env := sessionEnv(ctx, r.cfg.Token, r.cfg.Logger); env != "" {
		spec.Config.Env = append(spec.Config.Env, env)
	}
	spec.Config.AttachStdout, spec.Config.AttachStderr = true, true
	if !d.Detached {
		// The lifeline: the container's stdin stays open while this
		// process is attached, and closes when it goes away.
		spec.Config.OpenStdin, spec.Config.StdinOnce, spec.Config.AttachStdin = true, true, true
	}
	bg := context.WithoutCancel(ctx)
	c, err := d.Engine.Create(ctx, spec.Name, spec.Config, spec.Host, spec.Network)
	if err != nil {
		return task.Outcome{TaskID: id, Status: "failed"}, r.fail(ctx, id, oneline.Of(err))
	}
	defer r.containers.add(c.ID)()
	defer func() {
		rc, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		if err := c.Remove(rc); err != nil {
			r.cfg.Logger.Warn("could not remove the task's container", "task", id, "container", c.ID, "err", err)
		}
	}()

	ev := newEvents(r.cfg.Logger, id, o, false)
	evR, evW := io.Pipe()
	read := make(chan struct{})
	go func() {
		defer close(read)
		ev.read(evR)
		_, _ = io.Copy(io.Discard, evR)
	}()
	stdin, streamsDone, err := c.Attach(bg, !d.Detached, evW, r.cfg.Stderr)
	if err != nil {
		evW.Close()
		return task.Outcome{TaskID: id, Status: "failed"}, r.fail(ctx, id, oneline.Of(err))
	}
	defer stdin.Close()
	if err := c.Start(ctx); err != nil {
		evW.Close()
		tl.line("ERROR", err.Error())
		tl.flush(bg)
		return task.Outcome{TaskID: id, Status: "failed"}, r.fail(ctx, id, oneline.Of(err))
	}
	r.cfg.Logger.Info("task container started", "task", id, "container", shortID(c.ID), "image", spec.Image)

	waited := make(chan struct{})
	var code int
	var werr error
	go func() {
		defer close(waited)
		code, werr = c.Wait(bg)
	}()
	abort := ctx.Done()
	if d.Detached {
		abort = nil // a service runs on whatever happens to this agent
	}
	tick := time.NewTicker(r.cfg.ProgressInterval)
	defer tick.Stop()
supervise:
	for {
		select {
		case <-waited:
			break supervise
		case <-tick.C:
			// Progress: the engine's wait is open and the events are
			// being read.
			if ev.serviced(r.cfg.ProgressInterval) {
				progress(o)
			}
		case <-abort:
			if cause := task.AbortCauseOf(ctx); cause != nil && writeAbort(stdin, cause) == nil {
				// An abort with a reason: the agent inside aborts its
				// task itself once it read the reason on its stdin.
				r.cfg.Logger.Info("aborting the task through the agent in its container", "task", id, "container", shortID(c.ID), "reason", cause.Reason)
				t := time.NewTimer(abortAckWait)
				select {
				case <-ev.ack:
					t.Reset(d.StopGrace)
					select {
					case <-waited:
						t.Stop()
						break supervise
					case <-t.C:
					}
				case <-waited:
					t.Stop()
					break supervise
				case <-t.C:
				}
			}
			r.cfg.Logger.Info("aborting the task: stopping its container", "task", id, "container", shortID(c.ID), "grace", d.StopGrace.String())
			if err := c.Stop(bg, d.StopGrace); err != nil {
				r.cfg.Logger.Warn("stopping the container failed", "task", id, "err", err)
			}
			<-waited
			break supervise
		}
	}
	select {
	case <-streamsDone:
	case <-time.After(10 * time.Second):
	}
	evW.Close()
	<-read
	if e := ev.outcome(); e != nil {
		return e.outcome()
	}
	how := fmt.Sprintf("exit code %d", code)
	if werr != nil {
		how = oneline.Of(werr)
	}
	reason := fmt.Sprintf("the task's container (%s) ended (%s) without reporting how the task ended", spec.Image, how)
	tl.line("ERROR", reason)
	tl.flush(bg)
	return task.Outcome{TaskID: id, Status: "failed"}, r.fail(ctx, id, reason)
}

// Recover removes the containers an earlier run of this worker left behind
// (it crashed or was killed while a task ran) and marks their tasks failed,
// if the server still has them running. It returns how many it removed.
func (r *Runner) Recover(ctx context.Context) (int, error) {
	d := r.cfg.Docker
	if d == nil {
		return 0, nil
	}
	cs, err := d.Engine.Labelled(ctx, docker.LabelWorker, r.cfg.WorkerID)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, c := range cs {
		id := c.Labels[docker.LabelTask]
		if err := d.Engine.Remove(ctx, c.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
		r.cfg.Logger.Warn("removed a container left by an earlier run of this worker", "container", shortID(c.ID), "task", id, "state", c.State)
		if id == "" {
			continue
		}
		t, err := r.cfg.API.GetTask(ctx, id)
		if err != nil || t.Status != api.StatusInProgress {
			continue
		}
		reason := "the agent restarted while the task ran; its container " + shortID(c.ID) + " was removed"
		tl := &taskLog{api: r.cfg.API, task: id, worker: r.cfg.WorkerID}
		tl.line("ERROR", reason)
		tl.flush(ctx)
		_ = r.fail(ctx, id, reason)
	}
	return n, errors.Join(errs...)
}

// RunningServices counts the service containers of this worker that run
// now (services mode in docker: the cap counts them, also those started
// before an agent restart).
func (r *Runner) RunningServices(ctx context.Context) (int, error) {
	cs, err := r.services(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cs {
		if c.State == "running" || c.State == "created" || c.State == "restarting" {
			n++
		}
	}
	return n, nil
}

// services lists this worker's service containers (labelled with it as the
// parent, under a worker id of their own).
func (r *Runner) services(ctx context.Context) ([]container.Summary, error) {
	d := r.cfg.Docker
	if d == nil {
		return nil, nil
	}
	cs, err := d.Engine.Labelled(ctx, docker.LabelParentWorker, r.cfg.WorkerID)
	if err != nil {
		return nil, err
	}
	out := cs[:0]
	for _, c := range cs {
		if c.Labels[docker.LabelWorker] != r.cfg.WorkerID {
			out = append(out, c)
		}
	}
	return out, nil
}

// AdoptServices takes over the service containers an earlier run of this
// worker left running (they outlive an agent restart): each is watched and
// removed once it ends, as if this agent had started it; ended ones are
// removed now. It returns how many it adopted.
func (r *Runner) AdoptServices(ctx context.Context) (int, error) {
	cs, err := r.services(ctx)
	if err != nil {
		return 0, err
	}
	d := r.cfg.Docker
	n := 0
	for _, c := range cs {
		id, task := c.ID, c.Labels[docker.LabelTask]
		if c.State != "running" && c.State != "created" && c.State != "restarting" {
			if err := d.Engine.Remove(ctx, id); err != nil {
				r.cfg.Logger.Warn("could not remove an ended service container", "container", shortID(id), "err", err)
			}
			continue
		}
		n++
		r.cfg.Logger.Info("adopted a running service container", "container", shortID(id), "task", task, "worker", c.Labels[docker.LabelWorker])
		forget := r.containers.add(id)
		go func() {
			defer forget()
			bg := context.WithoutCancel(ctx)
			code, err := d.Engine.Wait(bg, id)
			r.cfg.Logger.Info("adopted service ended", "container", shortID(id), "task", task, "exit_code", code, "err", err)
			if err := d.Engine.Remove(bg, id); err != nil {
				r.cfg.Logger.Warn("could not remove an ended service container", "container", shortID(id), "err", err)
			}
		}()
	}
	return n, nil
}

// RemoveEndedServices removes this worker's service containers that have
// ended (an agent that stops leaves running services behind, but not the
// remains of finished ones). It returns how many it removed.
func (r *Runner) RemoveEndedServices(ctx context.Context) (int, error) {
	cs, err := r.services(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, c := range cs {
		if c.State == "running" || c.State == "created" || c.State == "restarting" {
			continue
		}
		if err := r.cfg.Docker.Engine.Remove(ctx, c.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// sessionEnv is CLEARML_AUTH_TOKEN=<the daemon's token>, or "".
func sessionEnv(ctx context.Context, tok func(context.Context) (string, error), log interface {
	Debug(string, ...any)
}) string {
	if tok == nil {
		return ""
	}
	t, err := tok(ctx)
	if err != nil || t == "" {
		if err != nil {
			log.Debug("no session token for the task child; it logs in itself", "err", err)
		}
		return ""
	}
	return "CLEARML_AUTH_TOKEN=" + t
}

// taskLog writes the daemon side's own lines to the task log (what happens
// before the agent inside the container runs), in order, as the Python agent
// does for its docker notices.
type taskLog struct {
	api    API
	task   string
	worker string

	mu      sync.Mutex
	pending []api.Event
	seq     int64
}

func (l *taskLog) line(level, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.pending = append(l.pending, api.Event{Type: "log", Level: level, Task: l.task, Worker: l.worker,
		Msg: msg, Timestamp: time.Now().UnixMilli()})
	if len(l.pending) >= 50 {
		l.sendLocked(context.Background())
	}
}

func (l *taskLog) flush(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sendLocked(ctx)
}

func (l *taskLog) sendLocked(ctx context.Context) {
	if len(l.pending) == 0 {
		return
	}
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, _ = l.api.AddBatch(c, l.pending)
	l.pending = nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
