package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPreprocessLeavesStringsAlone(t *testing.T) {
	src := "a: \"# not a comment // nor this, [x]\"\n" +
		"b: \"\"\"multi # keep\n// keep too\"\"\"\n" +
		"c: http://h/path#frag\n" +
		"d: [ \"x # y\", // c\n  z ]\n" +
		"e: \"ends with quote\\\"\"\n" +
		"f: -1\n" +
		"g: TRUE\n"
	_, tree, err := parseRaw("t.conf", src)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Value{
		"a": "# not a comment // nor this, [x]",
		"b": "multi # keep\n// keep too",
		"c": "http://h/path",
		"d": []Value{"x # y", "z"},
		"e": "ends with quote\"",
		"f": int64(-1),
		"g": true,
	}
	if diff := cmp.Diff(want, tree); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
}

func TestRenderRoundTrip(t *testing.T) {
	data := Render(
		APIWriteSettings{APIServer: "https://api.example.com", WebServer: "https://app.example.com", FilesServer: "http://files.example.com:8081", AccessKey: "KEY123", SecretKey: `se"cret\`},
		AgentWriteSettings{GitUser: "bob", GitPass: "tok", ExtraIndexURLs: []string{"https://a/simple", "https://b/simple?x=1"}, DefaultOutputURI: "s3://bucket/out",
			Extra: map[string]any{"worker_name": "w", "default_docker.image": "img:1", "abort_grace_period_sec": 15, "cpu_only": true}},
	)
	if !strings.HasPrefix(string(data), "# CLEARML-AGENT configuration file\napi {\n") || !strings.Contains(string(data), "api_server: https://api.example.com\n") {
		t.Errorf("unexpected render:\n%s", data)
	}
	f := filepath.Join(t.TempDir(), "clearml.conf")
	if err := WriteFileAtomic(f, data, 0o600, -1, -1); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(f)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", st.Mode())
	}
	c, err := Load(LoadOptions{File: f, Env: []string{}})
	if err != nil {
		t.Fatalf("rendered file does not load: %v\n%s", err, data)
	}
	api := c.API()
	if diff := cmp.Diff(APISettings{APIServer: "https://api.example.com", WebServer: "https://app.example.com", FilesServer: "http://files.example.com:8081",
		AccessKey: "KEY123", SecretKey: `se"cret\`, VerifyCertificate: true, DefaultMethod: "get", TokenExpirationThreshold: api.TokenExpirationThreshold}, api); diff != "" {
		t.Errorf("API (-want +got):\n%s", diff)
	}
	a := c.Agent()
	if a.GitUser != "bob" || a.GitPass != "tok" || a.WorkerName != "w" || a.DefaultDocker.Image != "img:1" || !a.CPUOnly || a.AbortGracePeriod.Seconds() != 15 {
		t.Errorf("agent = %+v", a)
	}
	if diff := cmp.Diff([]string{"https://a/simple", "https://b/simple?x=1"}, a.PackageManager.ExtraIndexURL); diff != "" {
		t.Errorf("extra_index_url (-want +got):\n%s", diff)
	}
	if got, _ := c.String("sdk.development.default_output_uri"); got != "s3://bucket/out" {
		t.Errorf("output uri = %q", got)
	}
}

const existingConf = `# my sdk config
api {
    web_server: https://app.clear.ml
    api_server: https://api.clear.ml
    credentials {"access_key": "K", "secret_key": "S"}
}
agent.git_user: "old"
sdk { development { default_output_uri: "" } }
`

func TestMergeAgentSection(t *testing.T) {
	keys := map[string]any{"git_user": "new", "package_manager.extra_index_url": []string{"https://x/simple"}, "worker_name": "gpu:0"}
	out, err := MergeAgentSection("clearml.conf", []byte(existingConf), keys)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), existingConf) {
		t.Errorf("existing content changed:\n%s", out)
	}
	// A re-run replaces the managed block instead of adding another.
	again, err := MergeAgentSection("clearml.conf", out, map[string]any{"git_user": "newer"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(again), managedBegin) != 1 || !strings.HasPrefix(string(again), existingConf) {
		t.Errorf("re-run:\n%s", again)
	}
	f := filepath.Join(t.TempDir(), "clearml.conf")
	os.WriteFile(f, out, 0o600)
	c, err := Load(LoadOptions{File: f, Env: []string{}})
	if err != nil {
		t.Fatalf("merged file does not load: %v\n%s", err, out)
	}
	if got, _ := c.String("agent.git_user"); got != "new" {
		t.Errorf("git_user = %q", got)
	}
	if got, _ := c.String("api.credentials.secret_key"); got != "S" {
		t.Errorf("secret_key = %q", got)
	}
	if got, _ := c.Strings("agent.package_manager.extra_index_url"); !cmp.Equal(got, []string{"https://x/simple"}) {
		t.Errorf("extra_index_url = %q", got)
	}

	braced := "{\n  api { api_server: \"http://h:8008\" }\n}\n"
	out, err = MergeAgentSection("b.conf", []byte(braced), map[string]any{"git_user": "u"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(f, out, 0o600)
	c, err = Load(LoadOptions{File: f, Env: []string{}})
	if err != nil {
		t.Fatalf("braced merge does not load: %v\n%s", err, out)
	}
	if got, _ := c.String("agent.git_user"); got != "u" {
		t.Errorf("braced git_user = %q", got)
	}
}

func TestMergeRefusesBrokenFile(t *testing.T) {
	_, err := MergeAgentSection("/etc/clearml.conf", []byte("api {\n  api_server: x\n}\n}\n"), map[string]any{"git_user": "u"})
	if err == nil || !strings.HasPrefix(err.Error(), "/etc/clearml.conf:4:1: unexpected '}'") {
		t.Errorf("err = %v", err)
	}
}
