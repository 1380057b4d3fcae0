package venv

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/internal/gittest"
	"github.com/gpufleet/clearml-agent-go/internal/testenv"
	"github.com/gpufleet/clearml-agent-go/internal/wheeltest"
)

// tinyIndex serves tinypkg==1.0 and otherpkg==1.0.
func tinyIndex(t *testing.T, extra map[string][]byte) *wheeltest.Index {
	t.Helper()
	wheels := map[string][]byte{}
	for _, name := range []string{"tinypkg", "otherpkg"} {
		file, body := wheeltest.Build(t, name, "1.0")
		wheels[file] = body
	}
	maps.Copy(wheels, extra)
	return wheeltest.NewIndex(t, wheels)
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// collect returns a log func and the lines it got.
func collect(t *testing.T) (func(string), *[]string) {
	var lines []string
	return func(s string) { t.Log(s); lines = append(lines, s) }, &lines
}

func indexOf(lines []string, sub string) int {
	for i, l := range lines {
		if strings.Contains(l, sub) {
			return i
		}
	}
	return -1
}

// TestRequirementsRelativePaths: -r, -e ., a local path and git+file://
// in a repository's requirements.txt resolve against the file's directory,
// and such a set is not cached.
func TestRequirementsRelativePaths(t *testing.T) {
	needPython(t)
	testenv.Need(t, "git")
	ix := tinyIndex(t, nil)
	gitDir := gittest.Repo(t, "master", wheeltest.Project("", "gitpkg", "1.0", "from git"))
	repo := t.TempDir()
	files := map[string]string{
		"sub/requirements.txt":      "-r base/requirements.txt\n-e .\n./libs/localdep\ngit+file://" + gitDir + "\n",
		"sub/base/requirements.txt": "tinypkg==1.0\n",
	}
	maps.Copy(files, wheeltest.Project("sub/", "rootpkg", "1.0", "editable"))
	maps.Copy(files, wheeltest.Project("sub/libs/localdep/", "localdep", "1.0", "local path"))
	writeTree(t, repo, files)
	sub := filepath.Join(repo, "sub")
	cache := t.TempDir()
	log, lines := collect(t)
	env, err := Ensure(t.Context(), Spec{PythonBinary: "python3",
		Requirements: files["sub/requirements.txt"], RequirementsFile: filepath.Join(sub, "requirements.txt"), RequirementsDir: sub,
		IndexURL: ix.URL + "/simple/", WorkDir: t.TempDir(), CacheDir: cache, Env: wheeltest.PipEnv}, log)
	if err != nil {
		t.Fatal(err)
	}
	got := run(t, env.Python, "-c", "import tinypkg, rootpkg, localdep, gitpkg; print(tinypkg.VALUE, rootpkg.VALUE, localdep.VALUE, gitpkg.VALUE, rootpkg.__file__)")
	if want := "42 editable local path from git " + filepath.Join(sub, "rootpkg", "__init__.py"); got != want {
		t.Errorf("imports = %q, want %q", got, want)
	}
	if i := indexOf(*lines, "install -r requirements.txt"); i < 0 || !strings.Contains((*lines)[i], "["+sub+"]$") {
		t.Errorf("pip did not read the repository's file in place from %s: %q", sub, *lines)
	}
	if indexOf(*lines, "venv cache skipped") < 0 {
		t.Errorf("no cache-skip line: %q", *lines)
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 0 {
		t.Errorf("cached a venv with -r/-e/git requirements: %v", ents)
	}

	// Stored requirements (no file) resolve against the repository root,
	// and the temporary file they are written to is gone afterwards.
	env, err = Ensure(t.Context(), Spec{PythonBinary: "python3",
		Requirements: "-r sub/base/requirements.txt\n-e sub\n", RequirementsDir: repo,
		IndexURL: ix.URL + "/simple/", WorkDir: t.TempDir(), CacheDir: cache, Env: wheeltest.PipEnv}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, env.Python, "-c", "import tinypkg, rootpkg; print(tinypkg.VALUE, rootpkg.VALUE)"); got != "42 editable" {
		t.Errorf("imports = %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(repo, ".clearml-requirements-*")); len(left) != 0 {
		t.Errorf("left behind %q", left)
	}
}

func TestPriorityPackages(t *testing.T) {
	needPython(t)
	ix := tinyIndex(t, nil)
	log, lines := collect(t)
	spec := Spec{PythonBinary: "python3",
		Requirements:             "otherpkg==1.0\nno-such-optional==1.0\nTinyPkg==1.0\n",
		PriorityPackages:         []string{"cython", "tiny_pkg", "tinypkg"},
		PriorityOptionalPackages: []string{"No.Such_Optional"},
		IndexURL:                 ix.URL + "/simple/", WorkDir: t.TempDir(), CacheDir: t.TempDir(), Env: wheeltest.PipEnv}
	env, err := Ensure(t.Context(), spec, log)
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, env.Python, "-c", "import tinypkg, otherpkg; print('ok')"); got != "ok" {
		t.Errorf("imports = %q", got)
	}
	tiny := indexOf(*lines, "pip --disable-pip-version-check install TinyPkg==1.0")
	opt := indexOf(*lines, "pip --disable-pip-version-check install no-such-optional==1.0")
	warn := indexOf(*lines, `warning: optional priority package "no-such-optional==1.0" (agent.package_manager.priority_optional_packages) could not be installed, skipping it: ERROR: No matching distribution found for no-such-optional==1.0`)
	rest := indexOf(*lines, "installing requirements: otherpkg==1.0, TinyPkg==1.0")
	if tiny < 0 || opt < tiny || warn < opt || rest < warn {
		t.Errorf("want tinypkg, then the optional package with a warning, then the rest without it (%d %d %d %d): %q", tiny, opt, warn, rest, *lines)
	}

	// A priority package that cannot be installed fails the environment,
	// naming the package and the setting.
	spec.WorkDir = t.TempDir()
	spec.Requirements = "tinypkg==1.0\nno-such-pkg==2.0\n"
	spec.PriorityPackages = []string{"no-such-pkg"}
	_, err = Ensure(t.Context(), spec, nil)
	want := `priority package "no-such-pkg==2.0" (agent.package_manager.priority_packages) could not be installed: ERROR: No matching distribution found for no-such-pkg==2.0; fix the requirement or remove it from agent.package_manager.priority_packages`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant %s", err, want)
	}
}

func TestPipVersion(t *testing.T) {
	needPython(t)
	file, body := wheeltest.SystemWheel(t, "pip")
	version := strings.Split(file, "-")[1]
	ix := tinyIndex(t, map[string][]byte{file: body})
	log, lines := collect(t)
	spec := Spec{PythonBinary: "python3", Requirements: "tinypkg==1.0", PipVersion: []string{"==" + version},
		IndexURL: ix.URL + "/simple/", WorkDir: t.TempDir(), CacheDir: t.TempDir(), Env: wheeltest.PipEnv}
	env, err := Ensure(t.Context(), spec, log)
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, env.Python, "-m", "pip", "--version"); !strings.HasPrefix(got, "pip "+version+" ") {
		t.Errorf("pip --version = %q, want %s", got, version)
	}
	up, inst := indexOf(*lines, "install --upgrade pip=="+version), indexOf(*lines, "installing requirements")
	if up < 0 || inst < up {
		t.Errorf("pip was not upgraded before the requirements: %q", *lines)
	}

	// An empty pip_version leaves pip as the venv has it.
	log, lines = collect(t)
	spec.PipVersion, spec.WorkDir, spec.CacheDir = nil, t.TempDir(), ""
	if _, err := Ensure(t.Context(), spec, log); err != nil {
		t.Fatal(err)
	}
	if i := indexOf(*lines, "--upgrade"); i >= 0 {
		t.Errorf("pip upgraded without pip_version: %q", (*lines)[i])
	}

	// A pip version the index does not have names the setting.
	spec.PipVersion, spec.WorkDir = []string{"<1"}, t.TempDir()
	_, err = Ensure(t.Context(), spec, nil)
	if err == nil || !strings.Contains(err.Error(), "pip install --upgrade pip<1 failed: ERROR: No matching distribution found for pip<1; fix agent.package_manager.pip_version") {
		t.Errorf("error = %v", err)
	}
}

func TestPipRequirement(t *testing.T) {
	got := map[string]string{}
	for _, v := range []string{"<24", "==23.0.1", "23.0.1", " ", "pip>=23 ; python_version >= '3.8'", ">=20,<24 ; python_version < '3.12'"} {
		got[v] = pipRequirement(v)
	}
	want := map[string]string{"<24": "pip<24", "==23.0.1": "pip==23.0.1", "23.0.1": "pip==23.0.1", " ": "",
		"pip>=23 ; python_version >= '3.8'":  "pip>=23 ; python_version >= '3.8'",
		">=20,<24 ; python_version < '3.12'": "pip>=20,<24 ; python_version < '3.12'"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRequirementName(t *testing.T) {
	got := map[string]string{}
	for _, l := range []string{"NumPy>=1.2", "py_Gobject", "torch[cuda]==2.1", "pkg @ https://h/p.whl", "a.b-c ; python_version<'3'",
		"-e .", "./local", "git+https://h/r.git", "/abs/path", "--index-url x", "cython"} {
		got[l] = requirementName(l)
	}
	want := map[string]string{"NumPy>=1.2": "numpy", "py_Gobject": "py-gobject", "torch[cuda]==2.1": "torch",
		"pkg @ https://h/p.whl": "pkg", "a.b-c ; python_version<'3'": "a-b-c", "-e .": "", "./local": "",
		"git+https://h/r.git": "", "/abs/path": "", "--index-url x": "", "cython": "cython"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestPoetry(t *testing.T) {
	needPython(t)
	ix := tinyIndex(t, nil)
	proj := t.TempDir()
	wheeltest.PoetryProject(t, proj, "poetryapp", ix.URL+"/simple/", map[string]string{"tinypkg": "1.0"})
	cache := t.TempDir()
	log, lines := collect(t)
	spec := Spec{PythonBinary: "python3", Manager: "poetry", ProjectDirs: []string{filepath.Join(proj, "nodir"), proj},
		Requirements: "not-installed==9.9\n", IndexURL: ix.URL + "/simple/",
		WorkDir: t.TempDir(), CacheDir: cache, Env: wheeltest.PoetryEnv(t)}
	env, err := Ensure(t.Context(), spec, log)
	if err != nil {
		t.Fatal(err)
	}
	if !env.Installed {
		t.Error("Installed = false")
	}
	if got := run(t, env.Python, "-c", "import tinypkg, poetryapp; print(tinypkg.VALUE, poetryapp.VALUE)"); got != "42 poetry poetryapp" {
		t.Errorf("imports = %q", got)
	}
	if indexOf(*lines, "installing it with poetry instead of the task's requirements") < 0 || indexOf(*lines, "install --no-interaction") < 0 {
		t.Errorf("log: %q", *lines)
	}
	frozen, err := Freeze(t.Context(), env)
	if err != nil || !strings.Contains(frozen, "tinypkg==1.0") {
		t.Errorf("Freeze = %q, %v", frozen, err)
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 0 {
		t.Errorf("a poetry venv was cached: %v", ents)
	}

	// pyproject.toml changed after poetry.lock was written: one clear line.
	b, _ := os.ReadFile(filepath.Join(proj, "pyproject.toml"))
	writeTree(t, proj, map[string]string{"pyproject.toml": strings.Replace(string(b), `tinypkg = "1.0"`, "tinypkg = \"1.0\"\notherpkg = \"1.0\"", 1)})
	spec.WorkDir = t.TempDir()
	_, err = Ensure(t.Context(), spec, nil)
	want := "poetry.lock in " + proj + " is out of date: Error: poetry.lock is not consistent with pyproject.toml."
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "; run `poetry lock` there and commit poetry.lock") ||
		strings.Contains(err.Error(), "\n") {
		t.Errorf("error = %v\nwant one line starting %q", err, want)
	}

	// poetry configured, no poetry project: pip installs the requirements.
	log, lines = collect(t)
	spec.ProjectDirs, spec.Requirements, spec.WorkDir = []string{t.TempDir()}, "tinypkg==1.0", t.TempDir()
	env, err = Ensure(t.Context(), spec, log)
	if err != nil {
		t.Fatal(err)
	}
	if indexOf(*lines, "installing the requirements with pip") < 0 {
		t.Errorf("no line about using pip: %q", *lines)
	}
	run(t, env.Python, "-c", "import tinypkg")
}

func TestManagerMissing(t *testing.T) {
	for _, kind := range []string{"uv", "poetry"} {
		_, err := Ensure(t.Context(), Spec{PythonBinary: "python3", Manager: kind, Requirements: "tinypkg",
			WorkDir: t.TempDir(), Env: []string{"PATH=" + t.TempDir()}}, nil)
		want := "agent.package_manager.type is " + kind + " but no " + kind + " executable is on PATH; "
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), "or set agent.package_manager.type to pip") {
			t.Errorf("%s: error = %v, want %q...", kind, err, want)
		}
	}
	_, err := Ensure(t.Context(), Spec{PythonBinary: "python3", Manager: "conda", WorkDir: t.TempDir()}, nil)
	if err == nil || err.Error() != `agent.package_manager.type "conda" is not supported; set it to pip, uv or poetry` {
		t.Errorf("conda: error = %v", err)
	}
}

// fakeUV is a uv stand-in on PATH: it records its arguments and
// $UV_PROJECT_ENVIRONMENT, runs `uv pip install --python P args` as
// `python3 -m pip --python P install args` and accepts `uv sync`.
func fakeUV(t *testing.T) (pathDir, argsLog string) {
	t.Helper()
	pathDir = t.TempDir()
	argsLog = filepath.Join(t.TempDir(), "uv-args")
	writeTree(t, pathDir, map[string]string{"uv": `#!/bin/sh
echo "$* env=$UV_PROJECT_ENVIRONMENT" >> "` + argsLog + `"
case "$1 $2 $3" in
"pip install --python") py=$4; shift 4; exec python3 -m pip --python "$py" install "$@" ;;
"sync --locked --python") exit 0 ;;
esac
echo "error: fake uv does not know $*" >&2
exit 2
`})
	if err := os.Chmod(filepath.Join(pathDir, "uv"), 0o755); err != nil {
		t.Fatal(err)
	}
	return pathDir, argsLog
}

func TestUV(t *testing.T) {
	needPython(t)
	ix := tinyIndex(t, nil)
	bin, argsLog := fakeUV(t)
	env := append(append([]string{}, wheeltest.PipEnv...), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cache := t.TempDir()
	spec := Spec{PythonBinary: "python3", Manager: "uv", Requirements: "tinypkg==1.0\notherpkg==1.0", PriorityPackages: []string{"otherpkg"},
		IndexURL: ix.URL + "/simple/", WorkDir: t.TempDir(), CacheDir: cache, Env: env}
	venv, err := Ensure(t.Context(), spec, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	run(t, venv.Python, "-c", "import tinypkg, otherpkg")
	b, _ := os.ReadFile(argsLog)
	want := "pip install --python " + venv.Python + " otherpkg==1.0 env=\n" + // the index goes in UV_INDEX_URL
		"pip install --python " + venv.Python + " -r "
	if !strings.HasPrefix(string(b), want) {
		t.Errorf("uv calls:\n%s\nwant them to start\n%s", b, want)
	}
	if _, err := os.Stat(filepath.Join(venv.Dir, "bin", "pip")); err == nil {
		t.Error("a uv venv got pip")
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 0 {
		t.Errorf("a uv venv was cached: %v", ents)
	}

	// A uv.lock in the repository: uv sync --locked into the task's venv.
	proj := t.TempDir()
	writeTree(t, proj, map[string]string{"uv.lock": "version = 1\n", "pyproject.toml": "[project]\nname = \"p\"\nversion = \"1\"\n"})
	os.Remove(argsLog)
	spec.ProjectDirs, spec.WorkDir = []string{proj}, t.TempDir()
	venv, err = Ensure(t.Context(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(argsLog)
	if want := "sync --locked --python " + venv.Python + " env=" + venv.Dir + "\n"; string(b) != want {
		t.Errorf("uv calls %q, want %q", b, want)
	}
}

func TestCommandLineMasksIndexPassword(t *testing.T) {
	log, lines := collect(t)
	ins := &installer{dir: t.TempDir(), log: log}
	ins.run(t.Context(), t.TempDir(), nil, "true", "--index-url", "https://user:s3cr3t@pypi.internal/simple", "--extra-index-url", "http://h:1/simple")
	if got, want := (*lines)[0], "true --index-url https://****@pypi.internal/simple --extra-index-url http://h:1/simple"; !strings.HasSuffix(got, want) {
		t.Errorf("command line %q, want it to end %q", got, want)
	}
}

func TestInstallTimeout(t *testing.T) {
	needPython(t)
	// A uv that never returns stands for an installer waiting on an index
	// that stopped answering.
	bin := t.TempDir()
	writeTree(t, bin, map[string]string{"uv": "#!/bin/sh\nexec sleep 3600\n"})
	if err := os.Chmod(filepath.Join(bin, "uv"), 0o755); err != nil {
		t.Fatal(err)
	}
	proj := t.TempDir()
	writeTree(t, proj, map[string]string{"uv.lock": "version = 1\n", "pyproject.toml": "[project]\nname = \"p\"\nversion = \"1\"\n"})
	const limit = 3 * time.Second
	spec := Spec{PythonBinary: "python3", Manager: "uv", ProjectDirs: []string{proj}, WorkDir: t.TempDir(), Timeout: limit,
		Env: []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}}
	_, err := Ensure(t.Context(), spec, nil)
	var te *TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("Ensure = %v, want a TimeoutError", err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "agent.package_manager.install_timeout_sec") || !strings.Contains(msg, limit.String()) {
		t.Errorf("reason %q: want one line naming the limit and agent.package_manager.install_timeout_sec", msg)
	}
	if venvs, _ := filepath.Glob(filepath.Join(spec.WorkDir, "3.*")); len(venvs) != 0 {
		t.Errorf("a timed-out build left %v behind", venvs)
	}
}
