package dockertest

import (
	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"debug/elf"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

func TestEngineAndImages(t *testing.T) {
	t.Parallel()
	h := Engine(t)
	ping, err := h.Client.Ping(t.Context())
	if err != nil {
		t.Fatalf("Ping %s: %v", h.Host, err)
	}
	t.Logf("engine at %s: API %s (client %s)", h.Host, ping.APIVersion, h.Client.ClientVersion())
	for _, img := range []string{h.BusyboxImage, h.PythonImage} {
		ins, err := h.Client.ImageInspect(t.Context(), img)
		if err != nil {
			t.Fatalf("image %s: %v", img, err)
		}
		if !slices.Contains(ins.Config.Env, "HOME=/root") {
			t.Errorf("image %s Env = %q, want HOME=/root", img, ins.Config.Env)
		}
	}
}

func TestStaticAgentInBusybox(t *testing.T) {
	t.Parallel()
	h := Engine(t)
	bin := AgentBinary(t)
	if again := AgentBinary(t); again != bin {
		t.Errorf("AgentBinary built twice: %s, then %s", bin, again)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	libs, _ := f.ImportedLibraries()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: not static", bin)
		}
	}
	f.Close()
	if len(libs) > 0 {
		t.Errorf("%s needs shared libraries %q: not static", bin, libs)
	}

	want, err := exec.CommandContext(t.Context(), bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version on the host: %v\n%s", bin, err, want)
	}
	out, code := h.Run(t, &container.Config{Image: h.BusyboxImage, Cmd: []string{"/clearml-agent", "--version"}},
		&container.HostConfig{Binds: []string{bin + ":/clearml-agent:ro"}}, time.Minute)
	if code != 0 || out != string(want) {
		t.Errorf("/clearml-agent --version in %s: exit %d, output %q; want exit 0, %q", h.BusyboxImage, code, out, want)
	}
	t.Logf("in %s: /clearml-agent --version = %q", h.BusyboxImage, strings.TrimSpace(out))
}

func TestPythonImage(t *testing.T) {
	t.Parallel()
	h := Engine(t)
	script := `set -e; echo "home=$HOME"; python3 -m venv /tmp/v && /tmp/v/bin/python -c 'print(1)'; git --version; ssh -V 2>&1`
	start := time.Now()
	out, code := h.Run(t, &container.Config{Image: h.PythonImage, Cmd: []string{"sh", "-c", script}}, nil, 2*time.Minute)
	if code != 0 {
		t.Fatalf("%s: exit %d\n%s", h.PythonImage, code, out)
	}
	for _, want := range []string{"home=/root\n", "\n1\n", "git version ", "OpenSSH"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("in %s (%v):\n%s", h.PythonImage, time.Since(start).Round(time.Millisecond), out)
}

func TestRemoveContainersOnCleanup(t *testing.T) {
	t.Parallel()
	h := Engine(t)
	var label string
	t.Run("create", func(t *testing.T) {
		label = h.UniqueLabel(t)
		k, v, _ := strings.Cut(label, "=")
		c, err := h.Client.ContainerCreate(t.Context(), &container.Config{
			Image: h.BusyboxImage, Cmd: []string{"sleep", "600"}, Labels: map[string]string{k: v},
		}, nil, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Client.ContainerStart(t.Context(), c.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
	}) // cleanup of the subtest removes the running container
	list, err := h.Client.ContainerList(t.Context(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("containers with label %s left after cleanup: %+v", label, list)
	}
}

// TestNoEngine: without an engine a test skips locally and fails under
// CI=true.
func TestNoEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/clearml-test-docker.sock")
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		f := &testenv.Recorder{TB: t}
		f.Run(func(tb testing.TB) { Engine(tb) })
		switch {
		case ci == "" && (!f.DidSkip || f.DidFail):
			t.Errorf("CI unset: skipped %v, failed %v (%s); want a skip", f.DidSkip, f.DidFail, f.Msg)
		case ci == "true" && (!f.DidFail || f.DidSkip):
			t.Errorf("CI=true: skipped %v (%s), failed %v; want a failure", f.DidSkip, f.Msg, f.DidFail)
		}
		msg := f.Msg
		if !strings.Contains(msg, "scripts/test-dockerd.sh start") || !strings.Contains(msg, "nonexistent") {
			t.Errorf("message %q does not name the socket and the fix", msg)
		}
	}
}
