package cli

import (
	"log/slog"
	"strings"

	"github.com/gpufleet/clearml-agent-go/agent/gpu"
	"github.com/gpufleet/clearml-agent-go/agent/stats"
)

// gpuStats adapts gpu.Sampler to the stats collector.
type gpuStats struct{ s *gpu.Sampler }

func (g gpuStats) Sample() (usage, temp, memUsed, memFree []float64, err error) {
	st, err := g.s.Sample()
	return st.Usage, st.Temperature, st.MemUsedMiB, st.MemFreeMiB, err
}

// newGPUSampler returns the GPU source of status reports, or nil for
// cpu-only agents. NVML is opened on the first sample, off the start-up path;
// where it is missing gpu.Sampler turns itself off after 3 failures.
func newGPUSampler(devices map[string]string, log *slog.Logger) stats.GPUSampler {
	v := devices["NVIDIA_VISIBLE_DEVICES"]
	if v == "none" || v == "void" {
		return nil
	}
	var visible []string
	if v != "" {
		visible = strings.Split(v, ",")
	}
	log.Debug("GPU monitoring through NVML", "visible", v)
	return gpuStats{gpu.NewSystemSampler(visible)}
}
