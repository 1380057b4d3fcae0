package systemd

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
)

// DBus is a Manager that talks to the system manager over the system bus
// (/run/dbus/system_bus_socket). Create it with Connect and Close it when done.
type DBus struct {
	conn *sd.Conn
	// Journal returns the last journal lines of a unit; WaitActive attaches
	// them to units that failed. The default runs
	// `journalctl -u UNIT -n 20 --no-pager`.
	Journal func(ctx context.Context, unit string) (string, error)
	// Poll is how often WaitActive re-reads unit state (default 200ms).
	Poll time.Duration
}

var _ Manager = (*DBus)(nil)

// Connect opens a private connection to systemd on the system bus.
func Connect(ctx context.Context) (*DBus, error) {
	conn, err := sd.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd on the system bus: %w; is systemd PID 1 and dbus running (systemctl is-system-running)?", err)
	}
	// systemd only broadcasts JobRemoved on the system bus while some client
	// is subscribed; job results (Start/Stop/Restart) depend on it.
	if err := conn.Subscribe(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribe to systemd job signals: %w", err)
	}
	return &DBus{conn: conn, Journal: journalctl, Poll: 200 * time.Millisecond}, nil
}

// Close releases the bus connection.
func (m *DBus) Close() error {
	m.conn.Close()
	return nil
}

// Reload is `systemctl daemon-reload`.
func (m *DBus) Reload(ctx context.Context) error {
	if err := m.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("systemd daemon-reload: %w", err)
	}
	return nil
}

// Enable is `systemctl enable UNIT...`: it creates the [Install] symlinks.
// It does not reload; call Reload after writing unit files and before Enable.
func (m *DBus) Enable(ctx context.Context, units []string) error {
	if len(units) == 0 {
		return nil
	}
	if _, _, err := m.conn.EnableUnitFilesContext(ctx, units, false, false); err != nil {
		return fmt.Errorf("enable %s: %w; check that each unit file exists and has an [Install] section", strings.Join(units, " "), err)
	}
	return nil
}

// Disable is `systemctl disable UNIT...`.
func (m *DBus) Disable(ctx context.Context, units []string) error {
	if len(units) == 0 {
		return nil
	}
	if _, err := m.conn.DisableUnitFilesContext(ctx, units, false); err != nil {
		return fmt.Errorf("disable %s: %w", strings.Join(units, " "), err)
	}
	return nil
}

type jobFunc func(ctx context.Context, name, mode string, ch chan<- string) (int, error)

// Start queues a start job (mode "replace") and waits for its result. For a
// Type=notify unit the job completes when the service sends READY=1 or fails.
func (m *DBus) Start(ctx context.Context, unit string) error {
	return m.job(ctx, "start", unit, m.conn.StartUnitContext)
}

// Stop queues a stop job and waits for its result.
func (m *DBus) Stop(ctx context.Context, unit string) error {
	return m.job(ctx, "stop", unit, m.conn.StopUnitContext)
}

// Restart queues a restart job and waits for its result.
func (m *DBus) Restart(ctx context.Context, unit string) error {
	return m.job(ctx, "restart", unit, m.conn.RestartUnitContext)
}

// ResetFailed implements Manager.
func (m *DBus) ResetFailed(ctx context.Context, units []string) error {
	for _, u := range units {
		if err := m.conn.ResetFailedUnitContext(ctx, u); err != nil && !strings.Contains(err.Error(), "not loaded") {
			return fmt.Errorf("reset-failed %s: %w", u, err)
		}
	}
	return nil
}

func (m *DBus) job(ctx context.Context, verb, unit string, f jobFunc) error {
	// Buffered so the signal dispatcher never blocks if we stop listening.
	ch := make(chan string, 1)
	if _, err := f(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("%s %s: %w", verb, unit, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s %s: job result %q; see `journalctl -u %s` and `systemctl status %s`", verb, unit, res, unit, unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: gave up waiting for the job: %w", verb, unit, context.Cause(ctx))
	}
}

// WaitActive polls the units until each is active or failed, or timeout
// passes. Failed units carry their last journal lines in UnitState.Journal
// and in the error.
func (m *DBus) WaitActive(ctx context.Context, units []string, timeout time.Duration) ([]UnitState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	poll := m.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	states := make([]UnitState, len(units))
	done := make([]bool, len(units))
	for {
		pending := 0
		for i, u := range units {
			if done[i] {
				continue
			}
			s, err := m.state(ctx, u)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				return states, err
			}
			states[i] = s
			if s.Active() || s.Failed() {
				done[i] = true
				continue
			}
			pending++
		}
		if pending == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(poll):
		}
	}
	for i := range states {
		if states[i].Name == "" {
			states[i].Name = units[i]
		}
		if states[i].Failed() && m.Journal != nil {
			// The wait context may be spent; give journalctl its own short budget.
			jctx, jcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			j, err := m.Journal(jctx, units[i])
			jcancel()
			if err != nil {
				j = "(journal unavailable: " + err.Error() + ")"
			}
			states[i].Journal = j
		}
	}
	if err := waitError(states, timeout); err != nil {
		if parent := context.Cause(ctx); parent != nil && !errors.Is(parent, context.DeadlineExceeded) {
			return states, fmt.Errorf("%w (%v)", err, parent)
		}
		return states, err
	}
	return states, nil
}

// States lists the loaded units matching pattern (a glob such as
// AgentPattern), with their service status text and main PID.
func (m *DBus) States(ctx context.Context, pattern string) ([]UnitState, error) {
	list, err := m.conn.ListUnitsByPatternsContext(ctx, nil, []string{pattern})
	if err != nil {
		return nil, fmt.Errorf("list units matching %q: %w", pattern, err)
	}
	out := make([]UnitState, 0, len(list))
	for _, u := range list {
		s, err := m.state(ctx, u.Name)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (m *DBus) state(ctx context.Context, unit string) (UnitState, error) {
	p, err := m.conn.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return UnitState{Name: unit}, fmt.Errorf("read properties of %s: %w", unit, err)
	}
	s := UnitState{
		Name:        unit,
		LoadState:   str(p["LoadState"]),
		ActiveState: str(p["ActiveState"]),
		SubState:    str(p["SubState"]),
	}
	if us, ok := p["ActiveEnterTimestamp"].(uint64); ok && us != 0 {
		s.ActiveEnter = time.UnixMicro(int64(us))
	}
	if strings.HasSuffix(unit, ".service") && s.LoadState == "loaded" {
		sp, err := m.conn.GetUnitTypePropertiesContext(ctx, unit, "Service")
		if err != nil {
			return s, fmt.Errorf("read service properties of %s: %w", unit, err)
		}
		s.StatusText = str(sp["StatusText"])
		s.Result = str(sp["Result"])
		if pid, ok := sp["MainPID"].(uint32); ok {
			s.MainPID = pid
		}
	}
	return s, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func journalctl(ctx context.Context, unit string) (string, error) {
	out, err := exec.CommandContext(ctx, "journalctl", "-u", unit, "-n", "20", "--no-pager", "-o", "short-precise").CombinedOutput()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("journalctl -u %s: %w", unit, err)
	}
	return strings.TrimSpace(string(out)), nil
}
