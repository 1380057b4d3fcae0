//go:build cgo

package gpu

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/google/go-cmp/cmp"
)

// statServer is a DGX A100 mock whose GPU i reports 10*i % utilisation,
// 30+i °C and i GiB used; fail makes utilisation reads fail.
func statServer(t *testing.T, fail *atomic.Bool) *dgxa100.Server {
	t.Helper()
	srv := dgxa100.New()
	for i, d := range srv.Devices {
		dev := d.(*dgxa100.Device)
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			if fail != nil && fail.Load() {
				return nvml.Utilization{}, nvml.ERROR_GPU_IS_LOST
			}
			return nvml.Utilization{Gpu: uint32(10 * i)}, nvml.SUCCESS
		}
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return uint32(30 + i), nvml.SUCCESS }
		dev.MemoryInfo.Used = uint64(i) << 30
		dev.MemoryInfo.Free = dev.MemoryInfo.Total - dev.MemoryInfo.Used
	}
	return srv
}

func TestSamplerVisible(t *testing.T) {
	t.Parallel()
	srv := statServer(t, nil)
	uuid5, _ := srv.Devices[5].GetUUID()
	withMIG(t, srv, 7, "MIG-aaaa", "MIG-bbbb")

	tests := []struct {
		visible []string
		want    Stats
	}{
		{[]string{"1", uuid5}, Stats{
			Usage: []float64{10, 50}, Temperature: []float64{31, 35},
			MemUsedMiB: []float64{1024, 5120}, MemFreeMiB: []float64{40960 - 1024, 40960 - 5120},
		}},
		// MIG slices: no utilisation counter (100), the parent's temperature.
		{[]string{"7:0", "MIG-bbbb"}, Stats{
			Usage: []float64{100, 100}, Temperature: []float64{37, 37},
			MemUsedMiB: []float64{1024, 2048}, MemFreeMiB: []float64{4096, 3072},
		}},
	}
	for _, tt := range tests {
		s := NewSampler(srv, tt.visible)
		got, err := s.Sample()
		s.Close()
		if err != nil {
			t.Fatalf("Sample(%q): %v", tt.visible, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Sample(%q) (-want +got):\n%s", tt.visible, diff)
		}
	}
}

func TestSamplerAllDevices(t *testing.T) {
	t.Parallel()
	srv := statServer(t, nil)
	// nil, "all" and ids matching nothing all report every GPU (the
	// Python agent's fallback).
	for _, visible := range [][]string{nil, {"all"}, {"42"}} {
		s := NewSampler(srv, visible)
		got, err := s.Sample()
		if err != nil {
			t.Fatalf("Sample(%q): %v", visible, err)
		}
		if len(got.Usage) != 8 || got.Usage[7] != 70 || got.Temperature[0] != 30 {
			t.Errorf("Sample(%q) = %+v, want 8 GPUs", visible, got)
		}
	}
}

func TestSamplerDisablesAfterThreeFailures(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	srv := statServer(t, &fail)
	var shutdowns atomic.Int32
	srv.ShutdownFunc = func() nvml.Return { shutdowns.Add(1); return nvml.SUCCESS }
	s := NewSampler(srv, []string{"0"})

	fail.Store(true)
	for i := range 2 {
		if _, err := s.Sample(); err == nil || errors.Is(err, ErrSamplerDisabled) {
			t.Fatalf("failure %d: error = %v, want an NVML error that does not disable yet", i+1, err)
		}
	}
	fail.Store(false) // a success resets the count
	if _, err := s.Sample(); err != nil {
		t.Fatalf("Sample after recovery: %v", err)
	}
	fail.Store(true)
	for i := range 2 {
		if _, err := s.Sample(); errors.Is(err, ErrSamplerDisabled) {
			t.Fatalf("failure %d after a success disabled the sampler", i+1)
		}
	}
	_, err := s.Sample()
	if !errors.Is(err, ErrSamplerDisabled) || !strings.Contains(err.Error(), "ERROR_GPU_IS_LOST") {
		t.Fatalf("3rd consecutive failure: error = %v, want ErrSamplerDisabled carrying the NVML error", err)
	}
	fail.Store(false)
	if _, err := s.Sample(); !errors.Is(err, ErrSamplerDisabled) {
		t.Errorf("Sample after disabling: error = %v, want ErrSamplerDisabled", err)
	}
	if n := shutdowns.Load(); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
	s.Close()
	if n := shutdowns.Load(); n != 1 {
		t.Errorf("Close after disabling called Shutdown again (%d calls)", n)
	}
}

// TestSamplerHost samples the real library on GPU hosts.
func TestSamplerHost(t *testing.T) {
	t.Parallel()
	inv, err := Discover()
	if errors.Is(err, ErrNoNVML) {
		t.Skip("no NVML on this host")
	}
	if err != nil {
		t.Fatal(err)
	}
	s := NewSampler(nvml.New(), []string{"0"})
	defer s.Close()
	for range 2 {
		st, err := s.Sample()
		if err != nil {
			t.Fatalf("Sample: %v", err)
		}
		if len(st.Usage) != 1 || st.MemUsedMiB[0]+st.MemFreeMiB[0] <= 0 {
			t.Errorf("Sample() = %+v, want one GPU with memory", st)
		}
		t.Logf("GPU 0 (%s): %+v", inv.GPUs[0].Name, st)
	}
}

// TestSystemSampler: NewSystemSampler loads the system library, so it fails
// on hosts without NVML (as the !cgo build always does) and samples on GPU
// hosts.
func TestSystemSampler(t *testing.T) {
	t.Parallel()
	_, derr := Discover()
	s := NewSystemSampler(nil)
	defer s.Close()
	_, err := s.Sample()
	switch {
	case errors.Is(derr, ErrNoNVML):
		if err == nil || !strings.Contains(err.Error(), "NVML init") {
			t.Errorf("Sample without NVML: error = %v, want an NVML init error", err)
		}
	case derr == nil && err != nil:
		t.Errorf("Sample on a GPU host: %v", err)
	}
}
