package venv

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A second process (here: a cleared in-memory memo) reads the probe from the
// venvs dir instead of running the interpreter again; a probe whose
// interpreter is gone is run again.
func TestProbeCachedOnDisk(t *testing.T) {
	bin := t.TempDir()
	count := filepath.Join(t.TempDir(), "count")
	py := filepath.Join(bin, "python3.99")
	script := "#!/bin/sh\necho x >> " + count + "\necho 'Python 3.99.1'\necho " + py + "\n"
	if err := os.WriteFile(py, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	work := t.TempDir()
	spec := Spec{PythonBinary: "python3.99", WorkDir: work}
	runs := func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "x")
	}
	for i := range 3 {
		probed = sync.Map{} // a new execute child
		in, err := resolve(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		if in.path != py || in.version != "3.99.1" {
			t.Fatalf("run %d: resolved %+v", i, in)
		}
	}
	if n := runs(); n != 1 {
		t.Errorf("the interpreter ran %d times for 3 resolves, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(work, probeFile)); err != nil {
		t.Errorf("no probe file in the venvs dir: %v", err)
	}
	// Damaged cache: probed again, no error.
	if err := os.WriteFile(filepath.Join(work, probeFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	probed = sync.Map{}
	if _, err := resolve(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if n := runs(); n != 2 {
		t.Errorf("after damaging the cache the interpreter ran %d times in all, want 2", n)
	}
}
