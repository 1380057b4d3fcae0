//go:build integration

package provision_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/dockertest"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
	"github.com/gpufleet/clearml-agent-go/internal/nspawn"
)

// TestIntegrationDocker provisions a docker-mode agent inside a container
// with real systemd as PID 1; the host's test engine is bound in at
// /run/docker.sock and the emulator runs on the host. The agent reaches
// READY only once it talks to the engine, runs a bash task in a busybox
// container to completion, `agent-provision status` shows that container
// while it runs, and the unit's exposure score is printed.
//
// The engine resolves bind-mount sources on the host, not in the nspawn
// container, so what the agent mounts into task containers (the static
// agent, its state and home: the task's configuration and caches) must lie
// at the same path on both sides. On a real host that is a given; here a
// host directory is bound at its own path and a drop-in (test only) moves
// the agent's state and home there. The unit file itself is the generated
// one.
func TestIntegrationDocker(t *testing.T) {
	nspawn.SkipUnlessRoot(t)
	ctx := t.Context()
	eng := dockertest.Engine(t)
	sock, ok := strings.CutPrefix(eng.Host, "unix://")
	if !ok {
		t.Skipf("the test engine %s is not a unix socket; it cannot be bound into the container", eng.Host)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	sockGID := fi.Sys().(*syscall.Stat_t).Gid
	hostname := fmt.Sprintf("docker-it-%d", os.Getpid())
	worker, services := hostname+":cpu0", hostname+":services"
	// Registered first, so they run last: after the container is gone.
	eng.RemoveContainersOnCleanup(t, "clearml-worker-id="+worker)
	eng.RemoveContainersOnCleanup(t, "clearml-parent-worker-id="+services)

	shared, err := os.MkdirTemp("/run", "clearml-docker-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	os.Chmod(shared, 0o755)
	static := filepath.Join(shared, "clearml-agent-static")
	copyFile(t, dockertest.AgentBinary(t), static, 0o755)

	srv := emulator.New(emulator.Options{Credentials: map[string]string{"AKEY": "SKEY"}})
	t.Cleanup(func() { srv.Close() })
	q := srv.CreateQueue("docker")
	sq := srv.CreateQueue("docker-services")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	m := nspawn.Boot(t, nspawn.Options{Ephemeral: true, Binds: []string{sock + ":/run/docker.sock", shared + ":" + shared}})
	for bin, pkg := range map[string]string{"agent-provision": "../cmd/agent-provision", "clearml-agent": "../cmd/clearml-agent"} {
		out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(m.Root(), "usr/local/bin", bin), pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	sh := func(args ...string) string {
		t.Helper()
		out, err := m.Exec(ctx, args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	show := func(unit, prop string) string {
		return strings.TrimSpace(sh("systemctl", "show", "-p", prop, "--value", unit))
	}
	unit, sunit := "clearml-agent@cpu0.service", "clearml-agent@services.service"

	// What docker.io would have set up: the socket's group, here with the
	// host's gid. The agent user exists first so its state can be chowned.
	sh("groupadd", "--system", "-o", "-g", strconv.Itoa(int(sockGID)), "docker")
	sh("useradd", "--system", "--user-group", "--home-dir", "/var/lib/clearml-agent", "--no-create-home", "--shell", "/usr/sbin/nologin", "clearml")
	uid, _ := strconv.Atoi(strings.TrimSpace(sh("id", "-u", "clearml")))
	gid, _ := strconv.Atoi(strings.TrimSpace(sh("id", "-g", "clearml")))
	for _, inst := range []string{"cpu0", "services"} {
		state := filepath.Join(shared, inst)
		if err := os.Mkdir(state, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(state, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	dropIn := filepath.Join(m.Root(), "etc/systemd/system/clearml-agent@.service.d/50-nspawn-test.conf")
	os.MkdirAll(filepath.Dir(dropIn), 0o755)
	if err := os.WriteFile(dropIn, []byte(fmt.Sprintf(`# TestIntegrationDocker only: state and home at a path the host's engine sees too.
[Service]
Environment=CLEARML_AGENT_STATE_DIR=%[1]s/%%i
Environment=HOME=%[1]s/%%i
# The test engine runs with --bridge=none; the emulator is on the host's 127.0.0.1.
Environment="CLEARML_AGENT_EXTRA_DOCKER_ARGS=--network host"
ReadWritePaths=%[1]s
`, shared)), 0o644); err != nil {
		t.Fatal(err)
	}

	provisionArgs := []string{"agent-provision", "--docker", "--docker-image", eng.BusyboxImage, "--docker-agent-binary", static,
		"--cpu-agents", "1", "--queue", "docker", "--services-agent", "--services-queue", "docker-services", "--hostname", hostname,
		"--api-host", "http://" + ln.Addr().String(), "--access-key", "AKEY", "--secret-key", "SKEY", "--wait", "90s"}
	out, err := m.Exec(ctx, provisionArgs...)
	t.Logf("agent-provision --docker:\n%s", out)
	if err != nil {
		t.Fatalf("agent-provision: %v\njournal:\n%s\n%s", err, m.Journal(unit), m.Journal(sunit))
	}
	for _, want := range []string{"docker mode: engine unix:///var/run/docker.sock (engine ", "static agent " + static, "ordering after docker.service"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	// Type=notify: active means READY=1 arrived, which the agent sends only
	// once its engine preflight passed.
	for _, u := range []string{unit, sunit} {
		if s := show(u, "ActiveState"); s != "active" {
			t.Fatalf("%s is %s\n%s", u, s, m.Journal(u))
		}
		t.Logf("%s: active, STATUS=%q, groups %s", u, show(u, "StatusText"), show(u, "SupplementaryGroups"))
	}
	env := sh("cat", "/etc/clearml-agent/agents/cpu0.env")
	if !strings.Contains(env, "CLEARML_AGENT_DOCKER_BINARY="+static) || !strings.Contains(env, "--docker "+eng.BusyboxImage) {
		t.Errorf("cpu0.env:\n%s", env)
	}

	// One bash task each, in busybox containers, to completion: cpu0 runs
	// its own; the services agent starts a detached one (labelled with it as
	// the parent worker).
	script := "echo started $CLEARML_TASK_ID in $(uname -n)\nsleep 6\necho finished\n"
	tasks := map[string]string{} // task -> unit
	for _, x := range []struct{ queue, unit string }{{q, unit}, {sq, sunit}} {
		id := srv.CreateTask(api.Task{Name: "docker-it", Type: "training", Script: &api.Script{EntryPoint: "run.sh", Binary: "bash", Diff: script}})
		if err := srv.Enqueue(id, x.queue); err != nil {
			t.Fatal(err)
		}
		tasks[id] = x.unit
	}
	logText := func(task string) string {
		var b strings.Builder
		for _, e := range srv.TaskLog(task) {
			b.WriteString(e.Msg + "\n")
		}
		return b.String()
	}
	deadline := time.Now().Add(90 * time.Second)
	for task, u := range tasks {
		for !strings.Contains(logText(task), "started "+task) {
			if time.Now().After(deadline) {
				t.Fatalf("task %s did not start: status %q\nlog:\n%s\njournal:\n%s", task, srv.Task(task).Status, logText(task), m.Journal(u))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	status := sh("agent-provision", "status")
	t.Logf("agent-provision status while the tasks run:\n%s", status)
	for task, u := range tasks {
		cs, err := eng.Client.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "clearml-task-id="+task))})
		if err != nil {
			t.Fatal(err)
		}
		label, want := "clearml-worker-id", worker
		if u == sunit {
			label, want = "clearml-parent-worker-id", services
		}
		if len(cs) != 1 || cs[0].Labels[label] != want {
			t.Errorf("running containers of task %s: %+v, want one labelled %s=%s", task, cs, label, want)
			continue
		}
		row := regexp.MustCompile(regexp.QuoteMeta(u) + `\s+` + cs[0].ID[:12] + `\s+` + regexp.QuoteMeta(eng.BusyboxImage) + `\s+` + task + `\s+Up `)
		if !row.MatchString(status) {
			t.Errorf("status lacks the row of %s's container %.12s (task %s)", u, cs[0].ID, task)
		}
	}
	deadline = time.Now().Add(90 * time.Second)
	for task, u := range tasks {
		for st := srv.Task(task).Status; st != api.StatusCompleted; st = srv.Task(task).Status {
			if st == api.StatusFailed || time.Now().After(deadline) {
				t.Fatalf("task %s: %s (%s)\nlog:\n%s\njournal:\n%s", task, st, srv.Task(task).StatusReason, logText(task), m.Journal(u))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if l := logText(task); !strings.Contains(l, "finished") || !strings.Contains(l, eng.BusyboxImage) {
			t.Errorf("log of task %s lacks its last line or the image:\n%s", task, l)
		}
		t.Logf("task %s (%s) completed in a container of %s", task, u, eng.BusyboxImage)
	}
	// The system call filter answers EPERM instead of killing: make sure
	// nothing the agents do was refused.
	for _, u := range []string{unit, sunit} {
		if j := m.Journal(u); strings.Contains(strings.ToLower(j), "operation not permitted") {
			t.Errorf("journal of %s shows a refused operation:\n%s", u, j)
		}
	}

	sec, _ := m.Exec(ctx, "systemd-analyze", "security", "--no-pager", unit)
	score := -1.0
	for _, l := range strings.Split(sec, "\n") {
		if strings.Contains(l, "Overall exposure level") {
			t.Logf("systemd-analyze security %s (docker mode): %s", unit, strings.TrimSpace(l))
			if f := regexp.MustCompile(`: ([0-9.]+) `).FindStringSubmatch(l); f != nil {
				score, _ = strconv.ParseFloat(f[1], 64)
			}
		}
	}
	if score < 0 || score > 4.0 {
		t.Errorf("docker-mode exposure %.1f, want at most 4.0:\n%s", score, sec)
	}

	// A finished service's container is removed by its agent (a service
	// still running would outlive the agent's stop, by design).
	waitNoContainers(ctx, t, eng, "clearml-parent-worker-id="+services, time.Minute)

	t.Logf("remove:\n%s", sh("agent-provision", "remove", "--purge-config"))
	if left := unitsLeft(t, sh); left != "" {
		t.Errorf("units left after remove:\n%s", left)
	}
	for _, label := range []string{"clearml-worker-id=" + worker, "clearml-parent-worker-id=" + services} {
		checkNoContainers(ctx, t, eng, label)
	}
}

// waitNoContainers waits up to d until no container carries label.
func waitNoContainers(ctx context.Context, t *testing.T, eng *dockertest.Handle, label string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		cs, err := eng.Client.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d containers with label %s still there after %s (state %s)", len(cs), label, d, cs[0].State)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkNoContainers fails t if containers with label are left, running or not.
func checkNoContainers(ctx context.Context, t *testing.T, eng *dockertest.Handle, label string) {
	t.Helper()
	cs, err := eng.Client.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 0 {
		t.Errorf("containers left with label %s: %d", label, len(cs))
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
