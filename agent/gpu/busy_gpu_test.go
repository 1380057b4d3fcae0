//go:build gpu && cgo

package gpu

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// occupy is a CUDA client that holds 1 GiB on GPU 0 through the driver API
// (ctypes, no packages needed) and says "ready" once it does.
const occupy = `
import ctypes, sys, time
cuda = ctypes.CDLL("libcuda.so.1")
def ok(r, what):
    if r != 0:
        sys.exit("%s failed: CUDA error %d" % (what, r))
ok(cuda.cuInit(0), "cuInit")
dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
ok(cuda.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
ok(cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev), "cuCtxCreate")
ok(cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(1 << 30)), "cuMemAlloc")
print("ready", flush=True)
time.sleep(600)
`

// TestBusyRealCUDA needs a GPU machine (go test -tags gpu -run
// TestBusyRealCUDA -v ./agent/gpu/): a real CUDA process on GPU 0 makes it
// busy with its pid, command and memory, and not busy once it counts as
// this agent's.
func TestBusyRealCUDA(t *testing.T) {
	cmd := exec.Command("python3", "-c", occupy, "occupy-gpu0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("CUDA client did not get ready: %q, %v", line, err)
	}
	pid := cmd.Process.Pid

	c := NewBusyChecker([]string{"0"}, BusyPolicy{}, nil)
	defer c.Close()
	r, err := c.Check()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("policy wait: %s", r.Summary())
	var found *BusyProcess
	for i, p := range r.Foreign {
		if p.PID == pid {
			found = &r.Foreign[i]
		}
	}
	if found == nil || !r.IsBusy() {
		t.Fatalf("Check() = %+v; want GPU 0 busy with pid %d", r, pid)
	}
	if !strings.Contains(found.Command, "python3 -c") || found.UsedMiB < 1024 || found.UsedMiB == UnknownMemory {
		t.Errorf("process = %+v; want its python3 command and at least 1024 MiB", *found)
	}
	if !strings.Contains(r.Summary(), fmt.Sprintf("GPU 0 busy: pid %d (python3 -c", pid)) {
		t.Errorf("Summary() = %q, want GPU 0 and pid %d", r.Summary(), pid)
	}

	threshold := NewBusyChecker([]string{"0"}, BusyPolicy{Mode: BusyThreshold, ThresholdMiB: 1 << 20}, nil)
	defer threshold.Close()
	if r, err := threshold.Check(); err != nil || r.IsBusy() {
		t.Errorf("threshold 1 TiB: %+v, %v; want not busy", r, err)
	}

	mine := NewBusyChecker([]string{"0"}, BusyPolicy{}, func(p int) bool { return p == pid })
	defer mine.Close()
	r, err = mine.Check()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Foreign {
		if p.PID == pid {
			t.Errorf("the agent's own task process %d counted as foreign: %+v", pid, r)
		}
	}
	t.Logf("with pid %d as the agent's: busy=%v %s", pid, r.IsBusy(), r.Summary())
}
