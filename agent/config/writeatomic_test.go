package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// WriteFileAtomic replaces the file whole, sets the mode it is given (also
// on an existing file with another mode), chowns when asked and leaves no
// temporary file behind, also when it fails.
func TestWriteFileAtomic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := filepath.Join(dir, "clearml.conf")
	if err := os.WriteFile(f, []byte("old, longer content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(f, []byte("new\n"), 0o640, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(f); string(got) != "new\n" {
		t.Errorf("content = %q, want %q", got, "new\n")
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid() {
		t.Errorf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, os.Getuid(), os.Getgid())
	}
	missing := filepath.Join(dir, "no-such-dir", "clearml.conf")
	err = WriteFileAtomic(missing, []byte("x"), 0o600, -1, -1)
	if err == nil || !strings.Contains(err.Error(), "check that "+filepath.Dir(missing)+" exists and is writable") {
		t.Errorf("write into a missing directory: %v, want the directory named", err)
	}
	if os.Getuid() != 0 { // only root may give a file away
		if err := WriteFileAtomic(f, []byte("y"), 0o600, 0, 0); err == nil || !strings.Contains(err.Error(), "chown 0:0") {
			t.Errorf("chown to root as non-root: %v, want a chown error", err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only clearml.conf", names)
	}
}
