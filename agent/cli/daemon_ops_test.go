package cli

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/agent/diskguard"
	"github.com/gpufleet/clearml-agent-go/agent/gpu"
	"github.com/gpufleet/clearml-agent-go/agent/metrics"
)

// fakeBusy is a busy checker whose answers the test sets.
type fakeBusy struct {
	mu    sync.Mutex
	rep   gpu.BusyReport
	err   error
	calls int
}

func (f *fakeBusy) Check() (gpu.BusyReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.rep, f.err
}

func (f *fakeBusy) set(rep gpu.BusyReport, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rep, f.err = rep, err
}

// logLines is a slog handler keeping "LEVEL message" lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logLines) WithGroup(string) slog.Handler      { return l }
func (l *logLines) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

// The daemon's gate with an injected busy checker (NVML is absent here):
// a busy GPU holds the agent with the report's summary, per-GPU metrics
// follow, and it opens when the GPU is free again.
func TestGateBusyGPU(t *testing.T) {
	fb := &fakeBusy{}
	m := metrics.New()
	logs := &logLines{}
	gate := newGate(gateConfig{busy: fb, gpus: []int{0, 1}, metrics: m, log: slog.New(logs)})
	pol, _ := gpu.ParseBusyPolicy("wait")
	busy := gpu.BusyReport{Policy: pol, Foreign: []gpu.BusyProcess{{GPU: "1", PID: 4242, Command: "python train.py", UsedMiB: 10240}}, Busy: []string{"1"}}
	fb.set(busy, nil)
	ok, why := gate(t.Context())
	want := "GPU 1 busy: pid 4242 (python train.py) 10240 MiB, not this agent's; waiting (agent.gpu_busy_policy=wait)"
	if ok || why != want {
		t.Errorf("gate = %v %q; want held with %q", ok, why, want)
	}
	s := m.Values()
	if s[`clearml_agent_gpu_busy{gpu="0"}`] != "0" || s[`clearml_agent_gpu_busy{gpu="1"}`] != "1" {
		t.Errorf("gpu_busy 0=%s 1=%s; want 0 and 1", s[`clearml_agent_gpu_busy{gpu="0"}`], s[`clearml_agent_gpu_busy{gpu="1"}`])
	}
	fb.set(gpu.BusyReport{Policy: pol}, nil)
	if ok, why := gate(t.Context()); !ok || why != "" {
		t.Errorf("gate with a free GPU = %v %q", ok, why)
	}
	if s := m.Values(); s[`clearml_agent_gpu_busy{gpu="1"}`] != "0" {
		t.Errorf("gpu_busy 1=%s after it was freed", s[`clearml_agent_gpu_busy{gpu="1"}`])
	}

	// Another NVML error: taking tasks, logged once per change.
	fb.set(gpu.BusyReport{}, errors.New("NVML GPU 0: GPU is lost"))
	for range 3 {
		if ok, _ := gate(t.Context()); !ok {
			t.Error("an NVML error held the agent")
		}
	}
	if n := logs.count("busy-GPU check failed"); n != 1 {
		t.Errorf("the NVML error was logged %d times, want once", n)
	}
	// No NVML at all: not busy, logged once, NVML not asked again.
	fb.set(gpu.BusyReport{}, gpu.ErrNoNVML)
	for range 3 {
		if ok, _ := gate(t.Context()); !ok {
			t.Error("a machine without NVML held the agent")
		}
	}
	if n := logs.count("busy-GPU check off"); n != 1 || fb.calls != 6 {
		t.Errorf("no NVML: logged %d times, %d checks; want once and no check after it", n, fb.calls)
	}
}

// The disk floor holds the agent with the guard's message (logged once
// while it stays the same), and the busy check joins it.
func TestGateDiskFloor(t *testing.T) {
	dir := t.TempDir()
	logs := &logLines{}
	log := slog.New(logs)
	l := diskLayout{stateDir: dir, venvsDir: filepath.Join(dir, "venvs"), venvCache: filepath.Join(dir, "vc")}
	if err := os.MkdirAll(l.venvCache, 0o755); err != nil {
		t.Fatal(err)
	}
	check := diskGate(l, diskguard.Settings{ThresholdGB: 1e9, FloorGB: 1e9}, log)
	fb := &fakeBusy{}
	gate := newGate(gateConfig{busy: fb, disk: check, log: log})
	for range 3 {
		ok, why := gate(t.Context())
		if ok || !strings.HasPrefix(why, "disk full: ") || !strings.Contains(why, "agent.disk_min_free_gb=1000000000.0") {
			t.Fatalf("gate = %v %q; want held: disk full", ok, why)
		}
	}
	if n := logs.count("nothing left to evict"); n != 1 {
		t.Errorf("the cache below its threshold was logged %d times, want once", n)
	}
	pol, _ := gpu.ParseBusyPolicy("2048")
	fb.set(gpu.BusyReport{Policy: pol, Foreign: []gpu.BusyProcess{{GPU: "0", PID: 7, Command: "x", UsedMiB: 4096}}, Busy: []string{"0"}}, nil)
	if _, why := gate(t.Context()); !strings.HasPrefix(why, "disk full: ") || !strings.Contains(why, "; GPU 0 busy: pid 7 (x) 4096 MiB") {
		t.Errorf("gate = %q; want the disk and the GPU", why)
	}
	if diskGate(l, diskguard.Settings{}, log) != nil {
		t.Error("a disk gate with both watermarks off")
	}
}

// Bad values of the settings are one-line errors naming the key.
func TestLoadOpsSettings(t *testing.T) {
	for _, tc := range []struct{ conf, want string }{
		{"", ""},
		{"agent.gpu_busy_policy: sometimes", `agent.gpu_busy_policy "sometimes" is not valid; use wait, ignore, or a memory threshold in MiB such as 2048`},
		{"agent.disk_min_free_gb: lots", `agent.disk_min_free_gb "lots" is not a number`},
		{"agent.preemption.provider: oracle", `agent.preemption.provider: "oracle" is not a provider`},
		{"agent.preemption.endpoint: \"ftp://x\"", `agent.preemption.endpoint: "ftp://x" is not a base URL`},
		{"agent.preemption.poll_interval_sec: 0", `agent.preemption.poll_interval_sec: "0" is not a number of seconds`},
	} {
		cfg, err := config.Parse("clearml.conf", []byte(tc.conf))
		if err != nil {
			t.Fatal(err)
		}
		_, err = loadOpsSettings(cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.conf, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%q: err = %v; want one line containing %q", tc.conf, err, tc.want)
		}
	}
	cfg, _ := config.Parse("clearml.conf", []byte("agent.preemption { provider: GCE, endpoint: \"http://127.0.0.1:1/\", poll_interval_sec: 0.5 }\nagent.gpu_busy_policy: 2048MiB"))
	s, err := loadOpsSettings(cfg)
	if err != nil || s.preempt.Provider != "gce" || s.preempt.Endpoint != "http://127.0.0.1:1" || s.preempt.Interval != 500*time.Millisecond || s.busy.String() != "2048" {
		t.Errorf("settings %+v, %v", s, err)
	}
}

// An address in use: logged once and the agent goes on without metrics,
// or the start fails with --metrics-required.
func TestStartMetricsAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	logs := &logLines{}
	m, stop, err := startMetrics(t.Context(), ln.Addr().String(), false, slog.New(logs))
	if err != nil || m == nil {
		t.Fatalf("not required: %v", err)
	}
	stop()
	if n := logs.count("address already in use"); n != 1 {
		t.Errorf("logged %d times, want once", n)
	}
	_, _, err = startMetrics(t.Context(), ln.Addr().String(), true, slog.New(logs))
	if err == nil || !strings.Contains(err.Error(), "--metrics-listen "+ln.Addr().String()+": address already in use") {
		t.Errorf("required: err = %v", err)
	}
	if _, _, err := startMetrics(t.Context(), "", true, slog.New(logs)); err == nil || !strings.Contains(err.Error(), "--metrics-required needs --metrics-listen") {
		t.Errorf("required without an address: %v", err)
	}
	if _, _, err := startMetrics(t.Context(), "9101", false, slog.New(logs)); err == nil || !strings.Contains(err.Error(), "a port alone is not an address") {
		t.Errorf("bad address: %v", err)
	}
}

func TestGPUIndices(t *testing.T) {
	if got := gpuIndices("0,1:2,3.1,GPU-abc,all"); len(got) != 3 || got[0] != 0 || got[1] != 1 || got[2] != 3 {
		t.Errorf("gpuIndices = %v", got)
	}
	if got := busyDevices("0,2.1"); strings.Join(got, " ") != "0 2:1" {
		t.Errorf("busyDevices = %q", got)
	}
	if busyDevices("all") != nil || busyDevices("") != nil {
		t.Error("all GPUs must be no device list")
	}
}
