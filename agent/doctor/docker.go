package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/docker"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// DockerInfo is what the docker checks learn from the engine.
type DockerInfo struct {
	Host           string   // DOCKER_HOST or the default socket
	Version        string   // engine version, e.g. "28.5.2"
	APIVersion     string   // API version of the engine
	Product        string   // "Docker Engine", "Podman Engine"
	Runtimes       []string // OCI runtimes the engine knows (runc, nvidia, ...)
	DefaultRuntime string
	CDISpecDirs    []string // where the engine reads CDI specs (Docker 25+ with CDI on)
	// Image is the state of the image asked about: "" (none asked),
	// "present", or "absent".
	Image string
}

// Local reports an engine on this machine's unix socket (its files, such
// as the NVIDIA hook and the CDI specs, are this machine's).
func (i DockerInfo) Local() bool { return strings.HasPrefix(i.Host, "unix://") }

// EngineInfo reads DockerInfo from a connected engine (and whether image,
// when not "", is present).
func EngineInfo(ctx context.Context, e *docker.Engine, image string) (DockerInfo, error) {
	c := e.Client()
	info, err := c.Info(ctx)
	if err != nil {
		return DockerInfo{}, fmt.Errorf("docker engine at %s: info: %s", e.Host(), oneline.Of(err))
	}
	d := DockerInfo{Host: e.Host(), Version: info.ServerVersion, DefaultRuntime: info.DefaultRuntime, CDISpecDirs: info.CDISpecDirs, Product: "Docker Engine"}
	for name := range info.Runtimes {
		d.Runtimes = append(d.Runtimes, name)
	}
	sort.Strings(d.Runtimes)
	if v, err := c.ServerVersion(ctx); err == nil {
		d.APIVersion = v.APIVersion
		for _, comp := range v.Components {
			if strings.Contains(comp.Name, "Podman") {
				d.Product = comp.Name
				d.Version = comp.Version
			}
		}
	}
	if image != "" {
		d.Image = "present"
		if _, err := c.ImageInspect(ctx, image); err != nil {
			d.Image = "absent"
		}
	}
	return d, nil
}

// DockerOptions configures DockerChecks (docker mode only).
type DockerOptions struct {
	// Inspect reaches the engine; nil = docker.Connect (DOCKER_HOST and
	// the other DOCKER_* variables of this process) and EngineInfo.
	Inspect func(ctx context.Context) (DockerInfo, error)
	// Image is the --docker image (or agent.default_docker.image), checked
	// for presence; "" = none.
	Image string
	// NeedGPU: tasks' containers request GPUs (not --cpu-only, not
	// CLEARML_DOCKER_SKIP_GPUS_FLAG).
	NeedGPU bool
	// Env's PATH is searched for nvidia-container-runtime-hook, besides
	// the usual directories (nil = this process's environment).
	Env []string
	// CDIDirs are searched for NVIDIA CDI specs when the engine names none
	// (nil = /etc/cdi, /var/run/cdi).
	CDIDirs []string
	// SkipEngine leaves the engine row out (the daemon reaches the engine
	// in its own preflight step, with its own message).
	SkipEngine bool
}

// nvidiaHook is the binary whose presence makes dockerd register its
// "nvidia" device driver, which serves `--gpus` device requests.
const nvidiaHook = "nvidia-container-runtime-hook"

// hookDirs are searched for nvidiaHook besides PATH (dockerd's own PATH is
// not known here); tests clear it.
var hookDirs = "/usr/bin:/usr/sbin:/usr/local/bin:/usr/local/sbin"

const dockerGPUFix = "install nvidia-container-toolkit, run `nvidia-ctk runtime configure --runtime=docker` and restart the engine (systemctl restart docker); or run with --cpu-only"

// DockerChecks returns "docker" (the engine answers: ping, version) and
// "docker gpu" (the engine can give containers GPUs).
//
// What "docker gpu" can tell: the agent asks for GPUs as `docker run --gpus`
// does (a device request with the gpu capability). dockerd serves it with
// its built-in nvidia driver, which it registers only when
// nvidia-container-runtime-hook is on its PATH at start; `nvidia-ctk runtime
// configure` also adds an "nvidia" runtime to the engine. So: ok when the
// engine lists an nvidia runtime or, for an engine on this machine, the hook
// is installed here; a warning when only NVIDIA CDI specs exist (podman
// and newer engines can serve GPUs from them) or the engine is remote
// (its files cannot be seen from here); a failure otherwise.
func DockerChecks(o DockerOptions) []Check {
	d := &dockerState{o: o}
	if d.o.Inspect == nil {
		d.o.Inspect = func(ctx context.Context) (DockerInfo, error) {
			e, err := docker.Connect(ctx)
			if err != nil {
				return DockerInfo{}, err
			}
			defer e.Close()
			return EngineInfo(ctx, e, o.Image)
		}
	}
	if d.o.Env == nil {
		d.o.Env = os.Environ()
	}
	if d.o.CDIDirs == nil {
		d.o.CDIDirs = []string{"/etc/cdi", "/var/run/cdi"}
	}
	var checks []Check
	if !o.SkipEngine {
		checks = append(checks, Check{Name: "docker", Timeout: 20 * time.Second, Run: d.engine})
	}
	return append(checks, Check{Name: "docker gpu", Timeout: 20 * time.Second, Run: d.gpu})
}

type dockerState struct {
	o    DockerOptions
	once sync.Once
	info DockerInfo
	err  error
}

func (d *dockerState) inspect(ctx context.Context) (DockerInfo, error) {
	d.once.Do(func() { d.info, d.err = d.o.Inspect(ctx) })
	return d.info, d.err
}

func (d *dockerState) engine(ctx context.Context) Result {
	info, err := d.inspect(ctx)
	if err != nil {
		// docker.Connect's message already says how to fix it.
		msg := oneline.Of(err)
		detail, fix, ok := strings.Cut(msg, "; ")
		if !ok {
			fix = "start the engine (systemctl start docker) or point DOCKER_HOST at a running one"
		}
		return Result{Status: Fail, Detail: detail, Fix: fix}
	}
	det := fmt.Sprintf("%s %s (API %s) at %s", info.Product, orDash(info.Version), orDash(info.APIVersion), info.Host)
	switch info.Image {
	case "present":
		det += fmt.Sprintf("; image %s present", d.o.Image)
	case "absent":
		return Result{Status: Warn, Detail: det + fmt.Sprintf("; image %s is not present and will be pulled by the first task", d.o.Image),
			Fix: fmt.Sprintf("docker pull %s to check that the registry serves it", d.o.Image)}
	}
	return Result{Status: OK, Detail: det}
}

func (d *dockerState) gpu(ctx context.Context) Result {
	if !d.o.NeedGPU {
		return Result{Status: Skip, Detail: "containers get no GPUs (--cpu-only)"}
	}
	info, err := d.inspect(ctx)
	if err != nil {
		return Result{Status: Skip, Detail: "the engine does not answer"}
	}
	for _, r := range info.Runtimes {
		if strings.Contains(strings.ToLower(r), "nvidia") {
			det := fmt.Sprintf("the engine has the %s runtime", r)
			if info.DefaultRuntime != "" {
				det += fmt.Sprintf(" (default runtime %s)", info.DefaultRuntime)
			}
			return Result{Status: OK, Detail: det}
		}
	}
	runtimes := "runtimes " + strings.Join(info.Runtimes, ", ")
	if len(info.Runtimes) == 0 {
		runtimes = "no runtimes listed"
	}
	if !info.Local() {
		return Result{Status: Warn, Detail: fmt.Sprintf("the engine at %s lists no nvidia runtime (%s) and its files cannot be checked from here", info.Host, runtimes),
			Fix: "run clearml-agent doctor on the engine's machine, or " + dockerGPUFix}
	}
	if p, err := lookPath(nvidiaHook, getenv(d.o.Env, "PATH")+":"+hookDirs); err == nil {
		return Result{Status: OK, Detail: fmt.Sprintf("%s is installed (%s): the engine serves --gpus requests", p, runtimes)}
	}
	dirs := info.CDISpecDirs
	if len(dirs) == 0 {
		dirs = d.o.CDIDirs
	}
	if spec := nvidiaCDISpec(dirs); spec != "" {
		return Result{Status: Warn, Detail: fmt.Sprintf("only a CDI spec (%s) provides NVIDIA GPUs: %s and no nvidia runtime (%s), so --gpus requests may be refused", spec, nvidiaHook, runtimes),
			Fix: dockerGPUFix}
	}
	return Result{Status: Fail, Detail: fmt.Sprintf("the engine cannot give containers GPUs: no nvidia runtime (%s), no %s and no NVIDIA CDI spec on this machine", runtimes, nvidiaHook),
		Fix: dockerGPUFix}
}

// nvidiaCDISpec returns the first CDI spec file for nvidia.com devices in dirs.
func nvidiaCDISpec(dirs []string) string {
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			n := e.Name()
			if e.IsDir() || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".json")) {
				continue
			}
			p := filepath.Join(dir, n)
			b, err := os.ReadFile(p)
			if err == nil && strings.Contains(string(b), "nvidia.com/") {
				return p
			}
		}
	}
	return ""
}
