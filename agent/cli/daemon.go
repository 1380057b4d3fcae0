package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/docker"
	"github.com/gpufleet/clearml-agent-go/agent/doctor"
	"github.com/gpufleet/clearml-agent-go/agent/executor"
	"github.com/gpufleet/clearml-agent-go/agent/gpu"
	"github.com/gpufleet/clearml-agent-go/agent/instance"
	"github.com/gpufleet/clearml-agent-go/agent/metrics"
	"github.com/gpufleet/clearml-agent-go/agent/process"
	"github.com/gpufleet/clearml-agent-go/agent/stats"
	"github.com/gpufleet/clearml-agent-go/agent/worker"
	"github.com/gpufleet/clearml-agent-go/agent/workerid"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
	"github.com/gpufleet/clearml-agent-go/internal/sdnotify"
)

// daemonFlags are the daemon's command-line settings.
type daemonFlags struct {
	queues        []string
	orderFairness bool
	createQueue   bool
	gpus          string
	cpuOnly       bool
	services      string // "" off, "-1" unlimited, else N
	foreground    bool
	detached      bool
	stop          []string
	status        bool
	logLevel      string
	pollInterval  int
	tags          []string
	stateDir      string
	docker        string // --docker value: "" or "image [args...]"
	dockerSet     bool

	metricsListen   string // --metrics-listen host:port; "" = no metrics
	metricsRequired bool   // refuse to start when metricsListen cannot be served
}

// exitAtOnce is the exit status after the third stop signal (128 + SIGINT,
// what a shell reports for an interrupted command).
const exitAtOnce = 130

const signalHelp = `Signals: the first SIGTERM or SIGINT drains (finish the running task, take no new one, then exit); ` +
	`a second one aborts the running task (SIGTERM to its process group, the grace period, SIGKILL) and marks it stopped; ` +
	`a third exits at once. SIGHUP reloads the configuration for the next task.`

func registerDaemon(app *kingpin.Application, g *Globals) {
	var f daemonFlags
	cmd := app.Command("daemon", "Poll queues and run their tasks. "+signalHelp)
	cmd.Flag("queue", "Queues to pull tasks from, names or ids, in priority order (--queue high low). Default: the server's default queue.").
		Envar("CLEARML_AGENT_QUEUES").StringsVar(&f.queues)
	cmd.Flag("order-fairness", "Pull from the queues in round robin instead of priority order.").BoolVar(&f.orderFairness)
	cmd.Flag("create-queue", "Create queues that do not exist.").BoolVar(&f.createQueue)
	cmd.Flag("gpus", "GPUs for the tasks (sets CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES): 0, 0,1, all, or MIG ids like 0:1.").
		StringVar(&f.gpus)
	cmd.Flag("cpu-only", "Run tasks without GPUs.").Envar("CLEARML_CPU_ONLY").BoolVar(&f.cpuOnly)
	cmd.Flag("services-mode", "Start each task and go on polling at once (a process, or a container with --docker). An optional N caps how many run (--services-mode 5).").
		PlaceHolder("N").StringVar(&f.services)
	cmd.Flag("docker", "Run each task in a container: the task's image, else this image (with its arguments, quoted: \"img --ipc=host\"), "+
		"else agent.default_docker.image. The agent's own static binary runs the task inside; python, git and pip come from the image.").
		PlaceHolder("IMAGE").IsSetByUser(&f.dockerSet).StringVar(&f.docker)
	cmd.Flag("foreground", "Run in the foreground, logging to stderr (what systemd units use).").BoolVar(&f.foreground)
	cmd.Flag("detached", "Run in the background; pid and log files go to the state directory.").BoolVar(&f.detached)
	cmd.Flag("stop", "Stop a running agent (by worker id; with none, the only one running) and exit.").PlaceHolder("WORKER_ID").StringsVar(&f.stop)
	cmd.Flag("status", "Print the agents running on this machine and exit.").BoolVar(&f.status)
	cmd.Flag("log-level", "Log level of the agent and of tasks (CLEARML_LOG_LEVEL).").Default("INFO").
		EnumVar(&f.logLevel, "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL", "debug", "info", "warn", "warning", "error", "critical")
	cmd.Flag("polling-interval", "Seconds between queue polls (at least 5; CLEARML_AGENT_QUEUE_POLL_FREQ_SEC may set less).").IntVar(&f.pollInterval)
	cmd.Flag("child-report-tags", "Tags for this worker's status reports.").StringsVar(&f.tags)
	cmd.Flag("state-dir", "Where pid and log files live (default $CLEARML_AGENT_STATE_DIR, $STATE_DIRECTORY, /var/lib/clearml-agent as root).").
		StringVar(&f.stateDir)
	cmd.Flag("metrics-listen", "Serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9101); off by default. "+
		"An address in use is logged once and the agent runs without metrics (see docs/operations.md).").
		PlaceHolder("HOST:PORT").Envar("CLEARML_AGENT_METRICS_LISTEN").StringVar(&f.metricsListen)
	cmd.Flag("metrics-required", "Refuse to start when the --metrics-listen address cannot be served.").
		Envar("CLEARML_AGENT_METRICS_REQUIRED").BoolVar(&f.metricsRequired)
	g.Handle(cmd, func(ctx context.Context) error { return runDaemon(ctx, g, &f) })
}

func runDaemon(ctx context.Context, g *Globals, f *daemonFlags) error {
	stateDir := f.stateDir
	if stateDir == "" {
		stateDir = instance.StateDir(g.Getenv, g.Home())
	}
	if f.status {
		return printRunning(g.Stdout, stateDir)
	}
	servicesMax, services, err := parseServices(f.services)
	if err != nil {
		return err
	}
	if services {
		f.cpuOnly, f.gpus = true, ""
	}
	cfg, err := g.LoadConfig()
	if err != nil {
		return err
	}
	agentCfg := cfg.Agent()
	if agentCfg.CPUOnly {
		f.cpuOnly = true
	}
	idOpts := workerid.Options{WorkerID: agentCfg.WorkerID, WorkerName: agentCfg.WorkerName, Getenv: g.Getenv,
		GPUs: f.gpus, CPUOnly: f.cpuOnly}
	if len(f.stop) > 0 {
		sel := strings.Join(f.stop, "")
		if sel == "" && (f.gpus != "" || agentCfg.WorkerID != "" || g.Getenv("CLEARML_WORKER_ID") != "") {
			sel = workerid.For(idOpts)
		}
		return instance.Stop(ctx, stateDir, sel, 10*time.Second, func(s string) { fmt.Fprintln(g.Stdout, s) })
	}
	// Busy-GPU policy, disk watermarks, preemption and the metrics address:
	// a bad value stops the agent here, before it detaches or registers.
	ops, err := loadOpsSettings(cfg)
	if err != nil {
		return err
	}
	if f.metricsListen != "" {
		if err := metrics.ValidateAddr(f.metricsListen); err != nil {
			return err
		}
	}
	if f.detached && g.Getenv(instance.EnvDetached) != "1" { // not in the child Detach started
		if err := os.MkdirAll(stateDir, 0o755); err != nil {
			return fmt.Errorf("state dir %s: %w; pass a writable --state-dir", stateDir, err)
		}
		logPath := instance.LogPath(stateDir, workerid.For(idOpts))
		pid, err := instance.Detach(logPath, g.Args, g.Env)
		if err != nil {
			return err
		}
		fmt.Fprintf(g.Stdout, "clearml-agent daemon running in the background (pid %d), log: %s\n", pid, logPath)
		return nil
	}

	log := newLogger(g, f.logLevel)
	if g.Getenv("GOMAXPROCS") == "" {
		// The daemon only polls and supervises; the work of a task (clone,
		// pip, the log relay) runs in its execute child, which keeps the
		// default. One P keeps each idle agent's heap to one span per size
		// class, and on a 64-core GPU host saves the per-P caches and GC
		// workers of 63 more (docs/benchmarks.md, "Memory of a fleet").
		runtime.GOMAXPROCS(1)
	}
	inst, err := instance.Acquire(stateDir, idOpts, g.Getenv(instance.EnvDetachedLog))
	if err != nil {
		return err
	}
	defer inst.Close()
	wid := inst.WorkerID

	m, stopMetrics, err := startMetrics(ctx, f.metricsListen, f.metricsRequired, log)
	if err != nil {
		return err
	}
	defer stopMetrics()

	notify := &readyNotifier{Notifier: sdnotify.New()}
	var d atomic.Pointer[worker.Daemon]
	client, err := newClient(g, cfg, func(endpoint string, attempt int, err error) {
		if dd := d.Load(); dd != nil {
			dd.Beat()
		}
		m.ServerError(endpoint)
		_ = notify.Status(fmt.Sprintf("server unreachable, retrying (%s, attempt %d): %s", endpoint, attempt, oneline.Of(err)))
	}, log)
	if err != nil {
		return err
	}

	poll := agentCfg.PollingInterval
	if f.pollInterval > 0 {
		poll = time.Duration(max(f.pollInterval, 5)) * time.Second
	}
	if v, err := strconv.ParseFloat(g.Getenv("CLEARML_AGENT_QUEUE_POLL_FREQ_SEC"), 64); err == nil && v > 0 {
		poll = time.Duration(v * float64(time.Second))
	}
	report := agentCfg.StatusReportInterval
	if v, err := strconv.ParseFloat(g.Getenv("CLEARML_AGENT_STATUS_REPORT_FREQ_SEC"), 64); err == nil && v > 0 {
		report = time.Duration(v * float64(time.Second))
	}

	devices := gpuEnv(f.gpus, f.cpuOnly)
	// Every task runs in its own `clearml-agent execute` child, which reads
	// the configuration afresh (so SIGHUP's reload reaches the next task),
	// clones, builds the venv, runs the task and ships its log; the daemon
	// polls, supervises, forwards aborts and reports.
	ecfg := executor.Config{
		GlobalArgs: childGlobalArgs(g), Args: childArgs(f, stateDir), Env: childEnv(g.Env), WorkerID: wid,
		Token: client.Token, API: client, Editor: client, Stderr: g.Stderr, Logger: log, Groups: inst.Groups(),
	}
	var preflight func(context.Context) error
	var connect func(context.Context) (*docker.Engine, error)
	var runner *executor.Runner
	if f.dockerSet {
		dc, conn, err := newDockerConfig(g, cfg, dockerMode{cli: f.docker, workerID: wid, gpus: f.gpus, cpuOnly: f.cpuOnly,
			logLevel: f.logLevel, stateDir: stateDir, services: services}, log)
		if err != nil {
			return err
		}
		ecfg.Docker = dc
		connect = conn
		recovered := false
		preflight = func(ctx context.Context) error {
			if _, err := connect(ctx); err != nil {
				return err
			}
			if !recovered {
				// Containers an earlier run of this worker left behind.
				if n, err := runner.Recover(ctx); err != nil {
					return err
				} else if n > 0 {
					log.Warn("removed containers left by an earlier run of this worker", "count", n)
				}
				if services {
					if n, err := runner.AdoptServices(ctx); err != nil {
						return err
					} else if n > 0 {
						log.Info("adopted service containers of an earlier run", "count", n)
					}
				}
				recovered = true
			}
			return nil
		}
	}
	// The checks of `clearml-agent doctor` that concern this machine (the
	// server, credentials and queues are retried by the worker itself): a
	// failure keeps the worker not READY, with it in STATUS=.
	preflight = daemonPreflight(preflight, func() []doctor.Check {
		return localChecks(g, cfg, localSetup{gpus: f.gpus, cpuOnly: f.cpuOnly, docker: f.dockerSet, stateDir: stateDir,
			daemon: true, connect: connect})
	}, func(r doctor.Result) {
		log.Warn("preflight warning", "check", r.Name, "detail", r.Detail, "fix", r.Fix)
	})
	runner, err = executor.New(ecfg)
	if err != nil {
		return err
	}
	// Task processes an earlier run of this worker left running (killed by
	// the watchdog or SIGKILL) end before this one takes work.
	if err := runner.EndOrphans(ctx, inst.Groups(), instance.OrphanReason); err != nil {
		return fmt.Errorf("ending the task processes of an earlier run of worker %s: %w", wid, err)
	}
	venvsDir := agentCfg.VenvsDir

	collector := stats.NewCollector(stats.Config{DiskPath: g.Home(), GPU: newGPUSampler(devices, log)})

	// Before every pop: the disk guard (cache eviction, the floor) and the
	// busy-GPU check (docs/operations.md).
	gc := gateConfig{metrics: m, log: log, gpus: gpuIndices(f.gpus),
		disk: diskGate(daemonDiskLayout(g, cfg, stateDir, wid, f.dockerSet), ops.disk, log)}
	if !f.cpuOnly {
		busy := gpu.NewBusyChecker(busyDevices(f.gpus), ops.busy, gpu.OwnedBy(inst.Groups().PGIDs, runner.Containers))
		defer busy.Close()
		gc.busy = busy
	}
	wcfg := worker.Config{
		WorkerID: wid, Queues: splitQueues(f.queues), OrderFairness: f.orderFairness, CreateQueue: f.createQueue,
		Tags: f.tags, PollInterval: poll, ReportInterval: report, Services: services, ServicesMax: servicesMax,
		Runner: runner, Notify: notify, Stats: collector, Logger: log, Out: g.Stdout, Preflight: preflight,
		Gate: newGate(gc), Metrics: m,
		ServicesDetached: f.dockerSet && services,
		NewServiceRunner: func(child string) worker.Runner {
			return runner.WithWorker(child, "--venvs-dir",
				filepath.Join(venvsDir, "services", strings.ReplaceAll(child, ":", "_")))
		},
	}
	if f.dockerSet && services {
		wcfg.ServiceCount = runner.RunningServices
	}
	daemon := worker.New(client, wcfg)
	d.Store(daemon)

	// The cloud's termination notice: drain, requeue the running task,
	// unregister, exit 0.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if err := watchPreemption(watchCtx, ops.preempt, daemon, m, log); err != nil {
		return err
	}

	// Signals: drain, abort, exit (see signalHelp and worker.Lifecycle).
	abortCtx, abort := context.WithCancel(ctx)
	defer abort()
	lc := worker.NewLifecycle(worker.LifecycleConfig{
		Drain: func() {
			// systemd shows the unit as deactivating from the first
			// signal on, while the running task finishes.
			_ = notify.Stopping()
			daemon.Drain()
		},
		Abort: abort,
		Kill:  process.KillAll,
		Reload: func() {
			// Each task child reads the configuration itself; check it
			// now so a broken edit is reported at once.
			c, err := g.LoadConfig()
			if err != nil {
				log.Error("the configuration does not load; tasks fail until it is fixed", "err", err)
				return
			}
			log.Info("configuration reloaded; it applies from the next task", "file", c.File())
		},
		Connected:    notify.ready.Load,
		DrainTimeout: agentCfg.DrainTimeout,
		Logger:       log,
	})
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	lcCtx, stopLC := context.WithCancel(ctx)
	defer stopLC()
	go lc.Run(lcCtx, sigs)

	statsCtx, stopStats := context.WithCancel(ctx)
	defer stopStats()
	go sampleWhileBusy(statsCtx, collector, daemon)
	go func() { _ = notify.RunWatchdog(statsCtx, daemon.Healthy) }()

	done := make(chan error, 1)
	go func() { done <- daemon.Run(abortCtx) }()
	select {
	case <-lc.Exited():
		return &ExitError{Code: exitAtOnce}
	case err = <-done:
	}
	if f.dockerSet && services && ecfg.Docker.Engine != nil {
		// Running services stay; the remains of finished ones go.
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if _, rerr := runner.RemoveEndedServices(c); rerr != nil {
			log.Warn("could not remove finished service containers", "err", rerr)
		}
		cancel()
	}
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return nil
	case lc.Draining() && !errors.Is(err, worker.ErrFatal):
		// Stopped by a signal before the server could be reached: a
		// requested stop, not a failure (systemctl stop must not mark the
		// unit failed).
		log.Info("stopped before the server could be reached", "err", oneline.Of(err))
		return nil
	case errors.Is(err, worker.ErrFatal):
		_ = notify.Status("fatal: " + oneline.Of(err))
		return errors.New(strings.TrimPrefix(err.Error(), worker.ErrFatal.Error()+": "))
	default:
		return err
	}
}

// childGlobalArgs are the global flags a task child needs to read the same
// configuration as the daemon.
func childGlobalArgs(g *Globals) []string {
	var args []string
	if g.ConfigFile != "" {
		file := g.ConfigFile
		if abs, err := filepath.Abs(file); err == nil {
			file = abs
		}
		args = append(args, "--config-file", file)
	}
	if g.Debug {
		args = append(args, "--debug")
	}
	return args
}

// childEnv is the daemon's environment without what systemd handed the
// daemon alone (the notify socket, the watchdog, socket activation).
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// childArgs are the execute flags that carry the daemon's task settings.
func childArgs(f *daemonFlags, stateDir string) []string {
	args := []string{"--log-level", f.logLevel, "--state-dir", stateDir}
	switch {
	case f.cpuOnly:
		args = append(args, "--cpu-only")
	case f.gpus != "":
		args = append(args, "--gpus", f.gpus)
	}
	return args
}

// parseServices reads --services-mode's optional N.
func parseServices(v string) (max int, on bool, err error) {
	switch v {
	case "":
		return 0, false, nil
	case "-1", "unlimited":
		return 0, true, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, false, fmt.Errorf("--services-mode %q: expected a positive number of services (or nothing for unlimited)", v)
	}
	return n, true, nil
}

// splitQueues accepts "a b" and "a,b" forms too (systemd passes
// $CLEARML_AGENT_QUEUES as one word when quoted).
func splitQueues(in []string) []string {
	var out []string
	for _, q := range in {
		for _, p := range strings.FieldsFunc(q, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			out = append(out, p)
		}
	}
	return out
}

func printRunning(w io.Writer, stateDir string) error {
	rs, err := instance.List(stateDir)
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		fmt.Fprintf(w, "no clearml-agent is running under %s\n", stateDir)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER ID\tPID\tSLOT\tSTARTED\tLOG")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", r.WorkerID, r.PID, r.Slot, r.Started.Format(time.RFC3339), r.LogFile)
	}
	return tw.Flush()
}

var _ worker.API = (*api.Client)(nil)

// readyNotifier remembers whether READY=1 went out: before it, the daemon
// has not connected and a stop signal needs no drain.
type readyNotifier struct {
	*sdnotify.Notifier
	ready    atomic.Bool
	stopping sync.Once
}

// Stopping sends STOPPING=1 once, however many parts of the shutdown ask.
func (n *readyNotifier) Stopping() error {
	var err error
	n.stopping.Do(func() { err = n.Notifier.Stopping() })
	return err
}

func (n *readyNotifier) Ready() error {
	n.ready.Store(true)
	return n.Notifier.Ready()
}

// sampleWhileBusy samples machine stats every 5 s while a task runs, so GPU
// and CPU figures are averaged over the report interval. An idle agent samples
// only when it reports (CPU, network and disk rates come from counter deltas
// since the last report, so they are averages all the same).
func sampleWhileBusy(ctx context.Context, c *stats.Collector, d *worker.Daemon) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if d.Running() > 0 {
				c.Sample()
			}
		}
	}
}
