//go:build integration

package systemd

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/nspawn"
)

// insideEnv marks the copy of this test binary that runs inside the container.
const insideEnv = "CLEARML_SYSTEMD_INSIDE_NSPAWN"

const (
	demoUnit = `[Unit]
Description=demo notify service %i

[Service]
Type=notify
ExecStart=/usr/local/bin/demo-notify %i
TimeoutStartSec=20s

[Install]
WantedBy=multi-user.target
`
	stuckUnit = `[Unit]
Description=demo service that never sends READY

[Service]
Type=notify
ExecStart=/usr/local/bin/demo-notify --no-ready
TimeoutStartSec=2s

[Install]
WantedBy=multi-user.target
`
)

// TestIntegrationDBusInContainer boots systemd in a container, installs a Type=notify
// demo program and units, and runs TestInsideContainer (this same test
// binary) inside it against the container's system bus.
func TestIntegrationDBusInContainer(t *testing.T) {
	if os.Getenv(insideEnv) != "" {
		t.Skip("outer test; already inside the container")
	}
	m := nspawn.Boot(t, nspawn.Options{Ephemeral: true})
	t.Logf("container boot took %s", m.BootTime())
	root := m.Root()

	bin := filepath.Join(root, "usr/local/bin")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(bin, "demo-notify"), "./testdata/notify")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./testdata/notify: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, self, filepath.Join(bin, "systemd.test"), 0o755)
	units := filepath.Join(root, "etc/systemd/system")
	writeFile(t, filepath.Join(units, "demo@.service"), demoUnit)
	writeFile(t, filepath.Join(units, "stuck.service"), stuckUnit)

	start := time.Now()
	out, err := m.Exec(t.Context(), "env", insideEnv+"=1", "/usr/local/bin/systemd.test",
		"-test.run=^TestInsideContainer$", "-test.v", "-test.count=1", "-test.timeout=2m")
	t.Logf("inside the container (%s):\n%s", time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		t.Fatalf("TestInsideContainer failed: %v", err)
	}
	if !strings.Contains(out, "--- PASS: TestInsideContainer") {
		t.Fatalf("TestInsideContainer did not pass (skipped?)")
	}
}

// TestInsideContainer drives the container's systemd through DBus. It only
// runs when TestIntegrationDBusInContainer executes it inside the container.
func TestInsideContainer(t *testing.T) {
	if os.Getenv(insideEnv) == "" {
		t.Skip("runs only inside the container booted by TestIntegrationDBusInContainer")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	m, err := Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var _ Manager = m

	const demo = "demo@1.service"
	wantLink := "/etc/systemd/system/multi-user.target.wants/" + demo
	if err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Enable(ctx, []string{demo}); err != nil {
		t.Fatal(err)
	}
	if dest, err := os.Readlink(wantLink); err != nil || dest != "/etc/systemd/system/demo@.service" {
		t.Errorf("after Enable: readlink %s = %q, %v", wantLink, dest, err)
	}

	t0 := time.Now()
	if err := m.Start(ctx, demo); err != nil {
		t.Fatal(err)
	}
	states, err := m.WaitActive(ctx, []string{demo}, 10*time.Second)
	t.Logf("start+wait %s: %v", time.Since(t0).Round(time.Millisecond), states)
	if err != nil {
		t.Fatal(err)
	}
	s := states[0]
	if !s.Active() || s.SubState != "running" || s.StatusText != "hello" || s.MainPID == 0 || s.ActiveEnter.IsZero() {
		t.Errorf("demo state = %+v, want active/running, StatusText hello, a MainPID and ActiveEnter", s)
	}

	if err := m.Restart(ctx, demo); err != nil {
		t.Fatal(err)
	}
	listed, err := m.States(ctx, "demo@*.service")
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].Name != demo || !listed[0].Active() || listed[0].MainPID == s.MainPID {
		t.Errorf("States after Restart = %v, want %s active with a new MainPID (old %d)", listed, demo, s.MainPID)
	}

	// A Type=notify unit that never sends READY fails after TimeoutStartSec.
	const stuck = "stuck.service"
	err = m.Start(ctx, stuck)
	t.Logf("Start(%s) = %v", stuck, err)
	if err == nil || !strings.Contains(err.Error(), stuck) || !strings.Contains(err.Error(), "job result") {
		t.Errorf("Start(%s) = %v, want a job-result error naming the unit", stuck, err)
	}
	states, err = m.WaitActive(ctx, []string{demo, stuck}, 10*time.Second)
	t.Logf("WaitActive(demo, stuck) error:\n%v", err)
	if err == nil {
		t.Fatal("WaitActive with a failed unit returned no error")
	}
	if !states[0].Active() || !states[1].Failed() || states[1].Result != "timeout" {
		t.Errorf("states = %v, want demo active and stuck failed with result timeout", states)
	}
	if !strings.Contains(states[1].Journal, "never sending READY") || !strings.Contains(err.Error(), "never sending READY") {
		t.Errorf("journal lines of %s missing; Journal = %q", stuck, states[1].Journal)
	}
	if first, _, _ := strings.Cut(err.Error(), "\n"); !strings.Contains(first, stuck) || strings.Contains(first, demo) {
		t.Errorf("first error line %q should name %s and not %s", first, stuck, demo)
	}

	// Stop and disable leave nothing behind.
	if err := m.Stop(ctx, demo); err != nil {
		t.Fatal(err)
	}
	if err := m.Disable(ctx, []string{demo}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(wantLink); !os.IsNotExist(err) {
		t.Errorf("after Disable: lstat %s = %v, want not exist", wantLink, err)
	}
	listed, err = m.States(ctx, "demo@*.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range listed {
		if u.Active() || u.MainPID != 0 {
			t.Errorf("after Stop: %v still running", u)
		}
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
