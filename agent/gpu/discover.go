package gpu

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
)

// ErrNoNVML means libnvidia-ml.so could not be loaded: no NVIDIA driver is
// installed, or this is a CPU-only host.
var ErrNoNVML = errors.New("NVML not found (libnvidia-ml.so); install the NVIDIA driver or list GPU indices explicitly")

// Inventory is what NVML reports about this host.
type Inventory struct {
	Driver string // driver version, e.g. "550.54.15"
	CUDA   string // highest CUDA version the driver supports, e.g. "12.4"
	GPUs   []GPU  // ordered by NVML index
}

// GPU is one physical device.
type GPU struct {
	Index      int
	UUID       string // "GPU-..."
	Name       string
	MemoryMiB  uint64
	MIG        bool  // MIG mode is enabled (current mode)
	MIGDevices []MIG // the MIG slices, when MIG is enabled
}

// MIG is one MIG slice of a GPU.
type MIG struct {
	Index int    // slot on the parent GPU, as in "0:1"
	UUID  string // "MIG-..."
}

// Table renders the inventory for `agent-provision gpus`.
func (inv *Inventory) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Driver %s, CUDA %s, %d GPU(s)\n", cmp.Or(inv.Driver, "-"), cmp.Or(inv.CUDA, "-"), len(inv.GPUs))
	if len(inv.GPUs) == 0 {
		return b.String()
	}
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "INDEX\tUUID\tNAME\tMEMORY\tMIG")
	for _, g := range inv.GPUs {
		mig := "off"
		if g.MIG {
			mig = fmt.Sprintf("on (%d)", len(g.MIGDevices))
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%d MiB\t%s\n", g.Index, g.UUID, cmp.Or(g.Name, "-"), g.MemoryMiB, mig)
		for _, m := range g.MIGDevices {
			fmt.Fprintf(w, "%d:%d\t%s\n", g.Index, m.Index, m.UUID)
		}
	}
	w.Flush()
	return b.String()
}

// indexRange describes the GPU indices for error messages: "0-3", "0,2", or
// "no GPUs".
func (inv *Inventory) indexRange() string {
	if len(inv.GPUs) == 0 {
		return "no GPUs"
	}
	contiguous := true
	for i, g := range inv.GPUs {
		if g.Index != inv.GPUs[0].Index+i {
			contiguous = false
		}
	}
	first, last := inv.GPUs[0].Index, inv.GPUs[len(inv.GPUs)-1].Index
	switch {
	case first == last:
		return fmt.Sprintf("GPU %d", first)
	case contiguous:
		return fmt.Sprintf("GPUs %d-%d", first, last)
	}
	ids := make([]string, len(inv.GPUs))
	for i, g := range inv.GPUs {
		ids[i] = fmt.Sprint(g.Index)
	}
	return "GPUs " + strings.Join(ids, ",")
}

func (inv *Inventory) byIndex(i int) *GPU {
	for k := range inv.GPUs {
		if inv.GPUs[k].Index == i {
			return &inv.GPUs[k]
		}
	}
	return nil
}

// byUUID finds a GPU or MIG UUID; mig is -1 for a whole GPU.
func (inv *Inventory) byUUID(uuid string) (g *GPU, mig int) {
	for k := range inv.GPUs {
		if strings.EqualFold(inv.GPUs[k].UUID, uuid) {
			return &inv.GPUs[k], -1
		}
		for _, m := range inv.GPUs[k].MIGDevices {
			if strings.EqualFold(m.UUID, uuid) {
				return &inv.GPUs[k], m.Index
			}
		}
	}
	return nil, -1
}
