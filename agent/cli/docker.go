package cli

import (
	"cmp"
	"context"
	"debug/elf"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/shlex"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/agent/docker"
	"github.com/gpufleet/clearml-agent-go/agent/executor"
)

// staticSuffix names the static build shipped beside a cgo clearml-agent.
const staticSuffix = "-static"

// containerAgentBinary finds the agent binary to bind-mount into task
// containers. It must be statically linked (it runs in any glibc or musl
// image): CLEARML_AGENT_DOCKER_BINARY, else `<this binary>-static` beside this
// one, else this binary when it is static itself (a CGO_ENABLED=0 build).
func containerAgentBinary(g *Globals) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the clearml-agent binary: %w", err)
	}
	cands := []string{self + staticSuffix, self}
	if p := g.Getenv("CLEARML_AGENT_DOCKER_BINARY"); p != "" {
		cands = []string{p}
	}
	for _, p := range cands {
		static, err := isStatic(p)
		if err != nil {
			continue
		}
		if static {
			return p, nil
		}
	}
	return "", fmt.Errorf("docker mode needs a statically linked clearml-agent to run inside task containers; "+
		"%s is linked against libc: put a CGO_ENABLED=0 build beside it as %s, or point CLEARML_AGENT_DOCKER_BINARY at one",
		self, filepath.Base(self)+staticSuffix)
}

// isStatic reports whether the ELF file at p needs no dynamic loader.
func isStatic(p string) (bool, error) {
	f, err := elf.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// dockerMode is what docker mode needs from the daemon's or execute's flags.
type dockerMode struct {
	cli      string // the --docker value: "" or "image [args...]"
	workerID string
	gpus     string
	cpuOnly  bool
	logLevel string
	stateDir string
	services bool
	echo     bool // execute --docker by hand: the task's lines on stderr
}

// newDockerConfig connects nothing yet: the engine is reached by the
// returned preflight (retried by the daemon until it answers), which also
// cleans up after a crashed earlier run (Recover, through onEngine).
func newDockerConfig(g *Globals, cfg *config.Config, m dockerMode, log *slog.Logger) (*executor.DockerConfig, func(ctx context.Context) (*docker.Engine, error), error) {
	bin, err := containerAgentBinary(g)
	if err != nil {
		return nil, nil, err
	}
	a := cfg.Agent()
	for _, w := range cfg.Docker().Warnings {
		log.Warn("docker settings", "warning", w)
	}
	safe := safeName(m.workerID)
	cacheRoot := filepath.Join(g.Home(), ".clearml", "docker-cache", safe)
	confFile := filepath.Join(m.stateDir, "docker", safe+".conf")
	sshDir := ""
	if !cfg.Docker().DisableSSHMount {
		sshDir, err = executor.CopySSHDir(filepath.Join(g.Home(), ".ssh"), filepath.Join(m.stateDir, "docker-ssh", safe))
		if err != nil {
			return nil, nil, err
		}
	}
	execArgs := []string{"--log-level", m.logLevel}
	if m.cpuOnly {
		execArgs = append(execArgs, "--cpu-only")
	}
	if m.echo {
		execArgs = append(execArgs, "--echo-stderr")
	}
	dc := &executor.DockerConfig{
		ExecuteArgs: execArgs,
		StopGrace:   a.AbortGracePeriod + 30*time.Second,
		Detached:    m.services,
	}
	dc.Spec = func(ctx context.Context, t *api.Task, workerID string, args []string) (*executor.ContainerSpec, error) {
		// The configuration as of this task (SIGHUP edits apply), merged
		// with the environment's overrides, for the agent inside.
		c, err := g.LoadConfig()
		if err != nil {
			return nil, err
		}
		if err := writeContainerConfig(c, confFile); err != nil {
			return nil, err
		}
		return buildContainer(g, t, c.Docker(), buildInputs{
			mode: m, workerID: workerID, binary: bin, configFile: confFile, agentConfig: c.File(),
			cacheRoot: cacheRoot, sshDir: sshDir, args: args,
		})
	}
	var mu sync.Mutex
	connect := func(ctx context.Context) (*docker.Engine, error) {
		mu.Lock()
		defer mu.Unlock()
		if dc.Engine != nil {
			return dc.Engine, dc.Engine.Ping(ctx)
		}
		e, err := docker.Connect(ctx)
		if err != nil {
			return nil, err
		}
		dc.Engine = e
		return e, nil
	}
	return dc, connect, nil
}

// buildInputs are the per-agent facts of a task's container.
type buildInputs struct {
	mode               dockerMode
	workerID           string
	binary, configFile string
	agentConfig        string // the daemon's own clearml.conf (protected)
	cacheRoot, sshDir  string
	args               []string
}

// buildContainer is the container of task t (agent/docker.Build): the
// image chosen from the task, --docker and the settings; caches per agent and
// image; the agent's configuration mounted read-only with the paths inside the
// container set through CLEARML_AGENT__ overrides.
func buildContainer(g *Globals, t *api.Task, s config.DockerSettings, in buildInputs) (*executor.ContainerSpec, error) {
	tc := docker.TaskContainer{}
	if c := t.Container; c != nil {
		tc.Image, tc.SetupScript = c.Image, c.SetupShellScript
		args, err := splitArgs(c.Arguments)
		if err != nil {
			return nil, fmt.Errorf("task %s container arguments %q: %v; fix them in the task's Container section", t.ID, c.Arguments, err)
		}
		tc.Arguments = args
	}
	facts := docker.TaskFacts{ProjectID: t.Project, Tags: t.Tags}
	if sc := t.Script; sc != nil {
		facts.Repository, facts.Branch, facts.Binary = sc.Repository, sc.Branch, sc.Binary
	}
	input := docker.ImageInput{Task: tc, Facts: facts, CLIDocker: in.mode.cli}
	choice, _, err := docker.ChooseImage(input, s)
	if err != nil {
		return nil, err
	}
	im := s.InternalMounts
	home := "/root"
	venvs := strings.Replace(im.VenvBuild, "~", home, 1)
	if venvs == "" {
		venvs = home + "/.clearml/venvs-builds"
	}
	q := func(v string) string { return fmt.Sprintf("%q", v) }
	env := []string{
		"CLEARML_AGENT__AGENT__VENVS_DIR=" + q(venvs),
		"CLEARML_AGENT__AGENT__VCS_CACHE__PATH=" + q(im.VCSCache),
		"CLEARML_AGENT__AGENT__VENVS_CACHE__PATH=" + q(im.VenvsCache),
		"CLEARML_AGENT__AGENT__PIP_DOWNLOAD_CACHE__PATH=" + q(im.PipDownload),
		"CLEARML_AGENT__AGENT__PACKAGE_MANAGER__SYSTEM_SITE_PACKAGES=true",
		"CLEARML_AGENT__AGENT__PYTHON_BINARY=\"\"",
		"CLEARML_AGENT__AGENT__DEFAULT_PYTHON=\"\"",
	}
	args := append([]string(nil), in.args...)
	sock := g.Getenv("SSH_AUTH_SOCK")
	if sock == "" && in.sshDir != "" && !s.DisableSSHMount {
		args = append(args, "--ssh-from", cmp.Or(im.SSHROFolder, "/.ssh"))
	}
	parent := ""
	if in.workerID != in.mode.workerID {
		parent = in.mode.workerID
	}
	spec, err := docker.Build(docker.Request{
		TaskID: t.ID, TaskName: t.Name, WorkerID: in.workerID, ParentWorkerID: parent, Services: in.mode.services,
		ImageInput: input, Settings: s, GPUs: in.mode.gpus, CPUOnly: in.mode.cpuOnly || in.mode.services,
		AgentBinary: in.binary, ConfigFile: in.configFile,
		CacheRoot: filepath.Join(in.cacheRoot, safeName(choice.Image)),
		SSHDir:    in.sshDir, SSHAuthSock: sock, Env: env, HostEnv: g.Env, ExecuteArgs: args,
		Protected: docker.ProtectedPaths{ConfigFile: cmp.Or(in.agentConfig, in.configFile), StateDir: in.mode.stateDir, DockerSocket: dockerSocket(g)},
	})
	if err != nil {
		return nil, err
	}
	lines := []string{spec.Choice.LogLine(t.ID, s.HideEnvKeys)}
	lines = append(lines, spec.Warnings...)
	out := &executor.ContainerSpec{Image: spec.Image, Name: spec.Name, Config: spec.Config, Host: spec.HostConfig,
		Network: spec.NetworkingConfig, ForcePull: s.ForcePull, Log: lines}
	if ch := spec.Choice; ch.WriteBack {
		out.WriteBack = &api.Container{Image: ch.Image, Arguments: joinArgs(ch.Arguments), SetupShellScript: ch.SetupScript}
	}
	return out, nil
}

// dockerSocket is the engine's unix socket path from DOCKER_HOST, if any.
func dockerSocket(g *Globals) string {
	if h, ok := strings.CutPrefix(g.Getenv("DOCKER_HOST"), "unix://"); ok {
		return h
	}
	return ""
}

func safeName(s string) string {
	return strings.NewReplacer(":", "_", "/", "_", "@", "_").Replace(s)
}

// splitArgs splits a task's container.arguments string as a shell would.
func splitArgs(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	return shlex.Split(s)
}

// writeContainerConfig writes the merged configuration (secrets included: the
// agent inside logs in with them) as JSON, which is HOCON too, readable by
// the owner only.
func writeContainerConfig(c *config.Config, path string) error {
	b, err := config.ToJSON(c, true)
	if err != nil {
		return fmt.Errorf("the configuration for task containers: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("the configuration for task containers: %w; pass a writable --state-dir", err)
	}
	if err := config.WriteFileAtomic(path, b, 0o600, -1, -1); err != nil {
		return fmt.Errorf("the configuration for task containers: %w", err)
	}
	return nil
}

// joinArgs writes arguments back as one shell-quoted string (the task's
// container.arguments).
func joinArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}();&|<>#~") {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
