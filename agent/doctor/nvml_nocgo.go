//go:build !cgo

package doctor

// nvmlLinked: a CGO_ENABLED=0 build cannot load NVML at all.
const nvmlLinked = false
