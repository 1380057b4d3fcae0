package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/gpu"
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
)

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
	Stdout      io.Writer
	Stderr      io.Writer
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
	if c.Inputs.Hostname == "" && c.Inputs.Root == "" {
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

// firstBoot fills in the credentials, then starts the agents that were
// enabled in the image.
func (r *runner) firstBoot(ctx context.Context) error {
	conf := filepath.Join(r.Inputs.Root, r.Inputs.ConfigPath)
	envm := map[string]string{EnvAccessKey: r.d.Getenv(EnvAccessKey), EnvSecretKey: r.d.Getenv(EnvSecretKey)}
	wrote, err := FirstBoot(conf, envm, r.CredsFile)
	if err != nil {
		return err
	}
	if wrote {
		fmt.Fprintf(r.Stdout, "wrote credentials into %s\n", conf)
	} else {
		fmt.Fprintf(r.Stdout, "%s already has credentials; left unchanged\n", conf)
	}
	if r.NoStart || r.Inputs.Root != "" || !r.d.SystemdRunning() {
		return nil
	}
	mgr, closeFn, err := r.d.Connect(ctx)
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
	fmt.Fprintf(r.Stdout, "started %s\n", unitgen.TargetName)
	return nil
}
