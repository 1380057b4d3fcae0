package gpu

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseBusyPolicy(t *testing.T) {
	t.Parallel()
	good := map[string]BusyPolicy{
		"":              {Mode: BusyWait},
		"wait":          {Mode: BusyWait},
		" WAIT ":        {Mode: BusyWait},
		"ignore":        {Mode: BusyIgnore},
		"Ignore":        {Mode: BusyIgnore},
		"2048":          {Mode: BusyThreshold, ThresholdMiB: 2048},
		"2048MiB":       {Mode: BusyThreshold, ThresholdMiB: 2048},
		"2048 mib":      {Mode: BusyThreshold, ThresholdMiB: 2048},
		"0":             {Mode: BusyThreshold},
		"1099511627776": {Mode: BusyThreshold, ThresholdMiB: 1 << 40},
	}
	for in, want := range good {
		got, err := ParseBusyPolicy(in)
		if err != nil || got != want {
			t.Errorf("ParseBusyPolicy(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"busy", "-1", "2048MB", "2 GiB", "1.5", "MiB", "99999999999999999999", "1099511627777", "wait\nignore"} {
		_, err := ParseBusyPolicy(in)
		if err == nil {
			t.Errorf("ParseBusyPolicy(%q) succeeded, want an error", in)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "agent.gpu_busy_policy ") || !strings.Contains(msg, "wait, ignore, or a memory threshold in MiB") || strings.Contains(msg, "\n") {
			t.Errorf("ParseBusyPolicy(%q) error = %q, want one line naming the key and the valid values", in, msg)
		}
	}
	for _, s := range []string{"wait", "ignore", "2048"} {
		if p, _ := ParseBusyPolicy(s); p.String() != s {
			t.Errorf("ParseBusyPolicy(%q).String() = %q", s, p.String())
		}
	}
}

func TestBusySummary(t *testing.T) {
	t.Parallel()
	r := BusyReport{Policy: BusyPolicy{Mode: BusyWait}, Foreign: []BusyProcess{
		{GPU: "0", PID: 4242, Command: "python train.py", UsedMiB: 10240},
		{GPU: "2", PID: 7, Command: "?", UsedMiB: UnknownMemory},
		{GPU: "2", PID: 8, Command: "a", UsedMiB: 1},
		{GPU: "2", PID: 9, Command: "b", UsedMiB: 1},
		{GPU: "3", PID: 10, Command: "c", UsedMiB: 1},
	}}
	r.decide([]string{"0", "1", "2", "3"})
	want := "GPU 0 busy: pid 4242 (python train.py) 10240 MiB, not this agent's; " +
		"GPU 2 busy: pid 7 (?) unknown MiB, pid 8 (a) 1 MiB, not this agent's (+2 more); waiting (agent.gpu_busy_policy=wait)"
	if got := r.Summary(); got != want {
		t.Errorf("Summary() =\n%s\nwant\n%s", got, want)
	}
	r = BusyReport{Policy: BusyPolicy{Mode: BusyIgnore}, Foreign: r.Foreign}
	r.decide([]string{"0", "1", "2", "3"})
	if r.IsBusy() || r.Summary() != "" {
		t.Errorf("policy ignore: Busy = %q, Summary %q; want neither", r.Busy, r.Summary())
	}
}

// startProc starts a real process that is killed when the test ends, and
// returns once the kernel shows its command line: a parent can see the child
// between the exec and the setup of its arguments, with an empty cmdline.
func startProc(t *testing.T, name string, args ...string) int {
	t.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	cmdline := fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if b, err := os.ReadFile(cmdline); err == nil && len(b) > 0 {
			return cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no command line in %s after a minute", name, cmdline)
		}
	}
}

func TestProcessCommand(t *testing.T) {
	t.Parallel()
	pid := startProc(t, "sh", "-c", "sleep 300; :", "with  two\tspaces")
	if got := ProcessCommand(pid); got != "sh -c sleep 300; : with two spaces" {
		t.Errorf("ProcessCommand(sleep) = %q", got)
	}
	// PIDs above the kernel's limit (2^22) never exist.
	if got := ProcessCommand(1<<22 + 1); got != "?" {
		t.Errorf("ProcessCommand(no such pid) = %q, want ?", got)
	}
}

// TestProcessCommandFake covers what real processes rarely show: a kernel
// thread (empty cmdline, comm only), control characters, very long command
// lines. It swaps procRoot, so it does not run in parallel.
func TestProcessCommandFake(t *testing.T) {
	root := t.TempDir()
	old := procRoot
	procRoot = root
	defer func() { procRoot = old }()
	write := func(pid int, cmdline, comm string) {
		dir := filepath.Join(root, fmt.Sprint(pid))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline), 0o644)
		os.WriteFile(filepath.Join(dir, "comm"), []byte(comm), 0o644)
	}
	write(1, "", "kworker/0:1\n")
	write(2, "python\x00-c\x00print(1)\nprint(2)\x00\x00", "python\n")
	write(3, "python\x00"+strings.Repeat("x", 100), "python\n")
	tests := map[int]string{
		1: "kworker/0:1",
		2: "python -c print(1) print(2)",
		3: "python " + strings.Repeat("x", maxCommand-3-len("python ")) + "...",
		4: "?",
	}
	for pid, want := range tests {
		if got := ProcessCommand(pid); got != want {
			t.Errorf("ProcessCommand(%d) = %q, want %q", pid, got, want)
		}
	}
}

func TestOwnedByProcessTree(t *testing.T) {
	t.Parallel()
	// A grandchild of this process is the agent's without any group.
	sh := exec.Command("sh", "-c", "sleep 300 & echo $!; wait")
	out, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sh.Process.Kill(); sh.Wait() }()
	var grandchild int
	if _, err := fmt.Fscan(out, &grandchild); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(grandchild, syscall.SIGKILL)
	if !OwnedBy(nil, nil)(grandchild) {
		t.Errorf("OwnedBy: grandchild %d of the agent is not its", grandchild)
	}

	// A process that left for its own session and was reparented to init
	// is the agent's only through its process group.
	det := exec.Command("sh", "-c", "setsid sleep 301 </dev/null >/dev/null 2>&1 & echo $!")
	b, err := det.Output()
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if _, pgrp, ok := procStat(pid); ok && pgrp == pid && ProcessCommand(pid) == "sleep 301" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("setsid sleep %d did not start", pid)
		}
	}
	if OwnedBy(nil, nil)(pid) {
		t.Errorf("OwnedBy(no groups): detached process %d counted as the agent's", pid)
	}
	if !OwnedBy(func() []int { return []int{4242, pid} }, nil)(pid) {
		t.Errorf("OwnedBy(its group): detached process %d not counted as the agent's", pid)
	}
	if OwnedBy(func() []int { return []int{1, 0} }, nil)(1) {
		t.Errorf("OwnedBy: init counted as the agent's")
	}
	if OwnedBy(nil, nil)(1<<22 + 1) {
		t.Errorf("OwnedBy: a pid that does not exist counted as the agent's")
	}
}

// TestOwnedByContainer: docker-mode task processes are found by their
// cgroup. It swaps procRoot, so it does not run in parallel.
func TestOwnedByContainer(t *testing.T) {
	root := t.TempDir()
	old := procRoot
	procRoot = root
	defer func() { procRoot = old }()
	id := strings.Repeat("ab12", 16)
	write := func(pid int, stat, cgroup string) {
		dir := filepath.Join(root, fmt.Sprint(pid))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
		os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644)
	}
	write(100, "100 (python) S 90 100 100 0 -1", "0::/system.slice/docker-"+id+".scope\n")
	write(90, "90 (containerd-shim) S 1 90 90 0 -1", "0::/system.slice/containerd.service\n")
	write(200, "200 (evil) (name) S 1 300 300 0 -1", "0::/user.slice\n")
	containers := func() []string { return []string{"", "short", id} }
	if !OwnedBy(nil, containers)(100) {
		t.Errorf("process in the task's container not counted as the agent's")
	}
	if OwnedBy(nil, containers)(90) || OwnedBy(nil, containers)(200) || OwnedBy(nil, nil)(100) {
		t.Errorf("processes outside the task's container counted as the agent's")
	}
	if ppid, pgrp, ok := procStat(200); !ok || ppid != 1 || pgrp != 300 {
		t.Errorf("procStat(comm with parentheses) = %d, %d, %v; want 1, 300", ppid, pgrp, ok)
	}
	if !OwnedBy(func() []int { return []int{300} }, nil)(200) {
		t.Errorf("process in the task's group (comm with parentheses) not counted as the agent's")
	}
}
