package venv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Spec describes the environment a task needs.
type Spec struct {
	PythonBinary           string   // script.binary, e.g. "python3.11" or "/usr/bin/python3"
	PythonFallbacks        []string // agent.python_binary, agent.default_python
	IgnoreRequestedVersion bool     // agent.ignore_requested_python_version

	// Requirements is the pip requirements text to install; empty = nothing.
	Requirements string
	// RequirementsFile is the file Requirements was read from (the
	// repository's requirements.txt), or "": pip then reads it in place, so
	// its messages name it.
	RequirementsFile string
	// RequirementsDir is where pip runs: -r files, -e . and local paths in
	// the requirements resolve against it (the requirements file's
	// directory, or the repository root). "" = WorkDir.
	RequirementsDir string

	// Manager is agent.package_manager.type: "pip" (or ""), "uv" or
	// "poetry". uv and poetry must be on the PATH of Env.
	Manager string
	// ProjectDirs are where uv looks for uv.lock and poetry for poetry.lock
	// or a [tool.poetry] pyproject.toml (the working dir, then the
	// repository root); the first match is installed instead of
	// Requirements.
	ProjectDirs []string
	PoetryArgs  []string // agent.package_manager.poetry_install_extra_args

	// PipVersion is agent.package_manager.pip_version: specs such as "<24"
	// or "==23.0.1 ; python_version >= '3.8'" for `pip install --upgrade`;
	// empty leaves the venv's pip alone.
	PipVersion []string
	// PriorityPackages and PriorityOptionalPackages name requirements that
	// are installed first, one by one, when they appear in Requirements
	// (agent.package_manager.priority_packages, priority_optional_packages).
	// A failing optional one is left out with a warning.
	PriorityPackages         []string
	PriorityOptionalPackages []string

	IndexURL       string   // pip --index-url, "" = pip's default
	ExtraIndexURLs []string // agent.package_manager.extra_index_url
	ExtraPipFlags  []string // agent.package_manager.extra_pip_install_flags

	SystemSitePackages bool   // agent.package_manager.system_site_packages
	WorkDir            string // agent.venvs_dir; the venv goes to <WorkDir>/<major.minor>

	CacheDir        string // agent.venvs_cache.path; "" disables the cache
	CacheMaxEntries int    // agent.venvs_cache.max_entries; <= 0 means 10

	// Env is added to (and overrides) the agent's environment for python,
	// pip, uv and poetry. PYTHONPATH is always removed, as the Python agent
	// does.
	Env []string

	// Timeout bounds the whole build (venv creation and every pip, uv or
	// poetry run): agent.package_manager.install_timeout_sec. An index that
	// stops answering fails the task with a TimeoutError instead of hanging
	// it. 0 = no limit.
	Timeout time.Duration

	// Created, when set, hears how long creating the venv itself took
	// (python -m venv), so the caller can tell it from the installs.
	Created func(d time.Duration)
}

// TimeoutError is an environment build that did not finish within
// Spec.Timeout.
type TimeoutError struct{ Limit time.Duration }

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("installing the python packages did not finish within %s (agent.package_manager.install_timeout_sec); check that the package index answers, or raise the setting for requirements that take longer", e.Limit)
}

// Env is a ready virtual environment.
type Env struct {
	Dir       string // the venv root
	Python    string // <Dir>/bin/python
	Version   string // full interpreter version, e.g. "3.11.7"
	Installed bool   // packages were installed: requirements, or a uv or poetry project
}

// Ensure creates the task's venv at <WorkDir>/<major.minor>, replacing what
// was there, and installs the task's packages (call it after cloning: the
// requirements and projects live in the checkout): a uv or poetry
// project found in spec.ProjectDirs when that manager is configured, else
// spec.Requirements, reusing the venv cache when it holds the same
// requirement set. log receives progress lines and the installers' output
// for the task log; it may be nil. The build gets spec.Timeout.
func Ensure(ctx context.Context, spec Spec, log func(string)) (*Env, error) {
	if spec.Timeout <= 0 {
		return ensure(ctx, spec, log)
	}
	bctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	env, err := ensure(bctx, spec, log)
	if err != nil && ctx.Err() == nil && errors.Is(bctx.Err(), context.DeadlineExceeded) {
		return nil, &TimeoutError{Limit: spec.Timeout}
	}
	return env, err
}

func ensure(ctx context.Context, spec Spec, log func(string)) (*Env, error) {
	if log == nil {
		log = func(string) {}
	}
	if spec.WorkDir == "" {
		return nil, errors.New("pyenv: empty venvs directory; set agent.venvs_dir")
	}
	// A missing uv or poetry fails before any work.
	m, err := newManager(spec)
	if err != nil {
		return nil, err
	}
	if m.kind == managerPoetry && m.project == "" {
		log(fmt.Sprintf("agent.package_manager.type is poetry but there is no poetry.lock or [tool.poetry] pyproject.toml in %s; installing the requirements with pip",
			strings.Join(spec.ProjectDirs, ", ")))
		m = manager{kind: managerPip}
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
	ins := &installer{spec: spec, in: in, dir: dir, log: log, m: m}

	if m.project != "" {
		if len(requirementLines(spec.Requirements)) > 0 {
			log(fmt.Sprintf("%s project in %s: installing it with %s instead of the task's requirements", m.kind, m.project, m.kind))
		}
		if err := ins.project(ctx); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		env.Installed = true
		return env, nil
	}

	reqs := requirementLines(spec.Requirements)
	if len(reqs) == 0 {
		log(fmt.Sprintf("creating venv %s with python %s (no requirements)", dir, in.version))
		if err := createVenv(ctx, spec, in, dir, false); err != nil {
			return nil, err
		}
		return env, nil
	}
	env.Installed = true

	if spec.CacheDir != "" && m.kind == managerPip {
		if why := uncacheable(reqs); why != "" {
			log("venv cache skipped: " + why)
		} else {
			key := cacheKey(spec, in.version, reqs)
			hit, err := withCache(ctx, spec, key, dir, log, func() error { return ins.requirements(ctx) })
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
	if err := ins.requirements(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return env, nil
}

func createVenv(ctx context.Context, spec Spec, in interpreter, dir string, withPip bool) error {
	if spec.Created != nil {
		start := time.Now()
		defer func() { spec.Created(time.Since(start)) }()
	}
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

// lastLine picks pip's (or python's, uv's, poetry's) most telling line: the
// last "ERROR:" (or "Error:", "error:") line, else the last non-empty one, else err.
func lastLine(out string, err error) string {
	var last, lastErr string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		last = l
		if strings.HasPrefix(l, "ERROR:") || strings.HasPrefix(l, "Error:") || strings.HasPrefix(l, "error:") {
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
// PYTHONPATH, and with pip made non-interactive. defaults ("K=V") apply
// where neither the agent's environment nor extra sets K.
func environ(extra []string, defaults ...string) []string {
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
	for _, kv := range append([]string{"PIP_NO_INPUT=1"}, defaults...) {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := vars[k]; !ok && !slices.ContainsFunc(extra, func(e string) bool { return strings.HasPrefix(e, k+"=") }) {
			add(kv)
		}
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
