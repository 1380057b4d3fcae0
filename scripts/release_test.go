package scripts

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"
)

// TestReleaseTarball builds the real release twice (reproducible: the same sha256), checks its
// layout, owners, times and checksum file, installs it with install.sh and runs the binaries.
func TestReleaseTarball(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the three binaries")
	}
	testenv.Need(t, "go", "git", "bash", "tar", "gzip", "sha256sum", "dash")
	root := repoRoot(t)
	const epoch = 1700000000
	env := append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	release := func(out string) (string, string) {
		r := run(t, env, t.TempDir(), filepath.Join(root, "scripts", "release.sh"), "--version", "1.2.3-test", "--out", out)
		if r.code != 0 {
			t.Fatalf("release.sh: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		return lines[len(lines)-1], r.stderr
	}
	name := "clearml-agent-go_1.2.3-test_linux_" + runtime.GOARCH
	// The tree's state, to tell a build that differs from a tree that changed under the test.
	treeState := func() string {
		r := run(t, os.Environ(), root, "sh", "-c", "git rev-parse HEAD && git status --porcelain && git diff HEAD | sha256sum")
		return r.stdout + r.stderr
	}
	before := treeState()
	out := t.TempDir()
	tarball, _ := release(out)
	if want := filepath.Join(out, name+".tar.gz"); tarball != want {
		t.Fatalf("last line %q, want %q", tarball, want)
	}
	sum := sha256File(t, tarball)
	if got, _ := os.ReadFile(tarball + ".sha256"); string(got) != sum+"  "+name+".tar.gz\n" {
		t.Errorf("%s.sha256 = %q, want %q", name, got, sum+"  "+name+".tar.gz\n")
	}
	// sha256sum -c accepts it.
	if r := run(t, []string{"PATH=" + hostPath()}, out, "sha256sum", "-c", name+".tar.gz.sha256"); r.code != 0 {
		t.Errorf("sha256sum -c: %s%s", r.stdout, r.stderr)
	}
	inst, _ := os.ReadFile(filepath.Join(out, "install.sh"))
	if tmpl, _ := os.ReadFile(filepath.Join(root, "templates", "install.sh")); string(inst) != string(tmpl) {
		t.Errorf("%s/install.sh is not a copy of templates/install.sh", out)
	}

	hs, gz := tarEntries(t, tarball)
	var got []string
	for _, h := range hs {
		got = append(got, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want 0:0 numeric", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(time.Unix(epoch, 0)) {
			t.Errorf("%s: mtime %v, want SOURCE_DATE_EPOCH", h.Name, h.ModTime)
		}
	}
	want := []string{name + "/", name + "/VERSION", name + "/bin/", name + "/bin/agent-provision", name + "/bin/clearml-agent", name + "/bin/clearml-agent-static"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("entries:\n%v\nwant:\n%v", got, want)
	}
	if gz.Name != "" || !gz.ModTime.IsZero() {
		t.Errorf("gzip header: name %q, mtime %v; want neither", gz.Name, gz.ModTime)
	}

	// Reproducible.
	out2 := t.TempDir()
	release(out2)
	switch {
	case treeState() != before:
		t.Logf("the tree changed during the test (someone edits it): the reproducibility check is left out")
	case sha256File(t, filepath.Join(out2, name+".tar.gz")) != sum:
		t.Errorf("a second build of the same tree differs")
	}

	// Installed with install.sh, the binaries run and know their version.
	prefix := filepath.Join(t.TempDir(), "prefix")
	r := install(t, "--prefix", prefix, "--sha256", sum, tarball)
	if r.code != 0 || !strings.HasSuffix(r.stdout, "installed clearml-agent-go 1.2.3-test into "+prefix+"/bin\n") {
		t.Fatalf("install: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, b := range []string{"clearml-agent", "clearml-agent-static"} {
		v, err := exec.Command(filepath.Join(prefix, "bin", b), "--version").CombinedOutput()
		if err != nil || strings.TrimSpace(string(v)) != "1.2.3-test" {
			t.Errorf("%s --version: %q, %v", b, v, err)
		}
	}
	if h, err := exec.Command(filepath.Join(prefix, "bin", "agent-provision"), "--help").CombinedOutput(); err != nil {
		t.Errorf("agent-provision --help: %v\n%s", err, h)
	}
	interp := func(b string) bool {
		f, err := elf.Open(filepath.Join(prefix, "bin", b))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				return true
			}
		}
		return false
	}
	if interp("clearml-agent-static") {
		t.Errorf("clearml-agent-static is dynamically linked")
	}
	if !interp("clearml-agent") {
		t.Errorf("clearml-agent is static: the NVML build needs cgo")
	}
}

func TestReleaseBadArguments(t *testing.T) {
	testenv.Need(t, "bash")
	script := filepath.Join(repoRoot(t), "scripts", "release.sh")
	for _, args := range [][]string{{"--bogus"}, {"--version", "a b"}, {"--version"}, {"--version", "-x"}} {
		r := run(t, os.Environ(), t.TempDir(), append([]string{script}, args...)...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2", args, r.code)
		}
		oneLine(t, strings.Join(args, " "), r.stderr, "release.sh: ")
	}
}
