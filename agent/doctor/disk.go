package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DiskPath is one directory whose filesystem needs free space.
type DiskPath struct {
	Label string // "venv cache", "state dir"
	Path  string
}

// FSInfo is what DiskCheck needs to know about a path's filesystem.
type FSInfo struct {
	Free uint64 // bytes available to unprivileged users
	Dev  uint64 // the filesystem's device (paths on one filesystem share it)
}

// DiskOptions configures DiskCheck.
type DiskOptions struct {
	Paths []DiskPath
	// MinFreeGB is the floor in GiB; <= 0 only reports the free space.
	MinFreeGB float64
	// Setting names the configuration key of MinFreeGB in messages.
	Setting string
	// Stat reads a path's filesystem (nil = StatFS). A path that does not
	// exist yet is measured at its nearest existing parent.
	Stat func(path string) (FSInfo, error)
}

// StatFS is the default DiskOptions.Stat: statfs(2) and stat(2).
func StatFS(path string) (FSInfo, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return FSInfo{}, err
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return FSInfo{}, err
	}
	return FSInfo{Free: fs.Bavail * uint64(fs.Bsize), Dev: uint64(st.Dev)}, nil
}

const gib = 1 << 30

// DiskCheck returns "disk": each filesystem holding one of the paths has
// at least MinFreeGB free.
func DiskCheck(o DiskOptions) Check {
	if o.Stat == nil {
		o.Stat = StatFS
	}
	return Check{Name: "disk", Timeout: 15 * time.Second, Run: func(context.Context) Result { return diskResult(o) }}
}

func diskResult(o DiskOptions) Result {
	type fsys struct {
		at     string // the first path measured on it
		free   uint64
		labels []string
	}
	var order []uint64
	byDev := map[uint64]*fsys{}
	for _, p := range o.Paths {
		if p.Path == "" {
			continue
		}
		at := existingParent(p.Path)
		info, err := o.Stat(at)
		if err != nil {
			return Result{Status: Fail, Detail: fmt.Sprintf("%s %s: %v", p.Label, p.Path, err), Fix: "fix the path in clearml.conf or its permissions"}
		}
		f, ok := byDev[info.Dev]
		if !ok {
			f = &fsys{at: p.Path, free: info.Free}
			byDev[info.Dev] = f
			order = append(order, info.Dev)
		}
		f.labels = append(f.labels, p.Label)
	}
	if len(order) == 0 {
		return Result{Status: Skip, Detail: "no cache or state directories configured"}
	}
	floor := uint64(o.MinFreeGB * gib)
	var parts, low []string
	for _, dev := range order {
		f := byDev[dev]
		parts = append(parts, fmt.Sprintf("%s free for %s", gibs(f.free), strings.Join(f.labels, ", ")))
		if o.MinFreeGB > 0 && f.free < floor {
			low = append(low, fmt.Sprintf("%s free for %s (%s)", gibs(f.free), strings.Join(f.labels, ", "), f.at))
		}
	}
	if len(low) > 0 {
		return Result{Status: Fail, Detail: fmt.Sprintf("%s: below the %s floor (%s)", strings.Join(low, "; "), trimGB(o.MinFreeGB), o.Setting),
			Fix: "free space there (old venvs and caches under ~/.clearml, docker system prune) or lower " + o.Setting}
	}
	d := strings.Join(parts, "; ")
	if o.MinFreeGB > 0 {
		d += fmt.Sprintf(" (floor %s)", trimGB(o.MinFreeGB))
	}
	return Result{Status: OK, Detail: d}
}

// gibs rounds down to 0.1 GiB, so a STATUS line does not change with every
// byte written.
func gibs(b uint64) string {
	return fmt.Sprintf("%.1f GiB", float64(b*10/gib)/10)
}

func trimGB(g float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", g), "0"), ".") + " GiB"
}

// existingParent is p or its nearest existing ancestor.
func existingParent(p string) string {
	p = filepath.Clean(p)
	for {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p
		}
		p = parent
	}
}
