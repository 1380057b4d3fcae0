package unitgen

import (
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
)

// Unit names and the directory they are written to, relative to the root.
const (
	TemplateName = "clearml-agent@.service"
	TargetName   = "clearml-agents.target"
	UnitDir      = "etc/systemd/system"
)

// Defaults applied by Generate to zero Options fields.
const (
	DefaultBinaryPath   = "/usr/local/bin/clearml-agent"
	DefaultConfigPath   = "/etc/clearml-agent/clearml.conf"
	DefaultEnvDir       = "/etc/clearml-agent/agents"
	DefaultUser         = "clearml"
	DefaultWatchdogSec  = 120
	DefaultDrainTimeout = 10 * time.Minute
	DefaultAbortGrace   = 30 * time.Second
	DefaultRestartSec   = 10
	// stopMargin is added to drain + abort grace in TimeoutStopSec for the
	// final status report and log flush.
	stopMargin = 30 * time.Second
)

// Environment variables of the per-instance file that ExecStart expands.
const (
	EnvWorkerID   = "CLEARML_WORKER_ID"
	EnvQueues     = "CLEARML_AGENT_QUEUES"
	EnvGPUs       = "CLEARML_AGENT_GPUS"
	EnvDaemonArgs = "CLEARML_AGENT_DAEMON_ARGS"
)

// AgentSpec is one agent: one instance of the template unit.
type AgentSpec struct {
	Instance    string            // systemd instance name: "gpu0", "gpu0-1", "cpu0", "services"
	GPUs        []string          // NVIDIA_VISIBLE_DEVICES entries, from gpu.Assignment.Devices
	Queues      []string          // queue names or ids, in priority order
	WorkerID    string            // CLEARML_WORKER_ID; empty lets the agent derive it
	Services    bool              // --services-mode
	ServicesMax int               // --services-mode N; 0 or less is unlimited
	CPUOnly     bool              // --cpu-only
	Docker      bool              // --docker [DockerImage]
	DockerImage string            // default image for --docker; empty uses the config's
	ExtraEnv    map[string]string // more variables for the environment file; no secrets
}

// Options are the host-wide settings of the template unit. Zero fields get
// the Default* values; WatchdogSec < 0 turns the watchdog off and
// DrainTimeout < 0 lets a stop wait forever for the running task.
type Options struct {
	BinaryPath   string
	ConfigPath   string
	EnvDir       string
	User, Group  string // Group defaults to User
	WatchdogSec  int
	DrainTimeout time.Duration
	AbortGrace   time.Duration // time between aborting the task and killing it
	RestartSec   int
	// Docker: the agents run their tasks in containers (every agent must:
	// the template is shared). The unit joins the docker group and gets no
	// device access of its own; see templateUnit.
	Docker bool
	// PendingMarker, when set, is a file whose presence keeps the agents
	// from starting (ConditionPathExists=!PATH): an image provisioned with
	// --first-boot-creds has no credentials yet, and its units are skipped
	// cleanly, instead of failing and restarting, until
	// `agent-provision first-boot` fills them in and removes the file.
	PendingMarker string
	// DockerUnit is the local engine's systemd unit ("docker.service") that
	// docker-mode units want and start after; empty when the engine is
	// remote or not a systemd service (DOCKER_HOST elsewhere).
	DockerUnit string
}

// File is one generated file.
type File struct {
	Path    string // relative to the root, e.g. "etc/systemd/system/clearml-agent@.service"
	Content []byte
	Mode    fs.FileMode
}

// Files are the generated files in a fixed order: template, target, then one
// environment file per agent in the order given.
type Files []File

// InstanceUnit is the unit name of one agent: "clearml-agent@gpu0.service".
func InstanceUnit(instance string) string {
	return "clearml-agent@" + instance + ".service"
}

var (
	reInstance = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	reEnvName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// reSecret matches variable names that carry credentials.
	reSecret = regexp.MustCompile(`(?i)(SECRET|PASSWORD|PASSWD|_PASS$|_PASS_|TOKEN|ACCESS_KEY|PRIVATE_KEY|API_KEY|CREDENTIAL)`)
)

// Generate renders the files for agents.
func Generate(opts Options, agents []AgentSpec) (Files, error) {
	opts = withDefaults(opts)
	if err := validateOptions(opts); err != nil {
		return nil, err
	}
	if len(agents) == 0 {
		return nil, fmt.Errorf("unitgen: no agents to generate; give at least one, e.g. --gpus 0 or --cpu-agents 1")
	}
	seen := map[string]bool{}
	for _, a := range agents {
		if err := validateAgent(opts, a); err != nil {
			return nil, err
		}
		if seen[a.Instance] {
			return nil, fmt.Errorf("agent %q: instance name used twice; give every agent its own name", a.Instance)
		}
		seen[a.Instance] = true
	}

	files := Files{
		{Path: path.Join(UnitDir, TemplateName), Content: serialize(templateUnit(opts)), Mode: 0o644},
		{Path: path.Join(UnitDir, TargetName), Content: serialize(targetUnit(agents)), Mode: 0o644},
	}
	for _, a := range agents {
		files = append(files, File{
			Path:    path.Join(strings.TrimPrefix(opts.EnvDir, "/"), a.Instance+".env"),
			Content: envFile(a),
			Mode:    0o640,
		})
	}
	return files, nil
}

func withDefaults(o Options) Options {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.BinaryPath, DefaultBinaryPath)
	def(&o.ConfigPath, DefaultConfigPath)
	def(&o.EnvDir, DefaultEnvDir)
	def(&o.User, DefaultUser)
	def(&o.Group, o.User)
	if o.WatchdogSec == 0 {
		o.WatchdogSec = DefaultWatchdogSec
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.AbortGrace <= 0 {
		o.AbortGrace = DefaultAbortGrace
	}
	if o.RestartSec <= 0 {
		o.RestartSec = DefaultRestartSec
	}
	return o
}

func validateOptions(o Options) error {
	for _, p := range []struct{ name, v string }{{"binary path", o.BinaryPath}, {"config path", o.ConfigPath}, {"env dir", o.EnvDir}} {
		if !path.IsAbs(p.v) || path.Clean(p.v) != p.v || strings.ContainsAny(p.v, " \t\n%$\\\"'") {
			return fmt.Errorf("unitgen: %s %q must be a clean absolute path without spaces, quotes, %% or $; e.g. %s", p.name, p.v, DefaultBinaryPath)
		}
	}
	for _, n := range []struct{ name, v string }{{"user", o.User}, {"group", o.Group}} {
		if !regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`).MatchString(n.v) {
			return fmt.Errorf("unitgen: %s %q is not a valid system account name; use e.g. %s", n.name, n.v, DefaultUser)
		}
	}
	if o.User == "root" {
		return fmt.Errorf("unitgen: user %q: agents must not run as root; use a dedicated account such as %s (docker mode adds the docker group)", o.User, DefaultUser)
	}
	return nil
}

func validateAgent(o Options, a AgentSpec) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("agent %q: %s", a.Instance, fmt.Sprintf(format, args...))
	}
	if !reInstance.MatchString(a.Instance) || len(a.Instance) > 200 {
		return fail("instance names may only use letters, digits, '_', '.' and '-' (at most 200); use e.g. gpu0, gpu0-1, cpu0, services")
	}
	if len(a.Queues) == 0 {
		return fail("no queues; give at least one, e.g. --queue default")
	}
	for _, q := range a.Queues {
		if q == "" || strings.ContainsFunc(q, isSpaceOrControl) {
			return fail("queue %q is empty or contains whitespace; queue names are passed as separate arguments", q)
		}
	}
	if strings.ContainsFunc(a.WorkerID, isSpaceOrControl) {
		return fail("worker id %q contains whitespace; use e.g. host:gpu0", a.WorkerID)
	}
	for _, g := range a.GPUs {
		if g == "" || strings.ContainsAny(g, ", \t\n\"'\\$") {
			return fail("GPU id %q is empty or contains a separator; pass one id per entry, e.g. [\"0\", \"1\"]", g)
		}
	}
	switch {
	case a.Services && len(a.GPUs) > 0:
		return fail("services mode runs CPU-only and cannot take GPUs %s; drop the GPUs or the services mode", strings.Join(a.GPUs, ","))
	case a.CPUOnly && len(a.GPUs) > 0:
		return fail("--cpu-only and GPUs %s contradict; drop one of them", strings.Join(a.GPUs, ","))
	case a.DockerImage != "" && !a.Docker:
		return fail("docker image %q given without docker mode; set Docker too", a.DockerImage)
	case a.Docker && !o.Docker:
		return fail("runs tasks in docker but Options.Docker is off, so the unit would lack the docker group and ordering; turn Options.Docker on")
	case !a.Docker && o.Docker:
		return fail("does not run tasks in docker but the shared unit template is in docker mode (no GPU devices, docker group); run every agent in docker or none")
	case strings.ContainsFunc(a.DockerImage, isSpaceOrControl):
		return fail("docker image %q contains whitespace; give arguments in clearml.conf agent.default_docker.arguments", a.DockerImage)
	}
	managed := map[string]bool{EnvWorkerID: true, EnvQueues: true, EnvGPUs: true, EnvDaemonArgs: true,
		"NVIDIA_VISIBLE_DEVICES": true, "CUDA_VISIBLE_DEVICES": true, "CLEARML_AGENT_STATE_DIR": true,
		"CLEARML_AGENT_CACHE_DIR": true, "CLEARML_AGENT_LOG_DIR": true, "HOME": true}
	for _, k := range sortedKeys(a.ExtraEnv) {
		v := a.ExtraEnv[k]
		switch {
		case !reEnvName.MatchString(k):
			return fail("environment variable name %q is invalid; use letters, digits and '_'", k)
		case managed[k]:
			return fail("environment variable %s is set by the generator; use the matching AgentSpec field instead", k)
		case reSecret.MatchString(k):
			return fail("environment variable %s looks like a credential; put it in clearml.conf (mode 0600), not in the environment file", k)
		case strings.ContainsAny(v, "\n\r\x00"):
			return fail("environment variable %s has a line break in its value; use a single line", k)
		}
	}
	return nil
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// templateUnit lists the directives of clearml-agent@.service in order.
func templateUnit(o Options) []*unit.UnitOption {
	var u []*unit.UnitOption
	add := func(section, name, value string) { u = append(u, unit.NewUnitOption(section, name, value)) }
	unitS := func(name, value string) { add("Unit", name, value) }
	svc := func(name, value string) { add("Service", name, value) }

	unitS("Description", "ClearML agent %i")
	unitS("Documentation", "https://clear.ml/docs/latest/docs/clearml_agent")
	unitS("Wants", "network-online.target")
	after := "network-online.target nvidia-persistenced.service"
	if o.Docker && o.DockerUnit != "" {
		// Ordering only: a missing docker.service is no error for Wants=.
		unitS("Wants", o.DockerUnit)
		after += " " + o.DockerUnit
	}
	unitS("After", after)
	unitS("PartOf", TargetName)
	if o.PendingMarker != "" {
		unitS("ConditionPathExists", "!"+o.PendingMarker)
	}
	unitS("StartLimitIntervalSec", "600")
	unitS("StartLimitBurst", "5")

	// Lifecycle: READY=1 once logged in and the queues resolve, WATCHDOG=1
	// while the server answers; SIGTERM drains, SIGHUP reloads the config.
	svc("Type", "notify")
	svc("NotifyAccess", "main")
	svc("EnvironmentFile", path.Join(o.EnvDir, "%i.env"))
	svc("Environment", "CLEARML_AGENT_STATE_DIR=%S/clearml-agent/%i")
	svc("Environment", "CLEARML_AGENT_CACHE_DIR=%C/clearml-agent/%i")
	svc("Environment", "CLEARML_AGENT_LOG_DIR=%L/clearml-agent/%i")
	svc("Environment", "HOME=%S/clearml-agent/%i")
	// The agent's drain and abort timings must fit TimeoutStopSec: pass them
	// as configuration overrides (they win over clearml.conf).
	drain := int64(0)
	if o.DrainTimeout > 0 {
		drain = int64(math.Ceil(o.DrainTimeout.Seconds()))
	}
	svc("Environment", fmt.Sprintf("CLEARML_AGENT__AGENT__DRAIN_TIMEOUT_SEC=%d", drain))
	svc("Environment", fmt.Sprintf("CLEARML_AGENT__AGENT__ABORT_GRACE_PERIOD_SEC=%d", int64(math.Ceil(o.AbortGrace.Seconds()))))
	svc("ExecStart", fmt.Sprintf("%s --config-file %s daemon --foreground --queue $%s $%s",
		o.BinaryPath, o.ConfigPath, EnvQueues, EnvDaemonArgs))
	svc("ExecReload", "/bin/kill -HUP $MAINPID")
	svc("User", o.User)
	svc("Group", o.Group)
	if o.Docker {
		// The engine's socket (root:docker, 0660). Membership is as good as
		// root on the host: whoever may talk to the engine may start a
		// privileged container. The sandbox below limits the agent process,
		// not what it can ask the engine for.
		svc("SupplementaryGroups", "docker")
	}
	if o.WatchdogSec > 0 {
		svc("WatchdogSec", strconv.Itoa(o.WatchdogSec))
	}
	svc("Restart", "on-failure")
	svc("RestartSec", strconv.Itoa(o.RestartSec))
	svc("TimeoutStartSec", "300")
	svc("TimeoutStopSec", stopTimeout(o))
	svc("KillMode", "mixed")
	svc("KillSignal", "SIGTERM")
	svc("StateDirectory", "clearml-agent/%i")
	svc("CacheDirectory", "clearml-agent/%i")
	svc("LogsDirectory", "clearml-agent/%i")
	svc("UMask", "0077")

	// Sandboxing, as far as running arbitrary Python tasks allows.
	// MemoryDenyWriteExecute stays off: Python JITs and ctypes need W+X.
	// In docker mode the tasks run in containers the engine creates (not
	// children of this unit), so the agent process itself gets more: no
	// devices, W^X memory and a system call filter. Nothing is relaxed for
	// the engine's socket: AF_UNIX is allowed, connect(2) to a socket works
	// on the read-only /run of ProtectSystem=strict, and the agent itself
	// creates no namespaces (dockerd does), so RestrictNamespaces stays.
	svc("NoNewPrivileges", "yes")
	svc("PrivateTmp", "yes")
	svc("ProtectSystem", "strict")
	svc("ProtectHome", "read-only")
	svc("ProtectKernelTunables", "yes")
	svc("ProtectKernelModules", "yes")
	svc("ProtectKernelLogs", "yes")
	svc("ProtectControlGroups", "yes")
	svc("ProtectClock", "yes")
	svc("ProtectHostname", "yes")
	svc("RestrictSUIDSGID", "yes")
	svc("RestrictRealtime", "yes")
	svc("RestrictNamespaces", "yes")
	svc("LockPersonality", "yes")
	svc("SystemCallArchitectures", "native")
	svc("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6 AF_NETLINK")
	svc("CapabilityBoundingSet", "")
	if o.Docker {
		// The GPUs reach the containers through the engine (device
		// requests); the agent only talks to the server and the socket.
		svc("PrivateDevices", "yes")
		svc("DevicePolicy", "closed")
		svc("ProtectProc", "invisible")
		svc("MemoryDenyWriteExecute", "yes")
		// EPERM rather than SIGSYS: a call outside the set fails one
		// operation with an error in the log instead of killing the agent.
		svc("SystemCallFilter", "@system-service")
		svc("SystemCallErrorNumber", "EPERM")
	} else {
		// Only the pseudo devices and the NVIDIA ones (nvidiactl, nvidiaN,
		// nvidia-uvm, nvidia-caps/*, nvidia-nvswitch): groups from /proc/devices.
		svc("DevicePolicy", "closed")
		svc("DeviceAllow", "char-nvidia* rw")
	}

	add("Install", "WantedBy", TargetName)
	return u
}

// stopTimeout is drain + abort grace + margin, in whole seconds, or
// "infinity" when the drain may take forever.
func stopTimeout(o Options) string {
	if o.DrainTimeout < 0 {
		return "infinity"
	}
	d := o.DrainTimeout + o.AbortGrace + stopMargin
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10)
}

func targetUnit(agents []AgentSpec) []*unit.UnitOption {
	u := []*unit.UnitOption{
		unit.NewUnitOption("Unit", "Description", "ClearML agents on this host"),
		unit.NewUnitOption("Unit", "Documentation", "https://clear.ml/docs/latest/docs/clearml_agent"),
	}
	for _, a := range agents {
		u = append(u, unit.NewUnitOption("Unit", "Wants", InstanceUnit(a.Instance)))
	}
	return append(u, unit.NewUnitOption("Install", "WantedBy", "multi-user.target"))
}

func serialize(opts []*unit.UnitOption) []byte {
	b, err := io.ReadAll(unit.Serialize(opts))
	if err != nil { // Serialize returns a bytes.Buffer; reading it cannot fail
		panic(err)
	}
	return b
}

// DaemonArgs are the daemon flags of one agent besides --queue, as they go
// into CLEARML_AGENT_DAEMON_ARGS.
func DaemonArgs(a AgentSpec) []string {
	var args []string
	switch {
	case a.Services:
		args = append(args, "--services-mode")
		if a.ServicesMax > 0 {
			args = append(args, strconv.Itoa(a.ServicesMax))
		}
	case a.CPUOnly || len(a.GPUs) == 0:
		args = append(args, "--cpu-only")
	default:
		args = append(args, "--gpus", strings.Join(a.GPUs, ","))
	}
	if a.Docker {
		args = append(args, "--docker")
		if a.DockerImage != "" {
			args = append(args, a.DockerImage)
		}
	}
	return args
}

// envFile renders <EnvDir>/<instance>.env.
func envFile(a AgentSpec) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: generated by agent-provision; edit the fleet settings and re-run it instead.\n", InstanceUnit(a.Instance))
	b.WriteString("# No credentials here: they live in clearml.conf (mode 0600).\n")
	line := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, quoteEnv(v)) }
	if a.WorkerID != "" {
		line(EnvWorkerID, a.WorkerID)
	}
	line(EnvQueues, strings.Join(a.Queues, " "))
	if len(a.GPUs) > 0 {
		b.WriteString("# For reference; the unit passes the GPUs through " + EnvDaemonArgs + ".\n")
		line(EnvGPUs, strings.Join(a.GPUs, ","))
	}
	line(EnvDaemonArgs, strings.Join(DaemonArgs(a), " "))
	for _, k := range sortedKeys(a.ExtraEnv) {
		line(k, a.ExtraEnv[k])
	}
	return []byte(b.String())
}

// quoteEnv writes a value for systemd's EnvironmentFile parser: bare when it
// is plain, else double-quoted with \ " $ ` escaped.
func quoteEnv(v string) string {
	if v != "" && !strings.ContainsFunc(v, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.,:/@%+=-", r))
	}) {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range v {
		if strings.ContainsRune("\\\"$`", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
