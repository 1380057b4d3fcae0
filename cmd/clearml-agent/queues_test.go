package main

import (
	"net"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// pulledOrder is the task ids in the order the daemon printed "task X pulled".
func pulledOrder(stdout string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`task (\S+) pulled from`).FindAllStringSubmatch(stdout, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func TestQueuePriorityAndFairness(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		flags []string
		order func(h1, h2, l1, l2 string) []string
	}{
		// After each task the agent starts again from the first queue.
		{"priority", nil, func(h1, h2, l1, l2 string) []string { return []string{h1, h2, l1, l2} }},
		// Round robin between the queues.
		{"fairness", []string{"--order-fairness"}, func(h1, h2, l1, l2 string) []string { return []string{h1, l1, h2, l2} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t)
			repo := gitRepo(t)
			e := newEnv(t, srv.URL)
			var ids []string
			for _, q := range []string{"low", "low", "high", "high"} {
				id := srv.newTask(t, repo, q, "env.sh", "bash")
				srv.enqueue(t, id, q)
				ids = append(ids, id)
			}
			l1, l2, h1, h2 := ids[0], ids[1], ids[2], ids[3]
			args := append([]string{"daemon", "--queue", "high", "low", "--cpu-only"}, tc.flags...)
			a := startAgent(t, e, args...)
			for _, id := range ids {
				srv.waitStatus(t, id, api.StatusCompleted)
			}
			a.signal(syscall.SIGTERM)
			if code := a.wait(); code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}
			if diff := cmp.Diff(tc.order(h1, h2, l1, l2), pulledOrder(a.stdout.String())); diff != "" {
				t.Errorf("order of tasks (-want +got):\n%s\nstdout:\n%s", diff, a.stdout.String())
			}
		})
	}
}

func TestUnknownQueue(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	srv.CreateQueue("alpha")
	srv.CreateQueue("beta")
	e := newEnv(t, srv.URL)
	a := startAgent(t, e, "daemon", "--queue", "nope", "--cpu-only")
	if code := a.wait(); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	stderr := a.stderr.String()
	last := lastLine(stderr)
	for _, want := range []string{`"nope"`, "alpha", "beta", "--create-queue"} {
		if !strings.Contains(last, want) {
			t.Errorf("error line lacks %s: %q", want, last)
		}
	}
	if slices.Contains(a.notifications(), "READY=1") {
		t.Errorf("READY=1 sent for an unknown queue: %q", a.notifications())
	}
	if _, ok := srv.Queue("nope"); ok {
		t.Error("queue nope was created without --create-queue")
	}
}

func TestCreateQueueAndCaseInsensitiveNames(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	srv.CreateQueue("Alpha")
	e := newEnv(t, srv.URL)
	a := startAgent(t, e, "daemon", "--queue", "ALPHA", "fresh", "--create-queue", "--cpu-only")
	a.saw("STATUS=idle, polling Alpha, fresh")
	a.saw("READY=1")
	if _, ok := srv.Queue("fresh"); !ok {
		t.Error("--create-queue did not create queue fresh")
	}
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestBadCredentials(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e := newEnv(t, srv.URL).with("CLEARML_API_SECRET_KEY=wrong")
	a := startAgent(t, e, "daemon", "--queue", "q", "--cpu-only")
	if code := a.wait(); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	last := lastLine(a.stderr.String())
	if !strings.HasPrefix(last, "clearml-agent: error: ") || !strings.Contains(strings.ToLower(last), "credentials") {
		t.Errorf("last stderr line = %q, want one clear credentials error", last)
	}
	if strings.Contains(a.stderr.String(), "wrong") {
		t.Errorf("stderr shows the secret:\n%s", a.stderr.String())
	}
	if slices.Contains(a.notifications(), "READY=1") {
		t.Errorf("READY=1 sent with bad credentials")
	}
}

func TestMissingCredentials(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e := newEnv(t, srv.URL)
	var vars []string
	for _, kv := range e.vars {
		if !strings.HasPrefix(kv, "CLEARML_API_ACCESS_KEY=") && !strings.HasPrefix(kv, "CLEARML_API_SECRET_KEY=") {
			vars = append(vars, kv)
		}
	}
	e.vars = vars
	code, _, stderr := runAgent(t, e, "daemon", "--queue", "q", "--cpu-only")
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 || !strings.Contains(stderr, "missing credentials") {
		t.Errorf("stderr = %q, want one line saying credentials are missing", stderr)
	}
	if got := srv.Requests()["auth.login"]; got != 0 {
		t.Errorf("auth.login called %d times without credentials (a demo key?)", got)
	}
}

// The server is down when the agent starts: it keeps retrying, says so in
// STATUS, and sends READY only once the server is up.
func TestServerDownAtStart(t *testing.T) {
	t.Parallel()
	addr := freePort(t)
	e := newEnv(t, "http://"+addr)
	a := startAgent(t, e, "daemon", "--queue", "q", "--create-queue", "--cpu-only")
	a.notePrefix("STATUS=server unreachable")
	if slices.Contains(a.notifications(), "READY=1") {
		t.Fatalf("READY=1 before the server is up: %q", a.notifications())
	}
	if a.exited() {
		t.Fatalf("agent gave up while the server is down")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr, err)
	}
	srv := serveOn(t, l)
	a.noteIs("READY=1")
	if ids := srv.workerIDs(); len(ids) != 1 {
		t.Errorf("workers = %v, want the agent", ids)
	}
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

// SIGTERM while the server was never reached is a clean stop (exit 0).
func TestStopWhileServerDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "http://"+freePort(t))
	a := startAgent(t, e, "daemon", "--queue", "q", "--cpu-only")
	a.notePrefix("STATUS=server unreachable")
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d, want 0 for a requested stop", code)
	}
	if !slices.Contains(a.notifications(), "STOPPING=1") {
		t.Errorf("no STOPPING=1: %q", a.notifications())
	}
}

// --services-mode runs tasks side by side; with N, at most N at once.
func TestServicesMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		flags []string
		max   int // 0: unlimited
	}{
		{"unlimited", []string{"--services-mode"}, 0},
		{"two", []string{"--services-mode", "2"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t)
			repo := gitRepo(t)
			e := newEnv(t, srv.URL)
			var ids []string
			for i := 0; i < 3; i++ {
				id := srv.newTask(t, repo, "svc", "wait.sh", "bash")
				srv.enqueue(t, id, "services")
				ids = append(ids, id)
			}
			args := append([]string{"daemon", "--queue", "services"}, tc.flags...)
			a := startAgent(t, e, args...)
			running := ids
			if tc.max > 0 {
				running = ids[:tc.max]
			}
			for _, id := range running {
				waitFor(t, "service "+id+" started", func() bool { return strings.Contains(srv.logText(id), "started "+id) })
			}
			if tc.max > 0 {
				a.saw("STATUS=services mode: 2 of 2 services running")
				if st := srv.Task(ids[2]).Status; st != api.StatusQueued {
					t.Errorf("third task status %q while 2 of 2 run, want queued", st)
				}
				e.release(t, ids[0])
				waitFor(t, "third service started", func() bool { return strings.Contains(srv.logText(ids[2]), "started "+ids[2]) })
			}
			for _, id := range ids {
				e.release(t, id)
			}
			for _, id := range ids {
				srv.waitStatus(t, id, api.StatusCompleted)
			}
			a.signal(syscall.SIGTERM)
			if code := a.wait(); code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}
		})
	}
}

// --gpus all and MIG ids reach the task and the worker id as the reference
// says: all leaves CUDA_VISIBLE_DEVICES unset, MIG 0.1 is written 0:1.
func TestGPUFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ gpus, env, wid string }{
		{"all", "CUDA=[unset] NVIDIA=[all]", ":gpuall"},
		{"0.1", "CUDA=[0:1] NVIDIA=[0:1]", ":gpu0:1"},
		{"1", "CUDA=[1] NVIDIA=[1]", ":gpu1"},
	} {
		t.Run(tc.gpus, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t)
			repo := gitRepo(t)
			// A CUDA_VISIBLE_DEVICES of the agent's own must not narrow --gpus.
			e := newEnv(t, srv.URL).with("CUDA_VISIBLE_DEVICES=3")
			id := srv.newTask(t, repo, "gpu", "env.sh", "bash")
			srv.enqueue(t, id, "q")
			a := startAgent(t, e, "daemon", "--queue", "q", "--gpus", tc.gpus)
			srv.waitStatus(t, id, api.StatusCompleted)
			want := tc.env + " WORKER=[" + hostname(t) + tc.wid + "]"
			if log := srv.logText(id); !strings.Contains(log, want) {
				t.Errorf("task log lacks %q:\n%s", want, log)
			}
			a.signal(syscall.SIGTERM)
			if code := a.wait(); code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}
		})
	}
}

func TestCPUOnly(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	repo := gitRepo(t)
	e := newEnv(t, srv.URL).with("CUDA_VISIBLE_DEVICES=3", "NVIDIA_VISIBLE_DEVICES=3")
	id := srv.newTask(t, repo, "cpu", "env.sh", "bash")
	srv.enqueue(t, id, "q")
	a := startAgent(t, e, "daemon", "--queue", "q", "--cpu-only")
	srv.waitStatus(t, id, api.StatusCompleted)
	wid := hostname(t) + ":cpu:0"
	want := "CUDA=[] NVIDIA=[none] WORKER=[" + wid + "]"
	if log := srv.logText(id); !strings.Contains(log, want) {
		t.Errorf("task log lacks %q:\n%s", want, log)
	}
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}
