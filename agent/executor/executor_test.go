package executor

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/task"
)

// The test binary plays the execute child when EXECUTOR_TEST_CHILD names a
// behaviour; the daemon side under test starts it like the real one.
func TestMain(m *testing.M) {
	if mode := os.Getenv("EXECUTOR_TEST_CHILD"); mode != "" {
		child(mode)
		return
	}
	os.Exit(m.Run())
}

func child(mode string) {
	rep, err := OpenReporter(EventsFD)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(3)
	}
	aborts := make(chan *task.AbortCause, 1)
	onAbort := func(c *task.AbortCause) { aborts <- c }
	if mode == "old-abort" { // a child that predates abort lines
		onAbort = nil
	}
	if err := Lifeline(LifelineFD, func() {}, onAbort); err != nil {
		os.Exit(3)
	}
	id := argAfter("--id")
	switch mode {
	case "abort-line", "old-abort":
		sig := make(chan os.Signal, 1)
		signalNotify(sig)
		rep.Started(os.Getpid())
		select {
		case c := <-aborts:
			rep.Aborting()
			rep.Outcome(task.Outcome{TaskID: id, Status: "stopped", Reason: c.Reason + " / " + c.Note}, nil)
		case <-sig:
			rep.Outcome(task.Outcome{TaskID: id, Status: "stopped", Reason: "aborted by SIGTERM"}, nil)
		}
	case "phases":
		rep.Phase(task.PhaseClone, 1500*time.Millisecond)
		rep.Phase(task.PhasePip, 3*time.Second)
		rep.Outcome(task.Outcome{TaskID: id, Status: "completed", Log: task.LogCounts{Shipped: 42, Spooled: 7, Dropped: 1}}, nil)
	case "ok":
		rep.Loaded(&api.Task{ID: id, Name: "train " + os.Getenv("CLEARML_AUTH_TOKEN")})
		rep.Started(os.Getpid())
		rep.Outcome(task.Outcome{TaskID: id, Status: "completed", Reason: "worker execution done"}, nil)
	case "crash":
		rep.Loaded(&api.Task{ID: id})
		panic("setup blew up")
	case "abort":
		sig := make(chan os.Signal, 1)
		signalNotify(sig)
		rep.Started(os.Getpid())
		<-sig
		rep.Outcome(task.Outcome{TaskID: id, Status: "stopped", Reason: "aborted by SIGTERM"}, nil)
	case "fds":
		// A grandchild (the task) must not inherit the two pipes.
		out, _ := exec.Command("/bin/sh", "-c", "ls /proc/self/fd").Output()
		rep.Outcome(task.Outcome{TaskID: id, Status: "completed", Reason: strings.Join(strings.Fields(string(out)), ",")}, nil)
	}
	rep.Close()
}

func argAfter(flag string) string {
	for i, a := range os.Args {
		if a == flag && i+1 < len(os.Args) {
			return os.Args[i+1]
		}
	}
	return ""
}

type fakeAPI struct {
	mu     sync.Mutex
	failed []api.StatusRequest
}

func (f *fakeAPI) Failed(_ context.Context, req api.StatusRequest) (api.Updated, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = append(f.failed, req)
	return api.Updated{Updated: 1}, nil
}

func (f *fakeAPI) GetTask(_ context.Context, id string) (*api.Task, error) {
	return &api.Task{ID: id}, nil
}

func (f *fakeAPI) AddBatch(_ context.Context, ev []api.Event) (api.AddBatchResult, error) {
	return api.AddBatchResult{Added: len(ev)}, nil
}

func newRunner(t *testing.T, mode string, a API) *Runner {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{
		Binary: exe, GlobalArgs: []string{"-test.run=^$"}, Args: []string{"--log-level", "INFO"},
		Env:      append(os.Environ(), "EXECUTOR_TEST_CHILD="+mode),
		WorkerID: "host:gpu0", API: a,
		Token: func(context.Context) (string, error) { return "tok-123", nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunReportsChildEvents(t *testing.T) {
	t.Parallel()
	var loaded *api.Task
	var started int
	out, err := newRunner(t, "ok", nil).Run(t.Context(), "t1", task.Options{FromQueue: true,
		Loaded:  func(tk *api.Task) { loaded = tk },
		Started: func(pid int) { started = pid },
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.TaskID != "t1" || out.Status != "completed" || out.Reason != "worker execution done" {
		t.Errorf("outcome = %+v", out)
	}
	if loaded == nil || loaded.ID != "t1" || loaded.Name != "train tok-123" {
		t.Errorf("Loaded got %+v; want task t1 named with the handed session token", loaded)
	}
	if started <= 0 {
		t.Errorf("Started got pid %d", started)
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	r := newRunner(t, "ok", nil).WithWorker("host:gpu0:service:t9", "--venvs-dir", "/v/s")
	got := strings.Join(r.Command("t9", task.Options{FromQueue: true}), " ")
	want := "-test.run=^$ execute --id t9 --events-fd 3 --lifeline-fd 4 --worker-id host:gpu0:service:t9 --from-queue --log-level INFO --venvs-dir /v/s"
	if got != want {
		t.Errorf("command line\n got %s\nwant %s", got, want)
	}
}

func TestChildCrashFailsTheTask(t *testing.T) {
	t.Parallel()
	a := &fakeAPI{}
	out, err := newRunner(t, "crash", a).Run(t.Context(), "t2", task.Options{FromQueue: true})
	if err == nil || !strings.Contains(err.Error(), "without reporting how the task ended") {
		t.Fatalf("err = %v; want the child's death reported", err)
	}
	if out.Status != "failed" {
		t.Errorf("outcome status = %q, want failed", out.Status)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.failed) != 1 || a.failed[0].Task != "t2" || !a.failed[0].Force || !strings.Contains(a.failed[0].StatusReason, "exit status 2") {
		t.Errorf("tasks.failed calls = %+v; want one for t2 naming the exit status", a.failed)
	}
}

func TestCancelAbortsThroughTheChild(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	started := make(chan struct{})
	go func() {
		<-started
		cancel()
	}()
	out, err := newRunner(t, "abort", nil).Run(ctx, "t3", task.Options{Started: func(int) { close(started) }})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != "stopped" || out.Reason != "aborted by SIGTERM" {
		t.Errorf("outcome = %+v; want the child's stopped report", out)
	}
}

func TestPipesNotInheritedByTheTask(t *testing.T) {
	t.Parallel()
	out, err := newRunner(t, "fds", nil).Run(t.Context(), "t4", task.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// ls itself opens one descriptor (3) for the directory; 4 must not be there.
	for _, fd := range strings.Split(out.Reason, ",") {
		if fd == "4" || fd == "5" {
			t.Errorf("the task inherited fd %s (fds %s)", fd, out.Reason)
		}
	}
}

func TestLifelineEOF(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	gone := make(chan struct{})
	if err := Lifeline(fd, func() { close(gone) }, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	select {
	case <-gone:
	case <-time.After(time.Minute):
		t.Fatal("gone not called after the write end closed")
	}
}

func TestOpenReporterBadFD(t *testing.T) {
	t.Parallel()
	_, err := OpenReporter(987)
	if err == nil || !strings.Contains(err.Error(), "events fd 987") {
		t.Errorf("err = %v", err)
	}
}

func TestProgressWhileTheChildLives(t *testing.T) {
	t.Parallel()
	r := newRunner(t, "abort", nil)
	r.cfg.ProgressInterval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var beats atomic.Int32
	var up atomic.Bool // the child handles SIGTERM once it reported its start
	out, err := r.Run(ctx, "t5", task.Options{Started: func(int) { up.Store(true) }, Progress: func() {
		if beats.Add(1) >= 3 && up.Load() { // the supervision went round: abort
			cancel()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != "stopped" {
		t.Errorf("outcome = %+v; want the child's stopped report", out)
	}
	n := beats.Load()
	if n < 3 {
		t.Errorf("Progress called %d times, want at least 3", n)
	}
	if beats.Load() != n {
		t.Error("Progress called after Run returned")
	}
}

func TestChildEnvHasNoServiceManagerVariables(t *testing.T) {
	got := withoutServiceEnv([]string{"A=1", "NOTIFY_SOCKET=/run/x", "WATCHDOG_USEC=5", "WATCHDOG_PID=1", "LISTEN_FDS=1", "B=2"})
	if strings.Join(got, " ") != "A=1 B=2" {
		t.Errorf("env = %q", got)
	}
}

// An abort with a reason (task.AbortCause) reaches the child on its
// lifeline; a child that acknowledges it gets no SIGTERM, and one that
// predates abort lines gets SIGTERM after the wait for the acknowledgement.
func TestAbortWithCauseThroughTheLifeline(t *testing.T) {
	t.Parallel()
	for mode, want := range map[string]string{
		"abort-line": "instance preempted (gce) / clearml-agent: instance preempted (gce): stopping the task",
		"old-abort":  "aborted by SIGTERM",
	} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancelCause(t.Context())
			started := make(chan struct{})
			go func() {
				<-started
				cancel(&task.AbortCause{Reason: "instance preempted (gce)", Note: "clearml-agent: instance preempted (gce): stopping the task"})
			}()
			out, err := newRunner(t, mode, nil).Run(ctx, "t6", task.Options{Started: func(int) { close(started) }})
			if err != nil {
				t.Fatal(err)
			}
			if out.Status != "stopped" || out.Reason != want {
				t.Errorf("outcome = %+v; want stopped with reason %q", out, want)
			}
		})
	}
}

// The child's setup phases and log counts reach the daemon side; an older
// daemon would ignore both (unknown kinds and fields).
func TestPhasesAndLogCounts(t *testing.T) {
	t.Parallel()
	phases := map[string]time.Duration{}
	out, err := newRunner(t, "phases", nil).Run(t.Context(), "t7", task.Options{Phase: func(p string, d time.Duration) { phases[p] = d }})
	if err != nil {
		t.Fatal(err)
	}
	if phases[task.PhaseClone] != 1500*time.Millisecond || phases[task.PhasePip] != 3*time.Second || len(phases) != 2 {
		t.Errorf("phases = %v", phases)
	}
	if out.Log != (task.LogCounts{Shipped: 42, Spooled: 7, Dropped: 1}) {
		t.Errorf("log counts = %+v", out.Log)
	}
	var old struct {
		Kind string `json:"kind"`
	}
	b, _ := json.Marshal(event{Kind: "phase", Phase: "clone", Seconds: 1})
	if err := json.Unmarshal(b, &old); err != nil || old.Kind != "phase" {
		t.Errorf("a phase event is not a plain event line: %s", b)
	}
}

// Lines on the lifeline other than an abort are ignored; end of file still
// means the daemon is gone.
func TestReadLifeline(t *testing.T) {
	var got []*task.AbortCause
	readLifeline(strings.NewReader("garbage\n{\"kind\":\"hello\"}\n{\"kind\":\"abort\",\"reason\":\"r\",\"note\":\"n\"}\n"),
		func(c *task.AbortCause) { got = append(got, c) })
	if len(got) != 1 || got[0].Reason != "r" || got[0].Note != "n" {
		t.Errorf("aborts = %+v", got)
	}
}

func TestContainersTracked(t *testing.T) {
	r := newRunner(t, "ok", nil)
	svc := r.WithWorker("host:gpu0:service:x")
	forgetA := r.containers.add("aaaaaaaaaaaa1")
	forgetB := svc.containers.add("bbbbbbbbbbbb2")
	if got := strings.Join(r.Containers(), ","); got != "aaaaaaaaaaaa1,bbbbbbbbbbbb2" {
		t.Errorf("Containers = %s", got)
	}
	forgetA()
	forgetA()
	forgetB()
	if got := r.Containers(); len(got) != 0 {
		t.Errorf("Containers after the tasks = %v", got)
	}
}
