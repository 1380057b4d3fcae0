// Package stats samples this machine's resource usage for the worker's
// workers.status_report calls (the "machine_stats" object).
//
// It owns: reading CPU, memory, disk, network and CPU temperature through
// gopsutil, asking an optional GPUSampler for per-GPU figures, averaging the
// samples taken since the last report, and rounding them to 3 decimals in the
// units the ClearML server expects (%, °C, MiB, MiB/s).
//
// It must not: talk to the server, know about tasks or queues, load NVML itself
// (the agent/gpu package provides a GPUSampler), or keep per-sample history: the
// agent's idle footprint is a few MiB, so a Collector holds only running sums.
package stats
