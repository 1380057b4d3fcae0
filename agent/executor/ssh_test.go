package executor

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInstallSSH(t *testing.T) {
	t.Parallel()
	host := filepath.Join(t.TempDir(), ".ssh")
	if err := os.MkdirAll(filepath.Join(host, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"id_ed25519": "KEY", "known_hosts": "HOSTS", "sub/config": "CFG"} {
		if err := os.WriteFile(filepath.Join(host, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(host, "link")); err != nil {
		t.Fatal(err)
	}
	copyDir, err := CopySSHDir(host, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	if err := InstallSSH(copyDir, home); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"id_ed25519": "KEY", "known_hosts": "HOSTS", "sub/config": "CFG"} {
		p := filepath.Join(home, ".ssh", name)
		b, err := os.ReadFile(p)
		if err != nil || string(b) != body {
			t.Errorf("%s = %q, %v", name, b, err)
		}
		if fi, _ := os.Stat(p); fi == nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode())
		}
	}
	if fi, _ := os.Stat(filepath.Join(home, ".ssh")); fi == nil || fi.Mode().Perm() != 0o700 {
		t.Errorf(".ssh mode %v, want 0700", fi.Mode())
	}
	if _, err := os.Lstat(filepath.Join(home, ".ssh", "link")); err == nil {
		t.Error("a symlink was copied")
	}
	if d, err := CopySSHDir(filepath.Join(t.TempDir(), "none"), t.TempDir()); d != "" || err != nil {
		t.Errorf("missing dir: %q, %v", d, err)
	}
}
