//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
	"github.com/gpufleet/clearml-agent-go/internal/nspawn"
)

const (
	accessKey = "E2EACCESSKEY"
	secretKey = "e2e-secret-key-0123456789"
)

// server is the emulator on host 127.0.0.1, reachable from the containers.
type server struct {
	*emulator.Server
	URL string
}

func startServer(t *testing.T, queues ...string) (*server, map[string]string) {
	t.Helper()
	srv := emulator.New(emulator.Options{Credentials: map[string]string{accessKey: secretKey}})
	t.Cleanup(func() { srv.Close() })
	ids := map[string]string{}
	for _, q := range queues {
		ids[q] = srv.CreateQueue(q)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return &server{Server: srv, URL: "http://" + ln.Addr().String()}, ids
}

// repoRoot is the module root (tests run in internal/e2e).
func repoRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// scratch holds what the tests build once per test binary (the release,
// the host's agent-provision); TestMain removes it.
var scratch string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clearml-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scratch = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// release builds the release tarball with scripts/release.sh once per test
// binary and returns its path and sha256.
type releaseInfo struct{ Tarball, SHA256 string }

var releaseCache *releaseInfo

func release(t *testing.T) releaseInfo {
	t.Helper()
	if releaseCache != nil {
		return *releaseCache
	}
	out := filepath.Join(scratch, "release")
	cmd := exec.CommandContext(t.Context(), "bash", filepath.Join(repoRoot(t), "scripts/release.sh"), "--version", "0.0.0-e2e", "--out", out)
	cmd.Dir = repoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/release.sh: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	tarball := lines[len(lines)-1]
	sum, err := os.ReadFile(tarball + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	releaseCache = &releaseInfo{Tarball: tarball, SHA256: strings.Fields(string(sum))[0]}
	return *releaseCache
}

// serveFile serves path at http://127.0.0.1:PORT/<base name>.
func serveFile(t *testing.T, path string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/"+filepath.Base(path), func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String() + "/" + filepath.Base(path)
}

// hostProvision builds agent-provision for the host once and runs it.
var hostProvisionBin string

func hostProvision(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if hostProvisionBin == "" {
		bin := filepath.Join(scratch, "agent-provision")
		if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "../../cmd/agent-provision").CombinedOutput(); err != nil {
			t.Fatalf("go build agent-provision: %v\n%s", err, out)
		}
		hostProvisionBin = bin
	}
	cmd := exec.CommandContext(t.Context(), hostProvisionBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("agent-provision %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// validateUserData runs the real `cloud-init schema` on the host.
func validateUserData(t *testing.T, userData []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(f, userData, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), "cloud-init", "schema", "--config-file", f).CombinedOutput()
	if err != nil {
		t.Fatalf("cloud-init schema rejects the user-data: %v\n%s\nuser-data:\n%s", err, out, userData)
	}
}

// seed writes a NoCloud seed into root.
func seed(root, instanceID string, userData []byte) error {
	dir := filepath.Join(root, "var/lib/cloud/seed/nocloud")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	meta := fmt.Sprintf("instance-id: %s\nlocal-hostname: clearml-e2e\n", instanceID)
	if err := os.WriteFile(filepath.Join(dir, "meta-data"), []byte(meta), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "user-data"), userData, 0o600)
}

func monotonicNow() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// readyAfter is how long after start (a CLOCK_MONOTONIC reading on the
// host, which the container shares) unit entered the active state, from
// systemd's ActiveEnterTimestampMonotonic: for a Type=notify unit that is
// when it sent READY=1.
func readyAfter(t *testing.T, m *nspawn.Machine, unit string, start time.Duration) time.Duration {
	t.Helper()
	out, err := m.Exec(t.Context(), "systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "--value", unit)
	if err != nil {
		t.Fatal(err)
	}
	us, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil || us == 0 {
		t.Fatalf("%s: ActiveEnterTimestampMonotonic %q: not active", unit, strings.TrimSpace(out))
	}
	return time.Duration(us)*time.Microsecond - start
}

// cloudInitDone asserts `cloud-init status --long` says done without errors.
func cloudInitDone(t *testing.T, m *nspawn.Machine) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := m.Exec(ctx, "cloud-init", "status", "--wait", "--long")
	if err != nil || !strings.Contains(out, "status: done") {
		log, _ := m.Exec(t.Context(), "tail", "-n", "80", "/var/log/cloud-init-output.log")
		t.Fatalf("cloud-init status: %v\n%s\ncloud-init-output.log:\n%s", err, out, log)
	}
	if strings.Contains(out, "errors:") && !strings.Contains(out, "errors: []") {
		t.Fatalf("cloud-init reports errors:\n%s", out)
	}
	return out
}

// waitWorkers waits until the emulator has the worker ids want registered.
func waitWorkers(t *testing.T, srv *server, within time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		have := map[string]bool{}
		for _, w := range srv.Workers() {
			have[w.ID] = true
		}
		missing := []string{}
		for _, id := range want {
			if !have[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %v not registered within %s (registered: %v)", missing, within, keys(have))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func registerTimes(srv *server) map[string]string {
	out := map[string]string{}
	for _, w := range srv.Workers() {
		out[w.ID] = w.RegisterTime
	}
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// runTask enqueues a bash task and waits until it ends; it returns the
// task id and its log.
func runTask(t *testing.T, srv *server, queueID, name, script string, within time.Duration) (string, string) {
	t.Helper()
	id := enqueueScript(t, srv, queueID, name, script)
	return id, waitTask(t, srv, id, within)
}

// enqueueScript creates a bash task running script and enqueues it.
func enqueueScript(t *testing.T, srv *server, queueID, name, script string) string {
	t.Helper()
	id := srv.CreateTask(api.Task{Name: name, Type: "training", Script: &api.Script{
		EntryPoint: name + ".sh", Binary: "bash", Diff: script}})
	if err := srv.Enqueue(id, queueID); err != nil {
		t.Fatal(err)
	}
	return id
}

func taskLog(srv *server, id string) string {
	var b strings.Builder
	for _, e := range srv.TaskLog(id) {
		b.WriteString(e.Msg + "\n")
	}
	return b.String()
}

func waitTask(t *testing.T, srv *server, id string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		switch st := srv.Task(id).Status; st {
		case api.StatusCompleted:
			return taskLog(srv, id)
		case api.StatusFailed, api.StatusStopped:
			t.Fatalf("task %s ended %s (%s)\nlog:\n%s", id, st, srv.Task(id).StatusReason, taskLog(srv, id))
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s after %s\nlog:\n%s", id, srv.Task(id).Status, within, taskLog(srv, id))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitLog(t *testing.T, srv *server, id, text string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(taskLog(srv, id), text) {
		if time.Now().After(deadline) {
			t.Fatalf("task %s log lacks %q after %s (status %s)\nlog:\n%s", id, text, within, srv.Task(id).Status, taskLog(srv, id))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}
