package docker

import (
	"cmp"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"

	"github.com/gpufleet/clearml-agent-go/agent/config"
)

// Paths inside every task container.
const (
	// AgentPath is where the static agent binary is mounted (read-only).
	AgentPath = "/opt/clearml-agent/clearml-agent"
	// ConfigPath is where the container's clearml.conf is mounted
	// (read-only); CLEARML_CONFIG_FILE points at it.
	ConfigPath = "/opt/clearml-agent/clearml.conf"
	// agentDir holds both; user options may not mount on it.
	agentDir = "/opt/clearml-agent"
)

// Cache directories under Request.CacheRoot, each mounted at its
// agent.docker_internal_mounts target.
const (
	CacheVenvs       = "venvs-cache"
	CacheVCS         = "vcs-cache"
	CachePip         = "pip-cache"
	CachePipDownload = "pip-download-cache"
	CachePoetry      = "poetry-cache"
)

// Request is everything one task's container is built from.
type Request struct {
	TaskID   string
	TaskName string // only for the {task_name} field of the name format
	// WorkerID is the worker the container's agent reports as
	// (CLEARML_WORKER_ID): the daemon's id, or "<daemon id>:service:<task>"
	// in services mode.
	WorkerID string
	// ParentWorkerID is the daemon's worker id in services mode; "" means
	// WorkerID (label clearml-parent-worker-id).
	ParentWorkerID string
	// Services marks a services-mode task (CLEARML_AGENT_SERVICE_TASK=1).
	// The caller also sets CPUOnly, as services run without GPUs.
	Services bool

	// ImageInput is the task's container section, its match facts and the
	// daemon's --docker value.
	ImageInput ImageInput
	Settings   config.DockerSettings

	// GPUs is the daemon's --gpus value: "0,1", "all", "GPU-...", "0:1",
	// "MIG-..."; "" means all GPUs, as in the Python agent.
	GPUs    string
	CPUOnly bool

	// AgentBinary is the host path of the static agent, mounted read-only
	// at AgentPath.
	AgentBinary string
	// ConfigFile is the host path of the container's clearml.conf, mounted
	// read-only at ConfigPath.
	ConfigFile string
	// CacheRoot is the agent's host cache directory; Build creates its
	// subdirectories (CacheVenvs, ...) and mounts them. "" mounts no caches.
	CacheRoot string
	// SSHDir is a host copy of ~/.ssh the caller prepared; it is mounted
	// read-only at agent.docker_internal_mounts.ssh_ro_folder unless
	// agent.disable_ssh_mount. "" mounts none.
	SSHDir string
	// SSHAuthSock is the agent's SSH_AUTH_SOCK: when set, the socket is
	// mounted at the same path and exported instead of the SSHDir copy.
	SSHAuthSock string
	// Env is extra KEY=VALUE for the container (CLEARML_AUTH_TOKEN,
	// CLEARML_WORKER_TAGS, ...); it wins over the docker arguments' -e.
	Env []string
	// HostEnv is the agent's environment (os.Environ form) that -e KEY and
	// $VAR in docker arguments read; nil reads nothing.
	HostEnv []string
	// ExecuteArgs are the agent's arguments in the container, e.g.
	// ["execute", "--id", T, "--disable-monitoring"].
	ExecuteArgs []string
	// ImageUser is the image's configured user (from an image inspect); ""
	// is root, as with the engine.
	ImageUser string
	// OpenStdin keeps the container's stdin open for one attach (a lifeline:
	// it closes when the caller's end does).
	OpenStdin bool
	// Protected are the host paths the task's arguments may not mount.
	Protected ProtectedPaths
}

// Spec is one ContainerCreate request and what the task log should say
// about it.
type Spec struct {
	Image string
	// Name is from agent.docker_container_name_format; "" lets the engine
	// name the container.
	Name             string
	Config           *container.Config
	HostConfig       *container.HostConfig
	NetworkingConfig *network.NetworkingConfig
	// Warnings are for the task log: dropped or ignored arguments, settings
	// that could not be used.
	Warnings []string
	Choice   ImageChoice

	hideKeys []string
}

// Build turns a request into a container spec (reference sections 4.1-4.3
// and 5):
//
//   - the image and its arguments (ChooseImage);
//   - agent.extra_docker_arguments and the image's arguments, parsed, merged
//     and filtered (ParseArgs, then filters, forbidden and protected
//     switches), then applied as API fields; the task's own may not expose
//     Request.Protected;
//   - GPUs as device requests plus NVIDIA_VISIBLE_DEVICES;
//   - mounts: the agent binary and configuration (read-only), the caches,
//     the ~/.ssh copy or the SSH agent socket;
//   - the environment (the arguments' -e, then Request.Env, then the agent's
//     CLEARML_* variables), labels (the arguments' -l, then
//     CLEARML_AGENT_EXTRA_DOCKER_LABELS, then clearml-worker-id,
//     clearml-task-id and clearml-parent-worker-id), and the name;
//   - the command: the agent itself, or with a setup script (the task's, after
//     agent.extra_docker_shell_script) /bin/sh -c '<script>; exec "$@"' sh
//     <agent> <args>, so images without a shell work when there is no script.
//
// The container is not removed automatically (AutoRemove false): the caller
// removes it after reading its exit code. Errors are one line naming the
// input and the fix.
func Build(req Request) (*Spec, error) {
	s := req.Settings
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	warnings := append([]string(nil), s.Warnings...)

	choice, w, err := ChooseImage(req.ImageInput, s)
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, w...)

	extraSrc := ArgSource{Name: cmp.Or(s.ExtraArgumentsOrigin, "agent.extra_docker_arguments"), Fix: "edit agent.extra_docker_arguments", Trusted: true}
	if strings.HasPrefix(s.ExtraArgumentsOrigin, "CLEARML_AGENT_EXTRA_DOCKER_ARGS") {
		extraSrc.Fix = "change CLEARML_AGENT_EXTRA_DOCKER_ARGS"
	}
	extra, err := ParseArgs(s.ExtraArguments, extraSrc)
	if err != nil {
		return nil, err
	}
	chosen, err := ParseArgs(choice.Arguments, choice.ArgsSource)
	if err != nil {
		return nil, err
	}
	merged, w, err := mergeArgs(extra, chosen, s)
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, w...)

	hostEnv := map[string]string{}
	for _, kv := range req.HostEnv {
		if k, v, ok := strings.Cut(kv, "="); ok {
			hostEnv[k] = v
		}
	}
	p := newApplied()
	opts := applyOptions{
		hostEnv:          hostEnv,
		protected:        req.Protected.list(),
		allowProtected:   s.AllowProtectedMounts,
		allowHostEnviron: s.AllowHostEnviron,
		readFile:         os.ReadFile,
	}
	if err := p.apply(merged, opts); err != nil {
		return nil, err
	}
	warnings = append(warnings, p.warnings...)
	for _, t := range sortedKeys(p.targets) {
		if t == agentDir || under(t, agentDir) {
			return nil, fmt.Errorf("docker argument %q mounts on %s, where the agent's own binary and configuration go; mount somewhere else", p.targets[t], t)
		}
	}

	cfg, host := &p.cfg, &p.host
	cfg.Image = choice.Image
	cfg.AttachStdout, cfg.AttachStderr = true, true
	if req.OpenStdin {
		cfg.OpenStdin, cfg.StdinOnce, cfg.AttachStdin = true, true, true
	}
	host.AutoRemove = false

	// GPUs.
	requests, visible, err := gpuDevices(req.GPUs, req.CPUOnly, s.SkipGPUsFlag)
	if err != nil {
		return nil, err
	}
	host.DeviceRequests = append(host.DeviceRequests, requests...)

	// Mounts.
	own, env, w, err := agentMounts(req, p.targets)
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, w...)
	host.Mounts = append(own, host.Mounts...)

	// Environment: the arguments', the caller's, then the agent's.
	for _, kv := range req.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("docker spec for task %s: environment entry %q is not KEY=VALUE; fix the caller", req.TaskID, kv)
		}
		p.env.set(k, v)
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		p.env.set(k, v)
	}
	agentEnv := [][2]string{
		{"CLEARML_TASK_ID", req.TaskID},
		{"CLEARML_WORKER_ID", req.WorkerID},
		{"CLEARML_DOCKER_IMAGE", choice.Image},
		{"CLEARML_CONFIG_FILE", ConfigPath},
		{"NVIDIA_VISIBLE_DEVICES", visible},
	}
	if req.Services {
		agentEnv = append(agentEnv, [2]string{"CLEARML_AGENT_SERVICE_TASK", "1"})
	}
	for _, kv := range agentEnv {
		if old, ok := p.env.get(kv[0]); ok && old != kv[1] {
			warnings = append(warnings, fmt.Sprintf("environment variable %s=%s from the docker arguments was replaced: the agent sets %s", kv[0], maskEnv(kv[0]+"="+old, s.HideEnvKeys)[len(kv[0])+1:], kv[0]))
		}
		p.env.set(kv[0], kv[1])
	}
	user := cfg.User
	if user == "" {
		user = req.ImageUser
	}
	if isRoot(user) {
		if _, ok := p.env.get("HOME"); !ok {
			p.env.set("HOME", "/root")
		}
	} else if underRoot(own) {
		warnings = append(warnings, fmt.Sprintf("the container runs as user %q, but the caches and the ~/.ssh copy go to the agent.docker_internal_mounts paths under /root; point agent.docker_internal_mounts at directories that user can write", user))
	}
	cfg.Env = p.env.list()

	// Labels.
	labels := p.labels
	for _, k := range sortedKeys(s.ExtraLabels) {
		labels[k] = s.ExtraLabels[k]
	}
	parent := req.ParentWorkerID
	if parent == "" {
		parent = req.WorkerID
	}
	for _, kv := range [][2]string{{LabelWorker, req.WorkerID}, {LabelTask, req.TaskID}, {LabelParentWorker, parent}} {
		k, v := kv[0], kv[1]
		if old, ok := labels[k]; ok && old != v {
			warnings = append(warnings, fmt.Sprintf("label %s=%s from the docker arguments was replaced: the agent sets %s", k, old, k))
		}
		labels[k] = v
	}
	cfg.Labels = labels

	// Command.
	argv := append([]string{AgentPath}, req.ExecuteArgs...)
	script := setupScript(s.ExtraShellScript, choice.SetupScript)
	if script != "" {
		argv = append([]string{"/bin/sh", "-c", script + "\nexec \"$@\"", "sh"}, argv...)
	}
	if p.entrypoint != nil {
		cfg.Entrypoint, cfg.Cmd = []string{*p.entrypoint}, argv
		warnings = append(warnings, fmt.Sprintf("the container's entrypoint is %q (from --entrypoint); it must run its arguments (exec \"$@\") for the task to start", *p.entrypoint))
	} else {
		cfg.Entrypoint, cfg.Cmd = argv[:1], argv[1:]
		if script != "" {
			cfg.Entrypoint, cfg.Cmd = argv[:4], argv[4:]
		}
	}

	spec := &Spec{
		Image:      choice.Image,
		Config:     cfg,
		HostConfig: host,
		Choice:     choice,
		hideKeys:   s.HideEnvKeys,
	}
	if p.endpoints != nil {
		spec.NetworkingConfig = &network.NetworkingConfig{EndpointsConfig: p.endpoints}
	}
	if s.ContainerNameFormat != "" {
		name, err := containerName(s.ContainerNameFormat, nameFields(req.TaskID, req.WorkerID, req.TaskName))
		if err != nil {
			warnings = append(warnings, err.Error()+"; the engine names the container")
		} else {
			spec.Name = name
		}
	}
	spec.Warnings = warnings
	return spec, nil
}

// checkRequest checks what the caller must get right.
func checkRequest(req Request) error {
	switch {
	case req.TaskID == "":
		return fmt.Errorf("docker spec: no task id; pass Request.TaskID")
	case req.WorkerID == "":
		return fmt.Errorf("docker spec for task %s: no worker id; pass Request.WorkerID", req.TaskID)
	case len(req.ExecuteArgs) == 0:
		return fmt.Errorf("docker spec for task %s: no agent arguments; pass Request.ExecuteArgs (execute --id %s ...)", req.TaskID, req.TaskID)
	}
	for _, f := range []struct{ what, p string }{{"agent binary", req.AgentBinary}, {"container configuration file", req.ConfigFile}} {
		if !filepath.IsAbs(f.p) {
			return fmt.Errorf("docker spec for task %s: the %s path %q is not absolute; pass an absolute host path", req.TaskID, f.what, f.p)
		}
		st, err := os.Stat(f.p)
		if err != nil {
			return fmt.Errorf("docker spec for task %s: the %s %s cannot be used (%s); check that it exists on the host", req.TaskID, f.what, f.p, errReason(err))
		}
		if st.IsDir() {
			return fmt.Errorf("docker spec for task %s: the %s %s is a directory; pass the file", req.TaskID, f.what, f.p)
		}
	}
	for _, f := range []struct{ what, p string }{{"cache root", req.CacheRoot}, {"~/.ssh copy", req.SSHDir}, {"SSH_AUTH_SOCK", req.SSHAuthSock}} {
		if f.p != "" && !filepath.IsAbs(f.p) {
			return fmt.Errorf("docker spec for task %s: the %s %q is not absolute; pass an absolute host path", req.TaskID, f.what, f.p)
		}
	}
	return nil
}

// agentMounts are the agent's own mounts and the environment they need. A
// user option that mounts on a cache or SSH target replaces the agent's mount
// there (with a warning).
func agentMounts(req Request, userTargets map[string]string) ([]mount.Mount, []string, []string, error) {
	s := req.Settings
	im := s.InternalMounts
	ms := []mount.Mount{
		{Type: mount.TypeBind, Source: req.AgentBinary, Target: AgentPath, ReadOnly: true},
		{Type: mount.TypeBind, Source: req.ConfigFile, Target: ConfigPath, ReadOnly: true},
	}
	var env, warnings []string
	add := func(what, src, target string, ro bool) error {
		if !path.IsAbs(target) {
			return fmt.Errorf("agent.docker_internal_mounts: the %s target %q is not an absolute container path; fix it", what, target)
		}
		target = path.Clean(target)
		if opt, ok := userTargets[target]; ok {
			warnings = append(warnings, fmt.Sprintf("docker argument %q replaces the agent's %s mount at %s", opt, what, target))
			return nil
		}
		ms = append(ms, mount.Mount{Type: mount.TypeBind, Source: src, Target: target, ReadOnly: ro})
		return nil
	}
	if req.CacheRoot != "" {
		caches := []struct {
			dir, what, target string
			on                bool
		}{
			{CacheVenvs, "venvs cache", im.VenvsCache, s.VenvsCache},
			{CacheVCS, "vcs cache", im.VCSCache, s.VCSCache},
			{CachePip, "pip cache", im.PipCache, true},
			{CachePipDownload, "pip download cache", im.PipDownload, s.PipDownloadCache},
			{CachePoetry, "poetry cache", im.PoetryCache, true},
		}
		for _, c := range caches {
			if !c.on {
				continue
			}
			dir := filepath.Join(req.CacheRoot, c.dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, nil, nil, fmt.Errorf("cache directory %s cannot be created (%s); check the permissions of %s", dir, errReason(err), req.CacheRoot)
			}
			if err := add(c.what, dir, c.target, false); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	switch {
	case req.SSHAuthSock != "":
		if err := add("SSH agent socket", req.SSHAuthSock, req.SSHAuthSock, false); err != nil {
			return nil, nil, nil, err
		}
		env = append(env, "SSH_AUTH_SOCK="+req.SSHAuthSock)
	case req.SSHDir != "" && !s.DisableSSHMount:
		if err := add("~/.ssh copy", req.SSHDir, cmp.Or(im.SSHROFolder, "/.ssh"), true); err != nil {
			return nil, nil, nil, err
		}
	}
	return ms, env, warnings, nil
}

// setupScript is the commands run before the agent: the extra shell script,
// then the task's setup script, with comment and blank lines dropped.
func setupScript(extra []string, task string) string {
	var lines []string
	for _, l := range append(append([]string(nil), extra...), strings.Split(task, "\n")...) {
		l = strings.TrimRight(l, " \t\r")
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// isRoot says whether a container user is root ("" is, as with the engine).
func isRoot(user string) bool {
	name, _, _ := strings.Cut(user, ":")
	return name == "" || name == "root" || name == "0"
}

// underRoot says whether a mount goes below /root, which only root can use.
func underRoot(ms []mount.Mount) bool {
	for _, m := range ms {
		if under(m.Target, "/root") {
			return true
		}
	}
	return false
}
