package main

// End-to-end harness: TestMain builds the real clearml-agent binary once;
// every test runs it as a process against the emulator served over HTTP on
// 127.0.0.1, with its own NOTIFY_SOCKET listener and real signals.

import (
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
	"github.com/gpufleet/clearml-agent-go/internal/gittest"
)

var agentBin string

const (
	testKey    = "E2EACCESSKEY1234"
	testSecret = "e2e-secret"
	// waitLimit bounds every wait so a broken agent fails the test instead of
	// hanging it; it is a deadline, not a timing assertion.
	waitLimit = 60 * time.Second
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clearml-agent-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "clearml-agent")
	args := []string{"build", "-o", agentBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building clearml-agent:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is the emulator behind a real HTTP listener.
type server struct {
	*emulator.Server
	URL string
}

func startServer(t *testing.T) *server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, l)
}

func serveOn(t *testing.T, l net.Listener) *server {
	t.Helper()
	emu := emulator.New(emulator.Options{Credentials: map[string]string{testKey: testSecret}})
	hs := httptest.NewUnstartedServer(emu.Handler())
	hs.Listener.Close()
	hs.Listener = l
	hs.Start()
	t.Cleanup(func() { hs.Close(); emu.Close() })
	return &server{Server: emu, URL: hs.URL}
}

// freePort returns a 127.0.0.1 address nothing listens on (yet).
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// gitRepo makes a git repository with the test scripts and returns its file:// URL.
func gitRepo(t *testing.T) string {
	t.Helper()
	files := map[string]string{
		// env.sh prints what the agent gave the task.
		"env.sh": `echo "CUDA=[${CUDA_VISIBLE_DEVICES-unset}] NVIDIA=[${NVIDIA_VISIBLE_DEVICES-unset}] WORKER=[$CLEARML_WORKER_ID] FOO=[$FOO]"` + "\n",
		// wait.sh runs until the test creates $GATE/<task id>.
		"wait.sh": `echo "started $CLEARML_TASK_ID"
echo $$ > "$GATE/$CLEARML_TASK_ID.pid"
while [ ! -e "$GATE/$CLEARML_TASK_ID" ]; do sleep 0.05; done
echo "released $CLEARML_TASK_ID"
`,
		// stubborn.sh ignores SIGTERM.
		"stubborn.sh": `trap '' TERM
echo $$ > "$GATE/$CLEARML_TASK_ID.pid"
echo "started $CLEARML_TASK_ID"
while true; do sleep 0.05; done
`,
		// parent.sh prints the command line of the process that started it.
		"parent.sh": `echo "parent: $(tr '\0' ' ' < /proc/$PPID/cmdline)"` + "\n",
		"main.py": `import os, sys
print("hello from python", os.environ.get("CLEARML_TASK_ID", ""))
for i in range(3):
    print("step", i)
sys.exit(int(os.environ.get("E2E_EXIT", "0")))
`,
	}
	return "file://" + gittest.Repo(t, "main", files)
}

// newTask creates a task running entry (a script of gitRepo) with binary
// ("bash" or "python3") and returns its id.
func (s *server) newTask(t *testing.T, repoURL, name, entry, binary string) string {
	t.Helper()
	return s.CreateTask(api.Task{Name: name, Type: "training", Script: &api.Script{
		Repository: repoURL, Branch: "main", EntryPoint: entry, Binary: binary, WorkingDir: ".",
	}})
}

func (s *server) enqueue(t *testing.T, taskID, queue string) {
	t.Helper()
	if err := s.Enqueue(taskID, s.CreateQueue(queue)); err != nil {
		t.Fatalf("enqueue %s on %s: %v", taskID, queue, err)
	}
}

// logText is the task's log as one string.
func (s *server) logText(id string) string {
	var b strings.Builder
	for _, e := range s.TaskLog(id) {
		b.WriteString(e.Msg)
		b.WriteByte('\n')
	}
	return b.String()
}

func (s *server) waitStatus(t *testing.T, id string, want ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("task %s status in %v", id, want), func() bool {
		st := s.Task(id).Status
		for _, w := range want {
			if st == w {
				return true
			}
		}
		return false
	})
}

func (s *server) workerIDs() []string {
	var ids []string
	for _, w := range s.Workers() {
		ids = append(ids, w.ID)
	}
	return ids
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// env is one agent's environment: a private HOME, state dir and gate dir.
type env struct {
	home, state, gate string
	vars              []string
}

func newEnv(t *testing.T, apiURL string) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{home: filepath.Join(root, "home"), state: filepath.Join(root, "state"), gate: filepath.Join(root, "gate")}
	for _, d := range []string{e.home, e.gate} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.vars = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + e.home,
		"LANG=C.UTF-8",
		"CLEARML_API_HOST=" + apiURL,
		"CLEARML_API_ACCESS_KEY=" + testKey,
		"CLEARML_API_SECRET_KEY=" + testSecret,
		"CLEARML_AGENT_QUEUE_POLL_FREQ_SEC=0.2",
		"CLEARML_AGENT_STATE_DIR=" + e.state,
		"CLEARML_AGENT__AGENT__ABORT_GRACE_PERIOD_SEC=2",
		"GATE=" + e.gate,
	}
	return e
}

func (e *env) with(kv ...string) *env {
	c := *e
	c.vars = append(append([]string(nil), e.vars...), kv...)
	return &c
}

// release lets wait.sh of task id finish.
func (e *env) release(t *testing.T, id string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.gate, id), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// killTaskGroup SIGKILLs the process group a gate script recorded (cleanup
// for tasks an agent left behind on purpose).
// taskPID is the pid wait.sh or stubborn.sh of task id wrote (0 if none).
func (e *env) taskPID(id string) int {
	b, err := os.ReadFile(filepath.Join(e.gate, id+".pid"))
	if err != nil {
		return 0
	}
	var pid int
	_, _ = fmt.Sscan(string(b), &pid)
	return pid
}

func (e *env) killTaskGroup(id string) {
	b, err := os.ReadFile(filepath.Join(e.gate, id+".pid"))
	if err != nil {
		return
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 1 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// agent is one running clearml-agent process.
type agent struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr *testenv.Buffer
	notes          chan string
	mu             sync.Mutex
	allNotes       []string
	done           chan struct{}
	code           int
}

// runAgent runs the binary to its end and returns exit status and output.
func runAgent(t *testing.T, e *env, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	a := startAgent(t, e, args...)
	return a.wait(), a.stdout.String(), a.stderr.String()
}

// startAgent starts the binary with e's environment and a NOTIFY_SOCKET of
// its own. The process is killed when the test ends.
func startAgent(t *testing.T, e *env, args ...string) *agent {
	t.Helper()
	// A short directory: socket paths are limited to 107 bytes.
	sdir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sdir) })
	sock := filepath.Join(sdir, "n")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}, notes: make(chan string, 4096), done: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			a.mu.Lock()
			a.allNotes = append(a.allNotes, msg)
			a.mu.Unlock()
			select {
			case a.notes <- msg:
			default:
			}
		}
	}()
	a.cmd = exec.Command(agentBin, args...)
	a.cmd.Env = append(append([]string(nil), e.vars...), "NOTIFY_SOCKET="+sock)
	a.cmd.Stdout, a.cmd.Stderr = a.stdout, a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := a.cmd.Wait()
		a.code = a.cmd.ProcessState.ExitCode()
		if ws, ok := a.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			a.code = 128 + int(ws.Signal())
		}
		_ = err
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			_ = a.cmd.Process.Kill()
			<-a.done
		}
		conn.Close()
		if strings.Contains(a.stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("data race in clearml-agent %v:\n%s", args, a.stderr.String())
		}
		if t.Failed() {
			t.Logf("clearml-agent %v\nstdout:\n%s\nstderr:\n%s\nnotifications: %q", args, a.stdout.String(), a.stderr.String(), a.notifications())
		}
	})
	return a
}

func (a *agent) signal(s os.Signal) {
	a.t.Helper()
	if err := a.cmd.Process.Signal(s); err != nil {
		a.t.Fatalf("signal %v: %v", s, err)
	}
}

// wait returns the exit status once the process ended.
func (a *agent) wait() int {
	a.t.Helper()
	select {
	case <-a.done:
		return a.code
	case <-time.After(waitLimit):
		a.t.Fatalf("clearml-agent did not exit\nstderr:\n%s", a.stderr.String())
		return -1
	}
}

func (a *agent) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// note waits for a notification matching pred and returns it; the ones
// before it are consumed.
func (a *agent) note(what string, pred func(string) bool) string {
	a.t.Helper()
	limit := time.After(waitLimit)
	for {
		select {
		case m := <-a.notes:
			if pred(m) {
				return m
			}
		case <-limit:
			a.t.Fatalf("no sd_notify %s; got %q\nstderr:\n%s", what, a.notifications(), a.stderr.String())
			return ""
		}
	}
}

func (a *agent) noteIs(want string) { a.note(want, func(m string) bool { return m == want }) }

func (a *agent) notePrefix(p string) string {
	return a.note(p+"...", func(m string) bool { return strings.HasPrefix(m, p) })
}

// saw waits until some notification so far (consumed or not) has prefix p.
func (a *agent) saw(p string) {
	a.t.Helper()
	waitFor(a.t, "sd_notify "+p+"...", func() bool {
		return slices.ContainsFunc(a.notifications(), func(m string) bool { return strings.HasPrefix(m, p) })
	})
}

func (a *agent) notifications() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.allNotes...)
}

func hostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
