package task

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/diskguard"
	"github.com/gpufleet/clearml-agent-go/agent/logship"
	"github.com/gpufleet/clearml-agent-go/agent/process"
	"github.com/gpufleet/clearml-agent-go/agent/repo"
	"github.com/gpufleet/clearml-agent-go/agent/venv"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// API is what a task run needs from the ClearML server; *api.Client has it.
type API interface {
	GetTask(ctx context.Context, id string) (*api.Task, error)
	GetAllTasks(ctx context.Context, req api.GetAllTasksRequest) ([]api.Task, error)
	EditTask(ctx context.Context, req api.EditTaskRequest) (api.Updated, error)
	Dequeue(ctx context.Context, req api.DequeueRequest) (api.DequeueResult, error)
	Clone(ctx context.Context, req api.CloneRequest) (string, error)
	Started(ctx context.Context, req api.StatusRequest) (api.Updated, error)
	Stopped(ctx context.Context, req api.StatusRequest) (api.Updated, error)
	Failed(ctx context.Context, req api.StatusRequest) (api.Updated, error)
	Completed(ctx context.Context, req api.StatusRequest) (api.Updated, error)
	Ping(ctx context.Context, taskID string) error
	SetRequirements(ctx context.Context, taskID string, req api.Requirements) (api.Updated, error)
	AddBatch(ctx context.Context, events []api.Event) (api.AddBatchResult, error)
}

// Settings are the agent settings a task run uses. The CLI fills them from
// the merged configuration and the daemon flags.
type Settings struct {
	WorkerID string

	// Repository.
	Git          repo.Creds
	ForceSSH     bool
	SSHUser      string
	SSHPort      int
	TranslateSSH bool
	VCSCache     string        // "" disables the vcs cache
	GitTimeout   time.Duration // each clone or fetch (agent.git_timeout_sec); 0 = no limit

	// Python environment.
	PythonFallbacks        []string
	IgnoreRequestedVersion bool
	IndexURL               string
	ExtraIndexURLs         []string
	ExtraPipFlags          []string
	SystemSitePackages     bool
	VenvsDir               string // build dir: venvs, task_repository, code
	VenvsCache             string // "" disables the venv cache
	VenvsCacheMax          int

	// Packages (agent.package_manager.*).
	PackageManager            string   // type: pip, uv or poetry
	PipVersion                []string // pip_version; empty leaves pip alone
	PriorityPackages          []string
	PriorityOptionalPackages  []string
	ForceRepoRequirements     bool // force_repo_requirements_txt
	ForceOriginalRequirements bool // force_original_requirements
	PoetryArgs                []string
	InstallTimeout            time.Duration // the venv build (install_timeout_sec); 0 = no limit

	// Process.
	Env                []string // the task's base environment (nil = the agent's own)
	ExtraEnv           map[string]string
	ConfigFile         string // exported as CLEARML_CONFIG_FILE
	LogLevel           string // exported as CLEARML_LOG_LEVEL
	KeepCarriageReturn bool   // inverse of agent.suppress_carriage_return
	AbortGrace         time.Duration
	// PartialLineAfter is how long a line without '\n' (a tqdm progress bar)
	// may wait before it goes to the log as it stands; 0 = 5 s, as the
	// reference agent reads the output every 5 s.
	PartialLineAfter time.Duration
	StatusPoll       time.Duration // abort check interval; default 5 s
	PingInterval     time.Duration // tasks.ping interval; 0 = default 60 s, <0 disables

	SpoolDir string    // where log lines spill during server outages
	Echo     io.Writer // copy of every task log line (execute prints them); nil = none
	Logger   *slog.Logger
}

// Options change one run.
type Options struct {
	// Clone runs tasks.clone first and executes the clone (execute --clone).
	Clone bool
	// FromQueue is set when the daemon popped the task; otherwise (execute)
	// a queued task is dequeued first, as the Python agent does.
	FromQueue bool
	// Loaded is called with the task document once it was read.
	Loaded func(t *api.Task)
	// Started is called once the task's process runs (services mode returns
	// to polling then).
	Started func(pid int)
	// Progress, when set, is called every few seconds while the run's
	// supervision makes progress (agent/executor: the execute child lives
	// and its events are read); the daemon's watchdog feeds on it.
	Progress func()
	// Phase, when set, hears how long each setup phase took: PhaseClone,
	// PhaseVenv, PhasePip (and, in docker mode, PhaseDockerPull from the
	// daemon side).
	Phase func(phase string, d time.Duration)
}

// Setup phases reported through Options.Phase.
const (
	PhaseClone      = "clone"       // cloning or updating the repository
	PhaseVenv       = "venv"        // python -m venv
	PhasePip        = "pip"         // installing the packages (or restoring a cached venv)
	PhaseDockerPull = "docker_pull" // pulling the task's image (docker mode)
)

// AbortCause, as the cause of the cancellation of the context given to Run
// (context.WithCancelCause), is an abort the agent asks for with a reason of
// its own, e.g. the preemption drain: Note goes to the task log at once,
// and the task is marked stopped with Reason instead of "agent shutdown".
type AbortCause struct {
	Reason string // status_reason of the stopped task, e.g. "instance preempted (gce)"
	Note   string // a line for the task log; "" = none
}

func (a *AbortCause) Error() string { return "aborted: " + a.Reason }

// AbortCauseOf returns the AbortCause ctx was cancelled with, or nil.
func AbortCauseOf(ctx context.Context) *AbortCause {
	var a *AbortCause
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &a) {
		return a
	}
	return nil
}

// Outcome says how a run ended.
type Outcome struct {
	TaskID string
	Status string // the status the agent reported: completed, failed, stopped; "" when it left the status alone
	Reason string
	Exit   process.ExitResult
	Log    LogCounts // what became of the task's log lines
}

// LogCounts counts a run's task log lines.
type LogCounts struct {
	Shipped uint64 // accepted by the server
	Spooled uint64 // spilled to the spool file while the server was slow or down
	Dropped uint64 // lost: rejected for good, or the spool was full
}

// Runner runs tasks. It is safe for concurrent use (services mode).
type Runner struct {
	api API
	s   Settings
}

// NewRunner returns a Runner; zero settings get the reference defaults.
func NewRunner(c API, s Settings) *Runner {
	if s.StatusPoll <= 0 {
		s.StatusPoll = 5 * time.Second
	}
	if s.PingInterval == 0 {
		s.PingInterval = 60 * time.Second
	}
	if s.AbortGrace <= 0 {
		s.AbortGrace = 10 * time.Second
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.LogLevel == "" {
		s.LogLevel = "INFO"
	}
	return &Runner{api: c, s: s}
}

// Settings returns the runner's settings.
func (r *Runner) Settings() Settings { return r.s }

// sender adapts the client to logship.Sender.
type sender struct{ c API }

func (s sender) AddBatch(ctx context.Context, ev []api.Event) error {
	_, err := s.c.AddBatch(ctx, ev)
	var ae *api.Error
	if errors.As(err, &ae) && ae.HTTPStatus >= 400 && ae.HTTPStatus < 500 && ae.HTTPStatus != 401 && ae.HTTPStatus != 429 {
		return logship.Permanent(err)
	}
	return err
}

// run is the state of one task run.
type run struct {
	r      *Runner
	id     string
	wid    string
	log    *logship.Shipper
	task   *api.Task
	report context.Context // outlives cancellation: final status and flush

	codeRoot   string      // the task's checkout or code dir, removed after the run
	agentAbort bool        // ctx given to Run ended before the task did
	cause      *AbortCause // why the agent aborted, when it said
	started    bool        // the task's process was started

	mu          sync.Mutex
	abortReason string // "user" (tasks.stop), "changed" (someone else changed the status), "reset"
}

const (
	abortUser    = "user"
	abortChanged = "changed"
	abortReset   = "reset"
)

// Run executes task id and reports its final status. ctx cancelled means the
// agent aborts the task (it is then marked stopped). The returned error is
// only for failures to talk to the server before the task could start.
func (r *Runner) Run(ctx context.Context, id string, o Options) (Outcome, error) {
	report, cancelReport := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancelReport()

	if o.Clone {
		src, err := r.api.GetTask(ctx, id)
		if err != nil {
			return Outcome{TaskID: id}, fmt.Errorf("task %s: %w", id, err)
		}
		nid, err := r.api.Clone(ctx, api.CloneRequest{Task: id, NewTaskName: "Clone of " + src.Name})
		if err != nil {
			return Outcome{TaskID: id}, fmt.Errorf("cloning task %s: %w", id, err)
		}
		id = nid
	}
	t, err := r.api.GetTask(ctx, id)
	if err != nil {
		return Outcome{TaskID: id}, fmt.Errorf("task %s: %w", id, err)
	}
	if o.Loaded != nil {
		o.Loaded(t)
	}
	if !o.FromQueue && !o.Clone && t.Status == api.StatusQueued {
		if _, err := r.api.Dequeue(ctx, api.DequeueRequest{Task: id, NewStatus: api.StatusInProgress}); err != nil {
			r.s.Logger.Warn("could not dequeue task", "task", id, "err", err)
		}
	}

	spool := ""
	if r.s.SpoolDir != "" {
		spool = filepath.Join(r.s.SpoolDir, "spool-"+id)
	}
	ship := logship.New(logship.Config{
		Task: id, Worker: r.s.WorkerID, SpoolDir: spool, Logger: r.s.Logger, Echo: r.s.Echo,
	}, sender{r.api})
	ru := &run{r: r, id: id, wid: r.s.WorkerID, log: ship, task: t, report: report}
	defer func() { _ = ship.Close(report) }()
	// An abort with a reason says so in the task log when it happens.
	stopNote := context.AfterFunc(ctx, func() {
		if c := AbortCauseOf(ctx); c != nil && c.Note != "" {
			_ = ship.Write("WARNING", c.Note)
		}
	})

	out := ru.execute(ctx, o)
	// The agent aborted (ctx ended) when the task did not get to exit on
	// its own: setup was cut short or the process was terminated.
	ru.agentAbort = ctx.Err() != nil && (!ru.started || out.Exit.Terminated)
	ru.cause = AbortCauseOf(ctx)
	stopNote()
	if ru.codeRoot != "" {
		defer func() {
			// Read-only trees (a module cache, a checkout's .git) too.
			if err := diskguard.RemoveTaskDir(ru.codeRoot); err != nil {
				r.s.Logger.Warn("could not remove the task's build directory", "task", id, "err", err)
			}
		}()
	}
	if err := ship.Flush(report); err != nil {
		r.s.Logger.Error("could not deliver every log line before the final status", "task", id, "err", err)
	}
	ru.finish(&out)
	_ = ship.Close(report)
	st := ship.Stats()
	out.Log = LogCounts{Shipped: st.LinesSent, Spooled: st.LinesSpooled, Dropped: st.LinesDropped + st.LinesSpoolDropped}
	return out, nil
}

// phase reports how long a setup phase took, when the caller asked.
func phase(o Options, name string, start time.Time) {
	if o.Phase != nil {
		o.Phase(name, time.Since(start))
	}
}

func (ru *run) info(format string, args ...any) {
	_ = ru.log.Write("INFO", fmt.Sprintf(format, args...))
}

func (ru *run) setAbort(reason string) {
	ru.mu.Lock()
	if ru.abortReason == "" {
		ru.abortReason = reason
	}
	ru.mu.Unlock()
}

func (ru *run) aborted() string {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.abortReason
}

func (ru *run) status(req api.StatusRequest, call func(context.Context, api.StatusRequest) (api.Updated, error)) {
	req.Task = ru.id
	if req.StatusMessage == "" {
		req.StatusMessage = "Changed by clearml-agent " + ru.wid
	}
	// The final status must survive a server outage: retry every 5 s while
	// the server cannot be reached, until the report deadline (the client
	// already backs off between its own attempts).
	_, err := backoff.Retry(ru.report, func() (api.Updated, error) {
		u, err := call(ru.report, req)
		var te *api.TransportError
		if err == nil || !errors.As(err, &te) || ru.report.Err() != nil {
			return u, backoff.Permanent(err)
		}
		ru.r.s.Logger.Warn("server unreachable for the final task status, retrying", "task", ru.id, "err", err)
		return u, err
	}, backoff.WithBackOff(backoff.NewConstantBackOff(5*time.Second)), backoff.WithMaxElapsedTime(0))
	if err != nil {
		ru.r.s.Logger.Warn("could not update task status", "task", ru.id, "reason", req.StatusReason, "err", err)
	}
}

// execute does everything up to the process exit and returns the outcome
// without reporting it.
func (ru *run) execute(ctx context.Context, o Options) Outcome {
	r := ru.r
	out := Outcome{TaskID: ru.id}
	t := ru.task
	if _, err := r.api.Started(ctx, api.StatusRequest{Task: ru.id, StatusReason: "worker started execution",
		StatusMessage: "Changed by clearml-agent " + ru.wid, Force: true}); err != nil {
		out.Status, out.Reason = api.StatusFailed, "could not mark the task started: "+oneline.Of(err)
		return out
	}

	// From here on a user abort or a foreign status change cancels the work.
	work, cancelWork := context.WithCancel(ctx)
	defer cancelWork()
	go ru.watch(work, cancelWork)

	sc := t.Script
	if sc == nil {
		sc = &api.Script{}
	}
	ru.info("Executing task id [%s]:\nrepository = %s\nbranch = %s\nversion_num = %s\ntag = %s\nentry_point = %s\nworking_dir = %s",
		ru.id, repo.StripPassword(sc.Repository), sc.Branch, sc.VersionNum, sc.Tag, sc.EntryPoint, sc.WorkingDir)

	fail := func(reason string, err error) Outcome {
		if ab := ru.aborted(); ab != "" || ctx.Err() != nil {
			return out
		}
		msg := reason
		if err != nil {
			msg = reason + ": " + oneline.Of(err)
		}
		_ = ru.log.Write("ERROR", msg)
		out.Status, out.Reason = api.StatusFailed, msg
		return out
	}

	// Code.
	cloneStart := time.Now()
	codeDir, entry, err := ru.prepareCode(work, sc)
	if err != nil {
		return fail("failed cloning repository", err)
	}
	if sc.Repository != "" {
		phase(o, PhaseClone, cloneStart)
	}

	// Check the entry point before the (slow) environment setup.
	kind := entryKind(sc.Binary)
	if _, err := buildCommand(kind, &venv.Env{Python: "python3"}, codeDir, entry, nil); err != nil {
		return fail("invalid entry point", err)
	}

	// Python environment, only for python entry points.
	var env *venv.Env
	if kind == kindPython {
		reqs := ru.requirements(sc, codeDir)
		venvStart := time.Now()
		var created time.Duration
		env, err = venv.Ensure(work, venv.Spec{
			PythonBinary: sc.Binary, PythonFallbacks: r.s.PythonFallbacks, IgnoreRequestedVersion: r.s.IgnoreRequestedVersion,
			Requirements: reqs.text, RequirementsFile: reqs.file, RequirementsDir: reqs.dir,
			Manager: r.s.PackageManager, ProjectDirs: codeDirs(codeDir, ru.codeRoot), PoetryArgs: r.s.PoetryArgs,
			PipVersion: r.s.PipVersion, PriorityPackages: r.s.PriorityPackages, PriorityOptionalPackages: r.s.PriorityOptionalPackages,
			IndexURL: r.s.IndexURL, ExtraIndexURLs: r.s.ExtraIndexURLs, ExtraPipFlags: r.s.ExtraPipFlags,
			SystemSitePackages: r.s.SystemSitePackages, WorkDir: r.s.VenvsDir, CacheDir: r.s.VenvsCache,
			CacheMaxEntries: r.s.VenvsCacheMax, Env: r.baseEnv(ru.id, nil), Timeout: r.s.InstallTimeout,
			Created: func(d time.Duration) { created += d },
		}, ru.logLine)
		if err != nil {
			return fail("failed setting up the python environment", err)
		}
		// venv: creating it; pip: the rest (installs, or a cached venv).
		if o.Phase != nil {
			if created > 0 {
				o.Phase(PhaseVenv, created)
			}
			if env.Installed {
				o.Phase(PhasePip, max(time.Since(venvStart)-created, 0))
			}
		}
		if env.Installed {
			ru.reportRequirements(work, env, sc.Requirements, reqs.text)
		}
	}

	cmd, err := buildCommand(kind, env, codeDir, entry, r.baseEnv(ru.id, env))
	if err != nil {
		return fail("invalid entry point", err)
	}
	ru.info("Running task id [%s]:\n[%s]$ %s\nEnvironment setup completed successfully\nStarting Task Execution:",
		ru.id, cmd.Dir, strings.Join(append([]string{cmd.Path}, cmd.Args...), " "))
	if _, err := r.api.Started(work, api.StatusRequest{Task: ru.id, StatusReason: "worker starting task execution",
		StatusMessage: "Changed by clearml-agent " + ru.wid, Force: true}); err != nil {
		r.s.Logger.Warn("could not update task status", "task", ru.id, "err", err)
	}
	if work.Err() != nil {
		return fail("aborted before start", nil)
	}

	cmd.Sink = func(l process.Line) { _ = ru.log.Write("DEBUG", l.Text) }
	cmd.KeepCarriageReturn = r.s.KeepCarriageReturn
	cmd.CancelGrace = r.s.AbortGrace
	cmd.PartialLineAfter = cmp.Or(r.s.PartialLineAfter, 5*time.Second)
	p, err := process.Start(work, cmd)
	if err != nil {
		return fail("could not start the task", err)
	}
	ru.started = true
	if o.Started != nil {
		o.Started(p.Pid())
	}
	pingDone := make(chan struct{})
	go ru.ping(work, pingDone)
	out.Exit = p.Wait()
	close(pingDone)
	return out
}

// finish decides the final status from the exit and the abort reason and
// reports it (after the caller flushed the log).
func (ru *run) finish(out *Outcome) {
	srv := ru.r.api
	set := func(status, reason string, call func(context.Context, api.StatusRequest) (api.Updated, error)) {
		out.Status, out.Reason = status, reason
		ru.status(api.StatusRequest{StatusReason: reason}, call)
	}
	switch ab := ru.aborted(); {
	case ab == abortChanged || ab == abortReset:
		out.Status, out.Reason = "", "task status changed on the server"
	case ab == abortUser:
		set(api.StatusStopped, "task was stopped by tasks.stop", srv.Stopped)
	case ru.agentAbort && ru.cause != nil:
		// the agent aborted the task with a reason (preemption)
		set(api.StatusStopped, ru.cause.Reason, srv.Stopped)
	case ru.agentAbort || (out.Exit.Terminated && !out.Exit.NotStarted):
		// the agent aborted the task (second SIGTERM, or ctx cancelled),
		// during setup or while it ran
		set(api.StatusStopped, "aborted by clearml-agent "+ru.wid+" (agent shutdown)", srv.Stopped)
	case out.Status == api.StatusFailed: // setup failed; the reason is set
		set(api.StatusFailed, out.Reason, srv.Failed)
	case out.Status != "":
	case out.Exit.Code == 0:
		set(api.StatusCompleted, "worker execution done", srv.Completed)
	case out.Exit.Code == -2 || out.Exit.Code == 254:
		set(api.StatusStopped, "user abort", srv.Stopped)
	default:
		set(api.StatusFailed, fmt.Sprintf("worker execution exit code %d", out.Exit.Code), srv.Failed)
	}
}

// reportRequirements stores what was installed on the task, as the Python
// agent does: the freeze becomes requirements.pip, and the requested list
// (the stored one, else what was installed, e.g. the repository's
// requirements.txt) is kept once in org_pip.
func (ru *run) reportRequirements(ctx context.Context, env *venv.Env, req *api.Requirements, installed string) {
	frozen, err := venv.Freeze(ctx, env)
	if err != nil {
		ru.r.s.Logger.Debug("pip freeze failed", "task", ru.id, "err", err)
		return
	}
	var out api.Requirements
	if req != nil {
		out = *req
	}
	if out.OrgPip == "" {
		out.OrgPip = out.Pip
	}
	if out.OrgPip == "" {
		out.OrgPip = installed
	}
	out.Pip = frozen
	if _, err := ru.r.api.SetRequirements(ctx, ru.id, out); err != nil {
		ru.r.s.Logger.Debug("tasks.set_requirements failed", "task", ru.id, "err", err)
	}
}

// taskRequirements is what pip installs: the text, the file it was read
// from ("" for the task's stored requirements) and the directory relative
// paths in it resolve against.
type taskRequirements struct{ text, file, dir string }

// requirements picks the task's requirements (reference 3.1 step 8, 3.4
// step 3): script.requirements.pip (org_pip with force_original_requirements),
// or, when the task stores none or with force_repo_requirements_txt, the
// repository's requirements.txt: the working dir's, else the repository
// root's. A pip key that is there but empty means "install nothing", as in
// the Python agent.
func (ru *run) requirements(sc *api.Script, codeDir string) taskRequirements {
	s := ru.r.s
	stored := ""
	hasStored := false
	if rq := sc.Requirements; rq != nil {
		stored, hasStored = rq.Pip, rq.HasPip || strings.TrimSpace(rq.Pip) != ""
		if s.ForceOriginalRequirements && strings.TrimSpace(rq.OrgPip) != "" {
			ru.info("agent.package_manager.force_original_requirements: installing the task's original requirements (org_pip)")
			stored = rq.OrgPip
		}
	}
	if hasStored && !s.ForceRepoRequirements {
		return taskRequirements{text: stored, dir: ru.codeRoot}
	}
	for _, d := range codeDirs(codeDir, ru.codeRoot) {
		p := filepath.Join(d, "requirements.txt")
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		rel, _ := filepath.Rel(ru.codeRoot, p)
		if hasStored {
			ru.info("agent.package_manager.force_repo_requirements_txt: using the repository's %s instead of the task's requirements", rel)
		} else {
			ru.info("The task stores no requirements: using the repository's %s", rel)
		}
		return taskRequirements{text: string(b), file: p, dir: d}
	}
	if hasStored {
		ru.info("agent.package_manager.force_repo_requirements_txt: the repository has no requirements.txt; the task's stored requirements are not installed")
	}
	return taskRequirements{dir: ru.codeRoot}
}

// codeDirs is the working dir, then the repository root when it differs.
func codeDirs(codeDir, root string) []string {
	if filepath.Clean(codeDir) == filepath.Clean(root) {
		return []string{codeDir}
	}
	return []string{codeDir, root}
}

// logLine sends a setup progress line to the task log.
func (ru *run) logLine(s string) { _ = ru.log.Write("INFO", s) }

// watch polls the task for aborts (tasks.stop) and foreign status changes
// until ctx ends, cancelling the work when one is seen.
func (ru *run) watch(ctx context.Context, cancel context.CancelFunc) {
	tick := time.NewTicker(ru.r.s.StatusPoll)
	defer tick.Stop()
	created := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ts, err := ru.r.api.GetAllTasks(ctx, api.GetAllTasksRequest{ID: []string{ru.id},
			OnlyFields: []string{"status", "status_message"}, SearchHidden: true})
		if err != nil || len(ts) == 0 {
			continue
		}
		st := ts[0]
		switch {
		case st.Status == api.StatusInProgress && strings.Contains(st.StatusMessage, "stopping"):
			ru.setAbort(abortUser)
			_ = ru.log.Write("ERROR", fmt.Sprintf("User aborted: stopping task (%s) %s", ru.id, ru.task.Name))
		case st.Status == api.StatusCreated:
			created++
			if created <= 4 {
				_ = ru.log.Write("WARNING", fmt.Sprintf("Task %s was reset! (%d/4)", ru.id, created))
				continue
			}
			ru.setAbort(abortReset)
		case st.Status == api.StatusInProgress:
			created = 0
			continue
		default:
			ru.setAbort(abortChanged)
			_ = ru.log.Write("WARNING", fmt.Sprintf("Task %s status changed to %s: stopping it", ru.id, st.Status))
		}
		cancel()
		return
	}
}

// ping calls tasks.ping every PingInterval until done.
func (ru *run) ping(ctx context.Context, done <-chan struct{}) {
	if ru.r.s.PingInterval < 0 {
		return
	}
	tick := time.NewTicker(ru.r.s.PingInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-tick.C:
			if err := ru.r.api.Ping(ctx, ru.id); err != nil {
				ru.r.s.Logger.Debug("tasks.ping failed", "task", ru.id, "err", err)
			}
		}
	}
}

// prepareCode clones the repository (or prepares an empty code dir) and
// returns the working directory and entry point.
func (ru *run) prepareCode(ctx context.Context, sc *api.Script) (dir, entry string, err error) {
	r := ru.r
	entry, wd := sc.EntryPoint, sc.WorkingDir
	if wd == "" {
		if e, w, ok := strings.Cut(entry, ":"); ok && !strings.Contains(entry, "://") {
			entry, wd = e, w
		}
	}
	if wd == "" {
		wd = "."
	}
	var root string
	if sc.Repository == "" {
		root = filepath.Join(r.s.VenvsDir, "code", ru.id)
		if err := os.RemoveAll(root); err != nil {
			return "", "", err
		}
		if err := os.MkdirAll(root, 0o755); err != nil {
			return "", "", err
		}
		if sc.Diff != "" && !repo.IsGitDiff(sc.Diff) {
			if err := writeScript(filepath.Join(root, wd), entry, sc.Diff); err != nil {
				return "", "", err
			}
		}
	} else {
		name := strings.TrimSuffix(filepath.Base(strings.TrimRight(sc.Repository, "/")), ".git")
		if name == "" || name == "." || name == "/" {
			name = "repo"
		}
		dest := filepath.Join(r.s.VenvsDir, "task_repository", name+"."+ru.id)
		ru.info("Using repository %s", repo.StripPassword(sc.Repository))
		res, err := repo.Prepare(ctx, repo.Spec{URL: sc.Repository, Branch: sc.Branch, Tag: sc.Tag, Commit: sc.VersionNum,
			Diff: sc.Diff, Creds: r.s.Git, ForceSSH: r.s.ForceSSH, SSHUser: r.s.SSHUser, SSHPort: r.s.SSHPort,
			TranslateSSH: r.s.TranslateSSH, CacheDir: r.s.VCSCache, Timeout: r.s.GitTimeout}, dest, ru.logLine)
		if err != nil {
			return "", "", err
		}
		root = res.Dir
		if res.Script != "" {
			if err := writeScript(filepath.Join(root, wd), entry, res.Script); err != nil {
				return "", "", err
			}
		}
		if sc.VersionNum == "" && res.Commit != "" {
			if _, err := r.api.EditTask(ctx, api.EditTaskRequest{Task: ru.id, Force: true,
				Fields: map[string]any{"script": map[string]any{"version_num": res.Commit}}}); err != nil {
				r.s.Logger.Debug("could not store the commit on the task", "task", ru.id, "err", err)
			}
		}
	}
	ru.codeRoot = root
	dir = filepath.Join(root, wd)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", "", fmt.Errorf("working directory %q not found in the repository; fix script.working_dir", wd)
	}
	return dir, entry, nil
}

func writeScript(dir, entry, text string) error {
	if entry == "" {
		return errors.New("task has a script but no entry point (script.entry_point)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, entry), []byte(text), 0o644)
}

// baseEnv is the task's environment: the agent's, the configured extras and
// the variables the reference agent sets; with a venv, its bin first on PATH.
func (r *Runner) baseEnv(taskID string, env *venv.Env) []string {
	base := r.s.Env
	if base == nil {
		base = os.Environ()
	}
	m := make(map[string]string, len(base)+16)
	order := make([]string, 0, len(base)+16)
	set := func(k, v string) {
		if _, ok := m[k]; !ok {
			order = append(order, k)
		}
		m[k] = v
	}
	for _, kv := range base {
		if k, v, ok := strings.Cut(kv, "="); ok {
			set(k, v)
		}
	}
	for k, v := range r.s.ExtraEnv {
		set(k, v)
	}
	delete(m, "PYTHONPATH")
	set("CLEARML_TASK_ID", taskID)
	set("TRAINS_TASK_ID", taskID)
	set("CLEARML_WORKER_ID", r.s.WorkerID)
	set("CLEARML_LOG_LEVEL", r.s.LogLevel)
	set("CLEARML_LOG_TASK_TO_BACKEND", "0")
	set("PYTHONUNBUFFERED", "1")
	set("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
	if r.s.ConfigFile != "" {
		set("CLEARML_CONFIG_FILE", r.s.ConfigFile)
	}
	if env != nil {
		set("VIRTUAL_ENV", env.Dir)
		set("PATH", filepath.Join(env.Dir, "bin")+string(os.PathListSeparator)+m["PATH"])
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		if v, ok := m[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}
