//go:build cgo

package doctor

// nvmlLinked: this build can load NVML (agent/gpu's go-nvml needs cgo).
const nvmlLinked = true
