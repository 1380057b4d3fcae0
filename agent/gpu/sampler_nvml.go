//go:build cgo

package gpu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NewSampler samples the devices in visible (NVIDIA_VISIBLE_DEVICES entries:
// index, GPU-/MIG- UUID, or "0:1") through lib (the system library or one of
// go-nvml's mock servers). An empty list or "all" means every GPU; a list that
// matches nothing also falls back to every GPU, as the Python agent does.
// NVML is initialised on the first Sample.
func NewSampler(lib nvml.Interface, visible []string) *Sampler {
	var v []string
	for _, s := range visible {
		if s = strings.TrimSpace(s); s != "" && !strings.EqualFold(s, "all") {
			v = append(v, s)
		}
	}
	return &Sampler{src: &nvmlSource{lib: lib, visible: v}}
}

// NewSystemSampler is NewSampler on the system NVML library
// (libnvidia-ml.so, loaded on the first Sample). Callers that do not need a
// mock use it rather than nvml.New, so that they build without cgo too.
func NewSystemSampler(visible []string) *Sampler {
	return NewSampler(nvml.New(), visible)
}

// defaultUtilization is reported for devices without a utilisation counter
// (MIG slices), like the Python agent's default_gpu_utilization.
const defaultUtilization = 100

// nvmlSource reads the statistics through NVML.
type nvmlSource struct {
	lib     nvml.Interface
	visible []string
	inited  bool
}

func (s *nvmlSource) shutdown() {
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

func (s *nvmlSource) sample() (Stats, error) {
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
func (s *nvmlSource) targets() ([]target, error) {
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

func (s *nvmlSource) isVisible(id, uuid string) bool {
	for _, v := range s.visible {
		if v == id || (uuid != "" && strings.EqualFold(v, uuid)) {
			return true
		}
	}
	return false
}
