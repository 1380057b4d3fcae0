package systemd

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"github.com/google/go-cmp/cmp"
)

const (
	testTarget = `[Unit]
Description=All ClearML agents

[Install]
WantedBy=multi-user.target
`
	testTemplate = `[Unit]
Description=ClearML agent %i
PartOf=clearml-agent.target

[Service]
Type=notify
ExecStart=/bin/true

[Install]
WantedBy=clearml-agent.target
`
)

// needSystemctl skips without systemctl, except in CI.
func needSystemctl(t *testing.T) { testenv.Need(t, "systemctl") }

// writeImage lays out a minimal image root with the agent target and template.
func writeImage(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, "etc/systemd/system", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// links returns every symlink under root/etc/systemd/system as path -> target.
func links(t *testing.T, root string) map[string]string {
	t.Helper()
	base := filepath.Join(root, "etc/systemd/system")
	out := map[string]string{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			dest, err := os.Readlink(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(base, p)
			out[rel] = dest
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEnableOffline(t *testing.T) {
	needSystemctl(t)
	files := map[string]string{"clearml-agent.target": testTarget, "clearml-agent@.service": testTemplate}
	root := writeImage(t, files)
	units := []string{"clearml-agent@0.service", "clearml-agent@1.service"}
	if err := EnableOffline(t.Context(), root, "clearml-agent.target", units); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"multi-user.target.wants/clearml-agent.target":       "/etc/systemd/system/clearml-agent.target",
		"clearml-agent.target.wants/clearml-agent@0.service": "/etc/systemd/system/clearml-agent@.service",
		"clearml-agent.target.wants/clearml-agent@1.service": "/etc/systemd/system/clearml-agent@.service",
	}
	if diff := cmp.Diff(want, links(t, root)); diff != "" {
		t.Errorf("links (-want +got):\n%s", diff)
	}
	// Idempotent.
	if err := EnableOffline(t.Context(), root, "clearml-agent.target", units); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if diff := cmp.Diff(want, links(t, root)); diff != "" {
		t.Errorf("links after second run (-want +got):\n%s", diff)
	}
}

func TestEnableOfflineErrors(t *testing.T) {
	needSystemctl(t)
	root := writeImage(t, map[string]string{"clearml-agent@.service": testTemplate})
	for _, tc := range []struct {
		root, unit, want string
	}{
		{root, "missing.service", "missing.service"},
		{"", "clearml-agent@0.service", "empty image root"},
	} {
		err := EnableOffline(t.Context(), tc.root, "", []string{tc.unit})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("EnableOffline(%q, %s) = %v, want error containing %q", tc.root, tc.unit, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("EnableOffline(%s) error is not one line: %q", tc.unit, err)
		}
	}
}

// Without systemctl the error names what to install.
func TestEnableOfflineNoSystemctl(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	root := writeImage(t, map[string]string{"clearml-agent@.service": testTemplate})
	err := EnableOffline(t.Context(), root, "", []string{"clearml-agent@0.service"})
	if err == nil || !strings.Contains(err.Error(), "systemctl not found") || !strings.Contains(err.Error(), "apt-get install systemd") {
		t.Errorf("EnableOffline without systemctl = %v, want a systemctl-not-found error naming the package", err)
	}
}
