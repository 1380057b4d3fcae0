package bench

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

func TestVerifyLines(t *testing.T) {
	t.Parallel()
	ev := func(msgs ...string) []api.Event {
		var out []api.Event
		for _, m := range msgs {
			out = append(out, api.Event{Type: "log", Msg: m})
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		events []api.Event
		n      int
		seen   int
		errHas string
	}{
		{"in order across events", ev("setup line", "bench-line 0000000\nbench-line 0000001", "bench-line 0000002\r\n"), 3, 3, ""},
		{"missing", ev("bench-line 0000000\nbench-line 0000002"), 3, 2, "line 2 arrived where line 1 was due"},
		{"duplicated", ev("bench-line 0000000\nbench-line 0000001", "bench-line 0000001\nbench-line 0000002"), 3, 4, "line 1 again"},
		{"reordered", ev("bench-line 0000001", "bench-line 0000000"), 2, 2, "line 1 arrived where line 0 was due"},
		{"truncated tail", ev("bench-line 0000000"), 2, 1, "only lines 0..0 of 2"},
		{"mangled", ev("bench-line 00x0000"), 1, 0, "mangled line"},
	} {
		seen, err := verifyLines(tc.events, tc.n)
		if seen != tc.seen {
			t.Errorf("%s: seen %d, want %d", tc.name, seen, tc.seen)
		}
		switch {
		case tc.errHas == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.name, err)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.errHas)
		}
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	rss, hwm, err := parseStatus([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t3\n"))
	if err != nil || rss != 1024 || hwm != 2048 {
		t.Errorf("parseStatus = %d, %d, %v; want 1024, 2048, nil", rss, hwm, err)
	}
	if _, _, err := parseStatus([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("parseStatus without Vm lines: want an error")
	}
	// Our own process has both lines.
	if rss, _, err := memKB(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("memKB(self) = %d, %v", rss, err)
	}
}

func TestEndpointOfAndCommandLine(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/v2.31/workers.register": "workers.register", "/tasks.stopped/": "tasks.stopped", "/events.add_batch": "events.add_batch",
	} {
		if got := endpointOf(in); got != want {
			t.Errorf("endpointOf(%q) = %q, want %q", in, got, want)
		}
	}
	got := commandLine(DefaultAgentCmd, "/opt/it's/clearml-agent", "/tmp/c.conf")
	want := `'/opt/it'\''s/clearml-agent' --config-file '/tmp/c.conf' daemon --queue bench --foreground`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("commandLine (-want +got):\n%s", diff)
	}
}

func TestMinMedian(t *testing.T) {
	t.Parallel()
	lo, med := minMedian([]time.Duration{5, 1, 3})
	if lo != 1 || med != 3 {
		t.Errorf("minMedian odd = %v, %v", lo, med)
	}
	lo, med = minMedian([]time.Duration{4, 2, 8, 6})
	if lo != 2 || med != 5 {
		t.Errorf("minMedian even = %v, %v", lo, med)
	}
}

// TestRecorderProbes drives the real emulator through the recorder: request
// and response probes fire on the right call, counts are per endpoint.
func TestRecorderProbes(t *testing.T) {
	t.Parallel()
	emu := emulator.New(emulator.Options{Credentials: map[string]string{accessKey: secretKey}})
	t.Cleanup(func() { _ = emu.Close() })
	rec := newRecorder(emu.Handler())
	hs := httptest.NewServer(rec)
	t.Cleanup(hs.Close)

	q := emu.CreateQueue("bench")
	id := emu.CreateTask(api.Task{Name: "t", Script: &api.Script{EntryPoint: "x.py"}})
	if err := emu.Enqueue(id, q); err != nil {
		t.Fatal(err)
	}
	reg := rec.watch("workers.register", false)
	gnt := rec.watch("queues.get_next_task", true, id)
	never := rec.watch("queues.get_next_task", false, "no-such-needle")

	c, err := api.New(api.Config{Host: hs.URL, AccessKey: accessKey, SecretKey: secretKey})
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	ctx := t.Context()
	if err := c.RegisterWorker(ctx, "w:cpu", []string{q}, 600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetNextTask(ctx, q); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.fired(); !ok {
		t.Error("workers.register probe did not fire")
	}
	if _, ok := gnt.fired(); !ok {
		t.Error("get_next_task response probe did not fire")
	}
	if _, ok := never.fired(); ok {
		t.Error("probe with an absent needle fired")
	}
	got := rec.counts(from, time.Now().Add(time.Second))
	if got["workers.register"] != 1 || got["queues.get_next_task"] != 1 {
		t.Errorf("counts = %v", got)
	}
}

// TestNotifyListener sends a datagram as an agent would.
func TestNotifyListener(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "bn") // short path: unix socket names are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n, err := listenNotify(filepath.Join(dir, "n.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	before := time.Now()
	conn, err := net.Dial("unixgram", n.path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "STATUS=idle\nREADY=1"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := n.first(before, "READY=1"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("READY=1 never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := n.first(time.Now().Add(time.Hour), "READY=1"); ok {
		t.Error("first() ignored its time bound")
	}
}

var _ http.Handler = (*recorder)(nil)

// TestDockerPhaseSkipsWithoutEngine: no engine answers, so the docker phase
// adds a SKIPPED row naming the engine and the fix, and Run succeeds.
func TestDockerPhaseSkipsWithoutEngine(t *testing.T) {
	t.Parallel()
	figs, err := Run(t.Context(), Config{AgentBin: "/nonexistent/clearml-agent", NoRepo: true, Phases: []string{"docker"},
		DockerHost: "unix:///nonexistent/clearml-bench-docker.sock"})
	if err != nil {
		t.Fatal(err)
	}
	if len(figs) != 1 {
		t.Fatalf("figures = %+v, want the one SKIPPED row", figs)
	}
	f := figs[0]
	if f.Metric != "phase docker" || f.Value != "SKIPPED" ||
		!strings.Contains(f.Note, "unix:///nonexistent/clearml-bench-docker.sock") || !strings.Contains(f.Note, "scripts/test-dockerd.sh start") {
		t.Errorf("row = %+v, want phase docker SKIPPED naming the engine and the fix", f)
	}
}
