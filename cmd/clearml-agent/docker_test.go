package main

// Docker mode end to end: the real agent (daemon and execute) against the
// emulator and a real container engine (the dockerd that scripts/test.sh
// starts), with offline test images and the static agent bind-mounted into
// the containers.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/dockertest"
	"github.com/gpufleet/clearml-agent-go/internal/testenv"
)

// dockerEnv is an agent environment in docker mode: the engine, the static
// agent for the containers, host networking (the emulator listens on the
// host's 127.0.0.1) and a per-test label to find what the test created.
func dockerEnv(t *testing.T, srv *server) (*env, *dockertest.Handle) {
	t.Helper()
	eng := dockertest.Engine(t)
	e := newEnv(t, srv.URL)
	e = e.with(
		"DOCKER_HOST="+eng.Host,
		"CLEARML_AGENT_DOCKER_BINARY="+dockertest.AgentBinary(t),
		// Host networking reaches the emulator on 127.0.0.1; the gate
		// directory lets the test release waiting tasks.
		"CLEARML_AGENT_EXTRA_DOCKER_ARGS=--network host -v "+e.gate+":"+e.gate+" -e GATE="+e.gate,
		"CLEARML_DOCKER_IMAGE="+eng.BusyboxImage,
		// Each test its own worker: an agent removes the containers an
		// earlier run of its worker id left behind.
		"CLEARML_WORKER_ID="+dockerWorker(t),
	)
	return e, eng
}

func dockerWorker(t *testing.T) string { return "e2e:" + t.Name() }

// scriptTask creates a task whose code is the literal script (no repository).
func (s *server) scriptTask(t *testing.T, name, binary, entry, script string, c *api.Container) string {
	t.Helper()
	return s.CreateTask(api.Task{Name: name, Type: "training", Container: c,
		Script: &api.Script{EntryPoint: entry, Binary: binary, Diff: script}})
}

func containersOf(t *testing.T, eng *dockertest.Handle, label string) []container.Summary {
	t.Helper()
	cs, err := eng.Client.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// A bash task runs in the default image, its output reaches the server in
// order, non-zero exit fails it with the code, and no container is left.
func TestDockerBashTask(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e, eng := dockerEnv(t, srv)
	if err := os.MkdirAll(filepath.Join(e.home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.home, ".ssh", "known_hosts"), []byte("git.example ssh-ed25519 AAAA"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := srv.scriptTask(t, "ok", "bash", "run.sh", "echo in-container HOME=$HOME worker=$CLEARML_WORKER_ID task=$CLEARML_TASK_ID\n"+
		"echo known_hosts: $(cat $HOME/.ssh/known_hosts) $(stat -c %a $HOME/.ssh/known_hosts)\n"+
		"for i in 1 2 3; do echo line $i; done\n", nil)
	bad := srv.scriptTask(t, "bad", "bash", "run.sh", "echo failing; exit 3\n", nil)
	srv.enqueue(t, ok, "dq")
	srv.enqueue(t, bad, "dq")
	a := startAgent(t, e, "daemon", "--queue", "dq", "--docker", "--cpu-only")
	srv.waitStatus(t, ok, api.StatusCompleted, api.StatusFailed)
	srv.waitStatus(t, bad, api.StatusCompleted, api.StatusFailed)
	log := srv.logText(ok)
	wid := dockerWorker(t)
	for _, want := range []string{"inside default docker: " + eng.BusyboxImage, "in-container HOME=/root worker=" + wid, "task=" + ok, "known_hosts: git.example ssh-ed25519 AAAA 600", "line 1\nline 2\nline 3"} {
		if !strings.Contains(log, want) {
			t.Errorf("task log lacks %q:\n%s", want, log)
		}
	}
	if st := srv.Task(ok).Status; st != api.StatusCompleted {
		t.Errorf("ok task status %q, want completed", st)
	}
	// The default image was written into the task, as the Python agent does.
	if c := srv.Task(ok).Container; c == nil || c.Image != eng.BusyboxImage {
		t.Errorf("task container after the run = %+v, want the default image written back", c)
	}
	if tk := srv.Task(bad); tk.Status != api.StatusFailed || !strings.Contains(tk.StatusReason+tk.StatusMessage, "3") {
		t.Errorf("bad task = %s (%s / %s), want failed with exit code 3", tk.Status, tk.StatusReason, tk.StatusMessage)
	}
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d", code)
	}
	if cs := containersOf(t, eng, "clearml-task-id="+ok); len(cs) != 0 {
		t.Errorf("containers left for the task: %v", cs)
	}
}

// An image that does not exist and cannot be pulled fails the task with a
// one-line reason; the agent goes on.
func TestDockerMissingImage(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e, _ := dockerEnv(t, srv)
	id := srv.scriptTask(t, "noimage", "bash", "run.sh", "echo never\n", &api.Container{Image: "localhost:1/clearml-test/none:404"})
	srv.enqueue(t, id, "dq")
	a := startAgent(t, e, "daemon", "--queue", "dq", "--docker", "--cpu-only")
	srv.waitStatus(t, id, api.StatusFailed)
	tk := srv.Task(id)
	if !strings.Contains(tk.StatusReason, "localhost:1/clearml-test/none:404") || !strings.Contains(tk.StatusReason, "could not be pulled") {
		t.Errorf("status reason %q, want the image named and why", tk.StatusReason)
	}
	a.signal(syscall.SIGTERM)
	a.wait()
}

// An unsupported docker argument fails the task naming it.
func TestDockerBadArgument(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e, eng := dockerEnv(t, srv)
	id := srv.scriptTask(t, "badarg", "bash", "run.sh", "echo never\n", &api.Container{Image: eng.BusyboxImage, Arguments: "--network host --no-such-flag"})
	srv.enqueue(t, id, "dq")
	a := startAgent(t, e, "daemon", "--queue", "dq", "--docker", "--cpu-only")
	srv.waitStatus(t, id, api.StatusFailed)
	if r := srv.Task(id).StatusReason; !strings.Contains(r, "--no-such-flag") {
		t.Errorf("status reason %q, want the flag named", r)
	}
	a.signal(syscall.SIGTERM)
	a.wait()
}

// Aborting a running task stops its container; the task is marked stopped.
func TestDockerAbort(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e, eng := dockerEnv(t, srv)
	id := srv.scriptTask(t, "long", "bash", "run.sh", "echo started; while true; do sleep 0.1; done\n", nil)
	srv.enqueue(t, id, "dq")
	a := startAgent(t, e, "daemon", "--queue", "dq", "--docker", "--cpu-only")
	waitFor(t, "task started", func() bool { return strings.Contains(srv.logText(id), "started") })
	if n := len(containersOf(t, eng, "clearml-task-id="+id)); n != 1 {
		t.Errorf("%d containers labelled with the task, want 1", n)
	}
	if err := srv.Stop(id); err != nil {
		t.Fatal(err)
	}
	srv.waitStatus(t, id, api.StatusStopped)
	waitFor(t, "container removed", func() bool { return len(containersOf(t, eng, "clearml-task-id="+id)) == 0 })
	a.signal(syscall.SIGTERM)
	a.wait()
}

// gated is a bash task that prints "started <id>", waits for its gate file
// (env.release), prints "released <id>" and exits.
const gated = `echo "started $CLEARML_TASK_ID"
while [ ! -e "$GATE/$CLEARML_TASK_ID" ]; do sleep 0.1; done
echo "released $CLEARML_TASK_ID"
`

// Services mode in docker with N=2: each service is its own worker and
// container; the third waits until one ends. The daemon leaves its service
// containers running when it stops, and a new daemon counts them (adopts
// them) against N.
func TestDockerServicesMode(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e, eng := dockerEnv(t, srv)
	wid := dockerWorker(t)
	var ids []string
	for i := range 3 {
		id := srv.scriptTask(t, fmt.Sprintf("svc%d", i), "bash", "run.sh", gated, nil)
		ids = append(ids, id)
		srv.enqueue(t, id, "services")
	}
	t.Cleanup(func() {
		for _, id := range ids {
			e.release(t, id)
		}
	})
	a := startAgent(t, e, "daemon", "--queue", "services", "--docker", "--services-mode", "2")
	for _, id := range ids[:2] {
		waitFor(t, "service "+id+" started", func() bool { return strings.Contains(srv.logText(id), "started "+id) })
		if !slices.Contains(srv.workerIDs(), wid+":service:"+id) {
			t.Errorf("workers %v lack the service's own %s", srv.workerIDs(), wid+":service:"+id)
		}
	}
	a.saw("STATUS=services mode: 2 of 2 services running")
	if st := srv.Task(ids[2]).Status; st != api.StatusQueued {
		t.Fatalf("third service %s while two run, want queued", st)
	}
	if n := len(containersOf(t, eng, "clearml-parent-worker-id="+wid)); n != 2 {
		t.Errorf("%d service containers, want 2", n)
	}

	// The daemon stops; its services run on.
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if n := len(containersOf(t, eng, "clearml-parent-worker-id="+wid)); n != 2 {
		t.Fatalf("%d service containers after the daemon stopped, want 2 still running", n)
	}

	// A new daemon counts them against N: the third still waits.
	b := startAgent(t, e, "daemon", "--queue", "services", "--docker", "--services-mode", "2")
	b.saw("STATUS=services mode: 2 of 2 services running")
	if st := srv.Task(ids[2]).Status; st != api.StatusQueued {
		t.Fatalf("third service %s after the restart, want queued", st)
	}
	e.release(t, ids[0])
	srv.waitStatus(t, ids[0], api.StatusCompleted)
	waitFor(t, "third service started", func() bool { return strings.Contains(srv.logText(ids[2]), "started "+ids[2]) })
	waitFor(t, "the ended service's container removed", func() bool {
		return len(containersOf(t, eng, "clearml-task-id="+ids[0])) == 0
	})
	e.release(t, ids[1])
	e.release(t, ids[2])
	srv.waitStatus(t, ids[1], api.StatusCompleted)
	srv.waitStatus(t, ids[2], api.StatusCompleted)
	// Ended services are removed, the adopted one too.
	waitFor(t, "no service containers left", func() bool {
		return len(containersOf(t, eng, "clearml-parent-worker-id="+wid)) == 0
	})
	b.signal(syscall.SIGTERM)
	b.wait()
}

// A python task in the python image: venv built inside the container, its
// caches on the host, the SSH agent socket visible inside.
func TestDockerPythonTaskAndSSHSocket(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e, eng := dockerEnv(t, srv)
	sock := filepath.Join(e.gate, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	e = e.with("SSH_AUTH_SOCK=" + sock)
	py := srv.scriptTask(t, "py", "python3", "main.py", "import os, stat, sys\nprint('python', sys.version.split()[0], 'in', sys.prefix)\nprint('ssh socket', stat.S_ISSOCK(os.stat(os.environ['SSH_AUTH_SOCK']).st_mode))\n",
		&api.Container{Image: eng.PythonImage})
	srv.enqueue(t, py, "dq")
	a := startAgent(t, e, "daemon", "--queue", "dq", "--docker", "--cpu-only")
	srv.waitStatus(t, py, api.StatusCompleted, api.StatusFailed)
	log := srv.logText(py)
	for _, want := range []string{"inside docker: " + eng.PythonImage, "venvs-builds", "ssh socket True"} {
		if !strings.Contains(log, want) {
			t.Errorf("task log lacks %q:\n%s", want, log)
		}
	}
	if st := srv.Task(py).Status; st != api.StatusCompleted {
		t.Errorf("status %s (%s)", st, srv.Task(py).StatusReason)
	}
	a.signal(syscall.SIGTERM)
	a.wait()
	if _, err := os.Stat(filepath.Join(e.home, ".clearml", "docker-cache")); err != nil {
		t.Errorf("no per-agent docker caches on the host: %v", err)
	}
}

// A container that ends before the agent inside starts the task (its setup
// script fails) fails the task with the exit code.
func TestDockerContainerExitsEarly(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e, eng := dockerEnv(t, srv)
	id := srv.scriptTask(t, "early", "bash", "run.sh", "echo never\n", &api.Container{Image: eng.BusyboxImage, Arguments: "--network host", SetupShellScript: "echo setting up; exit 5"})
	srv.enqueue(t, id, "dq")
	a := startAgent(t, e, "daemon", "--queue", "dq", "--docker", "--cpu-only")
	srv.waitStatus(t, id, api.StatusFailed)
	if r := srv.Task(id).StatusReason; !strings.Contains(r, "exit code 5") {
		t.Errorf("status reason %q, want exit code 5", r)
	}
	a.signal(syscall.SIGTERM)
	a.wait()
}

// With no engine at start the agent says so, stays NOT ready and
// unregistered, and becomes READY once the engine appears.
func TestDockerEngineAppearsLater(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e, eng := dockerEnv(t, srv)
	real, ok := strings.CutPrefix(eng.Host, "unix://")
	if !ok {
		testenv.Missing(t, "the test engine %s is not on a unix socket; run scripts/test-dockerd.sh start", eng.Host)
	}
	link := filepath.Join(t.TempDir(), "docker.sock")
	e = e.with("DOCKER_HOST=unix://" + link)
	a := startAgent(t, e, "daemon", "--queue", "dq", "--create-queue", "--docker", "--cpu-only")
	a.saw("STATUS=not ready: docker engine at unix://" + link + " does not answer")
	// Registered (the preflight does not hold that up) but not READY.
	if slices.Contains(a.notifications(), "READY=1") {
		t.Fatalf("READY without an engine: %q", a.notifications())
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	a.noteIs("READY=1")
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d", code)
	}
}

// When the daemon is killed while a task runs, the container's lifeline
// (stdin) closes and the agent inside stops the task; the next daemon of the
// same worker removes the container left behind.
func TestDockerCrashRecovery(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e, eng := dockerEnv(t, srv)
	id := srv.scriptTask(t, "crash", "bash", "run.sh", gated, nil)
	t.Cleanup(func() { e.release(t, id) })
	srv.enqueue(t, id, "dq")
	a := startAgent(t, e, "daemon", "--queue", "dq", "--docker", "--cpu-only")
	waitFor(t, "task started", func() bool { return strings.Contains(srv.logText(id), "started "+id) })
	a.signal(syscall.SIGKILL)
	a.wait()
	srv.waitStatus(t, id, api.StatusStopped)
	if n := len(containersOf(t, eng, "clearml-task-id="+id)); n != 1 {
		t.Fatalf("%d containers of the killed daemon's task, want 1 (left behind)", n)
	}
	b := startAgent(t, e, "daemon", "--queue", "dq", "--docker", "--cpu-only")
	b.noteIs("READY=1")
	if n := len(containersOf(t, eng, "clearml-task-id="+id)); n != 0 {
		t.Errorf("%d containers left after the restart, want 0", n)
	}
	if !strings.Contains(b.stderr.String(), "removed a container left by an earlier run") {
		t.Errorf("the restart did not say it removed the container:\n%s", b.stderr.String())
	}
	b.signal(syscall.SIGTERM)
	b.wait()
}

// `execute --id T --docker` by hand runs the task in the same container a
// daemon would, printing its output; task arguments may not mount the
// agent's own state directory.
func TestDockerExecuteByHandAndProtectedMount(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e, eng := dockerEnv(t, srv)
	id := srv.scriptTask(t, "byhand", "bash", "run.sh", "echo by hand $CLEARML_TASK_ID\n", nil)
	code, stdout, stderr := runAgent(t, e, "execute", "--id", id, "--docker", eng.BusyboxImage, "--cpu-only")
	if code != 0 || !strings.Contains(stderr+stdout, "by hand "+id) {
		t.Errorf("execute --docker: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if st := srv.Task(id).Status; st != api.StatusCompleted {
		t.Errorf("status %s", st)
	}

	bad := srv.scriptTask(t, "sneaky", "bash", "run.sh", "echo never\n", &api.Container{Image: eng.BusyboxImage, Arguments: "-v " + e.state + ":/stolen"})
	srv.enqueue(t, bad, "dq")
	a := startAgent(t, e, "daemon", "--queue", "dq", "--docker", "--cpu-only", "--state-dir", e.state)
	srv.waitStatus(t, bad, api.StatusFailed)
	if r := srv.Task(bad).StatusReason; !strings.Contains(r, e.state) {
		t.Errorf("status reason %q, want the protected state directory named", r)
	}
	a.signal(syscall.SIGTERM)
	a.wait()
}
