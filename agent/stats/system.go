package stats

import (
	"os"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/net"
	"github.com/shirou/gopsutil/v4/sensors"
)

const mib = 1 << 20

// systemReader reads this machine through gopsutil. It keeps the previous
// counters to turn them into rates; Collector serialises calls to read.
type systemReader struct {
	diskPath string
	disks    []string // whole block devices, for disk I/O (no partitions, loops, dm)
	gpu      GPUSampler

	noSensors bool // the first sensor read found no CPU sensor: stop looking

	prevAt                     time.Time
	prevCPU                    []cpu.TimesStat
	prevTx, prevRx             uint64
	prevRead, prevWrite        uint64
	havePrevNet, havePrevDisks bool
}

func newSystemReader(cfg Config) *systemReader {
	p := cfg.DiskPath
	if p == "" {
		p = os.Getenv("HOME")
	}
	if p == "" {
		p = "/"
	}
	return &systemReader{diskPath: p, disks: wholeDisks("/sys/block"), gpu: cfg.GPU}
}

// wholeDisks lists the block devices whose counters are summed for
// disk_read/disk_write. Partitions are not under /sys/block; loop, ram, zram,
// device-mapper and md devices are left out because their I/O is either not
// disk I/O or is counted again on the devices below them.
func wholeDisks(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		switch {
		case strings.HasPrefix(n, "loop"), strings.HasPrefix(n, "ram"), strings.HasPrefix(n, "zram"),
			strings.HasPrefix(n, "dm-"), strings.HasPrefix(n, "md"):
			continue
		}
		out = append(out, n)
	}
	return out
}

func (s *systemReader) read() reading {
	var r reading
	now := time.Now()
	dt := now.Sub(s.prevAt).Seconds()
	first := s.prevAt.IsZero()
	s.prevAt = now

	if times, err := cpu.Times(true); err == nil {
		if len(times) == len(s.prevCPU) && len(times) > 0 {
			var total float64
			for i := range times {
				total += busyPercent(s.prevCPU[i], times[i])
			}
			r.val[fCPU], r.ok[fCPU] = total/float64(len(times)), true
		}
		s.prevCPU = times
	}

	if !s.noSensors {
		if t, ok := cpuTemperature(); ok {
			r.val[fCPUTemp], r.ok[fCPUTemp] = t, true
		} else if first {
			s.noSensors = true
		}
	}

	if vm, err := mem.VirtualMemory(); err == nil {
		r.val[fMemUsed], r.ok[fMemUsed] = float64(vm.Used)/mib, true
		r.val[fMemFree], r.ok[fMemFree] = float64(vm.Available)/mib, true
	}

	if du, err := disk.Usage(s.diskPath); err == nil {
		r.val[fDiskFree], r.ok[fDiskFree] = 100-du.UsedPercent, true
	}

	if nc, err := net.IOCounters(false); err == nil && len(nc) == 1 {
		tx, rx := nc[0].BytesSent, nc[0].BytesRecv
		if s.havePrevNet && !first && dt > 0 {
			r.val[fNetTx], r.ok[fNetTx] = rate(s.prevTx, tx, dt), true
			r.val[fNetRx], r.ok[fNetRx] = rate(s.prevRx, rx, dt), true
		}
		s.prevTx, s.prevRx, s.havePrevNet = tx, rx, true
	}

	if len(s.disks) > 0 {
		if dc, err := disk.IOCounters(s.disks...); err == nil {
			var rd, wr uint64
			for _, d := range dc {
				rd += d.ReadBytes
				wr += d.WriteBytes
			}
			if s.havePrevDisks && !first && dt > 0 {
				r.val[fDiskRead], r.ok[fDiskRead] = rate(s.prevRead, rd, dt), true
				r.val[fDiskWrite], r.ok[fDiskWrite] = rate(s.prevWrite, wr, dt), true
			}
			s.prevRead, s.prevWrite, s.havePrevDisks = rd, wr, true
		}
	}

	if s.gpu != nil {
		if u, t, used, free, err := s.gpu.Sample(); err == nil {
			r.gpu = [numGPUFields][]float64{u, t, used, free}
		}
	}
	return r
}

// busyPercent is the share of non-idle time between two readings of one core.
func busyPercent(a, b cpu.TimesStat) float64 {
	total := func(t cpu.TimesStat) float64 {
		// guest time is already part of user time on Linux
		return t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	}
	all := total(b) - total(a)
	idle := (b.Idle + b.Iowait) - (a.Idle + a.Iowait)
	if all <= 0 {
		return 0
	}
	return min(100, max(0, (all-idle)/all*100))
}

// rate is MiB/s between two byte counters; a counter that went backwards
// (wrap or device removal) counts as no traffic.
func rate(prev, cur uint64, seconds float64) float64 {
	if cur < prev {
		return 0
	}
	return float64(cur-prev) / mib / seconds
}

// cpuTemperature is the hottest coretemp (Intel) or k10temp (AMD) sensor.
func cpuTemperature() (float64, bool) {
	temps, _ := sensors.SensorsTemperatures() // partial results come with an error
	best, found := 0.0, false
	for _, t := range temps {
		if !strings.HasPrefix(t.SensorKey, "coretemp") && !strings.HasPrefix(t.SensorKey, "k10temp") {
			continue
		}
		if !found || t.Temperature > best {
			best, found = t.Temperature, true
		}
	}
	return best, found
}
