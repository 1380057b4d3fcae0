package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// PythonOptions configures PythonChecks (venv mode only: in docker mode
// python comes from the image).
type PythonOptions struct {
	// PythonBinary and DefaultPython are agent.python_binary and
	// agent.default_python: the agent tries python3, python, then these
	// (agent/venv resolves a task's interpreter in that order when the task
	// names none).
	PythonBinary, DefaultPython string
	// Manager is agent.package_manager.type: pip and poetry venvs are made
	// with pip (ensurepip), uv venvs without.
	Manager string
	// SystemSitePackages is agent.package_manager.system_site_packages.
	SystemSitePackages bool
	// Env is the environment of the probes and its PATH the search path
	// (nil = this process's).
	Env []string
	// TempDir holds the trial venv ("" = os.TempDir()).
	TempDir string
}

// probeScript is what agent/venv asks a candidate interpreter.
const probeScript = "import sys, platform; print('Python ' + platform.python_version()); print(sys.executable)"

var pythonVersionRE = regexp.MustCompile(`Python (\d+\.\d+(?:\.\d+)?)`)

// PythonChecks returns "python" (an interpreter the agent would build task
// venvs from) and "venv" (it can: `python -m venv --without-pip` in a
// temporary directory, exactly as agent/venv runs it, and ensurepip with
// its bundled pip, which `-m venv` without --without-pip runs, unless the
// package manager is uv).
func PythonChecks(o PythonOptions) []Check {
	p := &pythonState{o: o}
	if p.o.Env == nil {
		p.o.Env = os.Environ()
	}
	return []Check{
		{Name: "python", Timeout: 60 * time.Second, Run: p.python},
		{Name: "venv", Timeout: 60 * time.Second, Run: p.venv},
	}
}

type pythonState struct {
	o PythonOptions

	mu      sync.Mutex
	path    string // the interpreter found ("" = none)
	version string
}

const pythonFix = "install python3 (apt-get install python3 python3-venv) or point agent.python_binary at an interpreter"

func (p *pythonState) python(ctx context.Context) Result {
	cands := []string{"python3", "python"}
	for _, c := range []string{p.o.PythonBinary, p.o.DefaultPython} {
		if c = strings.TrimSpace(c); c != "" {
			cands = append(cands, c)
		}
	}
	p.mu.Lock()
	p.path, p.version = "", ""
	p.mu.Unlock()
	var tried []string
	seen := map[string]bool{}
	found, version, via := "", "", ""
	for _, c := range cands {
		if seen[c] {
			continue
		}
		seen[c] = true
		tried = append(tried, c)
		path, err := lookPath(c, getenv(p.o.Env, "PATH"))
		if err != nil {
			continue
		}
		v, real, err := p.probe(ctx, path)
		if err != nil {
			if ctx.Err() != nil {
				return Result{Status: Fail, Detail: fmt.Sprintf("%s did not answer: %v", path, ctx.Err()), Fix: pythonFix}
			}
			continue
		}
		found, version, via = real, v, c
		break
	}
	if found == "" {
		return Result{Status: Fail, Detail: fmt.Sprintf("no python interpreter found (tried %s on PATH %s)", strings.Join(tried, ", "), getenv(p.o.Env, "PATH")),
			Fix: pythonFix}
	}
	p.mu.Lock()
	p.path, p.version = found, version
	p.mu.Unlock()
	d := fmt.Sprintf("%s is %s (Python %s)", via, found, version)
	if b := strings.TrimSpace(p.o.PythonBinary); b != "" && b != via {
		if _, err := lookPath(b, getenv(p.o.Env, "PATH")); err != nil {
			return Result{Status: Warn, Detail: fmt.Sprintf("agent.python_binary %s not found; %s", b, d),
				Fix: "fix or unset agent.python_binary"}
		}
	}
	return Result{Status: OK, Detail: d}
}

// probe runs the interpreter as agent/venv does and returns its version
// and real executable.
func (p *pythonState) probe(ctx context.Context, path string) (version, real string, err error) {
	cmd := exec.CommandContext(ctx, path, "-c", probeScript)
	cmd.Env = pythonEnv(p.o.Env)
	out, err := cmd.Output()
	if err != nil {
		return "", "", err
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	m := pythonVersionRE.FindStringSubmatch(lines[0])
	if m == nil {
		return "", "", errors.New("not a python")
	}
	real = path
	if len(lines) > 1 && filepath.IsAbs(strings.TrimSpace(lines[1])) {
		real = strings.TrimSpace(lines[1])
	}
	return m[1], real, nil
}

func (p *pythonState) venv(ctx context.Context) Result {
	p.mu.Lock()
	py, version := p.path, p.version
	p.mu.Unlock()
	if py == "" {
		return Result{Status: Skip, Detail: "no python interpreter"}
	}
	mm := version
	if parts := strings.SplitN(version, ".", 3); len(parts) >= 2 {
		mm = parts[0] + "." + parts[1]
	}
	fix := fmt.Sprintf("install the venv module: apt-get install python3-venv (python%s-venv), or the distribution's equivalent", mm)
	dir, err := os.MkdirTemp(p.o.TempDir, "clearml-doctor-venv-")
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("temporary directory: %v", err), Fix: "make TMPDIR writable"}
	}
	defer os.RemoveAll(dir)
	args := []string{"-m", "venv", "--without-pip"}
	if p.o.SystemSitePackages {
		args = append(args, "--system-site-packages")
	}
	cmd := exec.CommandContext(ctx, py, append(args, filepath.Join(dir, "v"))...)
	cmd.Env = pythonEnv(p.o.Env)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("%s -m venv failed: %s", py, lastLine(string(out), err)), Fix: fix}
	}
	if strings.EqualFold(strings.TrimSpace(p.o.Manager), "uv") {
		return Result{Status: OK, Detail: fmt.Sprintf("%s -m venv works (uv installs the packages, no pip needed)", py)}
	}
	cmd = exec.CommandContext(ctx, py, "-c", "import ensurepip; print(ensurepip.version())")
	cmd.Env = pythonEnv(p.o.Env)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("%s -m venv works but ensurepip does not (venvs with pip cannot be made): %s", py, lastLine(string(out), err)), Fix: fix}
	}
	return Result{Status: OK, Detail: fmt.Sprintf("%s -m venv works, ensurepip has pip %s", py, strings.TrimSpace(string(out)))}
}

// lastLine is the telling line of a tool's output (its last one), else err.
func lastLine(out string, err error) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return err.Error()
}

// pythonEnv is env without what would make python look elsewhere, as
// agent/venv runs it.
func pythonEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PYTHONPATH" || k == "PYTHONHOME" || k == "VIRTUAL_ENV" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func getenv(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
			return v
		}
	}
	return ""
}

// lookPath finds an executable as exec.LookPath does, on the given PATH.
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		if executable(name) {
			return name, nil
		}
		return "", fmt.Errorf("%s: not an executable file", name)
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		if p := filepath.Join(dir, name); executable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found on PATH", name)
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
