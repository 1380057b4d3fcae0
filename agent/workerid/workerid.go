package workerid

import (
	"os"
	"strconv"
	"strings"
)

// Mode says which kind of process the worker id is for.
type Mode int

const (
	// Daemon is `clearml-agent daemon`: <name>:gpu<devs>, <name>:cpu:<slot> or <name>:<slot>.
	Daemon Mode = iota
	// Execute is a one-shot `clearml-agent execute`: <name>:<pid>.
	Execute
)

// Options are the inputs of For. Callers copy them from flags and
// clearml.conf; the environment is read through Getenv.
type Options struct {
	WorkerID   string              // agent.worker_id from clearml.conf
	WorkerName string              // agent.worker_name from clearml.conf
	Getenv     func(string) string // nil means os.Getenv
	Hostname   string              // empty means os.Hostname()

	GPUs    string // the --gpus value, e.g. "0", "0,1", "all"; empty = none given
	CPUOnly bool   // --cpu-only (services mode forces it)
	Slot    int    // this agent's slot on the host (see LockSlot)

	Mode Mode
	PID  int // Execute: the process id; 0 means os.Getpid()
}

// Environment variables read by WorkerID.
const (
	EnvWorkerID   = "CLEARML_WORKER_ID"
	EnvWorkerName = "CLEARML_WORKER_NAME"
)

// WorkerID returns the worker id the agent registers with the server.
//
// CLEARML_WORKER_ID, then agent.worker_id, win as given. Otherwise the name
// (CLEARML_WORKER_NAME, agent.worker_name, the host name) gets a suffix from
// the GPU assignment: --gpus 0 -> "host:gpu0", 0,1 -> "host:gpu0,1",
// all -> "host:gpuall", --cpu-only -> "host:cpu:<slot>", none -> "host:<slot>".
// Without --gpus, NVIDIA_VISIBLE_DEVICES then CUDA_VISIBLE_DEVICES stand in for
// it, as in the Python agent; "none" and "void" there mean no GPU.
func For(o Options) string {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if id := strings.TrimSpace(getenv(EnvWorkerID)); id != "" {
		return id
	}
	if id := strings.TrimSpace(o.WorkerID); id != "" {
		return id
	}
	name := workerName(o, getenv)
	if o.Mode == Execute {
		pid := o.PID
		if pid == 0 {
			pid = os.Getpid()
		}
		return name + ":" + strconv.Itoa(pid)
	}
	slot := strconv.Itoa(o.Slot)
	if o.CPUOnly {
		return name + ":cpu:" + slot
	}
	devs := strings.TrimSpace(o.GPUs)
	if devs == "" {
		devs = strings.TrimSpace(getenv("NVIDIA_VISIBLE_DEVICES"))
	}
	if devs == "" {
		devs = strings.TrimSpace(getenv("CUDA_VISIBLE_DEVICES"))
	}
	switch strings.ToLower(devs) {
	case "":
		return name + ":" + slot
	case "none", "void":
		return name + ":cpu:" + slot
	}
	// MIG devices are written 0.1 on the command line and 0:1 in the id.
	devs = strings.ReplaceAll(strings.ReplaceAll(devs, " ", ""), ".", ":")
	return name + ":gpu" + devs
}

func workerName(o Options, getenv func(string) string) string {
	if n := strings.TrimSpace(getenv(EnvWorkerName)); n != "" {
		return n
	}
	if n := strings.TrimSpace(o.WorkerName); n != "" {
		return n
	}
	if o.Hostname != "" {
		return o.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}
