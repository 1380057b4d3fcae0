//go:build !cgo

package gpu

import "fmt"

// Without cgo go-nvml cannot be built, so this build has no NVML at all: it
// behaves as a host without libnvidia-ml.so. DiscoverWith and NewSampler,
// which take an nvml.Interface, exist only in cgo builds.

// Discover returns ErrNoNVML: a build without cgo cannot load NVML.
func Discover() (*Inventory, error) {
	return nil, ErrNoNVML
}

// NewSystemSampler returns a Sampler whose every Sample fails with
// ErrNoNVML, so GPU monitoring turns itself off after 3 samples, as on a host
// without libnvidia-ml.so.
func NewSystemSampler(visible []string) *Sampler {
	return &Sampler{src: noNVML{}}
}

type noNVML struct{}

func (noNVML) sample() (Stats, error) { return Stats{}, fmt.Errorf("NVML init: %w", ErrNoNVML) }
func (noNVML) shutdown()              {}
