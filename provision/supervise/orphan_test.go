package supervise

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/instance"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
	"github.com/gpufleet/clearml-agent-go/internal/gittest"
)

// TestRestartEndsOrphanedTask supervises the real clearml-agent against the
// emulator. A task that prints its environment and ignores SIGTERM runs; the
// agent is SIGKILLed (as the watchdog does). Before the restart the
// supervisor ends the task's process groups, and the restarted agent marks
// the task failed with instance.OrphanReason. The task's environment has no
// NOTIFY_SOCKET or WATCHDOG_* although the agent's has both.
func TestRestartEndsOrphanedTask(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real agent")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not in PATH")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "clearml-agent")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "../../cmd/clearml-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build clearml-agent: %v\n%s", err, out)
	}
	const key, secret = "E2EKEY", "E2ESECRET"
	srv := emulator.New(emulator.Options{Credentials: map[string]string{key: secret}})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	qid := srv.CreateQueue("q")
	gate := filepath.Join(tmp, "gate")
	home := filepath.Join(tmp, "home")
	for _, d := range []string{gate, home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	repo := "file://" + gittest.Repo(t, "main", map[string]string{
		"stuck.sh": "env | sed 's/^/env: /'\ntrap '' TERM\necho $$ > \"$GATE/$CLEARML_TASK_ID.pid\"\necho \"started $CLEARML_TASK_ID\"\nwhile :; do sleep 0.05; done\n",
	})
	conf := filepath.Join(tmp, "clearml.conf")
	if err := os.WriteFile(conf, []byte("api {\n  api_server: \""+hs.URL+"\"\n  credentials {\n    access_key: \""+key+"\"\n    secret_key: \""+secret+"\"\n  }\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Child{
		Name: "gpu0",
		Argv: []string{bin, "--config-file", conf, "daemon", "--foreground", "--queue", "q", "--cpu-only"},
		Env: []string{
			"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8", "GATE=" + gate,
			"CLEARML_WORKER_ID=e2e:gpu0",
			instance.EnvStateDir + "=" + filepath.Join(tmp, "state"),
			"CLEARML_AGENT_CACHE_DIR=" + filepath.Join(tmp, "cache"),
			"CLEARML_AGENT_LOG_DIR=" + filepath.Join(tmp, "logs"),
			"CLEARML_AGENT_QUEUE_POLL_FREQ_SEC=0.2",
			// Longer than the test: the task outlives its execute child's
			// own abort when the agent dies.
			"CLEARML_AGENT__AGENT__ABORT_GRACE_PERIOD_SEC=600",
		},
		Watchdog: time.Minute, // the agent gets WATCHDOG_USEC; its task must not
	}
	out, stdout := &syncBuf{}, &syncBuf{}
	sigs := make(chan os.Signal, 3)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(t.Context(), Options{Children: []Child{c}, Out: out, Stdout: stdout, Stderr: stdout, MinBackoff: 100 * time.Millisecond}, sigs)
	}()
	var taskPID int
	t.Cleanup(func() {
		if taskPID > 0 {
			_ = syscall.Kill(-taskPID, syscall.SIGKILL)
		}
		for range 3 {
			sigs <- syscall.SIGTERM
		}
		select {
		case <-errc:
		case <-time.After(30 * time.Second):
		}
	})
	dump := func() string { return "supervisor:\n" + out.String() + "\nagent:\n" + stdout.String() }
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, dump())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	logText := func(id string) string {
		var b strings.Builder
		for _, e := range srv.TaskLog(id) {
			b.WriteString(e.Msg + "\n")
		}
		return b.String()
	}
	wait("ready", func() bool { return strings.Contains(out.String(), "gpu0: ready") })

	id := srv.CreateTask(api.Task{Name: "stuck", Type: "training", Script: &api.Script{
		Repository: repo, Branch: "main", EntryPoint: "stuck.sh", Binary: "bash", WorkingDir: ".",
	}})
	if err := srv.Enqueue(id, qid); err != nil {
		t.Fatal(err)
	}
	wait("the task running", func() bool { return strings.Contains(logText(id), "started "+id) })
	b, err := os.ReadFile(filepath.Join(gate, id+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	taskPID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	if !alive(taskPID) {
		t.Fatalf("task pid %d not running", taskPID)
	}
	log := logText(id)
	if !strings.Contains(log, "env: CLEARML_TASK_ID="+id) {
		t.Errorf("the task did not print its environment:\n%s", log)
	}
	for _, leak := range []string{"env: NOTIFY_SOCKET=", "env: WATCHDOG_USEC=", "env: WATCHDOG_PID="} {
		if strings.Contains(log, leak) {
			t.Errorf("the task's environment has %s...:\n%s", leak, log)
		}
	}

	m := regexp.MustCompile(`gpu0: started, pid (\d+)`).FindAllStringSubmatch(out.String(), -1)
	if len(m) != 1 {
		t.Fatalf("want one start of the agent, got %v\n%s", m, dump())
	}
	agent, _ := strconv.Atoi(m[0][1])
	if err := syscall.Kill(agent, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait("the agent restarted and ready", func() bool { return strings.Count(out.String(), "gpu0: ready") == 2 })
	wait("the task process ended", func() bool { return !alive(taskPID) })
	wait("the task marked failed", func() bool { return srv.Task(id).Status == api.StatusFailed })
	if got := srv.Task(id).StatusReason; got != instance.OrphanReason {
		t.Errorf("status reason = %q, want %q\n%s", got, instance.OrphanReason, dump())
	}
	if !strings.Contains(out.String(), "gpu0: ended the task process group") {
		t.Errorf("the supervisor did not say it ended the task's group\n%s", dump())
	}
	if strings.Contains(out.String(), "ignoring notify messages") {
		t.Errorf("the agent's own notify messages were ignored\n%s", dump())
	}
	taskPID = 0
	sigs <- syscall.SIGTERM
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run = %v\n%s", err, dump())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the supervisor did not stop\n%s", dump())
	}
}

// alive reports whether pid runs (not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}
