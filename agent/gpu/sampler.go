package gpu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// ErrSamplerDisabled is returned by Sample once NVML failed maxFailures times
// in a row; GPU monitoring then stays off, as in the Python agent.
var ErrSamplerDisabled = errors.New("GPU monitoring disabled after 3 consecutive NVML failures")

// maxFailures is how many failed samples in a row turn the sampler off.
const maxFailures = 3

// defaultUtilization is reported for devices without a utilisation counter
// (MIG slices), like the Python agent's default_gpu_utilization.
const defaultUtilization = 100

// Stats is one sample, one entry per visible device, in device order. The
// units match workers.status_report machine_stats: %, °C, MiB.
type Stats struct {
	Usage       []float64
	Temperature []float64
	MemUsedMiB  []float64
	MemFreeMiB  []float64
}

// Sampler reads per-device statistics of the devices an agent may use. It is
// safe for concurrent use.
type Sampler struct {
	lib     nvml.Interface
	visible []string

	mu       sync.Mutex
	inited   bool
	failures int
	disabled bool
}

// NewSampler samples the devices in visible (NVIDIA_VISIBLE_DEVICES entries:
// index, GPU-/MIG- UUID, or "0:1"). An empty list or "all" means every GPU;
// a list that matches nothing also falls back to every GPU, as the Python
// agent does. NVML is initialised on the first Sample.
func NewSampler(lib nvml.Interface, visible []string) *Sampler {
	var v []string
	for _, s := range visible {
		if s = strings.TrimSpace(s); s != "" && !strings.EqualFold(s, "all") {
			v = append(v, s)
		}
	}
	return &Sampler{lib: lib, visible: v}
}

// Sample reads one set of statistics. After 3 consecutive failures it
// returns ErrSamplerDisabled from then on.
func (s *Sampler) Sample() (Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disabled {
		return Stats{}, ErrSamplerDisabled
	}
	st, err := s.sample()
	if err == nil {
		s.failures = 0
		return st, nil
	}
	s.failures++
	if s.failures >= maxFailures {
		s.disabled = true
		s.shutdown()
		return Stats{}, fmt.Errorf("%w: %w", ErrSamplerDisabled, err)
	}
	return Stats{}, err
}

// Close releases NVML.
func (s *Sampler) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown()
}

func (s *Sampler) shutdown() {
	if s.inited {
		s.lib.Shutdown()
		s.inited = false
	}
}

// target is one device to report: a GPU or a MIG slice with its parent.
type target struct {
	dev    nvml.Device
	parent nvml.Device // for MIG slices: temperature comes from the parent
}

func (s *Sampler) sample() (Stats, error) {
	if !s.inited {
		if ret := s.lib.Init(); ret != nvml.SUCCESS {
			return Stats{}, fmt.Errorf("NVML init: %s", ret.Error())
		}
		s.inited = true
	}
	targets, err := s.targets()
	if err != nil {
		return Stats{}, err
	}
	var st Stats
	for _, t := range targets {
		usage := float64(defaultUtilization)
		temp := t.dev
		if t.parent != nil {
			temp = t.parent
		} else {
			u, ret := t.dev.GetUtilizationRates()
			if ret != nvml.SUCCESS {
				return Stats{}, fmt.Errorf("NVML utilization: %s", ret.Error())
			}
			usage = float64(u.Gpu)
		}
		c, ret := temp.GetTemperature(nvml.TEMPERATURE_GPU)
		if ret != nvml.SUCCESS {
			return Stats{}, fmt.Errorf("NVML temperature: %s", ret.Error())
		}
		mem, ret := t.dev.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return Stats{}, fmt.Errorf("NVML memory: %s", ret.Error())
		}
		st.Usage = append(st.Usage, usage)
		st.Temperature = append(st.Temperature, float64(c))
		st.MemUsedMiB = append(st.MemUsedMiB, float64(mem.Used)/(1<<20))
		st.MemFreeMiB = append(st.MemFreeMiB, float64(mem.Free)/(1<<20))
	}
	return st, nil
}

// targets lists the devices to report, in NVML order: a whole GPU when it
// (by index or UUID) is visible, each visible MIG slice of it otherwise.
func (s *Sampler) targets() ([]target, error) {
	n, ret := s.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("NVML device count: %s", ret.Error())
	}
	var all, picked []target
	for i := range n {
		dev, ret := s.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("NVML GPU %d: %s", i, ret.Error())
		}
		all = append(all, target{dev: dev})
		if len(s.visible) == 0 {
			continue
		}
		uuid, _ := dev.GetUUID()
		if s.isVisible(strconv.Itoa(i), uuid) {
			picked = append(picked, target{dev: dev})
			continue
		}
		if cur, _, ret := dev.GetMigMode(); ret != nvml.SUCCESS || cur != nvml.DEVICE_MIG_ENABLE {
			continue
		}
		slots, ret := dev.GetMaxMigDeviceCount()
		if ret != nvml.SUCCESS {
			continue
		}
		for j := range slots {
			m, ret := dev.GetMigDeviceHandleByIndex(j)
			if ret != nvml.SUCCESS {
				continue
			}
			muuid, _ := m.GetUUID()
			if s.isVisible(fmt.Sprintf("%d:%d", i, j), muuid) {
				picked = append(picked, target{dev: m, parent: dev})
			}
		}
	}
	if len(picked) == 0 {
		return all, nil
	}
	return picked, nil
}

func (s *Sampler) isVisible(id, uuid string) bool {
	for _, v := range s.visible {
		if v == id || (uuid != "" && strings.EqualFold(v, uuid)) {
			return true
		}
	}
	return false
}
