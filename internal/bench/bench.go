package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/emulator"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// DefaultAgentCmd is the agent command template: {agent} is Config.AgentBin
// and {conf} the clearml.conf the harness writes. The Python agent accepts the
// same flags.
const DefaultAgentCmd = "{agent} --config-file {conf} daemon --queue bench --foreground"

// Config says what to run and for how long.
type Config struct {
	AgentCmd    string        // template, see DefaultAgentCmd
	AgentBin    string        // fills {agent}
	Python      string        // python of the tasks (script.binary); default python3
	Starts      int           // cold starts timed to workers.register/READY (besides the idle run); default 3
	IdleSettle  time.Duration // idle time before the RSS sample; default 10 s
	IdleWindow  time.Duration // window of the idle request count; default 30 s
	Repeats     int           // warm get_next_task -> first line runs; default 5
	Lines       int           // lines of the log relay task; default 1,000,000
	FastPoll    string        // CLEARML_AGENT_QUEUE_POLL_FREQ_SEC for the task phases; default 0.5
	NoRepo      bool          // tasks carry their script in script.diff instead of a git repository
	Keep        bool          // keep the temporary directory (agent logs, conf)
	FleetSizes  []int         // idle agents run side by side in the fleet phase; default 1 and 8
	FleetSettle time.Duration // idle time after the fleet registered, before the first sample; default 15 s
	FleetWindow time.Duration // idle window in which the fleet's major faults are counted; default 60 s
	Phases      []string      // subset of "start", "idle", "fleet", "tasks", "docker"; empty runs all
	Progress    io.Writer     // progress lines; nil discards

	// The docker phase (see DefaultDocker*).
	DockerHost   string // engine; default $DOCKER_HOST, else DefaultDockerHost
	DockerPython string // image of the python task; default DefaultDockerPython
	DockerBash   string // image of the bash task; default DefaultDockerBash
	DockerFlags  string // appended to AgentCmd; default DefaultDockerFlags
	DockerArgs   string // CLEARML_AGENT_EXTRA_DOCKER_ARGS; default DefaultDockerArgs
	DockerBinary string // CLEARML_AGENT_DOCKER_BINARY when set; else the agent finds <agent>-static
}

func (c *Config) defaults() {
	if c.AgentCmd == "" {
		c.AgentCmd = DefaultAgentCmd
	}
	if c.Python == "" {
		c.Python = "python3"
	}
	if c.Starts <= 0 {
		c.Starts = 3
	}
	if c.IdleSettle <= 0 {
		c.IdleSettle = 10 * time.Second
	}
	if c.IdleWindow <= 0 {
		c.IdleWindow = 30 * time.Second
	}
	if c.Repeats <= 0 {
		c.Repeats = 5
	}
	if c.Lines <= 0 {
		c.Lines = 1_000_000
	}
	if c.FastPoll == "" {
		c.FastPoll = "0.5"
	}
	if len(c.FleetSizes) == 0 {
		c.FleetSizes = []int{1, 8}
	}
	if c.FleetSettle <= 0 {
		c.FleetSettle = 15 * time.Second
	}
	if c.FleetWindow <= 0 {
		c.FleetWindow = 60 * time.Second
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.DockerPython == "" {
		c.DockerPython = DefaultDockerPython
	}
	if c.DockerBash == "" {
		c.DockerBash = DefaultDockerBash
	}
	if c.DockerFlags == "" {
		c.DockerFlags = DefaultDockerFlags
	}
	if c.DockerArgs == "" {
		c.DockerArgs = DefaultDockerArgs
	}
}

// Figure is one row of the result table.
type Figure struct {
	Metric string
	Value  string
	Target string
	Note   string
}

// harness is one benchmark run's shared state.
type harness struct {
	cfg      Config
	dir      string
	conf     string
	workerID string
	srv      *emulator.Server
	rec      *recorder
	notify   *notifyListener
	queueID  string
	repoURL  string
	figures  []Figure
}

const (
	accessKey = "BENCHACCESSKEY00"
	secretKey = "bench-secret-key-0000000000"
)

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.cfg.Progress, "bench: "+format+"\n", args...)
}

func (h *harness) add(metric, value, target, note string) {
	h.figures = append(h.figures, Figure{Metric: metric, Value: value, Target: target, Note: note})
	h.logf("%s = %s %s", metric, value, note)
}

// Run serves the emulator, runs every phase against the agent command and
// returns the figures. A phase that fails, or cannot run here (the docker
// phase without an engine), adds a row saying why and the run goes on; the error is non-nil only when the harness itself cannot start.
func Run(ctx context.Context, cfg Config) ([]Figure, error) {
	cfg.defaults()
	dir, err := os.MkdirTemp("", "clearml-bench-")
	if err != nil {
		return nil, err
	}
	if cfg.Keep {
		fmt.Fprintf(cfg.Progress, "bench: keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	h := &harness{cfg: cfg, dir: dir, workerID: fmt.Sprintf("bench-%d:cpu", os.Getpid())}
	h.srv = emulator.New(emulator.Options{Credentials: map[string]string{accessKey: secretKey},
		Logger: slog.New(slog.DiscardHandler)})
	defer h.srv.Close()
	h.queueID = h.srv.CreateQueue("bench")
	h.rec = newRecorder(h.srv.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: h.rec, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	if h.notify, err = listenNotify(filepath.Join(dir, "notify.sock")); err != nil {
		return nil, err
	}
	defer h.notify.Close()
	if err := h.writeConf("http://" + ln.Addr().String()); err != nil {
		return nil, err
	}
	if err := h.writeTasks(); err != nil {
		return nil, err
	}

	phases := []struct {
		name string
		run  func(context.Context) error
	}{
		{"start", h.phaseStart},
		{"idle", h.phaseIdle},
		{"fleet", h.phaseFleet},
		{"tasks", h.phaseTasks},
		{"docker", h.phaseDocker},
	}
	for _, p := range phases {
		if ctx.Err() != nil {
			break
		}
		if len(cfg.Phases) > 0 && !slices.Contains(cfg.Phases, p.name) {
			continue
		}
		h.logf("phase %s", p.name)
		var skip skipped
		switch err := p.run(ctx); {
		case errors.As(err, &skip):
			h.add("phase "+p.name, "SKIPPED", "", skip.why)
		case err != nil:
			h.add("phase "+p.name, "FAILED", "", oneline.Of(err))
		}
	}
	return h.figures, ctx.Err()
}

// writeConf writes clearml.conf: the emulator, and every cache under dir.
func (h *harness) writeConf(url string) error {
	p := func(name string) string { return fmt.Sprintf("%q", filepath.Join(h.dir, name)) }
	text := fmt.Sprintf(`api {
    api_server: %q
    web_server: %q
    files_server: %q
    credentials {
        access_key: %q
        secret_key: %q
    }
}
agent {
    venvs_dir: %s
    venvs_cache {
        max_entries: 10
        free_space_threshold_gb: 0
        path: %s
    }
    vcs_cache {
        enabled: true
        path: %s
    }
    pip_download_cache {
        enabled: true
        path: %s
    }
}
`, url, url, url, accessKey, secretKey, p("venvs-builds"), p("venvs-cache"), p("vcs-cache"), p("pip-download-cache"))
	h.conf = filepath.Join(h.dir, "clearml.conf")
	return writeAtomic(h.conf, []byte(text), 0o600)
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Task scripts. first.py prints its marker from argv-free env-free code so
// the same script works under any agent.
const (
	abortScript = `import signal, sys, time
def on_term(signum, frame):
    print("got SIGTERM", flush=True)
    time.sleep(1)
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
print("BENCH-ABORT-READY", flush=True)
while True:
    time.sleep(0.05)
`
	firstScript = `import os
print("BENCH-FIRST-" + os.environ.get("CLEARML_TASK_ID", "?"), flush=True)
`
)

func linesScript(n int) string {
	return fmt.Sprintf(`import sys
w = sys.stdout.write
for i in range(%d):
    w("bench-line %%07d\n" %% i)
sys.stdout.flush()
`, n)
}

func (h *harness) scripts() map[string]string {
	return map[string]string{"first.py": firstScript, "lines.py": linesScript(h.cfg.Lines), "abort.py": abortScript}
}

// writeTasks makes the git repository the tasks run from (unless NoRepo).
func (h *harness) writeTasks() error {
	if h.cfg.NoRepo {
		return nil
	}
	dir := filepath.Join(h.dir, "tasks-repo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, text := range h.scripts() {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "."},
		{"-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q", "-m", "bench tasks"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s in %s: %v: %s; install git or use -no-repo", strings.Join(args, " "), dir, err, oneline.First(string(out)))
		}
	}
	h.repoURL = "file://" + dir
	return nil
}

// Print writes the figures as a table.
func Print(w io.Writer, figs []Figure) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tVALUE\tTARGET\tNOTE")
	for _, f := range figs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Metric, f.Value, f.Target, f.Note)
	}
	return tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

// minMedian returns the minimum and the median of ds.
func minMedian(ds []time.Duration) (lo, med time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[0], s[len(s)/2]
	}
	return s[0], (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// waitUntil polls cond every 10 ms until it holds or d passes.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// waitProbe waits for p, the agent's exit or d.
func waitProbe(ctx context.Context, p *probe, a *agentProc, d time.Duration) (time.Time, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	var exited <-chan struct{}
	if a != nil {
		exited = a.done
	}
	select {
	case <-p.hit:
		return p.at, nil
	case <-exited:
		if at, ok := p.fired(); ok {
			return at, nil
		}
		return time.Time{}, fmt.Errorf("agent exited (%v) before %s; its log ends: %s", a.err, p.endpoint, a.tail(5))
	case <-t.C:
		msg := fmt.Sprintf("no %s within %s", p.endpoint, d)
		if a != nil {
			msg += "; agent log ends: " + a.tail(5)
		}
		return time.Time{}, errors.New(msg)
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}
