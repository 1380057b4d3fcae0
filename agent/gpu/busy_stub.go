//go:build !cgo

package gpu

// NewBusyChecker returns a BusyChecker whose every Check fails with
// ErrNoNVML (unless the policy is "ignore"), as on a host without
// libnvidia-ml.so: a build without cgo cannot load NVML.
func NewBusyChecker(devices []string, policy BusyPolicy, mine func(pid int) bool) *BusyChecker {
	return newBusyChecker(noProcs{}, policy, mine)
}

type noProcs struct{}

func (noProcs) processes() ([]BusyProcess, []string, error) { return nil, nil, ErrNoNVML }
func (noProcs) shutdown()                                   {}
