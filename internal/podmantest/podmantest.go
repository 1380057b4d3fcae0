// Package podmantest gives tests podman's Docker-compatible API socket, so
// that the agent's Docker client (agent/docker) can be shown to work against
// podman as well as dockerd.
//
// Engine returns the DOCKER_HOST of a podman API service: $CLEARML_TEST_PODMAN_HOST
// when set, else unix:///run/clearml-test-podman.sock. When nothing answers
// there and the test runs as root, Engine starts `podman system service` on
// that socket itself, with a private storage root (/var/lib/clearml-test-podman,
// vfs), run root (/run/clearml-test-podman) and containers.conf (CONTAINERS_CONF:
// runc, the ulimits podman needs on this kind of host, cgroupfs, events in a
// file), so it changes nothing of a podman the host may use. The service
// stops by itself after two idle minutes (--time=120): concurrent test
// processes share it under a file lock, and none has to stop it.
//
// Engine also makes sure the busybox test image (internal/dockertest's
// BusyboxImage) is in podman, importing it through the API from the root
// filesystem tarball that scripts/docker-images.sh caches.
//
// When podman (or runc) is missing, or the service cannot be started without
// root, Engine skips the test with the command that fixes it, except under
// CI=true, where it fails: in CI a test that needs a tool must never pass by
// skipping.
//
// It is only for tests: it calls testing.TB.
package podmantest

import (
	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/gpufleet/clearml-agent-go/internal/dockertest"
)

const (
	// Socket is where Engine serves podman's API.
	Socket = "/run/clearml-test-podman.sock"
	// Host is Socket as a DOCKER_HOST.
	Host = "unix://" + Socket
	// BusyboxImage is the image Engine makes sure of (dockertest's).
	BusyboxImage = dockertest.BusyboxImage

	root    = "/var/lib/clearml-test-podman" // storage (vfs) and podman's database
	runRoot = "/run/clearml-test-podman"     // run state, containers.conf, service log
	lock    = "/run/clearml-test-podman.lock"
	idle    = "120" // seconds the service waits idle before it exits
	pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// containersConf is the service's only containers.conf (CONTAINERS_CONF
// replaces the system's): runc, as crun is not installed; ulimits below this
// host's hard limits (podman's default asks for more and containers fail);
// cgroupfs and file events, as there is no systemd or journald; every other
// path in our own directories.
var containersConf = fmt.Sprintf(`[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
tmp_dir = %q

[network]
network_config_dir = %q
`, filepath.Join(runRoot, "events.log"), filepath.Join(runRoot, "libpod"), filepath.Join(root, "networks"))

// HostOf returns the DOCKER_HOST the tests use: $CLEARML_TEST_PODMAN_HOST,
// else Host.
func HostOf() string {
	if h := os.Getenv("CLEARML_TEST_PODMAN_HOST"); h != "" {
		return h
	}
	return Host
}

// Engine returns the DOCKER_HOST of a podman API service with BusyboxImage
// present, starting the service when none answers (see the package
// documentation), or skips or fails t.
func Engine(t testing.TB) string {
	t.Helper()
	host := HostOf()
	c, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("podmantest: docker client for %s: %v", host, err)
	}
	defer c.Close()
	if !answers(t.Context(), c) {
		if host != Host {
			testenv.Missing(t, "%s", fmt.Sprintf("podmantest: nothing answers at CLEARML_TEST_PODMAN_HOST=%s; start podman's service there "+
				"(podman system service --time=0 %s) or unset the variable", host, host))
		}
		if err := startService(t, c); err != nil {
			t.Fatalf("podmantest: %v", err)
		}
	}
	if err := ensureBusybox(t.Context(), c); err != nil {
		var fix needsFix
		if errors.As(err, &fix) {
			testenv.Missing(t, "%s", err.Error())
		}
		t.Fatalf("podmantest: %v", err)
	}
	return host
}

// needsFix is a missing prerequisite that a command fixes.
type needsFix struct{ msg string }

func (e needsFix) Error() string { return e.msg }

func answers(ctx context.Context, c *client.Client) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.Ping(ctx)
	return err == nil
}

// missing says what is missing to start the service, and the fix; "" when
// nothing is.
func missing(euid int) string {
	if _, err := exec.LookPath("podman"); err != nil {
		return fmt.Sprintf("podmantest: no podman API answers at %s and podman is not installed: "+
			"sudo apt-get install -y podman runc (scripts/install-deps.sh does)", Host)
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return "podmantest: runc (podman's runtime here) is not installed: sudo apt-get install -y runc (scripts/install-deps.sh does)"
	}
	if euid != 0 {
		return fmt.Sprintf("podmantest: no podman API answers at %s and starting it needs root: run the test as root "+
			"(sudo scripts/test.sh), or set CLEARML_TEST_PODMAN_HOST to a running `podman system service` socket", Host)
	}
	return ""
}

// startService starts podman's API service on Socket, unless another test
// process did meanwhile (they serialise on lock).
func startService(t testing.TB, c *client.Client) error {
	t.Helper()
	if msg := missing(os.Geteuid()); msg != "" {
		testenv.Missing(t, "%s", msg)
	}
	podman, err := exec.LookPath("podman")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(lock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if answers(t.Context(), c) {
		return nil // another test process started it
	}
	if err := os.MkdirAll(runRoot, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(runRoot, "containers.conf")
	if err := os.WriteFile(conf, []byte(containersConf), 0o644); err != nil {
		return err
	}
	logPath := filepath.Join(runRoot, "service.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	_ = os.Remove(Socket) // left by a service that was killed
	cmd := exec.Command(podman, "--root", root, "--runroot", filepath.Join(runRoot, "run"), "--storage-driver", "vfs",
		"system", "service", "--time="+idle, Host)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: a Ctrl-C of the test run does not reach it; it
	// exits by itself once idle.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", cmd, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !answers(t.Context(), c) {
		select {
		case err := <-exited:
			return fmt.Errorf("%s exited (%v) before answering; %s ends:\n%s", cmd, err, logPath, tailFile(logPath, 20))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return fmt.Errorf("%s did not answer within 30 s; %s ends:\n%s", cmd, logPath, tailFile(logPath, 20))
		}
	}
	t.Logf("podmantest: started podman's API service (pid %d) at %s; it exits after %s s idle; log %s", cmd.Process.Pid, Host, idle, logPath)
	return nil
}

// ensureBusybox imports BusyboxImage from scripts/docker-images.sh's
// tarball when podman lacks it.
func ensureBusybox(ctx context.Context, c *client.Client) error {
	if _, err := c.ImageInspect(ctx, BusyboxImage); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect %s: %w", BusyboxImage, err)
	}
	cache := os.Getenv("CLEARML_DOCKER_TEST_CACHE")
	if cache == "" {
		cache = "/var/cache/clearml-agent-test"
	}
	tarball := filepath.Join(cache, "busybox-1.tar")
	f, err := os.Open(tarball)
	if err != nil {
		return needsFix{fmt.Sprintf("podmantest: %s is not in podman and its root filesystem %s cannot be read (%v): "+
			"run `sudo scripts/docker-images.sh` once (with the test dockerd: scripts/test.sh does), which leaves it there", BusyboxImage, tarball, err)}
	}
	defer f.Close()
	// The tag goes in the reference: podman 4.3 ignores the tag parameter.
	rc, err := c.ImageImport(ctx, image.ImportSource{Source: f, SourceName: "-"}, BusyboxImage, image.ImportOptions{
		Message: "clearml-agent-go test image (internal/podmantest)",
		Changes: []string{"ENV HOME=/root", "ENV " + pathEnv, `CMD ["/bin/sh"]`},
	})
	if err != nil {
		return fmt.Errorf("importing %s into podman from %s: %w", BusyboxImage, tarball, err)
	}
	defer rc.Close()
	if err := streamError(rc); err != nil {
		return fmt.Errorf("importing %s into podman from %s: %w", BusyboxImage, tarball, err)
	}
	if _, err := c.ImageInspect(ctx, BusyboxImage); err != nil {
		return fmt.Errorf("%s imported into podman from %s, but: %w", BusyboxImage, tarball, err)
	}
	return nil
}

// streamError reads a JSON message stream to its end and returns its error.
func streamError(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
