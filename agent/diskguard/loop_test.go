package diskguard

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"
)

// mountLoop mounts a new 64 MiB ext4 filesystem for the test and returns
// its mount point; it is unmounted when the test ends. Outside CI, no root
// or no loop devices skip the test; in CI they fail it.
func mountLoop(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "loop-mounting a filesystem needs root; run the test as root")
	}
	testenv.Need(t, "mkfs.ext4", "mount", "umount")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		testenv.Missing(t, "loop devices unavailable (mount -o loop: %v: %s); run where /dev/loop-control exists", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

func mustFree(t *testing.T, p string) uint64 {
	t.Helper()
	f, err := Free(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func gbOf(b uint64) float64 { return float64(b) / gib }

// TestLoopFilesystem runs eviction, the floor and the task directory
// cleanup on a real small filesystem, filled with cache entries of known
// sizes and ages.
func TestLoopFilesystem(t *testing.T) {
	mnt := mountLoop(t)
	venvs, vcs, state := filepath.Join(mnt, "venvs-cache"), filepath.Join(mnt, "vcs-cache"), filepath.Join(mnt, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	makeEntry(t, venvs, "aaaa", 6, 5*time.Hour) // the oldest, in use
	holdLock(t, filepath.Join(venvs, "aaaa"))
	makeEntry(t, vcs, "repo.1111", 6, 4*time.Hour)
	makeEntry(t, venvs, "bbbb", 6, 3*time.Hour)
	makeEntry(t, vcs, "repo.2222", 6, 2*time.Hour)
	makeEntry(t, venvs, "cccc", 6, time.Hour)
	caches := []Cache{{"venv cache", venvs}, {"vcs cache", vcs}}

	// 9 MiB short of the threshold: the two least recently used entries
	// not in use go (one would free only 6 MiB).
	free := mustFree(t, mnt)
	t.Logf("free with 30 MiB of cache entries: %d MiB", free>>20)
	threshold := gbOf(free + 9<<20)
	var logs []string
	evicted, err := Evict(threshold, caches, func(s string) { logs = append(logs, s) })
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range evicted {
		names = append(names, filepath.Base(e.Path))
	}
	if len(names) != 2 || names[0] != "repo.1111" || names[1] != "bbbb" {
		t.Errorf("evicted %q, want repo.1111 then bbbb; log:\n%q", names, logs)
	}
	after := mustFree(t, mnt)
	if after < bytesOf(threshold) {
		t.Errorf("free after eviction %d MiB, below the threshold %d MiB", after>>20, bytesOf(threshold)>>20)
	}
	t.Logf("after evicting %q: %d MiB free", names, after>>20)

	// A floor above the threshold: Guard evicts up to the floor, keeping
	// the entry in use.
	g := Guard{Settings: Settings{ThresholdGB: threshold, FloorGB: gbOf(after + 9<<20)}, Caches: caches,
		Paths: []string{state}, Log: func(s string) { logs = append(logs, s) }}
	if r := g.Run(); !r.OK || r.Err != nil {
		t.Errorf("Guard.Run (floor reachable by eviction) = %+v; log:\n%q", r, logs)
	}
	if _, err := os.Stat(filepath.Join(venvs, "aaaa", "sub", "data")); err != nil {
		t.Errorf("the entry in use was evicted: %v", err)
	}
	for _, gone := range []string{filepath.Join(venvs, "cccc"), filepath.Join(vcs, "repo.2222")} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s not evicted: %v", gone, err)
		}
	}

	// Filled up with something that is no cache: the floor stops the
	// agent, and STATUS= says why.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, mustFree(t, mnt)-3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	r := g.Run()
	want := regexp.MustCompile(`^disk full: [0-3] MiB free on ` + regexp.QuoteMeta(state) + ` \(floor agent\.disk_min_free_gb=0\.0[0-9]+\); taking no task$`)
	if r.OK || !want.MatchString(r.Message) || r.Path != state {
		t.Errorf("Guard.Run (full) = %+v; want a message matching %s", r, want)
	}
	t.Logf("STATUS: %s", r.Message)
	if _, err := os.Stat(filepath.Join(venvs, "aaaa")); err != nil {
		t.Errorf("the entry in use was evicted: %v", err)
	}

	// A finished task's build directory, read-only parts and all, gives
	// its space back.
	os.Remove(filler)
	task := filepath.Join(mnt, "venvs-builds", "task_repository", "repo.task1")
	if err := os.MkdirAll(filepath.Join(task, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(task, "data", "weights"), make([]byte, 8<<20), 0o444); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(task, "data"), 0o555)
	readOnlyTree(t, task, state)
	before := mustFree(t, mnt)
	if err := RemoveTaskDir(task); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(task); !os.IsNotExist(err) {
		t.Errorf("task directory still there: %v", err)
	}
	if got := mustFree(t, mnt); got < before+8<<20 {
		t.Errorf("free after RemoveTaskDir %d MiB, want at least %d MiB", got>>20, (before+8<<20)>>20)
	}
	if r := g.Run(); !r.OK {
		t.Errorf("Guard.Run after cleanup = %+v, want OK", r)
	}
}
