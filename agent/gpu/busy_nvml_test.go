//go:build cgo

package gpu

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/google/go-cmp/cmp"
)

// sleeper starts a real process to stand for a GPU client; its command
// line is "sleep <secs>", so that the test can tell them apart.
func sleeper(t *testing.T, secs int) int {
	t.Helper()
	return startProc(t, "sleep", fmt.Sprint(secs))
}

// procServer is a DGX A100 mock whose GPU i runs compute[i] and
// graphics[i] (none where absent).
func procServer(compute, graphics map[int][]nvml.ProcessInfo) *dgxa100.Server {
	srv := dgxa100.New()
	for i, d := range srv.Devices {
		setProcs(&d.(*dgxa100.Device).Device, compute[i], graphics[i])
	}
	return srv
}

func setProcs(d *mock.Device, compute, graphics []nvml.ProcessInfo) {
	d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return compute, nvml.SUCCESS }
	d.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return graphics, nvml.SUCCESS }
}

func proc(pid int, mib uint64) nvml.ProcessInfo {
	return nvml.ProcessInfo{Pid: uint32(pid), UsedGpuMemory: mib << 20}
}

func mineOf(pids ...int) func(int) bool {
	return func(p int) bool {
		for _, q := range pids {
			if p == q {
				return true
			}
		}
		return false
	}
}

func TestBusyCheckWait(t *testing.T) {
	t.Parallel()
	foreign, task, other := sleeper(t, 301), sleeper(t, 302), sleeper(t, 303)
	srv := procServer(map[int][]nvml.ProcessInfo{
		0: {proc(other, 500)},                       // not assigned to this agent
		1: {proc(foreign, 10240), proc(task, 4096)}, // a foreign process next to a task of ours
		3: {proc(task, 100)},                        // only ours
	}, nil)
	uuid3, _ := srv.Devices[3].GetUUID()
	c := NewBusyCheckerWith(srv, []string{"1", uuid3}, BusyPolicy{}, mineOf(task))
	defer c.Close()
	r, err := c.Check()
	if err != nil {
		t.Fatal(err)
	}
	want := []BusyProcess{{GPU: "1", PID: foreign, Command: "sleep 301", UsedMiB: 10240}}
	if diff := cmp.Diff(want, r.Foreign); diff != "" {
		t.Errorf("Foreign (-want +got):\n%s", diff)
	}
	if !r.IsBusy() || !cmp.Equal(r.Busy, []string{"1"}) {
		t.Errorf("Busy = %q, want [1]", r.Busy)
	}
	wantSummary := fmt.Sprintf("GPU 1 busy: pid %d (sleep 301) 10240 MiB, not this agent's; waiting (agent.gpu_busy_policy=wait)", foreign)
	if got := r.Summary(); got != wantSummary {
		t.Errorf("Summary() =\n%s\nwant\n%s", got, wantSummary)
	}

	// Once the task's process is the only one left, the GPUs are free.
	c = NewBusyCheckerWith(srv, []string{uuid3}, BusyPolicy{}, mineOf(task))
	defer c.Close()
	if r, err := c.Check(); err != nil || r.IsBusy() || len(r.Foreign) != 0 || r.Summary() != "" {
		t.Errorf("Check(GPU 3, only the task) = %+v, %v; want not busy", r, err)
	}
}

func TestBusyCheckThreshold(t *testing.T) {
	t.Parallel()
	a, b := sleeper(t, 304), sleeper(t, 305)
	policy, err := ParseBusyPolicy("2048MiB")
	if err != nil {
		t.Fatal(err)
	}
	// b is both a compute and a graphics client: counted once.
	srv := procServer(
		map[int][]nvml.ProcessInfo{0: {proc(a, 1024), proc(b, 512)}, 1: {proc(a, 1500), proc(b, 600)}},
		map[int][]nvml.ProcessInfo{0: {proc(b, 512)}},
	)
	c := NewBusyCheckerWith(srv, []string{"0", "1"}, policy, nil)
	defer c.Close()
	r, err := c.Check()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Foreign) != 4 {
		t.Errorf("Foreign = %+v, want a and b on GPUs 0 and 1", r.Foreign)
	}
	// GPU 0: 1536 MiB in all, under the threshold; GPU 1: 2100 MiB, over.
	if !cmp.Equal(r.Busy, []string{"1"}) {
		t.Errorf("Busy = %q, want [1]", r.Busy)
	}
	want := fmt.Sprintf("GPU 1 busy: pid %d (sleep 304) 1500 MiB, pid %d (sleep 305) 600 MiB, not this agent's, 2100 MiB in all > 2048 MiB; waiting (agent.gpu_busy_policy=2048)", a, b)
	if got := r.Summary(); got != want {
		t.Errorf("Summary() =\n%s\nwant\n%s", got, want)
	}

	// Memory NVML cannot report counts as over the threshold.
	srv = procServer(map[int][]nvml.ProcessInfo{0: {{Pid: uint32(a), UsedGpuMemory: notAvailable}}}, nil)
	c = NewBusyCheckerWith(srv, []string{"0"}, policy, nil)
	defer c.Close()
	r, err = c.Check()
	if err != nil || !r.IsBusy() || !strings.Contains(r.Summary(), "unknown MiB") {
		t.Errorf("Check(unknown memory) = %+v (%q), %v; want busy with unknown MiB", r, r.Summary(), err)
	}
}

func TestBusyCheckIgnoreSkipsNVML(t *testing.T) {
	t.Parallel()
	var inits atomic.Int32
	lib := &mock.Interface{InitFunc: func() nvml.Return { inits.Add(1); return nvml.SUCCESS }}
	c := NewBusyCheckerWith(lib, nil, BusyPolicy{Mode: BusyIgnore}, nil)
	defer c.Close()
	if r, err := c.Check(); err != nil || r.IsBusy() {
		t.Errorf("Check(ignore) = %+v, %v; want not busy", r, err)
	}
	if n := inits.Load(); n != 0 {
		t.Errorf("policy ignore called NVML Init %d times", n)
	}
}

func TestBusyCheckAllGPUs(t *testing.T) {
	t.Parallel()
	pid := sleeper(t, 306)
	srv := procServer(map[int][]nvml.ProcessInfo{6: {proc(pid, 1)}}, nil)
	for _, devices := range [][]string{nil, {"all"}} {
		c := NewBusyCheckerWith(srv, devices, BusyPolicy{}, nil)
		r, err := c.Check()
		c.Close()
		if err != nil || !cmp.Equal(r.Busy, []string{"6"}) {
			t.Errorf("Check(%q) = %+v, %v; want GPU 6 busy", devices, r, err)
		}
	}
}

func TestBusyCheckMIG(t *testing.T) {
	t.Parallel()
	a, b := sleeper(t, 304), sleeper(t, 305)
	srv := procServer(nil, nil)
	migs := withMIG(t, srv, 7, "MIG-aaaa", "MIG-bbbb")
	setProcs(migs[0], []nvml.ProcessInfo{proc(a, 300)}, nil)
	setProcs(migs[1], []nvml.ProcessInfo{proc(b, 200)}, nil)
	// The parent lists all slices only to privileged callers.
	parent := srv.Devices[7].(*dgxa100.Device)
	parent.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_NO_PERMISSION }

	tests := []struct {
		devices []string
		want    []BusyProcess
	}{
		{[]string{"7:1"}, []BusyProcess{{GPU: "7:1", PID: b, Command: "sleep 305", UsedMiB: 200}}},
		{[]string{"MIG-AAAA"}, []BusyProcess{{GPU: "7:0", PID: a, Command: "sleep 304", UsedMiB: 300}}},
		{[]string{"7"}, []BusyProcess{{GPU: "7", PID: a, Command: "sleep 304", UsedMiB: 300}, {GPU: "7", PID: b, Command: "sleep 305", UsedMiB: 200}}},
	}
	for _, tt := range tests {
		c := NewBusyCheckerWith(srv, tt.devices, BusyPolicy{}, nil)
		r, err := c.Check()
		c.Close()
		if err != nil {
			t.Errorf("Check(%q): %v", tt.devices, err)
			continue
		}
		if diff := cmp.Diff(tt.want, r.Foreign); diff != "" {
			t.Errorf("Check(%q).Foreign (-want +got):\n%s", tt.devices, diff)
		}
	}

	// A privileged caller sees one process on two slices once, with the
	// memory of both.
	parent.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{
			{Pid: uint32(a), UsedGpuMemory: 300 << 20, GpuInstanceId: 1},
			{Pid: uint32(a), UsedGpuMemory: 200 << 20, GpuInstanceId: 2},
		}, nvml.SUCCESS
	}
	c := NewBusyCheckerWith(srv, []string{"7"}, BusyPolicy{}, nil)
	defer c.Close()
	r, err := c.Check()
	want := []BusyProcess{{GPU: "7", PID: a, Command: "sleep 304", UsedMiB: 500}}
	if err != nil || !cmp.Equal(want, r.Foreign) {
		t.Errorf("Check(7, privileged) = %+v, %v; want %+v", r.Foreign, err, want)
	}
}

func TestBusyCheckErrors(t *testing.T) {
	t.Parallel()
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
	if _, err := NewBusyCheckerWith(lib, []string{"0"}, BusyPolicy{}, nil).Check(); !errors.Is(err, ErrNoNVML) {
		t.Errorf("Check(no library) error = %v, want ErrNoNVML", err)
	}

	srv := procServer(nil, nil)
	_, err := NewBusyCheckerWith(srv, []string{"0", "9"}, BusyPolicy{}, nil).Check()
	if err == nil || !strings.Contains(err.Error(), "GPU 9 is not visible to NVML") {
		t.Errorf("Check(GPU 9 of 8) error = %v, want GPU 9 not visible", err)
	}

	d := srv.Devices[2].(*dgxa100.Device)
	d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_GPU_IS_LOST }
	_, err = NewBusyCheckerWith(srv, []string{"2"}, BusyPolicy{}, nil).Check()
	if err == nil || !strings.Contains(err.Error(), "GPU 2") || !strings.Contains(err.Error(), "ERROR_GPU_IS_LOST") {
		t.Errorf("Check(lost GPU) error = %v, want the NVML error naming GPU 2", err)
	}

	// Graphics listing unsupported (datacenter GPUs): compute is enough.
	d = srv.Devices[4].(*dgxa100.Device)
	d.GetGraphicsRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED }
	if r, err := NewBusyCheckerWith(srv, []string{"4"}, BusyPolicy{}, nil).Check(); err != nil || r.IsBusy() {
		t.Errorf("Check(graphics not supported) = %+v, %v; want not busy", r, err)
	}
}
