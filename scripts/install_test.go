package scripts

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"
)

// installer is scripts/install.sh (the symlink to templates/install.sh, so the link is tested too).
func installer(t *testing.T) string {
	t.Helper()
	link := filepath.Join(repoRoot(t), "scripts", "install.sh")
	if target, err := os.Readlink(link); err != nil || target != "../templates/install.sh" {
		t.Fatalf("scripts/install.sh must be a symlink to ../templates/install.sh: %q, %v", target, err)
	}
	return link
}

// install runs install.sh with dash and only PATH in its environment.
func install(t *testing.T, args ...string) result {
	t.Helper()
	testenv.Need(t, "dash")
	return run(t, []string{"PATH=" + hostPath()}, t.TempDir(), append([]string{"dash", installer(t)}, args...)...)
}

// untouched fails unless prefix is as before a failed run: absent if it was, else holding only want.
func untouched(t *testing.T, prefix string, existed bool, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(prefix)
	if !existed {
		if !os.IsNotExist(err) {
			t.Errorf("%s exists after a failed install (%v); want it not created", prefix, names(entries))
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := names(entries); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s holds %v after a failed install; want %v", prefix, got, want)
	}
}

func names(entries []os.DirEntry) []string {
	var ns []string
	for _, e := range entries {
		ns = append(ns, e.Name())
	}
	return ns
}

func TestInstallScriptIsPOSIX(t *testing.T) {
	testenv.Need(t, "dash")
	if r := run(t, []string{"PATH=" + hostPath()}, "", "dash", "-n", installer(t)); r.code != 0 {
		t.Fatalf("dash -n install.sh: %s", r.stderr)
	}
	if r := install(t, "--help"); r.code != 0 || !strings.HasPrefix(r.stdout, "usage: install.sh [--prefix DIR] --sha256 HEX SOURCE\n") {
		t.Errorf("--help: %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// TestInstallFromPathFileURLAndHTTP installs a release tarball from each kind of SOURCE, runs the
// binaries, reinstalls it (unchanged), and upgrades to a newer one.
func TestInstallFromPathFileURLAndHTTP(t *testing.T) {
	dir := t.TempDir()
	v1, sum1 := fakeRelease(t, dir, "1.0.0", nil)
	v2, sum2 := fakeRelease(t, dir, "2.0.0", func(top string) {
		// A release without the optional static agent installs the other two.
		_ = os.Remove(filepath.Join(top, "bin", "clearml-agent-static"))
	})
	hs := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer hs.Close()

	for _, c := range []struct{ name, src string }{{"path", v1}, {"file URL", "file://" + v1}, {"http", hs.URL + "/" + filepath.Base(v1)}} {
		src := c.src
		t.Run(c.name, func(t *testing.T) {
			prefix := filepath.Join(t.TempDir(), "new", "prefix")
			r := install(t, "--prefix", prefix, "--sha256", strings.ToUpper(sum1), src)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("install: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			bin := filepath.Join(prefix, "bin")
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if last := lines[len(lines)-1]; last != "installed clearml-agent-go 1.0.0 into "+bin {
				t.Errorf("last line = %q", last)
			}
			for _, b := range []string{"clearml-agent", "clearml-agent-static", "agent-provision"} {
				out, err := exec.Command(filepath.Join(bin, b)).Output()
				if err != nil || string(out) != b+" 1.0.0\n" {
					t.Errorf("%s: %q, %v", b, out, err)
				}
			}
			if got, _ := os.ReadDir(prefix); strings.Join(names(got), " ") != "bin" {
				t.Errorf("%s holds %v; want only bin (no temp dirs)", prefix, names(got))
			}
			if got, _ := os.ReadDir(bin); strings.Join(names(got), " ") != "agent-provision clearml-agent clearml-agent-static" {
				t.Errorf("%s holds %v", bin, names(got))
			}

			// Again: a success that changes nothing.
			r = install(t, "--prefix="+prefix, "--sha256="+sum1, src)
			if r.code != 0 || !strings.Contains(r.stdout, bin+"/clearml-agent: unchanged\n") ||
				!strings.HasSuffix(r.stdout, "installed clearml-agent-go 1.0.0 into "+bin+"\n") {
				t.Errorf("second install: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}

			// An upgrade replaces what the new tarball has and keeps the rest.
			r = install(t, "--prefix", prefix, "--sha256", sum2, v2)
			if r.code != 0 || !strings.HasSuffix(r.stdout, "installed clearml-agent-go 2.0.0 into "+bin+"\n") {
				t.Fatalf("upgrade: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if out, _ := exec.Command(filepath.Join(bin, "clearml-agent")).Output(); string(out) != "clearml-agent 2.0.0\n" {
				t.Errorf("after the upgrade clearml-agent prints %q", out)
			}
		})
	}
}

// TestInstallRefusesBadInput: every bad input is one line on stderr naming it, exit 1 (2 for bad
// arguments), and the prefix as it was, both when the run would have created it and when it exists.
func TestInstallRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	good, sum := fakeRelease(t, dir, "1.0.0", nil)
	other := strings.Repeat("ab", 32)
	noProvision, noProvisionSum := fakeRelease(t, t.TempDir(), "1.0.1", func(top string) {
		_ = os.Remove(filepath.Join(top, "bin", "agent-provision"))
	})
	twoTops, twoTopsSum := fakeRelease(t, t.TempDir(), "1.0.2", func(top string) {
		_ = os.Mkdir(top+"-extra", 0o755)
	})
	foreignArch := "arm64"
	if runtime.GOARCH == "arm64" {
		foreignArch = "amd64"
	}
	foreign, foreignSum := fakeReleaseFor(t, t.TempDir(), "1.0.3", foreignArch, nil)
	text := filepath.Join(dir, "page.html")
	if err := os.WriteFile(text, []byte("<html>not found</html>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	textSum := sha256File(t, text)
	hs := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer hs.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL + "/x.tar.gz"
	closed.Close()
	afile := filepath.Join(dir, "a-file")
	if err := os.WriteFile(afile, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		args   []string // PREFIX is replaced
		code   int
		want   string // the whole line, or a part of it
		exact  bool
		prefix string // a fixed --prefix instead of a temp one
	}{
		{name: "checksum mismatch", args: []string{"--sha256", other, good}, code: 1, exact: true,
			want: fmt.Sprintf("install.sh: checksum mismatch for %s: expected %s, got %s; check the URL and the --sha256 value\n", good, other, sum)},
		{name: "checksum mismatch over http", args: []string{"--sha256", other, hs.URL + "/" + filepath.Base(good)}, code: 1, exact: true,
			want: fmt.Sprintf("install.sh: checksum mismatch for %s/%s: expected %s, got %s; check the URL and the --sha256 value\n", hs.URL, filepath.Base(good), other, sum)},
		{name: "missing sha256", args: []string{good}, code: 2, want: "missing --sha256 HEX"},
		{name: "short sha256", args: []string{"--sha256", "abc123", good}, code: 2, want: "--sha256 abc123 is not a sha256: want 64 hex digits"},
		{name: "non-hex sha256", args: []string{"--sha256", strings.Repeat("g", 64), good}, code: 2, want: "is not a sha256: want 64 hex digits"},
		{name: "sha256 skip is no option", args: []string{"--sha256", "skip", good}, code: 2, want: "--sha256 skip is not a sha256"},
		{name: "missing source", args: []string{"--sha256", sum}, code: 2, want: "missing SOURCE"},
		{name: "two sources", args: []string{"--sha256", sum, good, good}, code: 2, want: "more than one SOURCE"},
		{name: "unknown option", args: []string{"--sha", sum, good}, code: 2, want: "unknown option --sha"},
		{name: "unreachable URL", args: []string{"--sha256", sum, closedURL}, code: 1, want: "cannot download " + closedURL + ": "},
		{name: "404", args: []string{"--sha256", sum, hs.URL + "/missing.tar.gz"}, code: 1, want: "cannot download " + hs.URL + "/missing.tar.gz: "},
		{name: "unsupported scheme", args: []string{"--sha256", sum, "ftp://example.com/x.tar.gz"}, code: 1, want: "only http://, https:// and file:// URLs"},
		{name: "no such file", args: []string{"--sha256", sum, good + ".nope"}, code: 1, want: "cannot read " + good + ".nope: no such file"},
		{name: "no such file URL", args: []string{"--sha256", sum, "file://" + good + ".nope"}, code: 1, want: "no such file " + good + ".nope"},
		{name: "not a tarball", args: []string{"--sha256", textSum, text}, code: 1, want: text + " is not a gzipped tarball"},
		{name: "no agent-provision", args: []string{"--sha256", noProvisionSum, noProvision}, code: 1, want: "wrong layout: no clearml-agent-go_1.0.1_linux_" + runtime.GOARCH + "/bin/agent-provision"},
		{name: "two top directories", args: []string{"--sha256", twoTopsSum, twoTops}, code: 1, want: "wrong layout: want one top directory"},
		{name: "foreign architecture", args: []string{"--sha256", foreignSum, foreign}, code: 1, want: "is built for linux/" + foreignArch + " but this machine is linux/" + runtime.GOARCH},
		{name: "prefix under a file", args: []string{"--sha256", sum, good}, prefix: filepath.Join(afile, "prefix"), code: 1, want: "cannot create " + afile + "/prefix/bin"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, existed := range []bool{false, true} {
				prefix := c.prefix
				if prefix == "" {
					prefix = filepath.Join(t.TempDir(), "prefix")
					if existed {
						if err := os.Mkdir(prefix, 0o755); err != nil {
							t.Fatal(err)
						}
					}
				} else if existed {
					continue
				}
				r := install(t, append([]string{"--prefix", prefix}, c.args...)...)
				if r.code != c.code {
					t.Errorf("exit %d, want %d\n%s%s", r.code, c.code, r.stdout, r.stderr)
				}
				if r.stdout != "" {
					t.Errorf("stdout %q, want nothing", r.stdout)
				}
				oneLine(t, "stderr", r.stderr, "install.sh: ")
				if c.exact && r.stderr != c.want || !strings.Contains(r.stderr, c.want) {
					t.Errorf("stderr:\n%s\nwant %q", r.stderr, c.want)
				}
				if c.prefix == "" {
					untouched(t, prefix, existed)
				}
			}
		})
	}
	if st, err := os.Stat(afile); err != nil || !st.Mode().IsRegular() {
		t.Errorf("%s: %v, %v; want the file left alone", afile, st, err)
	}
}

// TestInstallUnwritablePrefix: a prefix the user may not write (as root: the run is made as nobody).
func TestInstallUnwritablePrefix(t *testing.T) {
	testenv.Need(t, "dash")
	var argv []string
	if os.Geteuid() == 0 {
		testenv.Need(t, "setpriv")
		argv = []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}
	}
	dir := t.TempDir()
	good, sum := fakeRelease(t, dir, "1.0.0", nil)
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.MkdirAll(filepath.Join(ro, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	// nobody may read the tarball, and nothing else.
	for _, p := range []string{filepath.Dir(dir), dir, filepath.Dir(ro)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() != 0 {
		if err := os.Chmod(filepath.Join(ro, "bin"), 0o555); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(ro, 0o755); _ = os.Chmod(filepath.Join(ro, "bin"), 0o755) })
	}
	for _, prefix := range []string{ro, filepath.Join(ro, "sub")} {
		argv := append(argv, "dash", installer(t), "--prefix", prefix, "--sha256", sum, good)
		r := run(t, []string{"PATH=" + hostPath()}, "/", argv...)
		if r.code != 1 {
			t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		want := "install.sh: cannot write to " + prefix + "; pass --prefix a directory you can write, or run as root"
		if prefix != ro {
			want = "install.sh: cannot create " + prefix + "/bin (mkdir: "
		}
		oneLine(t, "stderr", r.stderr, want)
		untouched(t, ro, true, "bin")
		untouched(t, filepath.Join(ro, "bin"), true)
	}
}

// TestInstallRefusalKeepsInstalledBinaries: a refused upgrade (bad checksum, wrong layout) leaves the
// installed version in place and no staged copies.
func TestInstallRefusalKeepsInstalledBinaries(t *testing.T) {
	dir := t.TempDir()
	v1, sum1 := fakeRelease(t, dir, "1.0.0", nil)
	bad, badSum := fakeRelease(t, dir, "2.0.0", func(top string) {
		_ = os.Remove(filepath.Join(top, "bin", "clearml-agent"))
	})
	prefix := filepath.Join(t.TempDir(), "prefix")
	if r := install(t, "--prefix", prefix, "--sha256", sum1, v1); r.code != 0 {
		t.Fatalf("install: %s", r.stderr)
	}
	for _, args := range [][]string{{"--sha256", sum1, bad}, {"--sha256", badSum, bad}} {
		r := install(t, append([]string{"--prefix", prefix}, args...)...)
		if r.code != 1 {
			t.Errorf("%v: exit %d, want 1", args, r.code)
		}
		oneLine(t, "stderr", r.stderr, "install.sh: ")
		untouched(t, prefix, true, "bin")
		untouched(t, filepath.Join(prefix, "bin"), true, "agent-provision", "clearml-agent", "clearml-agent-static")
		for _, b := range []string{"clearml-agent", "agent-provision"} {
			if out, _ := exec.Command(filepath.Join(prefix, "bin", b)).Output(); string(out) != b+" 1.0.0\n" {
				t.Errorf("%s prints %q after a refused upgrade; want 1.0.0", b, out)
			}
		}
	}
}

// TestInstallInterruptedCleansUp: Ctrl-C (SIGTERM to the process group) during a download that hangs
// removes the temp dir and the prefix this run created.
func TestInstallInterruptedCleansUp(t *testing.T) {
	testenv.Need(t, "dash")
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // until the client goes away
	}))
	defer hs.Close()
	prefix := filepath.Join(t.TempDir(), "prefix")
	cmd := exec.Command("dash", installer(t), "--prefix", prefix, "--sha256", strings.Repeat("0", 64), hs.URL+"/x.tar.gz")
	cmd.Env = []string{"PATH=" + hostPath()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		entries, _ := os.ReadDir(prefix)
		if len(entries) == 2 { // bin and the temp dir
			break
		}
		select {
		case err := <-done:
			t.Fatalf("install.sh ended before the download: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Errorf("interrupted install.sh exited 0")
	}
	untouched(t, prefix, false)
}

// TestInstallWithBusybox: a minimal image's tools only (busybox sh, tar, gzip, sha256sum, wget), and
// without wget and sha256sum the python3 and openssl fallbacks.
func TestInstallWithBusybox(t *testing.T) {
	testenv.Need(t, "busybox")
	dir := t.TempDir()
	good, sum := fakeRelease(t, dir, "1.0.0", nil)
	hs := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer hs.Close()
	src := hs.URL + "/" + filepath.Base(good)

	bb := t.TempDir()
	busybox, _ := exec.LookPath("busybox")
	if r := run(t, []string{"PATH=" + hostPath()}, "", busybox, "--install", "-s", bb); r.code != 0 {
		t.Fatalf("busybox --install: %s", r.stderr)
	}
	for _, tool := range []string{"sh", "tar", "gzip", "sha256sum", "wget", "mktemp"} {
		if _, err := os.Lstat(filepath.Join(bb, tool)); err != nil {
			t.Fatalf("busybox lacks %s", tool)
		}
	}
	fallbacks := t.TempDir()
	entries, _ := os.ReadDir(bb)
	for _, e := range entries {
		if e.Name() != "wget" && e.Name() != "sha256sum" {
			if err := os.Symlink(busybox, filepath.Join(fallbacks, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	toolsets := []struct{ name, path string }{{"busybox", bb}, {"python3 and openssl", fallbacks}}
	if _, err := exec.LookPath("openssl"); err == nil {
		py := python(t)
		ssl, _ := exec.LookPath("openssl")
		for link, target := range map[string]string{"python3": py, "openssl": ssl} {
			if err := os.Symlink(target, filepath.Join(fallbacks, link)); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		testenv.Need(t, "openssl") // fails in CI, skips elsewhere
	}
	for _, ts := range toolsets {
		t.Run(ts.name, func(t *testing.T) {
			env := []string{"PATH=" + ts.path}
			prefix := filepath.Join(t.TempDir(), "prefix")
			r := run(t, env, "", filepath.Join(ts.path, "sh"), installer(t), "--prefix", prefix, "--sha256", sum, src)
			if r.code != 0 || !strings.HasSuffix(r.stdout, "installed clearml-agent-go 1.0.0 into "+prefix+"/bin\n") {
				t.Fatalf("install: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			prefix = filepath.Join(t.TempDir(), "prefix")
			other := strings.Repeat("0", 64)
			r = run(t, env, "", filepath.Join(ts.path, "sh"), installer(t), "--prefix", prefix, "--sha256", other, src)
			want := fmt.Sprintf("install.sh: checksum mismatch for %s: expected %s, got %s; check the URL and the --sha256 value\n", src, other, sum)
			if r.code != 1 || r.stderr != want {
				t.Errorf("mismatch: exit %d, stderr %q; want %q", r.code, r.stderr, want)
			}
			untouched(t, prefix, false)
			r = run(t, env, "", filepath.Join(ts.path, "sh"), installer(t), "--prefix", prefix, "--sha256", sum, hs.URL+"/missing.tar.gz")
			oneLine(t, "404", r.stderr, "install.sh: cannot download "+hs.URL+"/missing.tar.gz: ")
			untouched(t, prefix, false)
		})
	}
}
