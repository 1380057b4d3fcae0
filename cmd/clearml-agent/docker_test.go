package main

// Docker mode end to end: the real agent (daemon and execute) against the
// emulator and a real container engine (the dockerd that scripts/test.sh
// starts), with offline test images and the static agent bind-mounted into
// the containers.

import (
	"context"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/dockertest"
)

// dockerEnv is an agent environment in docker mode: the engine, the static
// agent for the containers, host networking (the emulator listens on the
// host's 127.0.0.1) and a per-test label to find what the test created.
func dockerEnv(t *testing.T, srv *server) (*env, *dockertest.Handle) {
	t.Helper()
	eng := dockertest.Engine(t)
	e := newEnv(t, srv.URL).with(
		"DOCKER_HOST="+eng.Host,
		"CLEARML_AGENT_DOCKER_BINARY="+dockertest.AgentBinary(t),
		"CLEARML_AGENT_EXTRA_DOCKER_ARGS=--network host",
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
	ok := srv.scriptTask(t, "ok", "bash", "run.sh", "echo in-container HOME=$HOME worker=$CLEARML_WORKER_ID task=$CLEARML_TASK_ID\nfor i in 1 2 3; do echo line $i; done\n", nil)
	bad := srv.scriptTask(t, "bad", "bash", "run.sh", "echo failing; exit 3\n", nil)
	srv.enqueue(t, ok, "dq")
	srv.enqueue(t, bad, "dq")
	a := startAgent(t, e, "daemon", "--queue", "dq", "--docker", "--cpu-only")
	srv.waitStatus(t, ok, api.StatusCompleted, api.StatusFailed)
	srv.waitStatus(t, bad, api.StatusCompleted, api.StatusFailed)
	log := srv.logText(ok)
	wid := dockerWorker(t)
	for _, want := range []string{"inside default docker: " + eng.BusyboxImage, "in-container HOME=/root worker=" + wid, "task=" + ok, "line 1\nline 2\nline 3"} {
		if !strings.Contains(log, want) {
			t.Errorf("task log lacks %q:\n%s", want, log)
		}
	}
	if st := srv.Task(ok).Status; st != api.StatusCompleted {
		t.Errorf("ok task status %q, want completed", st)
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
