package task_test

import (
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/task"
	"github.com/gpufleet/clearml-agent-go/agent/worker"
	"github.com/gpufleet/clearml-agent-go/internal/wheeltest"
)

// tinyIndex serves tinypkg==1.0 and otherpkg==1.0 and sets it as the
// fixture's index.
func (f *fixture) tinyIndex(t *testing.T) {
	t.Helper()
	wheels := map[string][]byte{}
	for _, name := range []string{"tinypkg", "otherpkg"} {
		file, body := wheeltest.Build(t, name, "1.0")
		wheels[file] = body
	}
	f.s.IndexURL = wheeltest.NewIndex(t, wheels).URL + "/simple/"
}

// TestRepoRequirementsTxt: a task that stores no requirements installs the
// repository's requirements.txt, the working dir's before the root's, with
// -r and -e resolved against the file's directory.
func TestRepoRequirementsTxt(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	f.tinyIndex(t)
	files := map[string]string{
		"requirements.txt":     "otherpkg==1.0\n",
		"sub/requirements.txt": "-r base.txt\n-e ./lib\n",
		"sub/base.txt":         "tinypkg==1.0\n",
		"sub/train.py":         "import importlib.util, tinypkg, libpkg\nprint(tinypkg.VALUE, libpkg.VALUE, importlib.util.find_spec('otherpkg') is not None)\n",
		"other/train.py":       "import otherpkg, importlib.util\nprint('other', importlib.util.find_spec('tinypkg') is not None)\n",
	}
	maps.Copy(files, wheeltest.Project("sub/lib/", "libpkg", "1.0", "lib"))
	url, _, _ := gitRepo(t, files)

	id := f.newTask(api.Script{Repository: url, EntryPoint: "train.py", WorkingDir: "sub", Binary: "python3"})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if got := strings.Join(f.output(id), "\n"); got != "42 lib False" {
		t.Errorf("output %q, want the working dir's requirements only", got)
	}
	if log := f.fullLog(id); !strings.Contains(log, "The task stores no requirements: using the repository's sub/requirements.txt") {
		t.Errorf("no line naming the requirements file:\n%s", log)
	}
	req := f.emu.Task(id).Script.Requirements
	if req == nil || !strings.Contains(req.Pip, "tinypkg==1.0") || req.OrgPip != files["sub/requirements.txt"] {
		t.Errorf("requirements after the run = %+v; want the freeze in pip and the file in org_pip", req)
	}

	// No requirements.txt in the working dir: the repository root's.
	id = f.newTask(api.Script{Repository: url, EntryPoint: "train.py", WorkingDir: "other", Binary: "python3"})
	out = f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if got := strings.Join(f.output(id), "\n"); got != "other False" {
		t.Errorf("output %q, want the root's requirements only", got)
	}
}

func TestForceRepoRequirementsTxt(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	f.tinyIndex(t)
	f.s.ForceRepoRequirements = true
	url, _, _ := gitRepo(t, map[string]string{"requirements.txt": "tinypkg==1.0\n", "train.py": "import tinypkg\nprint(tinypkg.VALUE)\n"})
	id := f.newTask(api.Script{Repository: url, EntryPoint: "train.py", Binary: "python3",
		Requirements: &api.Requirements{Pip: "no-such-package==1.0\n"}})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if got := strings.Join(f.output(id), "\n"); got != "42" {
		t.Errorf("output %q", got)
	}
	if log := f.fullLog(id); !strings.Contains(log, "force_repo_requirements_txt: using the repository's requirements.txt instead of the task's requirements") {
		t.Errorf("no force_repo_requirements_txt line:\n%s", log)
	}
	if req := f.emu.Task(id).Script.Requirements; req.OrgPip != "no-such-package==1.0\n" {
		t.Errorf("org_pip = %q, want the stored request kept", req.OrgPip)
	}
}

// TestBadRequirementThenNextTask: a requirements.txt line pip rejects fails
// the task with pip's own line, and the daemon goes on to the next task.
func TestBadRequirementThenNextTask(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	f.tinyIndex(t)
	badURL, _, _ := gitRepo(t, map[string]string{"requirements.txt": "tinypkg==1.0\nthis is not valid!!\n", "train.py": "print('ran')\n"})
	goodURL, _, _ := gitRepo(t, map[string]string{"requirements.txt": "tinypkg==1.0\n", "train.py": "import tinypkg\nprint('good', tinypkg.VALUE)\n"})
	q := f.emu.CreateQueue("default")
	bad := f.newTask(api.Script{Repository: badURL, EntryPoint: "train.py", Binary: "python3"})
	good := f.newTask(api.Script{Repository: goodURL, EntryPoint: "train.py", Binary: "python3"})
	for _, id := range []string{bad, good} {
		if err := f.emu.Enqueue(id, q); err != nil {
			t.Fatal(err)
		}
	}
	runner := task.NewRunner(f.c, f.s)
	d := worker.New(f.c, worker.Config{WorkerID: workerID, Queues: []string{"default"}, PollInterval: 50 * time.Millisecond,
		ReportInterval: time.Hour, Runner: runner, Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	done := make(chan error, 1)
	go func() { done <- d.Run(t.Context()) }()
	deadline := time.Now().Add(3 * time.Minute)
	for f.emu.Task(good).Status != api.StatusCompleted && f.emu.Task(good).Status != api.StatusFailed {
		if time.Now().After(deadline) {
			t.Fatalf("the second task did not finish; bad %q good %q\n%s", f.emu.Task(bad).Status, f.emu.Task(good).Status, f.fullLog(bad))
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.Drain()
	if err := <-done; err != nil {
		t.Errorf("daemon: %v", err)
	}

	const pipLine = "ERROR: Invalid requirement: 'this is not valid!!' (from line 2 of requirements.txt)"
	got := f.emu.Task(bad)
	if got.Status != api.StatusFailed || !strings.Contains(got.StatusReason, pipLine) || strings.Contains(got.StatusReason, "\n") {
		t.Errorf("bad task: status %q reason %q; want failed with %q", got.Status, got.StatusReason, pipLine)
	}
	if !f.logLine(bad, pipLine) {
		t.Errorf("pip's line is not in the task log:\n%s", f.fullLog(bad))
	}
	if len(f.output(bad)) != 0 {
		t.Errorf("the bad task ran: %q", f.output(bad))
	}
	if got := f.emu.Task(good); got.Status != api.StatusCompleted {
		t.Errorf("next task: status %q reason %q\n%s", got.Status, got.StatusReason, f.fullLog(good))
	}
	if out := strings.Join(f.output(good), "\n"); out != "good 42" {
		t.Errorf("next task output %q", out)
	}
}

func TestPriorityPackageMissing(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	f.tinyIndex(t)
	f.s.PriorityPackages = []string{"cython", "no-such-priority"}
	id := f.newTask(api.Script{EntryPoint: "t.py", Diff: "print('ran')\n", Binary: "python3",
		Requirements: &api.Requirements{Pip: "tinypkg==1.0\nno-such-priority==1.0\n"}})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusFailed,
		`failed setting up the python environment: priority package "no-such-priority==1.0" (agent.package_manager.priority_packages) could not be installed: ERROR: No matching distribution found for no-such-priority==1.0`)
	if len(f.output(id)) != 0 {
		t.Errorf("the task ran: %q", f.output(id))
	}
}

func TestPipVersionSetting(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	file, body := wheeltest.SystemWheel(t, "pip")
	version := strings.Split(file, "-")[1]
	tiny, tinyBody := wheeltest.Build(t, "tinypkg", "1.0")
	f.s.IndexURL = wheeltest.NewIndex(t, map[string][]byte{file: body, tiny: tinyBody}).URL + "/simple/"
	f.s.PipVersion = []string{"==" + version}
	id := f.newTask(api.Script{EntryPoint: "t.py", Diff: "import pip\nprint(pip.__version__)\n", Binary: "python3",
		Requirements: &api.Requirements{Pip: "tinypkg==1.0\n"}})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if got := strings.Join(f.output(id), "\n"); got != version {
		t.Errorf("pip in the task's venv is %q, want %s", got, version)
	}
}

func TestUVNotInstalled(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	f.s.PackageManager = "uv"
	f.s.Env = append(f.s.Env, "PATH="+t.TempDir())
	id := f.newTask(api.Script{EntryPoint: "t.py", Diff: "print('ran')\n", Binary: "python3",
		Requirements: &api.Requirements{Pip: "tinypkg==1.0\n"}})
	start := time.Now()
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusFailed,
		"failed setting up the python environment: agent.package_manager.type is uv but no uv executable is on PATH; install uv or set agent.package_manager.type to pip")
	if log := f.fullLog(id); strings.Contains(log, "creating venv") {
		t.Errorf("a venv was built before failing:\n%s", log)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v to fail", d)
	}
}

func TestPoetryProjectTask(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	f.tinyIndex(t)
	f.s.PackageManager = "poetry"
	f.s.Env = append(f.s.Env, wheeltest.PoetryEnv(t)...)
	proj := t.TempDir()
	wheeltest.PoetryProject(t, proj, "app", f.s.IndexURL, map[string]string{"tinypkg": "1.0"})
	files := map[string]string{"train.py": "import app, tinypkg\nprint(app.VALUE, tinypkg.VALUE)\n"}
	for _, name := range []string{"pyproject.toml", "poetry.lock", "app/__init__.py"} {
		b, err := os.ReadFile(filepath.Join(proj, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	url, _, _ := gitRepo(t, files)
	id := f.newTask(api.Script{Repository: url, EntryPoint: "train.py", Binary: "python3"})
	out := f.run(t, t.Context(), id, task.Options{})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	if got := strings.Join(f.output(id), "\n"); got != "poetry app 42" {
		t.Errorf("output %q", got)
	}
	if req := f.emu.Task(id).Script.Requirements; req == nil || !strings.Contains(req.Pip, "tinypkg==1.0") {
		t.Errorf("requirements after the run = %+v; want the freeze", req)
	}
}

// logLine reports whether a line of the task's log (any event; one event
// may carry several lines) is exactly line.
func (f *fixture) logLine(id, line string) bool {
	for _, e := range f.emu.TaskLog(id) {
		for _, l := range strings.Split(e.Msg, "\n") {
			if l == line {
				return true
			}
		}
	}
	return false
}
