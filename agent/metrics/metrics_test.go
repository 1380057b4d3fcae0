package metrics

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const eventually = 20 * time.Second

type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// serve starts m on a free local port and returns its base URL.
func serve(t *testing.T, m *Metrics) string {
	t.Helper()
	addr, stop, err := Start(context.Background(), "127.0.0.1:0", m, true, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return "http://" + addr
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}

// scrape parses /metrics as Prometheus does.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(get(t, base+"/metrics")))
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func labelsOf(m *dto.Metric) string {
	var s []string
	for _, l := range m.GetLabel() {
		s = append(s, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(s, ",")
}

func histogram(t *testing.T, fams map[string]*dto.MetricFamily, name, labels string) *dto.Histogram {
	t.Helper()
	for _, m := range fams[name].GetMetric() {
		if labelsOf(m) == labels {
			return m.GetHistogram()
		}
	}
	t.Fatalf("no %s{%s} in the scrape", name, labels)
	return nil
}

// fixedClock makes secondsSincePoll exact.
func fixedClock(m *Metrics) time.Time {
	now := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now }
	m.started = now.Add(-time.Hour)
	return now
}

func TestScrapeAfterEachMethod(t *testing.T) {
	m := New()
	now := fixedClock(m)
	m.SetState(StateIdle)
	m.SetState(StateRunning)
	m.TaskEnded(OutcomeCompleted, 90*time.Second)
	m.TaskEnded(OutcomeFailed, 30*time.Second)
	m.TaskEnded(OutcomeCompleted, 3*time.Hour)
	m.SetupPhase(PhaseClone, 2*time.Second)
	m.SetupPhase(PhasePip, 45*time.Second)
	m.SetupPhase(PhasePip, 15*time.Second)
	m.LogShipped(120)
	m.LogShipped(0)
	m.LogShipped(-5)
	m.LogSpooled(30)
	m.LogDropped(2)
	m.ServerError("queues.get_next_task")
	m.ServerError("queues.get_next_task")
	m.ServerError("events.add_batch")
	m.PollSucceeded(now.Add(-42 * time.Second))
	m.SetGPUBusy(0, false)
	m.SetGPUBusy(1, true)
	m.SetGPUBusy(-1, true) // ignored
	base := serve(t, m)

	want := `
# HELP clearml_agent_state The agent's state: 1 for the current state, 0 for the others.
# TYPE clearml_agent_state gauge
clearml_agent_state{state="draining"} 0
clearml_agent_state{state="idle"} 0
clearml_agent_state{state="not_ready"} 0
clearml_agent_state{state="preempted"} 0
clearml_agent_state{state="running"} 1
clearml_agent_state{state="starting"} 0
clearml_agent_state{state="stopping"} 0
# HELP clearml_agent_tasks_total Tasks ended, by outcome (completed, failed, stopped, aborted, preempted).
# TYPE clearml_agent_tasks_total counter
clearml_agent_tasks_total{outcome="aborted"} 0
clearml_agent_tasks_total{outcome="completed"} 2
clearml_agent_tasks_total{outcome="failed"} 1
clearml_agent_tasks_total{outcome="preempted"} 0
clearml_agent_tasks_total{outcome="stopped"} 0
# HELP clearml_agent_log_lines_shipped_total Task log lines the server accepted.
# TYPE clearml_agent_log_lines_shipped_total counter
clearml_agent_log_lines_shipped_total 120
# HELP clearml_agent_log_lines_spooled_total Task log lines written to the spool file because memory was full (the server is slow or down).
# TYPE clearml_agent_log_lines_spooled_total counter
clearml_agent_log_lines_spooled_total 30
# HELP clearml_agent_log_lines_dropped_total Task log lines lost: the spool was full or the server rejected them for good.
# TYPE clearml_agent_log_lines_dropped_total counter
clearml_agent_log_lines_dropped_total 2
# HELP clearml_agent_server_errors_total Failed calls to the ClearML server, by endpoint (e.g. queues.get_next_task).
# TYPE clearml_agent_server_errors_total counter
clearml_agent_server_errors_total{endpoint="events.add_batch"} 1
clearml_agent_server_errors_total{endpoint="queues.get_next_task"} 2
# HELP clearml_agent_seconds_since_last_poll Seconds since the last successful poll of the server (since the agent started while none succeeded yet).
# TYPE clearml_agent_seconds_since_last_poll gauge
clearml_agent_seconds_since_last_poll 42
# HELP clearml_agent_gpu_busy 1 while a process that is not this agent's task uses the GPU, else 0.
# TYPE clearml_agent_gpu_busy gauge
clearml_agent_gpu_busy{gpu="0"} 0
clearml_agent_gpu_busy{gpu="1"} 1
`
	if err := testutil.ScrapeAndCompare(base+"/metrics", strings.NewReader(want),
		"clearml_agent_state", "clearml_agent_tasks_total", "clearml_agent_log_lines_shipped_total",
		"clearml_agent_log_lines_spooled_total", "clearml_agent_log_lines_dropped_total",
		"clearml_agent_server_errors_total", "clearml_agent_seconds_since_last_poll", "clearml_agent_gpu_busy"); err != nil {
		t.Error(err)
	}

	fams := scrape(t, base)
	if h := histogram(t, fams, "clearml_agent_task_duration_seconds", ""); h.GetSampleCount() != 3 || h.GetSampleSum() != 90+30+3*3600 {
		t.Errorf("task duration: count %d sum %g; want 3, %d", h.GetSampleCount(), h.GetSampleSum(), 90+30+3*3600)
	}
	if h := histogram(t, fams, "clearml_agent_setup_duration_seconds", "phase=clone"); h.GetSampleCount() != 1 || h.GetSampleSum() != 2 {
		t.Errorf("clone: count %d sum %g; want 1, 2", h.GetSampleCount(), h.GetSampleSum())
	}
	if h := histogram(t, fams, "clearml_agent_setup_duration_seconds", "phase=pip"); h.GetSampleCount() != 2 || h.GetSampleSum() != 60 {
		t.Errorf("pip: count %d sum %g; want 2, 60", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds", "process_resident_memory_bytes", "promhttp_metric_handler_requests_total"} {
		if fams[name] == nil {
			t.Errorf("no %s in the scrape", name)
		}
	}
	if got := get(t, base+"/healthz"); got != "ok\n" {
		t.Errorf("/healthz = %q", got)
	}
	if got := get(t, base+"/"); !strings.Contains(got, "/metrics") {
		t.Errorf("/ = %q", got)
	}
}

func TestExactlyOneState(t *testing.T) {
	m := New()
	base := serve(t, m)
	check := func(want string) {
		t.Helper()
		var ones []string
		for _, s := range scrape(t, base)["clearml_agent_state"].GetMetric() {
			if s.GetGauge().GetValue() == 1 {
				ones = append(ones, labelsOf(s))
			} else if s.GetGauge().GetValue() != 0 {
				t.Errorf("state %s = %g", labelsOf(s), s.GetGauge().GetValue())
			}
		}
		if len(ones) != 1 || ones[0] != "state="+want {
			t.Errorf("states at 1: %v; want only %s", ones, want)
		}
	}
	check(StateStarting)
	for _, s := range []string{StateNotReady, StateIdle, StateIdle, StateRunning, "custom_state", StateDraining, StatePreempted} {
		m.SetState(s)
		check(s)
	}
	m.SetState("") // ignored
	check(StatePreempted)
}

func TestSecondsSincePoll(t *testing.T) {
	m := New()
	now := fixedClock(m)
	if got := m.secondsSincePoll(); got != 3600 {
		t.Errorf("before any poll: %g; want 3600 (since start)", got)
	}
	m.PollSucceeded(now.Add(-1500 * time.Millisecond))
	if got := m.secondsSincePoll(); got != 1.5 {
		t.Errorf("%g; want 1.5", got)
	}
	m.PollSucceeded(now.Add(time.Minute)) // a clock step back is not negative age
	if got := m.secondsSincePoll(); got != 0 {
		t.Errorf("%g; want 0", got)
	}
}

func TestNilMetricsIsNoOp(t *testing.T) {
	var m *Metrics
	m.SetState(StateRunning)
	m.TaskEnded(OutcomeFailed, time.Second)
	m.SetupPhase(PhaseVenv, time.Second)
	m.LogShipped(1)
	m.LogSpooled(1)
	m.LogDropped(1)
	m.ServerError("x")
	m.PollSucceeded(time.Now())
	m.SetGPUBusy(0, true)
	if m.Registry() != nil {
		t.Error("nil Metrics has a registry")
	}
	if m.Handler() == nil {
		t.Error("nil Metrics has no handler")
	}
	if _, _, err := Start(context.Background(), "127.0.0.1:0", nil, false, nil); err == nil || !strings.Contains(err.Error(), "metrics.New") {
		t.Errorf("Start with nil metrics: %v", err)
	}
}

func TestAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	m := New()

	t.Run("not required: the agent starts, one line logged", func(t *testing.T) {
		l := &logs{}
		bound, stop, err := Start(context.Background(), addr, m, false, l.logf)
		if err != nil || stop == nil || bound != "" {
			t.Fatalf("Start = %q, %v; want no error, a stop func and no address", bound, err)
		}
		stop()
		stop()
		lines := l.all()
		if len(lines) != 1 || !strings.Contains(lines[0], addr) || !strings.Contains(lines[0], "already in use") || !strings.Contains(lines[0], "without a metrics endpoint") {
			t.Errorf("log %q: want exactly one line naming %s", lines, addr)
		}
		stop2, err := Serve(context.Background(), addr, m, false, l.logf)
		if err != nil || stop2 == nil {
			t.Fatalf("Serve: %v", err)
		}
		stop2()
	})
	t.Run("required: a one-line error", func(t *testing.T) {
		l := &logs{}
		for _, start := range []func() error{
			func() error { _, _, err := Start(context.Background(), addr, m, true, l.logf); return err },
			func() error { _, err := Serve(context.Background(), addr, m, true, l.logf); return err },
		} {
			err := start()
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, want := range []string{Flag, addr, "already in use", "pick a free port", "stop the other process"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q is not one line", msg)
			}
		}
		if len(l.all()) != 0 {
			t.Errorf("logged %q besides the error", l.all())
		}
	})
	// The listener still answers its owner: nothing was taken over.
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	if c, err := net.Dial("tcp", addr); err != nil {
		t.Errorf("the other process's listener broke: %v", err)
	} else {
		c.Close()
	}
}

func TestAddressNotOfThisMachine(t *testing.T) {
	const addr = "192.0.2.1:9101" // TEST-NET-1: no local interface has it
	l := &logs{}
	if _, _, err := Start(context.Background(), addr, New(), false, l.logf); err != nil {
		t.Fatalf("not required: %v", err)
	}
	if lines := l.all(); len(lines) != 1 || !strings.Contains(lines[0], "cannot listen") {
		t.Errorf("log %q: want one line", lines)
	}
	_, _, err := Start(context.Background(), addr, New(), true, nil)
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "cannot listen") || strings.Contains(err.Error(), "\n") {
		t.Errorf("required: %v; want a one-line error naming %s", err, addr)
	}
}

func TestBadAddress(t *testing.T) {
	cases := map[string]string{
		"9101":            "use 127.0.0.1:9101",
		" 9101":           "use 127.0.0.1:9101",
		"localhost":       "not host:port",
		"127.0.0.1":       "not host:port",
		"127.0.0.1:abc":   "is not a number",
		"127.0.0.1:70000": "is not a number from 0 to 65535",
		":-1":             "is not a number",
		"a b:9101":        "is not a host name",
		"[::1:9101":       "not host:port",
	}
	for addr, want := range cases {
		if err := ValidateAddr(addr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateAddr(%q) = %v; want an error with %q", addr, err, want)
		}
		for _, require := range []bool{false, true} {
			l := &logs{}
			_, _, err := Start(context.Background(), addr, New(), require, l.logf)
			if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), Flag) || !strings.Contains(err.Error(), want) {
				t.Errorf("Start(%q, require=%v) = %v; want a one-line error naming %s and %q", addr, require, err, Flag, want)
			}
		}
	}
	for _, addr := range []string{"127.0.0.1:9101", ":9101", "[::1]:9101", "localhost:0", "metrics.internal:9101"} {
		if err := ValidateAddr(addr); err != nil {
			t.Errorf("ValidateAddr(%q): %v", addr, err)
		}
	}
	// "" means metrics off.
	bound, stop, err := Start(context.Background(), "", New(), true, nil)
	if err != nil || bound != "" || stop == nil {
		t.Errorf(`Start("") = %q, %v; want off`, bound, err)
	}
	stop()
}

func TestStopAndContextEnd(t *testing.T) {
	m := New()
	addr, stop, err := Start(context.Background(), "127.0.0.1:0", m, true, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	get(t, "http://"+addr+"/healthz")
	stop()
	stop()
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("still serving after stop")
	}

	ctx, cancel := context.WithCancel(context.Background())
	addr, stop, err = Start(ctx, "127.0.0.1:0", m, true, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	get(t, "http://"+addr+"/healthz")
	cancel()
	deadline := time.Now().Add(eventually)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still listening after the context ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Methods from many goroutines while Prometheus scrapes (run with -race).
func TestConcurrentUpdatesAndScrapes(t *testing.T) {
	m := New()
	base := serve(t, m)
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				m.SetState([]string{StateIdle, StateRunning, StateDraining}[(w+i)%3])
				m.TaskEnded(OutcomeCompleted, time.Second)
				m.SetupPhase(PhaseVenv, time.Millisecond)
				m.LogShipped(1)
				m.LogSpooled(1)
				m.LogDropped(1)
				m.ServerError("tasks.ping")
				m.PollSucceeded(time.Now())
				m.SetGPUBusy(w%2, i%2 == 0)
			}
		}()
	}
	for range 5 {
		scrape(t, base)
	}
	wg.Wait()
	fams := scrape(t, base)
	ones := 0
	for _, s := range fams["clearml_agent_state"].GetMetric() {
		if s.GetGauge().GetValue() == 1 {
			ones++
		}
	}
	if ones != 1 {
		t.Errorf("%d states at 1 after concurrent SetState; want 1", ones)
	}
	for name, want := range map[string]float64{"clearml_agent_log_lines_shipped_total": workers * rounds, "clearml_agent_log_lines_dropped_total": workers * rounds} {
		if got := fams[name].GetMetric()[0].GetCounter().GetValue(); got != want {
			t.Errorf("%s = %g; want %g", name, got, want)
		}
	}
}
