package venv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/gpufleet/clearml-agent-go/internal/secret"
)

// Package managers (agent.package_manager.type).
const (
	managerPip    = "pip"
	managerUV     = "uv"
	managerPoetry = "poetry"
)

// manager is the package manager a task's packages are installed with.
type manager struct {
	kind    string // managerPip, managerUV or managerPoetry
	bin     string // the uv or poetry executable
	project string // the uv or poetry project directory; "" = install Requirements
}

// newManager checks agent.package_manager.type, finds the uv or poetry
// executable on the PATH the installers will see (no fallback to pip when it
// is missing: the environment would not be the one asked for) and looks for
// the manager's project in spec.ProjectDirs.
func newManager(spec Spec) (manager, error) {
	kind := strings.ToLower(strings.TrimSpace(spec.Manager))
	switch kind {
	case "", managerPip:
		return manager{kind: managerPip}, nil
	case managerUV, managerPoetry:
	default:
		return manager{}, fmt.Errorf("agent.package_manager.type %q is not supported; set it to pip, uv or poetry", spec.Manager)
	}
	m := manager{kind: kind}
	bin, err := lookPath(kind, environ(spec.Env))
	if err != nil {
		hint := "install uv"
		if kind == managerPoetry {
			hint = "install poetry (e.g. apt-get install python3-poetry)"
		}
		return manager{}, fmt.Errorf("agent.package_manager.type is %s but no %s executable is on PATH; %s or set agent.package_manager.type to pip", kind, kind, hint)
	}
	m.bin = bin
	for _, d := range spec.ProjectDirs {
		if d == "" {
			continue
		}
		if (kind == managerUV && isFile(filepath.Join(d, "uv.lock"))) || (kind == managerPoetry && isPoetryProject(d)) {
			m.project = d
			break
		}
	}
	return m, nil
}

// lookPath finds an executable as exec.LookPath does, but on the PATH of env
// (the one the installers run with), not the agent's own.
func lookPath(name string, env []string) (string, error) {
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// installer installs a task's packages into the venv dir.
type installer struct {
	spec Spec
	in   interpreter
	dir  string
	log  func(string)
	m    manager
}

func (ins *installer) python() string { return filepath.Join(ins.dir, "bin", "python") }

// requirements creates the venv and installs spec.Requirements: pip (or uv)
// itself first as agent.package_manager.pip_version asks, then the priority
// packages one by one, then the rest with -r.
func (ins *installer) requirements(ctx context.Context) error {
	spec := ins.spec
	withPip := ins.m.kind == managerPip
	ins.log(fmt.Sprintf("creating venv %s with python %s", ins.dir, ins.in.version))
	if err := createVenv(ctx, spec, ins.in, ins.dir, withPip); err != nil {
		return err
	}
	if withPip {
		if err := ins.upgradePip(ctx); err != nil {
			return err
		}
	}
	cwd := spec.RequirementsDir
	if cwd == "" {
		cwd = filepath.Dir(ins.dir)
	}
	rest, err := ins.priority(ctx, cwd)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return nil
	}
	file := spec.RequirementsFile
	if file == "" || len(rest) != len(requirementLines(spec.Requirements)) {
		// stored requirements, or a file less the optional packages that
		// failed: written next to where relative paths resolve
		f, err := os.CreateTemp(cwd, ".clearml-requirements-*.txt")
		if err != nil {
			return fmt.Errorf("writing requirements: %w", err)
		}
		defer os.Remove(f.Name())
		_, err = f.WriteString(strings.Join(rest, "\n") + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing requirements: %w", err)
		}
		file = f.Name()
	}
	if rel, err := filepath.Rel(cwd, file); err == nil && !strings.HasPrefix(rel, "..") {
		file = rel
	}
	ins.log("installing requirements: " + strings.Join(rest, ", "))
	if out, err := ins.install(ctx, cwd, "-r", file); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s could not install requirements: %s", ins.m.kind, lastLine(out, err))
	}
	return nil
}

// install runs `pip install` (or `uv pip install`) with the index settings
// in cwd.
func (ins *installer) install(ctx context.Context, cwd string, args ...string) (string, error) {
	spec := ins.spec
	var argv []string
	name := ins.python()
	if ins.m.kind == managerUV {
		name = ins.m.bin
		argv = append(argv, "pip", "install", "--python", ins.python())
	} else {
		argv = append(argv, "-m", "pip", "--disable-pip-version-check", "install")
	}
	argv = append(argv, args...)
	argv = append(argv, spec.ExtraPipFlags...)
	env := indexEnv(spec)
	prefix := "PIP_"
	if ins.m.kind == managerUV {
		prefix = "UV_"
	}
	var shown []string
	for _, kv := range env {
		if strings.HasPrefix(kv, prefix) {
			shown = append(shown, kv)
		}
	}
	if len(shown) > 0 {
		ins.log(secret.MaskURLs("index settings (environment): " + strings.Join(shown, " ")))
	}
	return ins.run(ctx, cwd, append(environ(spec.Env), env...), name, argv...)
}

// indexEnv passes the index URLs to pip and uv in their environment
// (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL and the UV_ equivalents; several extra
// URLs space-separated) rather than on the command line, where `ps` shows a
// password in them to every user of the machine. They override the same
// variables of the agent's environment, as the command-line options did.
func indexEnv(spec Spec) []string {
	var env, extra []string
	if spec.IndexURL != "" {
		env = append(env, "PIP_INDEX_URL="+spec.IndexURL, "UV_INDEX_URL="+spec.IndexURL)
	}
	for _, u := range spec.ExtraIndexURLs {
		if u = strings.TrimSpace(u); u != "" {
			extra = append(extra, u)
		}
	}
	if len(extra) > 0 {
		j := strings.Join(extra, " ")
		env = append(env, "PIP_EXTRA_INDEX_URL="+j, "UV_EXTRA_INDEX_URL="+j)
	}
	return env
}

// upgradePip runs `pip install --upgrade "pip<spec>"` for
// agent.package_manager.pip_version; an empty setting leaves pip alone.
func (ins *installer) upgradePip(ctx context.Context) error {
	var reqs []string
	for _, v := range ins.spec.PipVersion {
		if r := pipRequirement(v); r != "" {
			reqs = append(reqs, r)
		}
	}
	if len(reqs) == 0 {
		return nil
	}
	out, err := ins.install(ctx, filepath.Dir(ins.dir), append([]string{"--upgrade"}, reqs...)...)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("pip install --upgrade %s failed: %s; fix agent.package_manager.pip_version", strings.Join(reqs, " "), lastLine(out, err))
	}
	return nil
}

// pipRequirement turns a pip_version entry ("<24", "==23.0.1", "23.0.1",
// "pip>=23 ; python_version >= '3.8'") into a requirement for pip itself.
func pipRequirement(v string) string {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return ""
	case strings.HasPrefix(strings.ToLower(v), "pip"):
		return v
	case strings.ContainsAny(v[:1], "<>=!~;"):
		return "pip" + v
	}
	return "pip==" + v
}

// priority installs the requirements named in the priority settings one by
// one, in the settings' order, in cwd, and returns the requirement lines left for
// the main install (all of them, less the optional ones that failed).
func (ins *installer) priority(ctx context.Context, cwd string) ([]string, error) {
	lines := requirementLines(ins.spec.Requirements)
	type pick struct {
		line     string
		optional bool
	}
	var picks []pick
	taken := map[int]bool{}
	add := func(names []string, optional bool) {
		for _, n := range names {
			for i, l := range lines {
				if !taken[i] && n != "" && requirementName(l) == normalizeName(n) {
					taken[i] = true
					picks = append(picks, pick{l, optional})
				}
			}
		}
	}
	add(ins.spec.PriorityPackages, false)
	add(ins.spec.PriorityOptionalPackages, true)
	drop := map[string]bool{}
	for _, p := range picks {
		ins.log("installing priority package " + p.line)
		out, err := ins.install(ctx, cwd, p.line)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !p.optional {
			return nil, fmt.Errorf("priority package %q (agent.package_manager.priority_packages) could not be installed: %s; fix the requirement or remove it from agent.package_manager.priority_packages",
				p.line, lastLine(out, err))
		}
		ins.log(fmt.Sprintf("warning: optional priority package %q (agent.package_manager.priority_optional_packages) could not be installed, skipping it: %s",
			p.line, lastLine(out, err)))
		drop[p.line] = true
	}
	var rest []string
	for _, l := range lines {
		if !drop[l] {
			rest = append(rest, l)
		}
	}
	return rest, nil
}

var reqName = regexp.MustCompile(`^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:[\[<>=!~;@]|$)`)

// requirementName is the normalized project name of a requirement line
// ("NumPy>=1.2" -> "numpy"), or "" for options, paths and URLs.
func requirementName(line string) string {
	m := reqName.FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return ""
	}
	return normalizeName(m[1])
}

var nameSeparators = regexp.MustCompile(`[-_.]+`)

// normalizeName is the PEP 503 form of a project name.
func normalizeName(n string) string {
	return nameSeparators.ReplaceAllString(strings.ToLower(strings.TrimSpace(n)), "-")
}

// project creates the venv and installs the uv or poetry project in it.
func (ins *installer) project(ctx context.Context) error {
	withPip := ins.m.kind == managerPoetry
	ins.log(fmt.Sprintf("creating venv %s with python %s for the %s project in %s", ins.dir, ins.in.version, ins.m.kind, ins.m.project))
	if err := createVenv(ctx, ins.spec, ins.in, ins.dir, withPip); err != nil {
		return err
	}
	if ins.m.kind == managerUV {
		return ins.uvSync(ctx)
	}
	return ins.poetryInstall(ctx)
}

// activeEnv is the installers' environment with the task's venv active:
// poetry installs into $VIRTUAL_ENV, uv sync into $UV_PROJECT_ENVIRONMENT.
func (ins *installer) activeEnv(defaults ...string) []string {
	env := environ(ins.spec.Env, defaults...)
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	return append(env, "VIRTUAL_ENV="+ins.dir, "UV_PROJECT_ENVIRONMENT="+ins.dir,
		"PATH="+filepath.Join(ins.dir, "bin")+string(os.PathListSeparator)+path)
}

// uvSync installs the project's uv.lock as it is (--locked: a lock that does
// not match pyproject.toml fails instead of being rewritten).
func (ins *installer) uvSync(ctx context.Context) error {
	out, err := ins.run(ctx, ins.m.project, ins.activeEnv(), ins.m.bin, "sync", "--locked", "--python", ins.python())
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("uv sync --locked in %s failed: %s; fix the project or run `uv lock` and commit uv.lock", ins.m.project, lastLine(out, err))
	}
	return nil
}

// poetryInstall checks that poetry.lock matches pyproject.toml, then runs
// `poetry install` into the task's venv.
func (ins *installer) poetryInstall(ctx context.Context) error {
	// keyring backends can wait forever for a desktop session on a server
	env := ins.activeEnv("POETRY_NO_INTERACTION=1", "PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring")
	dir := ins.m.project
	if isFile(filepath.Join(dir, "poetry.lock")) {
		// `poetry check --lock` since poetry 1.6, `poetry lock --check` before
		out, err := ins.run(ctx, dir, env, ins.m.bin, "check", "--lock")
		if err != nil && strings.Contains(out, `"--lock"`) && strings.Contains(out, "does not exist") {
			out, err = ins.run(ctx, dir, env, ins.m.bin, "lock", "--check")
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("poetry.lock in %s is out of date: %s; run `poetry lock` there and commit poetry.lock", dir, lastLine(out, err))
		}
	}
	out, err := ins.run(ctx, dir, env, ins.m.bin, append([]string{"install", "--no-interaction"}, ins.spec.PoetryArgs...)...)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("poetry install in %s failed: %s", dir, lastLine(out, err))
	}
	return nil
}

// run runs name in cwd, sends each output line to the task log as it comes
// (after the command line itself; URL credentials masked in both, with
// secret.MaskURLs) and returns the whole output, masked the same way.
func (ins *installer) run(ctx context.Context, cwd string, env []string, name string, args ...string) (string, error) {
	show := filepath.Base(name)
	if name == ins.python() {
		show = "python"
	}
	ins.log(fmt.Sprintf("[%s]$ %s %s", cwd, show, secret.MaskURLs(strings.Join(args, " "))))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = cwd
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second // a build backend's leftover child must not hold the pipe
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var out strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			l := secret.MaskURLs(strings.TrimRight(sc.Text(), " \r"))
			out.WriteString(l + "\n")
			if l != "" {
				ins.log(l)
			}
		}
		io.Copy(io.Discard, pr) // a line over the scanner's limit
	}()
	err := cmd.Run()
	pw.Close()
	<-done
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && ctx.Err() == nil {
		return out.String(), fmt.Errorf("running %s: %w", show, err)
	}
	return out.String(), err
}

// isPoetryProject reports whether dir holds a poetry project: a poetry.lock,
// or a pyproject.toml with a [tool.poetry] table.
func isPoetryProject(dir string) bool {
	if isFile(filepath.Join(dir, "poetry.lock")) {
		return true
	}
	b, err := os.ReadFile(filepath.Join(dir, "pyproject.toml"))
	if err != nil {
		return false
	}
	var doc struct {
		Tool struct {
			Poetry map[string]any `toml:"poetry"`
		} `toml:"tool"`
	}
	// a pyproject.toml poetry cannot read is not one it can install either
	return toml.Unmarshal(b, &doc) == nil && doc.Tool.Poetry != nil
}
