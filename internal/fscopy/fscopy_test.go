package fscopy

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTreeKeepsModesAndLinks(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "bin", "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tool", filepath.Join(src, "bin", "alias")); err != nil {
		t.Fatal(err)
	}
	if err := Tree(src, dst); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dst, "bin", "tool"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("copied file mode = %v, %v; want 0755", st, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "bin", "alias")); err != nil || l != "tool" {
		t.Fatalf("link = %q, %v; want tool", l, err)
	}
}
