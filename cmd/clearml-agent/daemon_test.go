package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// The daemon registers, says READY after registering, reports its state in
// STATUS, feeds the watchdog, runs a task with the --gpus devices, and on
// SIGTERM sends STOPPING=1, unregisters and exits 0.
func TestDaemonLifecycle(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	e := newEnv(t, srv.URL).with("WATCHDOG_USEC=1000000", "FOO=from-agent-env")
	a := startAgent(t, e, "daemon", "--queue", "e2e", "--create-queue", "--gpus", "0,1", "--foreground")

	a.saw("STATUS=idle, polling e2e")
	a.saw("READY=1")
	wid := hostname(t) + ":gpu0,1"
	if diff := cmp.Diff([]string{wid}, srv.workerIDs()); diff != "" {
		t.Errorf("registered workers (-want +got):\n%s", diff)
	}
	a.noteIs("WATCHDOG=1")
	a.noteIs("WATCHDOG=1")

	id := srv.newTask(t, repo, "env", "env.sh", "bash")
	srv.enqueue(t, id, "e2e")
	a.notePrefix("STATUS=running task " + id)
	srv.waitStatus(t, id, api.StatusCompleted)
	want := "CUDA=[0,1] NVIDIA=[0,1] WORKER=[" + wid + "] FOO=[from-agent-env]"
	if log := srv.logText(id); !strings.Contains(log, want) {
		t.Errorf("task log lacks %q:\n%s", want, log)
	}
	if got := srv.Task(id).LastWorker; got != wid {
		t.Errorf("last_worker = %q, want %q", got, wid)
	}
	a.noteIs("STATUS=idle, polling e2e")

	a.signal(syscall.SIGTERM)
	a.noteIs("STOPPING=1")
	if code := a.wait(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	if ids := srv.workerIDs(); len(ids) != 0 {
		t.Errorf("workers after exit = %v, want none (unregistered)", ids)
	}
}

// First SIGTERM drains: the running task completes and the queued one stays
// queued; the agent exits 0.
func TestFirstSIGTERMDrains(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	e := newEnv(t, srv.URL)
	first := srv.newTask(t, repo, "first", "wait.sh", "bash")
	second := srv.newTask(t, repo, "second", "env.sh", "bash")
	srv.enqueue(t, first, "q")
	a := startAgent(t, e, "daemon", "--queue", "q", "--cpu-only")
	a.notePrefix("STATUS=running task " + first)
	waitFor(t, "first task started", func() bool { return strings.Contains(srv.logText(first), "started "+first) })
	srv.enqueue(t, second, "q")

	a.signal(syscall.SIGTERM)
	a.saw("STATUS=draining")
	a.saw("STOPPING=1")
	e.release(t, first)
	if code := a.wait(); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	if st := srv.Task(first).Status; st != api.StatusCompleted {
		t.Errorf("drained task status = %q, want completed", st)
	}
	if log := srv.logText(first); !strings.Contains(log, "released "+first) {
		t.Errorf("drained task log lacks its last line:\n%s", log)
	}
	if slices.Contains(a.notifications(), "WATCHDOG=1") {
		t.Errorf("WATCHDOG=1 sent without WATCHDOG_USEC: %q", a.notifications())
	}
	if st := srv.Task(second).Status; st != api.StatusQueued {
		t.Errorf("second task status = %q, want queued (not taken while draining)", st)
	}
	if ids := srv.workerIDs(); len(ids) != 0 {
		t.Errorf("workers after exit = %v, want none", ids)
	}
}

// A second SIGTERM aborts the running task, which is marked stopped.
func TestSecondSIGTERMStopsTask(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	e := newEnv(t, srv.URL)
	id := srv.newTask(t, repo, "long", "wait.sh", "bash")
	srv.enqueue(t, id, "q")
	a := startAgent(t, e, "daemon", "--queue", "q", "--cpu-only")
	waitFor(t, "task started", func() bool { return strings.Contains(srv.logText(id), "started "+id) })
	a.signal(syscall.SIGTERM)
	a.saw("STATUS=draining")
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	if st := srv.Task(id).Status; st != api.StatusStopped {
		t.Errorf("aborted task status = %q, want stopped", st)
	}
	if ids := srv.workerIDs(); len(ids) != 0 {
		t.Errorf("workers after exit = %v, want none", ids)
	}
}

// A third SIGTERM exits at once, even while the task ignores SIGTERM.
func TestThirdSIGTERMExits(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	e := newEnv(t, srv.URL).with("CLEARML_AGENT__AGENT__ABORT_GRACE_PERIOD_SEC=600")
	id := srv.newTask(t, repo, "stubborn", "stubborn.sh", "bash")
	t.Cleanup(func() { e.killTaskGroup(id) })
	srv.enqueue(t, id, "q")
	a := startAgent(t, e, "daemon", "--queue", "q", "--cpu-only")
	waitFor(t, "task started", func() bool { return strings.Contains(srv.logText(id), "started "+id) })
	a.signal(syscall.SIGTERM)
	a.saw("STATUS=draining")
	a.signal(syscall.SIGTERM)
	waitFor(t, "abort logged", func() bool { return strings.Contains(a.stderr.String(), "aborting the running task") })
	if a.exited() {
		t.Fatalf("agent exited after the second SIGTERM while the task ignores SIGTERM")
	}
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code == 0 {
		t.Fatalf("exit status 0 after the third SIGTERM, want non-zero")
	}
	if !strings.Contains(a.stderr.String(), "exiting at once") {
		t.Errorf("stderr does not say it exits at once:\n%s", a.stderr.String())
	}
	// The task ran in an execute child; neither outlives the agent.
	pid := e.taskPID(id)
	waitFor(t, "the task process gone", func() bool { return pid > 0 && !alive(pid) })
}

// Every task runs in a `clearml-agent execute` child of the daemon, under the
// daemon's worker id, handed the daemon's session token (no second login).
func TestTaskRunsInExecuteChild(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	e := newEnv(t, srv.URL)
	a := startAgent(t, e, "daemon", "--queue", "q", "--create-queue", "--cpu-only")
	a.noteIs("READY=1")
	logins := srv.Requests()["auth.login"]
	id := srv.newTask(t, repo, "parent", "parent.sh", "bash")
	srv.enqueue(t, id, "q")
	srv.waitStatus(t, id, api.StatusCompleted)
	log := srv.logText(id)
	for _, want := range []string{" execute --id " + id + " ", "--from-queue", "--worker-id " + hostname(t) + ":cpu", "--cpu-only"} {
		if !strings.Contains(log, want) {
			t.Errorf("the task's parent command line lacks %q:\n%s", want, log)
		}
	}
	if n := srv.Requests()["auth.login"]; n != logins {
		t.Errorf("auth.login calls went from %d to %d while the task ran; the child should use the daemon's token", logins, n)
	}
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

// When the daemon dies at once (SIGKILL, an OOM kill), its execute child
// notices (the lifeline pipe closes), aborts the task and marks it stopped:
// no task runs on without an agent.
func TestDaemonKilledTaskStopped(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	e := newEnv(t, srv.URL).with("CLEARML_AGENT__AGENT__ABORT_GRACE_PERIOD_SEC=5")
	id := srv.newTask(t, repo, "orphan", "wait.sh", "bash")
	t.Cleanup(func() { e.killTaskGroup(id) })
	srv.enqueue(t, id, "q")
	a := startAgent(t, e, "daemon", "--queue", "q", "--cpu-only")
	waitFor(t, "task started", func() bool { return strings.Contains(srv.logText(id), "started "+id) })
	a.signal(syscall.SIGKILL)
	a.wait()
	srv.waitStatus(t, id, api.StatusStopped)
	pid := e.taskPID(id)
	waitFor(t, "the task process gone", func() bool { return pid > 0 && !alive(pid) })
}

// SIGHUP reloads clearml.conf: the next task sees the new agent.environment.
func TestSIGHUPReloadsConfig(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	e := newEnv(t, srv.URL)
	conf := filepath.Join(e.home, "clearml.conf")
	writeConf := func(foo string) {
		t.Helper()
		tmp := conf + ".tmp"
		if err := os.WriteFile(tmp, []byte("agent {\n  environment {\n    FOO: \""+foo+"\"\n  }\n}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
	}
	writeConf("one")
	a := startAgent(t, e, "daemon", "--queue", "q", "--create-queue", "--cpu-only")
	a.noteIs("READY=1")

	t1 := srv.newTask(t, repo, "before", "env.sh", "bash")
	srv.enqueue(t, t1, "q")
	srv.waitStatus(t, t1, api.StatusCompleted)
	if log := srv.logText(t1); !strings.Contains(log, "FOO=[one]") {
		t.Fatalf("first task log lacks FOO=[one]:\n%s", log)
	}

	writeConf("two")
	a.signal(syscall.SIGHUP)
	waitFor(t, "reload logged", func() bool { return strings.Contains(a.stderr.String(), "configuration reloaded") })
	t2 := srv.newTask(t, repo, "after", "env.sh", "bash")
	srv.enqueue(t, t2, "q")
	srv.waitStatus(t, t2, api.StatusCompleted)
	if log := srv.logText(t2); !strings.Contains(log, "FOO=[two]") {
		t.Errorf("task after SIGHUP lacks FOO=[two]:\n%s", log)
	}
	if a.exited() {
		t.Fatal("agent exited on SIGHUP")
	}
	a.signal(syscall.SIGINT)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d after SIGINT, want 0", code)
	}
}

// A second agent with the same worker id is refused naming the running pid;
// --status lists the running one and --stop finds it by worker id.
func TestSameWorkerIDRefusedAndStop(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e := newEnv(t, srv.URL)
	a := startAgent(t, e, "daemon", "--queue", "q", "--create-queue", "--gpus", "0", "--state-dir", e.state)
	a.noteIs("READY=1")
	wid := hostname(t) + ":gpu0"
	pid := strconv.Itoa(a.cmd.Process.Pid)

	code, _, stderr := runAgent(t, e, "daemon", "--queue", "q", "--gpus", "0", "--state-dir", e.state)
	if code != 1 {
		t.Errorf("second agent exit status %d, want 1", code)
	}
	for _, want := range []string{wid, "pid " + pid, "--stop"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("refusal lacks %q: %s", want, stderr)
		}
	}
	if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
		t.Errorf("refusal is %d lines, want one:\n%s", n+1, stderr)
	}

	code, out, stderr := runAgent(t, e, "daemon", "--status", "--state-dir", e.state)
	if code != 0 || !strings.Contains(out, wid) || !strings.Contains(out, pid) {
		t.Errorf("--status: exit %d, stdout:\n%s\nstderr:\n%s\nwant %s with pid %s", code, out, stderr, wid, pid)
	}

	code, out, stderr = runAgent(t, e, "daemon", "--stop", wid, "--state-dir", e.state)
	if code != 0 {
		t.Errorf("--stop exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if c := a.wait(); c != 0 {
		t.Errorf("stopped agent exit status %d, want 0", c)
	}
	if ids := srv.workerIDs(); len(ids) != 0 {
		t.Errorf("workers after --stop = %v, want none", ids)
	}
}

// --detached starts the agent in the background with pid and log files under
// --state-dir; --status lists it; --stop stops it.
func TestDetachedStatusStop(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e := newEnv(t, srv.URL)
	state := filepath.Join(t.TempDir(), "agent-state")
	wid := hostname(t) + ":gpu0"
	code, out, stderr := runAgent(t, e, "daemon", "--queue", "q", "--create-queue", "--gpus", "0", "--detached", "--state-dir", state)
	if code != 0 {
		t.Fatalf("--detached exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	var pid int
	t.Cleanup(func() {
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if _, err := fmtSscanPID(out, &pid); err != nil {
		t.Fatalf("--detached output has no pid: %q", out)
	}
	if !strings.Contains(out, state) {
		t.Errorf("--detached output does not name a log under %s: %q", state, out)
	}
	waitFor(t, "detached agent registered", func() bool { return slices.Contains(srv.workerIDs(), wid) })
	logs, _ := filepath.Glob(filepath.Join(state, "*.log"))
	if len(logs) != 1 {
		t.Errorf("log files under the state dir: %v, want one", logs)
	}

	code, out, _ = runAgent(t, e, "daemon", "--status", "--state-dir", state)
	if code != 0 || !strings.Contains(out, wid) || !strings.Contains(out, strconv.Itoa(pid)) {
		t.Errorf("--status exit %d:\n%s\nwant %s with pid %d", code, out, wid, pid)
	}
	code, out, stderr = runAgent(t, e, "daemon", "--stop", "--state-dir", state)
	if code != 0 {
		t.Fatalf("--stop exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if alive(pid) {
		t.Errorf("detached agent pid %d still alive after --stop", pid)
	}
	if ids := srv.workerIDs(); len(ids) != 0 {
		t.Errorf("workers after --stop = %v, want none", ids)
	}
	code, out, _ = runAgent(t, e, "daemon", "--status", "--state-dir", state)
	if code != 0 || strings.Contains(out, wid) {
		t.Errorf("--status after --stop exit %d:\n%s", code, out)
	}
}

// fmtSscanPID reads "(pid N)" from the --detached message.
func fmtSscanPID(s string, pid *int) (int, error) {
	_, rest, ok := strings.Cut(s, "(pid ")
	if !ok {
		return 0, strconv.ErrSyntax
	}
	num, _, _ := strings.Cut(rest, ")")
	n, err := strconv.Atoi(num)
	*pid = n
	return n, err
}

// alive reports whether pid runs and is not a zombie (a detached agent is
// reparented, and its new parent may reap it late).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	return ok && !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}
