package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"
)

// fakePython writes an sh script named name into dir that answers the
// version probe as python 3.11.2 and runs venvCmd for `-m venv` and
// ensurepipCmd for the ensurepip probe.
func fakePython(t *testing.T, dir, name, venvCmd, ensurepipCmd string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	script := `#!/bin/sh
if [ "$1" = "-m" ]; then
` + venvCmd + `
fi
case "$2" in
*platform*) echo "Python 3.11.2"; echo "` + p + `"; exit 0 ;;
*ensurepip*) ` + ensurepipCmd + `; exit $? ;;
esac
exit 3
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDoctorPythonReal(t *testing.T) {
	testenv.Need(t, "python3", "sh")
	rep := Run(t.Context(), PythonChecks(PythonOptions{TempDir: t.TempDir()}))
	expect(t, rep, "python", OK, "python3 is /", "")
	expect(t, rep, "venv", OK, "-m venv works, ensurepip has pip ", "")

	// A configured python_binary that is not there: python3 is still used.
	rep = Run(t.Context(), PythonChecks(PythonOptions{PythonBinary: "/nowhere/python3.10", TempDir: t.TempDir()}))
	expect(t, rep, "python", Warn, "agent.python_binary /nowhere/python3.10 not found; python3 is /", "fix or unset agent.python_binary")
	if !rep.OK {
		t.Errorf("a warning failed the report: %+v", rep.Results)
	}
}

func TestDoctorPythonMissing(t *testing.T) {
	empty := t.TempDir()
	rep := Run(t.Context(), PythonChecks(PythonOptions{PythonBinary: "/nowhere/python3", Env: []string{"PATH=" + empty}, TempDir: t.TempDir()}))
	expect(t, rep, "python", Fail, "no python interpreter found (tried python3, python, /nowhere/python3 on PATH "+empty+")", "apt-get install python3 python3-venv")
	expect(t, rep, "python", Fail, "", "agent.python_binary")
	expect(t, rep, "venv", Skip, "no python interpreter", "")

	// agent.python_binary names the interpreter when PATH has none.
	testenv.Need(t, "sh")
	bin := t.TempDir()
	py := fakePython(t, bin, "mypython", "mkdir -p \"$4\"; exit 0", "echo 23.0.1")
	rep = Run(t.Context(), PythonChecks(PythonOptions{PythonBinary: py, Env: []string{"PATH=" + empty}, TempDir: t.TempDir()}))
	expect(t, rep, "python", OK, py+" is "+py+" (Python 3.11.2)", "")
	expect(t, rep, "venv", OK, "ensurepip has pip 23.0.1", "")
}

func TestDoctorVenvBroken(t *testing.T) {
	testenv.Need(t, "sh")
	bin := t.TempDir()
	env := []string{"PATH=" + bin}

	// Debian without python3-venv: `-m venv` refuses.
	fakePython(t, bin, "python3", `echo "The virtual environment was not created successfully because ensurepip is not"; echo "available.  On Debian/Ubuntu systems, you need to install the python3-venv package" >&2; exit 1`, "exit 1")
	rep := Run(t.Context(), PythonChecks(PythonOptions{Env: env, TempDir: t.TempDir()}))
	expect(t, rep, "python", OK, "Python 3.11.2", "")
	expect(t, rep, "venv", Fail, "-m venv failed: available. On Debian/Ubuntu systems", "apt-get install python3-venv (python3.11-venv)")

	// venv works, ensurepip does not: venvs with pip cannot be made...
	fakePython(t, bin, "python3", `exit 0`, `echo "ModuleNotFoundError: No module named 'ensurepip'" >&2; exit 1`)
	rep = Run(t.Context(), PythonChecks(PythonOptions{Env: env, TempDir: t.TempDir()}))
	expect(t, rep, "venv", Fail, "ensurepip does not (venvs with pip cannot be made): ModuleNotFoundError: No module named 'ensurepip'", "python3-venv")
	// ... which uv does not need.
	rep = Run(t.Context(), PythonChecks(PythonOptions{Env: env, Manager: "uv", TempDir: t.TempDir()}))
	expect(t, rep, "venv", OK, "uv installs the packages", "")

	// Something called python3 that is not a python is passed over.
	if err := os.WriteFile(filepath.Join(bin, "python3"), []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rep = Run(t.Context(), PythonChecks(PythonOptions{Env: env, TempDir: t.TempDir()}))
	if r := byName(rep)["python"]; r.Status != Fail || !strings.Contains(r.Detail, "tried python3, python") {
		t.Errorf("python = %+v", r)
	}
}
