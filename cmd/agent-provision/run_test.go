package main

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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

// The test binary doubles as agent-provision when AGENT_PROVISION_TEST_MAIN
// is set, so `run` gets real signals in its own process.
func TestMain(m *testing.M) {
	if os.Getenv("AGENT_PROVISION_TEST_MAIN") == "1" {
		os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func waitUntil(t *testing.T, what string, cond func() bool, dump func() string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s\n%s", what, dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// taskRepo is a file:// git repository with quick.sh (prints one line) and
// gated.sh (runs until $GATE/<task id> exists).
func taskRepo(t *testing.T) string {
	t.Helper()
	files := map[string]string{
		"quick.sh": "echo \"quick on [$CLEARML_WORKER_ID] gpus [$CUDA_VISIBLE_DEVICES]\"\n",
		"gated.sh": "echo $$ > \"$GATE/$CLEARML_TASK_ID.pid\"\necho \"started $CLEARML_TASK_ID\"\nwhile [ ! -e \"$GATE/$CLEARML_TASK_ID\" ]; do sleep 0.05; done\necho \"released $CLEARML_TASK_ID\"\n",
	}
	return "file://" + gittest.Repo(t, "main", files)
}

// TestRunSupervisesRealAgents runs `agent-provision run --gpus 0,1` (no
// systemd, no NVML) with the real clearml-agent binary against the emulator:
// both agents report READY and register, a task completes, a SIGKILLed agent
// is restarted, and SIGTERM to the supervisor drains a running task to
// completion before both agents unregister and it exits 0.
func TestRunSupervisesRealAgents(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not in PATH")
	}
	tmp := t.TempDir()
	prefix := filepath.Join(tmp, "prefix")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(prefix, "bin", "clearml-agent"), "../clearml-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build clearml-agent: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	const key, secret = "E2EKEY", "E2ESECRET"
	srv := emulator.New(emulator.Options{Credentials: map[string]string{key: secret}})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	qid := srv.CreateQueue("q")
	repo := taskRepo(t)
	gate := filepath.Join(tmp, "gate")
	home := filepath.Join(tmp, "home")
	for _, d := range []string{gate, home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	conf := filepath.Join(tmp, "etc", "clearml.conf")
	cmd := exec.Command(self, "run", "--gpus", "0,1", "--queue", "q", "--hostname", "e2e",
		"--api-host", hs.URL, "--access-key", key, "--secret-key", secret,
		"--config", conf, "--prefix", prefix, "--state-dir", filepath.Join(tmp, "state"))
	cmd.Env = []string{
		"AGENT_PROVISION_TEST_MAIN=1",
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"LANG=C.UTF-8",
		"GATE=" + gate,
		"CLEARML_AGENT_QUEUE_POLL_FREQ_SEC=0.2",
		"CLEARML_AGENT__AGENT__ABORT_GRACE_PERIOD_SEC=2",
	}
	var stdout, stderr testenv.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A task left running by a failed test must not keep Wait on the pipes.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			// Let gated tasks end, then kill the agents (third signal).
			entries, _ := os.ReadDir(gate)
			for _, e := range entries {
				_ = os.WriteFile(filepath.Join(gate, strings.TrimSuffix(e.Name(), ".pid")), nil, 0o644)
			}
			for range 3 {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				time.Sleep(100 * time.Millisecond)
			}
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
	})
	dump := func() string {
		return "supervisor stdout:\n" + stdout.String() + "\nstderr:\n" + stderr.String()
	}
	workers := func() []string {
		var ids []string
		for _, w := range srv.Workers() {
			ids = append(ids, w.ID)
		}
		slices.Sort(ids)
		return ids
	}
	logText := func(id string) string {
		var b strings.Builder
		for _, e := range srv.TaskLog(id) {
			b.WriteString(e.Msg + "\n")
		}
		return b.String()
	}
	newTask := func(name, entry string) string {
		id := srv.CreateTask(api.Task{Name: name, Type: "training", Script: &api.Script{
			Repository: repo, Branch: "main", EntryPoint: entry, Binary: "bash", WorkingDir: ".",
		}})
		if err := srv.Enqueue(id, qid); err != nil {
			t.Fatalf("enqueue %s: %v", id, err)
		}
		return id
	}
	statusIs := func(id, want string) func() bool {
		return func() bool { return srv.Task(id).Status == want }
	}

	// Both agents report READY (the supervisor prints it) and register.
	waitUntil(t, "READY of gpu0 and gpu1", func() bool {
		s := stdout.String()
		return strings.Contains(s, "gpu0: ready") && strings.Contains(s, "gpu1: ready")
	}, dump)
	waitUntil(t, "both workers registered", func() bool {
		return slices.Equal(workers(), []string{"e2e:gpu0", "e2e:gpu1"})
	}, dump)
	if !strings.Contains(stdout.String(), `gpu0: status "idle, polling q"`) {
		t.Errorf("supervisor did not print gpu0's STATUS text\n%s", dump())
	}
	if info, err := os.Stat(conf); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("clearml.conf: %v, mode %v; want 0600", err, info)
	}

	// A task runs and completes.
	quick := newTask("quick", "quick.sh")
	waitUntil(t, "quick task completed", statusIs(quick, api.StatusCompleted), dump)
	if log := logText(quick); !regexp.MustCompile(`quick on \[e2e:gpu[01]\] gpus \[[01]\]`).MatchString(log) {
		t.Errorf("quick task log:\n%s", log)
	}

	// kill -9 of one agent: the supervisor restarts it.
	m := regexp.MustCompile(`gpu0: started, pid (\d+)`).FindAllStringSubmatch(stdout.String(), -1)
	if len(m) != 1 {
		t.Fatalf("want one start of gpu0, got %v\n%s", m, dump())
	}
	pid, _ := strconv.Atoi(m[0][1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "gpu0 restarted and READY again", func() bool {
		s := stdout.String()
		return strings.Contains(s, "gpu0: killed by signal killed; restarting in") && strings.Count(s, "gpu0: ready") == 2
	}, dump)
	waitUntil(t, "gpu0 registered again", func() bool {
		return slices.Equal(workers(), []string{"e2e:gpu0", "e2e:gpu1"})
	}, dump)

	// SIGTERM to the supervisor drains: the running task completes.
	gated := newTask("gated", "gated.sh")
	waitUntil(t, "gated task running", func() bool { return strings.Contains(logText(gated), "started "+gated) }, dump)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "drain announced", func() bool { return strings.Contains(stdout.String(), "supervisor: got terminated: draining") }, dump)
	waitUntil(t, "an agent draining", func() bool { return strings.Contains(stdout.String(), `status "draining`) }, dump)
	if st := srv.Task(gated).Status; st != api.StatusInProgress {
		t.Errorf("task status while draining = %q, want in_progress", st)
	}
	if err := os.WriteFile(filepath.Join(gate, gated), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("supervisor: %v\n%s", waitErr, dump())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("supervisor did not exit after the drained task\n%s", dump())
	}
	if st := srv.Task(gated).Status; st != api.StatusCompleted {
		t.Errorf("drained task status = %q, want completed\n%s", st, dump())
	}
	if log := logText(gated); !strings.Contains(log, "released "+gated) {
		t.Errorf("drained task log lacks its last line:\n%s", log)
	}
	if ids := workers(); len(ids) != 0 {
		t.Errorf("workers after the supervisor exited = %v, want none (unregistered)", ids)
	}
	for _, want := range []string{"gpu0: stopped (exited with status 0)", "gpu1: stopped (exited with status 0)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("supervisor output lacks %q\n%s", want, dump())
		}
	}
	t.Logf("supervisor output:\n%s", stdout.String())
}
