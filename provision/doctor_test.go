package provision

import (
	"bytes"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/internal/emulator"
	"github.com/gpufleet/clearml-agent-go/provision/systemd/systemdtest"
)

// agent-provision doctor runs the real `clearml-agent doctor` for each
// provisioned agent with its queues and daemon arguments: all pass against
// the emulator; a queue that does not exist fails that agent, in one line.
func TestDoctorProvisionedAgents(t *testing.T) {
	root := t.TempDir()
	prefix := "/opt/clearml"
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(root, prefix, "bin/clearml-agent"), "../cmd/clearml-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build clearml-agent: %v\n%s", err, out)
	}
	srv := emulator.New(emulator.Options{Credentials: map[string]string{"AKEY": "SECRETVALUE"}})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	srv.CreateQueue("cpu")
	srv.CreateQueue("services")

	in := baseInputs(root)
	in.APIHost, in.WebHost, in.FilesHost = hs.URL, "", ""
	in.GPUs, in.CPUAgents, in.Queues, in.Prefix = "", 2, []string{"cpu"}, prefix
	in.ExtraIndexURLs = nil
	if _, err := Apply(t.Context(), mustPlan(t, in), fakeHost(&systemdtest.Fake{})); err != nil {
		t.Fatal(err)
	}
	agents, err := DoctorAgents(in, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 3 {
		t.Fatalf("agents = %d, want cpu0 cpu1 services", len(agents))
	}
	if got := strings.Join(agents[2].Argv[3:], " "); got != "doctor --json --queue services --services-mode" {
		t.Errorf("services agent's doctor: %q", got)
	}
	var out bytes.Buffer
	if err := RunDoctor(t.Context(), agents, &out); err != nil {
		t.Fatalf("doctor: %v\n%s", err, out.String())
	}
	for _, want := range []string{"== clearml-agent@cpu0.service", "== clearml-agent@services.service", "credentials  OK", "queues       OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("healthy:\n%s", out.String())

	// The services queue disappears: only that agent fails.
	in.ServicesQueue = "gone"
	if _, err := Apply(t.Context(), mustPlan(t, in), fakeHost(&systemdtest.Fake{})); err != nil {
		t.Fatal(err)
	}
	agents, err = DoctorAgents(in, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = RunDoctor(t.Context(), agents, &out)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "services (queues:") || strings.Contains(err.Error(), "cpu0") {
		t.Errorf("doctor error = %v; want one line naming only the services agent's queue failure\n%s", err, out.String())
	}
	t.Logf("broken: %v\n%s", err, out.String())
}

func TestDoctorNothingProvisioned(t *testing.T) {
	_, err := DoctorAgents(Inputs{SystemRoot: t.TempDir(), Prefix: "/usr/local", ConfigPath: "/etc/clearml-agent/clearml.conf"}, 0)
	if err == nil || !strings.Contains(err.Error(), "no agents provisioned") {
		t.Errorf("err = %v", err)
	}
}
