package stats

import (
	"math"
	"sync"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// GPUSampler returns one value per visible GPU (or MIG slice), in the order the
// server should list them: utilisation [%], temperature [°C], memory used and
// memory free [MiB]. The agent/gpu package implements it over NVML and owns
// turning GPU monitoring off after repeated failures; an error here only
// means that this sample has no GPU figures.
type GPUSampler interface {
	Sample() (usage, temp, memUsed, memFree []float64, err error)
}

// Config configures a Collector.
type Config struct {
	// DiskPath is the file system reported as disk_free_home
	// (resource_monitoring.disk_use_path); empty means $HOME, then "/".
	DiskPath string
	// GPU supplies the gpu_* fields; nil means the report has none.
	GPU GPUSampler
}

// Scalar fields of one reading, used as indexes into fixed-size arrays so that
// sampling allocates nothing of its own.
const (
	fCPU = iota
	fCPUTemp
	fMemUsed
	fMemFree
	fDiskFree
	fNetTx
	fNetRx
	fDiskRead
	fDiskWrite
	numFields
)

// GPU list fields.
const (
	gUsage = iota
	gTemp
	gMemUsed
	gMemFree
	numGPUFields
)

// reading is one sample: a value per field, and whether it was available.
type reading struct {
	val [numFields]float64
	ok  [numFields]bool
	gpu [numGPUFields][]float64 // nil when there is no GPU figure
}

// Collector accumulates samples between two Reports. It is safe for one
// goroutine calling Sample and another calling Report.
type Collector struct {
	read   func() reading // the system reader; tests inject their own
	readMu sync.Mutex     // one read at a time: the reader keeps previous counters

	mu    sync.Mutex
	sum   [numFields]float64
	cnt   [numFields]int
	gsum  [numGPUFields][]float64
	gcnt  [numGPUFields][]int
	taken int // samples since the last Report
}

// NewCollector returns a Collector reading this machine. It takes a first,
// unreported reading so that counter-based rates (CPU, network, disk I/O) are
// available from the first Sample on.
func NewCollector(cfg Config) *Collector {
	s := newSystemReader(cfg)
	s.read() // baseline for the counter deltas
	return &Collector{read: s.read}
}

// Sample takes one reading and adds it to the running averages. It is cheap
// (a few /proc and /sys reads) and meant to be called every few seconds.
func (c *Collector) Sample() {
	c.readMu.Lock()
	r := c.read()
	c.readMu.Unlock()
	c.add(r)
}

func (c *Collector) add(r reading) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.taken++
	for i := range numFields {
		if r.ok[i] {
			c.sum[i] += r.val[i]
			c.cnt[i]++
		}
	}
	for g := range numGPUFields {
		v := r.gpu[g]
		if v == nil {
			continue
		}
		if len(c.gsum[g]) != len(v) { // the device set changed: restart this list
			c.gsum[g] = make([]float64, len(v))
			c.gcnt[g] = make([]int, len(v))
		}
		for i, x := range v {
			c.gsum[g][i] += x
			c.gcnt[g][i]++
		}
	}
}

// Report returns the averages of the samples taken since the previous Report,
// rounded to 3 decimals, and starts a new period. When no sample was taken
// since then, it takes one first.
func (c *Collector) Report() api.MachineStats {
	c.mu.Lock()
	empty := c.taken == 0
	c.mu.Unlock()
	if empty {
		c.Sample()
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	avg := func(i int) float64 {
		if c.cnt[i] == 0 {
			return 0
		}
		return round3(c.sum[i] / float64(c.cnt[i]))
	}
	one := func(i int) []float64 {
		if c.cnt[i] == 0 {
			return nil
		}
		return []float64{avg(i)}
	}
	list := func(g int) []float64 {
		if len(c.gsum[g]) == 0 {
			return nil
		}
		var out []float64
		for i, s := range c.gsum[g] {
			if n := c.gcnt[g][i]; n > 0 {
				if out == nil {
					out = make([]float64, len(c.gsum[g]))
				}
				out[i] = round3(s / float64(n))
			}
		}
		return out
	}
	ms := api.MachineStats{
		CPUUsage:       one(fCPU),
		CPUTemperature: one(fCPUTemp),
		MemoryUsed:     avg(fMemUsed),
		MemoryFree:     avg(fMemFree),
		DiskFreeHome:   avg(fDiskFree),
		NetworkTx:      avg(fNetTx),
		NetworkRx:      avg(fNetRx),
		DiskRead:       avg(fDiskRead),
		DiskWrite:      avg(fDiskWrite),
		GPUUsage:       list(gUsage),
		GPUTemperature: list(gTemp),
		GPUMemoryUsed:  list(gMemUsed),
		GPUMemoryFree:  list(gMemFree),
	}
	c.sum, c.cnt, c.taken = [numFields]float64{}, [numFields]int{}, 0
	for g := range numGPUFields {
		clear(c.gsum[g])
		clear(c.gcnt[g])
	}
	return ms
}

func round3(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return math.Round(v*1000) / 1000
}
