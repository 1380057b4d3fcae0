//go:build cgo

package gpu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NewBusyCheckerWith checks the devices (Assignment.Devices entries: index,
// "0:1", GPU-/MIG- UUID; empty or "all" means every GPU) through lib (the
// system library or one of go-nvml's mock servers). mine says whether a pid
// belongs to one of this agent's tasks (nil: none does). NVML is initialised
// on the first Check.
func NewBusyCheckerWith(lib nvml.Interface, devices []string, policy BusyPolicy, mine func(pid int) bool) *BusyChecker {
	var d []string
	for _, s := range devices {
		if s = strings.TrimSpace(s); s != "" && !strings.EqualFold(s, "all") {
			d = append(d, s)
		}
	}
	return newBusyChecker(&nvmlProcs{lib: lib, devices: d}, policy, mine)
}

// NewBusyChecker is NewBusyCheckerWith on the system NVML library. Callers
// use it rather than nvml.New so that they build without cgo too.
func NewBusyChecker(devices []string, policy BusyPolicy, mine func(pid int) bool) *BusyChecker {
	return NewBusyCheckerWith(nvml.New(), devices, policy, mine)
}

type nvmlProcs struct {
	lib     nvml.Interface
	devices []string
	inited  bool
}

func (s *nvmlProcs) shutdown() {
	if s.inited {
		s.lib.Shutdown()
		s.inited = false
	}
}

// checked is one device to look at, with the name messages use.
type checked struct {
	name string
	gpu  nvml.Device // a whole GPU
	mig  nvml.Device // or one MIG slice
}

func (s *nvmlProcs) processes() ([]BusyProcess, []string, error) {
	if !s.inited {
		if ret := s.lib.Init(); ret != nvml.SUCCESS {
			if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
				return nil, nil, ErrNoNVML
			}
			return nil, nil, fmt.Errorf("NVML init: %s; check that the NVIDIA driver is loaded (nvidia-smi)", ret.Error())
		}
		s.inited = true
	}
	targets, err := s.resolve()
	if err != nil {
		return nil, nil, err
	}
	var out []BusyProcess
	var names []string
	for _, t := range targets {
		names = append(names, t.name)
		var procs []nvml.ProcessInfo
		if t.gpu != nil {
			procs, err = listProcs(t.gpu)
			if migs := migHandles(t.gpu); err != nil && len(migs) > 0 {
				// A MIG-enabled GPU lists the processes of all its
				// slices only to privileged callers; ask each slice.
				procs, err = listProcs(migs...)
			}
		} else {
			procs, err = listProcs(t.mig)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("NVML processes on GPU %s: %w", t.name, err)
		}
		for _, p := range merge(procs) {
			out = append(out, BusyProcess{GPU: t.name, PID: int(p.Pid), UsedMiB: usedMiB(p.UsedGpuMemory)})
		}
	}
	return out, names, nil
}

// listProcs lists the compute and graphics processes of devs. Graphics
// processes that NVML does not support listing are skipped.
func listProcs(devs ...nvml.Device) ([]nvml.ProcessInfo, error) {
	var out []nvml.ProcessInfo
	for _, dev := range devs {
		compute, ret := dev.GetComputeRunningProcesses()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("compute processes: %s", ret.Error())
		}
		graphics, ret := dev.GetGraphicsRunningProcesses()
		if ret != nvml.SUCCESS && ret != nvml.ERROR_NOT_SUPPORTED {
			return nil, fmt.Errorf("graphics processes: %s", ret.Error())
		}
		out = append(append(out, compute...), graphics...)
	}
	return out, nil
}

// notAvailable is NVML_VALUE_NOT_AVAILABLE in ProcessInfo.UsedGpuMemory.
const notAvailable = ^uint64(0)

// merge keeps one entry per pid (a process can be both a compute and a
// graphics client, or run on several MIG slices), in first-seen order,
// adding the memory of different slices.
func merge(procs []nvml.ProcessInfo) []nvml.ProcessInfo {
	type key struct{ pid, gi, ci uint32 }
	seen := map[key]bool{}
	index := map[uint32]int{}
	var out []nvml.ProcessInfo
	for _, p := range procs {
		k := key{p.Pid, p.GpuInstanceId, p.ComputeInstanceId}
		if seen[k] {
			continue // the same context listed as compute and graphics
		}
		seen[k] = true
		i, ok := index[p.Pid]
		if !ok {
			index[p.Pid] = len(out)
			out = append(out, p)
			continue
		}
		if out[i].UsedGpuMemory == notAvailable || p.UsedGpuMemory == notAvailable {
			out[i].UsedGpuMemory = notAvailable
		} else {
			out[i].UsedGpuMemory += p.UsedGpuMemory
		}
	}
	return out
}

func usedMiB(b uint64) uint64 {
	if b == notAvailable {
		return UnknownMemory
	}
	return b >> 20
}

// resolve turns the assigned devices into NVML handles, in assignment
// order; no devices means every GPU.
func (s *nvmlProcs) resolve() ([]checked, error) {
	n, ret := s.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("NVML device count: %s", ret.Error())
	}
	type gpuInfo struct {
		dev  nvml.Device
		uuid string
	}
	gpus := make([]gpuInfo, n)
	for i := range n {
		dev, ret := s.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("NVML GPU %d: %s", i, ret.Error())
		}
		uuid, _ := dev.GetUUID()
		gpus[i] = gpuInfo{dev, uuid}
	}
	if len(s.devices) == 0 {
		out := make([]checked, n)
		for i, g := range gpus {
			out[i] = checked{name: strconv.Itoa(i), gpu: g.dev}
		}
		return out, nil
	}
	var out []checked
	for _, want := range s.devices {
		found := false
		for i, g := range gpus {
			if want == strconv.Itoa(i) || strings.EqualFold(want, g.uuid) {
				out, found = append(out, checked{name: strconv.Itoa(i), gpu: g.dev}), true
				break
			}
			for j, m := range migSlots(g.dev) {
				if m == nil {
					continue
				}
				muuid, _ := m.GetUUID()
				if want == fmt.Sprintf("%d:%d", i, j) || (muuid != "" && strings.EqualFold(want, muuid)) {
					out, found = append(out, checked{name: fmt.Sprintf("%d:%d", i, j), mig: m}), true
					break
				}
			}
			if found {
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("GPU %s is not visible to NVML; check the agent's --gpus against `agent-provision gpus`", want)
		}
	}
	return out, nil
}

// migSlots returns the MIG device handles of dev by slot (nil for an empty
// slot), or nothing when MIG is off.
func migSlots(dev nvml.Device) []nvml.Device {
	if cur, _, ret := dev.GetMigMode(); ret != nvml.SUCCESS || cur != nvml.DEVICE_MIG_ENABLE {
		return nil
	}
	slots, ret := dev.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return nil
	}
	out := make([]nvml.Device, slots)
	for j := range slots {
		if m, ret := dev.GetMigDeviceHandleByIndex(j); ret == nvml.SUCCESS {
			out[j] = m
		}
	}
	return out
}

func migHandles(dev nvml.Device) []nvml.Device {
	var out []nvml.Device
	for _, m := range migSlots(dev) {
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}
