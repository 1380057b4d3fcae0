//go:build integration

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/nspawn"
)

// TestIntegrationPackerImage checks the Packer template with the real
// `packer validate`, then runs the image path it takes: its provisioning
// script (packer/scripts/provision-image.sh, with the installer the template
// uploads) chrooted into a copy of the Debian 12 cloud-init rootfs, as the
// shell provisioner runs it in the build VM. The "image" then boots with
// only a NoCloud seed holding credentials (`agent-provision cloud-init
// --prebuilt-image`), and a queued task completes.
func TestIntegrationPackerImage(t *testing.T) {
	nspawn.SkipUnlessRoot(t)
	repo := repoRoot(t)
	validate := exec.CommandContext(t.Context(), "packer", "validate", "-var-file=packer/example.pkrvars.hcl",
		"-except=qemu.debian12", "packer/clearml-agent.pkr.hcl")
	validate.Dir = repo
	if out, err := validate.CombinedOutput(); err != nil {
		t.Fatalf("packer validate: %v\n%s", err, out)
	}
	t.Logf("packer validate -var-file=packer/example.pkrvars.hcl -except=qemu.debian12 packer/clearml-agent.pkr.hcl: ok")

	srv, queues := startServer(t, "default")
	rel := release(t)
	userData, err := hostProvision(t, "cloud-init", "--prebuilt-image", "--worker-id-prefix", "pool",
		"--access-key", accessKey, "--secret-key", secretKey)
	if err != nil {
		t.Fatal(err)
	}
	validateUserData(t, []byte(userData))

	const iid = "iid-clearml-packer"
	var build time.Duration
	prepare := func(root string) error {
		// What the template's file provisioners upload.
		up := filepath.Join(root, "tmp/clearml-agent-build")
		for src, dst := range map[string]string{
			rel.Tarball: filepath.Join(up, filepath.Base(rel.Tarball)),
			filepath.Join(repo, "templates/install.sh"):              filepath.Join(up, "install.sh"),
			filepath.Join(repo, "packer/scripts/provision-image.sh"): filepath.Join(up, "provision-image.sh"),
		} {
			if err := copyFile(src, dst, 0o755); err != nil {
				return err
			}
		}
		begin := time.Now()
		cmd := exec.CommandContext(t.Context(), "chroot", root, "/usr/bin/env", "-i",
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"AGENT_TARBALL=/tmp/clearml-agent-build/"+filepath.Base(rel.Tarball), "AGENT_SHA256="+rel.SHA256,
			"API_HOST="+srv.URL, "QUEUE=default", "CPU_AGENTS=1",
			"/bin/sh", "/tmp/clearml-agent-build/provision-image.sh")
		out, err := cmd.CombinedOutput()
		build = time.Since(begin)
		t.Logf("provision-image.sh in the rootfs (%s):\n%s", build.Round(10*time.Millisecond), out)
		if err != nil {
			return err
		}
		if err := os.RemoveAll(up); err != nil {
			return err
		}
		if b, err := os.ReadFile(filepath.Join(root, "etc/clearml-agent/clearml.conf")); err != nil {
			return err
		} else if strings.Contains(string(b), secretKey) {
			t.Errorf("the image's clearml.conf holds the secret key")
		}
		return seed(root, iid, []byte(userData))
	}
	start := monotonicNow()
	m := nspawn.Boot(t, nspawn.Options{
		Rootfs: nspawn.RootfsCloudInit(t), Ephemeral: true, BootTimeout: 5 * time.Minute, Prepare: prepare,
	})
	status := cloudInitDone(t, m)
	t.Logf("cloud-init status:\n%s", strings.TrimSpace(status))
	ready := readyAfter(t, m, "clearml-agent@cpu0.service", start)
	// The image has no worker ids: first boot names the agents after the
	// instance (the autoscaler's <prefix>:<instance-id> convention).
	waitWorkers(t, srv, 30*time.Second, "pool:"+iid+":cpu0")
	// Before first boot the units were skipped (ConditionPathExists), not
	// failed and restarted.
	if j := m.Journal("clearml-agent@cpu0.service"); strings.Contains(j, "Failed") || strings.Contains(j, "missing credentials") {
		t.Errorf("the agent unit failed before its credentials arrived:\n%s", j)
	}
	_, log := runTask(t, srv, queues["default"], "hello", "echo \"hello from the image\"\n", 2*time.Minute)
	completed := monotonicNow() - start
	if !strings.Contains(log, "hello from the image") {
		t.Errorf("task log lacks its line:\n%s", log)
	}
	t.Logf("TIMING packer image boot-to-READY: %s", ready.Round(10*time.Millisecond))
	t.Logf("TIMING packer image boot-to-first-task-completed: %s", completed.Round(10*time.Millisecond))
	if out, err := m.Exec(t.Context(), "agent-provision", "status"); err == nil {
		t.Logf("agent-provision status:\n%s", out)
	}
}
