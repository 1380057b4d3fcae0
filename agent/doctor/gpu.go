package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/gpu"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// GPUOptions configures GPUCheck.
type GPUOptions struct {
	// GPUs is the --gpus value ("" = none given: tasks see what the host
	// has); CPUOnly is --cpu-only (or agent.cpu_only).
	GPUs    string
	CPUOnly bool
	// Discover reads the NVML inventory (nil = gpu.Discover).
	Discover func() (*gpu.Inventory, error)
	// NoNVML is the status when GPUs are assigned and NVML is not there
	// at all (no libnvidia-ml.so, or a build without cgo): Fail for
	// `doctor` (the default), Warn for the daemon, which cannot tell a
	// GPU-less test machine or a static build from a broken driver.
	NoNVML Status
}

const gpuIDFix = "pass GPUs this machine has (nvidia-smi -L lists them) to --gpus, or run with --cpu-only"

// GPUCheck returns "gpus": NVML answers and each assigned GPU (index, MIG
// slot or UUID, as the daemon's --gpus takes them) is there.
func GPUCheck(o GPUOptions) Check {
	if o.Discover == nil {
		o.Discover = gpu.Discover
	}
	if o.NoNVML == "" {
		o.NoNVML = Fail
	}
	return Check{Name: "gpus", Timeout: 30 * time.Second, Run: func(context.Context) Result { return gpuResult(o) }}
}

func gpuResult(o GPUOptions) Result {
	spec := strings.ReplaceAll(strings.TrimSpace(o.GPUs), ".", ":") // 0.1 is the daemon's other MIG form
	if o.CPUOnly {
		return Result{Status: Skip, Detail: "--cpu-only"}
	}
	inv, err := o.Discover()
	noNVML := errors.Is(err, gpu.ErrNoNVML)
	why := "NVML not found (libnvidia-ml.so): the NVIDIA driver is not installed"
	if !nvmlLinked {
		why = "this clearml-agent build has no NVML (built with CGO_ENABLED=0)"
	}
	if spec == "" {
		switch {
		case noNVML:
			return Result{Status: Skip, Detail: "no --gpus given and " + why + ": tasks run without GPUs"}
		case err != nil:
			return Result{Status: Warn, Detail: oneline.Of(err), Fix: "check the NVIDIA driver (nvidia-smi); after a driver upgrade, reboot"}
		}
		return Result{Status: OK, Detail: fmt.Sprintf("no --gpus given: tasks see all %d GPU(s); %s", len(inv.GPUs), driver(inv))}
	}
	if !strings.EqualFold(spec, "all") { // "all" needs the inventory
		if _, _, perr := gpu.ParseAssignment(spec, 1, nil); perr != nil {
			return Result{Status: Fail, Detail: oneline.Of(perr), Fix: gpuIDFix}
		}
	}
	switch {
	case noNVML:
		fix := "install the NVIDIA driver (nvidia-smi must list the GPUs), or run with --cpu-only"
		if !nvmlLinked {
			fix = "run the cgo build of clearml-agent (the static one is for containers), or run with --cpu-only"
		}
		return Result{Status: o.NoNVML, Detail: fmt.Sprintf("GPU(s) %s assigned but %s", o.GPUs, why), Fix: fix}
	case err != nil:
		return Result{Status: Fail, Detail: oneline.Of(err), Fix: "check the NVIDIA driver (nvidia-smi); after a driver upgrade, reboot"}
	}
	as, _, err := gpu.ParseAssignment(spec, 1, inv)
	if err != nil {
		return Result{Status: Fail, Detail: oneline.Of(err), Fix: gpuIDFix}
	}
	var ids []string
	for _, a := range as {
		ids = append(ids, a.Devices...)
	}
	var names []string
	for _, id := range ids {
		names = append(names, describeGPU(inv, id))
	}
	return Result{Status: OK, Detail: fmt.Sprintf("%s; %s", strings.Join(names, ", "), driver(inv))}
}

func driver(inv *gpu.Inventory) string {
	return fmt.Sprintf("driver %s, CUDA %s", orDash(inv.Driver), orDash(inv.CUDA))
}

// describeGPU names one assigned id: "GPU 0 (NVIDIA H200)".
func describeGPU(inv *gpu.Inventory, id string) string {
	for _, g := range inv.GPUs {
		name := g.Name
		if name == "" {
			name = g.UUID
		}
		switch {
		case id == fmt.Sprint(g.Index), strings.EqualFold(id, g.UUID):
			return fmt.Sprintf("GPU %d (%s)", g.Index, name)
		case strings.HasPrefix(id, fmt.Sprintf("%d:", g.Index)):
			return fmt.Sprintf("MIG %s (%s)", id, name)
		}
		for _, m := range g.MIGDevices {
			if strings.EqualFold(id, m.UUID) {
				return fmt.Sprintf("MIG %d:%d (%s)", g.Index, m.Index, name)
			}
		}
	}
	return id
}
