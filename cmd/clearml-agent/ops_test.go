package main

// Operations end to end: the disk floor and a bad busy-GPU policy, the
// preemption drain against local servers playing the clouds' metadata
// endpoints, and the metrics endpoint scraped during and after a task.

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/testenv"
)

// metadataServer plays a cloud's metadata endpoint; handle answers each
// request with the server's current notice state (set by the test).
type metadataServer struct {
	URL    string
	notice atomic.Bool
	hang   atomic.Bool // every request hangs until the client gives up
	polls  atomic.Int32
}

func startMetadata(t *testing.T, handle func(m *metadataServer, w http.ResponseWriter, r *http.Request)) *metadataServer {
	t.Helper()
	m := &metadataServer{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.polls.Add(1)
		if m.hang.Load() {
			<-r.Context().Done()
			return
		}
		handle(m, w, r)
	}))
	t.Cleanup(s.Close)
	m.URL = s.URL
	return m
}

// gce answers instance/preempted: FALSE, then TRUE once notice is set.
func gce(m *metadataServer, w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/computeMetadata/v1/instance/preempted" || r.Header.Get("Metadata-Flavor") != "Google" {
		http.NotFound(w, r)
		return
	}
	if m.notice.Load() {
		w.Write([]byte("TRUE"))
	} else {
		w.Write([]byte("FALSE"))
	}
}

// aws answers IMDSv2: a token, then spot/instance-action (404 until the
// notice).
func aws(m *metadataServer, w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
		w.Write([]byte("tok"))
	case r.Method == http.MethodGet && r.URL.Path == "/latest/meta-data/spot/instance-action":
		if r.Header.Get("X-aws-ec2-metadata-token") != "tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if !m.notice.Load() {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(`{"action":"terminate","time":"2026-12-02T01:30:00Z"}`))
	default:
		http.NotFound(w, r)
	}
}

func preemptEnv(e *env, provider, url string) *env {
	return e.with("CLEARML_AGENT__AGENT__PREEMPTION__PROVIDER="+provider,
		"CLEARML_AGENT__AGENT__PREEMPTION__ENDPOINT="+url,
		"CLEARML_AGENT__AGENT__PREEMPTION__POLL_INTERVAL_SEC=0.1")
}

// queueEntries are the task ids waiting in queue name.
func (s *server) queueEntries(name string) []string {
	q, _ := s.Queue(name)
	var ids []string
	for _, e := range q.Entries {
		ids = append(ids, e.Task)
	}
	return ids
}

// GCE says the VM is preempted while a task runs: the agent stops taking
// work, aborts the task (its log says why), puts it back on the queue it
// came from, unregisters and exits 0; another agent then runs it.
func TestPreemptionGCE(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	md := startMetadata(t, gce)
	e := newEnv(t, srv.URL)
	id := srv.newTask(t, repo, "spot", "wait.sh", "bash")
	srv.enqueue(t, id, "spot")
	a := startAgent(t, preemptEnv(e, "gce", md.URL), "daemon", "--queue", "other", "spot", "--create-queue", "--cpu-only")
	waitFor(t, "task started", func() bool { return strings.Contains(srv.logText(id), "started "+id) })
	polled := md.polls.Load()
	waitFor(t, "the metadata polled while the task runs", func() bool { return md.polls.Load() > polled })
	md.notice.Store(true)
	if code := a.wait(); code != 0 {
		t.Fatalf("exit status %d after the notice, want 0", code)
	}
	got := srv.Task(id)
	if got.Status != api.StatusQueued || got.StatusReason != "instance preempted (gce)" {
		t.Errorf("task after the notice: %s (%q); want queued, reason instance preempted (gce)", got.Status, got.StatusReason)
	}
	if q := srv.queueEntries("spot"); len(q) != 1 || q[0] != id {
		t.Errorf("queue spot = %v, want [%s]", q, id)
	}
	log := srv.logText(id)
	for _, want := range []string{"clearml-agent: instance preempted (gce): stopping the task and putting it back on queue spot",
		"clearml-agent: task put back on queue spot (instance preempted (gce))"} {
		if !strings.Contains(log, want) {
			t.Errorf("task log lacks %q:\n%s", want, log)
		}
	}
	if ids := srv.workerIDs(); len(ids) != 0 {
		t.Errorf("workers after exit = %v, want none (unregistered)", ids)
	}
	a.saw("STATUS=preempted: instance preempted (gce)")
	a.saw("STOPPING=1")
	if pid := e.taskPID(id); pid > 0 && alive(pid) {
		t.Errorf("the task's process %d outlived the agent", pid)
	}

	// Another agent (no preemption here) picks the task up and runs it.
	e.release(t, id)
	b := startAgent(t, e, "daemon", "--queue", "spot", "--cpu-only")
	srv.waitStatus(t, id, api.StatusCompleted)
	b.signal(syscall.SIGTERM)
	if code := b.wait(); code != 0 {
		t.Errorf("second agent exit status %d", code)
	}
}

// An AWS metadata endpoint that hangs never holds the poll loop (a task
// runs meanwhile; one warning is logged); once it answers, the spot
// interruption notice requeues the running task and the agent exits 0.
func TestPreemptionAWSHangingEndpoint(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	md := startMetadata(t, aws)
	md.hang.Store(true)
	e := newEnv(t, srv.URL)
	a := startAgent(t, preemptEnv(e, "aws", md.URL), "daemon", "--queue", "q", "--create-queue", "--cpu-only")
	a.saw("READY=1")
	waitFor(t, "a warning about the hanging endpoint", func() bool { return strings.Contains(a.stderr.String(), "no answer within") })
	first := srv.newTask(t, repo, "first", "env.sh", "bash")
	srv.enqueue(t, first, "q")
	srv.waitStatus(t, first, api.StatusCompleted)
	if !md.hang.Load() || md.polls.Load() == 0 {
		t.Fatal("the endpoint did not hang while the task ran")
	}

	md.hang.Store(false)
	id := srv.newTask(t, repo, "spot", "wait.sh", "bash")
	t.Cleanup(func() { e.killTaskGroup(id) })
	srv.enqueue(t, id, "q")
	waitFor(t, "task started", func() bool { return strings.Contains(srv.logText(id), "started "+id) })
	md.notice.Store(true)
	if code := a.wait(); code != 0 {
		t.Fatalf("exit status %d after the notice, want 0", code)
	}
	// The token request's timeout (then IMDSv1), and the polls' timeouts
	// once: one line each, however many polls hung.
	if n := strings.Count(a.stderr.String(), "no answer within"); n < 1 || n > 2 || strings.Count(a.stderr.String(), "ignored, polling every") > 1 {
		t.Errorf("the hanging endpoint was reported %d times, want once per kind:\n%s", n, a.stderr.String())
	}
	got := srv.Task(id)
	if got.Status != api.StatusQueued || got.StatusReason != "instance preempted (aws)" {
		t.Errorf("task after the notice: %s (%q); want queued, reason instance preempted (aws)", got.Status, got.StatusReason)
	}
	want := "clearml-agent: spot instance-action terminate at 2026-12-02T01:30:00Z (aws): stopping the task and putting it back on queue q"
	if log := srv.logText(id); !strings.Contains(log, want) {
		t.Errorf("task log lacks %q:\n%s", want, log)
	}
	if q := srv.queueEntries("q"); len(q) != 1 || q[0] != id {
		t.Errorf("queue q = %v, want [%s]", q, id)
	}
	if ids := srv.workerIDs(); len(ids) != 0 {
		t.Errorf("workers after exit = %v, want none", ids)
	}
}

// mountSmallFS mounts a 64 MiB tmpfs for the test (unmounted at its end).
// Outside CI, a machine where that is not allowed skips the test.
func mountSmallFS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "mounting a small filesystem needs root; run the test as root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt).CombinedOutput(); err != nil {
		testenv.Missing(t, "mount -t tmpfs: %v: %s; run where root may mount filesystems", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// When the disk falls below agent.disk_min_free_gb the agent takes no task:
// STATUS says "disk full", the log says it once, the watchdog is still fed;
// once there is space again it takes the task.
func TestDiskFloorHoldsTasks(t *testing.T) {
	t.Parallel()
	mnt := mountSmallFS(t)
	srv := startServer(t)
	repo := gitRepo(t)
	state := filepath.Join(mnt, "state")
	// 64 MiB free at start (the preflight passes), a floor of ~31 MiB.
	e := newEnv(t, srv.URL).with("CLEARML_AGENT_STATE_DIR="+state, "CLEARML_AGENT__AGENT__DISK_MIN_FREE_GB=0.03", "WATCHDOG_USEC=1000000")
	a := startAgent(t, e, "daemon", "--queue", "q", "--create-queue", "--cpu-only")
	a.saw("READY=1")
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 40<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	msg := a.notePrefix("STATUS=disk full: ")
	if want := "free on " + state + " (floor agent.disk_min_free_gb=0.03); taking no task"; !strings.Contains(msg, want) {
		t.Errorf("STATUS %q does not say %q", msg, want)
	}
	polls := srv.Requests()["queues.get_next_task"]
	id := srv.newTask(t, repo, "held", "env.sh", "bash")
	srv.enqueue(t, id, "q")
	a.noteIs("WATCHDOG=1")
	a.noteIs("WATCHDOG=1")
	if st := srv.Task(id).Status; st != api.StatusQueued {
		t.Errorf("task %s below the disk floor, want queued", st)
	}
	if n := srv.Requests()["queues.get_next_task"]; n != polls {
		t.Errorf("%d queues.get_next_task calls below the disk floor, want none", n-polls)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	srv.waitStatus(t, id, api.StatusCompleted)
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	stderr := a.stderr.String()
	if strings.Count(stderr, `msg="taking no task"`) != 1 || strings.Count(stderr, `msg="taking tasks again"`) != 1 {
		t.Errorf("want the disk floor logged once and its end once:\n%s", stderr)
	}
}

// Bad settings stop the daemon at start with one line naming the key.
func TestBadOpsSettings(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	for kv, want := range map[string]string{
		"CLEARML_AGENT__AGENT__GPU_BUSY_POLICY=sometimes": `agent.gpu_busy_policy "sometimes" is not valid; use wait, ignore, or a memory threshold in MiB such as 2048`,
		"CLEARML_AGENT__AGENT__PREEMPTION__PROVIDER=ibm":  `agent.preemption.provider: "ibm" is not a provider`,
		"CLEARML_AGENT__AGENT__DISK_MIN_FREE_GB=-1":       "agent.disk_min_free_gb -1 is negative",
		"CLEARML_AGENT_METRICS_LISTEN=127.0.0.1:notaport": `--metrics-listen "127.0.0.1:notaport": port "notaport" is not a number`,
	} {
		code, _, stderr := runAgent(t, newEnv(t, srv.URL).with(kv), "daemon", "--queue", "q", "--cpu-only")
		if code == 0 || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant one line containing %q", kv, code, stderr, want)
		}
	}
}

// scrapeMetrics reads the agent's /metrics as "name{labels}" -> value.
func scrapeMetrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[l[:i]] = v
		}
	}
	return out
}

// The metrics endpoint scraped during a task and after it: the state, the
// task's outcome, its setup phases, its log lines, the polls and a server
// error.
func TestMetricsDuringTask(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	e := newEnv(t, srv.URL)
	addr := freePort(t)
	a := startAgent(t, e.with("CLEARML_AGENT_METRICS_LISTEN="+addr), "daemon", "--queue", "q", "--create-queue", "--cpu-only")
	a.saw("READY=1")
	id := srv.newTask(t, repo, "metrics", "wait.sh", "bash")
	srv.enqueue(t, id, "q")
	waitFor(t, "task started", func() bool { return strings.Contains(srv.logText(id), "started "+id) })
	during := scrapeMetrics(t, addr)
	if during[`clearml_agent_state{state="running"}`] != 1 || during[`clearml_agent_state{state="idle"}`] != 0 {
		t.Errorf("state during the task: running=%v idle=%v", during[`clearml_agent_state{state="running"}`], during[`clearml_agent_state{state="idle"}`])
	}
	e.release(t, id)
	srv.waitStatus(t, id, api.StatusCompleted)
	py := srv.newTask(t, repo, "python", "main.py", "python3")
	srv.enqueue(t, py, "q")
	srv.waitStatus(t, py, api.StatusCompleted)

	var after map[string]float64
	waitFor(t, "both tasks counted", func() bool {
		after = scrapeMetrics(t, addr)
		return after[`clearml_agent_tasks_total{outcome="completed"}`] == 2
	})
	for _, k := range []string{`clearml_agent_setup_duration_seconds_count{phase="clone"}`, `clearml_agent_setup_duration_seconds_count{phase="venv"}`,
		`clearml_agent_task_duration_seconds_count`, `clearml_agent_log_lines_shipped_total`} {
		if after[k] < 1 {
			t.Errorf("%s = %v, want > 0", k, after[k])
		}
	}
	if after[`clearml_agent_tasks_total{outcome="failed"}`] != 0 || after[`clearml_agent_log_lines_dropped_total`] != 0 {
		t.Errorf("failed=%v dropped=%v, want 0", after[`clearml_agent_tasks_total{outcome="failed"}`], after[`clearml_agent_log_lines_dropped_total`])
	}
	if s, ok := after[`clearml_agent_seconds_since_last_poll`]; !ok || s < 0 || s > waitLimit.Seconds() {
		t.Errorf("seconds_since_last_poll = %v (present %v)", s, ok)
	}
	waitFor(t, "state idle", func() bool { return scrapeMetrics(t, addr)[`clearml_agent_state{state="idle"}`] == 1 })

	// A server that fails calls: counted by endpoint.
	srv.SetDown(true)
	waitFor(t, "a server error counted", func() bool {
		return scrapeMetrics(t, addr)[`clearml_agent_server_errors_total{endpoint="queues.get_next_task"}`] >= 1
	})
	srv.SetDown(false)
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d", code)
	}
}

// A metrics address in use: the agent starts and says so once; with
// --metrics-required it refuses to start with one line.
func TestMetricsAddressInUse(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	e := newEnv(t, srv.URL)
	a := startAgent(t, e, "daemon", "--queue", "q", "--create-queue", "--cpu-only", "--metrics-listen", addr)
	a.saw("READY=1")
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if n := strings.Count(a.stderr.String(), "address already in use"); n != 1 {
		t.Errorf("the address in use was logged %d times, want once:\n%s", n, a.stderr.String())
	}
	code, _, stderr := runAgent(t, e, "daemon", "--queue", "q", "--cpu-only", "--metrics-listen", addr, "--metrics-required")
	want := "clearml-agent: error: --metrics-listen " + addr + ": address already in use; pick a free port or stop the other process that listens there"
	if code == 0 || strings.TrimSpace(stderr) != want {
		t.Errorf("--metrics-required: exit %d, stderr:\n%s\nwant exactly %q", code, stderr, want)
	}
}
