package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func inspectOf(info DockerInfo, err error) func(context.Context) (DockerInfo, error) {
	return func(context.Context) (DockerInfo, error) { return info, err }
}

func TestDoctorDockerGPU(t *testing.T) {
	saved := hookDirs
	hookDirs = ""
	t.Cleanup(func() { hookDirs = saved })
	empty := t.TempDir()
	local := DockerInfo{Host: "unix:///run/docker.sock", Product: "Docker Engine", Version: "28.5.2", APIVersion: "1.51", Runtimes: []string{"io.containerd.runc.v2", "runc"}, DefaultRuntime: "runc"}
	run := func(o DockerOptions) Report {
		if o.Env == nil {
			o.Env = []string{"PATH=" + empty}
		}
		if o.CDIDirs == nil {
			o.CDIDirs = []string{empty}
		}
		return Run(t.Context(), DockerChecks(o))
	}

	rep := run(DockerOptions{Inspect: inspectOf(local, nil), NeedGPU: true})
	expect(t, rep, "docker", OK, "Docker Engine 28.5.2 (API 1.51) at unix:///run/docker.sock", "")
	expect(t, rep, "docker gpu", Fail, "the engine cannot give containers GPUs: no nvidia runtime (runtimes io.containerd.runc.v2, runc), no nvidia-container-runtime-hook and no NVIDIA CDI spec",
		"install nvidia-container-toolkit, run `nvidia-ctk runtime configure --runtime=docker`")

	rep = run(DockerOptions{Inspect: inspectOf(local, nil), NeedGPU: false})
	expect(t, rep, "docker gpu", Skip, "--cpu-only", "")

	withNvidia := local
	withNvidia.Runtimes = append(withNvidia.Runtimes, "nvidia")
	rep = run(DockerOptions{Inspect: inspectOf(withNvidia, nil), NeedGPU: true})
	expect(t, rep, "docker gpu", OK, "the engine has the nvidia runtime (default runtime runc)", "")

	// The hook dockerd registers its nvidia driver with.
	hookBin := t.TempDir()
	if err := os.WriteFile(filepath.Join(hookBin, nvidiaHook), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rep = run(DockerOptions{Inspect: inspectOf(local, nil), NeedGPU: true, Env: []string{"PATH=" + hookBin}})
	expect(t, rep, "docker gpu", OK, filepath.Join(hookBin, nvidiaHook)+" is installed", "")

	// Only a CDI spec.
	cdi := t.TempDir()
	if err := os.WriteFile(filepath.Join(cdi, "nvidia.yaml"), []byte("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withCDI := local
	withCDI.CDISpecDirs = []string{cdi}
	rep = run(DockerOptions{Inspect: inspectOf(withCDI, nil), NeedGPU: true})
	expect(t, rep, "docker gpu", Warn, "only a CDI spec ("+filepath.Join(cdi, "nvidia.yaml")+") provides NVIDIA GPUs", "nvidia-ctk")
	if !rep.OK {
		t.Error("a warning failed the report")
	}

	remote := local
	remote.Host = "tcp://gpu-box:2376"
	rep = run(DockerOptions{Inspect: inspectOf(remote, nil), NeedGPU: true})
	expect(t, rep, "docker gpu", Warn, "the engine at tcp://gpu-box:2376 lists no nvidia runtime", "run clearml-agent doctor on the engine's machine")

	absent := local
	absent.Image = "absent"
	rep = run(DockerOptions{Inspect: inspectOf(absent, nil), Image: "nvidia/cuda:12.4.1-base-ubuntu22.04"})
	expect(t, rep, "docker", Warn, "image nvidia/cuda:12.4.1-base-ubuntu22.04 is not present and will be pulled by the first task", "docker pull nvidia/cuda:12.4.1-base-ubuntu22.04")

	rep = run(DockerOptions{Inspect: inspectOf(DockerInfo{}, errors.New("docker engine at unix:///x.sock does not answer: refused; start it (systemctl start docker) or point DOCKER_HOST at a running one")), NeedGPU: true})
	expect(t, rep, "docker", Fail, "docker engine at unix:///x.sock does not answer: refused", "start it (systemctl start docker)")
	expect(t, rep, "docker gpu", Skip, "the engine does not answer", "")

	// The daemon reaches the engine itself: no engine row.
	rep = run(DockerOptions{Inspect: inspectOf(local, nil), SkipEngine: true, NeedGPU: true})
	if len(rep.Results) != 1 || rep.Results[0].Name != "docker gpu" {
		t.Errorf("SkipEngine: %+v", rep.Results)
	}
}

// The real path: docker.Connect with DOCKER_HOST, then EngineInfo, against
// an engine that does not answer and a stand-in speaking the Engine API.
func TestDoctorDockerEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	rep := Run(t.Context(), DockerChecks(DockerOptions{NeedGPU: true}))
	expect(t, rep, "docker", Fail, "docker engine at unix:///nonexistent/docker.sock does not answer", "systemctl start docker")

	sock := filepath.Join(shortTemp(t), "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.47")
		w.Header().Set("Content-Type", "application/json")
		p := r.URL.Path
		if i := strings.Index(p[1:], "/"); strings.HasPrefix(p, "/v1.") && i > 0 {
			p = p[i+1:]
		}
		switch {
		case p == "/_ping":
			w.Write([]byte("OK"))
		case p == "/info":
			json.NewEncoder(w).Encode(map[string]any{"ServerVersion": "27.3.1", "DefaultRuntime": "runc",
				"Runtimes": map[string]any{"runc": map[string]any{"path": "runc"}, "nvidia": map[string]any{"path": "nvidia-container-runtime"}}})
		case p == "/version":
			json.NewEncoder(w).Encode(map[string]any{"Version": "27.3.1", "ApiVersion": "1.47"})
		case strings.HasPrefix(p, "/images/busybox:1/json"):
			json.NewEncoder(w).Encode(map[string]any{"Id": "sha256:1"})
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"no such image"}`))
		}
	}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	rep = Run(t.Context(), DockerChecks(DockerOptions{NeedGPU: true, Image: "busybox:1"}))
	expect(t, rep, "docker", OK, "Docker Engine 27.3.1 (API 1.47) at unix://"+sock+"; image busybox:1 present", "")
	expect(t, rep, "docker gpu", OK, "the engine has the nvidia runtime", "")
	rep = Run(t.Context(), DockerChecks(DockerOptions{Image: "nothere:1"}))
	expect(t, rep, "docker", Warn, "image nothere:1 is not present", "docker pull nothere:1")
}

// shortTemp is a directory whose path fits a unix socket name.
func shortTemp(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "doc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
