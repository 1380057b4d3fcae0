package identity

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
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
		o    IDOptions
		want string
	}{
		{"one gpu", IDOptions{Hostname: "host", GPUs: "0", Getenv: none}, "host:gpu0"},
		{"two gpus", IDOptions{Hostname: "host", GPUs: "0,1", Getenv: none}, "host:gpu0,1"},
		{"all gpus", IDOptions{Hostname: "host", GPUs: "all", Getenv: none}, "host:gpuall"},
		{"mig", IDOptions{Hostname: "host", GPUs: "0.1", Getenv: none}, "host:gpu0:1"},
		{"cpu only", IDOptions{Hostname: "host", CPUOnly: true, Slot: 2, Getenv: none}, "host:cpu:2"},
		{"cpu only beats gpus", IDOptions{Hostname: "host", CPUOnly: true, GPUs: "0", Getenv: none}, "host:cpu:0"},
		{"no gpu", IDOptions{Hostname: "host", Slot: 1, Getenv: none}, "host:1"},
		{"gpu from NVIDIA_VISIBLE_DEVICES", IDOptions{Hostname: "host", Getenv: env("NVIDIA_VISIBLE_DEVICES", "3")}, "host:gpu3"},
		{"gpu from CUDA_VISIBLE_DEVICES", IDOptions{Hostname: "host", Getenv: env("CUDA_VISIBLE_DEVICES", "1,2")}, "host:gpu1,2"},
		{"visible none", IDOptions{Hostname: "host", Getenv: env("NVIDIA_VISIBLE_DEVICES", "none")}, "host:cpu:0"},
		{"visible void", IDOptions{Hostname: "host", Getenv: env("NVIDIA_VISIBLE_DEVICES", "void")}, "host:cpu:0"},
		{"flag beats env", IDOptions{Hostname: "host", GPUs: "1", Getenv: env("NVIDIA_VISIBLE_DEVICES", "0")}, "host:gpu1"},
		{"config name", IDOptions{Hostname: "host", WorkerName: "box", GPUs: "0", Getenv: none}, "box:gpu0"},
		{"env name beats config", IDOptions{Hostname: "host", WorkerName: "box", GPUs: "0", Getenv: env(EnvWorkerName, "rig")}, "rig:gpu0"},
		{"config id", IDOptions{Hostname: "host", WorkerID: "fixed", GPUs: "0", Getenv: none}, "fixed"},
		{"env id beats config", IDOptions{Hostname: "host", WorkerID: "fixed", Getenv: env(EnvWorkerID, "aws:i-123")}, "aws:i-123"},
		{"execute", IDOptions{Hostname: "host", Mode: Execute, PID: 4242, GPUs: "0", Getenv: none}, "host:4242"},
		{"execute under a daemon", IDOptions{Hostname: "host", Mode: Execute, PID: 4242, Getenv: env(EnvWorkerID, "host:gpu0")}, "host:gpu0"},
		{"service child", IDOptions{Mode: ServiceChild, ParentWorkerID: "host:cpu:0", TaskID: "abc123", Getenv: env(EnvWorkerID, "host:cpu:0")}, "host:cpu:0:service:abc123"},
	}
	for _, tt := range tests {
		if got := WorkerID(tt.o); got != tt.want {
			t.Errorf("%s: WorkerID(%+v) = %q, want %q", tt.name, tt.o, got, tt.want)
		}
	}
}

func TestWorkerIDDefaultsToHostnameAndPID(t *testing.T) {
	h, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	if got, want := WorkerID(IDOptions{Mode: Execute, Getenv: func(string) string { return "" }}), h+":"+itoa(os.Getpid()); got != want {
		t.Errorf("WorkerID = %q, want %q", got, want)
	}
}

func TestStateDir(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name string
		env  map[string]string
		euid int
		want string
	}{
		{"override", map[string]string{EnvStateDir: "/srv/agent", "STATE_DIRECTORY": "/var/lib/x"}, 0, "/srv/agent"},
		{"systemd", map[string]string{"STATE_DIRECTORY": "/var/lib/clearml-agent-gpu0:/var/lib/other"}, 1000, "/var/lib/clearml-agent-gpu0"},
		{"root", nil, 0, "/var/lib/clearml-agent"},
		{"xdg", map[string]string{"XDG_STATE_HOME": "/home/u/.st"}, 1000, "/home/u/.st/clearml-agent"},
		{"relative xdg ignored", map[string]string{"XDG_STATE_HOME": "st"}, 1000, "/home/u/.local/state/clearml-agent"},
		{"home", nil, 1000, "/home/u/.local/state/clearml-agent"},
	}
	for _, tt := range tests {
		if got := stateDirFrom(env(tt.env), tt.euid, "/home/u"); got != tt.want {
			t.Errorf("%s: state dir = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestEscapeID(t *testing.T) {
	for id, want := range map[string]string{
		"host:gpu0,1":     "host:gpu0,1",
		"../etc/passwd":   "%2E.%2Fetc%2Fpasswd",
		".lock":           "%2Elock",
		"a b%c":           "a%20b%25c",
		"aws:i-0abc@prod": "aws:i-0abc@prod",
	} {
		got := escapeID(id)
		if got != want {
			t.Errorf("escapeID(%q) = %q, want %q", id, got, want)
		}
		if back := unescapeID(got); back != id {
			t.Errorf("unescapeID(%q) = %q, want %q", got, back, id)
		}
	}
}

func TestStripDetached(t *testing.T) {
	got := StripDetached([]string{"-d", "--config-file", "c.conf", "daemon", "--detached", "--queue", "q", "-d", "--detached=true", "--gpus", "0"})
	want := []string{"-d", "--config-file", "c.conf", "daemon", "--queue", "q", "--gpus", "0"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("StripDetached (-want +got):\n%s", d)
	}
}
