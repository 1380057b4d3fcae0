package dockertest

import (
	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

const (
	// BusyboxImage has busybox-static with every applet, /bin/sh, and root
	// with home /root (HOME=/root).
	BusyboxImage = "localhost/clearml-test-busybox:1"
	// PythonImage is Debian bookworm minbase with python3, python3-venv,
	// python3-pip, git, ca-certificates and openssh-client (HOME=/root).
	PythonImage = "localhost/clearml-test-python:1"
	// TestHost is the private engine of scripts/test-dockerd.sh, used when
	// DOCKER_HOST is unset.
	TestHost = "unix:///run/clearml-test-docker.sock"
	// LabelKey is the container label UniqueLabel sets.
	LabelKey = "clearml-agent-go.test"
)

// Handle is a connection to the test engine, with the test images present.
type Handle struct {
	// Client talks to the engine at Host, API version negotiated.
	Client *client.Client
	// Host is the DOCKER_HOST of the engine: give it to an agent under test
	// (or a docker CLI) so that it uses the same engine.
	Host string
	// BusyboxImage and PythonImage are the image names (the constants of the
	// same names), present in the engine.
	BusyboxImage string
	PythonImage  string
}

// Host returns the DOCKER_HOST the tests use: $DOCKER_HOST, else TestHost.
func Host() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return TestHost
}

// Engine connects to the engine at Host, fails or skips t (see
// skipOrFail) when none answers, makes sure both test images exist, and
// closes the client when t ends.
func Engine(t testing.TB) *Handle {
	t.Helper()
	host := Host()
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("dockertest: docker client for %s: %v", host, err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		testenv.Missing(t, "%s", fmt.Sprintf("dockertest: no Docker engine answers at %s (%v); start the test engine with "+
			"`sudo scripts/test-dockerd.sh start` (scripts/test.sh does) or set DOCKER_HOST", host, err))
	}
	if err := ensureImages(t, c, host); err != nil {
		var missing errNeedRoot
		if errors.As(err, &missing) {
			testenv.Missing(t, "%s", err.Error())
		}
		t.Fatalf("dockertest: %v", err)
	}
	return &Handle{Client: c, Host: host, BusyboxImage: BusyboxImage, PythonImage: PythonImage}
}

// errNeedRoot: images are missing and only root can build them.
type errNeedRoot struct{ images []string }

func (e errNeedRoot) Error() string {
	return fmt.Sprintf("dockertest: images %s are missing and building them needs root: run "+
		"`sudo scripts/docker-images.sh` once (DOCKER_HOST=%s)", strings.Join(e.images, ", "), Host())
}

var (
	imagesMu sync.Mutex
	imagesOK = map[string]error{} // per host: the outcome of the one scripts/docker-images.sh run
)

// ensureImages runs scripts/docker-images.sh when an image is missing, once
// per process and host; the script itself serialises processes (flock).
func ensureImages(t testing.TB, c *client.Client, host string) error {
	t.Helper()
	imagesMu.Lock()
	defer imagesMu.Unlock()
	if err, done := imagesOK[host]; done {
		return err
	}
	var missing []string
	for _, img := range []string{BusyboxImage, PythonImage} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := c.ImageInspect(ctx, img)
		cancel()
		switch {
		case cerrdefs.IsNotFound(err):
			missing = append(missing, img)
		case err != nil:
			return fmt.Errorf("inspect %s at %s: %w", img, host, err)
		}
	}
	if len(missing) == 0 {
		imagesOK[host] = nil
		return nil
	}
	if os.Geteuid() != 0 {
		return errNeedRoot{missing} // not cached: a later test may run after someone built them
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	script := filepath.Join(root, "scripts", "docker-images.sh")
	t.Logf("dockertest: %s missing at %s; running %s (the first build takes 1-2 minutes)", strings.Join(missing, ", "), host, script)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+host)
	out, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%s: %v\n%s", script, err, tail(string(out), 40))
	}
	imagesOK[host] = err
	return err
}

// moduleRoot is the directory of this module's go.mod, found from the
// working directory (a test runs in its package directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			regexp.MustCompile(`(?m)^module\s+github\.com/gpufleet/clearml-agent-go\s*$`).Match(b) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("dockertest: no go.mod of github.com/gpufleet/clearml-agent-go above %s; run the test inside the module", dir)
		}
	}
}

var labelSeq atomic.Int64

// UniqueLabel returns a "key=value" container label (key LabelKey) unique
// to t and this process, and removes every container carrying it when t
// ends. Put it on the containers a test creates, or have the agent under test
// put it there.
func (h *Handle) UniqueLabel(t testing.TB) string {
	t.Helper()
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")
	label := fmt.Sprintf("%s=%s.%d.%d", LabelKey, name, os.Getpid(), labelSeq.Add(1))
	h.RemoveContainersOnCleanup(t, label)
	return label
}

// RemoveContainersOnCleanup removes (forcibly, with their anonymous volumes)
// all containers carrying label ("key" or "key=value") when t ends, and
// fails t if any is left.
func (h *Handle) RemoveContainersOnCleanup(t testing.TB, label string) {
	t.Helper()
	t.Cleanup(func() {
		// Not t.Context: it is cancelled before cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := h.RemoveContainers(ctx, label); err != nil {
			t.Errorf("dockertest: %v", err)
		}
	})
}

// RemoveContainers removes all containers carrying label ("key" or
// "key=value"), running or not. Containers that disappear meanwhile (--rm,
// another cleanup) are no error.
func (h *Handle) RemoveContainers(ctx context.Context, label string) error {
	opts := container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))}
	var left []string
	for attempt := 0; attempt < 3; attempt++ {
		list, err := h.Client.ContainerList(ctx, opts)
		if err != nil {
			return fmt.Errorf("list containers with label %s: %w", label, err)
		}
		if len(list) == 0 {
			return nil
		}
		left = left[:0]
		for _, c := range list {
			err := h.Client.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
			if err != nil && !cerrdefs.IsNotFound(err) {
				left = append(left, fmt.Sprintf("%.12s %v: %v", c.ID, c.Names, err))
			}
		}
		if len(left) == 0 {
			return nil
		}
		time.Sleep(time.Second) // e.g. "removal already in progress": look again
	}
	return fmt.Errorf("containers with label %s not removed:\n%s", label, strings.Join(left, "\n"))
}

// Run creates a container from cfg and hc, with a UniqueLabel of t added,
// starts it, waits up to timeout for it to exit, and returns its exit code
// and its stdout and stderr interleaved. The container is removed when t
// ends. It fails t on any engine error.
func (h *Handle) Run(t testing.TB, cfg *container.Config, hc *container.HostConfig, timeout time.Duration) (output string, exitCode int) {
	t.Helper()
	c := *cfg
	c.Labels = map[string]string{}
	for k, v := range cfg.Labels {
		c.Labels[k] = v
	}
	k, v, _ := strings.Cut(h.UniqueLabel(t), "=")
	c.Labels[k] = v

	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	created, err := h.Client.ContainerCreate(ctx, &c, hc, nil, nil, "")
	if err != nil {
		t.Fatalf("dockertest: create %s %q: %v", c.Image, c.Cmd, err)
	}
	if err := h.Client.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("dockertest: start %s %q: %v", c.Image, c.Cmd, err)
	}
	waitC, errC := h.Client.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	select {
	case res := <-waitC:
		if res.Error != nil {
			t.Fatalf("dockertest: wait for %s %q: %s", c.Image, c.Cmd, res.Error.Message)
		}
		exitCode = int(res.StatusCode)
	case err := <-errC:
		t.Fatalf("dockertest: wait for %s %q: %v (output so far:\n%s)", c.Image, c.Cmd, err, h.logs(created.ID))
	}
	return h.logs(created.ID), exitCode
}

func (h *Handle) logs(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := h.Client.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return fmt.Sprintf("(logs of %.12s: %v)", id, err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		fmt.Fprintf(&out, "(logs of %.12s: %v)", id, err)
	}
	return out.String()
}

var agentBin struct {
	once sync.Once
	path string
	err  error
}

// AgentBinary returns the path of a static clearml-agent (CGO_ENABLED=0,
// built from this module's ./cmd/clearml-agent once per test process into a
// directory under the system temp dir) to bind-mount into containers, e.g.
// read-only at /clearml-agent. It fails t if the build fails.
func AgentBinary(t testing.TB) string {
	t.Helper()
	agentBin.once.Do(func() { agentBin.path, agentBin.err = buildAgent() })
	if agentBin.err != nil {
		t.Fatalf("dockertest: %v", agentBin.err)
	}
	return agentBin.path
}

// binParent (one per user) holds one directory per test process, named after
// its pid; the next build removes those of processes that have ended.
var binParent = filepath.Join(os.TempDir(), fmt.Sprintf("clearml-agent-test-bin-%d", os.Getuid()))

func buildAgent() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(binParent, 0o755); err != nil {
		return "", err
	}
	sweepBinaries()
	dir, err := os.MkdirTemp(binParent, fmt.Sprintf("static-%d-", os.Getpid()))
	if err != nil {
		return "", err
	}
	os.Chmod(dir, 0o755) // readable by a non-root user inside a container
	bin := filepath.Join(dir, "clearml-agent")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// -buildvcs=false: a checkout owned by another user (CI) must not fail the build on git's safe.directory.
	cmd := exec.CommandContext(ctx, gobin, "build", "-buildvcs=false", "-o", bin, "./cmd/clearml-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		hint := ""
		if strings.Contains(string(out), "go-nvml") {
			hint = " (go-nvml needs cgo: outside agent/gpu's *_nvml.go files, use gpu.NewSystemSampler and gpu.Discover, not nvml.New)"
		}
		return "", fmt.Errorf("CGO_ENABLED=0 go build ./cmd/clearml-agent in %s: %v%s\n%s", root, err, hint, tail(string(out), 40))
	}
	return bin, nil
}

// sweepBinaries removes the binary directories of test processes that have
// ended, and any a day old.
func sweepBinaries() {
	ents, err := os.ReadDir(binParent)
	if err != nil {
		return
	}
	for _, e := range ents {
		var pid int
		gone := false
		if _, err := fmt.Sscanf(e.Name(), "static-%d-", &pid); err == nil && pid > 0 {
			gone = errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			gone = true
		}
		if gone {
			os.RemoveAll(filepath.Join(binParent, e.Name()))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
