package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"go.yaml.in/yaml/v3"
)

const sha = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"

// cloudInitKeys are the top-level keys agent-provision's user-data may
// have; `cloud-init schema` lets unknown top-level keys pass.
var cloudInitKeys = []string{"locale", "package_update", "packages", "write_files", "runcmd", "final_message"}

type userData struct {
	WriteFiles []struct {
		Path, Permissions, Content string
	} `yaml:"write_files"`
	Packages     []string `yaml:"packages"`
	Runcmd       []any    `yaml:"runcmd"`
	FinalMessage string   `yaml:"final_message"`
}

// checkUserData validates doc with the real `cloud-init schema` and the
// key allowlist, and returns it parsed.
func checkUserData(t *testing.T, doc string) userData {
	t.Helper()
	if !strings.HasPrefix(doc, "#cloud-config\n") {
		t.Fatalf("not #cloud-config:\n%s", doc)
	}
	var top map[string]any
	if err := yaml.Unmarshal([]byte(doc), &top); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, doc)
	}
	for k := range top {
		if !slices.Contains(cloudInitKeys, k) {
			t.Errorf("unknown top-level key %q", k)
		}
	}
	var ud userData
	if err := yaml.Unmarshal([]byte(doc), &ud); err != nil {
		t.Fatal(err)
	}
	tool := testenv.Tool(t, "cloud-init")
	f := filepath.Join(t.TempDir(), "user-data")
	os.WriteFile(f, []byte(doc), 0o600)
	out, err := exec.Command(tool, "schema", "--config-file", f).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
		t.Errorf("cloud-init schema: %v\n%s\n%s", err, out, doc)
	}
	return ud
}

// step returns the runcmd entry with word at position i (-1: anywhere).
func (ud userData) step(word string) []string {
	for _, c := range ud.Runcmd {
		l, ok := c.([]any)
		if !ok {
			continue
		}
		var words []string
		for _, w := range l {
			words = append(words, w.(string))
		}
		if slices.Contains(words, word) {
			return words
		}
	}
	return nil
}

func TestCloudInitInline(t *testing.T) {
	code, out, stderr := run(t, "cloud-init", "--api-host", "https://api.example.com", "--gpus", "0,1", "--queue", "gpu,fast",
		"--access-key", "AKEY", "--secret-key", "SECRET-KEY-1", "--git-user", "bot", "--git-pass", "GITPASS-2",
		"--binary-url", "https://example.com/clearml-agent-go_1.0_linux_amd64.tar.gz", "--binary-sha256", strings.ToUpper(sha))
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	ud := checkUserData(t, out)
	want := []string{"/usr/local/bin/agent-provision", "apply", "--api-host", "https://api.example.com", "--queue", "gpu", "--queue", "fast", "--gpus", "0,1", "--credentials-file", "/etc/clearml-agent/credentials"}
	if got := ud.step("apply"); !slices.Equal(got, want) {
		t.Errorf("apply step %q\nwant %q", got, want)
	}
	if got := ud.step("--sha256"); !slices.Contains(got, sha) {
		t.Errorf("install step %q lacks the (lower-cased) sha256", got)
	}
	if ud.WriteFiles[0].Permissions != "0600" || !strings.Contains(ud.WriteFiles[0].Content, `CLEARML_AGENT_GIT_PASS="GITPASS-2"`) {
		t.Errorf("credentials file: %+v", ud.WriteFiles[0])
	}
	for _, s := range []string{"SECRET-KEY-1", "GITPASS-2"} {
		if n := strings.Count(out, s); n != 1 {
			t.Errorf("%s appears %d times; want once, in the 0600 credentials file", s, n)
		}
	}
	if ud.FinalMessage != "clearml agents gpu0 gpu1 provisioned after $UPTIME s; agent-provision status shows their state" {
		t.Errorf("final_message %q", ud.FinalMessage)
	}
}

// The credentials from the environment or a --credentials-file, as apply
// takes them.
func TestCloudInitCredentialsFromEnvAndFile(t *testing.T) {
	t.Setenv("CLEARML_API_ACCESS_KEY", "ENV_AK")
	t.Setenv("CLEARML_API_SECRET_KEY", "ENV_SK")
	code, out, stderr := run(t, "cloud-init", "--api-host", "http://x", "--cpu-agents", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if ud := checkUserData(t, out); !strings.Contains(ud.WriteFiles[0].Content, `CLEARML_API_SECRET_KEY="ENV_SK"`) || !strings.Contains(ud.FinalMessage, "agents cpu0 cpu1 ") {
		t.Errorf("env credentials not in the user-data:\n%s", out)
	}
	t.Setenv("CLEARML_API_ACCESS_KEY", "")
	t.Setenv("CLEARML_API_SECRET_KEY", "")
	f := filepath.Join(t.TempDir(), "creds")
	os.WriteFile(f, []byte("CLEARML_API_ACCESS_KEY=F_AK\nCLEARML_API_SECRET_KEY=F_SK\n"), 0o600)
	code, out, stderr = run(t, "cloud-init", "--api-host", "http://x", "--cpu-agents", "1", "--credentials-file", f)
	if code != 0 || !strings.Contains(out, `CLEARML_API_SECRET_KEY="F_SK"`) || strings.Contains(out, f) {
		t.Errorf("exit %d, stderr %q; want the file's credentials inline:\n%s", code, stderr, out)
	}
}

// --gpus all is decided at boot; worker ids follow <prefix>:<instance-id>;
// credentials come from a metadata URL.
func TestCloudInitGPUsAllWorkerPrefixURL(t *testing.T) {
	code, out, stderr := run(t, "cloud-init", "--api-host", "http://x", "--gpus", "all", "--services-agent", "--worker-id-prefix", "pool",
		"--agent-queues", "gpu3=q3", "--docker", "--docker-packages",
		"--creds-from", "url:http://169.254.169.254/computeMetadata/v1/instance/attributes/clearml", "--creds-header", "Metadata-Flavor: Google", "--creds-timeout", "3m")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	ud := checkUserData(t, out)
	apply := ud.step("apply")
	if len(apply) < 6 || apply[0] != "sh" || apply[1] != "-c" || !strings.Contains(apply[2], `exec "$@" --hostname "$p:$iid"`) || apply[4] != "pool" {
		t.Errorf("apply step %q: want sh -c ... pool agent-provision apply ...", apply)
	}
	for _, w := range []string{"--gpus", "all", "--services-agent", "--docker", "--agent-queues", "gpu3=q3", "--first-boot-creds", "--no-start"} {
		if !slices.Contains(apply, w) {
			t.Errorf("apply step lacks %q: %q", w, apply)
		}
	}
	fb := ud.step("first-boot")
	if want := []string{"/usr/local/bin/agent-provision", "first-boot", "--creds-url", "http://169.254.169.254/computeMetadata/v1/instance/attributes/clearml", "--creds-header", "Metadata-Flavor: Google", "--creds-timeout", "3m0s"}; !slices.Equal(fb, want) {
		t.Errorf("first-boot step %q\nwant %q", fb, want)
	}
	if len(ud.WriteFiles) != 0 || !slices.Contains(ud.Packages, "docker.io") {
		t.Errorf("write_files %v, packages %v", ud.WriteFiles, ud.Packages)
	}
	if !strings.Contains(ud.FinalMessage, "clearml agents (one per GPU found at boot) services provisioned") {
		t.Errorf("final_message %q", ud.FinalMessage)
	}
}

func TestCloudInitPrebuiltImageAndPlaceholder(t *testing.T) {
	code, out, stderr := run(t, "cloud-init", "--prebuilt-image", "--access-key", "a", "--secret-key", "b")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	ud := checkUserData(t, out)
	if fb := ud.step("first-boot"); !slices.Equal(fb, []string{"/usr/local/bin/agent-provision", "first-boot", "--creds-file", "/etc/clearml-agent/credentials"}) || ud.step("apply") != nil || len(ud.Packages) != 0 {
		t.Errorf("prebuilt image user-data:\n%s", out)
	}
	code, out, stderr = run(t, "cloud-init", "--api-host", "http://x", "--cpu-agents", "1", "--creds-from", "placeholder")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	ud = checkUserData(t, out)
	if !strings.Contains(ud.FinalMessage, "without credentials; to start them run /usr/local/bin/agent-provision first-boot --creds-file FILE") || ud.step("first-boot") != nil || len(ud.WriteFiles) != 0 {
		t.Errorf("placeholder user-data:\n%s", out)
	}
}

func TestCloudInitShellFormat(t *testing.T) {
	code, out, stderr := run(t, "cloud-init", "--format", "shell", "--api-host", "http://x", "--gpus", "0", "--access-key", "a", "--secret-key", "b'c",
		"--worker-id-prefix", "pool", "--binary-url", "https://example.com/r.tar.gz", "--binary-sha256", sha)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(out, "#!/bin/sh\n") || !strings.Contains(out, "\nset -eu\numask 077\n") {
		t.Errorf("startup script head:\n%s", out)
	}
	f := filepath.Join(t.TempDir(), "startup.sh")
	os.WriteFile(f, []byte(out), 0o700)
	if b, err := exec.Command("sh", "-n", f).CombinedOutput(); err != nil {
		t.Errorf("sh -n: %v\n%s", err, b)
	}
}

func TestCloudInitOutputFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "user-data")
	code, out, stderr := run(t, "cloud-init", "--api-host", "http://x", "--gpus", "0,1", "--access-key", "a", "--secret-key", "b", "--output", f)
	if code != 0 || out != "wrote user-data (#cloud-config) for agents gpu0, gpu1 to "+f+" (mode 0600)\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	fi, err := os.Stat(f)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v; want mode 0600", f, fi.Mode(), err)
	}
	b, _ := os.ReadFile(f)
	checkUserData(t, string(b))

	// Unwritable: one line, nothing written.
	bad := filepath.Join(dir, "missing-dir", "user-data")
	code, _, stderr = run(t, "cloud-init", "--api-host", "http://x", "--gpus", "0", "--access-key", "a", "--secret-key", "b", "--output", bad)
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, bad) {
		t.Errorf("unwritable --output: exit %d, stderr %q", code, stderr)
	}
	// A bad flag leaves no file either.
	other := filepath.Join(dir, "other")
	run(t, "cloud-init", "--api-host", "http://x", "--gpus", "0", "--output", other)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files after the failed renders: %v; want only user-data", entries)
	}
}

func TestCloudInitBadInput(t *testing.T) {
	keys := []string{"--api-host", "http://x", "--access-key", "a", "--secret-key", "b"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--api-host", "http://x", "--gpus", "0"}, "credentials missing: the user-data needs --access-key and --secret-key (or CLEARML_API_ACCESS_KEY/CLEARML_API_SECRET_KEY, or --credentials-file FILE); or let the machine get them at boot with --creds-from file:PATH|url:URL, or --creds-from placeholder"},
		{[]string{"--api-host", "http://x", "--gpus", "0", "--access-key", "a"}, "give both --access-key and --secret-key"},
		{append(keys, "--gpus", "0", "--binary-url", "https://x/r.tar.gz"), "--binary-url https://x/r.tar.gz needs --binary-sha256 HEX"},
		{append(keys, "--gpus", "0", "--binary-url", "https://x/r.tar.gz", "--binary-sha256", "12ab"), `--binary-sha256 "12ab" is not a sha256`},
		{append(keys, "--gpus", "0", "--binary-sha256", sha), "--binary-sha256 without --binary-url"},
		{append(keys, "--gpus", "0", "--creds-from", "env"), `--creds-from "env": unknown source`},
		{append(keys[:2:2], "--gpus", "0", "--creds-from", "file:relative"), "not a clean absolute path"},
		{append(keys, "--gpus", "0", "--worker-id-prefix", "my pool"), `--worker-id-prefix "my pool" contains whitespace`},
		{append(keys, "--gpus", "0", "--worker-id-prefix", "pool:"), "starts or ends with ':'"},
		{append(keys, "--gpus", "0", "--worker-id-prefix", "pool", "--hostname", "h"), "--worker-id-prefix pool and --hostname h both name the workers"},
		{append(keys, "--gpus", "0,,1"), `--gpus "0,,1": empty GPU id at position 2`},
		{append(keys, "--gpus", "0", "--agent-queues", "gpu7=q"), `no agent named "gpu7"`},
		{append(keys, "--gpus", "0", "--docker-image", "img --ipc=host"), "give one image name without spaces"},
		{[]string{"--access-key", "a", "--secret-key", "b", "--gpus", "0"}, "--api-host (CLEARML_API_HOST) is required"},
		{keys, "nothing to provision"},
		{append(keys, "--gpus", "0", "--root", "/tmp"), "--root /tmp: the user-data provisions the machine it runs on"},
		{append(keys[:2:2], "--gpus", "0", "--creds-from", "url:http://m/", "--git-pass", "p"), "--git-pass (CLEARML_AGENT_GIT_PASS) with --creds-from url would be on the machine's command line"},
		{append(keys, "--gpus", "0", "--extra-index-url", "https://u:pw@pypi.example/simple"), "the URL holds a password"},
		{append(keys, "--gpus", "0", "--creds-header", "A: b"), "headers are sent only with --creds-from url:URL"},
		{append(keys[:2:2], "--gpus", "0", "--creds-from", "url:http://m/", "--creds-header", "nocolon"), "want 'Name: value'"},
		{append(keys, "--gpus", "0", "--format", "json"), "enum value must be one of cloud-config,shell"},
	} {
		args := append([]string{"cloud-init"}, tc.args...)
		code, out, stderr := run(t, args...)
		if code == 0 || out != "" || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want non-zero, nothing on stdout and one line with %q", tc.args, code, out, stderr, tc.want)
		}
	}
}

// first-boot waits for metadata that never arrives, then says so and
// exits 1 (bounded by --creds-timeout).
func TestFirstBootCredsNeverArrive(t *testing.T) {
	root := t.TempDir()
	if code, _, stderr := run(t, "--root", root, "--cpu-agents", "1", "--first-boot-creds", "--api-host", "http://x"); code != 0 {
		t.Fatalf("image: exit %d: %s", code, stderr)
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	code, _, stderr := run(t, "first-boot", "--root", root, "--creds-url", srv.URL+"/creds", "--creds-header", "Metadata-Flavor: Google", "--creds-timeout", "1500ms")
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "no credentials from "+srv.URL+"/creds within --creds-timeout 1.5s") || !strings.Contains(stderr, "HTTP 404 Not Found") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	// The same image with a credentials file that is there.
	f := filepath.Join(root, "creds")
	os.WriteFile(f, []byte("CLEARML_API_ACCESS_KEY=a\nCLEARML_API_SECRET_KEY=b\n"), 0o600)
	code, out, stderr := run(t, "first-boot", "--root", root, "--creds-file", f, "--creds-timeout", "10s")
	if code != 0 || !strings.Contains(out, "wrote credentials into") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}
