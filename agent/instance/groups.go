package instance

import (
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
	"syscall"
	"time"

	"github.com/gofrs/flock"
)

// OrphanReason is the status reason of a task whose processes an earlier
// run of its agent left behind and a later start (or the supervisor) ended.
const OrphanReason = "the agent restarted: its task process was ended"

// Group is one process group an agent started for a task: the execute
// child's or the task's own (each leads its group, so PGID is the leader's
// pid). Start is the leader's start time (field 22 of /proc/<pid>/stat) when
// it was recorded, so a reused pid is never taken for it.
type Group struct {
	TaskID string `json:"task_id"`
	PGID   int    `json:"pgid"`
	Start  string `json:"start"`
	Role   string `json:"role"` // "execute" or "task"
	// Ended: the group was killed after its agent died (by a supervisor,
	// or by the agent's next start); the task is still to be marked.
	Ended bool `json:"ended,omitempty"`

	live bool // recorded by this run (Add), not read from an earlier one's file
}

type groupsFile struct {
	WorkerID string  `json:"worker_id"`
	Groups   []Group `json:"groups"`
}

// GroupsPath is the record of worker id's process groups in stateDir.
func GroupsPath(stateDir, workerID string) string {
	return filepath.Join(stateDir, escapeID(workerID)+".groups")
}

// Groups is an agent's record of the process groups it started, kept in
// <stateDir>/<worker id>.groups (rewritten atomically on every change,
// removed when empty) so that the next start of the worker, or the
// supervisor that restarts it, can end what a killed agent left running.
// It is safe for concurrent use.
type Groups struct {
	path, workerID string

	mu     sync.Mutex
	groups []Group
	loaded bool
}

// Groups returns the instance's record (the same one on every call).
func (i *Instance) Groups() *Groups {
	i.groupsOnce.Do(func() {
		i.groups = &Groups{path: GroupsPath(i.StateDir, i.WorkerID), workerID: i.WorkerID}
	})
	return i.groups
}

// load reads the file once (what an earlier run left); g.mu is held.
func (g *Groups) load() error {
	if g.loaded {
		return nil
	}
	f, err := readGroups(g.path)
	if err != nil {
		return err
	}
	g.groups, g.loaded = f.Groups, true
	return nil
}

// Add records the process group led by pgid for taskID; remove drops it
// again (call it once the group has ended). A leader that is already gone
// is not recorded.
func (g *Groups) Add(taskID string, pgid int, role string) (remove func(), err error) {
	start := startTime(pgid)
	if pgid <= 0 || start == "" {
		return func() {}, nil
	}
	rec := Group{TaskID: taskID, PGID: pgid, Start: start, Role: role, live: true}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.load(); err != nil {
		return func() {}, err
	}
	g.groups = append(g.groups, rec)
	if err := g.save(); err != nil {
		return func() {}, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.groups = slices.DeleteFunc(g.groups, func(x Group) bool { return x == rec })
			_ = g.save()
		})
	}, nil
}

// PGIDs returns the process groups this run of the agent recorded with Add
// and has not removed yet: its execute children and their tasks while they
// run (the busy-GPU check counts their processes as the agent's own).
// Records an earlier run left are not among them.
func (g *Groups) PGIDs() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []int
	for _, x := range g.groups {
		if x.live && !slices.Contains(out, x.PGID) {
			out = append(out, x.PGID)
		}
	}
	return out
}

// Forget drops every record of taskID (its task has been marked).
func (g *Groups) Forget(taskID string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.load(); err != nil {
		return err
	}
	g.groups = slices.DeleteFunc(g.groups, func(x Group) bool { return x.TaskID == taskID })
	return g.save()
}

// EndLeftovers ends the process groups an earlier run of this worker
// recorded and that still run (SIGKILL to the group, after checking that it
// is still the recorded one), and returns the ids of the recorded tasks: an
// earlier run died while they ran, so they are to be marked (if still in
// progress). Their records stay until Forget. Call it on start, before any
// task runs.
func (g *Groups) EndLeftovers(log func(string)) (taskIDs []string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.load(); err != nil {
		return nil, err
	}
	g.groups = endGroups(g.groups, log)
	for _, x := range g.groups {
		if !slices.Contains(taskIDs, x.TaskID) {
			taskIDs = append(taskIDs, x.TaskID)
		}
	}
	return taskIDs, g.save()
}

// EndOrphans is EndLeftovers for a supervisor: for every worker in stateDir
// whose agent is not running (its lock is free), it ends the recorded groups
// that still run and marks them ended, so that the agent's next start marks
// their tasks. It returns how many groups it ended.
func EndOrphans(stateDir string, log func(string)) (int, error) {
	files, _ := filepath.Glob(filepath.Join(stateDir, "*.groups"))
	if len(files) == 0 {
		return 0, nil
	}
	unlock, err := lockDir(stateDir)
	if err != nil {
		return 0, err
	}
	defer unlock()
	n := 0
	for _, path := range files {
		l := flock.New(strings.TrimSuffix(path, ".groups") + ".lock")
		ok, err := l.TryLock()
		if err != nil || !ok {
			continue // a live agent owns these groups (or we cannot tell)
		}
		f, rerr := readGroups(path)
		if rerr == nil {
			n -= countEnded(f.Groups)
			f.Groups = endGroups(f.Groups, log)
			n += countEnded(f.Groups)
			rerr = writeGroups(path, f)
		}
		_ = l.Unlock()
		_ = os.Remove(l.Path()) // the agent's start recreates it; scan would remove it anyway
		if rerr != nil {
			return n, rerr
		}
	}
	return n, nil
}

func countEnded(groups []Group) int {
	n := 0
	for _, x := range groups {
		if x.Ended {
			n++
		}
	}
	return n
}

// endGroups kills the groups that still run (marking them Ended) and
// returns every record: a record that outlived its agent is of a task whose
// run never finished, whether its processes are still there or not (a
// service manager may have killed them).
func endGroups(groups []Group, log func(string)) []Group {
	if log == nil {
		log = func(string) {}
	}
	var killed []Group
	for i, x := range groups {
		if !groupRuns(x) {
			continue
		}
		if err := syscall.Kill(-x.PGID, syscall.SIGKILL); err == nil || errors.Is(err, syscall.ESRCH) {
			log(fmt.Sprintf("ended the %s process group %d of task %s left running by an earlier run of the agent", x.Role, x.PGID, x.TaskID))
		} else {
			log(fmt.Sprintf("could not end the %s process group %d of task %s: %v", x.Role, x.PGID, x.TaskID, err))
		}
		groups[i].Ended = true
		killed = append(killed, x)
	}
	// Wait (briefly) for the killed groups to be gone, so that their GPUs
	// are free when the agent takes its next task.
	deadline := time.Now().Add(killWait)
	for _, x := range killed {
		for groupRuns(x) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return groups
}

// groupRuns reports whether the recorded group still has a live (not
// zombie) member and is the recorded one: its leader still runs with the
// recorded start time, or, with the leader gone, every member started after
// it (the kernel does not hand out a pid while a group of that id exists).
func groupRuns(x Group) bool {
	if x.PGID <= 1 || x.Start == "" {
		return false
	}
	if state, start, ok := procStat(x.PGID); ok && state != "Z" && state != "X" {
		return start == x.Start && pgidOf(x.PGID) == x.PGID
	}
	rec, err := strconv.ParseUint(x.Start, 10, 64)
	if err != nil {
		return false
	}
	members := groupMembers(x.PGID)
	if len(members) == 0 {
		return false
	}
	for _, st := range members {
		if st < rec {
			return false
		}
	}
	return true
}

// groupMembers returns the start times of the live members of group pgid.
func groupMembers(pgid int) []uint64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []uint64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := statFields(pid)
		if len(f) < 20 || f[0] == "Z" || f[0] == "X" || f[2] != strconv.Itoa(pgid) {
			continue
		}
		st, _ := strconv.ParseUint(f[19], 10, 64)
		out = append(out, st)
	}
	return out
}

func pgidOf(pid int) int {
	f := statFields(pid)
	if len(f) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(f[2])
	return n
}

// statFields are the fields of /proc/<pid>/stat from field 3 (state) on.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// save writes the records, or removes the file when there are none; g.mu
// is held.
func (g *Groups) save() error {
	return writeGroups(g.path, groupsFile{WorkerID: g.workerID, Groups: g.groups})
}

func readGroups(path string) (groupsFile, error) {
	var f groupsFile
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("read the agent's process group record: %w", err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("agent process group record %s: %w; remove it after checking for task processes left running", path, err)
	}
	return f, nil
}

func writeGroups(path string, f groupsFile) error {
	if len(f.Groups) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove the agent's process group record: %w", err)
		}
		return nil
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return writeAtomic(path, append(b, '\n'))
}
