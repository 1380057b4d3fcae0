package diskguard

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"

	"github.com/gpufleet/clearml-agent-go/agent/config"
)

// The configuration keys this package reads.
const (
	ThresholdKey = "agent.venvs_cache.free_space_threshold_gb"
	FloorKey     = "agent.disk_min_free_gb"
)

const (
	gib = 1 << 30
	mib = 1 << 20
)

// Settings are the two watermarks, in GiB (2^30 bytes).
type Settings struct {
	// ThresholdGB: below this much free space on a cache's filesystem,
	// evict its least recently used entries; 0 turns eviction off.
	ThresholdGB float64
	// FloorGB: below this much free space on any of the agent's
	// filesystems, take no task; 0 turns the floor off.
	FloorGB float64
}

// LoadSettings reads and checks agent.venvs_cache.free_space_threshold_gb
// (default 2.0) and agent.disk_min_free_gb (default 1.0). A value that is
// not a number, or is negative, is a one-line error naming the key and
// where it was set.
func LoadSettings(c *config.Config) (Settings, error) {
	t, err := gbSetting(c, ThresholdKey, 2.0)
	if err != nil {
		return Settings{}, err
	}
	f, err := gbSetting(c, FloorKey, 1.0)
	if err != nil {
		return Settings{}, err
	}
	return Settings{ThresholdGB: t, FloorGB: f}, nil
}

func gbSetting(c *config.Config, key string, def float64) (float64, error) {
	v, ok := c.Get(key)
	if !ok || v == nil {
		return def, nil
	}
	raw, ok := c.String(key)
	if !ok {
		raw = fmt.Sprint(v)
	}
	g, err := ParseGB(key, raw)
	if err != nil {
		if o := c.Origin(key); o != "" && o != "default" {
			return 0, fmt.Errorf("%w (set in %s)", err, o)
		}
		return 0, err
	}
	return g, nil
}

// ParseGB parses a size in GiB for key: a non-negative, finite number.
func ParseGB(key, raw string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%s %q is not a number; use a size in GiB such as 2.0 (0 turns it off)", key, raw)
	}
	if f < 0 {
		return 0, fmt.Errorf("%s %s is negative; use a size in GiB such as 2.0 (0 turns it off)", key, strings.TrimSpace(raw))
	}
	return f, nil
}

func bytesOf(gb float64) uint64 { return uint64(gb * gib) }

// Free returns the bytes available to unprivileged users (df's Avail) on
// the filesystem holding path. A path that does not exist yet is measured
// at its nearest existing parent.
func Free(path string) (uint64, error) {
	free, _, err := statFree(path)
	return free, err
}

// statFree returns the free bytes and the device of the filesystem holding
// path. Tests replace it.
var statFree = func(path string) (free, dev uint64, err error) {
	p, err := existing(path)
	if err != nil {
		return 0, 0, err
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(p, &sfs); err != nil {
		return 0, 0, fmt.Errorf("free space of %s: %w", p, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0, 0, fmt.Errorf("free space of %s: %w", p, err)
	}
	unit := uint64(sfs.Frsize)
	if unit == 0 {
		unit = uint64(sfs.Bsize)
	}
	return sfs.Bavail * unit, st.Dev, nil
}

// existing is path, or its nearest parent that exists.
func existing(path string) (string, error) {
	if path == "" {
		return "", errors.New("free space: empty path")
	}
	p, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	for {
		_, err := os.Stat(p)
		if err == nil {
			return p, nil
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, fs.ErrNotExist) || parent == p {
			return "", fmt.Errorf("free space of %s: %w", path, err)
		}
		p = parent
	}
}

// Result says whether the agent may take a task.
type Result struct {
	OK        bool
	Path      string // the path on the filesystem below the floor
	FreeBytes uint64 // its free space
	// Message is for STATUS= and the log, "" when OK: "disk full: 0.4 GiB
	// free on /var/cache/clearml-agent (floor agent.disk_min_free_gb=1.0);
	// taking no task".
	Message string
	// Err: the free space of some path could not be read. It does not
	// make the result not OK.
	Err error
}

// Check compares the free space of the filesystems holding paths with the
// floor (GiB; 0 = no floor). Paths on one filesystem are measured once; ""
// entries are skipped. The first path below the floor makes the result not
// OK.
func Check(floorGB float64, paths ...string) Result {
	r := Result{OK: true}
	if floorGB <= 0 {
		return r
	}
	floor := bytesOf(floorGB)
	seen := map[uint64]bool{}
	for _, p := range paths {
		if p == "" {
			continue
		}
		free, dev, err := statFree(p)
		if err != nil {
			r.Err = errors.Join(r.Err, err)
			continue
		}
		if seen[dev] {
			continue
		}
		seen[dev] = true
		if free < floor {
			return Result{Path: p, FreeBytes: free, Err: r.Err, Message: fmt.Sprintf(
				"disk full: %s free on %s (floor %s=%s); taking no task", size(free), p, FloorKey, gbText(floorGB))}
		}
	}
	return r
}

// size renders bytes for messages: "512 MiB" below 0.1 GiB, else "0.4 GiB".
func size(b uint64) string {
	if b < gib/10 {
		return fmt.Sprintf("%d MiB", b/mib)
	}
	return fmt.Sprintf("%.1f GiB", float64(b)/gib)
}

// gbText renders a setting as written: "1.0", "0.5", "0.0390625".
func gbText(f float64) string {
	if f == math.Trunc(f) {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// Cache is one cache directory whose entries may be evicted.
type Cache struct {
	Name string // for the log: "venv cache", "vcs cache"
	Dir  string // agent.venvs_cache.path, agent.vcs_cache.path; "" = disabled
}

// Evicted is one removed cache entry.
type Evicted struct {
	Cache    string // Cache.Name
	Path     string
	Bytes    uint64 // the space its files took
	LastUsed time.Time
}

// entry is a cache entry that may be evicted.
type entry struct {
	cache, dir, name string
	used             time.Time
}

// Evict removes least recently used entries of the caches on each
// filesystem whose free space is below thresholdGB (0: nothing is evicted),
// oldest first across all the caches on that filesystem, until the space is
// at or above it or no entry is left that nobody holds the lock of. It logs
// each eviction, and once per call a filesystem that stays below. An error
// means some cache could not be read; the others were still handled.
func Evict(thresholdGB float64, caches []Cache, log func(string)) ([]Evicted, error) {
	if thresholdGB <= 0 {
		return nil, nil
	}
	if log == nil {
		log = func(string) {}
	}
	want := bytesOf(thresholdGB)
	type fsGroup struct {
		dir     string // a cache dir on it, for statfs
		names   []string
		entries []entry
	}
	var errs []error
	groups := map[uint64]*fsGroup{}
	var order []uint64
	for _, c := range caches {
		if c.Dir == "" {
			continue
		}
		if _, err := os.Stat(c.Dir); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		free, dev, err := statFree(c.Dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
			continue
		}
		if free >= want {
			continue
		}
		ents, err := listEntries(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		g := groups[dev]
		if g == nil {
			g = &fsGroup{dir: c.Dir}
			groups[dev] = g
			order = append(order, dev)
		}
		g.names = append(g.names, c.Name)
		g.entries = append(g.entries, ents...)
	}

	var out []Evicted
	for _, dev := range order {
		g := groups[dev]
		sort.SliceStable(g.entries, func(i, j int) bool {
			a, b := g.entries[i], g.entries[j]
			if !a.used.Equal(b.used) {
				return a.used.Before(b.used)
			}
			return filepath.Join(a.dir, a.name) < filepath.Join(b.dir, b.name)
		})
		start, _, err := statFree(g.dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		free, freed, busy := start, uint64(0), 0
		for _, e := range g.entries {
			if free >= want {
				break
			}
			ev, err := evictOne(e)
			switch {
			case errors.Is(err, errInUse):
				busy++
				continue
			case errors.Is(err, errChanged):
				continue
			case err != nil:
				log(fmt.Sprintf("%s: could not evict %s: %v", e.cache, filepath.Join(e.dir, e.name), err))
				continue
			}
			out = append(out, ev)
			freed += ev.Bytes
			log(fmt.Sprintf("%s: evicted %s (%s, last used %s) to free disk space", e.cache, e.name, size(ev.Bytes), ev.LastUsed.Format(time.RFC3339)))
			// statfs may lag behind a removal on some filesystems; the
			// bytes removed are a floor for what is free now.
			now, _, err := statFree(g.dir)
			if err != nil {
				now = 0
			}
			free = max(now, start+freed)
		}
		if free < want {
			msg := fmt.Sprintf("%s: %s free on %s, below %s=%s, and nothing left to evict",
				strings.Join(g.names, " and "), size(free), g.dir, ThresholdKey, gbText(thresholdGB))
			if busy > 0 {
				msg += fmt.Sprintf(" (%d entries in use)", busy)
			}
			log(msg)
		}
	}
	return out, errors.Join(errs...)
}

// listEntries lists the entries of a cache, and removes what an eviction
// cut short left behind (.evict-*).
func listEntries(c Cache) ([]entry, error) {
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", c.Name, c.Dir, err)
	}
	var out []entry
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() {
			continue
		}
		if strings.HasPrefix(name, ".evict-") {
			os.RemoveAll(filepath.Join(c.Dir, name))
			continue
		}
		if strings.HasPrefix(name, ".") {
			continue // a build or clone in progress
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, entry{cache: c.Name, dir: c.Dir, name: name, used: info.ModTime()})
	}
	return out, nil
}

var (
	errInUse   = errors.New("in use")
	errChanged = errors.New("used or removed since it was listed")
)

// evictOne removes one entry while holding its lock; errInUse when someone
// else holds it.
func evictOne(e entry) (Evicted, error) {
	p := filepath.Join(e.dir, e.name)
	l := flock.New(p + ".lock")
	ok, err := l.TryLock()
	if err != nil {
		return Evicted{}, err
	}
	if !ok {
		return Evicted{}, errInUse
	}
	defer l.Unlock()
	info, err := os.Lstat(p)
	if err != nil || !info.IsDir() || !info.ModTime().Equal(e.used) {
		return Evicted{}, errChanged
	}
	n := diskUsage(p)
	trash, err := os.MkdirTemp(e.dir, ".evict-")
	if err != nil {
		return Evicted{}, err
	}
	defer os.RemoveAll(trash)
	if err := os.Rename(p, filepath.Join(trash, "e")); err != nil {
		return Evicted{}, err
	}
	if err := RemoveTaskDir(trash); err != nil {
		return Evicted{}, err
	}
	return Evicted{Cache: e.cache, Path: p, Bytes: n, LastUsed: e.used}, nil
}

// diskUsage is the space the files under root take (du), hard links
// counted once.
func diskUsage(root string) uint64 {
	var n uint64
	seen := map[[2]uint64]bool{}
	filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			n += uint64(info.Size())
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			k := [2]uint64{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		n += uint64(st.Blocks) * 512
		return nil
	})
	return n
}

// Guard is what the daemon runs before it takes a task: eviction, then the
// floor.
type Guard struct {
	Settings Settings
	// Caches are evicted when their filesystem is below the threshold.
	Caches []Cache
	// Paths are checked against the floor, with the cache directories:
	// the state directory, agent.venvs_dir, the pip download cache.
	Paths []string
	Log   func(string)
}

// Run evicts cache entries while a cache filesystem is below the threshold
// (or below the floor, when that is higher), then checks the floor on every
// path. Cheap while there is space: one statfs per path.
func (g *Guard) Run() Result {
	target := g.Settings.ThresholdGB
	if target > 0 {
		target = max(target, g.Settings.FloorGB)
	}
	_, err := Evict(target, g.Caches, g.Log)
	paths := append([]string(nil), g.Paths...)
	for _, c := range g.Caches {
		paths = append(paths, c.Dir)
	}
	r := Check(g.Settings.FloorGB, paths...)
	r.Err = errors.Join(err, r.Err)
	return r
}

// RemoveTaskDir removes a task's build directory and everything in it. A
// tree that os.RemoveAll cannot remove because of directories without write
// or search permission (a read-only checkout, a module cache) is made
// writable by its owner and removed again; symlinks are removed, never
// followed. A missing directory is not an error; "", "/" and relative paths
// are refused.
func RemoveTaskDir(dir string) error {
	if dir == "" {
		return nil
	}
	clean := filepath.Clean(dir)
	if !filepath.IsAbs(clean) || clean == "/" {
		return fmt.Errorf("refusing to remove %q: a task directory must be an absolute path below /", dir)
	}
	if err := os.RemoveAll(clean); err == nil {
		return nil
	}
	filepath.WalkDir(clean, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().Perm()&0o700 != 0o700 {
			os.Chmod(p, info.Mode().Perm()|0o700)
		}
		return nil
	})
	if err := os.RemoveAll(clean); err != nil {
		return fmt.Errorf("removing task directory %s: %w", clean, err)
	}
	return nil
}
