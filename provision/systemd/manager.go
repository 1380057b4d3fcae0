package systemd

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// AgentPattern matches every instance of the agent unit template; pass it to
// Manager.States for a status table.
const AgentPattern = "clearml-agent@*.service"

// Manager is what provisioning needs from systemd. DBus implements it on a
// live system; systemdtest.Fake implements it in memory.
type Manager interface {
	// Reload is `systemctl daemon-reload`: re-read unit files from disk.
	Reload(ctx context.Context) error
	// Enable is `systemctl enable UNIT...` (names or absolute unit file paths).
	Enable(ctx context.Context, units []string) error
	// Disable is `systemctl disable UNIT...`.
	Disable(ctx context.Context, units []string) error
	// Start, Stop and Restart queue a job and wait for its result; anything
	// but "done" is an error naming the unit and the result.
	Start(ctx context.Context, unit string) error
	Stop(ctx context.Context, unit string) error
	Restart(ctx context.Context, unit string) error
	// ResetFailed is `systemctl reset-failed UNIT...`: forget failures and
	// the start-rate limit, so a unit that gave up can be started again.
	ResetFailed(ctx context.Context, units []string) error
	// WaitActive polls the units until each is active or failed, or timeout
	// passes. It always returns the last state seen for every unit, and an
	// error naming each unit that did not become active.
	WaitActive(ctx context.Context, units []string, timeout time.Duration) ([]UnitState, error)
	// States lists the loaded units matching a glob such as AgentPattern.
	States(ctx context.Context, pattern string) ([]UnitState, error)
}

// UnitState is one unit's runtime state as systemd reports it.
type UnitState struct {
	Name        string
	LoadState   string // loaded, not-found, masked, ...
	ActiveState string // active, activating, failed, inactive, ...
	SubState    string // running, start, auto-restart, dead, ...
	Result      string // Service.Result: success, timeout, exit-code, ...
	StatusText  string // the last STATUS= the service sent with sd_notify
	MainPID     uint32
	ActiveEnter time.Time // zero when never active
	// Journal holds the unit's last journal lines when WaitActive saw it fail.
	Journal string
}

// Active reports whether the unit is up (for Type=notify: READY=1 was sent).
func (s UnitState) Active() bool { return s.ActiveState == "active" }

// Failed reports whether the unit has failed (or was found missing).
func (s UnitState) Failed() bool {
	return s.ActiveState == "failed" || s.LoadState == "not-found" || s.LoadState == "masked" ||
		s.LoadState == "error" || s.LoadState == "bad-setting"
}

// String is a one-line summary, e.g. "clearml-agent@0.service active/running pid 42 \"polling queue gpu\"".
func (s UnitState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s/%s", s.Name, s.ActiveState, s.SubState)
	if s.LoadState != "" && s.LoadState != "loaded" {
		fmt.Fprintf(&b, " (load %s)", s.LoadState)
	}
	if s.Result != "" && s.Result != "success" {
		fmt.Fprintf(&b, " result %s", s.Result)
	}
	if s.MainPID != 0 {
		fmt.Fprintf(&b, " pid %d", s.MainPID)
	}
	if s.StatusText != "" {
		fmt.Fprintf(&b, " %q", s.StatusText)
	}
	return b.String()
}

// waitError describes the units that did not become active. The first line
// names them all; the journal lines of failed units follow, indented.
func waitError(states []UnitState, timeout time.Duration) error {
	var bad []string
	var details strings.Builder
	for _, s := range states {
		switch {
		case s.Active():
			continue
		case s.Failed():
			bad = append(bad, s.String())
		default:
			bad = append(bad, fmt.Sprintf("%s (still %s after %s)", s.String(), s.ActiveState, timeout))
		}
		if s.Journal != "" {
			fmt.Fprintf(&details, "\n  last journal lines of %s:", s.Name)
			for _, l := range strings.Split(strings.TrimRight(s.Journal, "\n"), "\n") {
				details.WriteString("\n    " + l)
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("units not active: %s; see `journalctl -u UNIT` and `systemctl status UNIT`%s",
		strings.Join(bad, "; "), details.String())
}
