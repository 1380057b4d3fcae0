package provision

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/gpufleet/clearml-agent-go/provision/systemd/systemdtest"
	"github.com/gpufleet/clearml-agent-go/unitgen"
)

// writeELF writes a minimal x86-64 ELF executable: static, or dynamic with
// interp as its PT_INTERP (all that the plan's check looks at).
func writeELF(t *testing.T, file, interp string) {
	t.Helper()
	var b bytes.Buffer
	hdr := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Ehsize: 64, Phentsize: 56, Shentsize: 64,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS], hdr.Ident[elf.EI_DATA], hdr.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	if interp != "" {
		hdr.Phoff, hdr.Phnum = 64, 1
	}
	binary.Write(&b, binary.LittleEndian, hdr)
	if interp != "" {
		s := append([]byte(interp), 0)
		binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R),
			Off: 64 + 56, Filesz: uint64(len(s)), Memsz: uint64(len(s)), Align: 1})
		b.Write(s)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
}

// fakeEngine serves the few Docker API calls agent-provision makes (ping,
// version, container list) on a unix socket and returns its DOCKER_HOST.
func fakeEngine(t *testing.T, containers []container.Summary) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fake-docker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", "1.41")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/_ping":
			w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/version"):
			json.NewEncoder(w).Encode(map[string]string{"Version": "99.1-fake", "ApiVersion": "1.41"})
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			if !strings.Contains(r.URL.Query().Get("filters"), "clearml-worker-id") {
				http.Error(w, `{"message":"want a label filter"}`, http.StatusBadRequest)
				return
			}
			json.NewEncoder(w).Encode(containers)
		default:
			http.Error(w, `{"message":"not here"}`, http.StatusNotFound)
		}
	}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return "unix://" + sock
}

// dockerSystem is a live system root with what docker mode needs: a static
// agent beside the binary and a docker group.
func dockerSystem(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeELF(t, filepath.Join(root, "usr/local/bin/clearml-agent"), "/lib64/ld-linux-x86-64.so.2")
	writeELF(t, filepath.Join(root, "usr/local/bin/clearml-agent-static"), "")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\ndocker:x:998:\n"), 0o644)
	return root
}

// dockerWarnings are the plan's warnings but the one about NVML (no
// driver on the test host).
func dockerWarnings(p *Plan) []string {
	var out []string
	for _, w := range p.Warnings {
		if !strings.Contains(w, "NVML not found") {
			out = append(out, w)
		}
	}
	return out
}

func dockerInputs(root, host string) Inputs {
	in := baseInputs(root)
	in.Docker, in.DockerHost, in.DockerImage = true, host, "localhost/img:1"
	return in
}

func TestDockerPlanLive(t *testing.T) {
	root := dockerSystem(t)
	host := fakeEngine(t, nil)
	p := mustPlan(t, dockerInputs(root, host))
	out := p.String()
	for _, w := range []string{
		`args="--gpus 0 --docker localhost/img:1"`, `args="--services-mode --docker localhost/img:1"`,
		"docker mode: engine " + host + " (engine 99.1-fake); static agent /usr/local/bin/clearml-agent-static; image localhost/img:1; ordering none (not the local docker.service)",
		"+SupplementaryGroups=docker", "+PrivateDevices=yes", "+DOCKER_HOST=" + host, "+g docker -",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("plan lacks %q:\n%s", w, out)
		}
	}
	for _, no := range []string{"DeviceAllow", "CLEARML_AGENT_DOCKER_BINARY", "Wants=docker.service"} {
		if strings.Contains(out, no) {
			t.Errorf("plan has %q:\n%s", no, out)
		}
	}
	if w := dockerWarnings(p); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}

	// A static agent elsewhere goes into the environment files; applying
	// writes them.
	in := dockerInputs(root, host)
	in.DockerAgentBinary = "/opt/clearml/agent-static"
	writeELF(t, filepath.Join(root, in.DockerAgentBinary), "")
	fake := &systemdtest.Fake{Ready: "idle"}
	if _, err := Apply(t.Context(), mustPlan(t, in), fakeHost(fake)); err != nil {
		t.Fatal(err)
	}
	env, err := ReadEnvFile(filepath.Join(root, "etc/clearml-agent/agents/gpu1.env"))
	if err != nil {
		t.Fatal(err)
	}
	if env[EnvDockerBinary] != "/opt/clearml/agent-static" || env[EnvDockerHost] != host || env[unitgen.EnvDaemonArgs] != "--gpus 1 --docker localhost/img:1" {
		t.Errorf("gpu1.env = %v", env)
	}
	// `agent-provision run` gets the same environment.
	p = mustPlan(t, in)
	_, cenv := p.Command(p.Agents[0], "/usr/local/bin/clearml-agent", t.TempDir())
	if e := strings.Join(cenv, "\n"); !strings.Contains(e, EnvDockerBinary+"=/opt/clearml/agent-static") || !strings.Contains(e, "DOCKER_HOST="+host) {
		t.Errorf("supervisor environment lacks the docker settings:\n%s", e)
	}
}

// The default engine (the local docker.service's socket) orders the units
// after it; a static clearml-agent itself serves as the static agent.
func TestDockerPlanImage(t *testing.T) {
	root := t.TempDir()
	in := baseInputs("")
	in.Root, in.Hostname, in.DockerImage = root, "", "localhost/img:1" // the image implies --docker
	writeELF(t, filepath.Join(root, "usr/local/bin/clearml-agent"), "")
	p := mustPlan(t, in)
	golden(t, "plan_docker_image.golden", strings.ReplaceAll(p.String(), root, "ROOT"))
	if p.Docker == nil || p.Docker.Binary != "/usr/local/bin/clearml-agent" || p.Docker.Unit != "docker.service" {
		t.Errorf("docker info = %+v", p.Docker)
	}
	// Without any static agent, an image build only warns (it may be
	// installed later); so does the engine missing from the image.
	os.Remove(filepath.Join(root, "usr/local/bin/clearml-agent"))
	p = mustPlan(t, in)
	w := strings.Join(p.Warnings, "\n")
	for _, want := range []string{"no static agent at /usr/local/bin/clearml-agent-static", "docker engine not found in image root"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	// With docker.io in the image, only the engine note remains.
	writeELF(t, filepath.Join(root, "usr/local/bin/clearml-agent-static"), "")
	writeELF(t, filepath.Join(root, "usr/bin/dockerd"), "/lib64/ld-linux-x86-64.so.2")
	p = mustPlan(t, in)
	if w := dockerWarnings(p); len(w) != 1 || !strings.Contains(w[0], "not checked during an image build") {
		t.Errorf("warnings = %q", w)
	}
}

func TestDockerBadInput(t *testing.T) {
	root := dockerSystem(t)
	host := fakeEngine(t, nil)
	noGroup := dockerSystem(t)
	os.WriteFile(filepath.Join(noGroup, "etc/group"), []byte("root:x:0:\n"), 0o644)
	noStatic := dockerSystem(t)
	os.Remove(filepath.Join(noStatic, "usr/local/bin/clearml-agent-static"))
	dynamic := dockerSystem(t)
	writeELF(t, filepath.Join(dynamic, "usr/local/bin/clearml-agent-static"), "/lib64/ld-linux-x86-64.so.2")
	script := dockerSystem(t)
	os.WriteFile(filepath.Join(script, "opt/agent"), nil, 0o755)
	os.MkdirAll(filepath.Join(script, "opt"), 0o755)
	os.WriteFile(filepath.Join(script, "opt/agent"), []byte("#!/bin/sh\n"), 0o755)
	deadSock := "unix://" + filepath.Join(t.TempDir(), "nobody.sock")

	for _, tc := range []struct {
		name string
		mod  func(*Inputs)
		want string
	}{
		{"engine unreachable", func(in *Inputs) { in.DockerHost = deadSock },
			"docker engine not reachable at " + deadSock + " ("},
		{"engine unreachable fix", func(in *Inputs) { in.DockerHost = deadSock },
			"): install docker.io and start docker.service, or point --docker-host (DOCKER_HOST) at a running engine"},
		{"dynamic static agent", func(in *Inputs) { in.SystemRoot = dynamic },
			"docker mode: /usr/local/bin/clearml-agent-static is dynamically linked (it needs /lib64/ld-linux-x86-64.so.2), but task containers need a static agent: rebuild it with CGO_ENABLED=0"},
		{"no static agent", func(in *Inputs) { in.SystemRoot = noStatic },
			"docker mode: no static agent at /usr/local/bin/clearml-agent-static (task containers run it, and /usr/local/bin/clearml-agent is not static or missing): install one there"},
		{"agent binary missing", func(in *Inputs) { in.DockerAgentBinary = "/opt/none" }, "--docker-agent-binary /opt/none: no such file; install a static clearml-agent there"},
		{"agent binary not elf", func(in *Inputs) { in.SystemRoot, in.DockerAgentBinary = script, "/opt/agent" }, "--docker-agent-binary /opt/agent: not an ELF executable"},
		{"agent binary relative", func(in *Inputs) { in.DockerAgentBinary = "bin/agent" }, `--docker-agent-binary "bin/agent": must be a clean absolute path`},
		{"no docker group", func(in *Inputs) { in.SystemRoot = noGroup }, `docker mode: no group "docker" here, so the units' SupplementaryGroups=docker would fail: install docker.io`},
		{"image with arguments", func(in *Inputs) { in.DockerImage = "img --ipc=host" }, `--docker-image "img --ipc=host": give one image name without spaces; put docker arguments in clearml.conf`},
		{"ssh engine", func(in *Inputs) { in.DockerHost = "ssh://me@box" }, `--docker-host (DOCKER_HOST) "ssh://me@box": the agents speak to unix:// and tcp:// engines only`},
		{"bad engine url", func(in *Inputs) { in.DockerHost = "nonsense" }, `--docker-host (DOCKER_HOST) "nonsense":`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := dockerInputs(root, host)
			tc.mod(&in)
			start := time.Now()
			p, err := NewPlan(in, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") || p != nil {
				t.Errorf("NewPlan error = %v; want one line containing %q", err, tc.want)
			}
			if d := time.Since(start); d > dockerPingTimeout+2*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
	// Nothing was written anywhere.
	for _, r := range []string{root, noGroup, noStatic, dynamic} {
		if _, err := os.Stat(filepath.Join(r, "etc/clearml-agent")); !os.IsNotExist(err) {
			t.Errorf("%s: files written: %v", r, err)
		}
	}
	// `agent-provision run` writes no units, so it needs no docker group.
	in := dockerInputs(noGroup, host)
	in.Supervised = true
	if _, err := NewPlan(in, nil); err != nil {
		t.Errorf("supervised plan without a docker group: %v", err)
	}
}

func TestStatusContainers(t *testing.T) {
	ctx := t.Context()
	root := dockerSystem(t)
	host := fakeEngine(t, []container.Summary{
		{ID: "0123456789abcdef0123", Image: "localhost/img:1", Status: "Up 3 seconds", Created: 2,
			Labels: map[string]string{"clearml-worker-id": "box:gpu0", "clearml-task-id": "task0"}},
		{ID: "fedcba9876543210fedc", Image: "python:3", Status: "Up 1 second", Created: 3,
			Labels: map[string]string{"clearml-worker-id": "box:services:service:task1", "clearml-parent-worker-id": "box:services", "clearml-task-id": "task1"}},
		{ID: "aaaaaaaaaaaaaaaaaaaa", Image: "other", Status: "Up", Created: 1,
			Labels: map[string]string{"clearml-worker-id": "elsewhere:gpu0", "clearml-task-id": "task9"}},
	})
	fake := &systemdtest.Fake{Ready: "running task"}
	if _, err := Apply(ctx, mustPlan(t, dockerInputs(root, host)), fakeHost(fake)); err != nil {
		t.Fatal(err)
	}
	rows, err := Status(ctx, fake, root)
	if err != nil {
		t.Fatal(err)
	}
	AddContainers(ctx, rows)
	table := FormatStatus(rows, time.Now())
	t.Logf("status:\n%s", table)
	for _, w := range []string{"containers (docker mode):", "UNIT                            CONTAINER     IMAGE            TASK   STATUS",
		"clearml-agent@gpu0.service      0123456789ab  localhost/img:1  task0  Up 3 seconds",
		"clearml-agent@gpu1.service      -             -                -      no containers",
		"clearml-agent@services.service  fedcba987654  python:3         task1  Up 1 second"} {
		if !strings.Contains(table, w) {
			t.Errorf("status lacks %q", w)
		}
	}
	if strings.Contains(table, "task9") {
		t.Error("status shows another worker's container")
	}

	// The engine gone: said once per agent, the rest of the table intact.
	for i := range rows {
		rows[i].Containers, rows[i].DockerHost = nil, "unix://"+filepath.Join(t.TempDir(), "gone.sock")
	}
	AddContainers(ctx, rows)
	table = FormatStatus(rows, time.Now())
	if n := strings.Count(table, "engine unreachable at unix://"); n != 3 || !strings.Contains(table, "running task") {
		t.Errorf("status with the engine gone (%d unreachable lines):\n%s", n, table)
	}
}
