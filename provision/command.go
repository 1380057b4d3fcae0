package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/agent/gpu"
	"github.com/gpufleet/clearml-agent-go/cloudinit"
	"github.com/gpufleet/clearml-agent-go/internal/secret"
	"github.com/gpufleet/clearml-agent-go/provision/systemd"
	"github.com/gpufleet/clearml-agent-go/unitgen"
)

// Action is an agent-provision subcommand.
type Action string

const (
	ActionApply     Action = "apply"
	ActionStatus    Action = "status"
	ActionRemove    Action = "remove"
	ActionGPUs      Action = "gpus"
	ActionRun       Action = "run"
	ActionFirstBoot Action = "first-boot"
	ActionDoctor    Action = "doctor"
	ActionCloudInit Action = "cloud-init"
)

// DefaultWait is how long apply waits for the agents' READY by default.
const DefaultWait = 2 * time.Minute

// Command is one agent-provision invocation, its flags parsed
// (cmd/agent-provision builds it). Run carries it out.
type Command struct {
	Action Action
	Inputs Inputs
	// Queues and AgentQueues are the --queue ("a,b") and --agent-queues
	// ("gpu0=q1,q2") values as given; Run adds them to Inputs.
	Queues, AgentQueues []string
	// DockerSet: --docker or --no-docker was given.
	DockerSet   bool
	DryRun      bool
	NoStart     bool
	WaitTimeout time.Duration
	PurgeConfig bool   // remove
	CredsFile   string // first-boot
	StateDir    string // run
	// CredsURL, CredsHeaders ("Name: value") and CredsTimeout: first-boot
	// waits (bounded) for the credentials at a URL (or for CredsFile).
	// cloud-init passes them on to the first-boot it renders.
	CredsURL     string
	CredsHeaders []string
	CredsTimeout time.Duration
	// CloudInit holds the flags of the cloud-init command.
	CloudInit CloudInitOptions
	Stdout    io.Writer
	Stderr    io.Writer
	// CredentialsFile (--credentials-file) holds the API key pair and
	// optionally the git user and password (ReadCredentialsFile).
	CredentialsFile string
}

// Deps is what the commands take from the machine; tests replace fields.
// HostDeps returns the real ones.
type Deps struct {
	// SystemdRunning reports whether systemd is PID 1 (sd_booted).
	SystemdRunning func() bool
	// Connect opens the systemd manager; the func closes it.
	Connect func(ctx context.Context) (systemd.Manager, func(), error)
	// Discover is the NVML GPU inventory (gpu.Discover).
	Discover func() (*gpu.Inventory, error)
	// Euid is the effective user id.
	Euid func() int
	// Now is the clock of the status table.
	Now func() time.Time
	// Getenv reads the credentials of first-boot.
	Getenv func(string) string
	// NotifyContext is cancelled on SIGINT/SIGTERM: a cancelled apply
	// rolls back (run handles its signals itself).
	NotifyContext func(ctx context.Context) (context.Context, context.CancelFunc)
	// Signals feeds the supervisor of `run`; stop ends the delivery.
	Signals func() (sigs <-chan os.Signal, stop func())
}

// HostDeps are the Deps of the machine this runs on.
func HostDeps() Deps {
	return Deps{
		SystemdRunning: func() bool {
			_, err := os.Stat("/run/systemd/system")
			return err == nil
		},
		Connect: func(ctx context.Context) (systemd.Manager, func(), error) {
			d, err := systemd.Connect(ctx)
			if err != nil {
				return nil, nil, err
			}
			return d, func() { _ = d.Close() }, nil
		},
		Discover: gpu.Discover,
		Euid:     os.Geteuid,
		Now:      time.Now,
		Getenv:   os.Getenv,
		NotifyContext: func(ctx context.Context) (context.Context, context.CancelFunc) {
			return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
		},
		Signals: func() (<-chan os.Signal, func()) {
			sigs := make(chan os.Signal, 3)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			return sigs, func() { signal.Stop(sigs) }
		},
	}
}

// UsageError is a mistake in the flags (exit status 2, not 1).
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Run carries out c on the machine d describes. Errors are one line;
// a UsageError means the flags are wrong.
func Run(ctx context.Context, c Command, d Deps) error {
	if err := c.finish(); err != nil {
		return UsageError{err}
	}
	if c.Action == ActionFirstBoot {
		if err := c.checkCredsWait(); err != nil {
			return UsageError{err}
		}
	}
	if c.CredentialsFile != "" {
		if err := c.Inputs.applyCredentialsFile(c.CredentialsFile); err != nil {
			return err
		}
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	r := &runner{Command: c, d: d}
	if c.Action == ActionRun {
		return r.supervise(ctx)
	}
	ctx, stop := d.NotifyContext(ctx)
	defer stop()
	switch c.Action {
	case ActionApply, "":
		return r.apply(ctx)
	case ActionStatus:
		return r.status(ctx)
	case ActionRemove:
		return r.remove(ctx)
	case ActionGPUs:
		return r.gpus()
	case ActionFirstBoot:
		return r.firstBoot(ctx)
	case ActionDoctor:
		return r.doctor(ctx)
	case ActionCloudInit:
		return r.cloudInit()
	}
	return UsageError{fmt.Errorf("unknown action %q", c.Action)}
}

type runner struct {
	Command
	d Deps
}

// finish turns the repeatable/comma flags into Inputs.
func (c *Command) finish() error {
	for _, q := range c.Queues {
		for _, s := range strings.Split(q, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.Inputs.Queues = append(c.Inputs.Queues, s)
			}
		}
	}
	for _, aq := range c.AgentQueues {
		name, qs, ok := strings.Cut(aq, "=")
		if !ok || name == "" || qs == "" {
			return fmt.Errorf("--agent-queues %q: want AGENT=QUEUE[,QUEUE], e.g. gpu0=q1,q2", aq)
		}
		if c.Inputs.AgentQueues == nil {
			c.Inputs.AgentQueues = map[string][]string{}
		}
		for _, q := range strings.Split(qs, ",") {
			if q = strings.TrimSpace(q); q == "" {
				return fmt.Errorf("--agent-queues %q: empty queue name; use e.g. gpu0=q1,q2", aq)
			}
			c.Inputs.AgentQueues[name] = append(c.Inputs.AgentQueues[name], q)
		}
	}
	if c.Inputs.Hostname == "" && c.Inputs.Root == "" && c.Action != ActionCloudInit {
		c.Inputs.Hostname, _ = os.Hostname()
	}
	if c.DockerSet && !c.Inputs.Docker {
		for _, f := range []struct{ flag, v string }{{"--docker-image", c.Inputs.DockerImage}, {"--docker-agent-binary", c.Inputs.DockerAgentBinary}} {
			if f.v != "" {
				return fmt.Errorf("%s %s runs tasks in docker, but --no-docker (or AGENT_PROVISION_DOCKER=false) turns docker mode off; drop one of them", f.flag, f.v)
			}
		}
	}
	return nil
}

func (r *runner) plan() (*Plan, error) {
	var inv *gpu.Inventory
	if strings.TrimSpace(r.Inputs.GPUs) != "" {
		var err error
		if inv, err = r.d.Discover(); err != nil {
			if !errors.Is(err, gpu.ErrNoNVML) {
				fmt.Fprintf(r.Stderr, "warning: %v\n", err)
			}
			inv = nil
		}
	}
	return NewPlan(r.Inputs, inv)
}

func (r *runner) apply(ctx context.Context) error {
	p, err := r.plan()
	if err != nil {
		return err
	}
	fmt.Fprint(r.Stdout, p.String())
	if r.DryRun {
		fmt.Fprintln(r.Stdout, "dry run: nothing was changed")
		return nil
	}
	h := Host{NoStart: r.NoStart, WaitTimeout: r.WaitTimeout, Log: r.Stdout, Euid: r.d.Euid}
	switch {
	case r.Inputs.Root != "":
		fmt.Fprintf(r.Stdout, "image root %s: writing files and enabling units offline; nothing is started\n", r.Inputs.Root)
	case !r.d.SystemdRunning():
		return errors.New("systemd is not PID 1 here (no /run/systemd/system), so units cannot be started; run the agents in the foreground with `agent-provision run` (same flags), or prepare an image with --root DIR")
	default:
		if err := RequireRoot(r.d.Euid(), "agent-provision apply"); err != nil {
			return err
		}
		mgr, closeFn, err := r.d.Connect(ctx)
		if err != nil {
			return err
		}
		defer closeFn()
		h.Manager = mgr
		fmt.Fprintln(r.Stdout, "systemd is PID 1: applying through D-Bus")
	}
	if !p.Changed() {
		// Still make sure every kept unit is running (Apply starts stopped ones).
		fmt.Fprintln(r.Stdout, "already provisioned as asked")
	}
	res, err := Apply(ctx, p, h)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.Stdout, "done: %d file(s) written, %d removed; started %s; restarted %s; stopped %s\n",
		len(res.Written), len(res.Removed), orNone(res.Started), orNone(res.Restarted), orNone(res.Stopped))
	if r.Inputs.Root == "" && !r.NoStart {
		fmt.Fprintln(r.Stdout, "manage them with: systemctl status|restart|stop clearml-agents.target, or agent-provision status")
	}
	return nil
}

func (r *runner) status(ctx context.Context) error {
	var mgr systemd.Manager
	if r.Inputs.Root == "" && r.d.SystemdRunning() {
		m, closeFn, err := r.d.Connect(ctx)
		if err != nil {
			return err
		}
		defer closeFn()
		mgr = m
	}
	rows, err := Status(ctx, mgr, r.Inputs.Root)
	if err != nil {
		return err
	}
	if r.Inputs.Root == "" {
		AddContainers(ctx, rows)
	}
	fmt.Fprint(r.Stdout, FormatStatus(rows, r.d.Now()))
	if mgr == nil {
		fmt.Fprintln(r.Stdout, "(systemd is not PID 1 here, or --root was given: states are unknown)")
	}
	return nil
}

func (r *runner) remove(ctx context.Context) error {
	h := Host{Log: r.Stdout}
	if r.Inputs.Root == "" {
		if !r.d.SystemdRunning() {
			return errors.New("systemd is not PID 1 here (no /run/systemd/system); to clean an image use --root DIR")
		}
		if err := RequireRoot(r.d.Euid(), "agent-provision remove"); err != nil {
			return err
		}
		mgr, closeFn, err := r.d.Connect(ctx)
		if err != nil {
			return err
		}
		defer closeFn()
		h.Manager = mgr
	}
	removed, err := Remove(ctx, RemoveOptions{Root: r.Inputs.Root, ConfigPath: r.Inputs.ConfigPath, PurgeConfig: r.PurgeConfig}, h)
	if err != nil {
		return err
	}
	kept := ""
	if !r.PurgeConfig {
		kept = fmt.Sprintf("; kept %s (use --purge-config to delete it)", r.Inputs.ConfigPath)
	}
	fmt.Fprintf(r.Stdout, "removed %d path(s)%s\n", len(removed), kept)
	return nil
}

func (r *runner) gpus() error {
	inv, err := r.d.Discover()
	if err != nil {
		return err
	}
	fmt.Fprint(r.Stdout, inv.Table())
	return nil
}

// doctor runs `clearml-agent doctor` for every provisioned agent, as its
// unit would run it.
func (r *runner) doctor(ctx context.Context) error {
	if r.Inputs.Root != "" {
		return errors.New("doctor checks this machine's agents; drop --root (an image's agents are checked once it boots)")
	}
	agents, err := DoctorAgents(r.Inputs, r.d.Euid())
	if err != nil {
		return err
	}
	var out bytes.Buffer
	err = RunDoctor(ctx, agents, &out)
	r.Stdout.Write(out.Bytes())
	return err
}

// firstBoot fills in the credentials (waiting for --creds-file or
// --creds-url when they are not in the environment), then starts the
// agents that were enabled in the image.
func (r *runner) firstBoot(ctx context.Context) error {
	conf := filepath.Join(r.Inputs.Root, r.Inputs.ConfigPath)
	envm := map[string]string{EnvAccessKey: r.d.Getenv(EnvAccessKey), EnvSecretKey: r.d.Getenv(EnvSecretKey)}
	src := CredsSource{File: r.CredsFile, URL: r.CredsURL, Timeout: r.CredsTimeout, Log: r.Stdout}
	for _, h := range r.CredsHeaders {
		name, value, _ := ParseHeader(h) // checked by checkCredsWait
		if src.Headers == nil {
			src.Headers = http.Header{}
		}
		src.Headers.Add(name, value)
	}
	wrote, err := FirstBootWait(ctx, conf, envm, src)
	if err != nil {
		return err
	}
	if wrote {
		fmt.Fprintf(r.Stdout, "wrote credentials into %s\n", conf)
	} else {
		fmt.Fprintf(r.Stdout, "%s already has credentials; left unchanged\n", conf)
	}
	ids, err := FillWorkerIDs(r.Inputs.Root, r.Inputs.Hostname)
	if err != nil {
		return err
	}
	if len(ids) > 0 {
		fmt.Fprintf(r.Stdout, "worker ids: %s\n", strings.Join(ids, " "))
	}
	// The units skip while the marker is there (ConditionPathExists=!).
	marker := filepath.Join(r.Inputs.Root, PendingMarker(r.Inputs.ConfigPath))
	if err := os.Remove(marker); err == nil {
		fmt.Fprintf(r.Stdout, "removed %s: the agents may start\n", marker)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("first boot: %v; remove it by hand, then run first-boot again", err)
	}
	if r.NoStart || r.Inputs.Root != "" || !r.d.SystemdRunning() {
		return nil
	}
	mgr, closeFn, err := r.d.Connect(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	// Start every provisioned agent: skipped ones (the marker) start now,
	// ones that ran without credentials (an image from before the marker)
	// may have hit their start limit, so forget that and restart them.
	states, err := mgr.States(ctx, systemd.AgentPattern)
	if err != nil {
		return err
	}
	active := map[string]bool{}
	for _, st := range states {
		active[st.Name] = st.Active()
	}
	instances, err := provisionedInstances(r.Inputs.Root, states)
	if err != nil {
		return err
	}
	var units []string
	for _, inst := range instances {
		units = append(units, unitgen.InstanceUnit(inst))
	}
	if err := mgr.ResetFailed(ctx, units); err != nil {
		return err
	}
	if err := mgr.Start(ctx, unitgen.TargetName); err != nil {
		return err
	}
	for _, u := range units {
		start := mgr.Start
		if active[u] {
			start = mgr.Restart
		}
		if err := start(ctx, u); err != nil {
			return err
		}
	}
	if _, err := mgr.WaitActive(ctx, units, r.WaitTimeout); err != nil {
		return err
	}
	fmt.Fprintf(r.Stdout, "started %s: %s ready\n", unitgen.TargetName, strings.Join(instances, " "))
	return nil
}

// provisionedInstances lists the agents with an environment file under
// root, and those systemd has loaded.
func provisionedInstances(root string, loaded []systemd.UnitState) ([]string, error) {
	dir := filepath.Join(root, "/", unitgen.DefaultEnvDir)
	out, err := envInstances(dir)
	if err != nil {
		return nil, fmt.Errorf("first boot: %v", err)
	}
	for _, st := range loaded {
		if inst, ok := strings.CutPrefix(strings.TrimSuffix(st.Name, ".service"), "clearml-agent@"); ok {
			out = append(out, inst)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("first boot: no agents in %s; provision first (agent-provision --root DIR ... --first-boot-creds)", dir)
	}
	return out, nil
}

// checkCredsWait checks first-boot's --creds-file/--creds-url flags.
func (c *Command) checkCredsWait() error {
	if c.CredsFile != "" && c.CredsURL != "" {
		return errors.New("--creds-file and --creds-url: give one of them")
	}
	if c.CredsURL != "" {
		if u, err := url.Parse(c.CredsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--creds-url %q: want an http:// or https:// URL, e.g. http://169.254.169.254/...", c.CredsURL)
		}
	}
	if len(c.CredsHeaders) > 0 && c.CredsURL == "" {
		return fmt.Errorf("--creds-header %q: headers are sent only with --creds-url", c.CredsHeaders[0])
	}
	for _, h := range c.CredsHeaders {
		if _, _, err := ParseHeader(h); err != nil {
			return err
		}
	}
	if c.CredsTimeout < 0 {
		return fmt.Errorf("--creds-timeout %s: must be positive, e.g. 5m", c.CredsTimeout)
	}
	return nil
}

// CloudInitOptions are the flags of `agent-provision cloud-init`.
type CloudInitOptions struct {
	Output string // write here (mode 0600) instead of stdout
	Format string // cloud-config (default) or shell
	// BinaryURL and BinarySHA256: install this release tarball first.
	BinaryURL, BinarySHA256 string
	CredsFrom               string // inline (default), file:PATH, url:URL, placeholder
	WorkerIDPrefix          string
	NoPackages              bool
	DockerPackages          bool
	PrebuiltImage           bool
}

// cloudInit renders the user-data that provisions a fresh machine as the
// flags ask. The agent flags are checked here by planning them (against an
// empty image root, without NVML), so a mistake fails now, not at boot.
func (r *runner) cloudInit() error {
	o := r.CloudInit
	in := r.Inputs
	mode, arg, err := cloudinit.ParseCredsFrom(o.CredsFrom)
	if err != nil {
		return UsageError{err}
	}
	if in.FirstBootCreds {
		switch {
		case o.CredsFrom == "":
			mode = cloudinit.CredsPlaceholder
		case mode == cloudinit.CredsInline:
			return UsageError{errors.New("--first-boot-creds with --creds-from inline: the user-data either holds the credentials or waits for them; drop one (--creds-from placeholder is --first-boot-creds)")}
		}
	}
	switch {
	case in.Root != "":
		return UsageError{fmt.Errorf("--root %s: the user-data provisions the machine it runs on; to prepare an image use `agent-provision --root DIR --first-boot-creds ...` (packer) and `agent-provision cloud-init --prebuilt-image`", in.Root)}
	case r.DryRun:
		return UsageError{errors.New("--dry-run: cloud-init changes nothing here anyway; it prints the user-data (or writes --output)")}
	case o.WorkerIDPrefix != "" && in.Hostname != "":
		return UsageError{fmt.Errorf("--worker-id-prefix %s and --hostname %s both name the workers; drop one", o.WorkerIDPrefix, in.Hostname)}
	case mode != cloudinit.CredsInline && in.GitPass != "":
		return UsageError{fmt.Errorf("--git-pass (CLEARML_AGENT_GIT_PASS) with --creds-from %s would be on the machine's command line; use --creds-from inline (it goes into the 0600 credentials file), or set agent.git_pass later", mode)}
	case o.PrebuiltImage && (in.GitUser != "" || in.GitPass != ""):
		return UsageError{errors.New("--prebuilt-image with --git-user/--git-pass: first boot fills in the API keys only; give the git user when the image is built, or provision at boot without --prebuilt-image")}
	}
	if o.WorkerIDPrefix != "" {
		if err := cloudinit.CheckWorkerIDPrefix(o.WorkerIDPrefix); err != nil {
			return UsageError{err}
		}
	}
	for _, f := range []struct{ flag, v string }{{"--default-output-uri", in.DefaultOutputURI}} {
		if hasPassword(f.v) {
			return UsageError{fmt.Errorf("%s: the URL holds a password, which would be on the machine's command line; set it in clearml.conf instead", f.flag)}
		}
	}
	for _, u := range in.ExtraIndexURLs {
		if hasPassword(u) {
			return UsageError{fmt.Errorf("--extra-index-url %s: the URL holds a password, which would be on the machine's command line; set agent.package_manager.extra_index_url in clearml.conf instead", secret.MaskURLs(u))}
		}
	}

	cfg := cloudinit.Config{
		Format:         cloudinit.Format(o.Format),
		Prefix:         in.Prefix,
		WorkerIDPrefix: o.WorkerIDPrefix,
		CredsFrom:      mode,
		CredsHeaders:   r.CredsHeaders,
		CredsTimeout:   r.CredsTimeout,
		BinaryURL:      o.BinaryURL,
		BinarySHA256:   o.BinarySHA256,
		NoPackages:     o.NoPackages,
		DockerPackages: o.DockerPackages,
		PrebuiltImage:  o.PrebuiltImage,
		NoStart:        r.NoStart,
	}
	if in.ConfigPath != unitgen.DefaultConfigPath {
		cfg.ConfigPath = in.ConfigPath
	}
	switch mode {
	case cloudinit.CredsFile:
		cfg.CredsFile = arg
	case cloudinit.CredsURL:
		cfg.CredsURL = arg
	}
	for _, h := range r.CredsHeaders {
		if _, _, err := ParseHeader(h); err != nil {
			return UsageError{err}
		}
	}
	if mode == cloudinit.CredsInline {
		cfg.Credentials = cloudinit.Credentials{AccessKey: in.AccessKey, SecretKey: in.SecretKey, GitUser: in.GitUser, GitPass: in.GitPass}
	} else if in.AccessKey != "" || in.SecretKey != "" {
		fmt.Fprintf(r.Stderr, "note: --creds-from %s: the credentials given here (--access-key/--secret-key, CLEARML_API_*, --credentials-file) are not put into the user-data\n", mode)
	}

	planned := !o.PrebuiltImage || strings.TrimSpace(in.GPUs) != "" || in.CPUAgents != 0 || in.ServicesAgent
	if planned {
		agents, gpusAtBoot, err := r.cloudInitPlan(o)
		if err != nil {
			return err
		}
		cfg.Agents, cfg.GPUsAtBoot = agents, gpusAtBoot
	}
	if !o.PrebuiltImage {
		cfg.ApplyArgs = r.applyArgs(mode)
		if in.Docker || in.DockerImage != "" || in.DockerAgentBinary != "" {
			if !o.DockerPackages && !o.NoPackages {
				fmt.Fprintln(r.Stderr, "note: docker mode without --docker-packages: the machine's image must have the docker engine (docker.io)")
			}
		}
	}
	out, err := cloudinit.Render(cfg)
	if err != nil {
		return UsageError{err}
	}
	if o.Output == "" {
		_, err := r.Stdout.Write(out)
		return err
	}
	if err := config.WriteFileAtomic(o.Output, out, 0o600, -1, -1); err != nil {
		return err
	}
	what := "agents " + strings.Join(cfg.Agents, ", ")
	if cfg.GPUsAtBoot {
		what = strings.TrimSuffix("one agent per GPU found at boot, "+strings.Join(cfg.Agents, ", "), ", ")
	}
	if len(cfg.Agents) == 0 && !cfg.GPUsAtBoot {
		what = "the image's agents"
	}
	kind := "user-data (#cloud-config)"
	if cfg.Format == cloudinit.FormatShell {
		kind = "startup script"
	}
	fmt.Fprintf(r.Stdout, "wrote %s for %s to %s (mode 0600)\n", kind, what, o.Output)
	return nil
}

// cloudInitPlan plans the agent flags as apply would on an empty machine
// and returns the agent names (without the GPU agents of --gpus all, which
// only the machine's NVML can list: gpusAtBoot).
func (r *runner) cloudInitPlan(o CloudInitOptions) (names []string, gpusAtBoot bool, err error) {
	in := r.Inputs
	root, err := os.MkdirTemp("", "agent-provision-cloud-init-")
	if err != nil {
		return nil, false, err
	}
	defer os.RemoveAll(root)
	in.Root, in.FirstBootCreds = root, true
	if o.PrebuiltImage && in.APIHost == "" {
		in.APIHost = "http://api.invalid" // the image has its clearml.conf
	}
	if o.WorkerIDPrefix != "" {
		in.Hostname = o.WorkerIDPrefix + ":i-0123456789abcdef0"
	}
	var inv *gpu.Inventory
	if strings.EqualFold(strings.TrimSpace(in.GPUs), "all") {
		// One GPU group stands in for the machine's GPUs; agents named
		// gpuN cannot be checked before boot.
		gpusAtBoot = true
		inv = &gpu.Inventory{}
		for i := 0; i < max(in.GPUsPerAgent, 1); i++ {
			inv.GPUs = append(inv.GPUs, gpu.GPU{Index: i, UUID: fmt.Sprintf("GPU-00000000-0000-0000-0000-%012d", i)})
		}
		aq := map[string][]string{}
		for k, v := range in.AgentQueues {
			if !strings.HasPrefix(k, "gpu") {
				aq[k] = v
			}
		}
		in.AgentQueues = aq
	}
	p, err := NewPlan(in, inv)
	if err != nil {
		return nil, false, err
	}
	for _, a := range p.Agents {
		if gpusAtBoot && len(a.Spec.GPUs) > 0 {
			continue
		}
		names = append(names, a.Spec.Instance)
	}
	return names, gpusAtBoot, nil
}

// applyArgs re-renders the agent flags for the apply the machine runs:
// everything given except the secrets (they travel in the credentials
// file) and the settings of this command.
func (r *runner) applyArgs(mode cloudinit.CredsMode) []string {
	in := r.Inputs
	var a []string
	add := func(flag, v string) {
		if v != "" {
			a = append(a, flag, v)
		}
	}
	add("--api-host", in.APIHost)
	add("--web-host", in.WebHost)
	add("--files-host", in.FilesHost)
	for _, q := range in.Queues {
		add("--queue", q)
	}
	for _, q := range r.AgentQueues {
		add("--agent-queues", q)
	}
	add("--gpus", strings.TrimSpace(in.GPUs))
	if in.GPUsPerAgent != 0 {
		add("--gpus-per-agent", strconv.Itoa(in.GPUsPerAgent))
	}
	if in.CPUAgents != 0 {
		add("--cpu-agents", strconv.Itoa(in.CPUAgents))
	}
	if in.ServicesAgent {
		a = append(a, "--services-agent")
		if in.ServicesQueue != DefaultServicesQueue {
			add("--services-queue", in.ServicesQueue)
		}
	}
	if docker := in.Docker || in.DockerImage != "" || in.DockerAgentBinary != ""; docker {
		a = append(a, "--docker")
		add("--docker-image", in.DockerImage)
		add("--docker-agent-binary", in.DockerAgentBinary)
		add("--docker-host", in.DockerHost)
	}
	if mode != cloudinit.CredsInline {
		add("--git-user", in.GitUser) // inline: in the credentials file
	}
	for _, u := range in.ExtraIndexURLs {
		add("--extra-index-url", u)
	}
	add("--default-output-uri", in.DefaultOutputURI)
	if in.User != unitgen.DefaultUser {
		add("--user", in.User)
	}
	if in.Prefix != DefaultPrefix {
		add("--prefix", in.Prefix)
	}
	if in.ConfigPath != unitgen.DefaultConfigPath {
		add("--config", in.ConfigPath)
	}
	add("--hostname", in.Hostname)
	if in.WatchdogSec != 0 {
		add("--watchdog-sec", strconv.Itoa(in.WatchdogSec))
	}
	if r.WaitTimeout != 0 && r.WaitTimeout != DefaultWait {
		add("--wait", r.WaitTimeout.String())
	}
	if r.NoStart {
		a = append(a, "--no-start")
	}
	return a
}

// hasPassword reports whether s is a URL with a password in it.
func hasPassword(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}
