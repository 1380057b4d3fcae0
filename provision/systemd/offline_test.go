package systemd

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
	files := map[string]string{"clearml-agent.target": testTarget, "clearml-agent@.service": testTemplate}
	root := writeImage(t, files)
	units := []string{"clearml-agent@0.service", "clearml-agent@1.service"}
	if err := EnableOffline(root, "clearml-agent.target", units); err != nil {
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
	if err := EnableOffline(root, "clearml-agent.target", units); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if diff := cmp.Diff(want, links(t, root)); diff != "" {
		t.Errorf("links after second run (-want +got):\n%s", diff)
	}
}

func TestEnableOfflineSpecifiersAliasAlso(t *testing.T) {
	root := writeImage(t, map[string]string{
		"a@.service": "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=grp-%i.target\nRequiredBy=x.target\nAlias=b@%i.service\nAlso=c.service\n",
		"c.service":  "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
		"d@.service": "[Service]\nExecStart=/bin/true\n[Install]\nDefaultInstance=7\nWantedBy=multi-user.target\n",
	})
	if err := EnableOffline(root, "", []string{"a@gpu0.service", "d@.service"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"grp-gpu0.target.wants/a@gpu0.service": "/etc/systemd/system/a@.service",
		"x.target.requires/a@gpu0.service":     "/etc/systemd/system/a@.service",
		"b@gpu0.service":                       "/etc/systemd/system/a@.service",
		"multi-user.target.wants/c.service":    "/etc/systemd/system/c.service",
		"multi-user.target.wants/d@7.service":  "/etc/systemd/system/d@.service",
	}
	if diff := cmp.Diff(want, links(t, root)); diff != "" {
		t.Errorf("links (-want +got):\n%s", diff)
	}
}

func TestEnableOfflineErrors(t *testing.T) {
	root := writeImage(t, map[string]string{
		"noinstall.service": "[Service]\nExecStart=/bin/true\n",
		"bad@.service":      "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=%H.target\n",
		"t@.service":        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n",
	})
	for _, tc := range []struct {
		unit, want string
	}{
		{"missing.service", "no unit file missing.service"},
		{"noinstall.service", "has no [Install]"},
		{"bad@1.service", "specifier %H"},
		{"t@.service", "needs an instance"},
		{"../x.service", "not a path"},
	} {
		err := EnableOffline(root, "", []string{tc.unit})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("EnableOffline(%s) = %v, want error containing %q", tc.unit, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("EnableOffline(%s) error is not one line: %q", tc.unit, err)
		}
	}
}

// TestEnableOfflineMatchesSystemctl cross-checks against the real
// `systemctl --root=DIR enable`, which works offline.
func TestEnableOfflineMatchesSystemctl(t *testing.T) {
	systemctl, err := exec.LookPath("systemctl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("systemctl not found: %v; apt-get install -y systemd", err)
		}
		t.Skipf("systemctl not found: %v; apt-get install -y systemd", err)
	}
	files := map[string]string{"clearml-agent.target": testTarget, "clearml-agent@.service": testTemplate}
	units := []string{"clearml-agent@0.service", "clearml-agent@3.service"}
	ours := writeImage(t, files)
	if err := EnableOffline(ours, "clearml-agent.target", units); err != nil {
		t.Fatal(err)
	}
	theirs := writeImage(t, files)
	args := append([]string{"--root=" + theirs, "enable", "clearml-agent.target"}, units...)
	if out, err := exec.CommandContext(t.Context(), systemctl, args...).CombinedOutput(); err != nil {
		t.Fatalf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if diff := cmp.Diff(links(t, theirs), links(t, ours)); diff != "" {
		t.Errorf("EnableOffline differs from systemctl --root enable (-systemctl +ours):\n%s", diff)
	}
}
