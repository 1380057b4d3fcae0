package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/agent/diskguard"
	"github.com/gpufleet/clearml-agent-go/agent/docker"
	"github.com/gpufleet/clearml-agent-go/agent/gpu"
	"github.com/gpufleet/clearml-agent-go/agent/metrics"
	"github.com/gpufleet/clearml-agent-go/agent/preempt"
	"github.com/gpufleet/clearml-agent-go/agent/worker"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// The daemon's operations settings: busy-GPU gating, the disk watermarks,
// the preemption watch and metrics (docs/operations.md).

// opsSettings are read and checked once at start; a bad value is a one-line
// error naming its key.
type opsSettings struct {
	busy    gpu.BusyPolicy
	disk    diskguard.Settings
	preempt preempt.Options
}

func loadOpsSettings(cfg *config.Config) (opsSettings, error) {
	var s opsSettings
	var err error
	if s.busy, err = gpu.ParseBusyPolicy(cfg.Agent().GPUBusyPolicy); err != nil {
		return s, withOrigin(cfg, gpu.BusyPolicyKey, err)
	}
	if s.disk, err = diskguard.LoadSettings(cfg); err != nil {
		return s, err
	}
	if s.preempt.Provider, err = preempt.ParseProvider(configText(cfg, preempt.KeyProvider)); err != nil {
		return s, withOrigin(cfg, preempt.KeyProvider, err)
	}
	if s.preempt.Endpoint, err = preempt.ParseEndpoint(configText(cfg, preempt.KeyEndpoint)); err != nil {
		return s, withOrigin(cfg, preempt.KeyEndpoint, err)
	}
	if s.preempt.Interval, err = preempt.ParsePollInterval(configText(cfg, preempt.KeyPollInterval)); err != nil {
		return s, withOrigin(cfg, preempt.KeyPollInterval, err)
	}
	return s, nil
}

// configText is a scalar setting as written ("" when unset).
func configText(cfg *config.Config, key string) string {
	v, ok := cfg.Get(key)
	if !ok || v == nil {
		return ""
	}
	if s, ok := cfg.String(key); ok {
		return s
	}
	return fmt.Sprint(v)
}

// withOrigin adds where key was set to err, when it was set somewhere.
func withOrigin(cfg *config.Config, key string, err error) error {
	if o := cfg.Origin(key); o != "" && o != "default" {
		return fmt.Errorf("%w (set in %s)", err, o)
	}
	return err
}

// busyChecker is gpu.BusyChecker (tests pass a fake).
type busyChecker interface {
	Check() (gpu.BusyReport, error)
}

// gateConfig is what the daemon's gate looks at before every pop.
type gateConfig struct {
	// busy checks the agent's GPUs; nil for cpu-only agents.
	busy busyChecker
	// gpus are the GPU indices the agent was given (--gpus 0,1 or 0:1);
	// empty for every GPU. Their clearml_agent_gpu_busy series exist from
	// the first check on.
	gpus []int
	// disk runs the disk guard (eviction, then the floor).
	disk    func() diskguard.Result
	metrics *metrics.Metrics
	log     *slog.Logger
}

// newGate returns the daemon's gate (worker.Config.Gate): the disk floor
// (after evicting cache entries while below the threshold), then the
// busy-GPU check. A machine without NVML is never busy (logged once, and
// the GPUs are not asked again); other errors of either check are logged
// once per change and do not hold the agent.
func newGate(c gateConfig) func(ctx context.Context) (bool, string) {
	var mu sync.Mutex
	noNVML := false
	lastErr := map[string]string{}
	seen := map[int]bool{}
	for _, i := range c.gpus {
		seen[i] = true
	}
	logErr := func(what string, err error) {
		msg := ""
		if err != nil {
			msg = oneline.Of(err)
		}
		if msg == lastErr[what] {
			return
		}
		lastErr[what] = msg
		if msg != "" {
			c.log.Warn(what+" failed; taking tasks regardless (logged again only when this changes)", "err", msg)
		}
	}
	return func(ctx context.Context) (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		var why []string
		if c.disk != nil {
			r := c.disk()
			logErr("disk space check", r.Err)
			if !r.OK {
				why = append(why, r.Message)
			}
		}
		if c.busy != nil && !noNVML {
			rep, err := c.busy.Check()
			switch {
			case errors.Is(err, gpu.ErrNoNVML):
				noNVML = true
				c.log.Warn("busy-GPU check off: NVML is not available on this machine", "err", err.Error())
			case err != nil:
				logErr("busy-GPU check", err)
			default:
				logErr("busy-GPU check", nil)
				busy := map[int]bool{}
				for _, d := range rep.Busy {
					if i, ok := gpuIndex(d); ok {
						busy[i], seen[i] = true, true
					}
				}
				for i := range seen {
					c.metrics.SetGPUBusy(i, busy[i])
				}
				if rep.IsBusy() {
					why = append(why, rep.Summary())
				}
			}
		}
		if len(why) > 0 {
			return false, strings.Join(why, "; ")
		}
		return true, ""
	}
}

// gpuIndex is the NVML index of a device as the busy report names it ("0",
// "0:1" for a MIG slot of GPU 0); a UUID has none.
func gpuIndex(dev string) (int, bool) {
	head, _, _ := strings.Cut(dev, ":")
	i, err := strconv.Atoi(head)
	return i, err == nil && i >= 0
}

// gpuIndices are the GPU indices of a --gpus value ("0,1", "0:1", "2.1");
// none for "all", "" or UUIDs.
func gpuIndices(gpus string) []int {
	var out []int
	for _, d := range strings.Split(strings.ReplaceAll(gpus, ".", ":"), ",") {
		if i, ok := gpuIndex(strings.TrimSpace(d)); ok && !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	return out
}

// busyDevices are the devices of a --gpus value for gpu.NewBusyChecker
// (empty: every GPU).
func busyDevices(gpus string) []string {
	if gpus == "" || strings.EqualFold(gpus, "all") {
		return nil
	}
	var out []string
	for _, d := range strings.Split(strings.ReplaceAll(gpus, ".", ":"), ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// diskLayout is where the daemon's disk use lives.
type diskLayout struct {
	stateDir string
	// venv mode
	venvsDir, venvCache, vcsCache, pipDownload string
	// docker mode: the host caches of the task containers, one set per image
	dockerCacheRoot string
}

// daemonDiskLayout is the disk layout of a daemon with these settings.
func daemonDiskLayout(g *Globals, cfg *config.Config, stateDir, workerID string, dockerMode bool) diskLayout {
	a := cfg.Agent()
	l := diskLayout{stateDir: stateDir}
	if dockerMode {
		l.dockerCacheRoot = filepath.Join(g.Home(), ".clearml", "docker-cache", safeName(workerID))
		return l
	}
	l.venvsDir = a.VenvsDir
	l.venvCache = cmp.Or(g.Getenv("CLEARML_AGENT_VENV_CACHE_PATH"), a.VenvsCache.Path)
	if a.VCSCacheEnabled {
		l.vcsCache = a.VCSCachePath
	}
	l.pipDownload = a.PipDownloadCache
	return l
}

// guard builds the disk guard for the current caches (docker mode: the
// cache directories of every image used so far).
func (l diskLayout) guard(s diskguard.Settings, log func(string)) *diskguard.Guard {
	g := &diskguard.Guard{Settings: s, Log: log}
	if l.dockerCacheRoot != "" {
		g.Paths = []string{l.stateDir, l.dockerCacheRoot}
		images, _ := os.ReadDir(l.dockerCacheRoot)
		for _, im := range images {
			if !im.IsDir() {
				continue
			}
			dir := filepath.Join(l.dockerCacheRoot, im.Name())
			g.Caches = append(g.Caches,
				diskguard.Cache{Name: "venv cache (" + im.Name() + ")", Dir: filepath.Join(dir, docker.CacheVenvs)},
				diskguard.Cache{Name: "vcs cache (" + im.Name() + ")", Dir: filepath.Join(dir, docker.CacheVCS)})
		}
		return g
	}
	g.Paths = []string{l.stateDir, l.venvsDir, l.pipDownload}
	g.Caches = []diskguard.Cache{{Name: "venv cache", Dir: l.venvCache}, {Name: "vcs cache", Dir: l.vcsCache}}
	return g
}

// diskGate runs the guard before a pop. Evictions are logged as they
// happen; a message the guard repeats on every pass (a cache that stays
// below the threshold) is logged once until it changes.
func diskGate(l diskLayout, s diskguard.Settings, log *slog.Logger) func() diskguard.Result {
	if s.ThresholdGB <= 0 && s.FloorGB <= 0 {
		return nil
	}
	var prev, cur map[string]bool
	logf := func(msg string) {
		cur[msg] = true
		if !prev[msg] {
			log.Warn(msg)
		}
	}
	return func() diskguard.Result {
		cur = map[string]bool{}
		r := l.guard(s, logf).Run()
		prev = cur
		return r
	}
}

// watchPreemption starts the termination-notice watch; on a notice the
// daemon drains, aborts and requeues its tasks and exits 0.
func watchPreemption(ctx context.Context, o preempt.Options, d *worker.Daemon, m *metrics.Metrics, log *slog.Logger) error {
	o.Logf = func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if strings.HasPrefix(msg, "preemption: watching") || strings.HasSuffix(msg, "answers again") {
			log.Info(msg)
		} else {
			log.Warn(msg)
		}
	}
	notices, err := preempt.Watch(ctx, o)
	if err != nil {
		return err
	}
	go func() {
		for n := range notices {
			m.SetState(metrics.StatePreempted)
			d.Preempt("instance preempted ("+n.Provider+")", n.Reason)
		}
	}()
	return nil
}

// startMetrics serves the metrics when --metrics-listen is set (nil
// metrics otherwise). An address in use is logged once and the agent runs
// without metrics, unless --metrics-required: then it is the error.
func startMetrics(ctx context.Context, listen string, required bool, log *slog.Logger) (*metrics.Metrics, func(), error) {
	if listen == "" {
		if required {
			return nil, nil, errors.New("--metrics-required needs --metrics-listen (or CLEARML_AGENT_METRICS_LISTEN), e.g. --metrics-listen 127.0.0.1:9101")
		}
		return nil, func() {}, nil
	}
	m := metrics.New()
	bound, stop, err := metrics.Start(ctx, listen, m, required, func(format string, args ...any) {
		log.Warn(fmt.Sprintf(format, args...))
	})
	if err != nil {
		return nil, nil, err
	}
	if bound != "" {
		log.Info("metrics at http://"+bound+"/metrics", "listen", bound)
	}
	return m, stop, nil
}
