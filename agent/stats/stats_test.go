package stats

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shirou/gopsutil/v4/cpu"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

func TestRealMachineValuesArePlausible(t *testing.T) {
	c := NewCollector(Config{DiskPath: t.TempDir()})
	c.Sample()
	time.Sleep(50 * time.Millisecond) // let the CPU and I/O counters move
	c.Sample()
	ms := c.Report()
	t.Logf("machine_stats: %+v", ms)

	if ms.MemoryUsed+ms.MemoryFree <= 0 {
		t.Errorf("memory_used %v + memory_free %v, want > 0", ms.MemoryUsed, ms.MemoryFree)
	}
	if len(ms.CPUUsage) != 1 {
		t.Fatalf("cpu_usage = %v, want one value", ms.CPUUsage)
	}
	if u := ms.CPUUsage[0]; u < 0 || u > 100 {
		t.Errorf("cpu_usage = %v, want within [0,100]", u)
	}
	if ms.DiskFreeHome <= 0 || ms.DiskFreeHome > 100 {
		t.Errorf("disk_free_home = %v, want within (0,100]", ms.DiskFreeHome)
	}
	for name, v := range map[string]float64{"network_tx": ms.NetworkTx, "network_rx": ms.NetworkRx, "disk_read": ms.DiskRead, "disk_write": ms.DiskWrite} {
		if v < 0 {
			t.Errorf("%s = %v, want >= 0", name, v)
		}
	}
	if ms.GPUUsage != nil || ms.GPUTemperature != nil || ms.GPUMemoryUsed != nil || ms.GPUMemoryFree != nil {
		t.Errorf("GPU fields set without a GPUSampler: %+v", ms)
	}
}

func TestReportWithoutSampleTakesOne(t *testing.T) {
	c := NewCollector(Config{})
	ms := c.Report()
	if ms.MemoryUsed <= 0 {
		t.Errorf("memory_used = %v, want > 0 from the implicit sample", ms.MemoryUsed)
	}
}

// injected returns a Collector whose reads come from rs, in order.
func injected(rs ...reading) *Collector {
	i := 0
	return &Collector{read: func() reading {
		r := rs[i%len(rs)]
		i++
		return r
	}}
}

func rd(vals map[int]float64, gpu ...[]float64) reading {
	var r reading
	for k, v := range vals {
		r.val[k], r.ok[k] = v, true
	}
	if len(gpu) == numGPUFields {
		copy(r.gpu[:], gpu)
	}
	return r
}

func TestAveragingAndRounding(t *testing.T) {
	c := injected(
		rd(map[int]float64{fCPU: 10, fMemUsed: 1000, fMemFree: 3000, fDiskFree: 50, fNetTx: 1, fDiskRead: 0.1}),
		rd(map[int]float64{fCPU: 20, fMemUsed: 2000, fMemFree: 2000, fDiskFree: 50, fNetTx: 2, fCPUTemp: 61}),
		rd(map[int]float64{fCPU: 30.5, fMemUsed: 1500, fMemFree: 2500, fDiskFree: 50.0004, fNetTx: 2}),
	)
	for range 3 {
		c.Sample()
	}
	got := c.Report()
	want := api.MachineStats{
		CPUUsage:       []float64{20.167}, // 60.5/3 = 20.1666…
		CPUTemperature: []float64{61},     // only the sample that had it
		MemoryUsed:     1500,
		MemoryFree:     2500,
		DiskFreeHome:   50,    // 150.0004/3 = 50.000133…
		NetworkTx:      1.667, // 5/3
		DiskRead:       0.1,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Report (-want +got):\n%s", d)
	}

	// Report resets: the next period averages only its own samples.
	c = injected(rd(map[int]float64{fCPU: 10}), rd(map[int]float64{fCPU: 90}))
	c.Sample()
	if got := c.Report().CPUUsage; !cmp.Equal(got, []float64{10}) {
		t.Errorf("first period cpu_usage = %v, want [10]", got)
	}
	c.Sample()
	if got := c.Report().CPUUsage; !cmp.Equal(got, []float64{90}) {
		t.Errorf("second period cpu_usage = %v, want [90]", got)
	}
}

func TestGPUListsAveragedPerDevice(t *testing.T) {
	c := injected(
		rd(nil, []float64{10, 100}, []float64{40, 70}, []float64{1000, 2000}, []float64{9000, 8000}),
		rd(nil, []float64{20, 50}, []float64{42, 71}, []float64{3000, 2000}, []float64{7000, 8000}),
	)
	c.Sample()
	c.Sample()
	got := c.Report()
	want := api.MachineStats{
		GPUUsage:       []float64{15, 75},
		GPUTemperature: []float64{41, 70.5},
		GPUMemoryUsed:  []float64{2000, 2000},
		GPUMemoryFree:  []float64{8000, 8000},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Report (-want +got):\n%s", d)
	}
}

func TestGPUDeviceSetChangeRestartsList(t *testing.T) {
	c := injected(
		rd(nil, []float64{10, 20}, []float64{1, 2}, []float64{1, 2}, []float64{1, 2}),
		rd(nil, []float64{50}, []float64{3}, []float64{3}, []float64{3}),
	)
	c.Sample()
	c.Sample()
	if got := c.Report().GPUUsage; !cmp.Equal(got, []float64{50}) {
		t.Errorf("gpu_usage = %v, want [50] (only the current device set)", got)
	}
}

type fakeGPU struct {
	calls int
	err   error
}

func (f *fakeGPU) Sample() (usage, temp, memUsed, memFree []float64, err error) {
	f.calls++
	if f.err != nil {
		return nil, nil, nil, nil, f.err
	}
	return []float64{33.3333}, []float64{55}, []float64{1024}, []float64{80000}, nil
}

func TestGPUFieldsFromSampler(t *testing.T) {
	g := &fakeGPU{}
	c := NewCollector(Config{GPU: g})
	c.Sample()
	got := c.Report()
	want := api.MachineStats{
		GPUUsage:       []float64{33.333},
		GPUTemperature: []float64{55},
		GPUMemoryUsed:  []float64{1024},
		GPUMemoryFree:  []float64{80000},
	}
	if d := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool {
		s := p.String()
		return s != "GPUUsage" && s != "GPUTemperature" && s != "GPUMemoryUsed" && s != "GPUMemoryFree"
	}, cmp.Ignore())); d != "" {
		t.Errorf("GPU fields (-want +got):\n%s", d)
	}
}

// A failing GPU sampler leaves the GPU fields out; turning it off after
// repeated failures is agent/gpu's (TestSamplerDisablesAfterThreeFailures).
func TestGPUSamplerFailureLeavesGPUFieldsOut(t *testing.T) {
	g := &fakeGPU{err: errors.New("nvml: GPU is lost")}
	c := NewCollector(Config{GPU: g})
	for range 5 {
		c.Sample()
	}
	if g.calls != 6 { // the baseline read and 5 samples
		t.Errorf("GPU sampler called %d times, want 6", g.calls)
	}
	if got := c.Report(); got.GPUUsage != nil {
		t.Errorf("gpu_usage = %v, want none after failures", got.GPUUsage)
	}
}

func TestBusyPercentAndRate(t *testing.T) {
	a := cpu.TimesStat{User: 10, System: 10, Idle: 80}
	b := cpu.TimesStat{User: 40, System: 20, Idle: 120, Iowait: 20}
	if got := busyPercent(a, b); got != 40 { // busy 40 of 100
		t.Errorf("busyPercent = %v, want 40", got)
	}
	if got := busyPercent(a, a); got != 0 {
		t.Errorf("busyPercent with no elapsed time = %v, want 0", got)
	}
	if got := rate(100, 50, 1); got != 0 {
		t.Errorf("rate on a counter reset = %v, want 0", got)
	}
	if got := rate(0, 3*mib, 2); got != 1.5 {
		t.Errorf("rate = %v, want 1.5 MiB/s", got)
	}
}

func TestWholeDisksSkipsVirtualDevices(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"sda", "nvme0n1", "loop0", "dm-0", "zram0", "md127", "ram0"} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if d := cmp.Diff([]string{"nvme0n1", "sda"}, wholeDisks(dir)); d != "" {
		t.Errorf("wholeDisks (-want +got):\n%s", d)
	}
}

func BenchmarkSample(b *testing.B) {
	c := NewCollector(Config{})
	b.ReportAllocs()
	for b.Loop() {
		c.Sample()
	}
}
