//go:build integration

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/nspawn"
)

// TestIntegrationBootCloudInit boots a fresh Debian 12 "VM" (systemd in nspawn) whose
// only input is a NoCloud seed holding the user-data `agent-provision
// cloud-init` renders: cloud-init installs the packages and the release
// tarball from a URL (sha256 checked), provisions two CPU agents under
// systemd, and a queued task completes. A reboot brings the agents back
// without installing again.
func TestIntegrationBootCloudInit(t *testing.T) {
	nspawn.SkipUnlessRoot(t)
	srv, queues := startServer(t, "default")
	rel := release(t)
	url := serveFile(t, rel.Tarball)

	userData, err := hostProvision(t, "cloud-init",
		"--api-host", srv.URL, "--access-key", accessKey, "--secret-key", secretKey,
		"--cpu-agents", "2", "--queue", "default", "--worker-id-prefix", "pool",
		"--binary-url", url, "--binary-sha256", rel.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.SplitN(userData, "write_files", 2)[0], secretKey) {
		t.Errorf("the secret key appears outside write_files")
	}
	validateUserData(t, []byte(userData))
	t.Logf("user-data (%d bytes) passes cloud-init schema", len(userData))

	const iid = "iid-clearml-e2e"
	start := monotonicNow()
	m := nspawn.Boot(t, nspawn.Options{
		Rootfs:      nspawn.RootfsCloudInit(t),
		Ephemeral:   true,
		BootTimeout: 6 * time.Minute,
		Prepare:     func(root string) error { return seed(root, iid, []byte(userData)) },
	})
	status := cloudInitDone(t, m)
	t.Logf("cloud-init status:\n%s", strings.TrimSpace(status))
	units := []string{"clearml-agent@cpu0.service", "clearml-agent@cpu1.service"}
	var ready time.Duration
	for _, u := range units {
		if d := readyAfter(t, m, u, start); d > ready {
			ready = d
		}
	}
	workers := []string{"pool:" + iid + ":cpu0", "pool:" + iid + ":cpu1"}
	waitWorkers(t, srv, 30*time.Second, workers...)
	_, log := runTask(t, srv, queues["default"], "hello", "echo \"hello from $(hostname) as $(id -un)\"\n", 2*time.Minute)
	completed := monotonicNow() - start
	if !strings.Contains(log, "hello from") {
		t.Errorf("task log lacks its line:\n%s", log)
	}
	t.Logf("TIMING cloud-init boot-to-READY (both agents): %s", ready.Round(10*time.Millisecond))
	t.Logf("TIMING cloud-init boot-to-first-task-completed: %s", completed.Round(10*time.Millisecond))
	if out, err := m.Exec(t.Context(), "agent-provision", "status"); err == nil {
		t.Logf("agent-provision status:\n%s", out)
	} else {
		t.Errorf("agent-provision status: %v", err)
	}
	// The provisioned agents pass their preflight as their units run them.
	if out, err := m.Exec(t.Context(), "agent-provision", "doctor"); err != nil {
		t.Errorf("agent-provision doctor: %v\n%s", err, out)
	} else {
		t.Logf("agent-provision doctor:\n%s", out)
	}
	if out, _ := m.Exec(t.Context(), "stat", "-c", "%a %U", "/etc/clearml-agent/clearml.conf"); strings.TrimSpace(out) != "600 clearml" {
		t.Errorf("clearml.conf mode/owner = %q, want 600 clearml", strings.TrimSpace(out))
	}
	if out, err := m.Exec(t.Context(), "test", "-e", "/etc/clearml-agent/credentials"); err == nil {
		t.Errorf("the credentials file is left on disk after provisioning: %s", out)
	}
	installs := func() int {
		out, _ := m.Exec(t.Context(), "grep", "-c", "installed clearml-agent-go", "/var/log/cloud-init-output.log")
		n, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("count the installs in cloud-init-output.log: %q", out)
		}
		return n
	}
	if n := installs(); n != 1 {
		t.Errorf("cloud-init-output.log shows %d installs, want 1", n)
	}

	// Reboot: cloud-init sees the same instance and runs nothing again; the
	// units, enabled by the first boot, bring the agents back.
	before := registerTimes(srv)
	start = monotonicNow()
	m.Reboot(t)
	cloudInitDone(t, m)
	waitWorkers(t, srv, 60*time.Second, workers...)
	for id, at := range registerTimes(srv) {
		if before[id] == at {
			t.Errorf("worker %s was not registered again after the reboot (register_time %s)", id, at)
		}
	}
	var again time.Duration
	for _, u := range units {
		if d := readyAfter(t, m, u, start); d > again {
			again = d
		}
	}
	t.Logf("TIMING reboot-to-READY: %s", again.Round(10*time.Millisecond))
	if n := installs(); n != 1 {
		t.Errorf("after the reboot cloud-init-output.log shows %d installs, want 1 (the install ran again)", n)
	}
	runTask(t, srv, queues["default"], "again", "echo again\n", 2*time.Minute)
}
