package instance

import (
	"github.com/gpufleet/clearml-agent-go/agent/workerid"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// globalLockWait bounds how long start-up, listing or clean-up waits for
// another agent's start-up to finish with the state directory.
const globalLockWait = 10 * time.Second

// Running describes one live agent found in the state directory.
type Running struct {
	WorkerID string    `json:"worker_id"`
	PID      int       `json:"pid"`
	Slot     int       `json:"slot"`
	Started  time.Time `json:"started"`
	LogFile  string    `json:"log_file,omitempty"`
	PIDFile  string    `json:"-"`
}

// Instance is this process's hold on a worker id. Keep it until the agent
// exits; Close releases it.
type Instance struct {
	Running
	StateDir string

	lock *flock.Flock

	groupsOnce sync.Once
	groups     *Groups
}

// AlreadyRunningError is returned by Lock when another live process holds the
// worker id.
type AlreadyRunningError struct {
	WorkerID string
	PID      int
	StateDir string
}

func (e *AlreadyRunningError) Error() string {
	return fmt.Sprintf("another agent with worker id %q is already running (pid %d, state dir %s); "+
		"stop it with 'clearml-agent daemon --stop %s' or set %s", e.WorkerID, e.PID, e.StateDir, e.WorkerID, workerid.EnvWorkerID)
}

// Lock claims workerID in stateDir for the life of this process (or until
// Close). The instance still gets the lowest free slot on the host, which
// callers use to keep per-agent directories apart.
// The pid file names the log of a --detached agent from the process's
// CLEARML_AGENT_DETACHED_LOG (Acquire takes it from the caller instead).
func Lock(stateDir, workerID string) (*Instance, error) {
	return lockSlot(stateDir, func(int) string { return workerID }, os.Getenv(EnvDetachedLog))
}

// Acquire claims the worker id workerid.For(o) computes for the lowest free
// slot. logFile (the --detached log, "" for none) goes into the pid file for
// --status.
func Acquire(stateDir string, o workerid.Options, logFile string) (*Instance, error) {
	return lockSlot(stateDir, func(slot int) string {
		o.Slot = slot
		return workerid.For(o)
	}, logFile)
}

// LockSlot picks the lowest slot that no live agent in stateDir holds, asks
// idFor for the worker id that goes with it, and claims that id. Stale files
// of agents that died are removed on the way.
func LockSlot(stateDir string, idFor func(slot int) string) (*Instance, error) {
	return lockSlot(stateDir, idFor, "")
}

func lockSlot(stateDir string, idFor func(slot int) string, logFile string) (*Instance, error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create agent state dir: %w; set %s to a writable directory", err, EnvStateDir)
	}
	unlock, err := lockDir(stateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	live, err := scan(stateDir)
	if err != nil {
		return nil, err
	}
	slot := 0
	for slices.ContainsFunc(live, func(r Running) bool { return r.Slot == slot }) {
		slot++
	}
	id := idFor(slot)
	if id == "" {
		return nil, fmt.Errorf("empty worker id for slot %d; set %s", slot, workerid.EnvWorkerID)
	}

	base := filepath.Join(stateDir, escapeID(id))
	l := flock.New(base+".lock", flock.SetPermissions(0o644))
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock worker id %q: %w; check the permissions of %s", id, err, stateDir)
	}
	if !ok {
		e := &AlreadyRunningError{WorkerID: id, StateDir: stateDir}
		if r, err := readPIDFile(base + ".pid"); err == nil {
			e.PID = r.PID
		}
		return nil, e
	}
	inst := &Instance{
		Running: Running{
			WorkerID: id,
			PID:      os.Getpid(),
			Slot:     slot,
			Started:  time.Now().UTC().Truncate(time.Second),
			LogFile:  logFile,
			PIDFile:  base + ".pid",
		},
		StateDir: stateDir,
		lock:     l,
	}
	if err := writePIDFile(inst.PIDFile, inst.Running); err != nil {
		_ = l.Unlock()
		return nil, err
	}
	return inst, nil
}

// Close removes the pid file and releases the worker id. It is safe to call
// more than once.
func (i *Instance) Close() error {
	if i == nil || i.lock == nil {
		return nil
	}
	err := os.Remove(i.PIDFile)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	// Remove the lock file only while holding the directory lock, so that no
	// starting agent can be half-way through locking the old file.
	if unlock, lerr := lockDir(i.StateDir); lerr == nil {
		_ = os.Remove(strings.TrimSuffix(i.PIDFile, ".pid") + ".lock")
		defer unlock()
	}
	if uerr := i.lock.Unlock(); err == nil {
		err = uerr
	}
	i.lock = nil
	return err
}

// List returns the live agents in stateDir, sorted by worker id, and removes
// the files of agents that died. A missing directory means none.
func List(stateDir string) ([]Running, error) {
	if _, err := os.Stat(stateDir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	unlock, err := lockDir(stateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return scan(stateDir)
}

// lockDir takes the state directory's start-up lock.
func lockDir(stateDir string) (unlock func(), err error) {
	l := flock.New(filepath.Join(stateDir, ".lock"), flock.SetPermissions(0o644))
	ctx, cancel := context.WithTimeout(context.Background(), globalLockWait)
	defer cancel()
	ok, err := l.TryLockContext(ctx, 20*time.Millisecond)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("lock agent state dir %s: %w; check its permissions or set %s", stateDir, err, EnvStateDir)
	}
	if !ok {
		return nil, fmt.Errorf("agent state dir %s is busy: %s/.lock held for over %s; check for a hung clearml-agent",
			stateDir, stateDir, globalLockWait)
	}
	return func() { _ = l.Unlock() }, nil
}

// scan must run under lockDir. It reports agents whose id lock is held and
// deletes the files of those whose lock is free.
func scan(stateDir string) ([]Running, error) {
	locks, err := filepath.Glob(filepath.Join(stateDir, "*.lock"))
	if err != nil {
		return nil, err
	}
	pids, _ := filepath.Glob(filepath.Join(stateDir, "*.pid"))
	var live []Running
	seen := map[string]bool{}
	for _, lp := range locks {
		if filepath.Base(lp) == ".lock" {
			continue // the directory lock itself
		}
		base := strings.TrimSuffix(lp, ".lock")
		seen[base] = true
		l := flock.New(lp)
		ok, err := l.TryLock()
		if err != nil {
			return nil, fmt.Errorf("check agent lock %s: %w; check the permissions of %s", lp, err, stateDir)
		}
		if ok { // nobody holds it: the agent is gone
			_ = os.Remove(base + ".pid")
			_ = os.Remove(lp)
			_ = l.Unlock()
			continue
		}
		r, err := readPIDFile(base + ".pid")
		if err != nil {
			r = Running{WorkerID: unescapeID(filepath.Base(base)), PIDFile: base + ".pid", Slot: -1}
		}
		live = append(live, r)
	}
	for _, p := range pids { // a pid file without a lock file is left from a crash
		if !seen[strings.TrimSuffix(p, ".pid")] {
			_ = os.Remove(p)
		}
	}
	slices.SortFunc(live, func(a, b Running) int { return strings.Compare(a.WorkerID, b.WorkerID) })
	return live, nil
}

func readPIDFile(path string) (Running, error) {
	var r Running
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("agent pid file %s: %w", path, err)
	}
	r.PIDFile = path
	return r, nil
}

// writePIDFile writes r to path through a temporary file and a rename.
func writePIDFile(path string, r Running) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write agent pid file: %w", err)
	}
	return nil
}

// writeAtomic writes b to path (mode 0644) through a temporary file in the
// same directory and a rename.
func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// escapeID turns a worker id into a file name: letters, digits and ._:,@+=-
// stay, everything else (and a leading dot) becomes %XX.
func escapeID(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		keep := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("._:,@+=-", c) >= 0
		if c == '.' && i == 0 {
			keep = false
		}
		if keep {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func unescapeID(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] == '%' && i+2 < len(name) {
			if c, err := strconv.ParseUint(name[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(c))
				i += 2
				continue
			}
		}
		b.WriteByte(name[i])
	}
	return b.String()
}
