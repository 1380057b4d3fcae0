package gpu

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// BusyPolicyKey is the configuration key of the busy-GPU policy.
const BusyPolicyKey = "agent.gpu_busy_policy"

// BusyMode says when a GPU with processes of others counts as busy.
type BusyMode int

const (
	// BusyWait: any process that is not one of this agent's tasks makes
	// the GPU busy (the default).
	BusyWait BusyMode = iota
	// BusyIgnore: never busy; the check does not even load NVML.
	BusyIgnore
	// BusyThreshold: busy when the foreign processes on one GPU use more
	// than ThresholdMiB in total (a process whose memory NVML does not
	// report counts as over the threshold).
	BusyThreshold
)

// BusyPolicy is a parsed agent.gpu_busy_policy.
type BusyPolicy struct {
	Mode         BusyMode
	ThresholdMiB uint64 // for BusyThreshold
}

// String is the policy as it is written in the configuration: "wait",
// "ignore" or the threshold in MiB, e.g. "2048".
func (p BusyPolicy) String() string {
	switch p.Mode {
	case BusyIgnore:
		return "ignore"
	case BusyThreshold:
		return strconv.FormatUint(p.ThresholdMiB, 10)
	}
	return "wait"
}

// ParseBusyPolicy parses agent.gpu_busy_policy: "wait", "ignore", or a
// memory threshold in MiB ("2048", "2048MiB", "2048 MiB"). Case and
// surrounding space do not matter; "" (unset) is "wait".
func ParseBusyPolicy(s string) (BusyPolicy, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	switch v {
	case "", "wait":
		return BusyPolicy{Mode: BusyWait}, nil
	case "ignore":
		return BusyPolicy{Mode: BusyIgnore}, nil
	}
	num := strings.TrimSpace(strings.TrimSuffix(v, "mib"))
	if num != "" && strings.Trim(num, "0123456789") == "" {
		if n, err := strconv.ParseUint(num, 10, 64); err == nil && n <= 1<<40 {
			return BusyPolicy{Mode: BusyThreshold, ThresholdMiB: n}, nil
		}
	}
	return BusyPolicy{}, fmt.Errorf("%s %q is not valid; use wait, ignore, or a memory threshold in MiB such as 2048", BusyPolicyKey, s)
}

// UnknownMemory is BusyProcess.UsedMiB for a process whose GPU memory NVML
// does not report (NVML_VALUE_NOT_AVAILABLE).
const UnknownMemory = ^uint64(0)

// BusyProcess is one process that is not this agent's on one of its GPUs.
type BusyProcess struct {
	GPU     string // the device as assigned: "0", "0:1" (GPU 0, MIG slot 1), or a UUID NVML does not know
	PID     int
	Command string // from /proc/PID/cmdline (or comm); "?" when unreadable
	UsedMiB uint64 // UnknownMemory when NVML does not say
}

// BusyReport is the result of one check.
type BusyReport struct {
	Policy  BusyPolicy
	Foreign []BusyProcess // every foreign process on the agent's GPUs, in device order
	Busy    []string      // the devices (as in BusyProcess.GPU) the policy counts as busy
}

// IsBusy says whether the agent must not take a task now.
func (r BusyReport) IsBusy() bool { return len(r.Busy) > 0 }

// maxShown bounds the processes Summary names.
const maxShown = 3

// Summary is a one-line text for STATUS= and the log, "" when not busy, e.g.
// "GPU 0 busy: pid 4242 (python train.py) 10240 MiB, not this agent's;
// waiting (agent.gpu_busy_policy=wait)".
func (r BusyReport) Summary() string {
	if !r.IsBusy() {
		return ""
	}
	var parts []string
	shown, hidden := 0, 0
	for _, dev := range r.Busy {
		var procs []string
		var total uint64
		for _, p := range r.Foreign {
			if p.GPU != dev {
				continue
			}
			total = addMiB(total, p.UsedMiB)
			if shown == maxShown {
				hidden++
				continue
			}
			shown++
			procs = append(procs, fmt.Sprintf("pid %d (%s) %s", p.PID, p.Command, mib(p.UsedMiB)))
		}
		if len(procs) == 0 {
			continue
		}
		s := fmt.Sprintf("GPU %s busy: %s, not this agent's", dev, strings.Join(procs, ", "))
		if r.Policy.Mode == BusyThreshold {
			s += fmt.Sprintf(", %s in all > %d MiB", mib(total), r.Policy.ThresholdMiB)
		}
		parts = append(parts, s)
	}
	out := strings.Join(parts, "; ")
	if hidden > 0 {
		out += fmt.Sprintf(" (+%d more)", hidden)
	}
	return fmt.Sprintf("%s; waiting (%s=%s)", out, BusyPolicyKey, r.Policy)
}

func mib(n uint64) string {
	if n == UnknownMemory {
		return "unknown MiB"
	}
	return fmt.Sprintf("%d MiB", n)
}

// addMiB adds b to a; UnknownMemory absorbs everything.
func addMiB(a, b uint64) uint64 {
	if a == UnknownMemory || b == UnknownMemory {
		return UnknownMemory
	}
	return a + b
}

// decide fills r.Busy from r.Foreign and the policy; devices lists every
// checked device in order.
func (r *BusyReport) decide(devices []string) {
	if r.Policy.Mode == BusyIgnore {
		return
	}
	for _, dev := range devices {
		var total uint64
		n := 0
		for _, p := range r.Foreign {
			if p.GPU == dev {
				n++
				total = addMiB(total, p.UsedMiB)
			}
		}
		if n > 0 && (r.Policy.Mode == BusyWait || total > r.Policy.ThresholdMiB) {
			r.Busy = append(r.Busy, dev)
		}
	}
}

// BusyChecker looks for processes of others on the agent's GPUs. It is safe
// for concurrent use.
type BusyChecker struct {
	policy BusyPolicy
	mine   func(pid int) bool
	src    procSource

	mu sync.Mutex
}

// procSource lists the processes on the checked devices: NVML
// (busy_nvml.go) or, without cgo, nothing (busy_stub.go).
type procSource interface {
	// processes returns every process on the devices, and the devices in
	// order (as BusyProcess.GPU names them); Command is left empty.
	processes() ([]BusyProcess, []string, error)
	shutdown()
}

func newBusyChecker(src procSource, policy BusyPolicy, mine func(pid int) bool) *BusyChecker {
	if mine == nil {
		mine = func(int) bool { return false }
	}
	return &BusyChecker{policy: policy, mine: mine, src: src}
}

// Check lists the processes on the agent's GPUs, drops those mine says are
// this agent's (and the agent itself), and applies the policy. With the
// policy "ignore" it returns at once without NVML. An error (ErrNoNVML
// without the library) means the GPUs could not be inspected.
func (c *BusyChecker) Check() (BusyReport, error) {
	r := BusyReport{Policy: c.policy}
	if c.policy.Mode == BusyIgnore {
		return r, nil
	}
	c.mu.Lock()
	procs, devices, err := c.src.processes()
	c.mu.Unlock()
	if err != nil {
		return r, err
	}
	self := os.Getpid()
	for _, p := range procs {
		if p.PID == self || c.mine(p.PID) {
			continue
		}
		p.Command = ProcessCommand(p.PID)
		r.Foreign = append(r.Foreign, p)
	}
	r.decide(devices)
	return r, nil
}

// Close releases NVML.
func (c *BusyChecker) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.src.shutdown()
}

// procRoot is where ProcessCommand reads; tests point it elsewhere.
var procRoot = "/proc"

// maxCommand bounds the length of a command in a STATUS= line.
const maxCommand = 60

// ProcessCommand is the command line of pid for messages: its
// /proc/PID/cmdline with the arguments joined by spaces, else its comm, else
// "?" (a process in another PID namespace or gone). Control characters
// become spaces and long commands are cut to 60 characters with "...".
func ProcessCommand(pid int) string {
	dir := fmt.Sprintf("%s/%d", procRoot, pid)
	s := ""
	if b, err := os.ReadFile(dir + "/cmdline"); err == nil {
		s = string(bytes.TrimRight(b, "\x00"))
	}
	if strings.TrimSpace(s) == "" {
		if b, err := os.ReadFile(dir + "/comm"); err == nil {
			s = string(b)
		}
	}
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	if s == "" {
		return "?"
	}
	if r := []rune(s); len(r) > maxCommand {
		s = string(r[:maxCommand-3]) + "..."
	}
	return s
}

// maxAncestry bounds the walk up the process tree in OwnedBy.
const maxAncestry = 128

// OwnedBy builds the mine function of NewBusyChecker from what the agent
// knows about its tasks. A pid is the agent's when it or one of its
// ancestors is this process (venv-mode tasks, even those that left the
// task's process group), when it or an ancestor is in one of the process
// groups groups returns, or when its /proc/PID/cgroup names one of the
// container ids containers returns (docker-mode tasks, whose processes
// descend from the container runtime, not from the agent). groups and
// containers may be nil. A process that is gone or unreadable is not the
// agent's.
func OwnedBy(groups func() []int, containers func() []string) func(pid int) bool {
	return func(pid int) bool {
		self := os.Getpid()
		var pgids []int
		if groups != nil {
			pgids = groups()
		}
		for p, n := pid, 0; p > 1 && n < maxAncestry; n++ {
			if p == self {
				return true
			}
			ppid, pgrp, ok := procStat(p)
			if !ok {
				break
			}
			for _, g := range pgids {
				if g > 1 && pgrp == g {
					return true
				}
			}
			p = ppid
		}
		if containers == nil {
			return false
		}
		b, err := os.ReadFile(fmt.Sprintf("%s/%d/cgroup", procRoot, pid))
		if err != nil {
			return false
		}
		for _, id := range containers() {
			if len(id) >= 12 && bytes.Contains(b, []byte(id)) {
				return true
			}
		}
		return false
	}
}

// procStat reads the parent pid and the process group of pid from
// /proc/PID/stat ("pid (comm) state ppid pgrp ..."; comm may hold spaces
// and parentheses, so the fields are counted after its last ')').
func procStat(pid int) (ppid, pgrp int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procRoot, pid))
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	return ppid, pgrp, err1 == nil && err2 == nil
}
