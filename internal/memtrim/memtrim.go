// Package memtrim gives back the file pages (its own executable, libc) the agent
// touched while starting up. Most of the idle agent's resident memory is not
// heap but file pages of its large binary that start-up
// code mapped in, often in big chunks (fault-around, large page-cache folios).
// Once the agent idles, madvise(MADV_PAGEOUT) on those read-only mappings lets
// the kernel drop them; the few pages the idle loop needs fault back in.
//
// It must not: touch writable mappings or anonymous memory (the heap).
package memtrim

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Executable pages out the read-only file mappings of this process (its binary
// and shared libraries; pages other processes map too stay). It
// returns how many bytes of mappings it advised.
func Executable() (int64, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || !strings.HasPrefix(fs[5], "/") || strings.Contains(fs[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fs[0], "-")
		if !ok {
			continue
		}
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || b <= a {
			continue
		}
		// MADV_RANDOM first: pages that fault back in later come one by
		// one instead of with a readahead window around them.
		for _, advice := range []int{unix.MADV_RANDOM, unix.MADV_PAGEOUT} {
			if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(a), uintptr(b-a), uintptr(advice)); e != 0 {
				return total, fmt.Errorf("madvise(%d) on %s: %w", advice, fs[0], e)
			}
		}
		total += int64(b - a)
	}
	return total, sc.Err()
}
