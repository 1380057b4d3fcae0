//go:build cgo

package gpu

import (
	"errors"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

// withMIG turns on MIG mode on GPU gpu of srv with the given slot UUIDs
// (the mock server does not emulate MIG device handles itself).
func withMIG(t *testing.T, srv *dgxa100.Server, gpu int, uuids ...string) []*mock.Device {
	t.Helper()
	d := srv.Devices[gpu].(*dgxa100.Device)
	d.SetMigMode(nvml.DEVICE_MIG_ENABLE)
	var migs []*mock.Device
	for i, u := range uuids {
		migs = append(migs, &mock.Device{
			GetUUIDFunc: func() (string, nvml.Return) { return u, nvml.SUCCESS },
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
				return nvml.Memory{Total: 5 << 30, Used: uint64(i+1) << 30, Free: uint64(4-i) << 30}, nvml.SUCCESS
			},
		})
	}
	d.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
	d.GetMigDeviceHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i < len(migs) {
			return migs[i], nvml.SUCCESS
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	return migs
}

func TestDiscoverWithDGXA100(t *testing.T) {
	t.Parallel()
	srv := dgxa100.New()
	withMIG(t, srv, 7, "MIG-aaaa", "MIG-bbbb")
	inv, err := DiscoverWith(srv)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Driver != "550.54.15" || inv.CUDA != "12.4" {
		t.Errorf("Driver, CUDA = %q, %q; want 550.54.15, 12.4", inv.Driver, inv.CUDA)
	}
	if len(inv.GPUs) != 8 {
		t.Fatalf("got %d GPUs, want 8", len(inv.GPUs))
	}
	for i, g := range inv.GPUs {
		if g.Index != i || !strings.HasPrefix(g.UUID, "GPU-") || g.MemoryMiB != 40960 || g.Name == "" {
			t.Errorf("GPU %d = %+v, want index %d, a GPU- UUID, 40960 MiB and a name", i, g, i)
		}
	}
	if g := inv.GPUs[7]; !g.MIG || len(g.MIGDevices) != 2 || g.MIGDevices[1] != (MIG{1, "MIG-bbbb"}) {
		t.Errorf("GPU 7 = %+v, want MIG on with slots 0 and 1", g)
	}
	if inv.GPUs[0].MIG {
		t.Errorf("GPU 0 has MIG on, want off")
	}

	table := inv.Table()
	for _, want := range []string{"Driver 550.54.15, CUDA 12.4, 8 GPU(s)", "INDEX", inv.GPUs[3].UUID, "40960 MiB", "on (2)", "7:1", "MIG-bbbb"} {
		if !strings.Contains(table, want) {
			t.Errorf("Table() lacks %q:\n%s", want, table)
		}
	}
	t.Logf("Table():\n%s", table)

	// The inventory feeds ParseAssignment.
	got, _, err := ParseAssignment("all", 4, inv)
	if err != nil || len(got) != 2 || got[1].Devices[0] != "4" {
		t.Errorf("ParseAssignment(all, 4) = %+v, %v; want 2 agents, the second starting at GPU 4", got, err)
	}
	if _, _, err := ParseAssignment("7:1,"+inv.GPUs[0].UUID, 0, inv); err != nil {
		t.Errorf("ParseAssignment(7:1,<uuid of GPU 0>): %v", err)
	}
}

func TestDiscoverWithoutLibrary(t *testing.T) {
	t.Parallel()
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
	if _, err := DiscoverWith(lib); !errors.Is(err, ErrNoNVML) {
		t.Errorf("DiscoverWith(no library) error = %v, want ErrNoNVML", err)
	}
	lib = &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }}
	if _, err := DiscoverWith(lib); err == nil || errors.Is(err, ErrNoNVML) || !strings.Contains(err.Error(), "NVML init") {
		t.Errorf("DiscoverWith(driver not loaded) error = %v, want an NVML init error", err)
	}
}

// TestDiscoverHost runs the real library: ErrNoNVML on hosts without the
// NVIDIA driver, a non-empty inventory on GPU hosts.
func TestDiscoverHost(t *testing.T) {
	t.Parallel()
	inv, err := Discover()
	if errors.Is(err, ErrNoNVML) {
		t.Logf("no NVML on this host: %v", err)
		return
	}
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if inv.Driver == "" || len(inv.GPUs) == 0 {
		t.Errorf("Discover() = %+v, want a driver version and at least one GPU", inv)
	}
	t.Logf("Discover():\n%s", inv.Table())
}
