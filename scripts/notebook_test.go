package scripts

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
	"github.com/gpufleet/clearml-agent-go/internal/gittest"
)

// python is the python3 interpreter itself (not a shim that needs the caller's environment).
func python(t *testing.T) string {
	t.Helper()
	testenv.Need(t, "python3")
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func cellPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "scripts", "notebook_bootstrap.py")
}

// cell runs the notebook cell as a script with exactly env plus a fresh HOME and an empty PATH unless
// env sets them.
func cell(t *testing.T, env ...string) result {
	t.Helper()
	full := []string{"HOME=" + t.TempDir(), "PATH=" + t.TempDir(), "LANG=C.UTF-8"}
	return run(t, append(full, env...), t.TempDir(), python(t), cellPath(t))
}

var missingRE = regexp.MustCompile(`^clearml notebook: missing (.*); set them in the Secrets panel \(key icon on the left, notebook access on\) or as environment variables\n$`)

// TestNotebookNamesMissingSecrets: the cell stops with one line naming exactly what is missing.
func TestNotebookNamesMissingSecrets(t *testing.T) {
	bin := t.TempDir()
	for _, b := range []string{"agent-provision", "clearml-agent"} {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		env  []string
		want []string
	}{
		{"none", nil, []string{"CLEARML_API_HOST", "CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY",
			"CLEARML_AGENT_GO_BIN_DIR or CLEARML_AGENT_GO_URL with CLEARML_AGENT_GO_SHA256"}},
		{"keys missing", []string{"CLEARML_API_HOST=http://127.0.0.1:1", "CLEARML_AGENT_GO_BIN_DIR=" + bin},
			[]string{"CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY"}},
		{"blank secret", []string{"CLEARML_API_HOST=http://127.0.0.1:1", "CLEARML_API_ACCESS_KEY=k", "CLEARML_API_SECRET_KEY=  ",
			"CLEARML_AGENT_GO_BIN_DIR=" + bin}, []string{"CLEARML_API_SECRET_KEY"}},
		{"url without sha256", []string{"CLEARML_API_HOST=http://127.0.0.1:1", "CLEARML_API_ACCESS_KEY=k", "CLEARML_API_SECRET_KEY=s",
			"CLEARML_AGENT_GO_URL=http://127.0.0.1:1/x.tar.gz"}, []string{"CLEARML_AGENT_GO_SHA256 (the sha256 of CLEARML_AGENT_GO_URL)"}},
		{"no binaries", []string{"CLEARML_API_HOST=http://127.0.0.1:1", "CLEARML_API_ACCESS_KEY=k", "CLEARML_API_SECRET_KEY=s"},
			[]string{"CLEARML_AGENT_GO_BIN_DIR or CLEARML_AGENT_GO_URL with CLEARML_AGENT_GO_SHA256"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := cell(t, c.env...)
			if r.code != 1 || r.stdout != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", r.code, r.stdout)
			}
			m := missingRE.FindStringSubmatch(r.stderr)
			if m == nil {
				t.Fatalf("stderr is not the one missing-secrets line: %q", r.stderr)
			}
			if got := strings.Split(m[1], ", "); strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("missing %q, want %q", got, c.want)
			}
		})
	}
}

// TestNotebookRefusesBadSettings: each is one line, and a refused install leaves nothing.
func TestNotebookRefusesBadSettings(t *testing.T) {
	testenv.Need(t, "sh", "tar", "gzip", "sha256sum")
	dir := t.TempDir()
	tarball, sum := fakeRelease(t, dir, "1.0.0", nil)
	keys := []string{"CLEARML_API_HOST=http://127.0.0.1:1", "CLEARML_API_ACCESS_KEY=k", "CLEARML_API_SECRET_KEY=s"}
	empty := t.TempDir()
	home := t.TempDir()
	prefix := filepath.Join(home, "opt")
	other := strings.Repeat("0", 64)
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"bin dir without binaries", []string{"CLEARML_AGENT_GO_BIN_DIR=" + empty},
			"clearml notebook: CLEARML_AGENT_GO_BIN_DIR=" + empty + " has no executable agent-provision; point it at the directory holding agent-provision and clearml-agent\n"},
		{"checksum mismatch", []string{"CLEARML_AGENT_GO_URL=" + tarball, "CLEARML_AGENT_GO_SHA256=" + other, "CLEARML_AGENT_GO_PREFIX=" + prefix},
			"clearml notebook: install.sh: checksum mismatch for " + tarball + ": expected " + other + ", got " + sum + "; check the URL and the --sha256 value\n"},
		{"no installer", []string{"CLEARML_AGENT_GO_URL=" + tarball, "CLEARML_AGENT_GO_SHA256=" + sum, "CLEARML_AGENT_GO_INSTALLER=" + filepath.Join(empty, "install.sh")},
			"clearml notebook: no installer at " + filepath.Join(empty, "install.sh") + "; set CLEARML_AGENT_GO_INSTALLER to the path or URL of install.sh\n"},
		{"bad timeout", []string{"CLEARML_AGENT_GO_BIN_DIR=" + empty, "CLEARML_NOTEBOOK_READY_TIMEOUT=soon"},
			"clearml notebook: CLEARML_NOTEBOOK_READY_TIMEOUT='soon' is not a positive number of seconds; fix it or leave it unset\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := append([]string{"HOME=" + home, "PATH=" + hostPath()}, keys...)
			r := cell(t, append(env, c.env...)...)
			if r.code != 1 || r.stderr != c.want {
				t.Errorf("exit %d\nstderr %q\nwant   %q", r.code, r.stderr, c.want)
			}
		})
	}
	if _, err := os.Stat(prefix); !os.IsNotExist(err) {
		t.Errorf("%s exists after a refused install: %v", prefix, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool, dump func() string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s\n%s", what, dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNotebookEndToEnd runs the cell as Colab would, but against the emulator: it installs a release
// (tarball and install.sh served over HTTP), starts the supervisor, shows the agent registering; a task
// sees MPLBACKEND=Agg; an interrupt drains and the cell ends cleanly. Then the background mode returns
// with the agents up, and SIGTERM to the supervisor it names stops them.
func TestNotebookEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent and runs it")
	}
	testenv.Need(t, "go", "git", "bash", "sh", "tar", "gzip", "sha256sum")
	py := python(t)
	root := repoRoot(t)
	tmp := t.TempDir()

	// A release directory: the tarball of freshly built binaries, and install.sh beside it.
	name := "clearml-agent-go_0.0.0-nb_linux_" + runtime.GOARCH
	stage := filepath.Join(tmp, "stage")
	top := filepath.Join(stage, name)
	build := exec.Command("go", "build", "-o", filepath.Join(top, "bin")+"/", "./cmd/clearml-agent", "./cmd/agent-provision")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_CFLAGS=-O2 -g -Wno-deprecated-declarations")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(top, "VERSION"), []byte("0.0.0-nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(tmp, "release")
	if err := os.Mkdir(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	if r := run(t, []string{"PATH=" + hostPath()}, "", "tar", "-C", stage, "-czf", filepath.Join(rel, name+".tar.gz"), name); r.code != 0 {
		t.Fatal(r.stderr)
	}
	sum := sha256File(t, filepath.Join(rel, name+".tar.gz"))
	inst, err := os.ReadFile(filepath.Join(root, "templates", "install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel, "install.sh"), inst, 0o755); err != nil {
		t.Fatal(err)
	}
	files := httptest.NewServer(http.FileServer(http.Dir(rel)))
	defer files.Close()

	// The cell, alone in a directory (so install.sh comes from next to the tarball's URL).
	cellDir := filepath.Join(tmp, "cell")
	if err := os.Mkdir(cellDir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(cellPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cellDir, "cell.py"), src, 0o644); err != nil {
		t.Fatal(err)
	}

	const key, secret = "NBKEY", "NBSECRET"
	srv := emulator.New(emulator.Options{Credentials: map[string]string{key: secret}})
	api1 := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { api1.Close(); srv.Close() })
	qid := srv.CreateQueue("nb")
	repo := "file://" + gittest.Repo(t, "main", map[string]string{
		"plot.sh": "echo \"backend [$MPLBACKEND]\"\n",
	})

	home := filepath.Join(tmp, "home")
	state := filepath.Join(home, ".clearml-agent-go")
	prefix := filepath.Join(home, ".local", "clearml-agent-go")
	env := []string{
		"PATH=" + hostPath(), "HOME=" + home, "LANG=C.UTF-8",
		"CLEARML_API_HOST=" + api1.URL, "CLEARML_API_ACCESS_KEY=" + key, "CLEARML_API_SECRET_KEY=" + secret,
		"CLEARML_QUEUE=nb",
		"CLEARML_AGENT_QUEUE_POLL_FREQ_SEC=0.2",
	}
	workers := func() []string {
		var ids []string
		for _, w := range srv.Workers() {
			ids = append(ids, w.ID)
		}
		return ids
	}

	cmd := exec.Command(py, filepath.Join(cellDir, "cell.py"))
	cmd.Env = append(env, "CLEARML_AGENT_GO_URL="+files.URL+"/"+name+".tar.gz", "CLEARML_AGENT_GO_SHA256="+sum)
	cmd.Dir = tmp
	var stdout, stderr testenv.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Signal(syscall.SIGINT)
			_ = cmd.Process.Signal(syscall.SIGINT)
			<-done
		}
	})
	supervisorLog := func() string {
		b, _ := os.ReadFile(filepath.Join(state, "supervisor.log"))
		return string(b)
	}
	dump := func() string {
		return "cell stdout:\n" + stdout.String() + "\ncell stderr:\n" + stderr.String() + "\nsupervisor.log:\n" + supervisorLog()
	}
	waitFor(t, "the agent ready", func() bool {
		select {
		case err := <-done:
			exited = true
			t.Fatalf("the cell ended: %v\n%s", err, dump())
		default:
		}
		return strings.Contains(stdout.String(), "ready: cpu0 as worker ")
	}, dump)
	if !strings.Contains(stdout.String(), "installed clearml-agent-go 0.0.0-nb into "+prefix+"/bin\n") {
		t.Errorf("no install line\n%s", dump())
	}
	if ids := workers(); len(ids) != 1 || !strings.HasSuffix(ids[0], ":cpu0") {
		t.Errorf("workers %v, want one <host>:cpu0", ids)
	}
	if st, err := os.Stat(filepath.Join(state, "credentials")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("credentials file: %v, %v; want mode 0600", st, err)
	}

	// A task plots headless: MPLBACKEND=Agg reaches it.
	id := srv.CreateTask(api.Task{Name: "plot", Type: "training", Script: &api.Script{
		Repository: repo, Branch: "main", EntryPoint: "plot.sh", Binary: "bash", WorkingDir: ".",
	}})
	if err := srv.Enqueue(id, qid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the task completed", func() bool { return srv.Task(id).Status == api.StatusCompleted }, dump)
	var log strings.Builder
	for _, e := range srv.TaskLog(id) {
		log.WriteString(e.Msg + "\n")
	}
	if !strings.Contains(log.String(), "backend [Agg]") {
		t.Errorf("the task did not get MPLBACKEND=Agg; its log:\n%s", log.String())
	}

	// Stopping the cell (an interrupt) drains the agents; the cell ends cleanly.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = <-done
	exited = true
	if err != nil {
		t.Fatalf("the cell after an interrupt: %v\n%s", err, dump())
	}
	if !strings.Contains(stdout.String(), "stopping: draining the agents") ||
		!strings.HasSuffix(stdout.String(), "clearml agents stopped (agent-provision exited with status 0)\n") {
		t.Errorf("cell output:\n%s", dump())
	}
	if stderr.String() != "" {
		t.Errorf("cell stderr: %q", stderr.String())
	}
	if ids := workers(); len(ids) != 0 {
		t.Errorf("workers after the drain: %v, want none", ids)
	}
	t.Logf("cell output:\n%s", stdout.String())

	// Background mode, with the binaries the first run installed, from a directory not named bin.
	tools := filepath.Join(tmp, "tools")
	if err := os.Mkdir(tools, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"agent-provision", "clearml-agent"} {
		if err := os.Symlink(filepath.Join(prefix, "bin", b), filepath.Join(tools, b)); err != nil {
			t.Fatal(err)
		}
	}
	bg := run(t, append(env, "CLEARML_AGENT_GO_BIN_DIR="+tools, "CLEARML_NOTEBOOK_BACKGROUND=1"), tmp, py, filepath.Join(cellDir, "cell.py"))
	m := regexp.MustCompile(`agents running in the background \(agent-provision pid (\d+), log `).FindStringSubmatch(bg.stdout)
	if bg.code != 0 || m == nil {
		t.Fatalf("background cell: exit %d\n%s%s\n%s", bg.code, bg.stdout, bg.stderr, supervisorLog())
	}
	if want := "cpu0: " + filepath.Join(state, "prefix", "bin", "clearml-agent") + " --config-file "; !strings.Contains(supervisorLog(), want) {
		t.Errorf("the agent did not run from the prefix of links (%q)\n%s", want, supervisorLog())
	}
	pid, _ := strconv.Atoi(m[1])
	alive := func() bool {
		b, err := os.ReadFile("/proc/" + m[1] + "/stat")
		if err != nil {
			return false
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		return len(f) > 0 && f[0] != "Z"
	}
	t.Cleanup(func() {
		if alive() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if ids := workers(); len(ids) != 1 || !alive() {
		t.Fatalf("after the background cell returned: workers %v, supervisor alive %v\n%s", ids, alive(), supervisorLog())
	}
	// Running the cell again while they run is refused.
	again := run(t, append(env, "CLEARML_AGENT_GO_BIN_DIR="+tools), tmp, py, filepath.Join(cellDir, "cell.py"))
	oneLine(t, "second cell", again.stderr, "clearml notebook: agents of an earlier run are still running (agent-provision pid "+m[1])
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the background supervisor gone", func() bool { return !alive() }, supervisorLog)
	if ids := workers(); len(ids) != 0 {
		t.Errorf("workers after SIGTERM: %v, want none\n%s", ids, supervisorLog())
	}
}
