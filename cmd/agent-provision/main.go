// Command agent-provision writes clearml.conf and one systemd unit per GPU
// agent and manages them through systemd (apply, status, remove), prepares
// image roots (--root, first-boot), lists GPUs (gpus) and supervises the
// agents itself where systemd is not PID 1 (run). See package provision.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/gpufleet/clearml-agent-go/agent/gpu"
	"github.com/gpufleet/clearml-agent-go/provision"
	"github.com/gpufleet/clearml-agent-go/provision/supervise"
	"github.com/gpufleet/clearml-agent-go/provision/systemd"
	"github.com/gpufleet/clearml-agent-go/unitgen"
)

func main() {
	os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// systemdRunning reports whether systemd is PID 1 (sd_booted).
var systemdRunning = func() bool {
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// discover is gpu.Discover; tests replace it with a go-nvml mock.
var discover = gpu.Discover

// connect is systemd.Connect; tests replace it with a fake.
var connect = func(ctx context.Context) (systemd.Manager, func(), error) {
	d, err := systemd.Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	return d, func() { _ = d.Close() }, nil
}

type flags struct {
	in                  provision.Inputs
	queues, agentQueues []string
	dryRun, noStart     bool
	waitTimeout         time.Duration
	purge               bool
	credsFile           string
	stateRoot           string
	dockerSet           bool // --docker or --no-docker given
}

// Main runs agent-provision and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f flags
	app := kingpin.New("agent-provision", "Provision ClearML agents: clearml.conf plus one systemd unit per GPU agent.")
	app.Writer(stdout)
	app.ErrorWriter(stderr)
	app.UsageWriter(stderr)
	exit := -1
	app.Terminate(func(code int) {
		if exit < 0 {
			exit = code
		}
	})
	env := func(name string) string { return "AGENT_PROVISION_" + name }
	in := &f.in
	app.Flag("api-host", "ClearML API server URL.").Envar("CLEARML_API_HOST").StringVar(&in.APIHost)
	app.Flag("web-host", "ClearML web server URL.").Envar("CLEARML_WEB_HOST").StringVar(&in.WebHost)
	app.Flag("files-host", "ClearML files server URL.").Envar("CLEARML_FILES_HOST").StringVar(&in.FilesHost)
	app.Flag("access-key", "API access key (written only into clearml.conf).").Envar("CLEARML_API_ACCESS_KEY").StringVar(&in.AccessKey)
	app.Flag("secret-key", "API secret key (written only into clearml.conf).").Envar("CLEARML_API_SECRET_KEY").StringVar(&in.SecretKey)
	app.Flag("queue", "Queue of every GPU/CPU agent; repeat or comma-separate for several (default: default).").Envar(env("QUEUE")).StringsVar(&f.queues)
	app.Flag("agent-queues", "Queues of one agent, e.g. gpu0=q1,q2; repeatable.").Envar(env("AGENT_QUEUES")).StringsVar(&f.agentQueues)
	app.Flag("gpus", "GPUs: 0,1 (one agent each), 0,1+2,3 (groups), all, UUIDs, MIG 0:1.").Envar(env("GPUS")).StringVar(&in.GPUs)
	app.Flag("gpus-per-agent", "Group this many GPUs per agent.").Envar(env("GPUS_PER_AGENT")).IntVar(&in.GPUsPerAgent)
	app.Flag("cpu-agents", "Number of CPU-only agents.").Envar(env("CPU_AGENTS")).IntVar(&in.CPUAgents)
	app.Flag("services-agent", "Add a services-mode agent.").Envar(env("SERVICES_AGENT")).BoolVar(&in.ServicesAgent)
	app.Flag("services-queue", "Queue of the services agent.").Default(provision.DefaultServicesQueue).Envar(env("SERVICES_QUEUE")).StringVar(&in.ServicesQueue)
	app.Flag("docker", "Run every agent's tasks in containers on the Docker engine (daemon --docker).").Envar(env("DOCKER")).IsSetByUser(&f.dockerSet).BoolVar(&in.Docker)
	app.Flag("docker-image", "Default image of the task containers (implies --docker); default: agent.default_docker in clearml.conf.").Envar(env("DOCKER_IMAGE")).StringVar(&in.DockerImage)
	app.Flag("docker-agent-binary", "Static clearml-agent bind-mounted into task containers (implies --docker; default PREFIX/bin/clearml-agent-static).").Envar(env("DOCKER_AGENT_BINARY")).StringVar(&in.DockerAgentBinary)
	app.Flag("docker-host", "Docker engine of the agents in docker mode (default unix:///var/run/docker.sock).").Envar("DOCKER_HOST").StringVar(&in.DockerHost)
	app.Flag("git-user", "Git user for task repositories.").Envar("CLEARML_AGENT_GIT_USER").StringVar(&in.GitUser)
	app.Flag("git-pass", "Git password or token (written only into clearml.conf).").Envar("CLEARML_AGENT_GIT_PASS").StringVar(&in.GitPass)
	app.Flag("extra-index-url", "Extra Python package index; repeatable.").Envar(env("EXTRA_INDEX_URL")).StringsVar(&in.ExtraIndexURLs)
	app.Flag("default-output-uri", "Default output URI of tasks.").Envar(env("DEFAULT_OUTPUT_URI")).StringVar(&in.DefaultOutputURI)
	app.Flag("user", "System account the agents run as.").Default(unitgen.DefaultUser).Envar(env("USER")).StringVar(&in.User)
	app.Flag("prefix", "Install prefix of the clearml-agent binary (PREFIX/bin/clearml-agent).").Default(provision.DefaultPrefix).Envar(env("PREFIX")).StringVar(&in.Prefix)
	app.Flag("config", "clearml.conf to write or merge into.").Default(unitgen.DefaultConfigPath).Envar(env("CONFIG")).StringVar(&in.ConfigPath)
	app.Flag("root", "Write everything under this image root, enable units offline, start nothing.").Envar(env("ROOT")).StringVar(&in.Root)
	app.Flag("first-boot-creds", "Allow missing credentials; `agent-provision first-boot` fills them in.").Envar(env("FIRST_BOOT_CREDS")).BoolVar(&in.FirstBootCreds)
	app.Flag("hostname", "Host name for worker ids (default: this host; none with --root).").Envar(env("HOSTNAME")).StringVar(&in.Hostname)
	app.Flag("watchdog-sec", "Unit WatchdogSec (0: default, -1: off).").Envar(env("WATCHDOG_SEC")).Hidden().IntVar(&in.WatchdogSec)
	app.Flag("dry-run", "Print the plan (files with diffs, units) and change nothing.").Envar(env("DRY_RUN")).BoolVar(&f.dryRun)
	app.Flag("no-start", "Write and enable the units but start nothing.").Envar(env("NO_START")).BoolVar(&f.noStart)
	app.Flag("wait", "How long to wait for agents to report READY.").Default("2m").Envar(env("WAIT")).DurationVar(&f.waitTimeout)

	applyCmd := app.Command("apply", "Write the config and units and start the agents (default).").Default()
	statusCmd := app.Command("status", "Show the agents: unit, GPUs, queues, worker id, state, STATUS, uptime.")
	removeCmd := app.Command("remove", "Stop, disable and delete the agents and their files.")
	removeCmd.Flag("purge-config", "Delete clearml.conf too.").Envar(env("PURGE_CONFIG")).BoolVar(&f.purge)
	gpusCmd := app.Command("gpus", "List the GPUs NVML finds.")
	runCmd := app.Command("run", "Supervise the agents as child processes (no systemd needed).")
	runCmd.Flag("state-dir", "Where the agents keep state, cache and logs.").Envar(env("STATE_DIR")).StringVar(&f.stateRoot)
	firstBootCmd := app.Command("first-boot", "Fill in credentials of a --first-boot-creds config, then start the agents.")
	firstBootCmd.Flag("creds-file", "File with CLEARML_API_ACCESS_KEY=... and CLEARML_API_SECRET_KEY=... lines.").Envar(env("CREDS_FILE")).StringVar(&f.credsFile)

	cmd, err := app.Parse(args)
	if exit >= 0 { // --help, --version
		return exit
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent-provision: %v; see agent-provision --help\n", err)
		return 2
	}
	if err := f.finish(); err != nil {
		fmt.Fprintf(stderr, "agent-provision: %v\n", err)
		return 2
	}
	switch cmd {
	case applyCmd.FullCommand():
		err = f.apply(ctx, stdout, stderr)
	case statusCmd.FullCommand():
		err = f.status(ctx, stdout)
	case removeCmd.FullCommand():
		err = f.remove(ctx, stdout)
	case gpusCmd.FullCommand():
		err = gpus(stdout)
	case runCmd.FullCommand():
		err = f.run(ctx, stdout, stderr)
	case firstBootCmd.FullCommand():
		err = f.firstBoot(ctx, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent-provision: %v\n", err)
		return 1
	}
	return 0
}

// finish turns the repeatable/comma flags into Inputs.
func (f *flags) finish() error {
	for _, q := range f.queues {
		for _, s := range strings.Split(q, ",") {
			if s = strings.TrimSpace(s); s != "" {
				f.in.Queues = append(f.in.Queues, s)
			}
		}
	}
	for _, aq := range f.agentQueues {
		name, qs, ok := strings.Cut(aq, "=")
		if !ok || name == "" || qs == "" {
			return fmt.Errorf("--agent-queues %q: want AGENT=QUEUE[,QUEUE], e.g. gpu0=q1,q2", aq)
		}
		if f.in.AgentQueues == nil {
			f.in.AgentQueues = map[string][]string{}
		}
		for _, q := range strings.Split(qs, ",") {
			if q = strings.TrimSpace(q); q == "" {
				return fmt.Errorf("--agent-queues %q: empty queue name; use e.g. gpu0=q1,q2", aq)
			}
			f.in.AgentQueues[name] = append(f.in.AgentQueues[name], q)
		}
	}
	if f.in.Hostname == "" && f.in.Root == "" {
		f.in.Hostname, _ = os.Hostname()
	}
	if f.dockerSet && !f.in.Docker {
		for _, c := range []struct{ flag, v string }{{"--docker-image", f.in.DockerImage}, {"--docker-agent-binary", f.in.DockerAgentBinary}} {
			if c.v != "" {
				return fmt.Errorf("%s %s runs tasks in docker, but --no-docker (or AGENT_PROVISION_DOCKER=false) turns docker mode off; drop one of them", c.flag, c.v)
			}
		}
	}
	return nil
}

func inventory(warn io.Writer) *gpu.Inventory {
	inv, err := discover()
	if err != nil {
		if !errors.Is(err, gpu.ErrNoNVML) {
			fmt.Fprintf(warn, "warning: %v\n", err)
		}
		return nil
	}
	return inv
}

func (f *flags) plan(stderr io.Writer) (*provision.Plan, error) {
	var inv *gpu.Inventory
	if strings.TrimSpace(f.in.GPUs) != "" {
		inv = inventory(stderr)
	}
	return provision.NewPlan(f.in, inv)
}

func (f *flags) apply(ctx context.Context, stdout, stderr io.Writer) error {
	p, err := f.plan(stderr)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, p.String())
	if f.dryRun {
		fmt.Fprintln(stdout, "dry run: nothing was changed")
		return nil
	}
	h := provision.Host{NoStart: f.noStart, WaitTimeout: f.waitTimeout, Log: stdout}
	switch {
	case f.in.Root != "":
		fmt.Fprintf(stdout, "image root %s: writing files and enabling units offline; nothing is started\n", f.in.Root)
	case !systemdRunning():
		return errors.New("systemd is not PID 1 here (no /run/systemd/system), so units cannot be started; run the agents in the foreground with `agent-provision run` (same flags), or prepare an image with --root DIR")
	default:
		if err := provision.RequireRoot(os.Geteuid(), "agent-provision apply"); err != nil {
			return err
		}
		mgr, closeFn, err := connect(ctx)
		if err != nil {
			return err
		}
		defer closeFn()
		h.Manager = mgr
		fmt.Fprintln(stdout, "systemd is PID 1: applying through D-Bus")
	}
	if !p.Changed() {
		// Still make sure every kept unit is running (Apply starts stopped ones).
		fmt.Fprintln(stdout, "already provisioned as asked")
	}
	res, err := provision.Apply(ctx, p, h)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "done: %d file(s) written, %d removed; started %s; restarted %s; stopped %s\n",
		len(res.Written), len(res.Removed), list(res.Started), list(res.Restarted), list(res.Stopped))
	if f.in.Root == "" && !f.noStart {
		fmt.Fprintln(stdout, "manage them with: systemctl status|restart|stop clearml-agents.target, or agent-provision status")
	}
	return nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func (f *flags) status(ctx context.Context, stdout io.Writer) error {
	var mgr systemd.Manager
	if f.in.Root == "" && systemdRunning() {
		m, closeFn, err := connect(ctx)
		if err != nil {
			return err
		}
		defer closeFn()
		mgr = m
	}
	rows, err := provision.Status(ctx, mgr, f.in.Root)
	if err != nil {
		return err
	}
	if f.in.Root == "" {
		provision.AddContainers(ctx, rows)
	}
	fmt.Fprint(stdout, provision.FormatStatus(rows, time.Now()))
	if mgr == nil {
		fmt.Fprintln(stdout, "(systemd is not PID 1 here, or --root was given: states are unknown)")
	}
	return nil
}

func (f *flags) remove(ctx context.Context, stdout io.Writer) error {
	h := provision.Host{Log: stdout}
	if f.in.Root == "" {
		if !systemdRunning() {
			return errors.New("systemd is not PID 1 here (no /run/systemd/system); to clean an image use --root DIR")
		}
		if err := provision.RequireRoot(os.Geteuid(), "agent-provision remove"); err != nil {
			return err
		}
		mgr, closeFn, err := connect(ctx)
		if err != nil {
			return err
		}
		defer closeFn()
		h.Manager = mgr
	}
	removed, err := provision.Remove(ctx, provision.RemoveOptions{Root: f.in.Root, ConfigPath: f.in.ConfigPath, PurgeConfig: f.purge}, h)
	if err != nil {
		return err
	}
	kept := ""
	if !f.purge {
		kept = fmt.Sprintf("; kept %s (use --purge-config to delete it)", f.in.ConfigPath)
	}
	fmt.Fprintf(stdout, "removed %d path(s)%s\n", len(removed), kept)
	return nil
}

func gpus(stdout io.Writer) error {
	inv, err := discover()
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, inv.Table())
	return nil
}

func (f *flags) firstBoot(ctx context.Context, stdout io.Writer) error {
	conf := filepath.Join(f.in.Root, f.in.ConfigPath)
	envm := map[string]string{provision.EnvAccessKey: os.Getenv(provision.EnvAccessKey), provision.EnvSecretKey: os.Getenv(provision.EnvSecretKey)}
	wrote, err := provision.FirstBoot(conf, envm, f.credsFile)
	if err != nil {
		return err
	}
	if wrote {
		fmt.Fprintf(stdout, "wrote credentials into %s\n", conf)
	} else {
		fmt.Fprintf(stdout, "%s already has credentials; left unchanged\n", conf)
	}
	if f.noStart || f.in.Root != "" || !systemdRunning() {
		return nil
	}
	mgr, closeFn, err := connect(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	// Agents enabled in the image ran without credentials before this and
	// may have hit their start limit: forget that, then start them all.
	states, err := mgr.States(ctx, systemd.AgentPattern)
	if err != nil {
		return err
	}
	var units []string
	for _, st := range states {
		units = append(units, st.Name)
	}
	if err := mgr.ResetFailed(ctx, units); err != nil {
		return err
	}
	if err := mgr.Start(ctx, unitgen.TargetName); err != nil {
		return err
	}
	for _, st := range states {
		if st.Active() {
			if err := mgr.Restart(ctx, st.Name); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(stdout, "started %s\n", unitgen.TargetName)
	return nil
}

// run supervises the planned agents in the foreground.
func (f *flags) run(ctx context.Context, stdout, stderr io.Writer) error {
	if f.in.Root != "" {
		return errors.New("run: --root is for image builds; drop it to run the agents here")
	}
	if systemdRunning() {
		fmt.Fprintln(stdout, "note: systemd is PID 1 here; `agent-provision` (apply) would manage the agents as units instead")
	}
	f.in.Supervised = true
	p, err := f.plan(stderr)
	if err != nil {
		return err
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	// Only clearml.conf is written in supervisor mode.
	conf := p.ConfigFile()
	if conf.Action != provision.FileKeep {
		if err := os.MkdirAll(filepath.Dir(conf.Path), 0o755); err != nil {
			return fmt.Errorf("run: %v", err)
		}
		if err := writeConf(conf); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", conf.Path)
	}
	binary := filepath.Join(p.Inputs.Prefix, "bin/clearml-agent")
	if _, err := os.Stat(binary); err != nil {
		found, lerr := exec.LookPath("clearml-agent")
		if lerr != nil {
			return fmt.Errorf("run: no clearml-agent at %s or in PATH; install it or pass --prefix", binary)
		}
		binary = found
	}
	stateRoot := f.stateRoot
	if stateRoot == "" {
		home, _ := os.UserHomeDir()
		stateRoot = filepath.Join(home, ".clearml-agent", "agents")
	}
	// The same watchdog the unit would get (WatchdogSec=).
	var watchdog time.Duration
	switch {
	case f.in.WatchdogSec == 0:
		watchdog = unitgen.DefaultWatchdogSec * time.Second
	case f.in.WatchdogSec > 0:
		watchdog = time.Duration(f.in.WatchdogSec) * time.Second
	}
	var children []supervise.Child
	for _, a := range p.Agents {
		argv, extra := p.Command(a, binary, stateRoot)
		children = append(children, supervise.Child{Name: a.Spec.Instance, Argv: argv, Env: append(os.Environ(), extra...), Watchdog: watchdog})
		fmt.Fprintf(stdout, "%s: %s\n", a.Spec.Instance, strings.Join(argv, " "))
	}
	sigs := make(chan os.Signal, 3)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	fmt.Fprintf(stdout, "supervising %d agent(s) without systemd; Ctrl-C drains, twice aborts tasks, three times kills\n", len(children))
	return supervise.Run(ctx, supervise.Options{Children: children, Out: stdout}, sigs)
}
