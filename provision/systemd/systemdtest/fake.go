package systemdtest

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gpufleet/clearml-agent-go/provision/systemd"
)

// Fake is an in-memory systemd.Manager. Units start "active/running" with
// StatusText Ready unless listed in Fail, which makes Start return a failed
// job and the unit show "failed". It is safe for concurrent use.
type Fake struct {
	mu sync.Mutex
	// Fail maps a unit name to the journal text it "logged" before failing.
	Fail map[string]string
	// Ready is the StatusText a started unit reports (default "ready").
	Ready string
	// Calls records every call as e.g. "enable clearml-agent@0.service".
	Calls   []string
	Enabled map[string]bool
	units   map[string]*systemd.UnitState
	pid     uint32
}

var _ systemd.Manager = (*Fake)(nil)

func (f *Fake) record(s string) {
	f.Calls = append(f.Calls, s)
}

func (f *Fake) unit(name string) *systemd.UnitState {
	if f.units == nil {
		f.units = map[string]*systemd.UnitState{}
	}
	u, ok := f.units[name]
	if !ok {
		u = &systemd.UnitState{Name: name, LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
		f.units[name] = u
	}
	return u
}

// Reload records a daemon-reload.
func (f *Fake) Reload(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("daemon-reload")
	return ctx.Err()
}

// Enable marks units enabled.
func (f *Fake) Enable(ctx context.Context, units []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Enabled == nil {
		f.Enabled = map[string]bool{}
	}
	for _, u := range units {
		f.record("enable " + u)
		f.Enabled[u] = true
	}
	return ctx.Err()
}

// Disable marks units disabled.
func (f *Fake) Disable(ctx context.Context, units []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range units {
		f.record("disable " + u)
		delete(f.Enabled, u)
	}
	return ctx.Err()
}

// Start makes the unit active, or failed when it is in Fail.
func (f *Fake) Start(ctx context.Context, unit string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("start " + unit)
	return f.start(ctx, unit)
}

func (f *Fake) start(ctx context.Context, unit string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	u := f.unit(unit)
	if _, bad := f.Fail[unit]; bad {
		u.ActiveState, u.SubState, u.Result, u.MainPID = "failed", "failed", "timeout", 0
		return fmt.Errorf("start %s: job result %q; see `journalctl -u %s` and `systemctl status %s`", unit, "failed", unit, unit)
	}
	f.pid++
	ready := f.Ready
	if ready == "" {
		ready = "ready"
	}
	u.ActiveState, u.SubState, u.Result, u.StatusText = "active", "running", "success", ready
	u.MainPID = 1000 + f.pid
	u.ActiveEnter = time.Now()
	return nil
}

// Stop makes the unit inactive.
func (f *Fake) Stop(ctx context.Context, unit string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("stop " + unit)
	u := f.unit(unit)
	u.ActiveState, u.SubState, u.MainPID, u.StatusText = "inactive", "dead", 0, ""
	return ctx.Err()
}

// Restart is Stop then Start.
func (f *Fake) Restart(ctx context.Context, unit string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("restart " + unit)
	return f.start(ctx, unit)
}

// ResetFailed records the call.
func (f *Fake) ResetFailed(ctx context.Context, units []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("reset-failed " + strings.Join(units, " "))
	return nil
}

// WaitActive reports the current state at once (the fake never transitions
// on its own); failed units carry their Fail journal text.
func (f *Fake) WaitActive(ctx context.Context, units []string, timeout time.Duration) ([]systemd.UnitState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]systemd.UnitState, 0, len(units))
	var bad []string
	for _, name := range units {
		s := *f.unit(name)
		if s.Failed() {
			s.Journal = f.Fail[name]
		}
		if !s.Active() {
			bad = append(bad, s.String())
		}
		out = append(out, s)
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("units not active: %v", bad)
	}
	return out, ctx.Err()
}

// States lists known units whose names match the glob pattern, sorted.
func (f *Fake) States(ctx context.Context, pattern string) ([]systemd.UnitState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []systemd.UnitState
	for name, u := range f.units {
		ok, err := path.Match(pattern, name)
		if err != nil {
			return nil, fmt.Errorf("list units matching %q: %w", pattern, err)
		}
		if ok {
			out = append(out, *u)
		}
	}
	slices.SortFunc(out, func(a, b systemd.UnitState) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, ctx.Err()
}
