package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/gpufleet/clearml-agent-go/agent/gpu"
	"github.com/gpufleet/clearml-agent-go/provision"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runWith(t, provision.HostDeps(), args...)
}

func runWith(t *testing.T, deps provision.Deps, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := mainWith(t.Context(), args, &out, &errb, deps)
	return code, out.String(), errb.String()
}

func TestBadFlags(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown long flag '--bogus'"},
		{[]string{"--root", root, "--gpus", "0,,1", "--access-key", "a", "--secret-key", "b", "--api-host", "http://x"}, `--gpus "0,,1": empty GPU id at position 2`},
		{[]string{"--root", root, "--gpus=-1"}, `--gpus "-1"`},
		{[]string{"--root", root, "--gpus", "-1"}, "unknown short flag '-1'"},
		{[]string{"--root", root, "--gpus", "a"}, `--gpus "a"`},
		{[]string{"--root", root, "--gpus", "0", "--docker-image", "img --ipc=host"}, `--docker-image "img --ipc=host": give one image name without spaces`},
		{[]string{"--root", root, "--gpus", "0", "--no-docker", "--docker-image", "img"}, "--docker-image img runs tasks in docker, but --no-docker (or AGENT_PROVISION_DOCKER=false) turns docker mode off; drop one of them"},
		{[]string{"--root", root, "--gpus", "0", "--docker", "--docker-host", "ssh://me@box"}, "the agents speak to unix:// and tcp:// engines only"},
		{[]string{"--root", root, "--gpus", "0", "--api-host", "http://x"}, "credentials missing"},
		{[]string{"--root", root, "--gpus", "0", "--agent-queues", "gpu0"}, "want AGENT=QUEUE"},
		{[]string{"--gpus", "0", "--access-key", "a", "--secret-key", "b", "--api-host", "http://x", "--config", filepath.Join(root, "c.conf")}, "systemd is not PID 1 here"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code == 0 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want non-zero and one line with %q", tc.args, code, stderr, tc.want)
		}
	}
}

// Docker mode on this (live) system: a dry run still checks the static
// agent and the engine, and fails in one line before writing anything.
func TestDockerDryRunChecks(t *testing.T) {
	dir := t.TempDir()
	static := filepath.Join(dir, "clearml-agent-static")
	writeStaticELF(t, static)
	dead := "unix://" + filepath.Join(dir, "none.sock")
	conf := filepath.Join(dir, "clearml.conf")
	base := []string{"--dry-run", "--cpu-agents", "1", "--api-host", "http://x", "--access-key", "a", "--secret-key", "b", "--config", conf}
	cases := []struct {
		args []string
		want string
	}{
		// The static agent is checked first, so this does not depend on
		// the host having a docker group.
		{[]string{"--docker-agent-binary", filepath.Join(dir, "missing")}, "--docker-agent-binary " + filepath.Join(dir, "missing") + ": no such file"},
	}
	if self, err := os.Executable(); err == nil {
		if f, err := elf.Open(self); err == nil {
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					cases = append(cases, struct {
						args []string
						want string
					}{[]string{"--docker-agent-binary", self}, "is dynamically linked"})
				}
			}
			f.Close()
		}
	}
	want := "docker engine not reachable at " + dead
	if g, err := os.ReadFile("/etc/group"); err != nil || !strings.Contains("\n"+string(g), "\ndocker:") {
		want = `no group "docker" here`
	}
	cases = append(cases, struct {
		args []string
		want string
	}{[]string{"--docker", "--docker-agent-binary", static, "--docker-host", dead}, want})
	for _, tc := range cases {
		code, out, stderr := run(t, append(append([]string{}, base...), tc.args...)...)
		if code == 0 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want non-zero and one line with %q\n%s", tc.args, code, stderr, tc.want, out)
		}
		if _, err := os.Stat(conf); !os.IsNotExist(err) {
			t.Errorf("%v: %s written", tc.args, conf)
		}
	}
}

// writeStaticELF writes the header of a static x86-64 executable: an ELF
// file without a program interpreter, which is all the check reads.
func writeStaticELF(t *testing.T, file string) {
	t.Helper()
	var b bytes.Buffer
	hdr := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT), Ehsize: 64, Phentsize: 56, Shentsize: 64}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS], hdr.Ident[elf.EI_DATA], hdr.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.Write(&b, binary.LittleEndian, hdr)
	if err := os.WriteFile(file, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestDryRunFromEnv(t *testing.T) {
	root := t.TempDir()
	t.Setenv("AGENT_PROVISION_GPUS", "0,1")
	t.Setenv("AGENT_PROVISION_ROOT", root)
	t.Setenv("CLEARML_API_HOST", "http://127.0.0.1:8008")
	t.Setenv("CLEARML_API_ACCESS_KEY", "AK")
	t.Setenv("CLEARML_API_SECRET_KEY", "SECRETSECRET")
	code, out, stderr := run(t, "--dry-run", "--services-agent")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{"clearml-agent@gpu0.service", "clearml-agent@gpu1.service", "clearml-agent@services.service", "dry run: nothing was changed"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "SECRETSECRET") {
		t.Error("dry run printed the secret key")
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("dry run wrote %v", entries)
	}
	// The real thing under --root, then status and remove.
	if code, out, stderr := run(t, "--services-agent"); code != 0 {
		t.Fatalf("apply --root: exit %d: %s%s", code, out, stderr)
	}
	code, out, _ = run(t, "status")
	if code != 0 || !strings.Contains(out, "clearml-agent@gpu1.service") {
		t.Errorf("status: %d\n%s", code, out)
	}
	code, out, _ = run(t, "remove", "--purge-config")
	if code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("remove: %d\n%s", code, out)
	}
}

func TestGPUsMock(t *testing.T) {
	deps := provision.HostDeps()
	deps.Discover = func() (*gpu.Inventory, error) { return gpu.DiscoverWith(dgxa100.New()) }
	run := func(t *testing.T, args ...string) (int, string, string) { return runWith(t, deps, args...) }
	code, out, stderr := run(t, "gpus")
	if code != 0 || strings.Count(out, "NVIDIA A100") != 8 {
		t.Errorf("gpus: exit %d\n%s%s", code, out, stderr)
	}
	root := t.TempDir()
	code, _, stderr = run(t, "--root", root, "--gpus", "0,9", "--first-boot-creds", "--api-host", "http://x", "--dry-run")
	if code == 0 || !strings.Contains(stderr, "9") {
		t.Errorf("unknown GPU 9 on an 8-GPU box: exit %d, %q", code, stderr)
	}
	code, out, stderr = run(t, "--root", root, "--gpus", "all", "--gpus-per-agent", "4", "--first-boot-creds", "--api-host", "http://x", "--dry-run")
	if code != 0 || !strings.Contains(out, "2 agent(s)") {
		t.Errorf("--gpus all --gpus-per-agent 4: exit %d\n%s%s", code, out, stderr)
	}
}

// --credentials-file gives the key pair and git credentials without putting
// them on the command line; a file others may read is refused in one line.
func TestCredentialsFile(t *testing.T) {
	root := t.TempDir()
	creds := filepath.Join(t.TempDir(), "creds")
	body := "CLEARML_API_ACCESS_KEY=AKFROMFILE\nCLEARML_API_SECRET_KEY=SECRETFROMFILE\nCLEARML_AGENT_GIT_PASS=GITPASSFROMFILE\n"
	if err := os.WriteFile(creds, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--root", root, "--gpus", "0", "--api-host", "http://127.0.0.1:8008", "--credentials-file", creds,
		"--extra-index-url", "https://bob:IDXPASS@pypi.internal/simple"}
	code, out, stderr := run(t, append(args, "--dry-run")...)
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, stderr)
	}
	for _, s := range []string{"SECRETFROMFILE", "GITPASSFROMFILE", "IDXPASS"} {
		if strings.Contains(out+stderr, s) {
			t.Errorf("dry run printed %s:\n%s", s, out)
		}
	}
	if code, out, stderr := run(t, args...); code != 0 {
		t.Fatalf("apply: exit %d: %s%s", code, out, stderr)
	}
	conf, err := os.ReadFile(filepath.Join(root, "etc", "clearml-agent", "clearml.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"AKFROMFILE", "SECRETFROMFILE", "GITPASSFROMFILE"} {
		if !strings.Contains(string(conf), s) {
			t.Errorf("clearml.conf lacks %s", s)
		}
	}

	if err := os.Chmod(creds, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, append(args, "--dry-run")...)
	if want := "credentials file " + creds + " is accessible by group or others (mode 0644); run: chmod 600 " + creds; code != 1 || !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("mode 0644: exit %d, stderr %q; want 1 and one line with %q", code, stderr, want)
	}
}
