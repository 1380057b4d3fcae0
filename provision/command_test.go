package provision

import (
	"bytes"
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gpufleet/clearml-agent-go/agent/gpu"
	"github.com/gpufleet/clearml-agent-go/provision/systemd"
	"github.com/gpufleet/clearml-agent-go/provision/systemd/systemdtest"
)

// fakeDeps is a live system with systemd as PID 1 behind mgr, run as root,
// without NVML.
func fakeDeps(mgr systemd.Manager) Deps {
	d := HostDeps()
	d.SystemdRunning = func() bool { return true }
	d.Connect = func(context.Context) (systemd.Manager, func(), error) { return mgr, func() {}, nil }
	d.Discover = func() (*gpu.Inventory, error) { return nil, gpu.ErrNoNVML }
	d.Euid = func() int { return 0 }
	d.Now = func() time.Time { return time.Unix(0, 0) }
	d.Getenv = func(string) string { return "" }
	return d
}

// interruptOnEnable is Ctrl-C while apply enables the units: it sends
// SIGINT to this process and waits until that cancelled the context.
type interruptOnEnable struct{ *systemdtest.Fake }

func (m interruptOnEnable) Enable(ctx context.Context, units []string) error {
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
	}
	return m.Fake.Enable(ctx, units)
}

// SIGINT during apply cancels it, and since no unit was started the
// written files are rolled back and systemd reloaded with the old ones.
func TestRunApplyInterruptedRollsBack(t *testing.T) {
	root := t.TempDir()
	fake := &systemdtest.Fake{}
	var out, errb bytes.Buffer
	c := Command{Action: ActionApply, Inputs: baseInputs(root), Stdout: &out, Stderr: &errb}
	err := Run(t.Context(), c, fakeDeps(interruptOnEnable{fake}))
	if err == nil || !strings.Contains(err.Error(), "context canceled") || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("interrupted apply = %v, want a cancelled apply that rolled back\n%s", err, out.String())
	}
	if strings.Contains(err.Error(), "daemon-reload after the rollback failed") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: want one line and a successful daemon-reload after the rollback", err)
	}
	want := []string{"daemon-reload", "enable clearml-agents.target", "enable clearml-agent@gpu0.service",
		"enable clearml-agent@gpu1.service", "enable clearml-agent@services.service", "daemon-reload"}
	var calls []string
	for _, c := range fake.Calls {
		if !strings.HasPrefix(c, "list") {
			calls = append(calls, c)
		}
	}
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("systemd calls (-want +got):\n%s", diff)
	}
	var left []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("files left after the rollback: %v", left)
	}
}

// first-boot fills in credentials, forgets the agents' start limit and
// starts the target, restarting agents that were already up.
func TestRunFirstBoot(t *testing.T) {
	root := t.TempDir()
	in := baseInputs(root)
	in.AccessKey, in.SecretKey, in.FirstBootCreds = "", "", true
	fake := &systemdtest.Fake{}
	if _, err := Apply(t.Context(), mustPlan(t, in), fakeHost(fake)); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(root, "etc/clearml-agent/first-boot-pending")
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("no marker keeps the units without credentials from starting: %v", err)
	}
	d := fakeDeps(fake)
	env := map[string]string{EnvAccessKey: "NEWKEY", EnvSecretKey: "NEWSECRET"}
	d.Getenv = func(k string) string { return env[k] }
	n := len(fake.Calls)
	var out bytes.Buffer
	conf := filepath.Join(root, "etc/clearml-agent/clearml.conf")
	c := Command{Action: ActionFirstBoot, Inputs: Inputs{ConfigPath: conf}, Stdout: &out}
	if err := Run(t.Context(), c, d); err != nil {
		t.Fatalf("first-boot: %v\n%s", err, out.String())
	}
	if b, _ := os.ReadFile(conf); !strings.Contains(string(b), "NEWSECRET") {
		t.Errorf("clearml.conf lacks the new secret:\n%s", b)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("first-boot left %s: the units would keep skipping", marker)
	}
	calls := strings.Join(since(fake, n), "\n")
	for _, w := range []string{"reset-failed", "start clearml-agents.target", "restart clearml-agent@gpu0.service"} {
		if !strings.Contains(calls, w) {
			t.Errorf("first-boot calls lack %q:\n%s", w, calls)
		}
	}
	if !strings.Contains(out.String(), "wrote credentials into "+conf) || !strings.Contains(out.String(), "started clearml-agents.target") {
		t.Errorf("first-boot output:\n%s", out.String())
	}
}

// An apply with credentials removes a marker an earlier --first-boot-creds
// apply left, or the units would never start.
func TestApplyWithCredentialsRemovesPendingMarker(t *testing.T) {
	root := t.TempDir()
	in := baseInputs(root)
	marker := filepath.Join(root, "etc/clearml-agent/first-boot-pending")
	if err := os.MkdirAll(filepath.Dir(marker), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fake := &systemdtest.Fake{}
	if _, err := Apply(t.Context(), mustPlan(t, in), fakeHost(fake)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("apply with credentials left %s", marker)
	}
}

// First boot names the agents of an image (provisioned without a host
// name) the way a live apply does, and leaves named ones alone.
func TestFillWorkerIDs(t *testing.T) {
	root := t.TempDir()
	in := baseInputs(root)
	in.Hostname = ""
	in.AccessKey, in.SecretKey, in.FirstBootCreds = "", "", true
	if _, err := Apply(t.Context(), mustPlan(t, in), fakeHost(&systemdtest.Fake{})); err != nil {
		t.Fatal(err)
	}
	ids, err := FillWorkerIDs(root, "pool:i-0abc")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 || ids[0] != "pool:i-0abc:gpu0" {
		t.Fatalf("worker ids = %v, want pool:i-0abc:gpu0 first", ids)
	}
	env, err := os.ReadFile(filepath.Join(root, "etc/clearml-agent/agents/gpu0.env"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), "\nCLEARML_WORKER_ID=pool:i-0abc:gpu0\n") {
		t.Errorf("gpu0.env:\n%s", env)
	}
	if again, err := FillWorkerIDs(root, "other"); err != nil || len(again) != 0 {
		t.Errorf("a second first boot renamed the agents: %v, %v", again, err)
	}
}

// --metrics-listen gives each agent its own port, in the environment file
// the unit reads; a bad address is one line naming the flag.
func TestMetricsListen(t *testing.T) {
	root := t.TempDir()
	in := baseInputs(root)
	in.MetricsListen = "127.0.0.1:9101"
	p := mustPlan(t, in)
	want := map[string]string{"gpu0": "127.0.0.1:9101", "gpu1": "127.0.0.1:9102", "services": "127.0.0.1:9103"}
	for _, f := range p.Files {
		inst, ok := strings.CutSuffix(path.Base(f.Target), ".env")
		if !ok {
			continue
		}
		if line := EnvMetricsListen + "=" + want[inst] + "\n"; !strings.Contains(string(f.New), line) {
			t.Errorf("%s lacks %q:\n%s", f.Target, line, f.New)
		}
		delete(want, inst)
	}
	if len(want) != 0 {
		t.Errorf("no environment file for %v", want)
	}
	for _, bad := range []string{"9101", "localhost", "127.0.0.1:x", "127.0.0.1:65535", "a b:9101"} {
		in.MetricsListen = bad
		_, err := NewPlan(in, nil)
		if err == nil || !strings.Contains(err.Error(), "--metrics-listen") || strings.Contains(err.Error(), "\n") {
			t.Errorf("--metrics-listen %q: %v; want one line naming the flag", bad, err)
		}
	}
}
