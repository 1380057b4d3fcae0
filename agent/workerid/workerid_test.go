package workerid

import (
	"os"
	"strconv"
	"testing"
)

func TestWorkerID(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	none := env()
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"one gpu", Options{Hostname: "host", GPUs: "0", Getenv: none}, "host:gpu0"},
		{"two gpus", Options{Hostname: "host", GPUs: "0,1", Getenv: none}, "host:gpu0,1"},
		{"all gpus", Options{Hostname: "host", GPUs: "all", Getenv: none}, "host:gpuall"},
		{"mig", Options{Hostname: "host", GPUs: "0.1", Getenv: none}, "host:gpu0:1"},
		{"cpu only", Options{Hostname: "host", CPUOnly: true, Slot: 2, Getenv: none}, "host:cpu:2"},
		{"cpu only beats gpus", Options{Hostname: "host", CPUOnly: true, GPUs: "0", Getenv: none}, "host:cpu:0"},
		{"no gpu", Options{Hostname: "host", Slot: 1, Getenv: none}, "host:1"},
		{"gpu from NVIDIA_VISIBLE_DEVICES", Options{Hostname: "host", Getenv: env("NVIDIA_VISIBLE_DEVICES", "3")}, "host:gpu3"},
		{"gpu from CUDA_VISIBLE_DEVICES", Options{Hostname: "host", Getenv: env("CUDA_VISIBLE_DEVICES", "1,2")}, "host:gpu1,2"},
		{"visible none", Options{Hostname: "host", Getenv: env("NVIDIA_VISIBLE_DEVICES", "none")}, "host:cpu:0"},
		{"visible void", Options{Hostname: "host", Getenv: env("NVIDIA_VISIBLE_DEVICES", "void")}, "host:cpu:0"},
		{"flag beats env", Options{Hostname: "host", GPUs: "1", Getenv: env("NVIDIA_VISIBLE_DEVICES", "0")}, "host:gpu1"},
		{"config name", Options{Hostname: "host", WorkerName: "box", GPUs: "0", Getenv: none}, "box:gpu0"},
		{"env name beats config", Options{Hostname: "host", WorkerName: "box", GPUs: "0", Getenv: env(EnvWorkerName, "rig")}, "rig:gpu0"},
		{"config id", Options{Hostname: "host", WorkerID: "fixed", GPUs: "0", Getenv: none}, "fixed"},
		{"env id beats config", Options{Hostname: "host", WorkerID: "fixed", Getenv: env(EnvWorkerID, "aws:i-123")}, "aws:i-123"},
		{"execute", Options{Hostname: "host", Mode: Execute, PID: 4242, GPUs: "0", Getenv: none}, "host:4242"},
		{"execute under a daemon", Options{Hostname: "host", Mode: Execute, PID: 4242, Getenv: env(EnvWorkerID, "host:gpu0")}, "host:gpu0"},
	}
	for _, tt := range tests {
		if got := For(tt.o); got != tt.want {
			t.Errorf("%s: For(%+v) = %q, want %q", tt.name, tt.o, got, tt.want)
		}
	}
}

func TestWorkerIDDefaultsToHostnameAndPID(t *testing.T) {
	h, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	if got, want := For(Options{Mode: Execute, Getenv: func(string) string { return "" }}), h+":"+strconv.Itoa(os.Getpid()); got != want {
		t.Errorf("WorkerID = %q, want %q", got, want)
	}
}
