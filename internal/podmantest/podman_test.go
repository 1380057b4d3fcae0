package podmantest

// Smoke tests: the agent's Docker client (agent/docker), then the agent's
// docker mode end to end, against podman's Docker-compatible API.

import (
	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/docker"
	"github.com/gpufleet/clearml-agent-go/internal/dockertest"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

// waitLimit bounds every wait, so that a broken engine fails the test
// instead of hanging it.
const waitLimit = 2 * time.Minute

// label is a container label unique to t and this process.
func label(t *testing.T) (key, value string) {
	return "clearml-agent-go.test", fmt.Sprintf("%s.%d", strings.ReplaceAll(t.Name(), "/", "_"), os.Getpid())
}

// removeOnCleanup removes every container labelled key=value when t ends.
func removeOnCleanup(t *testing.T, e *docker.Engine, key, value string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cs, err := e.Labelled(ctx, key, value)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		for _, c := range cs {
			if err := e.Remove(ctx, c.ID); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
}

// TestPodmanClient drives agent/docker's Engine against podman: Ping,
// EnsureImage of a present image (no pull), Create with labels, Attach
// before Start, Wait, the output, Labelled, Remove; then the lifeline the
// executor relies on (stdin open for one attach, closed when we close ours).
func TestPodmanClient(t *testing.T) {
	host := Engine(t)
	t.Setenv("DOCKER_HOST", host)
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	e, err := docker.Connect(ctx)
	if err != nil {
		t.Fatalf("Connect to podman at %s: %v", host, err)
	}
	defer e.Close()
	if e.Host() != host {
		t.Errorf("Host() = %q, want %q", e.Host(), host)
	}
	if err := e.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := e.Client().ServerVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("podman at %s: version %s, API %s (client negotiated %s)", host, v.Version, v.APIVersion, e.Client().ClientVersion())
	var pullLog []string
	if err := e.EnsureImage(ctx, BusyboxImage, false, func(l string) { pullLog = append(pullLog, l) }); err != nil {
		t.Fatalf("EnsureImage(%s): %v", BusyboxImage, err)
	}
	if len(pullLog) != 0 {
		t.Errorf("EnsureImage of a present image logged %q, want no pull", pullLog)
	}

	key, value := label(t)
	removeOnCleanup(t, e, key, value)
	host0 := &container.HostConfig{NetworkMode: "host"} // no network of its own: podman would set up a bridge
	c, err := e.Create(ctx, "", &container.Config{Image: BusyboxImage, Cmd: []string{"echo", "hello"},
		AttachStdout: true, AttachStderr: true, Labels: map[string]string{key: value}}, host0, nil)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	var out, errOut testenv.Buffer
	_, done, err := c.Attach(ctx, false, &out, &errOut)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	code, err := c.Wait(ctx)
	if err != nil || code != 0 {
		t.Fatalf("Wait = %d, %v; want 0, nil", code, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("attached streams ended with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("attached streams did not end")
	}
	if out.String() != "hello\n" || errOut.String() != "" {
		t.Errorf("stdout %q, stderr %q; want \"hello\\n\", \"\"", out.String(), errOut.String())
	}
	cs, err := e.Labelled(ctx, key, value)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].ID != c.ID || cs[0].Labels[key] != value {
		t.Fatalf("Labelled(%s=%s) = %+v, want the one container %s", key, value, cs, c.ID)
	}
	if err := c.Remove(ctx); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := c.Remove(ctx); err != nil {
		t.Errorf("Remove of a removed container: %v, want nil", err)
	}
	if cs, err := e.Labelled(ctx, key, value); err != nil || len(cs) != 0 {
		t.Errorf("Labelled after Remove = %+v, %v; want none", cs, err)
	}

	// The lifeline: the container reads its stdin to the end, which comes
	// when we close our side.
	lc, err := e.Create(ctx, "", &container.Config{Image: BusyboxImage,
		Cmd:         []string{"sh", "-c", `read line; echo "got $line"; cat >/dev/null; echo "stdin closed"`},
		AttachStdin: true, AttachStdout: true, AttachStderr: true, OpenStdin: true, StdinOnce: true,
		Labels: map[string]string{key: value}}, host0, nil)
	if err != nil {
		t.Fatalf("Create (stdin): %v", err)
	}
	var lout testenv.Buffer
	stdin, ldone, err := lc.Attach(ctx, true, &lout, &lout)
	if err != nil {
		t.Fatalf("Attach (stdin): %v", err)
	}
	if err := lc.Start(ctx); err != nil {
		t.Fatalf("Start (stdin): %v", err)
	}
	if _, err := stdin.Write([]byte("ping\n")); err != nil {
		t.Fatalf("write to the container's stdin: %v", err)
	}
	waitFor(t, "the container to read its stdin", func() bool { return strings.Contains(lout.String(), "got ping") })
	if err := stdin.Close(); err != nil {
		t.Fatalf("closing the container's stdin: %v", err)
	}
	code, err = lc.Wait(ctx)
	if err != nil || code != 0 {
		t.Fatalf("Wait (stdin) = %d, %v; want 0, nil; output %q", code, err, lout.String())
	}
	<-ldone
	if got := lout.String(); got != "got ping\nstdin closed\n" {
		t.Errorf("output %q, want \"got ping\\nstdin closed\\n\"", got)
	}
	if err := lc.Remove(ctx); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const (
	testKey    = "PODMANACCESSKEY1"
	testSecret = "podman-secret"
)

// TestPodmanDockerMode runs `clearml-agent daemon --docker` against podman:
// a bash task in busybox completes with its output in the log, a failing
// one fails with its exit code, no container is left, and the daemon
// exits 0 on SIGTERM.
func TestPodmanDockerMode(t *testing.T) {
	host := Engine(t)
	bin := dockertest.AgentBinary(t) // static: it is the daemon and the agent inside the containers

	emu := emulator.New(emulator.Options{Credentials: map[string]string{testKey: testSecret}, Logger: slog.New(slog.DiscardHandler)})
	hs := httptest.NewServer(emu.Handler())
	t.Cleanup(func() { hs.Close(); emu.Close() })
	q := emu.CreateQueue("pq")
	task := func(name, script string) string {
		id := emu.CreateTask(api.Task{Name: name, Type: "training",
			Script: &api.Script{EntryPoint: "run.sh", Binary: "bash", Diff: script}})
		if err := emu.Enqueue(id, q); err != nil {
			t.Fatal(err)
		}
		return id
	}
	ok := task("ok", "echo in-podman HOME=$HOME task=$CLEARML_TASK_ID\nfor i in 1 2 3; do echo line $i; done\n")
	bad := task("bad", "echo failing; exit 3\n")

	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "home"), 0o755); err != nil {
		t.Fatal(err)
	}
	worker := fmt.Sprintf("podman-e2e-%d:cpu", os.Getpid())
	t.Setenv("DOCKER_HOST", host)
	e, err := docker.Connect(t.Context())
	if err != nil {
		t.Fatalf("Connect to podman at %s: %v", host, err)
	}
	// Runs after the daemon is gone (cleanups run last first): whatever it
	// left is removed; the test checks below that it left nothing.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cs, _ := e.Labelled(ctx, docker.LabelWorker, worker)
		for _, c := range cs {
			_ = e.Remove(ctx, c.ID)
		}
		e.Close()
	})
	cmd := exec.Command(bin, "daemon", "--queue", "pq", "--docker", "--cpu-only", "--foreground")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(root, "home"),
		"LANG=C.UTF-8",
		"CLEARML_API_HOST=" + hs.URL,
		"CLEARML_API_ACCESS_KEY=" + testKey,
		"CLEARML_API_SECRET_KEY=" + testSecret,
		"CLEARML_AGENT_QUEUE_POLL_FREQ_SEC=0.2",
		"CLEARML_AGENT_STATE_DIR=" + filepath.Join(root, "state"),
		"CLEARML_WORKER_ID=" + worker,
		"DOCKER_HOST=" + host,
		"CLEARML_AGENT_DOCKER_BINARY=" + bin,
		"CLEARML_AGENT_EXTRA_DOCKER_ARGS=--network host", // the emulator listens on the host's 127.0.0.1
		"CLEARML_DOCKER_IMAGE=" + BusyboxImage,
	}
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("clearml-agent daemon output:\n%s", out.String())
		}
	})
	final := func(id string) api.Task {
		waitFor(t, "task "+id+" to end", func() bool {
			st := emu.Task(id).Status
			return st == api.StatusCompleted || st == api.StatusFailed || st == api.StatusStopped
		})
		return emu.Task(id)
	}
	logText := func(id string) string {
		var b strings.Builder
		for _, e := range emu.TaskLog(id) {
			b.WriteString(e.Msg)
			b.WriteByte('\n')
		}
		return b.String()
	}
	if tk := final(ok); tk.Status != api.StatusCompleted {
		t.Errorf("ok task: %s (%s), want completed; log:\n%s", tk.Status, tk.StatusReason, logText(ok))
	}
	log := logText(ok)
	for _, want := range []string{"in-podman HOME=/root task=" + ok, "line 1\nline 2\nline 3"} {
		if !strings.Contains(log, want) {
			t.Errorf("ok task log lacks %q:\n%s", want, log)
		}
	}
	if tk := final(bad); tk.Status != api.StatusFailed || !strings.Contains(tk.StatusReason+tk.StatusMessage, "3") {
		t.Errorf("bad task: %s (%s / %s), want failed with exit code 3; log:\n%s", tk.Status, tk.StatusReason, tk.StatusMessage, logText(bad))
	}

	for _, id := range []string{ok, bad} {
		waitFor(t, "the container of task "+id+" removed", func() bool {
			cs, err := e.Labelled(t.Context(), docker.LabelTask, id)
			return err == nil && len(cs) == 0
		})
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("daemon exit after SIGTERM: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("daemon still running 2 minutes after SIGTERM")
	}
}

// TestNoPodman: without a podman service a test skips locally and fails
// under CI=true, naming the socket and the fix; missing() names the
// packages to install and the need for root.
func TestNoPodman(t *testing.T) {
	t.Setenv("CLEARML_TEST_PODMAN_HOST", "unix:///nonexistent/clearml-test-podman.sock")
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		f := &testenv.Recorder{TB: t}
		f.Run(func(tb testing.TB) { Engine(tb) })
		switch {
		case ci == "" && (!f.DidSkip || f.DidFail):
			t.Errorf("CI unset: skipped %v, failed %v (%s); want a skip", f.DidSkip, f.DidFail, f.Msg)
		case ci == "true" && (!f.DidFail || f.DidSkip):
			t.Errorf("CI=true: skipped %v, failed %v (%s); want a failure", f.DidSkip, f.DidFail, f.Msg)
		}
		if !strings.Contains(f.Msg, "nonexistent") || !strings.Contains(f.Msg, "podman system service") {
			t.Errorf("message %q does not name the socket and the fix", f.Msg)
		}
	}

	t.Setenv("PATH", t.TempDir())
	if msg := missing(0); !strings.Contains(msg, "apt-get install -y podman runc") {
		t.Errorf("missing() without podman on PATH = %q, want the apt-get command", msg)
	}
	dir := t.TempDir()
	for _, name := range []string{"podman", "runc"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	if msg := missing(1000); !strings.Contains(msg, "needs root") {
		t.Errorf("missing() as a user = %q, want that it needs root", msg)
	}
	if msg := missing(0); msg != "" {
		t.Errorf("missing() as root with podman and runc = %q, want \"\"", msg)
	}
}
