// Package gpucheck holds the check that needs a real NVIDIA GPU (build tag
// gpu): the real clearml-agent binary against the in-process emulator on a
// GPU machine, with --gpus 0. It asserts that status reports carry NVML GPU
// fields and that a task sees the assigned device. CI has no GPU and never
// builds it; run it with scripts/gpu-check.sh on a machine that has one.
package gpucheck
