package pyenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Spec describes the environment a task needs.
type Spec struct {
	PythonBinary           string   // script.binary, e.g. "python3.11" or "/usr/bin/python3"
	PythonFallbacks        []string // agent.python_binary, agent.default_python
	IgnoreRequestedVersion bool     // agent.ignore_requested_python_version

	Requirements   string   // pip requirements text; empty = nothing to install
	IndexURL       string   // pip --index-url, "" = pip's default
	ExtraIndexURLs []string // agent.package_manager.extra_index_url
	ExtraPipFlags  []string // agent.package_manager.extra_pip_install_flags

	SystemSitePackages bool   // agent.package_manager.system_site_packages
	WorkDir            string // agent.venvs_dir; the venv goes to <WorkDir>/<major.minor>

	CacheDir        string // agent.venvs_cache.path; "" disables the cache
	CacheMaxEntries int    // agent.venvs_cache.max_entries; <= 0 means 10

	// Env is added to (and overrides) the agent's environment for python and
	// pip. PYTHONPATH is always removed, as the Python agent does.
	Env []string
}

// Env is a ready virtual environment.
type Env struct {
	Dir     string // the venv root
	Python  string // <Dir>/bin/python
	Version string // full interpreter version, e.g. "3.11.7"
}

// Ensure creates the task's venv at <WorkDir>/<major.minor>, replacing what
// was there (task code placed inside it, e.g. task_repository, goes too: call
// Ensure before cloning), and installs spec.Requirements, reusing the venv
// cache when it holds the same requirement set. log receives progress lines
// and pip's output for the task log; it may be nil.
func Ensure(ctx context.Context, spec Spec, log func(string)) (*Env, error) {
	if log == nil {
		log = func(string) {}
	}
	if spec.WorkDir == "" {
		return nil, errors.New("pyenv: empty venvs directory; set agent.venvs_dir")
	}
	in, err := resolve(ctx, spec)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(spec.WorkDir, majorMinor(in.version))
	env := &Env{Dir: dir, Python: filepath.Join(dir, "bin", "python"), Version: in.version}
	if err := os.MkdirAll(spec.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("venvs directory %s: %w; fix agent.venvs_dir or its permissions", spec.WorkDir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("removing old venv %s: %w", dir, err)
	}

	reqs := requirementLines(spec.Requirements)
	if len(reqs) == 0 {
		log(fmt.Sprintf("creating venv %s with python %s (no requirements)", dir, in.version))
		if err := createVenv(ctx, spec, in, dir, false); err != nil {
			return nil, err
		}
		return env, nil
	}

	if spec.CacheDir != "" {
		if why := uncacheable(reqs); why != "" {
			log("venv cache skipped: " + why)
		} else {
			key := cacheKey(spec, in.version, reqs)
			hit, err := withCache(ctx, spec, key, dir, log, func() error { return build(ctx, spec, in, dir, log) })
			if err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
			if hit {
				log(fmt.Sprintf("reused cached venv %s for %s", key[:12], dir))
			}
			return env, nil
		}
	}
	if err := build(ctx, spec, in, dir, log); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return env, nil
}

// build creates the venv with pip and installs the requirements.
func build(ctx context.Context, spec Spec, in interpreter, dir string, log func(string)) error {
	log(fmt.Sprintf("creating venv %s with python %s", dir, in.version))
	if err := createVenv(ctx, spec, in, dir, true); err != nil {
		return err
	}
	return pipInstall(ctx, spec, dir, log)
}

func createVenv(ctx context.Context, spec Spec, in interpreter, dir string, withPip bool) error {
	args := []string{"-m", "venv"}
	if !withPip {
		args = append(args, "--without-pip")
	}
	if spec.SystemSitePackages {
		args = append(args, "--system-site-packages")
	}
	args = append(args, dir)
	cmd := exec.CommandContext(ctx, in.path, args...)
	cmd.Env = environ(spec.Env)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("creating venv %s with %s failed: %s; install the python venv module (e.g. apt-get install python%s-venv)",
			dir, in.path, lastLine(string(out), err), majorMinor(in.version))
	}
	return nil
}

// pipInstall runs `python -m pip install -r <file>` in the venv.
func pipInstall(ctx context.Context, spec Spec, dir string, log func(string)) error {
	f, err := os.CreateTemp(filepath.Dir(dir), ".requirements-*.txt")
	if err != nil {
		return fmt.Errorf("writing requirements: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(spec.Requirements + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("writing requirements: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing requirements: %w", err)
	}
	args := []string{"-m", "pip", "--disable-pip-version-check", "install", "-r", f.Name()}
	if spec.IndexURL != "" {
		args = append(args, "--index-url", spec.IndexURL)
	}
	for _, u := range spec.ExtraIndexURLs {
		if u != "" {
			args = append(args, "--extra-index-url", u)
		}
	}
	args = append(args, spec.ExtraPipFlags...)
	log("installing requirements: " + strings.Join(requirementLines(spec.Requirements), ", "))
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "bin", "python"), args...)
	cmd.Env = environ(spec.Env)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err = cmd.Run()
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), " \r"); l != "" {
			log(l)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("pip could not install requirements: %s", lastLine(out.String(), err))
	}
	return nil
}

// lastLine picks pip's (or python's) most telling line: the last "ERROR:"
// line, else the last non-empty one, else err.
func lastLine(out string, err error) string {
	var last, lastErr string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		last = l
		if strings.HasPrefix(l, "ERROR:") || strings.HasPrefix(l, "Error:") {
			lastErr = l
		}
	}
	switch {
	case lastErr != "":
		return lastErr
	case last != "":
		return last
	}
	return err.Error()
}

// environ is the agent's environment with extra overriding it, without
// PYTHONPATH, and with pip made non-interactive.
func environ(extra []string) []string {
	vars := map[string]string{}
	var order []string
	add := func(kv string) {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, kv := range os.Environ() {
		add(kv)
	}
	if _, ok := vars["PIP_NO_INPUT"]; !ok {
		add("PIP_NO_INPUT=1")
	}
	for _, kv := range extra {
		add(kv)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		if k == "PYTHONPATH" || k == "VIRTUAL_ENV" || k == "PYTHONHOME" {
			continue
		}
		out = append(out, k+"="+vars[k])
	}
	return out
}

// requirementLines returns the non-empty, non-comment lines of a pip
// requirements text, trimmed, in order.
func requirementLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if i := strings.Index(l, " #"); i >= 0 {
			l = l[:i]
		}
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// Freeze lists the packages installed in env as `pip freeze` does, for
// tasks.set_requirements. A venv created without pip (no requirements) is
// listed through importlib.metadata instead, in the same "name==version" form.
func Freeze(ctx context.Context, env *Env) (string, error) {
	var cmd *exec.Cmd
	if _, err := os.Stat(filepath.Join(env.Dir, "bin", "pip")); err == nil {
		cmd = exec.CommandContext(ctx, env.Python, "-m", "pip", "--disable-pip-version-check", "freeze")
	} else {
		cmd = exec.CommandContext(ctx, env.Python, "-c",
			"import importlib.metadata as m\n"+
				"print('\\n'.join(sorted({'%s==%s' % (d.metadata['Name'], d.version) for d in m.distributions() if d.metadata['Name']}, key=str.lower)))")
	}
	cmd.Env = environ(nil)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("pip freeze in %s failed: %s", env.Dir, lastLine(stderr.String(), err))
	}
	return strings.TrimSpace(string(out)), nil
}
