package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/agent/gpu"
)

func inventory() *gpu.Inventory {
	return &gpu.Inventory{Driver: "550.54.15", CUDA: "12.4", GPUs: []gpu.GPU{
		{Index: 0, UUID: "GPU-aaaa", Name: "NVIDIA H200"},
		{Index: 1, UUID: "GPU-bbbb", Name: "NVIDIA H200", MIG: true, MIGDevices: []gpu.MIG{{Index: 0, UUID: "MIG-cccc"}}},
	}}
}

func TestDoctorGPUs(t *testing.T) {
	have := func() (*gpu.Inventory, error) { return inventory(), nil }
	none := func() (*gpu.Inventory, error) { return nil, gpu.ErrNoNVML }
	broken := func() (*gpu.Inventory, error) {
		return nil, errors.New("NVML init: Driver/library version mismatch; check that the NVIDIA driver is loaded (nvidia-smi)")
	}
	for _, tc := range []struct {
		name   string
		o      GPUOptions
		status Status
		detail string
		fix    string
	}{
		{"cpu only", GPUOptions{GPUs: "0", CPUOnly: true, Discover: none}, Skip, "--cpu-only", ""},
		{"one", GPUOptions{GPUs: "0", Discover: have}, OK, "GPU 0 (NVIDIA H200); driver 550.54.15, CUDA 12.4", ""},
		{"list and MIG", GPUOptions{GPUs: "0,1.0", Discover: have}, OK, "GPU 0 (NVIDIA H200), MIG 1:0 (NVIDIA H200)", ""},
		{"uuid", GPUOptions{GPUs: "GPU-bbbb", Discover: have}, OK, "GPU 1 (NVIDIA H200)", ""},
		{"all", GPUOptions{GPUs: "all", Discover: have}, OK, "GPU 0 (NVIDIA H200), GPU 1 (NVIDIA H200)", ""},
		{"absent index", GPUOptions{GPUs: "0,3", Discover: have}, Fail, `--gpus "0,3": GPU 3 not found; this machine has GPUs 0-1`, "nvidia-smi -L"},
		{"absent MIG", GPUOptions{GPUs: "0:5", Discover: have}, Fail, "0:5", "nvidia-smi -L"},
		{"bad spec", GPUOptions{GPUs: "x", Discover: have}, Fail, `invalid GPU id "x"`, "--gpus"},
		{"no NVML, assigned", GPUOptions{GPUs: "0", Discover: none}, Fail, "GPU(s) 0 assigned but NVML not found (libnvidia-ml.so)", "install the NVIDIA driver"},
		{"no NVML, daemon", GPUOptions{GPUs: "0", Discover: none, NoNVML: Warn}, Warn, "GPU(s) 0 assigned but NVML not found", "--cpu-only"},
		{"no NVML, all", GPUOptions{GPUs: "all", Discover: none}, Fail, "NVML not found", "install the NVIDIA driver"},
		{"no NVML, none assigned", GPUOptions{Discover: none}, Skip, "no --gpus given and NVML not found", ""},
		{"none assigned", GPUOptions{Discover: have}, OK, "no --gpus given: tasks see all 2 GPU(s)", ""},
		{"driver mismatch", GPUOptions{GPUs: "0", Discover: broken}, Fail, "Driver/library version mismatch", "reboot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := Run(t.Context(), []Check{GPUCheck(tc.o)})
			expect(t, rep, "gpus", tc.status, tc.detail, tc.fix)
		})
	}
}

// On a machine without NVIDIA GPUs (this one), an assigned GPU is a clear
// failure through the real NVML loader.
func TestDoctorGPUsRealNVML(t *testing.T) {
	rep := Run(t.Context(), []Check{GPUCheck(GPUOptions{GPUs: "1000"})})
	r := rep.Results[0]
	if r.Status != Fail || r.Fix == "" {
		t.Fatalf("gpus = %+v, want a failure with a fix", r)
	}
	if !strings.Contains(r.Detail, "NVML") && !strings.Contains(r.Detail, "GPU 1000 not found") {
		t.Errorf("gpus detail %q names neither NVML nor the GPU", r.Detail)
	}
	t.Logf("this machine: %s", Line(r))
}

func TestDoctorDisk(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Two filesystems: dev 1 (venvs, caches) with 5 GiB, dev 2 (state) with 1.5 GiB.
	stat := func(p string) (FSInfo, error) {
		if strings.HasPrefix(p, filepath.Join(dir, "state")) {
			return FSInfo{Free: 3 * gib / 2, Dev: 2}, nil
		}
		return FSInfo{Free: 5 * gib, Dev: 1}, nil
	}
	paths := []DiskPath{{"venvs", filepath.Join(dir, "venvs")}, {"venv cache", filepath.Join(dir, "cache")}, {"state dir", filepath.Join(dir, "state")}}
	const key = "agent.venvs_cache.free_space_threshold_gb"
	for _, tc := range []struct {
		floor  float64
		status Status
		detail string
	}{
		{1, OK, "5.0 GiB free for venvs, venv cache; 1.5 GiB free for state dir (floor 1 GiB)"},
		{2, Fail, "1.5 GiB free for state dir (" + filepath.Join(dir, "state") + "): below the 2 GiB floor (" + key + ")"},
		{0, OK, "5.0 GiB free for venvs, venv cache; 1.5 GiB free for state dir"},
	} {
		rep := Run(t.Context(), []Check{DiskCheck(DiskOptions{Paths: paths, MinFreeGB: tc.floor, Setting: key, Stat: stat})})
		expect(t, rep, "disk", tc.status, tc.detail, map[Status]string{OK: "", Fail: "or lower " + key}[tc.status])
	}

	rep := Run(t.Context(), []Check{DiskCheck(DiskOptions{Paths: paths, Stat: func(string) (FSInfo, error) { return FSInfo{}, os.ErrPermission }})})
	expect(t, rep, "disk", Fail, "venvs "+filepath.Join(dir, "venvs")+": permission denied", "permissions")

	// Real statfs; paths that do not exist yet are measured at their parent.
	rep = Run(t.Context(), []Check{DiskCheck(DiskOptions{Paths: []DiskPath{{"venvs", filepath.Join(dir, "a", "b")}}, MinFreeGB: 0.001, Setting: key})})
	expect(t, rep, "disk", OK, "GiB free for venvs", "")
	rep = Run(t.Context(), []Check{DiskCheck(DiskOptions{Paths: []DiskPath{{"venvs", dir}}, MinFreeGB: 1 << 30, Setting: key})})
	expect(t, rep, "disk", Fail, "below the 1073741824 GiB floor", key)
}

func TestDoctorGitHost(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open := l.Addr().String()
	closed := closedAddr(t)
	rep := Run(t.Context(), []Check{GitHostCheck(GitOptions{Host: open})})
	expect(t, rep, "git host", OK, "git "+open+" reachable", "")
	rep = Run(t.Context(), []Check{GitHostCheck(GitOptions{Host: "https://user@" + closed + "/org/repo.git"})})
	expect(t, rep, "git host", Fail, "cannot connect to https "+closed+": connection refused", "agent.git_host (CLEARML_AGENT_GIT_HOST)")
	rep = Run(t.Context(), []Check{GitHostCheck(GitOptions{})})
	expect(t, rep, "git host", Skip, "agent.git_host is not set", "")
	rep = Run(t.Context(), []Check{GitHostCheck(GitOptions{Host: "git.example.com:99999"})})
	expect(t, rep, "git host", Fail, `port "99999" is not a number`, "agent.git_host")

	// A bare host name: https and ssh; one of them down is a warning.
	var dialed []string
	dial := func(_ context.Context, _, addr string) (net.Conn, error) {
		dialed = append(dialed, addr)
		if strings.HasSuffix(addr, ":22") {
			return nil, fmt.Errorf("dial tcp %s: connect: connection timed out", addr)
		}
		c1, c2 := net.Pipe()
		c2.Close()
		return c1, nil
	}
	rep = Run(t.Context(), []Check{GitHostCheck(GitOptions{Host: "git.example.com", Dial: dial})})
	expect(t, rep, "git host", Warn, "https git.example.com:443 reachable, but not ssh git.example.com:22: connection timed out", "repositories cloned that way will fail")
	if !rep.OK {
		t.Error("a warning failed the report")
	}
	dialed = nil
	rep = Run(t.Context(), []Check{GitHostCheck(GitOptions{Host: "git.example.com", ForceSSH: true, SSHPort: 2222, Dial: dial})})
	expect(t, rep, "git host", OK, "ssh git.example.com:2222 reachable", "")
	if len(dialed) != 1 {
		t.Errorf("dialed %v, want ssh only", dialed)
	}
}

func TestDoctorGitTargets(t *testing.T) {
	for _, tc := range []struct {
		in   GitOptions
		want string
	}{
		{GitOptions{Host: "github.com"}, "github.com https:443 ssh:22"},
		{GitOptions{Host: "github.com", SSHPort: 2222}, "github.com https:443 ssh:2222"},
		{GitOptions{Host: "https://git.corp:8443/x"}, "git.corp https:8443"},
		{GitOptions{Host: "http://git.corp"}, "git.corp http:80"},
		{GitOptions{Host: "ssh://git@git.corp"}, "git.corp ssh:22"},
		{GitOptions{Host: "[::1]:2200"}, "::1 git:2200"},
		{GitOptions{Host: "https://github.com", ForceSSH: true}, "github.com ssh:22"},
	} {
		host, ts, err := gitTargets(tc.in)
		got := host
		for _, t := range ts {
			got += " " + t.proto + ":" + t.port
		}
		if err != nil || got != tc.want {
			t.Errorf("gitTargets(%+v) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
