package diskguard

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/config"
)

func loadConf(t *testing.T, text string, env ...string) *config.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "clearml.conf")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(config.LoadOptions{File: f, Env: append(env, "HOME=/nonexistent")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadSettings(t *testing.T) {
	t.Parallel()
	good := []struct {
		text string
		env  []string
		want Settings
	}{
		{"", nil, Settings{ThresholdGB: 2, FloorGB: 1}},
		{"agent { venvs_cache.free_space_threshold_gb: 5, disk_min_free_gb: 0.5 }", nil, Settings{ThresholdGB: 5, FloorGB: 0.5}},
		{"agent.disk_min_free_gb: \"3\"\nagent.venvs_cache.free_space_threshold_gb: 0", nil, Settings{FloorGB: 3}},
		{"", []string{"CLEARML_AGENT__AGENT__DISK_MIN_FREE_GB=0"}, Settings{ThresholdGB: 2}},
	}
	for _, tt := range good {
		got, err := LoadSettings(loadConf(t, tt.text, tt.env...))
		if err != nil || got != tt.want {
			t.Errorf("LoadSettings(%q, %q) = %+v, %v; want %+v", tt.text, tt.env, got, err, tt.want)
		}
	}
	bad := []struct{ text, want string }{
		{"agent.disk_min_free_gb: -1", `agent.disk_min_free_gb -1 is negative; use a size in GiB such as 2.0 (0 turns it off) (set in `},
		{"agent.disk_min_free_gb: lots", `agent.disk_min_free_gb "lots" is not a number; use a size in GiB`},
		{"agent.disk_min_free_gb: 1GB", `agent.disk_min_free_gb "1GB" is not a number`},
		{"agent.disk_min_free_gb: NaN", `agent.disk_min_free_gb "NaN" is not a number`},
		{"agent.disk_min_free_gb: [1, 2]", `agent.disk_min_free_gb "[1 2]" is not a number`},
		{"agent.venvs_cache.free_space_threshold_gb: -0.5", `agent.venvs_cache.free_space_threshold_gb -0.5 is negative`},
		{"agent.venvs_cache.free_space_threshold_gb: \"two\"", `agent.venvs_cache.free_space_threshold_gb "two" is not a number`},
	}
	for _, tt := range bad {
		_, err := LoadSettings(loadConf(t, tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("LoadSettings(%q) error = %v; want one line containing %q", tt.text, err, tt.want)
		}
	}
	_, err := LoadSettings(loadConf(t, "", "CLEARML_AGENT__AGENT__DISK_MIN_FREE_GB=-2"))
	if err == nil || !strings.Contains(err.Error(), "(set in env CLEARML_AGENT__AGENT__DISK_MIN_FREE_GB)") {
		t.Errorf("LoadSettings(env -2) error = %v; want it to name the variable", err)
	}
}

func TestFree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	free, err := Free(dir)
	if err != nil || free == 0 {
		t.Fatalf("Free(%s) = %d, %v", dir, free, err)
	}
	// A cache directory that does not exist yet is measured at its parent.
	if f, err := Free(filepath.Join(dir, "not", "yet")); err != nil || f == 0 {
		t.Errorf("Free(missing subdirectory) = %d, %v", f, err)
	}
	if _, err := Free(""); err == nil {
		t.Errorf("Free(\"\") succeeded")
	}
}

// fakeSpace makes statFree report a filesystem of capacity bytes holding
// only what is under root (real files, counted as du counts them), so the
// eviction logic runs on real directories and locks without a small
// filesystem. Tests using it do not run in parallel.
func fakeSpace(t *testing.T, root string, capacity uint64) {
	t.Helper()
	old := statFree
	statFree = func(p string) (uint64, uint64, error) {
		if !strings.HasPrefix(p, root) {
			return 0, 0, fmt.Errorf("%s is outside the fake filesystem %s", p, root)
		}
		used := diskUsage(root)
		return max(capacity, used) - used, 1, nil
	}
	t.Cleanup(func() { statFree = old })
}

// makeEntry writes a cache entry of n MiB last used age ago.
func makeEntry(t *testing.T, dir, name string, n int, age time.Duration) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "sub", "data"), make([]byte, n<<20), 0o444); err != nil {
		t.Fatal(err)
	}
	when := time.Now().Add(-age)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
	return p
}

func holdLock(t *testing.T, entry string) {
	t.Helper()
	l := flock.New(entry + ".lock")
	if ok, err := l.TryLock(); !ok || err != nil {
		t.Fatalf("locking %s: %v, %v", entry, ok, err)
	}
	t.Cleanup(func() { l.Unlock() })
}

func entriesIn(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestEvictLRU(t *testing.T) {
	root := t.TempDir()
	venvs, vcs := filepath.Join(root, "venvs-cache"), filepath.Join(root, "vcs-cache")
	makeEntry(t, venvs, "aaaa", 4, 5*time.Hour) // oldest, but in use
	holdLock(t, filepath.Join(venvs, "aaaa"))
	makeEntry(t, vcs, "repo.1111", 4, 4*time.Hour)
	makeEntry(t, venvs, "bbbb", 4, 3*time.Hour)
	makeEntry(t, vcs, "repo.2222", 4, 2*time.Hour)
	makeEntry(t, venvs, "cccc", 4, time.Hour)
	makeEntry(t, venvs, ".cccc.tmp-123", 4, 9*time.Hour) // a build in progress
	makeEntry(t, vcs, ".evict-999", 1, 9*time.Hour)      // left by an eviction cut short
	// 44 MiB disk, about 24 MiB used once .evict-999 is gone: 20 free.
	// A threshold of 26 MiB takes two entries (the oldest that is not in
	// use first).
	fakeSpace(t, root, 44<<20)
	var logs []string
	got, err := Evict(26.0/1024, []Cache{{"venv cache", venvs}, {"vcs cache", vcs}, {"disabled", ""}, {"missing", filepath.Join(root, "none")}},
		func(s string) { logs = append(logs, s) })
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range got {
		paths = append(paths, e.Cache+" "+filepath.Base(e.Path))
		if e.Bytes < 4<<20 || e.Bytes > 5<<20 {
			t.Errorf("%s: Bytes = %d, want about 4 MiB", e.Path, e.Bytes)
		}
	}
	if diff := cmp.Diff([]string{"vcs cache repo.1111", "venv cache bbbb"}, paths); diff != "" {
		t.Errorf("evicted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{".cccc.tmp-123", "aaaa", "aaaa.lock", "bbbb.lock", "cccc"}, entriesIn(t, venvs)); diff != "" {
		t.Errorf("venv cache after eviction (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"repo.1111.lock", "repo.2222"}, entriesIn(t, vcs)); diff != "" {
		t.Errorf("vcs cache after eviction (-want +got):\n%s", diff)
	}
	if len(logs) != 2 || !strings.Contains(logs[0], "vcs cache: evicted repo.1111 (4 MiB, last used ") {
		t.Errorf("logs = %q", logs)
	}

	// Above the threshold nothing happens.
	if got, err := Evict(20.0/1024, []Cache{{"venv cache", venvs}, {"vcs cache", vcs}}, nil); err != nil || len(got) != 0 {
		t.Errorf("Evict(above threshold) = %+v, %v; want nothing", got, err)
	}
	if got, err := Evict(0, []Cache{{"venv cache", venvs}}, nil); err != nil || len(got) != 0 {
		t.Errorf("Evict(threshold 0) = %+v, %v; want nothing", got, err)
	}

	// Asking for more than can be freed evicts everything not in use and
	// says so once.
	logs = nil
	got, err = Evict(1, []Cache{{"venv cache", venvs}, {"vcs cache", vcs}}, func(s string) { logs = append(logs, s) })
	if err != nil || len(got) != 2 {
		t.Errorf("Evict(1 GiB) = %+v, %v; want cccc and repo.2222", got, err)
	}
	last := logs[len(logs)-1]
	if !strings.Contains(last, "venv cache and vcs cache: ") || !strings.Contains(last, "below agent.venvs_cache.free_space_threshold_gb=1.0, and nothing left to evict (1 entries in use)") {
		t.Errorf("last log = %q", last)
	}
	if _, err := os.Stat(filepath.Join(venvs, "aaaa", "sub", "data")); err != nil {
		t.Errorf("the entry in use was touched: %v", err)
	}
}

func TestCheckFloor(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "state")
	makeEntry(t, root, "filler", 30, 0)
	fakeSpace(t, root, 32<<20)
	if r := Check(1.0/1024, state, root); !r.OK || r.Message != "" {
		t.Errorf("Check(1 MiB floor) = %+v, want OK", r)
	}
	r := Check(0.5, "", state, root)
	want := "disk full: 1 MiB free on " + state + " (floor agent.disk_min_free_gb=0.5); taking no task"
	if r.OK || r.Message != want || r.Path != state {
		t.Errorf("Check(0.5 GiB floor) = %+v; want message %q", r, want)
	}
	if r := Check(0, state); !r.OK {
		t.Errorf("Check(floor 0) = %+v, want OK", r)
	}
	// A path whose space cannot be read is reported, but does not block.
	r = Check(1.0/1024, "/elsewhere", state)
	if !r.OK || r.Err == nil || !strings.Contains(r.Err.Error(), "/elsewhere") {
		t.Errorf("Check(unreadable path) = %+v; want OK with an error", r)
	}
}

func TestSizeText(t *testing.T) {
	t.Parallel()
	for b, want := range map[uint64]string{0: "0 MiB", 400 << 20: "0.4 GiB", 3 << 30: "3.0 GiB", 100 << 20: "100 MiB"} {
		if got := size(b); got != want {
			t.Errorf("size(%d) = %q, want %q", b, got, want)
		}
	}
	for f, want := range map[float64]string{1: "1.0", 0.5: "0.5", 2.25: "2.25"} {
		if got := gbText(f); got != want {
			t.Errorf("gbText(%v) = %q, want %q", f, got, want)
		}
	}
}

// readOnlyTree builds a task directory the way tasks leave them: git
// objects (read-only files in read-only directories), a directory without
// any permission, and a symlink to something outside that must survive.
func readOnlyTree(t *testing.T, dir, outside string) {
	t.Helper()
	objects := filepath.Join(dir, ".git", "objects", "ab")
	for _, d := range []string{objects, filepath.Join(dir, "locked", "deeper")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(objects, "cdef"), filepath.Join(dir, "locked", "deeper", "f")} {
		if err := os.WriteFile(f, []byte("x"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{objects, filepath.Dir(objects), filepath.Join(dir, "locked", "deeper")} {
		os.Chmod(d, 0o555)
	}
	os.Chmod(filepath.Join(dir, "locked"), 0)
}

// TestRemoveTaskDir removes a read-only tree as an unprivileged user (root
// ignores permissions, so as root the test runs the removal in a child
// process as nobody).
func TestRemoveTaskDir(t *testing.T) {
	t.Parallel()
	base, err := os.MkdirTemp("", "removetaskdir-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	outside := filepath.Join(base, "keep")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(outside, "precious"), []byte("x"), 0o644)
	parent := filepath.Join(base, "builds")
	task := filepath.Join(parent, "task_repository", "repo.abc")
	if err := os.MkdirAll(task, 0o755); err != nil {
		t.Fatal(err)
	}
	readOnlyTree(t, task, outside)

	if os.Geteuid() != 0 {
		if err := os.RemoveAll(task); err == nil {
			t.Fatal("os.RemoveAll removed the read-only tree; the test proves nothing")
		}
		if err := RemoveTaskDir(task); err != nil {
			t.Fatal(err)
		}
	} else {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skipf("no user nobody to remove the tree as: %v", err)
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		os.Chmod(base, 0o755)
		filepath.Walk(parent, func(p string, _ os.FileInfo, _ error) error { os.Lchown(p, uid, gid); return nil })
		// The child is this test binary (copied where nobody may run
		// it), run as nobody, calling RemoveTaskDir through
		// TestRemoveTaskDirChild.
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(base, "diskguard.test")
		if b, err := os.ReadFile(self); err != nil || os.WriteFile(bin, b, 0o755) != nil {
			t.Fatalf("copying the test binary: %v", err)
		}
		run := func(fn string) error {
			cmd := exec.Command(bin, "-test.run=^TestRemoveTaskDirChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "DISKGUARD_CHILD="+fn, "DISKGUARD_DIR="+task)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}
		if err := run("RemoveAll"); err == nil {
			t.Fatal("os.RemoveAll as nobody removed the read-only tree; the test proves nothing")
		}
		if err := run("RemoveTaskDir"); err != nil {
			t.Fatalf("RemoveTaskDir as nobody: %v", err)
		}
	}
	if _, err := os.Lstat(task); !os.IsNotExist(err) {
		t.Errorf("task directory still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "precious")); err != nil {
		t.Errorf("the symlink's target was removed: %v", err)
	}
	if err := RemoveTaskDir(task); err != nil {
		t.Errorf("RemoveTaskDir(already gone) = %v", err)
	}
	for _, bad := range []string{"/", "relative/dir", "/.."} {
		if err := RemoveTaskDir(bad); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("RemoveTaskDir(%q) = %v; want a refusal", bad, err)
		}
	}
	if err := RemoveTaskDir(""); err != nil {
		t.Errorf("RemoveTaskDir(\"\") = %v", err)
	}
}

// TestRemoveTaskDirChild is the child process of TestRemoveTaskDir.
func TestRemoveTaskDirChild(t *testing.T) {
	dir := os.Getenv("DISKGUARD_DIR")
	switch os.Getenv("DISKGUARD_CHILD") {
	case "":
		t.Skip("runs as the child process of TestRemoveTaskDir")
	case "RemoveAll":
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	case "RemoveTaskDir":
		if err := RemoveTaskDir(dir); err != nil {
			t.Fatal(err)
		}
	}
}
