package task_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/task"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
	"github.com/gpufleet/clearml-agent-go/internal/gittest"
	"github.com/gpufleet/clearml-agent-go/internal/testenv"
	"github.com/gpufleet/clearml-agent-go/internal/wheeltest"
)

const workerID = "testhost:cpu:0"

// fixture is one emulated server, a real client and runner settings.
type fixture struct {
	emu     *emulator.Server
	url     string
	c       *api.Client
	s       task.Settings
	retries *atomic.Int64 // the client's retries (api.Config.OnRetry)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	emu := emulator.New(emulator.Options{Credentials: map[string]string{"AK": "SK"}})
	srv := httptest.NewServer(emu.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(func() { emu.Close() })
	retries := new(atomic.Int64)
	c, err := api.New(api.Config{Host: srv.URL, AccessKey: "AK", SecretKey: "SK", WorkerHeader: workerID,
		RetryBaseDelay: 20 * time.Millisecond, RetryMaxDelay: 200 * time.Millisecond, MaxRetries: 20,
		OnRetry: func(string, int, error) { retries.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PIP_") && !strings.HasPrefix(kv, "CLEARML_") {
			env = append(env, kv)
		}
	}
	env = append(env, "PIP_DEFAULT_TIMEOUT=3", "PIP_NO_INPUT=1", "PIP_DISABLE_PIP_VERSION_CHECK=1",
		"PIP_CONFIG_FILE=/dev/null", "PIP_RETRIES=0")
	base := t.TempDir()
	return &fixture{emu: emu, url: srv.URL, c: c, retries: retries, s: task.Settings{
		WorkerID:     workerID,
		VenvsDir:     filepath.Join(base, "venvs"),
		Env:          env,
		AbortGrace:   2 * time.Second,
		StatusPoll:   100 * time.Millisecond,
		PingInterval: 200 * time.Millisecond,
		SpoolDir:     filepath.Join(base, "spool"),
	}}
}

func (f *fixture) run(t *testing.T, ctx context.Context, id string, o task.Options) task.Outcome {
	t.Helper()
	out, err := task.NewRunner(f.c, f.s).Run(ctx, id, o)
	if err != nil {
		t.Fatalf("Run(%s): %v", id, err)
	}
	return out
}

// output returns the task's streamed output lines (DEBUG events, which may
// carry several lines each) in order.
func (f *fixture) output(id string) []string {
	var out []string
	for _, e := range f.emu.TaskLog(id) {
		if e.Level == "DEBUG" {
			out = append(out, strings.Split(e.Msg, "\n")...)
		}
	}
	return out
}

// fullLog returns every event message joined by newlines.
func (f *fixture) fullLog(id string) string {
	var b strings.Builder
	for _, e := range f.emu.TaskLog(id) {
		b.WriteString(e.Level + " " + e.Msg + "\n")
	}
	return b.String()
}

// waitLog waits until an output line contains s.
func (f *fixture) waitLog(t *testing.T, id, s string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(f.fullLog(id), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("task %s never logged %q; log:\n%s", id, s, f.fullLog(id))
}

// userStop aborts the task as the web UI does while a worker runs it: the
// worker's status report marks it run by the worker, so tasks.stop leaves it
// in_progress with status_message "stopping".
func (f *fixture) userStop(t *testing.T, id string) {
	t.Helper()
	if _, err := f.emu.Call("workers.status_report", map[string]any{"worker": workerID,
		"timestamp": time.Now().UnixMilli(), "task": id}); err != nil {
		t.Fatal(err)
	}
	if err := f.emu.Stop(id); err != nil {
		t.Fatal(err)
	}
	if got := f.emu.Task(id); got.Status != api.StatusInProgress || got.StatusMessage != "stopping" {
		t.Fatalf("after tasks.stop: status %q message %q, want in_progress/stopping", got.Status, got.StatusMessage)
	}
}

func checkStatus(t *testing.T, f *fixture, id string, out task.Outcome, status, reason string) {
	t.Helper()
	got := f.emu.Task(id)
	if got.Status != status || !strings.Contains(got.StatusReason, reason) {
		t.Errorf("server status %q reason %q; want %q reason containing %q\nlog:\n%s", got.Status, got.StatusReason, status, reason, f.fullLog(id))
	}
	if out.Status != status && !(status == got.Status && out.Status == "") {
		t.Errorf("Outcome.Status = %q, want %q", out.Status, status)
	}
	if !strings.Contains(out.Reason, reason) {
		t.Errorf("Outcome.Reason = %q, want it to contain %q", out.Reason, reason)
	}
}

func needTools(t *testing.T) {
	t.Helper()
	testenv.Need(t, "git", "python3", "bash")
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// gitRepo makes a repository with files committed on master and returns its
// file:// URL, its directory and the commit.
func gitRepo(t *testing.T, files map[string]string) (url, dir, commit string) {
	t.Helper()
	dir = gittest.Repo(t, "master", files)
	return "file://" + dir, dir, gittest.Git(t, dir, "rev-parse", "HEAD")
}

func (f *fixture) newTask(sc api.Script) string {
	return f.emu.CreateTask(api.Task{Name: "test task", Script: &sc})
}

func TestCompleted(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	url, _, commit := gitRepo(t, map[string]string{
		"train.py": "import sys\nfor i in range(50):\n    print('line', i)\nprint('to stderr', file=sys.stderr)\n",
	})
	id := f.newTask(api.Script{Repository: url, Branch: "master", EntryPoint: "train.py", Binary: "python3"})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if out.TaskID != id || !out.Exit.Success() {
		t.Errorf("outcome %+v", out)
	}
	var want []string
	for i := range 50 {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	want = append(want, "to stderr")
	if diff := cmp.Diff(want, f.output(id)); diff != "" {
		t.Errorf("task output (-want +got):\n%s", diff)
	}
	log := f.fullLog(id)
	for _, s := range []string{"Executing task id [" + id + "]", "repository = " + url, "entry_point = train.py",
		"creating venv", "Starting Task Execution"} {
		if !strings.Contains(log, s) {
			t.Errorf("setup line %q missing from the log:\n%s", s, log)
		}
	}
	for _, e := range f.emu.TaskLog(id) {
		if e.Worker != workerID || e.Task != id || e.Type != "log" {
			t.Errorf("event %+v: want worker %s task %s type log", e, workerID, id)
			break
		}
	}
	if got := f.emu.Task(id); got.Script == nil || got.Script.VersionNum != commit {
		t.Errorf("script.version_num not stored: %+v, want %s", got.Script, commit)
	}
}

// A progress line without '\n' reaches the log while the task still runs.
func TestPartialLineReachesLog(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	f.s.PartialLineAfter = 100 * time.Millisecond
	url, _, _ := gitRepo(t, map[string]string{"bar.sh": "printf 'progress 50%%'\nsleep 5\necho ' done'\n"})
	id := f.newTask(api.Script{Repository: url, EntryPoint: "bar.sh", Binary: "/bin/bash"})
	done := make(chan task.Outcome, 1)
	start := time.Now()
	go func() { out, _ := task.NewRunner(f.c, f.s).Run(t.Context(), id, task.Options{}); done <- out }()
	f.waitLog(t, id, "progress 50%")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the partial line reached the log after %s, want it while the task sleeps (5 s); log:\n%s", d, f.fullLog(id))
	}
	out := <-done
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if diff := cmp.Diff([]string{"progress 50%", " done"}, f.output(id)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestExitCodeFails(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	url, _, _ := gitRepo(t, map[string]string{"fail.py": "print('bye')\nraise SystemExit(3)\n"})
	id := f.newTask(api.Script{Repository: url, EntryPoint: "fail.py", Binary: "python3"})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusFailed, "worker execution exit code 3")
	if out.Exit.Code != 3 {
		t.Errorf("exit code %d, want 3", out.Exit.Code)
	}
}

func TestBashEntryPoint(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	url, _, _ := gitRepo(t, map[string]string{"sub/run.sh": "echo \"bash in $(basename $PWD)\"\necho arg-less\n"})
	id := f.newTask(api.Script{Repository: url, EntryPoint: "run.sh", WorkingDir: "sub", Binary: "/bin/bash"})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if diff := cmp.Diff([]string{"bash in sub", "arg-less"}, f.output(id)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if strings.Contains(f.fullLog(id), "creating venv") {
		t.Error("a bash task built a venv")
	}
}

func TestModuleEntryPoint(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	url, _, _ := gitRepo(t, map[string]string{
		"pkg/__init__.py": "",
		"pkg/hello.py":    "import sys\nprint('module', sys.argv[1:])\n",
	})
	id := f.newTask(api.Script{Repository: url, EntryPoint: "-m pkg.hello a 'b c'", Binary: "python3"})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if diff := cmp.Diff([]string{"module ['a', 'b c']"}, f.output(id)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestLiteralScript(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	id := f.newTask(api.Script{EntryPoint: "script.py", Binary: "python3", Diff: "print('literal script')\n"})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if diff := cmp.Diff([]string{"literal script"}, f.output(id)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestGitDiffApplied(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	url, dir, _ := gitRepo(t, map[string]string{"train.py": "print('committed')\n"})
	writeFiles(t, dir, map[string]string{"train.py": "print('uncommitted change')\n"})
	diff := gittest.Git(t, dir, "diff") + "\n"
	writeFiles(t, dir, map[string]string{"train.py": "print('committed')\n"})

	id := f.newTask(api.Script{Repository: url, EntryPoint: "train.py", Binary: "python3", Diff: diff})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if d := cmp.Diff([]string{"uncommitted change"}, f.output(id)); d != "" {
		t.Errorf("output (-want +got):\n%s", d)
	}
}

func TestSetupFailures(t *testing.T) {
	needTools(t)
	url, dir, _ := gitRepo(t, map[string]string{"train.py": "print('hi')\n"})
	badDiff := "diff --git a/other.py b/other.py\n--- a/other.py\n+++ b/other.py\n@@ -1 +1 @@\n-print('not there')\n+print('x')\n"
	cases := []struct {
		name   string
		script api.Script
		reason []string // substrings of the failure reason
	}{
		{"entry point missing", api.Script{Repository: url, EntryPoint: "missing.py", Binary: "python3"},
			[]string{"invalid entry point", "missing.py", "not found"}},
		{"repository does not exist", api.Script{Repository: "file://" + filepath.Join(dir, "nope"), EntryPoint: "train.py"},
			[]string{"failed cloning repository: ", "nope"}},
		{"commit does not exist", api.Script{Repository: url, VersionNum: strings.Repeat("ab", 20), EntryPoint: "train.py"},
			[]string{"failed cloning repository", "commit " + strings.Repeat("ab", 20) + " not found"}},
		{"diff does not apply", api.Script{Repository: url, EntryPoint: "train.py", Diff: badDiff},
			[]string{"failed applying git diff"}},
		{"working dir missing", api.Script{Repository: url, EntryPoint: "train.py", WorkingDir: "nodir"},
			[]string{"working directory \"nodir\" not found"}},
		{"python not installed", api.Script{Repository: url, EntryPoint: "train.py", Binary: "python2.6"},
			[]string{"failed setting up the python environment", "python 2.6 is not installed"}},
		{"no entry point", api.Script{Repository: url, Binary: "python3"},
			[]string{"no entry point"}},
	}
	f := newFixture(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := f.newTask(tc.script)
			out := f.run(t, t.Context(), id, task.Options{})
			got := f.emu.Task(id)
			if got.Status != api.StatusFailed || out.Status != api.StatusFailed {
				t.Fatalf("status %q (outcome %q), want failed; log:\n%s", got.Status, out.Status, f.fullLog(id))
			}
			for _, s := range tc.reason {
				if !strings.Contains(got.StatusReason, s) {
					t.Errorf("status_reason %q does not contain %q", got.StatusReason, s)
				}
			}
			if strings.Contains(got.StatusReason, "\n") {
				t.Errorf("status_reason has several lines: %q", got.StatusReason)
			}
			// the user sees the reason in the task log
			if log := f.fullLog(id); !strings.Contains(log, "ERROR "+got.StatusReason) {
				t.Errorf("the failure reason is not in the task log:\n%s", log)
			}
		})
	}
}

// emptyIndex is a package index that knows no package.
func emptyIndex(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	return srv.URL + "/simple/"
}

func TestPipRequirementNotFound(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	f.s.IndexURL = emptyIndex(t)
	url, _, _ := gitRepo(t, map[string]string{"train.py": "print('hi')\n"})
	id := f.newTask(api.Script{Repository: url, EntryPoint: "train.py", Binary: "python3",
		Requirements: &api.Requirements{Pip: "no-such-package-xyz==1.2.3\n"}})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusFailed, "failed setting up the python environment")
	got := f.emu.Task(id)
	if !strings.Contains(got.StatusReason, "no-such-package-xyz") {
		t.Errorf("status_reason %q does not name the requirement", got.StatusReason)
	}
	if len(f.output(id)) != 0 {
		t.Errorf("the task ran: %q", f.output(id))
	}
}

// slowIndex is a package index that answers nothing until the test ends; it
// signals on hit when pip asks.
func slowIndex(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	hit := make(chan struct{}, 100)
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hit <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.URL + "/simple/", hit
}

func TestUserAbortWhileInstalling(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	var hit <-chan struct{}
	f.s.IndexURL, hit = slowIndex(t)
	f.s.Env = append(f.s.Env, "PIP_DEFAULT_TIMEOUT=300")
	url, _, _ := gitRepo(t, map[string]string{"train.py": "print('hi')\n"})
	id := f.newTask(api.Script{Repository: url, EntryPoint: "train.py", Binary: "python3",
		Requirements: &api.Requirements{Pip: "slowpkg==1.0\n"}})
	done := make(chan task.Outcome, 1)
	go func() { out, _ := task.NewRunner(f.c, f.s).Run(t.Context(), id, task.Options{}); done <- out }()
	select {
	case <-hit:
	case out := <-done:
		t.Fatalf("run ended before pip asked the index: %+v\n%s", out, f.fullLog(id))
	}
	f.userStop(t, id)
	out := <-done
	checkStatus(t, f, id, out, api.StatusStopped, "task was stopped by tasks.stop")
	if len(f.output(id)) != 0 {
		t.Errorf("the task ran: %q", f.output(id))
	}
}

func TestAgentAbortWhileInstalling(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	var hit <-chan struct{}
	f.s.IndexURL, hit = slowIndex(t)
	f.s.Env = append(f.s.Env, "PIP_DEFAULT_TIMEOUT=300")
	id := f.newTask(api.Script{EntryPoint: "t.py", Diff: "print('hi')\n", Binary: "python3",
		Requirements: &api.Requirements{Pip: "slowpkg==1.0\n"}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan task.Outcome, 1)
	go func() { out, _ := task.NewRunner(f.c, f.s).Run(ctx, id, task.Options{}); done <- out }()
	<-hit
	cancel()
	out := <-done
	checkStatus(t, f, id, out, api.StatusStopped, "aborted by clearml-agent "+workerID)
}

// hangingGitServer accepts the clone's first request and never answers it.
func hangingGitServer(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	url, hit := slowIndex(t)
	return strings.TrimSuffix(url, "/simple/") + "/repo.git", hit
}

func TestUserAbortWhileCloning(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	url, hit := hangingGitServer(t)
	id := f.newTask(api.Script{Repository: url, EntryPoint: "train.py", Binary: "python3"})
	done := make(chan task.Outcome, 1)
	go func() { out, _ := task.NewRunner(f.c, f.s).Run(t.Context(), id, task.Options{}); done <- out }()
	<-hit
	f.userStop(t, id)
	out := <-done
	checkStatus(t, f, id, out, api.StatusStopped, "task was stopped by tasks.stop")
	if log := f.fullLog(id); !strings.Contains(log, "User aborted: stopping task") {
		t.Errorf("no abort line in the log:\n%s", log)
	}
}

func TestUserAbortRunningTask(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	url, _, _ := gitRepo(t, map[string]string{"run.sh": "trap 'echo got SIGTERM; exit 0' TERM\necho ready\nwhile true; do sleep 0.05; done\n"})
	id := f.newTask(api.Script{Repository: url, EntryPoint: "run.sh", Binary: "bash"})
	done := make(chan task.Outcome, 1)
	go func() { out, _ := task.NewRunner(f.c, f.s).Run(t.Context(), id, task.Options{}); done <- out }()
	f.waitLog(t, id, "ready")
	f.userStop(t, id)
	out := <-done
	checkStatus(t, f, id, out, api.StatusStopped, "task was stopped by tasks.stop")
	// bash may report its killed sleep ("Terminated") before the trap runs
	if got := f.output(id); got[0] != "ready" || got[len(got)-1] != "got SIGTERM" {
		t.Errorf("output %q: the trap must run", got)
	}
	if !out.Exit.Terminated || out.Exit.Signal != 0 {
		t.Errorf("exit %v: want a terminated process that exited from its trap", out.Exit)
	}
}

func TestAbortKillsChildIgnoringSIGTERM(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	f.s.AbortGrace = 300 * time.Millisecond
	id := f.newTask(api.Script{EntryPoint: "run.sh", Binary: "bash",
		Diff: "trap '' TERM\necho ready\nwhile true; do sleep 0.05; done\n"})
	done := make(chan task.Outcome, 1)
	go func() { out, _ := task.NewRunner(f.c, f.s).Run(t.Context(), id, task.Options{}); done <- out }()
	f.waitLog(t, id, "ready")
	f.userStop(t, id)
	out := <-done
	checkStatus(t, f, id, out, api.StatusStopped, "task was stopped by tasks.stop")
	if out.Exit.Signal != syscall.SIGKILL {
		t.Errorf("exit %v, want killed by SIGKILL", out.Exit)
	}
}

func TestAgentAbortRunningTask(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	id := f.newTask(api.Script{EntryPoint: "run.sh", Binary: "bash",
		Diff: "trap 'echo term; exit 1' TERM\necho ready\nwhile true; do sleep 0.05; done\n"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan task.Outcome, 1)
	go func() { out, _ := task.NewRunner(f.c, f.s).Run(ctx, id, task.Options{}); done <- out }()
	f.waitLog(t, id, "ready")
	cancel()
	out := <-done
	checkStatus(t, f, id, out, api.StatusStopped, "aborted by clearml-agent "+workerID)
	if got := f.output(id); got[0] != "ready" || got[len(got)-1] != "term" {
		t.Errorf("output %q: the trap must run", got)
	}
}

func TestResetByOtherLeftAlone(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	id := f.newTask(api.Script{EntryPoint: "run.sh", Binary: "bash",
		Diff: "echo ready\nwhile true; do sleep 0.05; done\n"})
	done := make(chan task.Outcome, 1)
	go func() { out, _ := task.NewRunner(f.c, f.s).Run(t.Context(), id, task.Options{}); done <- out }()
	f.waitLog(t, id, "ready")
	if _, err := f.emu.Call("tasks.reset", map[string]any{"task": id}); err != nil {
		t.Fatal(err)
	}
	out := <-done
	if out.Status != "" {
		t.Errorf("Outcome.Status = %q, want \"\" (left alone)", out.Status)
	}
	if got := f.emu.Task(id); got.Status != api.StatusCreated {
		t.Errorf("server status %q, want created (the agent must not overwrite a reset)", got.Status)
	}
	if log := f.fullLog(id); !strings.Contains(log, "was reset! (1/4)") {
		t.Errorf("no reset warning in the log:\n%s", log)
	}
}

func TestServerDownMidTask(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	const n = 300
	id := f.newTask(api.Script{EntryPoint: "t.py", Binary: "python3",
		Diff: fmt.Sprintf("import time\nfor i in range(%d):\n    print('line', i)\n    time.sleep(0.005 if i != 10 else 0.5)\n", n)})
	done := make(chan task.Outcome, 1)
	go func() { out, _ := task.NewRunner(f.c, f.s).Run(t.Context(), id, task.Options{}); done <- out }()
	f.waitLog(t, id, "line 5")
	for _, mode := range []emulator.OutageMode{emulator.Outage503, emulator.OutageReset} {
		f.emu.SetOutage(mode)
		time.Sleep(700 * time.Millisecond)
	}
	f.emu.SetOutage(emulator.OutageNone)
	out := <-done
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	if diff := cmp.Diff(want, f.output(id)); diff != "" {
		t.Errorf("lines lost, duplicated or reordered (-want +got):\n%s", diff)
	}
	if st := f.emu.Requests(); st["events.add_batch"] < 2 {
		t.Errorf("events.add_batch called %d times", st["events.add_batch"])
	}
	if f.retries.Load() == 0 {
		t.Error("no request was retried during the outage; the task cannot have ridden it out")
	}
}

func TestBinaryJunkAndHugeLine(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	const huge = 1<<20 + 12345
	id := f.newTask(api.Script{EntryPoint: "t.py", Binary: "python3", Diff: fmt.Sprintf(
		"import sys\nsys.stdout.buffer.write(b'junk\\x00\\xff\\xfe\\x80end\\n')\nsys.stdout.write('x' * %d + '\\n')\nprint('after')\n", huge)})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	var lines []string
	for _, e := range f.emu.TaskLog(id) {
		if e.Level == "DEBUG" {
			lines = append(lines, e.Msg)
		}
	}
	if len(lines) < 3 {
		t.Fatalf("only %d output events", len(lines))
	}
	xs := 0
	for _, l := range lines {
		if !utf8.ValidString(l) {
			t.Errorf("invalid UTF-8 in the log: %q", l)
		}
		if len(l) > 64<<10 {
			t.Errorf("event of %d bytes, over the 64 KiB message limit", len(l))
		}
		xs += strings.Count(l, "x")
	}
	text := strings.Join(lines, "")
	if !strings.HasPrefix(text, "junk") || !strings.Contains(text, "endxxx") {
		t.Errorf("output starts %.40q", text)
	}
	if xs != huge {
		t.Errorf("%d of %d bytes of the long line arrived", xs, huge)
	}
	if !strings.HasSuffix(text, "xafter") && !strings.HasSuffix(text, "x\nafter") {
		t.Errorf("output ends %q, want ...xafter", text[max(0, len(text)-20):])
	}
}

func TestEnvironment(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	f.s.ExtraEnv = map[string]string{"CUDA_VISIBLE_DEVICES": "0,1", "NVIDIA_VISIBLE_DEVICES": "0,1"}
	f.s.ConfigFile = "/etc/clearml.conf"
	f.s.Env = append(f.s.Env, "PYTHONPATH=/should/be/removed")
	keys := []string{"CLEARML_TASK_ID", "CLEARML_WORKER_ID", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
		"PYTHONUNBUFFERED", "CLEARML_CONFIG_FILE", "CLEARML_LOG_TASK_TO_BACKEND", "PYTHONPATH"}
	id := f.newTask(api.Script{EntryPoint: "env.py", Binary: "python3", Diff: fmt.Sprintf(
		"import os, sys\nfor k in %q.split():\n    print(k + '=' + os.environ.get(k, '<unset>'))\nprint('venv', sys.prefix != sys.base_prefix)\n",
		strings.Join(keys, " "))})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	want := []string{"CLEARML_TASK_ID=" + id, "CLEARML_WORKER_ID=" + workerID, "CUDA_VISIBLE_DEVICES=0,1",
		"NVIDIA_VISIBLE_DEVICES=0,1", "PYTHONUNBUFFERED=1", "CLEARML_CONFIG_FILE=/etc/clearml.conf",
		"CLEARML_LOG_TASK_TO_BACKEND=0", "PYTHONPATH=<unset>", "venv True"}
	if diff := cmp.Diff(want, f.output(id)); diff != "" {
		t.Errorf("environment (-want +got):\n%s", diff)
	}
}

func TestExecuteClone(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	id := f.newTask(api.Script{EntryPoint: "t.py", Binary: "python3", Diff: "import os\nprint(os.environ['CLEARML_TASK_ID'])\n"})
	out := f.run(t, t.Context(), id, task.Options{Clone: true})
	if out.TaskID == id || out.TaskID == "" {
		t.Fatalf("Outcome.TaskID = %q, want a new task", out.TaskID)
	}
	checkStatus(t, f, out.TaskID, out, api.StatusCompleted, "worker execution done")
	if diff := cmp.Diff([]string{out.TaskID}, f.output(out.TaskID)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if got := f.emu.Task(id); got.Status != api.StatusCreated {
		t.Errorf("the original task is %q, want it untouched (created)", got.Status)
	}
	if got := f.emu.Task(out.TaskID); got.Name != "Clone of test task" {
		t.Errorf("clone name %q", got.Name)
	}
}

func TestExecuteQueuedTaskIsDequeued(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	q := f.emu.CreateQueue("default")
	id := f.newTask(api.Script{EntryPoint: "t.sh", Binary: "bash", Diff: "echo queued run\n"})
	if err := f.emu.Enqueue(id, q); err != nil {
		t.Fatal(err)
	}
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if qq, _ := f.emu.Queue(q); len(qq.Entries) != 0 {
		t.Errorf("queue still holds %v", qq.Entries)
	}
}

func TestPing(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	f.s.PingInterval = 50 * time.Millisecond
	id := f.newTask(api.Script{EntryPoint: "t.sh", Binary: "bash", Diff: "sleep 0.6\necho done\n"})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if n := f.emu.Requests()["tasks.ping"]; n == 0 {
		t.Error("no tasks.ping while the task ran")
	}
}

func TestUnknownTask(t *testing.T) {
	f := newFixture(t)
	_, err := task.NewRunner(f.c, f.s).Run(t.Context(), "no-such-task", task.Options{})
	if err == nil || !strings.Contains(err.Error(), "no-such-task") {
		t.Errorf("Run(unknown task) = %v, want an error naming the task", err)
	}
}

func TestRequirementsInstalledAndReported(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	file, body := wheeltest.Build(t, "tinypkg", "1.0")
	ix := wheeltest.NewIndex(t, map[string][]byte{file: body})
	f.s.IndexURL = ix.URL + "/simple/"
	url, _, _ := gitRepo(t, map[string]string{"train.py": "import tinypkg\nprint('value', tinypkg.VALUE)\n"})
	id := f.newTask(api.Script{Repository: url, EntryPoint: "train.py", Binary: "python3",
		Requirements: &api.Requirements{Pip: "tinypkg==1.0\n"}})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if got := strings.Join(f.output(id), "\n"); !strings.Contains(got, "value 42") {
		t.Errorf("task output %q lacks the installed package's value", got)
	}
	req := f.emu.Task(id).Script.Requirements
	if req == nil || !strings.Contains(req.Pip, "tinypkg==1.0") || req.OrgPip != "tinypkg==1.0\n" {
		t.Errorf("requirements after the run = %+v; want the freeze in pip and the request kept in org_pip", req)
	}
}

// TestServerDownAtTheEnd: the server fails tasks.completed for longer than
// the client's own retries; the final status still arrives once it answers.
func TestServerDownAtTheEnd(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	var refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "tasks.completed") && refused.Add(1) <= 4 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		f.emu.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := api.New(api.Config{Host: srv.URL, AccessKey: "AK", SecretKey: "SK", WorkerHeader: workerID,
		RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 20 * time.Millisecond, MaxRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	id := f.newTask(api.Script{EntryPoint: "t.sh", Binary: "bash", Diff: "echo start\necho end\n"})
	out, err := task.NewRunner(c, f.s).Run(t.Context(), id, task.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if n := refused.Load(); n <= 4 {
		t.Errorf("tasks.completed was tried %d times; want more than the 4 refusals", n)
	}
}
