// Package metrics keeps one agent's Prometheus metrics and serves them
// (opt-in: --metrics-listen 127.0.0.1:PORT) at /metrics, with /healthz.
//
// Every method of *Metrics is safe on a nil receiver (a no-op), so the
// daemon calls them unconditionally whether metrics are on or not. The
// metrics live in their own registry, never the global one. ALERTS.md has
// example alert rules.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// Namespace prefixes every metric name of the agent.
const Namespace = "clearml_agent"

// Agent states (the state label of clearml_agent_state). SetState takes
// others too.
const (
	StateStarting  = "starting"
	StateNotReady  = "not_ready"
	StateIdle      = "idle"
	StateRunning   = "running"
	StateDraining  = "draining"
	StatePreempted = "preempted"
	StateStopping  = "stopping"
)

// Task outcomes (the outcome label of clearml_agent_tasks_total).
const (
	OutcomeCompleted = "completed"
	OutcomeFailed    = "failed"
	OutcomeStopped   = "stopped"
	OutcomeAborted   = "aborted"
	OutcomePreempted = "preempted"
)

// Setup phases (the phase label of clearml_agent_setup_duration_seconds).
const (
	PhaseClone      = "clone"
	PhaseVenv       = "venv"
	PhasePip        = "pip"
	PhaseDockerPull = "docker_pull"
)

var (
	knownStates   = []string{StateStarting, StateNotReady, StateIdle, StateRunning, StateDraining, StatePreempted, StateStopping}
	knownOutcomes = []string{OutcomeCompleted, OutcomeFailed, OutcomeStopped, OutcomeAborted, OutcomePreempted}
)

// Metrics holds one agent's metrics. Create it with New.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler
	now     func() time.Time
	started time.Time

	state        *prometheus.GaugeVec
	tasks        *prometheus.CounterVec
	taskDuration prometheus.Histogram
	setup        *prometheus.HistogramVec
	logShipped   prometheus.Counter
	logSpooled   prometheus.Counter
	logDropped   prometheus.Counter
	serverErrors *prometheus.CounterVec
	gpuBusy      *prometheus.GaugeVec

	lastPoll atomic.Int64 // unix nanoseconds of the last successful poll; 0 = none yet

	mu       sync.Mutex
	curState string
}

// New makes the metrics, in state starting, with the Go runtime and process
// collectors, in a registry of their own.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), now: time.Now}
	m.started = m.now()
	m.state = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "state",
		Help: "The agent's state: 1 for the current state, 0 for the others.",
	}, []string{"state"})
	m.tasks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "tasks_total",
		Help: "Tasks ended, by outcome (completed, failed, stopped, aborted, preempted).",
	}, []string{"outcome"})
	m.taskDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "task_duration_seconds",
		Help:    "How long tasks ran, from pickup to end, setup included.",
		Buckets: []float64{10, 30, 60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 24 * 3600, 72 * 3600},
	})
	m.setup = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "setup_duration_seconds",
		Help:    "How long each setup phase of a task took (clone, venv, pip, docker_pull, ...).",
		Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800},
	}, []string{"phase"})
	m.logShipped = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "log_lines_shipped_total",
		Help: "Task log lines the server accepted.",
	})
	m.logSpooled = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "log_lines_spooled_total",
		Help: "Task log lines written to the spool file because memory was full (the server is slow or down).",
	})
	m.logDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "log_lines_dropped_total",
		Help: "Task log lines lost: the spool was full or the server rejected them for good.",
	})
	m.serverErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "server_errors_total",
		Help: "Failed calls to the ClearML server, by endpoint (e.g. queues.get_next_task).",
	}, []string{"endpoint"})
	m.gpuBusy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "gpu_busy",
		Help: "1 while a process that is not this agent's task uses the GPU, else 0.",
	}, []string{"gpu"})
	sincePoll := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "seconds_since_last_poll",
		Help: "Seconds since the last successful poll of the server (since the agent started while none succeeded yet).",
	}, m.secondsSincePoll)

	m.reg.MustRegister(m.state, m.tasks, m.taskDuration, m.setup, m.logShipped, m.logSpooled,
		m.logDropped, m.serverErrors, m.gpuBusy, sincePoll,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Known label values exist from the start, so rates and alerts see them.
	for _, s := range knownStates {
		m.state.WithLabelValues(s).Set(0)
	}
	for _, o := range knownOutcomes {
		m.tasks.WithLabelValues(o)
	}
	m.SetState(StateStarting)

	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	return m
}

// Registry is the registry the metrics live in (nil for a nil *Metrics).
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the metrics in the Prometheus exposition formats; a nil
// *Metrics serves 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return m.handler
}

// Values gathers the registry as a scrape does and returns each sample
// line of the text exposition as `name{labels}` -> value (comments left
// out): what a scrape sees, for tests and debugging dumps.
func (m *Metrics) Values() map[string]string {
	out := map[string]string{}
	if m == nil {
		return out
	}
	mfs, err := m.reg.Gather()
	if err != nil {
		return out
	}
	var b strings.Builder
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		_ = enc.Encode(mf)
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			out[line[:i]] = line[i+1:]
		}
	}
	return out
}

// SetState makes state the current one: its series 1, every other 0.
func (m *Metrics) SetState(state string) {
	if m == nil || state == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if state == m.curState {
		return
	}
	if m.curState != "" {
		m.state.WithLabelValues(m.curState).Set(0)
	}
	m.state.WithLabelValues(state).Set(1)
	m.curState = state
}

// TaskEnded counts a task that ended with outcome after running for d.
func (m *Metrics) TaskEnded(outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.tasks.WithLabelValues(outcome).Inc()
	m.taskDuration.Observe(max(d.Seconds(), 0))
}

// SetupPhase records how long one setup phase of a task took.
func (m *Metrics) SetupPhase(phase string, d time.Duration) {
	if m == nil {
		return
	}
	m.setup.WithLabelValues(phase).Observe(max(d.Seconds(), 0))
}

// LogShipped counts n log lines the server accepted.
func (m *Metrics) LogShipped(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.logShipped.Add(float64(n))
}

// LogSpooled counts n log lines written to the spool file.
func (m *Metrics) LogSpooled(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.logSpooled.Add(float64(n))
}

// LogDropped counts n log lines lost.
func (m *Metrics) LogDropped(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.logDropped.Add(float64(n))
}

// ServerError counts a failed call to the server endpoint (e.g.
// "queues.get_next_task").
func (m *Metrics) ServerError(endpoint string) {
	if m == nil {
		return
	}
	m.serverErrors.WithLabelValues(endpoint).Inc()
}

// PollSucceeded records a successful poll of the server at t.
func (m *Metrics) PollSucceeded(t time.Time) {
	if m == nil {
		return
	}
	m.lastPoll.Store(t.UnixNano())
}

// SetGPUBusy records whether a foreign process (not this agent's task) uses
// the GPU with index idx (NVML index); a negative idx is ignored.
func (m *Metrics) SetGPUBusy(idx int, busy bool) {
	if m == nil || idx < 0 {
		return
	}
	v := 0.0
	if busy {
		v = 1
	}
	m.gpuBusy.WithLabelValues(strconv.Itoa(idx)).Set(v)
}

func (m *Metrics) secondsSincePoll() float64 {
	since := m.started
	if ns := m.lastPoll.Load(); ns != 0 {
		since = time.Unix(0, ns)
	}
	return max(m.now().Sub(since).Seconds(), 0)
}
