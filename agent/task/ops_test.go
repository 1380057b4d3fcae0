package task_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/task"
	"github.com/gpufleet/clearml-agent-go/internal/wheeltest"
)

// An abort with an AbortCause (the preemption drain) logs its note at once
// and marks the task stopped with its reason instead of "agent shutdown".
func TestAgentAbortWithCause(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	id := f.newTask(api.Script{EntryPoint: "run.sh", Binary: "bash",
		Diff: "trap 'echo term; exit 1' TERM\necho ready\nwhile true; do sleep 0.05; done\n"})
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	done := make(chan task.Outcome, 1)
	go func() { out, _ := task.NewRunner(f.c, f.s).Run(ctx, id, task.Options{}); done <- out }()
	f.waitLog(t, id, "ready")
	note := "clearml-agent: instance preempted (gce): stopping the task and putting it back on queue q"
	cancel(&task.AbortCause{Reason: "instance preempted (gce)", Note: note})
	out := <-done
	checkStatus(t, f, id, out, api.StatusStopped, "instance preempted (gce)")
	log := f.fullLog(id)
	if !strings.Contains(log, "WARNING "+note) {
		t.Errorf("log lacks the abort note %q:\n%s", note, log)
	}
	if got := f.output(id); got[len(got)-1] != "term" {
		t.Errorf("output %q: the task must get SIGTERM (its trap runs)", got)
	}
	if task.AbortCauseOf(t.Context()) != nil {
		t.Error("AbortCauseOf a live context is not nil")
	}
}

// A run reports its setup phases (clone, venv, pip) and what became of its
// log lines, and removes its build directory even when the task left
// read-only directories in it.
func TestPhasesLogCountsAndCleanup(t *testing.T) {
	needTools(t)
	f := newFixture(t)
	file, body := wheeltest.Build(t, "tinypkg", "1.0")
	ix := wheeltest.NewIndex(t, map[string][]byte{file: body})
	f.s.IndexURL = ix.URL + "/simple/"
	url, _, _ := gitRepo(t, map[string]string{"train.py": `import os, tinypkg
os.makedirs("ro/inner", exist_ok=True)
open("ro/inner/f", "w").write("x")
os.chmod("ro/inner", 0o500)
os.chmod("ro", 0o500)
for i in range(5):
    print("line", i)
`})
	id := f.newTask(api.Script{Repository: url, EntryPoint: "train.py", Binary: "python3",
		Requirements: &api.Requirements{Pip: "tinypkg==1.0\n"}})
	var mu sync.Mutex
	phases := map[string]time.Duration{}
	out := f.run(t, t.Context(), id, task.Options{Phase: func(p string, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := phases[p]; dup {
			t.Errorf("phase %s reported twice", p)
		}
		phases[p] = d
	}})
	checkStatus(t, f, id, out, api.StatusCompleted, "worker execution done")
	for _, p := range []string{task.PhaseClone, task.PhaseVenv, task.PhasePip} {
		if d, ok := phases[p]; !ok || d < 0 {
			t.Errorf("phase %s: %v reported=%v; want it reported", p, d, ok)
		}
	}
	// An event may carry several lines: at least one line per event.
	if ev := uint64(len(f.emu.TaskLog(id))); out.Log.Shipped < max(ev, 5) || out.Log.Dropped != 0 || out.Log.Spooled != 0 {
		t.Errorf("log counts %+v; want at least the %d events shipped, none spooled or dropped", out.Log, ev)
	}
	repos, _ := filepath.Glob(filepath.Join(f.s.VenvsDir, "task_repository", "*"))
	if len(repos) != 0 {
		t.Errorf("build directories left after the run: %v", repos)
	}
	if _, err := os.Stat(f.s.VenvsDir); err != nil {
		t.Errorf("venvs dir itself removed: %v", err)
	}
}
