package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func load(t *testing.T, file string, env ...string) *Config {
	t.Helper()
	c, err := Load(LoadOptions{File: file, Env: env, Home: "/home/u"})
	if err != nil {
		t.Fatalf("Load(%s): %v", file, err)
	}
	return c
}

func TestRealDialect(t *testing.T) {
	c := load(t, "testdata/real.conf", "HOME=/home/u")
	strs := map[string]string{
		"api.api_server":             "https://api.clear.ml",
		"api.web_server":             "http://10.0.0.5:8080/",
		"api.files_server":           "https://files.clear.ml",
		"api.host":                   "https://api.clear.ml",
		"api.credentials.access_key": "ABCDEFGHIJ1234567890",
		"api.credentials.secret_key": "s3cr3t/with+chars==",
		"agent.git_user":             "bob",
		"agent.git_pass":             "hunter2",
		"agent.git_host":             "git.example.com",
		"agent.worker_name":          "gpu-box",
		"agent.worker_id":            "gpu-box:gpu0",
		"agent.default_docker.image": "override/image:1",
		"agent.description":          "a b c",
		"agent.home_dir":             "/home/u/data",
		"agent.multi":                "line one\nline \"two\" ",
		"agent.package_manager.type": "pip",
		"agent.environment.FOO":      "bar",
		"agent.environment.NUM":      "3",
		"agent.translate_ssh":        "true", // default
	}
	for k, want := range strs {
		if got, ok := c.String(k); !ok || got != want {
			t.Errorf("String(%q) = %q, %v; want %q", k, got, ok, want)
		}
	}
	if _, ok := c.Get("agent.cache_from_env"); ok {
		t.Errorf("agent.cache_from_env: unresolved ${?MY_CACHE} should remove the key")
	}
	lists := map[string][]string{
		"agent.package_manager.extra_index_url": {"https://pypi.internal/simple", "https://other.internal/simple"},
		"agent.default_docker.arguments":        {"--ipc=host", "-e", "A=B"},
		"agent.extra_docker_arguments":          {"--shm-size=8g"},
		"agent.git_fetch_args":                  {"--all", "--tags", "--recurse-submodules"},
	}
	for k, want := range lists {
		got, _ := c.Strings(k)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Strings(%q) (-want +got):\n%s", k, diff)
		}
	}
	if n, _ := c.Int("agent.venvs_cache.max_entries"); n != 20 {
		t.Errorf("max_entries = %d, want 20", n)
	}
	if d, _ := c.Duration("agent.abort_grace_period_sec"); d != 30*time.Second {
		t.Errorf("abort_grace_period_sec = %v, want 30s", d)
	}

	a := c.Agent()
	if a.VenvsDir != "/home/u/venvs" || a.VenvsCache.Path != "/var/cache/venvs" || a.VCSCachePath != "/home/u/.clearml/vcs-cache" {
		t.Errorf("paths: venvs_dir=%q venvs_cache=%q vcs=%q", a.VenvsDir, a.VenvsCache.Path, a.VCSCachePath)
	}
	if a.PollingInterval != 7*time.Second || a.AbortGracePeriod != 30*time.Second || a.TaskPingInterval != time.Minute {
		t.Errorf("intervals: %v %v %v", a.PollingInterval, a.AbortGracePeriod, a.TaskPingInterval)
	}
	if diff := cmp.Diff(map[string]string{"FOO": "bar", "NUM": "3"}, a.Environment); diff != "" {
		t.Errorf("environment (-want +got):\n%s", diff)
	}
	api := c.API()
	if api.WebServer != "http://10.0.0.5:8080" || !api.VerifyCertificate || api.DefaultMethod != "get" {
		t.Errorf("API() = %+v", api)
	}
}

func TestOrigins(t *testing.T) {
	c := load(t, "testdata/real.conf", "CLEARML_AGENT__AGENT__DEFAULT_DOCKER__IMAGE=\"from/env:1\"", "CLEARML_WORKER_ID=w1")
	want := map[string]string{
		"api.api_server":                        "testdata/real.conf:4",
		"api.credentials.secret_key":            "testdata/real.conf:7",
		"agent.package_manager.extra_index_url": "testdata/real.conf:13",
		"agent.venvs_cache.max_entries":         "testdata/real.conf:23",
		"agent.git_host":                        "testdata/extra.conf:3",
		"agent.default_docker.image":            "env CLEARML_AGENT__AGENT__DEFAULT_DOCKER__IMAGE",
		"agent.worker_id":                       "env CLEARML_WORKER_ID",
		"agent.reload_config":                   "default",
		"agent.environment.FOO":                 "testdata/real.conf:46",
		"agent.nope":                            "",
	}
	for k, w := range want {
		if got := c.Origin(k); got != w {
			t.Errorf("Origin(%q) = %q, want %q", k, got, w)
		}
	}
	if got, _ := c.String("agent.default_docker.image"); got != "from/env:1" {
		t.Errorf("image = %q", got)
	}
}

func TestOverrides(t *testing.T) {
	c := load(t, "testdata/braced.conf",
		"CLEARML_AGENT__AGENT__DOCKER_FORCE_PULL=true",
		"CLEARML_AGENT__AGENT__VENVS_CACHE__MAX_ENTRIES=5",
		`CLEARML_AGENT__AGENT__EXTRA_DOCKER_ARGUMENTS=["--ipc=host"]`,
		"CLEARML_AGENT__AGENT__WORKER_NAME=plain",
		"CLEARML_AGENT__API__API_SERVER=\"http://other:8008\"",
		"CLEARML_API_HOST=http://fixed:8008/", // fixed env beats overrides
		"CLEARML_API_HOST_VERIFY_CERT=0",
		"CLEARML_CPU_ONLY=1",
		"CLEARML_WEB_HOST=",
	)
	if v, _ := c.Get("agent.docker_force_pull"); v != true {
		t.Errorf("docker_force_pull = %#v, want true", v)
	}
	if v, _ := c.Get("agent.venvs_cache.max_entries"); v != int64(5) {
		t.Errorf("max_entries = %#v, want 5", v)
	}
	if got, _ := c.Strings("agent.extra_docker_arguments"); !cmp.Equal(got, []string{"--ipc=host"}) {
		t.Errorf("extra_docker_arguments = %q", got)
	}
	if got, _ := c.String("agent.worker_name"); got != "plain" {
		t.Errorf("worker_name = %q", got)
	}
	api := c.API()
	if api.APIServer != "http://fixed:8008" || api.VerifyCertificate {
		t.Errorf("API() = %+v", api)
	}
	if got, _ := c.String("agent.git_user"); got != "alice" {
		t.Errorf("git_user = %q (braced root file)", got)
	}
	if !c.Agent().CPUOnly {
		t.Errorf("CPUOnly false, want true")
	}
	if got := c.Origin("api.api_server"); got != "env CLEARML_API_HOST" {
		t.Errorf("origin = %q", got)
	}
}

func TestOverrideOrderSorted(t *testing.T) {
	// AGENT__X (whole object) sorts before AGENT__X__Y, so the leaf wins.
	c := load(t, "testdata/braced.conf",
		"CLEARML_AGENT__AGENT__DEFAULT_DOCKER__IMAGE=\"leaf\"",
		`CLEARML_AGENT__AGENT__DEFAULT_DOCKER={image: "obj", arguments: ["-x"]}`)
	if got, _ := c.String("agent.default_docker.image"); got != "leaf" {
		t.Errorf("image = %q, want leaf", got)
	}
	if got, _ := c.Strings("agent.default_docker.arguments"); !cmp.Equal(got, []string{"-x"}) {
		t.Errorf("arguments = %q", got)
	}
}

func TestBadOverride(t *testing.T) {
	for _, raw := range []string{"--ipc=host [", "http://h/x?a=1", "[1, 2"} {
		_, err := Load(LoadOptions{File: "testdata/braced.conf", Env: []string{"CLEARML_AGENT__AGENT__X=" + raw}})
		if err == nil || !strings.Contains(err.Error(), "CLEARML_AGENT__AGENT__X") || !strings.Contains(err.Error(), "quote") {
			t.Errorf("value %q: err = %v, want one naming the variable and suggesting quoting", raw, err)
		}
	}
}

func TestSyntaxErrors(t *testing.T) {
	cases := map[string]string{
		"testdata/bad.conf":      "testdata/bad.conf:10:1: unexpected '}'",
		"testdata/unclosed.conf": "testdata/unclosed.conf:4:1: unexpected end of file: '{' opened at 1:5",
	}
	for f, want := range cases {
		_, err := Load(LoadOptions{File: f, Env: []string{}})
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Load(%s) err = %v, want prefix %q", f, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
	}
}

func TestLibraryErrorPosition(t *testing.T) {
	_, _, err := parseRaw("x.conf", "a: 1\nb: [1, 2]\nb += 3\nc: 1\nc += 2\n")
	if err == nil || !strings.HasPrefix(err.Error(), "x.conf:5:") {
		t.Errorf("err = %v, want x.conf:5:...", err)
	}
}

func TestFileChoice(t *testing.T) {
	home := t.TempDir()
	c, err := Load(LoadOptions{Env: []string{}, Home: home})
	if err != nil || c.File() != "" {
		t.Fatalf("no file: %v %q", err, c.File())
	}
	if got, _ := c.String("agent.package_manager.type"); got != "pip" {
		t.Errorf("defaults only: type = %q", got)
	}
	os.WriteFile(filepath.Join(home, "trains.conf"), []byte("agent.git_user: trains\n"), 0o600)
	c, _ = Load(LoadOptions{Env: []string{}, Home: home})
	if got, _ := c.String("agent.git_user"); got != "trains" || c.File() != filepath.Join(home, "trains.conf") {
		t.Errorf("trains.conf: %q from %q", got, c.File())
	}
	os.WriteFile(filepath.Join(home, "clearml.conf"), []byte("agent.git_user: clearml\n"), 0o600)
	c, _ = Load(LoadOptions{Env: []string{}, Home: home})
	if got, _ := c.String("agent.git_user"); got != "clearml" {
		t.Errorf("clearml.conf should win over trains.conf: %q", got)
	}
	other := filepath.Join(home, "other.conf")
	os.WriteFile(other, []byte("agent.git_user: other\n"), 0o600)
	c, _ = Load(LoadOptions{Env: []string{"CLEARML_CONFIG_FILE=" + other}, Home: home})
	if got, _ := c.String("agent.git_user"); got != "other" {
		t.Errorf("CLEARML_CONFIG_FILE: %q", got)
	}
	_, err = Load(LoadOptions{File: filepath.Join(home, "missing.conf"), Env: []string{}, Home: home})
	if err == nil || !strings.Contains(err.Error(), "missing.conf") {
		t.Errorf("missing --config-file: %v", err)
	}
}

func TestRequiredSubstitutionMissing(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.conf")
	os.WriteFile(f, []byte("agent.venvs_dir: ${NOPE_NOT_SET}/x\n"), 0o600)
	_, err := Load(LoadOptions{File: f, Env: []string{}})
	if err == nil || !strings.Contains(err.Error(), "NOPE_NOT_SET") || !strings.Contains(err.Error(), "c.conf:1") {
		t.Errorf("err = %v", err)
	}
	c, err := Load(LoadOptions{File: f, Env: []string{"NOPE_NOT_SET=/e"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.String("agent.venvs_dir"); got != "/e/x" {
		t.Errorf("venvs_dir = %q", got)
	}
}

func TestJSONAndMasking(t *testing.T) {
	c := load(t, "testdata/real.conf")
	masked, err := ToJSON(c, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "s3cr3t", "ABCDEFGHIJ1234567890"} {
		if strings.Contains(string(masked), secret) {
			t.Errorf("masked JSON contains %q", secret)
		}
	}
	if !strings.Contains(string(masked), `"AB****90"`) {
		t.Errorf("access key not partially shown: %s", masked)
	}
	shown, _ := ToJSON(c, true)
	if !strings.Contains(string(shown), "hunter2") {
		t.Errorf("--show-secrets JSON lacks the secret")
	}
	if got := c.Display("agent.git_pass", false); got != "****" {
		t.Errorf("Display git_pass = %q", got)
	}
}

func TestPackageManagerSettings(t *testing.T) {
	pm := load(t, "testdata/braced.conf").Agent().PackageManager
	want := PackageManager{Type: "pip", PipVersion: nil, PriorityPackages: []string{"cython", "numpy", "setuptools", "pip", "uv"},
		PriorityOptionalPackages: []string{"pygobject"}, InstallTimeout: 30 * time.Minute}
	if diff := cmp.Diff(want, pm, cmp.Comparer(func(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") })); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	pm = load(t, "testdata/braced.conf",
		"CLEARML_AGENT__AGENT__PACKAGE_MANAGER__TYPE=poetry",
		`CLEARML_AGENT__AGENT__PACKAGE_MANAGER__PIP_VERSION="<24"`,
		`CLEARML_AGENT__AGENT__PACKAGE_MANAGER__PRIORITY_PACKAGES=["numpy", "torch"]`,
		`CLEARML_AGENT__AGENT__PACKAGE_MANAGER__PRIORITY_OPTIONAL_PACKAGES=[]`,
		"CLEARML_AGENT__AGENT__PACKAGE_MANAGER__FORCE_REPO_REQUIREMENTS_TXT=true",
		"CLEARML_AGENT__AGENT__PACKAGE_MANAGER__FORCE_ORIGINAL_REQUIREMENTS=true",
		`CLEARML_AGENT__AGENT__PACKAGE_MANAGER__POETRY_INSTALL_EXTRA_ARGS=["--only", "main"]`,
		"CLEARML_AGENT__AGENT__PACKAGE_MANAGER__INSTALL_TIMEOUT_SEC=90",
	).Agent().PackageManager
	want = PackageManager{Type: "poetry", PipVersion: []string{"<24"}, PriorityPackages: []string{"numpy", "torch"},
		ForceRepoRequirementsTxt: true, ForceOriginalRequirements: true, PoetryInstallExtraArgs: []string{"--only", "main"},
		InstallTimeout: 90 * time.Second}
	if diff := cmp.Diff(want, pm, cmp.Comparer(func(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") })); diff != "" {
		t.Errorf("overridden (-want +got):\n%s", diff)
	}
	if got := load(t, "testdata/braced.conf").Agent().GitTimeout; got != 10*time.Minute {
		t.Errorf("agent.git_timeout_sec default = %s, want 10m0s", got)
	}
	if got := load(t, "testdata/braced.conf", "CLEARML_AGENT__AGENT__GIT_TIMEOUT_SEC=0").Agent().GitTimeout; got != 0 {
		t.Errorf("agent.git_timeout_sec=0 = %s, want 0 (no limit)", got)
	}
}
