package venv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"
	"github.com/gpufleet/clearml-agent-go/internal/wheeltest"
)

func needPython(t *testing.T) {
	t.Helper()
	testenv.Need(t, "python3")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestEnsureNoRequirements(t *testing.T) {
	needPython(t)
	work := t.TempDir()
	var logs []string
	env, err := Ensure(t.Context(), Spec{PythonBinary: "python3", WorkDir: work, CacheDir: t.TempDir(), Env: wheeltest.PipEnv},
		func(s string) { logs = append(logs, s) })
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(work, majorMinor(env.Version)); env.Dir != want {
		t.Errorf("Dir = %s, want %s", env.Dir, want)
	}
	if got := run(t, env.Python, "-c", "import sys; print(sys.prefix)"); got != env.Dir {
		t.Errorf("sys.prefix = %s, want %s", got, env.Dir)
	}
	if _, err := os.Stat(filepath.Join(env.Dir, "bin", "pip")); !os.IsNotExist(err) {
		t.Errorf("fast path installed pip (stat err %v)", err)
	}
	for _, l := range logs {
		if strings.Contains(l, "installing") {
			t.Errorf("fast path ran pip: %q", logs)
		}
	}
	frozen, err := Freeze(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	if frozen != "" {
		t.Errorf("Freeze of an empty venv = %q, want empty", frozen)
	}
}

func TestEnsureInstallAndCache(t *testing.T) {
	needPython(t)
	file, whl := wheeltest.Build(t, "tinypkg", "1.0")
	ix := wheeltest.NewIndex(t, map[string][]byte{file: whl})
	cache := t.TempDir()
	spec := Spec{
		PythonBinary: "python3",
		Requirements: "# a comment\ntinypkg==1.0\n",
		IndexURL:     ix.URL + "/simple/",
		WorkDir:      t.TempDir(),
		CacheDir:     cache,
		Env:          wheeltest.PipEnv,
	}
	env, err := Ensure(t.Context(), spec, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, env.Python, "-c", "import tinypkg; print(tinypkg.VALUE)"); got != "42" {
		t.Errorf("import tinypkg = %q", got)
	}
	frozen, err := Freeze(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(frozen, "tinypkg==1.0") {
		t.Errorf("Freeze = %q, want tinypkg==1.0 in it", frozen)
	}

	// Second task, other venvs dir, same requirements in another order and
	// with other comments: served from the cache, pip never asked.
	hitsBefore := ix.Hits()
	spec2 := spec
	spec2.WorkDir = t.TempDir()
	spec2.Requirements = "tinypkg==1.0  # pinned\n"
	var logs []string
	env2, err := Ensure(t.Context(), spec2, func(s string) { logs = append(logs, s) })
	if err != nil {
		t.Fatal(err)
	}
	if n := ix.Hits() - hitsBefore; n != 0 {
		t.Errorf("cache hit still queried the index %d times; logs %q", n, logs)
	}
	joined := strings.Join(logs, "\n")
	if !strings.Contains(joined, "reused cached venv") || strings.Contains(joined, "installing requirements") {
		t.Errorf("want a cache hit without pip, logs: %q", logs)
	}
	// The copied venv is relocated: its console script runs its own python.
	if got := run(t, filepath.Join(env2.Dir, "bin", "tinypkg-cli")); got != env2.Dir {
		t.Errorf("tinypkg-cli sys.prefix = %s, want %s", got, env2.Dir)
	}
	if got := run(t, env2.Python, "-c", "import tinypkg, sys; print(sys.prefix)"); got != env2.Dir {
		t.Errorf("python sys.prefix = %s, want %s", got, env2.Dir)
	}
	// The cache entry points at itself, not at either task's venv.
	ents, _ := filepath.Glob(filepath.Join(cache, "*", "bin", "tinypkg-cli"))
	if len(ents) != 1 {
		t.Fatalf("cache entries with tinypkg-cli: %q", ents)
	}
	entryDir := filepath.Dir(filepath.Dir(ents[0]))
	if got := run(t, ents[0]); got != entryDir {
		t.Errorf("cached tinypkg-cli sys.prefix = %s, want %s", got, entryDir)
	}
}

func TestEnsureErrors(t *testing.T) {
	needPython(t)
	ix := wheeltest.NewIndex(t, map[string][]byte{})
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"missing requirement",
			Spec{PythonBinary: "python3", Requirements: "nosuchpkg==1.0", IndexURL: ix.URL + "/simple/"},
			"pip could not install requirements: ERROR: No matching distribution found for nosuchpkg==1.0"},
		{"missing python version",
			Spec{PythonBinary: "python2.6"},
			"python 2.6 is not installed (tried python2.6, python2, python3, python); install it or set agent.python_binary"},
		{"missing python binary path",
			Spec{PythonBinary: "/nonexistent/python3.99"},
			"python 3.99 is not installed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			tc.spec.WorkDir = work
			tc.spec.CacheDir = t.TempDir()
			tc.spec.Env = wheeltest.PipEnv
			_, err := Ensure(t.Context(), tc.spec, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			// Nothing half-built is left behind, in the venvs dir or the cache.
			for _, d := range []string{work, tc.spec.CacheDir} {
				ents, _ := os.ReadDir(d)
				for _, e := range ents {
					if e.IsDir() {
						t.Errorf("left behind %s in %s", e.Name(), d)
					}
				}
			}
		})
	}
}

func TestIgnoreRequestedVersion(t *testing.T) {
	needPython(t)
	env, err := Ensure(t.Context(), Spec{PythonBinary: "python2.6", IgnoreRequestedVersion: true, WorkDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(env.Version, "3.") {
		t.Errorf("Version = %s, want the python3 on PATH", env.Version)
	}
}

func TestRequestedVersion(t *testing.T) {
	got := map[string]string{}
	for _, in := range []string{"python3.10", "/usr/bin/python3.11", "python3.10.4", "python", "python3", "bash", ""} {
		got[in] = requestedVersion(in)
	}
	want := map[string]string{"python3.10": "3.10", "/usr/bin/python3.11": "3.11", "python3.10.4": "3.10.4", "python": "", "python3": "3", "bash": "", "": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if !versionMatches("3.10.4", "3.10") || !versionMatches("3.10.4", "3.10.2") || versionMatches("3.11.1", "3.10") || !versionMatches("3.9.1", "3") {
		t.Error("versionMatches compares major.minor only")
	}
}

func TestCacheKey(t *testing.T) {
	base := Spec{IndexURL: "http://i/simple/"}
	k1 := cacheKey(base, "3.11.7", requirementLines("b==1\n# c\na==2\n"))
	k2 := cacheKey(base, "3.11.7", requirementLines("a==2\n\nb==1  # pinned\n"))
	if k1 != k2 {
		t.Error("key depends on order or comments")
	}
	if k1 == cacheKey(base, "3.10.1", requirementLines("a==2\nb==1")) {
		t.Error("key ignores the python version")
	}
	other := base
	other.ExtraIndexURLs = []string{"http://x/"}
	if k1 == cacheKey(other, "3.11.7", requirementLines("a==2\nb==1")) {
		t.Error("key ignores extra index urls")
	}
	for _, r := range []string{"-r other.txt", "-e .", "pkg @ git+https://h/r.git", "./local", "libs/pkg", "-f ./wheels",
		"--find-links=wheels", "pkg-1.0-py3-none-any.whl"} {
		if uncacheable([]string{r}) == "" {
			t.Errorf("%q would be cached", r)
		}
	}
	for _, r := range []string{"pkg==1.0", "pkg @ https://h/pkg-1.0-py3-none-any.whl", "pkg>=1; python_version < '3.12'"} {
		if why := uncacheable([]string{r}); why != "" {
			t.Errorf("%q not cached: %s", r, why)
		}
	}
	for name, change := range map[string]func(*Spec){
		"pip_version":                func(s *Spec) { s.PipVersion = []string{"<24"} },
		"priority_packages":          func(s *Spec) { s.PriorityPackages = []string{"a"} },
		"priority_optional_packages": func(s *Spec) { s.PriorityOptionalPackages = []string{"a"} },
	} {
		other := base
		change(&other)
		if k1 == cacheKey(other, "3.11.7", requirementLines("a==2\nb==1")) {
			t.Errorf("key ignores %s", name)
		}
	}
}

func TestEvict(t *testing.T) {
	dir := t.TempDir()
	for i, name := range []string{"old", "mid", "new"} {
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		ts := testTime(i)
		if err := os.Chtimes(p, ts, ts); err != nil {
			t.Fatal(err)
		}
	}
	evict(dir, "new", 2, func(string) {})
	var got []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			got = append(got, e.Name())
		}
	}
	if diff := cmp.Diff([]string{"mid", "new"}, got); diff != "" {
		t.Errorf("entries after evict (-want +got):\n%s", diff)
	}
}

func testTime(i int) time.Time { return time.Unix(1_000_000+int64(i)*100, 0) }

// BenchmarkEnsureNoRequirements prints how long a task without requirements
// waits for its venv (the fast path).
func BenchmarkEnsureNoRequirements(b *testing.B) {
	work := b.TempDir()
	for b.Loop() {
		if _, err := Ensure(b.Context(), Spec{PythonBinary: "python3", WorkDir: work}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEnsureSystemPython(t *testing.T) {
	const sys = "/usr/bin/python3"
	testenv.Need(t, sys)
	env, err := Ensure(t.Context(), Spec{PythonBinary: sys, SystemSitePackages: true, WorkDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, env.Python, "-c", "import sys; print(sys.prefix != sys.base_prefix)"); got != "True" {
		t.Errorf("not a venv: %s", got)
	}
}
