package cloudinit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"
)

// The rendered steps run for real here: the shell format with sh, the
// cloud-config with cloud-init's own write_files and runcmd code (without a
// boot). The release tarball holds stub binaries; the stub agent-provision
// logs its arguments and the credentials file it is given. Paths on the
// "machine" point into a temporary directory.

type machine struct {
	dir, prefix, log, tarball, sha string
}

func newMachine(t *testing.T) *machine {
	t.Helper()
	dir := t.TempDir()
	m := &machine{dir: dir, prefix: filepath.Join(dir, "prefix"), log: filepath.Join(dir, "calls.log")}
	stub := `#!/bin/sh
{
	echo "CALL $*"
	prev=
	for a in "$@"; do
		if [ "$prev" = --credentials-file ] || [ "$prev" = --creds-file ]; then
			echo "MODE $(stat -c %a "$a")"
			cat "$a"
		fi
		prev=$a
	done
} >>` + m.log + "\n"
	top := "clearml-agent-go_0.0.1-test_linux_" + runtime.GOARCH
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct{ name, body string }{
		{top + "/bin/agent-provision", stub},
		{top + "/bin/clearml-agent", "#!/bin/sh\n"},
		{top + "/bin/clearml-agent-static", "#!/bin/sh\n"},
		{top + "/VERSION", "0.0.1-test\n"},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o755, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	m.tarball = filepath.Join(dir, top+".tar.gz")
	if err := os.WriteFile(m.tarball, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	m.sha = hex.EncodeToString(sum[:])
	return m
}

func (m *machine) config(format Format) Config {
	c := inline()
	c.Format, c.NoPackages, c.Prefix = format, true, m.prefix
	c.BinaryURL, c.BinarySHA256 = "file://"+m.tarball, m.sha
	c.CredsPath = filepath.Join(m.dir, "etc/clearml-agent/credentials")
	c.InstallDir = filepath.Join(m.dir, "install")
	c.InstanceIDFile = filepath.Join(m.dir, "instance-id")
	c.WorkerIDPrefix = "pool"
	return c
}

func (m *machine) calls(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(m.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// checkProvisioned: installed, apply saw the 0600 credentials file and the
// worker id prefix, the file is gone, status ran.
func (m *machine) checkProvisioned(t *testing.T, c Config, iid string) {
	t.Helper()
	calls := m.calls(t)
	wantApply := "CALL apply --api-host https://api.example.com --gpus 0,1 --queue q 1 --credentials-file " + c.CredsPath + " --hostname pool:" + iid + "\nMODE 600\n"
	if !strings.Contains(calls, wantApply) {
		t.Errorf("agent-provision calls lack\n%s\ngot:\n%s", wantApply, calls)
	}
	if !strings.Contains(calls, `CLEARML_API_SECRET_KEY="s'e\"c\\ret $x SECRET1"`) || !strings.HasSuffix(calls, "CALL status\n") {
		t.Errorf("agent-provision calls:\n%s", calls)
	}
	if _, err := os.Stat(c.CredsPath); !os.IsNotExist(err) {
		t.Errorf("the credentials file is still there (%v)", err)
	}
	for _, b := range []string{"agent-provision", "clearml-agent", "clearml-agent-static"} {
		if fi, err := os.Stat(filepath.Join(m.prefix, "bin", b)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s not installed: %v", b, err)
		}
	}
}

func TestShellFormatRuns(t *testing.T) {
	sh := testenv.Tool(t, "sh")
	testenv.Tool(t, "sha256sum")
	for _, iid := range []string{"i-0abc123", ""} {
		m := newMachine(t)
		c := m.config(FormatShell)
		want := iid
		if iid != "" {
			os.WriteFile(c.InstanceIDFile, []byte(iid+"\n"), 0o644)
		} else {
			h, err := exec.Command("hostname").Output()
			if err != nil {
				t.Skipf("hostname: %v", err)
			}
			want = strings.TrimSpace(string(h))
		}
		script := filepath.Join(m.dir, "startup.sh")
		os.WriteFile(script, render(t, c), 0o700)
		if out, err := exec.Command(sh, "-n", script).CombinedOutput(); err != nil {
			t.Fatalf("sh -n: %v\n%s", err, out)
		}
		out, err := exec.Command(sh, script).CombinedOutput()
		if err != nil {
			t.Fatalf("startup script: %v\n%s", err, out)
		}
		m.checkProvisioned(t, c, want)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "clearml agents gpu0 gpu1 provisioned after ") || !strings.HasSuffix(last, " s; agent-provision status shows their state") {
			t.Errorf("last line %q", last)
		}
	}
}

// A wrong sha256 stops the script before anything is installed or run.
func TestShellFormatChecksumMismatch(t *testing.T) {
	sh := testenv.Tool(t, "sh")
	testenv.Tool(t, "sha256sum")
	m := newMachine(t)
	c := m.config(FormatShell)
	c.BinarySHA256 = strings.Repeat("0", 64)
	script := filepath.Join(m.dir, "startup.sh")
	os.WriteFile(script, render(t, c), 0o700)
	out, err := exec.Command(sh, script).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "checksum mismatch for file://"+m.tarball) {
		t.Fatalf("startup script with a wrong sha256: %v\n%s", err, out)
	}
	if calls := m.calls(t); calls != "" {
		t.Errorf("agent-provision ran:\n%s", calls)
	}
	if _, err := os.Stat(filepath.Join(m.prefix, "bin")); !os.IsNotExist(err) {
		t.Errorf("%s/bin exists after a refused install (%v)", m.prefix, err)
	}
}

// cloudInitDriver applies write_files and runs runcmd with cloud-init's own
// code (cc_write_files.write_files, util.shellify): what a boot does,
// without the boot.
const cloudInitDriver = `import os, pwd, subprocess, sys, yaml
from cloudinit import util
from cloudinit.config.cc_write_files import write_files
cfg = yaml.safe_load(open(sys.argv[1]))
files = cfg.get("write_files", [])
if os.geteuid() != 0:
    me = pwd.getpwuid(os.geteuid()).pw_name
    for f in files:
        f["owner"] = me + ":" + me
write_files("write_files", files, "root:root")
with open(sys.argv[2], "w") as f:
    f.write(util.shellify(cfg["runcmd"]))
`

func TestCloudConfigRunsWithCloudInitCode(t *testing.T) {
	py := testenv.Tool(t, "/usr/bin/python3")
	testenv.Tool(t, "cloud-init")
	testenv.Tool(t, "sha256sum")
	m := newMachine(t)
	c := m.config(FormatCloudConfig)
	os.WriteFile(c.InstanceIDFile, []byte("i-0abc123\n"), 0o644)
	want := "i-0abc123"
	if out, err := exec.Command("cloud-init", "query", "v1.instance_id").Output(); err == nil && strings.TrimSpace(string(out)) != "" {
		want = strings.TrimSpace(string(out)) // this host has cloud-init instance data
	}
	ud := filepath.Join(m.dir, "user-data")
	os.WriteFile(ud, render(t, c), 0o600)
	runcmd := filepath.Join(m.dir, "runcmd")
	if out, err := exec.Command(py, "-c", cloudInitDriver, ud, runcmd).CombinedOutput(); err != nil {
		t.Fatalf("cloud-init write_files/shellify: %v\n%s", err, out)
	}
	if out, err := exec.Command("sh", runcmd).CombinedOutput(); err != nil {
		t.Fatalf("runcmd: %v\n%s", err, out)
	}
	m.checkProvisioned(t, c, want)
}
