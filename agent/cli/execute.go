package cli

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/agent/executor"
	"github.com/gpufleet/clearml-agent-go/agent/task"
	"github.com/gpufleet/clearml-agent-go/agent/workerid"
)

// executeFlags are execute's settings. The hidden ones are set by the daemon,
// which runs every task as an execute child (agent/executor).
type executeFlags struct {
	id       string
	clone    bool
	gpus     string
	cpuOnly  bool
	logLevel string

	workerID   string // the daemon's worker id (or a services child's)
	fromQueue  bool   // the daemon popped the task: no dequeue
	eventsFD   int    // report loaded/started/outcome to the daemon
	lifelineFD int    // end of file: the daemon is gone, abort
	venvsDir   string // services mode: each service its own build dir
	stateDir   string // the daemon's state directory (log spool)
	sshFrom    string // docker mode: the read-only copy of the host's ~/.ssh
	echoErr    bool   // print the task's lines on stderr (execute --docker by hand)
	docker     string // --docker value
	dockerSet  bool
}

func registerExecute(app *kingpin.Application, g *Globals) {
	var f executeFlags
	cmd := app.Command("execute", "Run one task now, without a queue; its output is printed and sent to the server. "+
		"The exit status is the task's. SIGTERM or Ctrl-C aborts the task (SIGTERM to it, the grace period, SIGKILL) and marks it stopped.")
	cmd.Flag("id", "The task id.").Required().StringVar(&f.id)
	cmd.Flag("clone", "Clone the task and run the clone.").BoolVar(&f.clone)
	cmd.Flag("gpus", "GPUs for the task (CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES).").StringVar(&f.gpus)
	cmd.Flag("cpu-only", "Run the task without GPUs.").Envar("CLEARML_CPU_ONLY").BoolVar(&f.cpuOnly)
	cmd.Flag("log-level", "Log level of the agent and of the task (CLEARML_LOG_LEVEL).").Default("INFO").StringVar(&f.logLevel)
	cmd.Flag("docker", "Run the task in a container: its own image, else this one, else agent.default_docker.image.").
		PlaceHolder("IMAGE").IsSetByUser(&f.dockerSet).StringVar(&f.docker)
	cmd.Flag("worker-id", "Worker id the task runs under (set by the daemon).").Hidden().StringVar(&f.workerID)
	cmd.Flag("from-queue", "The daemon pulled the task from a queue.").Hidden().BoolVar(&f.fromQueue)
	cmd.Flag("events-fd", "Descriptor for the daemon's events pipe.").Hidden().Default("-1").IntVar(&f.eventsFD)
	cmd.Flag("lifeline-fd", "Descriptor whose end of file means the daemon is gone.").Hidden().Default("-1").IntVar(&f.lifelineFD)
	cmd.Flag("ssh-from", "Copy this directory to ~/.ssh first (docker mode).").Hidden().StringVar(&f.sshFrom)
	cmd.Flag("echo-stderr", "Print the task's output on stderr.").Hidden().BoolVar(&f.echoErr)
	cmd.Flag("venvs-dir", "Build directory instead of agent.venvs_dir (services mode).").Hidden().StringVar(&f.venvsDir)
	cmd.Flag("state-dir", "The daemon's state directory.").Hidden().StringVar(&f.stateDir)
	g.Handle(cmd, func(ctx context.Context) error { return runExecute(ctx, g, &f) })
}

func runExecute(ctx context.Context, g *Globals, f *executeFlags) error {
	// From the daemon: report to it, and abort when it is gone. Both pipes
	// are taken before anything can fail, so the daemon hears the outcome.
	var rep *executor.Reporter
	if f.eventsFD >= 0 {
		r, err := executor.OpenReporter(f.eventsFD)
		if err != nil {
			return err
		}
		rep = r
		defer rep.Close()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if f.lifelineFD >= 0 {
		// End of file: the daemon is gone. An abort line: the daemon
		// aborts the task with a reason (preemption); the task is marked
		// stopped with it.
		ctx2, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		abort := func(c *task.AbortCause) {
			cancel(c)
			rep.Aborting()
		}
		if err := executor.Lifeline(f.lifelineFD, func() { cancel(nil) }, abort); err != nil {
			return err
		}
		ctx = ctx2
	}
	run := execute
	if f.dockerSet && rep == nil {
		run = executeInDocker
	}
	out, err := run(ctx, g, f, rep)
	rep.Outcome(out, err)
	if err != nil {
		return err
	}
	if rep == nil { // the daemon prints its own line for its children
		fmt.Fprintf(g.Stderr, "task %s: %s (%s)\n", out.TaskID, cmp.Or(out.Status, "-"), out.Reason)
	}
	switch {
	case out.Exit.Code > 0:
		return &ExitError{Code: out.Exit.Code}
	case out.Status == "failed" || out.Exit.Code < 0:
		return &ExitError{Code: 1}
	}
	return nil
}

// executeEnv is what both ways of running execute share: the
// configuration, the logger, the worker id, the API client (logged in unless
// the daemon handed its session token over) and a state directory.
type executeEnv struct {
	cfg      *config.Config
	log      *slog.Logger
	wid      string
	client   *api.Client
	stateDir string
	cleanup  func()
}

func newExecuteEnv(ctx context.Context, g *Globals, f *executeFlags) (*executeEnv, error) {
	cfg, err := g.LoadConfig()
	if err != nil {
		return nil, err
	}
	e := &executeEnv{cfg: cfg, log: newLogger(g, f.logLevel), wid: f.workerID, stateDir: f.stateDir, cleanup: func() {}}
	a := cfg.Agent()
	if e.wid == "" {
		e.wid = workerid.For(workerid.Options{WorkerID: a.WorkerID, WorkerName: a.WorkerName, Getenv: g.Getenv, Mode: workerid.Execute})
	}
	if e.client, err = newClient(g, cfg, nil, e.log); err != nil {
		return nil, err
	}
	if g.Getenv("CLEARML_AUTH_TOKEN") == "" {
		// By hand: fail fast on bad credentials. A daemon child starts
		// with the daemon's session token and needs no login.
		if _, err := e.client.Login(ctx); err != nil {
			return nil, err
		}
	}
	if e.stateDir == "" {
		dir, err := os.MkdirTemp(g.TempDir(), "clearml-agent-execute-")
		if err != nil {
			return nil, fmt.Errorf("a private state directory for execute: %w; set TMPDIR to a writable directory", err)
		}
		e.stateDir, e.cleanup = dir, func() { os.RemoveAll(dir) }
	}
	return e, nil
}

func execute(ctx context.Context, g *Globals, f *executeFlags, rep *executor.Reporter) (task.Outcome, error) {
	none := task.Outcome{TaskID: f.id}
	e, err := newExecuteEnv(ctx, g, f)
	if err != nil {
		return none, err
	}
	defer e.cleanup()
	echo := g.Stdout
	switch {
	case f.echoErr:
		echo = g.Stderr
	case rep != nil:
		echo = nil // the daemon's children send the log to the server only
	}
	if f.sshFrom != "" {
		if err := executor.InstallSSH(f.sshFrom, g.Home()); err != nil {
			return none, err
		}
	}
	s := taskSettings(g, e.cfg, e.wid, e.stateDir, gpuEnv(f.gpus, f.cpuOnly || e.cfg.Agent().CPUOnly), echo, e.log)
	s.LogLevel = f.logLevel
	if f.venvsDir != "" {
		s.VenvsDir = f.venvsDir
	}
	o := task.Options{Clone: f.clone, FromQueue: f.fromQueue}
	if rep != nil {
		o.Loaded = func(t *api.Task) { rep.Loaded(t) }
		o.Started = rep.Started
		o.Phase = rep.Phase
	}
	return task.NewRunner(e.client, s).Run(ctx, f.id, o)
}

// executeInDocker is `execute --docker` by hand: the same container a daemon
// in docker mode would start, with the task's output on stderr.
func executeInDocker(ctx context.Context, g *Globals, f *executeFlags, _ *executor.Reporter) (task.Outcome, error) {
	none := task.Outcome{TaskID: f.id}
	e, err := newExecuteEnv(ctx, g, f)
	if err != nil {
		return none, err
	}
	defer e.cleanup()
	dc, connect, err := newDockerConfig(g, e.cfg, dockerMode{cli: f.docker, workerID: e.wid, gpus: f.gpus,
		cpuOnly: f.cpuOnly || e.cfg.Agent().CPUOnly, logLevel: f.logLevel, stateDir: e.stateDir, echo: true}, e.log)
	if err != nil {
		return none, err
	}
	if _, err := connect(ctx); err != nil {
		return none, err
	}
	r, err := executor.New(executor.Config{WorkerID: e.wid, Token: e.client.Token, API: e.client, Editor: e.client,
		Stderr: g.Stderr, Logger: e.log, Docker: dc})
	if err != nil {
		return none, err
	}
	return r.Run(ctx, f.id, task.Options{Clone: f.clone})
}
