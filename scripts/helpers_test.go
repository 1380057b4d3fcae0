// Package scripts tests the release tooling with the real tools: scripts/release.sh (go, tar, gzip),
// templates/install.sh run with dash (as cloud-init runs it) and with busybox, and the notebook cell
// scripts/notebook_bootstrap.py with python3 against the in-repo ClearML API emulator.
package scripts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// repoRoot is the repository's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs argv with exactly env (nothing inherited) in dir.
func run(t *testing.T, env []string, dir string, argv ...string) result {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", argv, err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// hostPath is the PATH the scripts get: this machine's, without the Go toolchain's additions.
func hostPath() string {
	if p := os.Getenv("PATH"); p != "" {
		return p
	}
	return "/usr/local/bin:/usr/bin:/bin"
}

func sha256File(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// fakeRelease writes a release-shaped tarball into dir whose binaries are small shell scripts printing
// "<name> <version>"; layout (may be nil) changes the tree before it is packed. It returns the
// tarball's path and sha256.
func fakeRelease(t *testing.T, dir, version string, layout func(top string)) (string, string) {
	t.Helper()
	return fakeReleaseFor(t, dir, version, runtime.GOARCH, layout)
}

// fakeReleaseFor is fakeRelease for another architecture (only the name says which).
func fakeReleaseFor(t *testing.T, dir, version, goarch string, layout func(top string)) (string, string) {
	t.Helper()
	name := "clearml-agent-go_" + version + "_linux_" + goarch
	stage := t.TempDir()
	top := filepath.Join(stage, name)
	if err := os.MkdirAll(filepath.Join(top, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"clearml-agent", "clearml-agent-static", "agent-provision"} {
		if err := os.WriteFile(filepath.Join(top, "bin", b), []byte("#!/bin/sh\necho "+b+" "+version+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(top, "VERSION"), []byte(version+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if layout != nil {
		layout(top)
	}
	tarball := filepath.Join(dir, name+".tar.gz")
	entries, err := os.ReadDir(stage)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"tar", "-C", stage, "-czf", tarball}
	for _, e := range entries {
		args = append(args, e.Name())
	}
	if r := run(t, []string{"PATH=" + hostPath()}, "", args...); r.code != 0 {
		t.Fatalf("tar: %s", r.stderr)
	}
	return tarball, sha256File(t, tarball)
}

// tarEntries lists a .tar.gz: its headers and the gzip header.
func tarEntries(t *testing.T, file string) ([]*tar.Header, *gzip.Header) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var hs []*tar.Header
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("%s: %v", file, err)
			}
			break
		}
		hs = append(hs, h)
	}
	return hs, &zr.Header
}

// oneLine fails unless s is exactly one line (with its newline) that starts with prefix.
func oneLine(t *testing.T, what, s, prefix string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || !strings.HasPrefix(s, prefix) {
		t.Errorf("%s: want one line starting %q, got %q", what, prefix, s)
	}
}
