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
// Python agent does (sampler.go); the BusyChecker that lists the processes
// on the agent's GPUs, leaves out its own tasks' and applies
// agent.gpu_busy_policy (wait, ignore, or a MiB threshold) with a one-line
// summary for STATUS= (busy.go).
//
// It must not: set NVIDIA_VISIBLE_DEVICES or any other environment variable,
// write unit files (unitgen does), talk to the ClearML server, or shell out to
// nvidia-smi. Every NVML call goes through an nvml.Interface so tests run on
// go-nvml's mock servers.
//
// go-nvml needs cgo, so only the *_nvml.go files import it (`//go:build cgo`).
// A build with CGO_ENABLED=0 (the static clearml-agent bind-mounted into
// docker containers) gets nvml_stub.go and busy_stub.go instead: Discover
// returns ErrNoNVML, and NewSystemSampler's samples and NewBusyChecker's
// checks fail with it, as on a host without libnvidia-ml.so; DiscoverWith,
// NewSampler and NewBusyCheckerWith, which take an nvml.Interface, exist
// only with cgo. Code outside this package calls NewSystemSampler and
// NewBusyChecker so that it builds both ways.
package gpu
