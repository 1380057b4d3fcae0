package venv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

var (
	binaryVersion = regexp.MustCompile(`^python(\d+(?:\.\d+)*)?$`)
	pythonVersion = regexp.MustCompile(`Python (\d+\.\d+(?:\.\d+)?)`)
)

// interpreter is a resolved base python.
type interpreter struct {
	path    string // as found (a name on PATH resolved to its path)
	version string // e.g. "3.11.7"
}

// majorMinor returns "3.11" for "3.11.7".
func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// requestedVersion extracts the version from a script.binary value such as
// "python3.10", "/usr/bin/python3.11" or "python3.10.4"; "" when none.
func requestedVersion(binary string) string {
	m := binaryVersion.FindStringSubmatch(filepath.Base(strings.TrimSpace(binary)))
	if m == nil {
		return ""
	}
	return m[1]
}

// versionMatches reports whether have (e.g. "3.10.4") satisfies want, compared
// on at most major.minor ("3" matches any 3.x).
func versionMatches(have, want string) bool {
	if want == "" {
		return true
	}
	w := strings.Split(want, ".")
	h := strings.Split(have, ".")
	for i := 0; i < len(w) && i < 2; i++ {
		if i >= len(h) || h[i] != w[i] {
			return false
		}
	}
	return true
}

// probed memoizes probe results by path, size and modification time, so a
// worker checks each interpreter once.
var probed sync.Map // string -> interpreter

// probe asks the candidate for its version and real executable (a pyenv or
// asdf shim resolves to the interpreter behind it, which is also much faster
// to start), or returns false when the candidate is missing or not a python.
// dir, when set, holds the probes on disk across processes (probecache.go).
func probe(ctx context.Context, cand, dir string) (interpreter, bool) {
	path, err := exec.LookPath(cand)
	if err != nil {
		return interpreter{}, false
	}
	info, err := os.Stat(path)
	if err != nil {
		return interpreter{}, false
	}
	memo := fmt.Sprintf("%s\x00%d\x00%d\x00%s", path, info.Size(), info.ModTime().UnixNano(), os.Getenv("PYENV_VERSION"))
	if v, ok := probed.Load(memo); ok {
		return v.(interpreter), true
	}
	if in, ok := cachedProbe(dir, memo); ok {
		probed.Store(memo, in)
		return in, true
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-c", "import sys, platform; print('Python ' + platform.python_version()); print(sys.executable)")
	cmd.Env = environ(nil)
	out, err := cmd.Output()
	if err != nil {
		return interpreter{}, false
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	m := pythonVersion.FindStringSubmatch(lines[0])
	if m == nil {
		return interpreter{}, false
	}
	in := interpreter{path: path, version: m[1]}
	if len(lines) > 1 && filepath.IsAbs(strings.TrimSpace(lines[1])) {
		in.path = strings.TrimSpace(lines[1])
	}
	probed.Store(memo, in)
	storeProbe(dir, memo, in)
	return in, true
}

// resolve finds the base interpreter for spec (reference 3.3): the requested
// binary and its shorter names, then the fallbacks; the requested major.minor
// must match unless IgnoreRequestedVersion.
func resolve(ctx context.Context, spec Spec) (interpreter, error) {
	want := requestedVersion(spec.PythonBinary)
	var cands []string
	if b := strings.TrimSpace(spec.PythonBinary); b != "" {
		cands = append(cands, b)
		if !strings.Contains(b, "/") && want != "" {
			parts := strings.Split(want, ".")
			for n := len(parts) - 1; n >= 1; n-- {
				cands = append(cands, "python"+strings.Join(parts[:n], "."))
			}
		}
	}
	cands = append(cands, "python3", "python")
	cands = append(cands, spec.PythonFallbacks...)
	if spec.IgnoreRequestedVersion {
		want = ""
	}
	seen := map[string]bool{}
	var tried []string
	for _, c := range cands {
		if c == "" || seen[c] {
			continue
		}
		seen[c] = true
		tried = append(tried, c)
		if err := ctx.Err(); err != nil {
			return interpreter{}, err
		}
		in, ok := probe(ctx, c, spec.WorkDir)
		if ok && versionMatches(in.version, want) {
			return in, nil
		}
	}
	if want != "" {
		return interpreter{}, fmt.Errorf("python %s is not installed (tried %s); install it or set agent.python_binary (or agent.ignore_requested_python_version)",
			majorMinor(want), strings.Join(tried, ", "))
	}
	return interpreter{}, fmt.Errorf("no python interpreter found (tried %s); install python3 or set agent.python_binary", strings.Join(tried, ", "))
}
