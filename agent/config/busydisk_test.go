package config

import "testing"

// agent.gpu_busy_policy and agent.disk_min_free_gb: defaults, file values
// and environment overrides reach AgentSettings as written (gpu and
// diskguard check them).
func TestBusyAndDiskSettings(t *testing.T) {
	a := load(t, "testdata/braced.conf").Agent()
	if a.GPUBusyPolicy != "wait" || a.DiskMinFreeGB != 1.0 || a.VenvsCache.FreeSpaceThresholdGB != 2.0 {
		t.Errorf("defaults: gpu_busy_policy=%q disk_min_free_gb=%v free_space_threshold_gb=%v; want wait, 1, 2",
			a.GPUBusyPolicy, a.DiskMinFreeGB, a.VenvsCache.FreeSpaceThresholdGB)
	}
	c := load(t, "testdata/braced.conf",
		"CLEARML_AGENT__AGENT__GPU_BUSY_POLICY=2048",
		"CLEARML_AGENT__AGENT__DISK_MIN_FREE_GB=0.5",
	)
	if a := c.Agent(); a.GPUBusyPolicy != "2048" || a.DiskMinFreeGB != 0.5 {
		t.Errorf("overridden: gpu_busy_policy=%q disk_min_free_gb=%v; want 2048, 0.5", a.GPUBusyPolicy, a.DiskMinFreeGB)
	}
	if o := c.Origin("agent.gpu_busy_policy"); o != "env CLEARML_AGENT__AGENT__GPU_BUSY_POLICY" {
		t.Errorf("Origin(agent.gpu_busy_policy) = %q", o)
	}
	c, err := Parse("clearml.conf", []byte("agent { gpu_busy_policy: ignore, disk_min_free_gb: 0 }"))
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Agent(); a.GPUBusyPolicy != "ignore" || a.DiskMinFreeGB != 0 {
		t.Errorf("from a file: gpu_busy_policy=%q disk_min_free_gb=%v; want ignore, 0", a.GPUBusyPolicy, a.DiskMinFreeGB)
	}
}
