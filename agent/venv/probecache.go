package venv

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/renameio/v2"
)

// probeFile keeps interpreter probes on disk beside the venvs, so that each
// task's execute child does not ask a python (often a pyenv or asdf shim, a
// chain of shell scripts that takes a quarter of a second) again what an
// earlier task already learnt. Entries are keyed like the in-memory memo (the
// candidate's path, size and modification time, plus PYENV_VERSION, which
// steers pyenv shims); an entry whose interpreter is gone is probed again.
const probeFile = ".interpreters.json"

var probeFileMu sync.Mutex

func loadProbes(dir string) map[string]interpreterJSON {
	out := map[string]interpreterJSON{}
	if dir == "" {
		return out
	}
	b, err := os.ReadFile(filepath.Join(dir, probeFile))
	if err != nil {
		return out
	}
	_ = json.Unmarshal(b, &out) // a damaged file is only a cold cache
	return out
}

type interpreterJSON struct {
	Path    string `json:"path"`
	Version string `json:"version"`
}

// cachedProbe returns the probe stored under memo in dir, if its interpreter
// still exists.
func cachedProbe(dir, memo string) (interpreter, bool) {
	probeFileMu.Lock()
	defer probeFileMu.Unlock()
	e, ok := loadProbes(dir)[memo]
	if !ok || e.Path == "" || e.Version == "" {
		return interpreter{}, false
	}
	if _, err := os.Stat(e.Path); err != nil {
		return interpreter{}, false
	}
	return interpreter{path: e.Path, version: e.Version}, true
}

// storeProbe records a probe in dir (best effort: a cache that cannot be
// written only costs the next task a probe).
func storeProbe(dir, memo string, in interpreter) {
	if dir == "" {
		return
	}
	probeFileMu.Lock()
	defer probeFileMu.Unlock()
	m := loadProbes(dir)
	m[memo] = interpreterJSON{Path: in.path, Version: in.version}
	b, err := json.Marshal(m)
	if err != nil || os.MkdirAll(dir, 0o755) != nil {
		return
	}
	_ = renameio.WriteFile(filepath.Join(dir, probeFile), b, 0o644)
}
