package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memKB reads VmRSS and VmHWM (kB) of a process from /proc/<pid>/status.
func memKB(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStatus(b)
}

// parseStatus extracts VmRSS and VmHWM from a /proc/<pid>/status text.
func parseStatus(b []byte) (rss, hwm int64, err error) {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status %s %q: %w", k, v, err)
		}
		if k == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
		found++
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("/proc status has no VmRSS/VmHWM (kernel thread or exited process)")
	}
	return rss, hwm, nil
}

// rssSplit reads RssAnon and RssFile (kB) of a process: heap and stacks
// versus mapped binary and libraries.
func rssSplit(pid int) (anon, file int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "RssAnon":
			anon = n
		case "RssFile":
			file = n
		}
	}
	return anon, file
}

// descendants lists the pids below pid (children, grandchildren...).
func descendants(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			parent[p] = pp
		}
	}
	var out []int
	want := map[int]bool{pid: true}
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if want[pp] && !want[p] {
				want[p] = true
				out = append(out, p)
				changed = true
			}
		}
	}
	return out
}

// treeRSS is VmRSS (kB) of pid plus all its descendants, and how many
// processes that is.
func treeRSS(pid int) (kb int64, procs int, err error) {
	kb, _, err = memKB(pid)
	if err != nil {
		return 0, 0, err
	}
	procs = 1
	for _, c := range descendants(pid) {
		if r, _, err := memKB(c); err == nil {
			kb += r
			procs++
		}
	}
	return kb, procs, nil
}

// notifyListener is our own NOTIFY_SOCKET: it keeps every datagram with its
// arrival time.
type notifyListener struct {
	path string
	conn *net.UnixConn

	mu   sync.Mutex
	msgs []notifyMsg
}

type notifyMsg struct {
	at   time.Time
	text string
}

func listenNotify(path string) (*notifyListener, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("NOTIFY_SOCKET %s: %w", path, err)
	}
	n := &notifyListener{path: path, conn: conn}
	go n.loop()
	return n, nil
}

func (n *notifyListener) loop() {
	buf := make([]byte, 64<<10)
	for {
		k, _, err := n.conn.ReadFromUnix(buf)
		if err != nil {
			return
		}
		m := notifyMsg{at: time.Now(), text: string(buf[:k])}
		n.mu.Lock()
		n.msgs = append(n.msgs, m)
		n.mu.Unlock()
	}
}

// first returns the arrival time of the first datagram at or after `after`
// with a line equal to line (e.g. "READY=1").
func (n *notifyListener) first(after time.Time, line string) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.msgs {
		if m.at.Before(after) {
			continue
		}
		for _, l := range strings.Split(m.text, "\n") {
			if l == line {
				return m.at, true
			}
		}
	}
	return time.Time{}, false
}

func (n *notifyListener) Close() error { return n.conn.Close() }
