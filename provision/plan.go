package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/agent/gpu"
	"github.com/gpufleet/clearml-agent-go/internal/secret"
	"github.com/gpufleet/clearml-agent-go/unitgen"
)

// Defaults for zero Inputs fields.
const (
	DefaultPrefix        = "/usr/local"
	DefaultServicesQueue = "services"
	DefaultQueue         = "default"
	// SysusersPath and TmpfilesPath create the agent user and fix the
	// config's ownership at boot (image builds), and are harmless on a live
	// host where the user already exists.
	SysusersPath = "/usr/lib/sysusers.d/clearml-agent.conf"
	TmpfilesPath = "/usr/lib/tmpfiles.d/clearml-agent.conf"
	// AgentHome is the system user's home directory.
	AgentHome = "/var/lib/clearml-agent"
)

// Inputs are everything agent-provision was asked for.
type Inputs struct {
	APIHost, WebHost, FilesHost string
	AccessKey, SecretKey        string
	// Queues are the queues of every GPU and CPU agent (default "default").
	Queues []string
	// AgentQueues overrides Queues per instance: "gpu0" -> ["q1", "q2"].
	AgentQueues map[string][]string
	// GPUs is the --gpus spec ("0,1", "0,1+2,3", "all", UUIDs, "0:1" MIG);
	// GPUsPerAgent groups plain ids.
	GPUs         string
	GPUsPerAgent int
	// CPUAgents adds cpu0..cpuN-1 running --cpu-only.
	CPUAgents int
	// ServicesAgent adds the "services" instance in services mode on
	// ServicesQueue (default "services").
	ServicesAgent bool
	ServicesQueue string
	// Docker runs every agent's tasks in containers (daemon --docker).
	// DockerImage (the default image) and DockerAgentBinary imply it.
	Docker      bool
	DockerImage string
	// DockerAgentBinary is the static clearml-agent bind-mounted into task
	// containers; default PREFIX/bin/clearml-agent-static.
	DockerAgentBinary string
	// DockerHost is the engine the agents use (DOCKER_HOST); default
	// unix:///var/run/docker.sock.
	DockerHost string
	// Supervised: for `agent-provision run`, which writes no units (the
	// docker group is not needed).
	Supervised bool

	GitUser, GitPass string
	ExtraIndexURLs   []string
	DefaultOutputURI string

	User       string // agent account, default clearml
	Prefix     string // install prefix of the clearml-agent binary, default /usr/local
	ConfigPath string // default /etc/clearml-agent/clearml.conf
	// Root writes everything under this directory (an image root), enables
	// units offline and starts nothing. Empty means the live system.
	Root string
	// SystemRoot is where / of the live system lies on this machine: ""
	// means /. Unlike Root, units are still started through the Manager;
	// tests point it at a temporary directory.
	SystemRoot string
	// FirstBootCreds allows missing credentials; `agent-provision first-boot`
	// fills them in later.
	FirstBootCreds bool
	// MetricsListen is the Prometheus endpoint (HOST:PORT) of the first
	// agent; each further agent gets the next port
	// (CLEARML_AGENT_METRICS_LISTEN in its environment file). Empty: off.
	MetricsListen string
	// Hostname prefixes worker ids ("host:gpu0"); empty lets each agent
	// derive its own (right for images, whose host name is not known yet).
	Hostname string
	// WatchdogSec overrides the unit's watchdog (0: unitgen's default).
	WatchdogSec int
	// DrainTimeout overrides how long a stop waits for the running task.
	DrainTimeout time.Duration
}

// FileAction is what Apply does with one file.
type FileAction string

const (
	FileKeep   FileAction = "keep"
	FileCreate FileAction = "create"
	FileUpdate FileAction = "update"
	FileDelete FileAction = "delete"
)

// FileChange is one file of the plan.
type FileChange struct {
	Target string // path on the provisioned system, e.g. /etc/clearml-agent/clearml.conf
	Path   string // where it is written on this machine (Target under Root)
	Action FileAction
	Old    []byte // nil when the file does not exist
	New    []byte // nil for FileDelete
	Mode   fs.FileMode
	// AgentOwned files are chowned to the agent user (clearml.conf).
	AgentOwned bool
	secrets    []string
}

// Diff is a line diff of Old and New with credentials masked.
func (f FileChange) Diff() string {
	return maskSecrets(lineDiff(string(f.Old), string(f.New)), f.secrets)
}

// UnitAction is what Apply does with one agent unit.
type UnitAction string

const (
	UnitKeep    UnitAction = "keep"
	UnitStart   UnitAction = "start"
	UnitRestart UnitAction = "restart"
	UnitStop    UnitAction = "stop"
)

// UnitChange is one agent unit of the plan.
type UnitChange struct {
	Unit   string // clearml-agent@gpu0.service
	Action UnitAction
	Reason string // why, e.g. "environment file changed"
}

// Agent is one wanted agent.
type Agent struct {
	Spec unitgen.AgentSpec
	Unit string
}

// Plan is what Apply will do.
type Plan struct {
	Inputs   Inputs // with defaults filled in
	Agents   []Agent
	Files    []FileChange
	Units    []UnitChange
	Warnings []string
	Unit     unitgen.Options
	Docker   *DockerInfo // docker mode, else nil
}

// Changed reports whether applying the plan writes or (re)starts anything.
func (p *Plan) Changed() bool {
	for _, f := range p.Files {
		if f.Action != FileKeep {
			return true
		}
	}
	for _, u := range p.Units {
		if u.Action != UnitKeep {
			return true
		}
	}
	return false
}

// String renders the plan for --dry-run and for the log of a real run.
func (p *Plan) String() string {
	var b strings.Builder
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	where := "this system"
	if p.Inputs.Root != "" {
		where = "image root " + p.Inputs.Root
	}
	fmt.Fprintf(&b, "plan for %s: %d agent(s)\n", where, len(p.Agents))
	for _, a := range p.Agents {
		gpus := strings.Join(a.Spec.GPUs, ",")
		if gpus == "" {
			gpus = "-"
		}
		fmt.Fprintf(&b, "  %s gpus=%s queues=%s args=%q\n", a.Unit, gpus, strings.Join(a.Spec.Queues, ","),
			strings.Join(unitgen.DaemonArgs(a.Spec), " "))
	}
	if d := p.Docker; d != nil {
		engine := d.Host
		if d.Version != "" {
			engine += " (engine " + d.Version + ")"
		}
		image := d.Image
		if image == "" {
			image = "the task's, else agent.default_docker in clearml.conf"
		}
		order := "none (not the local docker.service)"
		if d.Unit != "" {
			order = "after " + d.Unit
		}
		fmt.Fprintf(&b, "docker mode: engine %s; static agent %s; image %s; ordering %s\n", engine, d.Binary, image, order)
	}
	b.WriteString("files:\n")
	for _, f := range p.Files {
		fmt.Fprintf(&b, "  %-7s %s (%04o)\n", f.Action, f.Target, f.Mode.Perm())
		if f.Action != FileKeep {
			for _, l := range strings.Split(strings.TrimRight(f.Diff(), "\n"), "\n") {
				if l != "" {
					b.WriteString("      " + l + "\n")
				}
			}
		}
	}
	b.WriteString("units:\n")
	for _, u := range p.Units {
		fmt.Fprintf(&b, "  %-7s %s", u.Action, u.Unit)
		if u.Reason != "" {
			fmt.Fprintf(&b, " (%s)", u.Reason)
		}
		b.WriteString("\n")
	}
	if !p.Changed() {
		b.WriteString("nothing to change\n")
	}
	return b.String()
}

func withDefaults(in Inputs) Inputs {
	if in.User == "" {
		in.User = unitgen.DefaultUser
	}
	if in.Prefix == "" {
		in.Prefix = DefaultPrefix
	}
	if in.ConfigPath == "" {
		in.ConfigPath = unitgen.DefaultConfigPath
	}
	if in.ServicesQueue == "" {
		in.ServicesQueue = DefaultServicesQueue
	}
	if len(in.Queues) == 0 {
		in.Queues = []string{DefaultQueue}
	}
	return in
}

// NewPlan computes the plan for in. inv is the NVML inventory, nil when NVML
// is absent (explicit GPU ids are then accepted with a warning). It reads the
// files on disk but writes nothing.
func NewPlan(in Inputs, inv *gpu.Inventory) (*Plan, error) {
	in = withDefaults(in)
	p := &Plan{Inputs: in}
	if in.DockerImage != "" || in.DockerAgentBinary != "" {
		in.Docker = true // the image or the static agent only make sense in docker mode
		p.Inputs.Docker = true
	}
	if in.Docker {
		if err := validateDockerInputs(in); err != nil {
			return nil, err
		}
	}
	if in.CPUAgents < 0 {
		return nil, fmt.Errorf("--cpu-agents %d: must be 0 or more", in.CPUAgents)
	}
	if in.Root != "" {
		if !filepath.IsAbs(in.Root) {
			abs, err := filepath.Abs(in.Root)
			if err != nil {
				return nil, fmt.Errorf("--root %q: %v", in.Root, err)
			}
			in.Root = abs
			p.Inputs.Root = abs
		}
		fi, err := os.Stat(in.Root)
		switch {
		case err != nil:
			return nil, fmt.Errorf("--root %q: %v; create the image root first", in.Root, err)
		case !fi.IsDir():
			return nil, fmt.Errorf("--root %q: not a directory; pass the directory that will become / of the image", in.Root)
		}
	}
	if !path.IsAbs(in.Prefix) || path.Clean(in.Prefix) != in.Prefix {
		return nil, fmt.Errorf("--prefix %q: must be a clean absolute path, e.g. %s", in.Prefix, DefaultPrefix)
	}
	if !path.IsAbs(in.ConfigPath) {
		return nil, fmt.Errorf("--config %q: must be an absolute path, e.g. %s", in.ConfigPath, unitgen.DefaultConfigPath)
	}
	if (in.AccessKey == "") != (in.SecretKey == "") {
		return nil, errors.New("credentials: give both --access-key and --secret-key (or CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY), not only one")
	}

	agents, warnings, err := agentSpecs(in, inv)
	if err != nil {
		return nil, err
	}
	p.Warnings = warnings
	p.Unit = unitgen.Options{
		BinaryPath:    path.Join(in.Prefix, "bin/clearml-agent"),
		ConfigPath:    in.ConfigPath,
		User:          in.User,
		PendingMarker: PendingMarker(in.ConfigPath),
		WatchdogSec:   in.WatchdogSec,
		DrainTimeout:  in.DrainTimeout,
	}
	if in.Docker {
		p.Unit.Docker = true
		if localDockerService(dockerHost(in)) {
			p.Unit.DockerUnit = DockerUnit
		}
		env := dockerEnv(in)
		for i := range agents {
			agents[i].Docker, agents[i].DockerImage = true, in.DockerImage
			if len(env) > 0 {
				agents[i].ExtraEnv = env
			}
		}
	}
	if in.MetricsListen != "" {
		addrs, err := metricsAddrs(in.MetricsListen, len(agents))
		if err != nil {
			return nil, err
		}
		for i := range agents {
			env := map[string]string{EnvMetricsListen: addrs[i]}
			for k, v := range agents[i].ExtraEnv {
				env[k] = v
			}
			agents[i].ExtraEnv = env
		}
	}
	files, err := unitgen.Generate(p.Unit, agents)
	if err != nil {
		return nil, err
	}
	for _, a := range agents {
		p.Agents = append(p.Agents, Agent{Spec: a, Unit: unitgen.InstanceUnit(a.Instance)})
	}

	// clearml.conf first: its errors (syntax, credentials) matter most.
	conf, err := p.confChange()
	if err != nil {
		return nil, err
	}
	p.Files = append(p.Files, conf)
	changed := map[string]bool{} // target path -> changed
	changed[conf.Target] = conf.Action != FileKeep
	// Without credentials (--first-boot-creds) the units wait for
	// first-boot behind the marker; with them, no marker may be left.
	marker := PendingMarker(in.ConfigPath)
	if bytes.Contains(conf.New, []byte(emptyCreds)) {
		fc, err := p.fileChange(marker, []byte(pendingMarkerText), 0o644)
		if err != nil {
			return nil, err
		}
		p.Files = append(p.Files, fc)
	} else if old, _, err := p.read(marker); err != nil {
		return nil, err
	} else if old != nil {
		p.Files = append(p.Files, FileChange{Target: marker, Path: p.hostPath(marker), Action: FileDelete, Old: old, Mode: 0o644})
	}
	for _, f := range files {
		fc, err := p.fileChange("/"+f.Path, f.Content, f.Mode)
		if err != nil {
			return nil, err
		}
		changed[fc.Target] = fc.Action != FileKeep
		p.Files = append(p.Files, fc)
	}
	sysusers := fmt.Sprintf("# generated by agent-provision\nu %s - \"ClearML agent\" %s /usr/sbin/nologin\n", in.User, AgentHome)
	if in.Docker {
		// SupplementaryGroups=docker fails the units when the group is
		// missing; docker.io creates it too (and keeps it if it exists).
		sysusers += fmt.Sprintf("g %s -\n", DockerGroup)
	}
	for _, extra := range []struct {
		target string
		data   string
	}{
		{SysusersPath, sysusers},
		{TmpfilesPath, fmt.Sprintf("# generated by agent-provision: the config holds credentials\nz %s 0600 %s %s -\n", in.ConfigPath, in.User, in.User)},
	} {
		fc, err := p.fileChange(extra.target, []byte(extra.data), 0o644)
		if err != nil {
			return nil, err
		}
		p.Files = append(p.Files, fc)
	}

	// Agents on disk that are no longer wanted.
	envDir := path.Join("/", unitgen.DefaultEnvDir)
	wanted := map[string]bool{}
	for _, a := range agents {
		wanted[a.Instance] = true
	}
	existing, err := p.existingInstances()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, inst := range existing {
		if wanted[inst] {
			continue
		}
		target := path.Join(envDir, inst+".env")
		old, _, err := p.read(target)
		if err != nil {
			return nil, err
		}
		p.Files = append(p.Files, FileChange{Target: target, Path: p.hostPath(target), Action: FileDelete, Old: old, Mode: 0o640})
		removed = append(removed, inst)
	}

	template := changed["/"+path.Join(unitgen.UnitDir, unitgen.TemplateName)]
	for _, a := range p.Agents {
		envTarget := path.Join(envDir, a.Spec.Instance+".env")
		uc := UnitChange{Unit: a.Unit, Action: UnitKeep}
		switch {
		case !slices.Contains(existing, a.Spec.Instance):
			uc.Action, uc.Reason = UnitStart, "new agent"
		case changed[envTarget]:
			uc.Action, uc.Reason = UnitRestart, "environment file changed"
		case template:
			uc.Action, uc.Reason = UnitRestart, "unit template changed"
		case conf.Action != FileKeep:
			uc.Action, uc.Reason = UnitRestart, "clearml.conf changed"
		}
		p.Units = append(p.Units, uc)
	}
	for _, inst := range removed {
		p.Units = append(p.Units, UnitChange{Unit: unitgen.InstanceUnit(inst), Action: UnitStop, Reason: "no longer wanted"})
	}
	// Last: it may wait for the engine, and input errors matter more.
	if in.Docker {
		if err := p.checkDocker(context.Background()); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// agentSpecs lists the wanted agents: one per GPU group, then cpu0.., then services.
func agentSpecs(in Inputs, inv *gpu.Inventory) ([]unitgen.AgentSpec, []string, error) {
	var specs []unitgen.AgentSpec
	var warnings []string
	worker := func(suffix string) string {
		if in.Hostname == "" {
			return ""
		}
		return in.Hostname + ":" + suffix
	}
	if strings.TrimSpace(in.GPUs) != "" {
		as, w, err := gpu.ParseAssignment(in.GPUs, in.GPUsPerAgent, inv)
		if err != nil {
			return nil, nil, err
		}
		warnings = append(warnings, w...)
		for _, a := range as {
			specs = append(specs, unitgen.AgentSpec{Instance: a.Instance, GPUs: a.Devices, Queues: in.Queues, WorkerID: worker(a.WorkerSuffix)})
		}
	} else if in.GPUsPerAgent > 1 {
		return nil, nil, fmt.Errorf("--gpus-per-agent %d without --gpus; add e.g. --gpus all", in.GPUsPerAgent)
	}
	for i := 0; i < in.CPUAgents; i++ {
		name := "cpu" + strconv.Itoa(i)
		specs = append(specs, unitgen.AgentSpec{Instance: name, CPUOnly: true, Queues: in.Queues, WorkerID: worker(name)})
	}
	if in.ServicesAgent {
		specs = append(specs, unitgen.AgentSpec{Instance: "services", Services: true, Queues: []string{in.ServicesQueue}, WorkerID: worker("services")})
	}
	if len(specs) == 0 {
		return nil, nil, errors.New("nothing to provision: give --gpus 0,1 (or all), --cpu-agents N or --services-agent")
	}
	known := map[string]int{}
	for i, s := range specs {
		known[s.Instance] = i
	}
	names := make([]string, 0, len(in.AgentQueues))
	for k := range in.AgentQueues {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		i, ok := known[name]
		if !ok {
			all := make([]string, 0, len(specs))
			for _, s := range specs {
				all = append(all, s.Instance)
			}
			return nil, nil, fmt.Errorf("--agent-queues %s=...: no agent named %q; agents are %s", name, name, strings.Join(all, ", "))
		}
		specs[i].Queues = in.AgentQueues[name]
	}
	return specs, warnings, nil
}

// hostPath maps a path of the provisioned system to this machine.
func (p *Plan) hostPath(target string) string {
	root := p.Inputs.Root
	if root == "" {
		root = p.Inputs.SystemRoot
	}
	if root == "" {
		return target
	}
	return filepath.Join(root, filepath.FromSlash(target))
}

// read returns the file's content (nil when missing) and mode.
func (p *Plan) read(target string) ([]byte, fs.FileMode, error) {
	hp := p.hostPath(target)
	data, err := os.ReadFile(hp)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %v; fix its permissions or remove it", hp, err)
	}
	if data == nil {
		data = []byte{}
	}
	fi, err := os.Stat(hp)
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %v", hp, err)
	}
	return data, fi.Mode().Perm(), nil
}

func (p *Plan) fileChange(target string, data []byte, mode fs.FileMode) (FileChange, error) {
	old, oldMode, err := p.read(target)
	if err != nil {
		return FileChange{}, err
	}
	fc := FileChange{Target: target, Path: p.hostPath(target), Old: old, New: data, Mode: mode}
	switch {
	case old == nil:
		fc.Action = FileCreate
	case !bytes.Equal(old, data) || oldMode != mode:
		fc.Action = FileUpdate
	default:
		fc.Action = FileKeep
	}
	return fc, nil
}

// confChange renders clearml.conf, or merges the agent settings into an
// existing one without touching its api section.
func (p *Plan) confChange() (FileChange, error) {
	in := p.Inputs
	old, _, err := p.read(in.ConfigPath)
	if err != nil {
		return FileChange{}, err
	}
	secrets := []string{in.SecretKey, in.GitPass}
	hosts := config.Hosts{API: in.APIHost, Web: in.WebHost, Files: in.FilesHost}
	if in.APIHost != "" || in.WebHost != "" {
		// the web and files hosts follow from the api host as in `clearml-agent init`
		if h, err := config.DeriveHosts(in.WebHost, in.APIHost, in.FilesHost); err == nil {
			hosts = h
		} else {
			return FileChange{}, fmt.Errorf("--api-host/--web-host: %v", err)
		}
	}
	rendered := config.Render(config.APIWriteSettings{
		APIServer: hosts.API, WebServer: hosts.Web, FilesServer: hosts.Files,
		AccessKey: in.AccessKey, SecretKey: in.SecretKey,
	}, config.AgentWriteSettings{
		GitUser: in.GitUser, GitPass: in.GitPass, ExtraIndexURLs: in.ExtraIndexURLs,
		DefaultOutputURI: in.DefaultOutputURI,
	})
	var data []byte
	switch {
	case bytes.Equal(old, rendered):
		data = old // written by an earlier run with the same inputs
	case old == nil:
		if in.AccessKey == "" && !in.FirstBootCreds {
			return FileChange{}, fmt.Errorf("credentials missing: %s does not exist and no --access-key/--secret-key (CLEARML_API_ACCESS_KEY/CLEARML_API_SECRET_KEY) were given; pass them, or --first-boot-creds to fill them in later with `agent-provision first-boot`", in.ConfigPath)
		}
		if in.APIHost == "" {
			return FileChange{}, errors.New("--api-host (CLEARML_API_HOST) is required to write a new clearml.conf, e.g. --api-host https://api.clear.ml")
		}
		data = rendered
	default:
		keys := map[string]any{}
		if in.GitUser != "" {
			keys["git_user"] = in.GitUser
		}
		if in.GitPass != "" {
			keys["git_pass"] = in.GitPass
		}
		if len(in.ExtraIndexURLs) > 0 {
			keys["package_manager.extra_index_url"] = in.ExtraIndexURLs
		}
		if len(keys) == 0 && !bytes.Contains(old, []byte("# BEGIN clearml-agent managed")) {
			data = old // nothing of ours to merge: leave the file byte for byte
		} else {
			data, err = config.MergeAgentSection(p.hostPath(in.ConfigPath), old, keys)
			if err != nil {
				return FileChange{}, err
			}
		}
		if in.AccessKey != "" || in.APIHost != "" {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s exists: its api section (server and credentials) was kept; edit it or remove the file to write new ones", in.ConfigPath))
		}
		if in.DefaultOutputURI != "" {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s exists: --default-output-uri was not merged; set sdk.development.default_output_uri there", in.ConfigPath))
		}
	}
	fc, err := p.fileChange(in.ConfigPath, data, 0o600)
	if err != nil {
		return FileChange{}, err
	}
	fc.AgentOwned = true
	fc.secrets = secrets
	return fc, nil
}

// EnvMetricsListen is the agent's --metrics-listen in its environment.
const EnvMetricsListen = "CLEARML_AGENT_METRICS_LISTEN"

// metricsAddrs gives n agents consecutive ports from first (HOST:PORT).
func metricsAddrs(first string, n int) ([]string, error) {
	host, port, err := net.SplitHostPort(first)
	p, perr := strconv.Atoi(port)
	switch {
	case err != nil:
		if _, aerr := strconv.Atoi(strings.TrimSpace(first)); aerr == nil {
			return nil, fmt.Errorf("--metrics-listen %q: a port alone is not an address; use 127.0.0.1:%s", first, strings.TrimSpace(first))
		}
		return nil, fmt.Errorf("--metrics-listen %q: not HOST:PORT; use e.g. 127.0.0.1:9101", first)
	case perr != nil || p < 1 || p+n-1 > 65535:
		return nil, fmt.Errorf("--metrics-listen %q: port %q must be a number from 1 to %d (%d agent(s) take consecutive ports); use e.g. %s", first, port, 65536-n, n, net.JoinHostPort(host, "9101"))
	case strings.ContainsAny(host, " \t/"):
		return nil, fmt.Errorf("--metrics-listen %q: %q is not a host name or IP address; use e.g. 127.0.0.1:%s", first, host, port)
	}
	out := make([]string, n)
	for i := range out {
		out[i] = net.JoinHostPort(host, strconv.Itoa(p+i))
	}
	return out, nil
}

// PendingMarker is the file that keeps the agents of a config without
// credentials from starting (unitgen.Options.PendingMarker): beside
// clearml.conf, "first-boot-pending".
func PendingMarker(configPath string) string {
	return path.Join(path.Dir(configPath), "first-boot-pending")
}

const pendingMarkerText = "# agent-provision: clearml.conf has no credentials yet, so the clearml-agent@ units are skipped\n" +
	"# (ConditionPathExists=!this file). `agent-provision first-boot` fills them in and removes this file.\n"

// existingInstances lists the instances with an environment file on disk.
func (p *Plan) existingInstances() ([]string, error) {
	return envInstances(p.hostPath(path.Join("/", unitgen.DefaultEnvDir)))
}

// envInstances lists the agents that have an environment file (NAME.env,
// a regular file) in dir, sorted; none when dir does not exist.
func envInstances(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %v", dir, err)
	}
	var out []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".env"); ok && e.Type().IsRegular() {
			out = append(out, name)
		}
	}
	return out, nil
}

// reKeyValue finds `key: value` / `"key": value` / `key=value` pairs in
// clearml.conf lines; secret.Name decides which values are hidden.
var reKeyValue = regexp.MustCompile(`(([A-Za-z_][A-Za-z0-9_.]*)"?\s*[:=]\s*)("(?:[^"\\]|\\.)*"|[^\s,}{\[]+)`)

func maskSecrets(s string, secrets []string) string {
	s = secret.MaskURLs(s) // extra_index_url with credentials
	s = reKeyValue.ReplaceAllStringFunc(s, func(m string) string {
		sub := reKeyValue.FindStringSubmatch(m)
		if sub[3] == `""` || !secret.Name(sub[2]) {
			return m
		}
		return sub[1] + `"********"`
	})
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "********")
		}
	}
	return s
}

// Command is what the agent's unit would run, for `agent-provision run`:
// the argv (binary, --config-file, daemon --foreground --queue Q..., then
// the daemon arguments) and the variables its environment file and unit
// add, with the state, cache and log directories under stateRoot/<instance>.
func (p *Plan) Command(a Agent, binary, stateRoot string) (argv, env []string) {
	argv = append([]string{binary, "--config-file", p.hostPath(p.Inputs.ConfigPath), "daemon", "--foreground", "--queue"}, a.Spec.Queues...)
	argv = append(argv, unitgen.DaemonArgs(a.Spec)...)
	dir := filepath.Join(stateRoot, a.Spec.Instance)
	env = []string{
		unitgen.EnvQueues + "=" + strings.Join(a.Spec.Queues, " "),
		unitgen.EnvDaemonArgs + "=" + strings.Join(unitgen.DaemonArgs(a.Spec), " "),
		"CLEARML_AGENT_STATE_DIR=" + filepath.Join(dir, "state"),
		"CLEARML_AGENT_CACHE_DIR=" + filepath.Join(dir, "cache"),
		"CLEARML_AGENT_LOG_DIR=" + filepath.Join(dir, "logs"),
	}
	if a.Spec.WorkerID != "" {
		env = append(env, unitgen.EnvWorkerID+"="+a.Spec.WorkerID)
	}
	if len(a.Spec.GPUs) > 0 {
		env = append(env, unitgen.EnvGPUs+"="+strings.Join(a.Spec.GPUs, ","))
	}
	keys := make([]string, 0, len(a.Spec.ExtraEnv))
	for k := range a.Spec.ExtraEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+a.Spec.ExtraEnv[k])
	}
	return argv, env
}

// ConfigFile is the plan's clearml.conf change.
func (p *Plan) ConfigFile() FileChange { return p.Files[0] }
