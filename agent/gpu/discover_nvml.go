//go:build cgo

package gpu

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Discover loads the system NVML library and reads the inventory. Without
// libnvidia-ml.so it returns ErrNoNVML.
func Discover() (*Inventory, error) {
	return DiscoverWith(nvml.New())
}

// DiscoverWith reads the inventory through lib (a real library or one of
// go-nvml's mock servers). It calls lib.Init and lib.Shutdown.
func DiscoverWith(lib nvml.Interface) (*Inventory, error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
			return nil, ErrNoNVML
		}
		return nil, fmt.Errorf("NVML init: %s; check that the NVIDIA driver is loaded (nvidia-smi)", ret.Error())
	}
	defer lib.Shutdown()

	inv := &Inventory{}
	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		inv.Driver = v
	}
	if v, ret := lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS && v > 0 {
		inv.CUDA = fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("NVML device count: %s; check nvidia-smi", ret.Error())
	}
	for i := range n {
		dev, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("NVML GPU %d: %s; check nvidia-smi -i %d", i, ret.Error(), i)
		}
		g := GPU{Index: i}
		if g.UUID, ret = dev.GetUUID(); ret != nvml.SUCCESS {
			return nil, fmt.Errorf("NVML GPU %d UUID: %s; check nvidia-smi -L", i, ret.Error())
		}
		if name, ret := dev.GetName(); ret == nvml.SUCCESS {
			g.Name = name
		}
		if mem, ret := dev.GetMemoryInfo(); ret == nvml.SUCCESS {
			g.MemoryMiB = mem.Total / (1 << 20)
		}
		if cur, _, ret := dev.GetMigMode(); ret == nvml.SUCCESS && cur == nvml.DEVICE_MIG_ENABLE {
			g.MIG = true
			g.MIGDevices = migDevices(dev)
		}
		inv.GPUs = append(inv.GPUs, g)
	}
	return inv, nil
}

// migDevices lists the MIG slices of a MIG-enabled GPU; empty slots are
// skipped (NVML returns NOT_FOUND for them).
func migDevices(dev nvml.Device) []MIG {
	slots, ret := dev.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return nil
	}
	var out []MIG
	for j := range slots {
		m, ret := dev.GetMigDeviceHandleByIndex(j)
		if ret != nvml.SUCCESS {
			continue
		}
		uuid, ret := m.GetUUID()
		if ret != nvml.SUCCESS {
			continue
		}
		out = append(out, MIG{Index: j, UUID: uuid})
	}
	return out
}
