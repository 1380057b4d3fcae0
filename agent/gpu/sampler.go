package gpu

import (
	"errors"
	"fmt"
	"sync"
)

// ErrSamplerDisabled is returned by Sample once NVML failed maxFailures times
// in a row; GPU monitoring then stays off, as in the Python agent.
var ErrSamplerDisabled = errors.New("GPU monitoring disabled after 3 consecutive NVML failures")

// maxFailures is how many failed samples in a row turn the sampler off.
const maxFailures = 3

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
	src source

	mu       sync.Mutex
	failures int
	disabled bool
}

// source reads the statistics for a Sampler, which serialises the calls:
// NVML (sampler_nvml.go) or, in builds without cgo, nothing (nvml_stub.go).
type source interface {
	sample() (Stats, error)
	shutdown() // releases the library; a no-op when it is not initialised
}

// Sample reads one set of statistics. After 3 consecutive failures it
// returns ErrSamplerDisabled from then on.
func (s *Sampler) Sample() (Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disabled {
		return Stats{}, ErrSamplerDisabled
	}
	st, err := s.src.sample()
	if err == nil {
		s.failures = 0
		return st, nil
	}
	s.failures++
	if s.failures >= maxFailures {
		s.disabled = true
		s.src.shutdown()
		return Stats{}, fmt.Errorf("%w: %w", ErrSamplerDisabled, err)
	}
	return Stats{}, err
}

// Close releases NVML.
func (s *Sampler) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.src.shutdown()
}
