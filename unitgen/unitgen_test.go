package unitgen

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// scenarios are the fleets the golden files and systemd-analyze cover.
var scenarios = []struct {
	name   string
	opts   Options
	agents []AgentSpec
}{
	{
		name: "venv",
		opts: Options{},
		agents: []AgentSpec{
			{Instance: "gpu0", GPUs: []string{"0"}, Queues: []string{"gpu", "default"}, WorkerID: "node1:gpu0"},
			{Instance: "gpu1-2", GPUs: []string{"1", "2"}, Queues: []string{"big"}, WorkerID: "node1:gpu1,2",
				ExtraEnv: map[string]string{"PIP_INDEX_URL": "https://pypi.internal/simple", "CLEARML_AGENT_EXTRA_PYTHON_PATH": "/opt/my lib", "ODD": `a"b\c$d` + "`e"}},
			{Instance: "gpu3.1", GPUs: []string{"3:1"}, Queues: []string{"mig"}},
			{Instance: "cpu0", CPUOnly: true, Queues: []string{"cpu"}},
		},
	},
	{
		name: "docker",
		opts: Options{
			BinaryPath: "/opt/clearml/bin/clearml-agent", ConfigPath: "/etc/clearml/agent.conf", EnvDir: "/etc/clearml/env",
			User: "mlagent", Group: "ml", WatchdogSec: -1, DrainTimeout: -1, RestartSec: 3, Docker: true, DockerUnit: "docker.service",
		},
		agents: []AgentSpec{
			{Instance: "gpu-GPU-1a2b3c4d", GPUs: []string{"GPU-1a2b3c4d-0000-0000-0000-000000000000"}, Queues: []string{"docker"},
				Docker: true, DockerImage: "nvidia/cuda:12.4.1-runtime-ubuntu22.04"},
			{Instance: "services", Services: true, ServicesMax: 4, Queues: []string{"services"}, Docker: true},
			{Instance: "services_unlimited", Services: true, Queues: []string{"services2"}, Docker: true},
		},
	},
	{
		// An engine that is not the local docker.service (DOCKER_HOST
		// elsewhere) and a static agent at a non-default path.
		name: "docker_remote",
		opts: Options{Docker: true},
		agents: []AgentSpec{
			{Instance: "gpu0", GPUs: []string{"0"}, Queues: []string{"q"}, Docker: true, ExtraEnv: map[string]string{
				"DOCKER_HOST": "tcp://10.0.0.5:2375", "CLEARML_AGENT_DOCKER_BINARY": "/opt/clearml/clearml-agent-static"}},
			{Instance: "cpu0", CPUOnly: true, Queues: []string{"q"}, Docker: true, DockerImage: "python:3.11-slim"},
		},
	},
}

// render joins the files into one golden text.
func render(files Files) []byte {
	var b bytes.Buffer
	for _, f := range files {
		fmt.Fprintf(&b, "=== %s (%04o)\n%s", f.Path, f.Mode, f.Content)
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		files, err := Generate(sc.opts, sc.agents)
		if err != nil {
			t.Fatalf("%s: %v", sc.name, err)
		}
		got := render(files)
		again, _ := Generate(sc.opts, sc.agents)
		if !bytes.Equal(got, render(again)) {
			t.Errorf("%s: two Generate calls differ; output must be deterministic", sc.name)
		}
		golden := filepath.Join("testdata", sc.name+".golden")
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./unitgen -update to create it)", err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s differs from %s (-want +got); run go test ./unitgen -update if intended:\n%s", sc.name, golden, diff)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		opts := withDefaults(sc.opts)
		files, err := Generate(sc.opts, sc.agents)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range [][]*unit.UnitOption{templateUnit(opts), targetUnit(sc.agents)} {
			got, err := unit.Deserialize(bytes.NewReader(files[i].Content))
			if err != nil {
				t.Fatalf("%s: Deserialize(%s): %v", sc.name, files[i].Path, err)
			}
			if !unit.AllMatch(want, got) {
				t.Errorf("%s: %s does not parse back to its options (-want +got):\n%s", sc.name, files[i].Path, cmp.Diff(want, got))
			}
		}
	}
}

func TestFileLayout(t *testing.T) {
	t.Parallel()
	files, err := Generate(Options{}, scenarios[0].agents)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, fmt.Sprintf("%s %04o", f.Path, f.Mode))
	}
	want := []string{
		"etc/systemd/system/clearml-agent@.service 0644",
		"etc/systemd/system/clearml-agents.target 0644",
		"etc/clearml-agent/agents/gpu0.env 0640",
		"etc/clearml-agent/agents/gpu1-2.env 0640",
		"etc/clearml-agent/agents/gpu3.1.env 0640",
		"etc/clearml-agent/agents/cpu0.env 0640",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	tmpl := string(files[0].Content)
	for _, forbidden := range []string{"MemoryDenyWriteExecute", "PrivateDevices", "secret", "SECRET"} {
		if strings.Contains(tmpl, forbidden) {
			t.Errorf("template unit contains %q", forbidden)
		}
	}
}

func TestStopTimeout(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{}, "660"}, // 10m drain + 30s abort grace + 30s margin
		{Options{DrainTimeout: 90 * time.Second, AbortGrace: 2500 * time.Millisecond}, "123"},
		{Options{DrainTimeout: -1}, "infinity"},
	} {
		if got := stopTimeout(withDefaults(tt.opts)); got != tt.want {
			t.Errorf("stopTimeout(%+v) = %s, want %s", tt.opts, got, tt.want)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	t.Parallel()
	ok := AgentSpec{Instance: "gpu0", GPUs: []string{"0"}, Queues: []string{"q"}}
	with := func(f func(*AgentSpec)) []AgentSpec { a := ok; f(&a); return []AgentSpec{a} }
	tests := []struct {
		opts   Options
		agents []AgentSpec
		want   string
	}{
		{Options{}, nil, "unitgen: no agents to generate; give at least one, e.g. --gpus 0 or --cpu-agents 1"},
		{Options{}, with(func(a *AgentSpec) { a.Instance = "gpu 0" }), `agent "gpu 0": instance names may only use letters, digits, '_', '.' and '-' (at most 200); use e.g. gpu0, gpu0-1, cpu0, services`},
		{Options{}, with(func(a *AgentSpec) { a.Instance = "gpu@0/x" }), `agent "gpu@0/x": instance names may only use`},
		{Options{}, with(func(a *AgentSpec) { a.Instance = "" }), `agent "": instance names may only use`},
		{Options{}, []AgentSpec{ok, ok}, `agent "gpu0": instance name used twice; give every agent its own name`},
		{Options{}, with(func(a *AgentSpec) { a.Queues = nil }), `agent "gpu0": no queues; give at least one, e.g. --queue default`},
		{Options{}, with(func(a *AgentSpec) { a.Queues = []string{"my queue"} }), `agent "gpu0": queue "my queue" is empty or contains whitespace`},
		{Options{}, with(func(a *AgentSpec) { a.WorkerID = "h gpu0" }), `agent "gpu0": worker id "h gpu0" contains whitespace; use e.g. host:gpu0`},
		{Options{}, with(func(a *AgentSpec) { a.GPUs = []string{"0,1"} }), `agent "gpu0": GPU id "0,1" is empty or contains a separator`},
		{Options{}, with(func(a *AgentSpec) { a.Services = true }), `agent "gpu0": services mode runs CPU-only and cannot take GPUs 0; drop the GPUs or the services mode`},
		{Options{}, with(func(a *AgentSpec) { a.CPUOnly = true }), `agent "gpu0": --cpu-only and GPUs 0 contradict; drop one of them`},
		{Options{}, with(func(a *AgentSpec) { a.DockerImage = "img" }), `agent "gpu0": docker image "img" given without docker mode; set Docker too`},
		{Options{}, with(func(a *AgentSpec) { a.Docker = true }), `agent "gpu0": runs tasks in docker but Options.Docker is off`},
		{Options{Docker: true}, with(func(a *AgentSpec) { a.Docker = true; a.DockerImage = "img --rm" }), `agent "gpu0": docker image "img --rm" contains whitespace`},
		{Options{Docker: true}, []AgentSpec{ok}, `agent "gpu0": does not run tasks in docker but the shared unit template is in docker mode`},
		{Options{}, with(func(a *AgentSpec) { a.ExtraEnv = map[string]string{"CLEARML_API_SECRET_KEY": "x"} }), `agent "gpu0": environment variable CLEARML_API_SECRET_KEY looks like a credential; put it in clearml.conf (mode 0600), not in the environment file`},
		{Options{}, with(func(a *AgentSpec) { a.ExtraEnv = map[string]string{"CLEARML_AGENT_GIT_PASS": "x"} }), `looks like a credential`},
		{Options{}, with(func(a *AgentSpec) { a.ExtraEnv = map[string]string{"HF_TOKEN": "x"} }), `looks like a credential`},
		{Options{}, with(func(a *AgentSpec) { a.ExtraEnv = map[string]string{"AWS_SECRET_ACCESS_KEY": "x"} }), `looks like a credential`},
		{Options{}, with(func(a *AgentSpec) { a.ExtraEnv = map[string]string{"NVIDIA_VISIBLE_DEVICES": "1"} }), `agent "gpu0": environment variable NVIDIA_VISIBLE_DEVICES is set by the generator; use the matching AgentSpec field instead`},
		{Options{}, with(func(a *AgentSpec) { a.ExtraEnv = map[string]string{"1BAD": "x"} }), `agent "gpu0": environment variable name "1BAD" is invalid`},
		{Options{}, with(func(a *AgentSpec) { a.ExtraEnv = map[string]string{"OK": "a\nb"} }), `agent "gpu0": environment variable OK has a line break in its value; use a single line`},
		{Options{BinaryPath: "clearml-agent"}, []AgentSpec{ok}, `unitgen: binary path "clearml-agent" must be a clean absolute path`},
		{Options{EnvDir: "/etc/my env"}, []AgentSpec{ok}, `unitgen: env dir "/etc/my env" must be a clean absolute path`},
		{Options{User: "root"}, []AgentSpec{ok}, `unitgen: user "root": agents must not run as root`},
		{Options{User: "Bad User"}, []AgentSpec{ok}, `unitgen: user "Bad User" is not a valid system account name; use e.g. clearml`},
	}
	for _, tt := range tests {
		files, err := Generate(tt.opts, tt.agents)
		if err == nil {
			t.Errorf("Generate(%+v, %+v) = %d files, want error %q", tt.opts, tt.agents, len(files), tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Generate(%+v, %+v) error:\n got %s\nwant it to contain %s", tt.opts, tt.agents, err, tt.want)
		}
	}
}

// TestSystemdAnalyzeVerify lays the files out under a root with a fake agent
// binary and runs the real `systemd-analyze verify` on every instance and the
// target. verify only warns (exit 0) on unknown keys and bad values, so any
// output at all fails the test.
func TestSystemdAnalyzeVerify(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install -y systemd)")
	}
	for _, sc := range scenarios {
		files, err := Generate(sc.opts, sc.agents)
		if err != nil {
			t.Fatal(err)
		}
		root := layOut(t, withDefaults(sc.opts), files)
		units := []string{TargetName}
		for _, a := range sc.agents {
			units = append(units, InstanceUnit(a.Instance))
		}
		if out := verify(t, bin, root, units); out != "" {
			t.Errorf("%s: systemd-analyze verify %s printed:\n%s", sc.name, strings.Join(units, " "), out)
		}

		// The harness must catch what verify only warns about.
		tmpl := filepath.Join(root, UnitDir, TemplateName)
		good, _ := os.ReadFile(tmpl)
		bad := bytes.Replace(good, []byte("UMask="), []byte("Umask="), 1)
		if err := os.WriteFile(tmpl, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		if out := verify(t, bin, root, units[1:2]); !strings.Contains(out, "Umask") {
			t.Errorf("%s: verify of a template with a typo printed %q, want a warning about Umask", sc.name, out)
		}
	}
}

// layOut writes files under a new root, with a fake agent binary, /bin/kill
// and stubs of the targets that default dependencies pull in.
func layOut(t *testing.T, opts Options, files Files) string {
	t.Helper()
	root := t.TempDir()
	write := func(rel string, data []byte, mode os.FileMode) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		write(f.Path, f.Content, f.Mode)
	}
	script := []byte("#!/bin/sh\nexit 0\n")
	write(opts.BinaryPath, script, 0o755)
	write("/bin/kill", script, 0o755)
	for _, u := range []string{"sysinit.target", "basic.target", "shutdown.target", "network-online.target", "multi-user.target"} {
		write("usr/lib/systemd/system/"+u, []byte("[Unit]\nDescription=stub\n"), 0o644)
	}
	return root
}

func verify(t *testing.T, bin, root string, units []string) string {
	t.Helper()
	args := append([]string{"verify", "--man=no", "--root=" + root}, units...)
	cmd := exec.CommandContext(t.Context(), bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil && len(out) == 0 {
		return fmt.Sprintf("exit error %v without output", err)
	}
	return string(out)
}
