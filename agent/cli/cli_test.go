package cli

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/config"
)

// loginServer is a ClearML auth.login endpoint accepting one key pair.
func loginServer(t *testing.T, key, secret string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/auth.login" {
			http.NotFound(w, r)
			return
		}
		k, s, ok := r.BasicAuth()
		if !ok || k != key || s != secret {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]any{"meta": map[string]any{"result_code": 401, "result_msg": "Unauthorized (invalid credentials)"}})
			return
		}
		claims, _ := json.Marshal(map[string]any{"server_version": "2.3.0", "api_version": "2.34", "feature_set": "basic"})
		tok := "eyJhbGciOiJIUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(claims) + ".sig"
		json.NewEncoder(w).Encode(map[string]any{"meta": map[string]any{"result_code": 200}, "data": map[string]any{"token": tok}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func runCLI(t *testing.T, stdin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb, env)
	return code, out.String(), errb.String()
}

func TestInitWizard(t *testing.T) {
	srv := loginServer(t, "AKEY1234567890", "SECRET")
	home := t.TempDir()
	pasted := "api {\n  web_server: " + srv.URL + "\n  api_server: " + srv.URL + "\n  files_server: http://127.0.0.1:8081\n" +
		"  credentials {\n    \"access_key\" = \"AKEY1234567890\"\n    \"secret_key\"  = \"SECRET\"\n  }\n}\n"
	answers := "\n\n\n" + // accept web, api, files
		"s\n" + // output URI: files server
		"bob\ntoken123\n" + // git
		"https://pypi.internal/simple\nhttps://b/simple\n\n"
	code, out, stderr := runCLI(t, pasted+answers, []string{"HOME=" + home}, "init")
	if code != 0 {
		t.Fatalf("init exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, want := range []string{
		"Paste copied configuration here:",
		`Detected credentials key="**************" secret="******"`,
		"CLEARML Hosts configuration:\nWeb App: " + srv.URL + "\nAPI: " + srv.URL + "\nFile Store: http://127.0.0.1:8081\n",
		"Credentials verified!",
		"Git repository cloning will be using user=bob password=********",
		"New configuration stored in " + filepath.Join(home, "clearml.conf"),
		"CLEARML-AGENT setup completed successfully.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "token123") || strings.Contains(out, "SECRET\"") {
		t.Errorf("stdout shows a secret:\n%s", out)
	}
	path := filepath.Join(home, "clearml.conf")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("written file: %v %v", err, st)
	}
	cfg, err := config.Load(config.LoadOptions{Env: []string{}, Home: home})
	if err != nil {
		t.Fatal(err)
	}
	api, agent := cfg.API(), cfg.Agent()
	if api.APIServer != srv.URL || api.AccessKey != "AKEY1234567890" || api.SecretKey != "SECRET" || api.FilesServer != "http://127.0.0.1:8081" {
		t.Errorf("api = %+v", api)
	}
	if agent.GitUser != "bob" || agent.GitPass != "token123" {
		t.Errorf("git = %q %q", agent.GitUser, agent.GitPass)
	}
	if diff := cmp.Diff([]string{"https://pypi.internal/simple", "https://b/simple"}, agent.PackageManager.ExtraIndexURL); diff != "" {
		t.Errorf("extra_index_url (-want +got):\n%s", diff)
	}
	if got, _ := cfg.String("sdk.development.default_output_uri"); got != "http://127.0.0.1:8081" {
		t.Errorf("output uri = %q", got)
	}

	// A second run refuses and leaves the file alone.
	before, _ := os.ReadFile(path)
	code, _, stderr = runCLI(t, pasted+answers, []string{"HOME=" + home}, "init")
	after, _ := os.ReadFile(path)
	if code != 1 || !strings.Contains(stderr, "Configuration file already exists: "+path) || !bytes.Equal(before, after) {
		t.Errorf("second init: code %d stderr %q changed=%v", code, stderr, !bytes.Equal(before, after))
	}
}

func TestInitWizardBadCredentials(t *testing.T) {
	srv := loginServer(t, "K", "S")
	home := t.TempDir()
	in := "not a config\n}\nWRONG\nWRONG\n" + srv.URL + "\n\n\n"
	code, out, stderr := runCLI(t, in, []string{"HOME=" + home}, "init")
	if code != 1 || !strings.Contains(out, "Could not parse credentials") || !strings.Contains(out, "rejected the credentials") ||
		!strings.Contains(stderr, "Exiting setup without creating configuration file") {
		t.Errorf("code %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	if strings.Count(out, "Verifying credentials") != 2 {
		t.Errorf("want 2 tries:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(home, "clearml.conf")); err == nil {
		t.Errorf("file written after failed verification")
	}
}

func TestInitNonInteractive(t *testing.T) {
	srv := loginServer(t, "K", "S")
	dir := t.TempDir()
	target := filepath.Join(dir, "sub", "agent.conf")
	env := []string{"HOME=" + dir, "CLEARML_API_ACCESS_KEY=K", "CLEARML_API_SECRET_KEY=S", "CLEARML_AGENT_GIT_USER=gu"}
	code, out, stderr := runCLI(t, "", env, "--config-file", target, "init", "--non-interactive", "--api-host", srv.URL,
		"--extra-index-url", "https://x/simple", "--output-uri", "s3://b/p")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, stderr)
	}
	cfg, err := config.Load(config.LoadOptions{File: target, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.API(); a.APIServer != srv.URL || a.AccessKey != "K" || a.WebServer != srv.URL {
		t.Errorf("api = %+v", a)
	}
	if cfg.Agent().GitUser != "gu" {
		t.Errorf("git user = %q", cfg.Agent().GitUser)
	}

	// http to a non-loopback host warns; --no-verify skips the login.
	target2 := filepath.Join(dir, "two.conf")
	code, _, stderr = runCLI(t, "", env, "--config-file", target2, "init", "--non-interactive", "--api-host", "http://10.1.2.3:8008", "--no-verify")
	if code != 0 || !strings.Contains(stderr, "Warning: http://10.1.2.3:8080 uses http") {
		t.Errorf("code %d stderr %q", code, stderr)
	}
	cfg, _ = config.Load(config.LoadOptions{File: target2, Env: []string{}})
	if a := cfg.API(); a.WebServer != "http://10.1.2.3:8080" || a.FilesServer != "http://10.1.2.3:8081" {
		t.Errorf("derived hosts = %+v", a)
	}
}

// init --credentials-file reads the key pair from a 0600 file instead of
// flags that show in ps; a file others can read is refused in one line.
func TestInitCredentialsFile(t *testing.T) {
	srv := loginServer(t, "K", "S")
	dir := t.TempDir()
	creds := filepath.Join(dir, "creds.env")
	if err := os.WriteFile(creds, []byte("# from the vault\nCLEARML_API_ACCESS_KEY=K\nCLEARML_API_SECRET_KEY=\"S\"\nCLEARML_AGENT_GIT_PASS=tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "agent.conf")
	code, out, stderr := runCLI(t, "", []string{"HOME=" + dir}, "--config-file", target, "init", "--non-interactive",
		"--api-host", srv.URL, "--credentials-file", creds)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, stderr)
	}
	cfg, err := config.Load(config.LoadOptions{File: target, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.API(); a.AccessKey != "K" || a.SecretKey != "S" || cfg.Agent().GitPass != "tok" {
		t.Errorf("api %+v, git pass %q", a, cfg.Agent().GitPass)
	}
	if err := os.Chmod(creds, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "", []string{"HOME=" + dir}, "--config-file", filepath.Join(dir, "two.conf"), "init",
		"--non-interactive", "--api-host", srv.URL, "--credentials-file", creds)
	if code == 0 || !strings.Contains(stderr, "chmod 600 "+creds) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("mode 0644: code %d stderr %q, want one line with the chmod fix", code, stderr)
	}
}

func TestConfigCommand(t *testing.T) {
	srv := loginServer(t, "ACCESSKEY123", "SECRETVALUE")
	dir := t.TempDir()
	f := filepath.Join(dir, "clearml.conf")
	os.WriteFile(f, []byte("api {\n  api_server: "+srv.URL+"\n  credentials { access_key: ACCESSKEY123, secret_key: SECRETVALUE }\n}\nagent.git_pass: pw\n"), 0o600)
	env := []string{"HOME=" + dir, "CLEARML_AGENT__AGENT__WORKER_NAME=\"w1\""}

	code, out, _ := runCLI(t, "", env, "config", "--origin")
	if code != 0 || !strings.HasPrefix(out, "Current configuration (clearml_agent v"+Version+", location: "+f+"):\n") {
		t.Fatalf("code %d out:\n%s", code, out)
	}
	for _, want := range []string{
		"api.api_server = " + srv.URL + "  # " + f + ":2\n",
		"api.credentials.secret_key = ****  # " + f + ":3\n",
		"api.credentials.access_key = AC****23",
		"agent.git_pass = ****",
		"agent.worker_name = w1  # env CLEARML_AGENT__AGENT__WORKER_NAME\n",
		"agent.venvs_cache.max_entries = 10  # default\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config output lacks %q", want)
		}
	}
	if strings.Contains(out, "SECRETVALUE") || strings.Contains(out, "= pw") {
		t.Errorf("secret printed:\n%s", out)
	}

	_, out, _ = runCLI(t, "", env, "config", "--json")
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil || strings.Contains(out, "SECRETVALUE") {
		t.Errorf("--json: %v\n%s", err, out)
	}
	_, out, _ = runCLI(t, "", env, "config", "--json", "--show-secrets")
	if !strings.Contains(out, "SECRETVALUE") {
		t.Errorf("--show-secrets lacks the secret")
	}

	code, out, _ = runCLI(t, "", env, "config", "--verify")
	if code != 0 || out != "Credentials verified for "+srv.URL+" (server 2.3.0, API 2.34)\n" {
		t.Errorf("--verify: %d %q", code, out)
	}

	// A server that is down: one clear line, exit 1.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + l.Addr().String()
	l.Close()
	code, out, stderr := runCLI(t, "", append(env, "CLEARML_API_HOST="+down), "config", "--verify")
	if code != 1 || out != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "cannot reach the API server "+down) {
		t.Errorf("down server: code %d stdout %q stderr %q", code, out, stderr)
	}
	// Missing credentials.
	os.WriteFile(f, []byte("api.api_server: "+srv.URL+"\n"), 0o600)
	code, _, stderr = runCLI(t, "", env, "config", "--verify")
	if code != 1 || !strings.Contains(stderr, "no credentials") {
		t.Errorf("no credentials: %d %q", code, stderr)
	}
	// A syntax error names the file, line and column.
	os.WriteFile(f, []byte("api {\n  x: 1\n}\n}\n"), 0o600)
	code, _, stderr = runCLI(t, "", env, "config")
	if code != 1 || !strings.Contains(stderr, f+":4:1: unexpected '}'") {
		t.Errorf("syntax error: %d %q", code, stderr)
	}
}

func TestGlobalFlags(t *testing.T) {
	code, out, _ := runCLI(t, "", nil, "--version")
	if code != 0 || out != Version+"\n" {
		t.Errorf("--version: %d %q", code, out)
	}
	code, _, stderr := runCLI(t, "", []string{}, "--config-file", "/does/not/exist.conf", "config")
	if code != 2 || !strings.Contains(stderr, "/does/not/exist.conf") {
		t.Errorf("missing --config-file: %d %q", code, stderr)
	}
}
