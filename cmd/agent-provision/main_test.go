package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/gpufleet/clearml-agent-go/agent/gpu"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestBadFlags(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown long flag '--bogus'"},
		{[]string{"--root", root, "--gpus", "0,,1", "--access-key", "a", "--secret-key", "b", "--api-host", "http://x"}, `--gpus "0,,1": empty GPU id at position 2`},
		{[]string{"--root", root, "--gpus=-1"}, `--gpus "-1"`},
		{[]string{"--root", root, "--gpus", "-1"}, "unknown short flag '-1'"},
		{[]string{"--root", root, "--gpus", "a"}, `--gpus "a"`},
		{[]string{"--root", root, "--gpus", "0", "--docker"}, "docker mode is not available yet in this version; run without --docker"},
		{[]string{"--root", root, "--gpus", "0", "--api-host", "http://x"}, "credentials missing"},
		{[]string{"--root", root, "--gpus", "0", "--agent-queues", "gpu0"}, "want AGENT=QUEUE"},
		{[]string{"--gpus", "0", "--access-key", "a", "--secret-key", "b", "--api-host", "http://x", "--config", filepath.Join(root, "c.conf")}, "systemd is not PID 1 here"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want non-zero and one line with %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestDryRunFromEnv(t *testing.T) {
	root := t.TempDir()
	t.Setenv("AGENT_PROVISION_GPUS", "0,1")
	t.Setenv("AGENT_PROVISION_ROOT", root)
	t.Setenv("CLEARML_API_HOST", "http://127.0.0.1:8008")
	t.Setenv("CLEARML_API_ACCESS_KEY", "AK")
	t.Setenv("CLEARML_API_SECRET_KEY", "SECRETSECRET")
	code, out, stderr := run(t, "--dry-run", "--services-agent")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{"clearml-agent@gpu0.service", "clearml-agent@gpu1.service", "clearml-agent@services.service", "dry run: nothing was changed"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "SECRETSECRET") {
		t.Error("dry run printed the secret key")
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("dry run wrote %v", entries)
	}
	// The real thing under --root, then status and remove.
	if code, out, stderr := run(t, "--services-agent"); code != 0 {
		t.Fatalf("apply --root: exit %d: %s%s", code, out, stderr)
	}
	code, out, _ = run(t, "status")
	if code != 0 || !strings.Contains(out, "clearml-agent@gpu1.service") {
		t.Errorf("status: %d\n%s", code, out)
	}
	code, out, _ = run(t, "remove", "--purge-config")
	if code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("remove: %d\n%s", code, out)
	}
}

func TestGPUsMock(t *testing.T) {
	old := discover
	t.Cleanup(func() { discover = old })
	discover = func() (*gpu.Inventory, error) { return gpu.DiscoverWith(dgxa100.New()) }
	code, out, stderr := run(t, "gpus")
	if code != 0 || strings.Count(out, "NVIDIA A100") != 8 {
		t.Errorf("gpus: exit %d\n%s%s", code, out, stderr)
	}
	root := t.TempDir()
	code, _, stderr = run(t, "--root", root, "--gpus", "0,9", "--first-boot-creds", "--api-host", "http://x", "--dry-run")
	if code == 0 || !strings.Contains(stderr, "9") {
		t.Errorf("unknown GPU 9 on an 8-GPU box: exit %d, %q", code, stderr)
	}
	code, out, stderr = run(t, "--root", root, "--gpus", "all", "--gpus-per-agent", "4", "--first-boot-creds", "--api-host", "http://x", "--dry-run")
	if code != 0 || !strings.Contains(out, "2 agent(s)") {
		t.Errorf("--gpus all --gpus-per-agent 4: exit %d\n%s%s", code, out, stderr)
	}
}
