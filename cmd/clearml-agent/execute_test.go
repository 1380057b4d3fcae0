package main

import (
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// execute runs a python task in a venv, prints its output and exits with
// the task's status; --clone runs a clone; an unknown id is a clear error.
func TestExecute(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	e := newEnv(t, srv.URL)

	id := srv.newTask(t, repo, "py", "main.py", "python3")
	code, out, stderr := runAgent(t, e, "execute", "--id", id)
	if code != 0 {
		t.Fatalf("execute exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, want := range []string{"hello from python " + id, "step 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
		if !strings.Contains(srv.logText(id), want) {
			t.Errorf("task log lacks %q", want)
		}
	}
	if st := srv.Task(id).Status; st != api.StatusCompleted {
		t.Errorf("status = %q, want completed", st)
	}

	t.Run("exit status", func(t *testing.T) {
		id := srv.newTask(t, repo, "py-fail", "main.py", "python3")
		code, out, stderr := runAgent(t, e.with("E2E_EXIT=3"), "execute", "--id", id)
		if code != 3 {
			t.Errorf("execute exit %d, want the task's 3\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
		}
		tk := srv.Task(id)
		if tk.Status != api.StatusFailed || tk.StatusReason != "worker execution exit code 3" {
			t.Errorf("task status %q (%q), want failed (worker execution exit code 3)", tk.Status, tk.StatusReason)
		}
	})

	t.Run("clone", func(t *testing.T) {
		src := srv.newTask(t, repo, "py-src", "main.py", "python3")
		code, out, stderr := runAgent(t, e, "execute", "--id", src, "--clone")
		if code != 0 {
			t.Fatalf("execute --clone exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
		}
		if st := srv.Task(src).Status; st != api.StatusCreated {
			t.Errorf("source task status = %q, want it left created", st)
		}
		var clone api.Task
		for _, tk := range srv.Tasks() {
			if tk.Name == "Clone of py-src" {
				clone = tk
			}
		}
		if clone.ID == "" || clone.ID == src {
			t.Fatalf("no clone of %s among the tasks", src)
		}
		if clone.Status != api.StatusCompleted {
			t.Errorf("clone status = %q, want completed", clone.Status)
		}
		if !strings.Contains(out, "hello from python "+clone.ID) {
			t.Errorf("stdout does not show the clone running:\n%s", out)
		}
	})

	t.Run("unknown id", func(t *testing.T) {
		code, _, stderr := runAgent(t, e, "execute", "--id", "0123456789abcdef0123456789abcdef")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		last := lastLine(stderr)
		if !strings.HasPrefix(last, "clearml-agent: error:") || !strings.Contains(last, "0123456789abcdef0123456789abcdef") {
			t.Errorf("last stderr line = %q, want a clear error naming the id", last)
		}
	})
}
