// Package gpu discovers the NVIDIA GPUs of this host through NVML, turns a
// --gpus specification into one device set per agent, and samples per-GPU
// statistics for workers.status_report.
//
// It owns: the --gpus grammar of agent-provision (indices, ranges, groups
// joined by '+', `all`, GPU-/MIG- UUIDs and GPU:MIG pairs) with errors that
// name the position of the bad id (assign.go); NVML discovery into an
// Inventory, with ErrNoNVML when libnvidia-ml.so is absent (discover.go); the
// Sampler that reads utilisation, temperature and memory of the visible
// devices and turns itself off after 3 consecutive NVML failures, as the
// Python agent does (sampler.go).
//
// It must not: set NVIDIA_VISIBLE_DEVICES or any other environment variable,
// write unit files (unitgen does), talk to the ClearML server, or shell out to
// nvidia-smi. Every NVML call goes through an nvml.Interface so tests run on
// go-nvml's mock servers.
package gpu
