package provision

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gpufleet/clearml-agent-go/provision/systemd"
	"github.com/gpufleet/clearml-agent-go/provision/systemd/systemdtest"
	"github.com/gpufleet/clearml-agent-go/unitgen"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func baseInputs(root string) Inputs {
	return Inputs{
		APIHost: "http://127.0.0.1:8008", WebHost: "http://127.0.0.1:8080", FilesHost: "http://127.0.0.1:8081",
		AccessKey: "AKEY", SecretKey: "SECRETVALUE", GitUser: "bot", GitPass: "gitpassword",
		ExtraIndexURLs: []string{"http://pypi.local/simple"},
		GPUs:           "0,1", ServicesAgent: true, Queues: []string{"gpu"}, Hostname: "box",
		SystemRoot: root,
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func fakeHost(m systemd.Manager) Host {
	return Host{
		Manager:    m,
		Euid:       func() int { return 0 },
		EnsureUser: func(context.Context, string, string) (int, int, error) { return os.Getuid(), os.Getgid(), nil },
	}
}

func mustPlan(t *testing.T, in Inputs) *Plan {
	t.Helper()
	p, err := NewPlan(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanGolden(t *testing.T) {
	root := t.TempDir()
	in := baseInputs("")
	in.Root = root
	in.Hostname = ""
	p := mustPlan(t, in)
	got := strings.ReplaceAll(p.String(), root, "ROOT")
	if strings.Contains(got, "SECRETVALUE") || strings.Contains(got, "gitpassword") {
		t.Errorf("plan shows a credential:\n%s", got)
	}
	golden(t, "plan_fresh.golden", got)

	// Changing one agent's queues touches only its environment file.
	if _, err := Apply(t.Context(), p, Host{EnsureUser: EnsureUser}); err != nil {
		t.Fatal(err)
	}
	in.AgentQueues = map[string][]string{"gpu1": {"gpu", "urgent"}}
	golden(t, "plan_gpu1_queues.golden", strings.ReplaceAll(mustPlan(t, in).String(), root, "ROOT"))
}

// TestRootLayout applies into an image root and checks the layout with the
// real systemd-analyze verify (any output fails: it exits 0 on typos).
func TestRootLayout(t *testing.T) {
	root := t.TempDir()
	in := baseInputs("")
	in.Root, in.Hostname, in.AccessKey, in.SecretKey, in.FirstBootCreds = root, "", "", "", true
	p := mustPlan(t, in)
	if _, err := Apply(t.Context(), p, Host{EnsureUser: EnsureUser, Euid: func() int { return 1000 }}); err != nil {
		t.Fatal(err)
	}
	for link, want := range map[string]string{
		"etc/systemd/system/multi-user.target.wants/clearml-agents.target":              "/etc/systemd/system/clearml-agents.target",
		"etc/systemd/system/clearml-agents.target.wants/clearml-agent@gpu0.service":     "/etc/systemd/system/clearml-agent@.service",
		"etc/systemd/system/clearml-agents.target.wants/clearml-agent@services.service": "/etc/systemd/system/clearml-agent@.service",
	} {
		if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != want {
			t.Errorf("%s -> %q, %v; want %s", link, got, err, want)
		}
	}
	conf := filepath.Join(root, "etc/clearml-agent/clearml.conf")
	if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("clearml.conf: %v, %v; want mode 0600", fi, err)
	}
	if again := mustPlan(t, in); again.Changed() {
		t.Errorf("second plan is not a no-op:\n%s", again)
	}

	// First boot fills the credentials in, once.
	credsFile := filepath.Join(t.TempDir(), "creds")
	os.WriteFile(credsFile, []byte("CLEARML_API_ACCESS_KEY=AK2\nCLEARML_API_SECRET_KEY=\"S K2\"\n"), 0o600)
	if wrote, err := FirstBoot(conf, map[string]string{}, credsFile); err != nil || !wrote {
		t.Fatalf("FirstBoot = %v, %v", wrote, err)
	}
	data, _ := os.ReadFile(conf)
	if !strings.Contains(string(data), `credentials {"access_key": "AK2", "secret_key": "S K2"}`) {
		t.Errorf("conf after first boot:\n%s", data)
	}
	if wrote, err := FirstBoot(conf, map[string]string{EnvAccessKey: "x", EnvSecretKey: "y"}, ""); err != nil || wrote {
		t.Errorf("second FirstBoot = %v, %v; want no write", wrote, err)
	}

	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install -y systemd)")
	}
	// What the units reference but an empty root lacks.
	script := []byte("#!/bin/sh\nexit 0\n")
	stubs := map[string][]byte{"usr/local/bin/clearml-agent": script, "bin/kill": script}
	for _, u := range []string{"sysinit.target", "basic.target", "shutdown.target", "network-online.target", "multi-user.target"} {
		stubs["usr/lib/systemd/system/"+u] = []byte("[Unit]\nDescription=stub\n")
	}
	for rel, data := range stubs {
		os.MkdirAll(filepath.Dir(filepath.Join(root, rel)), 0o755)
		mode := os.FileMode(0o644)
		if strings.Contains(rel, "bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(root, rel), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	units := []string{unitgen.TargetName, "clearml-agent@gpu0.service", "clearml-agent@gpu1.service", "clearml-agent@services.service"}
	out, err := exec.CommandContext(t.Context(), bin, append([]string{"verify", "--man=no", "--root=" + root}, units...)...).CombinedOutput()
	if len(out) > 0 || err != nil {
		t.Errorf("systemd-analyze verify --root: %v\n%s", err, out)
	}

	// Remove under the root leaves only the stubs and the kept config.
	if _, err := Remove(t.Context(), RemoveOptions{Root: root}, Host{}); err != nil {
		t.Fatal(err)
	}
	var left []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		rel, _ := filepath.Rel(root, p)
		if err == nil && !fi.IsDir() && stubs[rel] == nil {
			left = append(left, rel)
		}
		return nil
	})
	if diff := cmp.Diff([]string{"etc/clearml-agent/clearml.conf"}, left); diff != "" {
		t.Errorf("left after remove (-want +got):\n%s", diff)
	}
}

func TestBadInput(t *testing.T) {
	root := t.TempDir()
	notDir := filepath.Join(root, "file")
	os.WriteFile(notDir, nil, 0o644)
	badConfRoot := t.TempDir()
	badConf := filepath.Join(badConfRoot, "etc/clearml-agent/clearml.conf")
	os.MkdirAll(filepath.Dir(badConf), 0o755)
	badText := "api {\n  api_server: http://x\n  credentials { access_key: \"a\"\n}\nagent {{\n"
	os.WriteFile(badConf, []byte(badText), 0o600)

	for _, tc := range []struct {
		name string
		mod  func(*Inputs)
		want string
	}{
		{"empty gpu id", func(in *Inputs) { in.GPUs = "0,,1" }, `--gpus "0,,1": empty GPU id at position 2`},
		{"negative gpu", func(in *Inputs) { in.GPUs = "-1" }, `--gpus "-1"`},
		{"letter gpu", func(in *Inputs) { in.GPUs = "a" }, `--gpus "a"`},
		{"gpu in two agents", func(in *Inputs) { in.GPUs = "0,1+1,2" }, `--gpus "0,1+1,2"`},
		{"all without nvml", func(in *Inputs) { in.GPUs = "all" }, "NVML not found"},
		{"missing creds", func(in *Inputs) { in.AccessKey, in.SecretKey = "", "" }, "credentials missing"},
		{"half creds", func(in *Inputs) { in.SecretKey = "" }, "give both --access-key and --secret-key"},
		{"root is a file", func(in *Inputs) { in.Root, in.SystemRoot = notDir, "" }, "not a directory"},
		{"root missing", func(in *Inputs) { in.Root, in.SystemRoot = filepath.Join(root, "nope"), "" }, "create the image root first"},
		{"nothing", func(in *Inputs) { in.GPUs, in.ServicesAgent = "", false }, "nothing to provision"},
		{"unknown agent queues", func(in *Inputs) { in.AgentQueues = map[string][]string{"gpu7": {"q"}} }, `no agent named "gpu7"`},
		{"conf syntax", func(in *Inputs) { in.SystemRoot = badConfRoot }, badConf + ":5"},
		{"negative cpu agents", func(in *Inputs) { in.CPUAgents = -1 }, "--cpu-agents -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInputs(root)
			tc.mod(&in)
			_, err := NewPlan(in, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("NewPlan error = %v; want one line containing %q", err, tc.want)
			}
		})
	}
	if data, _ := os.ReadFile(badConf); string(data) != badText {
		t.Errorf("broken clearml.conf was modified:\n%s", data)
	}

	// Not root when root is needed.
	p := mustPlan(t, baseInputs(root))
	h := fakeHost(&systemdtest.Fake{})
	h.Euid = func() int { return 1000 }
	if _, err := Apply(t.Context(), p, h); !errors.Is(err, ErrNotRoot) || strings.Contains(err.Error(), "\n") {
		t.Errorf("Apply as non-root = %v, want one-line ErrNotRoot", err)
	}
}

func since(f *systemdtest.Fake, n int) []string {
	return append([]string(nil), f.Calls[n:]...)
}

func TestApplyFake(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	in := baseInputs(root)
	fake := &systemdtest.Fake{Ready: "polling queue gpu"}
	h := fakeHost(fake)

	res, err := Apply(ctx, mustPlan(t, in), h)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"daemon-reload", "enable clearml-agents.target", "enable clearml-agent@gpu0.service",
		"enable clearml-agent@gpu1.service", "enable clearml-agent@services.service",
		"start clearml-agent@gpu0.service", "start clearml-agent@gpu1.service", "start clearml-agent@services.service",
		"start clearml-agents.target"}
	if diff := cmp.Diff(want, fake.Calls); diff != "" {
		t.Errorf("first apply calls (-want +got):\n%s", diff)
	}
	if len(res.States) != 3 || res.States[0].StatusText != "polling queue gpu" {
		t.Errorf("states = %+v", res.States)
	}
	conf := filepath.Join(root, "etc/clearml-agent/clearml.conf")
	if fi, err := os.Stat(conf); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("conf mode: %v %v", fi, err)
	}

	// Same inputs: nothing written, nothing (re)started.
	n := len(fake.Calls)
	p := mustPlan(t, in)
	if p.Changed() {
		t.Errorf("re-plan changed:\n%s", p)
	}
	if res, err := Apply(ctx, p, h); err != nil || len(res.Written) != 0 {
		t.Fatalf("re-apply = %+v, %v", res, err)
	}
	if got := since(fake, n); len(got) != 0 {
		t.Errorf("re-apply calls = %v, want none", got)
	}

	// One agent's queues change: only it restarts.
	n = len(fake.Calls)
	in.AgentQueues = map[string][]string{"gpu1": {"gpu", "urgent"}}
	if _, err := Apply(ctx, mustPlan(t, in), h); err != nil {
		t.Fatal(err)
	}
	want = []string{"daemon-reload", "enable clearml-agents.target", "enable clearml-agent@gpu0.service",
		"enable clearml-agent@gpu1.service", "enable clearml-agent@services.service",
		"restart clearml-agent@gpu1.service", "start clearml-agents.target"}
	if diff := cmp.Diff(want, since(fake, n)); diff != "" {
		t.Errorf("changed-queue calls (-want +got):\n%s", diff)
	}

	// The services agent is no longer wanted: stopped, disabled, file removed.
	n = len(fake.Calls)
	in.ServicesAgent = false
	res, err = Apply(ctx, mustPlan(t, in), h)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"stop clearml-agent@services.service", "disable clearml-agent@services.service", "daemon-reload",
		"enable clearml-agents.target", "enable clearml-agent@gpu0.service", "enable clearml-agent@gpu1.service",
		"start clearml-agents.target"}
	if diff := cmp.Diff(want, since(fake, n)); diff != "" {
		t.Errorf("removal calls (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/clearml-agent/agents/services.env")); !os.IsNotExist(err) {
		t.Errorf("services.env still there: %v", err)
	}

	// Status joins env files and unit states.
	rows, err := Status(ctx, fake, root)
	if err != nil {
		t.Fatal(err)
	}
	table := FormatStatus(rows, time.Now())
	for _, w := range []string{"clearml-agent@gpu1.service", "gpu,urgent", "box:gpu1", "active/running", "polling queue gpu"} {
		if !strings.Contains(table, w) {
			t.Errorf("status table lacks %q:\n%s", w, table)
		}
	}
	t.Logf("status:\n%s", table)

	// Remove: stop, disable, delete everything but the config.
	n = len(fake.Calls)
	if _, err := Remove(ctx, RemoveOptions{SystemRoot: root}, fakeHost(fake)); err != nil {
		t.Fatal(err)
	}
	want = []string{"stop clearml-agents.target", "stop clearml-agent@gpu0.service", "stop clearml-agent@gpu1.service",
		"stop clearml-agent@services.service", "disable clearml-agents.target", "disable clearml-agent@gpu0.service",
		"disable clearml-agent@gpu1.service", "disable clearml-agent@services.service", "daemon-reload"}
	if diff := cmp.Diff(want, since(fake, n)); diff != "" {
		t.Errorf("remove calls (-want +got):\n%s", diff)
	}
	var left []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(root, p)
			left = append(left, rel)
		}
		return nil
	})
	if diff := cmp.Diff([]string{"etc/clearml-agent/clearml.conf"}, left); diff != "" {
		t.Errorf("left after remove (-want +got):\n%s", diff)
	}
}

// failingReload makes daemon-reload fail, like a D-Bus connection lost.
type failingReload struct{ *systemdtest.Fake }

func (f failingReload) Reload(ctx context.Context) error {
	f.Fake.Reload(ctx)
	return fmt.Errorf("daemon-reload: connection closed")
}

func TestApplyDBusFailure(t *testing.T) {
	ctx := t.Context()
	files := func(root string) []string {
		var out []string
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				out = append(out, p)
			}
			return nil
		})
		return out
	}

	// Failure before anything started: the written files are rolled back.
	root := t.TempDir()
	res, err := Apply(ctx, mustPlan(t, baseInputs(root)), fakeHost(failingReload{&systemdtest.Fake{}}))
	if err == nil || !strings.Contains(err.Error(), "rolled back") || !res.RolledBack {
		t.Fatalf("Apply with failing reload = %v (rolled back %v)", err, res.RolledBack)
	}
	if left := files(root); len(left) != 0 {
		t.Errorf("files left after rollback: %v", left)
	}

	// An update rolled back restores the previous content.
	root = t.TempDir()
	fake := &systemdtest.Fake{}
	in := baseInputs(root)
	if _, err := Apply(ctx, mustPlan(t, in), fakeHost(fake)); err != nil {
		t.Fatal(err)
	}
	env := filepath.Join(root, "etc/clearml-agent/agents/gpu0.env")
	before, _ := os.ReadFile(env)
	in.AgentQueues = map[string][]string{"gpu0": {"other"}}
	fake.Fail = map[string]string{"clearml-agent@gpu0.service": "boom: cannot reach server"}
	_, err = Apply(ctx, mustPlan(t, in), fakeHost(fake))
	if err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("Apply with failing restart = %v", err)
	}
	if after, _ := os.ReadFile(env); string(after) != string(before) {
		t.Errorf("gpu0.env not restored:\n%s", after)
	}

	// Failure after one unit started: nothing rolled back, the rest reported.
	root = t.TempDir()
	fake = &systemdtest.Fake{Fail: map[string]string{"clearml-agent@gpu1.service": "boom"}}
	res, err = Apply(ctx, mustPlan(t, baseInputs(root)), fakeHost(fake))
	if err == nil || res.RolledBack {
		t.Fatalf("Apply = %v, rolled back %v", err, res.RolledBack)
	}
	for _, w := range []string{"already started: clearml-agent@gpu0.service", "written but not started: clearml-agent@gpu1.service, clearml-agent@services.service"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	// Re-running after the cause is fixed finishes the job.
	fake.Fail = nil
	n := len(fake.Calls)
	if _, err := Apply(ctx, mustPlan(t, baseInputs(root)), fakeHost(fake)); err != nil {
		t.Fatal(err)
	}
	want := []string{"enable clearml-agents.target", "enable clearml-agent@gpu0.service", "enable clearml-agent@gpu1.service",
		"enable clearml-agent@services.service", "start clearml-agent@gpu1.service", "start clearml-agent@services.service",
		"start clearml-agents.target"}
	if diff := cmp.Diff(want, since(fake, n)); diff != "" {
		t.Errorf("resume calls (-want +got):\n%s", diff)
	}
}

func TestMergeExistingConf(t *testing.T) {
	root := t.TempDir()
	conf := filepath.Join(root, "etc/clearml-agent/clearml.conf")
	os.MkdirAll(filepath.Dir(conf), 0o755)
	orig := "api {\n  api_server: https://mine.example\n  credentials {access_key: \"MINE\", secret_key: \"MYSECRET\"}\n}\n"
	os.WriteFile(conf, []byte(orig), 0o600)
	in := baseInputs(root)
	p := mustPlan(t, in)
	got := string(p.ConfigFile().New)
	if !strings.HasPrefix(got, orig) || !strings.Contains(got, `git_user: "bot"`) {
		t.Errorf("merged conf:\n%s", got)
	}
	if !strings.Contains(strings.Join(p.Warnings, "\n"), "api section (server and credentials) was kept") {
		t.Errorf("warnings = %q", p.Warnings)
	}
	if strings.Contains(p.String(), "gitpassword") {
		t.Errorf("plan shows git password:\n%s", p)
	}
}

func TestLineDiff(t *testing.T) {
	got := lineDiff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nD\ne\nf\ng\n")
	want := "@@ -2,5 +2,5 @@\n b\n c\n-d\n+D\n e\n f\n"
	if got != want {
		t.Errorf("lineDiff =\n%s\nwant\n%s", got, want)
	}
	// A removed line that starts with "--" is not taken for a file header.
	if got, want := lineDiff("-- x\ny\n", "y\n"), "@@ -1,2 +1 @@\n--- x\n y\n"; got != want {
		t.Errorf("lineDiff =\n%q\nwant\n%q", got, want)
	}
	if got := lineDiff("same\n", "same\n"); got != "" {
		t.Errorf("lineDiff of equal texts = %q, want empty", got)
	}
	if got, want := lineDiff("", "new\n"), "@@ -0,0 +1 @@\n+new\n"; got != want {
		t.Errorf("lineDiff of a new file = %q, want %q", got, want)
	}
}
