package cloudinit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"go.yaml.in/yaml/v3"
)

// knownKeys are the top-level cloud-config keys the templates may use.
// `cloud-init schema` accepts any unknown top-level key, so a typo would
// pass it: this list catches them.
var knownKeys = []string{"locale", "package_update", "packages", "write_files", "runcmd", "final_message"}

const testSHA = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"

func inline() Config {
	return Config{
		ApplyArgs:   []string{"--api-host", "https://api.example.com", "--gpus", "0,1", "--queue", "q 1"},
		Credentials: Credentials{AccessKey: "AK", SecretKey: `s'e"c\ret $x SECRET1`, GitUser: "me", GitPass: "GITPASS2"},
		Agents:      []string{"gpu0", "gpu1"},
	}
}

type cloudConfig struct {
	Packages   []string `yaml:"packages"`
	WriteFiles []struct {
		Path, Owner, Permissions, Content string
	} `yaml:"write_files"`
	Runcmd       []any  `yaml:"runcmd"`
	FinalMessage string `yaml:"final_message"`
}

// parse checks a cloud-config the way cloud-init reads it and returns it.
func parse(t *testing.T, out []byte) cloudConfig {
	t.Helper()
	if !bytes.HasPrefix(out, []byte("#cloud-config\n")) {
		t.Fatalf("does not start with #cloud-config:\n%s", out)
	}
	var top map[string]any
	if err := yaml.Unmarshal(out, &top); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, out)
	}
	for k := range top {
		if !slices.Contains(knownKeys, k) {
			t.Errorf("unknown top-level key %q (cloud-init schema would let it pass)", k)
		}
	}
	var cc cloudConfig
	if err := yaml.Unmarshal(out, &cc); err != nil {
		t.Fatal(err)
	}
	for i, c := range cc.Runcmd {
		switch c.(type) {
		case string, []any:
		default:
			t.Errorf("runcmd[%d] is %T", i, c)
		}
	}
	return cc
}

// schema runs the real `cloud-init schema` on out.
func schema(t *testing.T, out []byte) {
	t.Helper()
	tool := testenv.Tool(t, "cloud-init")
	f := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(f, out, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool, "schema", "--config-file", f)
	got, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(got), "Valid cloud-config") || strings.Contains(strings.ToLower(string(got)), "deprecat") {
		t.Errorf("cloud-init schema: %v\n%s\n--- user-data:\n%s", err, got, out)
	}
}

func render(t *testing.T, c Config) []byte {
	t.Helper()
	out, err := Render(c)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return out
}

// argv finds the runcmd entry whose words include all of want.
func argv(cc cloudConfig, want ...string) []string {
	for _, c := range cc.Runcmd {
		l, ok := c.([]any)
		if !ok {
			continue
		}
		var words []string
		for _, w := range l {
			s, _ := w.(string)
			words = append(words, s)
		}
		ok = true
		for _, w := range want {
			ok = ok && slices.Contains(words, w)
		}
		if ok {
			return words
		}
	}
	return nil
}

func TestCloudConfigInlineWithBinary(t *testing.T) {
	c := inline()
	c.BinaryURL, c.BinarySHA256 = "https://example.com/r/clearml-agent-go_1.0_linux_amd64.tar.gz", strings.ToUpper(testSHA)
	out := render(t, c)
	schema(t, out)
	cc := parse(t, out)
	if !slices.Equal(cc.Packages, Packages) {
		t.Errorf("packages = %v, want %v", cc.Packages, Packages)
	}
	if len(cc.WriteFiles) != 2 {
		t.Fatalf("write_files: %+v", cc.WriteFiles)
	}
	creds, inst := cc.WriteFiles[0], cc.WriteFiles[1]
	if creds.Path != DefaultCredsPath || creds.Permissions != "0600" || creds.Owner != "root:root" {
		t.Errorf("credentials file: %+v", creds)
	}
	for _, line := range []string{`CLEARML_API_ACCESS_KEY="AK"`, `CLEARML_API_SECRET_KEY="s'e\"c\\ret $x SECRET1"`, `CLEARML_AGENT_GIT_USER="me"`, `CLEARML_AGENT_GIT_PASS="GITPASS2"`} {
		if !strings.Contains(creds.Content, line+"\n") {
			t.Errorf("credentials file lacks %s:\n%s", line, creds.Content)
		}
	}
	if inst.Permissions != "0755" || !strings.HasPrefix(inst.Content, "#!/bin/sh") {
		t.Errorf("installer: %s %s", inst.Path, inst.Permissions)
	}
	if got := argv(cc, "--sha256"); !slices.Equal(got, []string{"sh", inst.Path, "--prefix", "/usr/local", "--sha256", testSHA, c.BinaryURL}) {
		t.Errorf("install step = %q", got)
	}
	wantApply := []string{"/usr/local/bin/agent-provision", "apply", "--api-host", "https://api.example.com", "--gpus", "0,1", "--queue", "q 1", "--credentials-file", DefaultCredsPath}
	if got := argv(cc, "apply"); !slices.Equal(got, wantApply) {
		t.Errorf("apply step = %q\nwant %q", got, wantApply)
	}
	if got := argv(cc, "rm"); !slices.Equal(got, []string{"rm", "-f", DefaultCredsPath}) {
		t.Errorf("rm step = %q", got)
	}
	if cc.Runcmd[0] != "set -e" {
		t.Errorf("runcmd[0] = %v, want set -e", cc.Runcmd[0])
	}
	last, _ := cc.Runcmd[len(cc.Runcmd)-1].([]any)
	if len(last) != 2 || last[1] != "status" {
		t.Errorf("last runcmd = %v, want agent-provision status", last)
	}
	if cc.FinalMessage != "clearml agents gpu0 gpu1 provisioned after $UPTIME s; agent-provision status shows their state" {
		t.Errorf("final_message = %q", cc.FinalMessage)
	}
	// Secrets only in the credentials file.
	for _, s := range []string{"SECRET1", "GITPASS2"} {
		if n := strings.Count(string(out), s); n != 1 {
			t.Errorf("secret %q appears %d times in the user-data, want once (the credentials file)", s, n)
		}
	}
}

func TestCloudConfigVariants(t *testing.T) {
	docker := inline()
	docker.ApplyArgs = append(docker.ApplyArgs, "--docker")
	docker.DockerPackages = true
	prefix := inline()
	prefix.WorkerIDPrefix = "pool"
	url := inline()
	url.Credentials, url.CredsFrom, url.CredsURL = Credentials{}, CredsURL, "http://169.254.169.254/computeMetadata/v1/instance/attributes/clearml"
	url.CredsHeaders, url.CredsTimeout = []string{"Metadata-Flavor: Google"}, 90*time.Second
	file := inline()
	file.Credentials, file.CredsFrom, file.CredsFile = Credentials{}, CredsFile, "/run/secrets/clearml"
	placeholder := inline()
	placeholder.Credentials, placeholder.CredsFrom = Credentials{}, CredsPlaceholder
	prebuilt := Config{PrebuiltImage: true, Credentials: Credentials{AccessKey: "AK", SecretKey: "SK"}}
	prebuiltURL := Config{PrebuiltImage: true, CredsFrom: CredsURL, CredsURL: "https://meta.example/creds"}
	nopkg := inline()
	nopkg.NoPackages = true
	prebuiltPrefix := prebuilt
	prebuiltPrefix.WorkerIDPrefix = "pool"
	bin := "/usr/local/bin/agent-provision"

	for _, tc := range []struct {
		name     string
		c        Config
		packages []string
		steps    [][]string // runcmd entries (after set -e)
		final    string
	}{
		{"docker packages", docker, append(slices.Clone(Packages), "docker.io"), nil, ""},
		{"no packages", nopkg, nil, nil, ""},
		{"worker id prefix", prefix, Packages, [][]string{{"sh", "-c", instanceIDScript(withDefaults(prefix)), "sh", "pool", bin, "apply", "--api-host", "https://api.example.com", "--gpus", "0,1", "--queue", "q 1", "--credentials-file", DefaultCredsPath}}, ""},
		{"url", url, Packages, [][]string{
			{bin, "apply", "--api-host", "https://api.example.com", "--gpus", "0,1", "--queue", "q 1", "--first-boot-creds", "--no-start"},
			{bin, "first-boot", "--creds-url", url.CredsURL, "--creds-header", "Metadata-Flavor: Google", "--creds-timeout", "1m30s"},
			{bin, "status"},
		}, ""},
		{"file", file, Packages, [][]string{
			{bin, "apply", "--api-host", "https://api.example.com", "--gpus", "0,1", "--queue", "q 1", "--first-boot-creds", "--no-start"},
			{bin, "first-boot", "--creds-file", "/run/secrets/clearml", "--creds-timeout", "5m0s"},
			{bin, "status"},
		}, ""},
		{"placeholder", placeholder, Packages, [][]string{
			{bin, "apply", "--api-host", "https://api.example.com", "--gpus", "0,1", "--queue", "q 1", "--first-boot-creds", "--no-start"},
			{bin, "status"},
		}, "clearml agents gpu0 gpu1 installed after $UPTIME s without credentials; to start them run /usr/local/bin/agent-provision first-boot --creds-file FILE (KEY=VALUE lines: CLEARML_API_ACCESS_KEY, CLEARML_API_SECRET_KEY)"},
		{"prebuilt image", prebuilt, nil, [][]string{
			{bin, "first-boot", "--creds-file", DefaultCredsPath},
			{"rm", "-f", DefaultCredsPath},
			{bin, "status"},
		}, "the image's clearml agents provisioned after $UPTIME s; agent-provision status shows their state"},
		{"prebuilt image, worker id prefix", prebuiltPrefix, nil, [][]string{
			{"sh", "-c", instanceIDScript(withDefaults(prebuiltPrefix)), "sh", "pool", bin, "first-boot", "--creds-file", DefaultCredsPath},
			{"rm", "-f", DefaultCredsPath},
			{bin, "status"},
		}, ""},
		{"prebuilt image, url", prebuiltURL, nil, [][]string{
			{bin, "first-boot", "--creds-url", "https://meta.example/creds", "--creds-timeout", "5m0s"},
			{bin, "status"},
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := render(t, tc.c)
			schema(t, out)
			cc := parse(t, out)
			if !slices.Equal(cc.Packages, tc.packages) {
				t.Errorf("packages = %v, want %v", cc.Packages, tc.packages)
			}
			if tc.steps != nil {
				var got [][]string
				for _, c := range cc.Runcmd[1:] {
					var words []string
					for _, w := range c.([]any) {
						words = append(words, w.(string))
					}
					got = append(got, words)
				}
				if len(tc.c.Credentials.AccessKey) > 0 && !tc.c.PrebuiltImage {
					got = got[:1] // the apply; rm and status are checked above
				}
				if !slices.EqualFunc(got, tc.steps, slices.Equal) {
					t.Errorf("runcmd =\n%q\nwant\n%q", got, tc.steps)
				}
			}
			if tc.final != "" && cc.FinalMessage != tc.final {
				t.Errorf("final_message = %q\nwant %q", cc.FinalMessage, tc.final)
			}
			inlineCreds := tc.c.CredsFrom == "" || tc.c.CredsFrom == CredsInline
			if hasCreds := strings.Contains(string(out), DefaultCredsPath+"\"\n    owner"); hasCreds != inlineCreds {
				t.Errorf("credentials file written = %v, want %v", hasCreds, inlineCreds)
			}
		})
	}
}

func withDefaults(c Config) Config {
	if err := c.check(); err != nil {
		panic(err)
	}
	return c
}

func TestGPUsAtBootMessage(t *testing.T) {
	c := inline()
	c.Agents, c.GPUsAtBoot = []string{"services"}, true
	cc := parse(t, render(t, c))
	if want := "clearml agents (one per GPU found at boot) services provisioned after $UPTIME s; agent-provision status shows their state"; cc.FinalMessage != want {
		t.Errorf("final_message = %q", cc.FinalMessage)
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no credentials", func(c *Config) { c.Credentials = Credentials{} }, "credentials missing: the user-data needs --access-key and --secret-key"},
		{"half credentials", func(c *Config) { c.Credentials.SecretKey = "" }, "--creds-from file:PATH|url:URL"},
		{"newline in a secret", func(c *Config) { c.Credentials.SecretKey = "a\nb" }, "the secret key contains a line break"},
		{"url without sha", func(c *Config) { c.BinaryURL = "https://x/r.tar.gz" }, "--binary-url https://x/r.tar.gz needs --binary-sha256 HEX"},
		{"sha without url", func(c *Config) { c.BinarySHA256 = testSHA }, "--binary-sha256 without --binary-url"},
		{"bad sha", func(c *Config) { c.BinaryURL, c.BinarySHA256 = "https://x/r.tar.gz", "abc" }, `--binary-sha256 "abc" is not a sha256: want 64 hex digits`},
		{"bad url", func(c *Config) { c.BinaryURL, c.BinarySHA256 = "ftp://x/r.tar.gz", testSHA }, `--binary-url "ftp://x/r.tar.gz": want an http://`},
		{"prefix with space", func(c *Config) { c.WorkerIDPrefix = "my pool" }, "--worker-id-prefix \"my pool\" contains whitespace"},
		{"prefix ending in colon", func(c *Config) { c.WorkerIDPrefix = "pool:" }, "starts or ends with ':'"},
		{"prefix starting with colon", func(c *Config) { c.WorkerIDPrefix = ":pool" }, "starts or ends with ':'"},
		{"relative prefix", func(c *Config) { c.Prefix = "usr/local" }, "--prefix"},
		{"bad format", func(c *Config) { c.Format = "json" }, `--format "json"`},
		{"header without url", func(c *Config) { c.CredsHeaders = []string{"A: b"} }, "headers are sent only with --creds-from url:URL"},
		{"creds with url mode", func(c *Config) { c.CredsFrom, c.CredsURL = CredsURL, "http://x/" }, "credentials were given, but --creds-from url gets them at boot"},
		{"prebuilt with binary", func(c *Config) {
			c.PrebuiltImage, c.BinaryURL, c.BinarySHA256 = true, "https://x/r.tar.gz", testSHA
		}, "--prebuilt-image with --binary-url"},
		{"control character in an argument", func(c *Config) { c.ApplyArgs = append(c.ApplyArgs, "--queue", "a\nb") }, "contains a line break"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := inline()
			tc.edit(&c)
			_, err := Render(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Render: %v; want one line with %q", err, tc.want)
			}
		})
	}
}

func TestParseCredsFrom(t *testing.T) {
	for _, tc := range []struct {
		in   string
		mode CredsMode
		arg  string
		bad  string
	}{
		{"", CredsInline, "", ""},
		{"inline", CredsInline, "", ""},
		{"placeholder", CredsPlaceholder, "", ""},
		{"file:/run/creds", CredsFile, "/run/creds", ""},
		{"url:http://169.254.169.254/x", CredsURL, "http://169.254.169.254/x", ""},
		{"file:run/creds", "", "", "not a clean absolute path"},
		{"file:", "", "", "empty path"},
		{"url:ftp://x/", "", "", "not an http:// or https:// URL"},
		{"env", "", "", `--creds-from "env": unknown source; use inline, file:PATH, url:URL or placeholder`},
	} {
		mode, arg, err := ParseCredsFrom(tc.in)
		switch {
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("ParseCredsFrom(%q) = %v; want an error with %q", tc.in, err, tc.bad)
		case tc.bad == "" && (err != nil || mode != tc.mode || arg != tc.arg):
			t.Errorf("ParseCredsFrom(%q) = %q, %q, %v", tc.in, mode, arg, err)
		}
	}
}
