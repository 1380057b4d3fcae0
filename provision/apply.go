package provision

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/provision/systemd"
	"github.com/gpufleet/clearml-agent-go/unitgen"
)

// DefaultWaitTimeout bounds how long Apply waits for started units to report READY.
const DefaultWaitTimeout = 2 * time.Minute

// rollbackReloadTimeout bounds the daemon-reload after a rollback, which
// runs even when Apply's context was cancelled.
const rollbackReloadTimeout = 30 * time.Second

// Host is what Apply needs from the machine it runs on.
type Host struct {
	// Manager talks to the running systemd; unused (may be nil) with a Root.
	Manager systemd.Manager
	// EnsureUser creates the agent system account if missing (inside root
	// when root is not "") and returns its uid and gid, or -1, -1 when the
	// account does not exist there yet (it is then created at boot from
	// sysusers.d). Nil uses useradd.
	EnsureUser func(ctx context.Context, root, user string) (uid, gid int, err error)
	// Euid is the effective user id; nil uses os.Geteuid.
	Euid func() int
	// NoStart writes and enables but starts nothing.
	NoStart bool
	// WaitTimeout for READY=1 (default DefaultWaitTimeout).
	WaitTimeout time.Duration
	// Log receives one line per step; nil discards.
	Log io.Writer
}

// Result is what Apply did.
type Result struct {
	Written, Removed            []string // host paths
	Started, Restarted, Stopped []string // units
	NotStarted                  []string // units written but not started (after an error, or with NoStart)
	States                      []systemd.UnitState
	RolledBack                  bool
}

func (h *Host) logf(format string, args ...any) {
	if h.Log != nil {
		fmt.Fprintf(h.Log, format+"\n", args...)
	}
}

// ErrNotRoot is returned (wrapped) when provisioning the live system as non-root.
var ErrNotRoot = errors.New("must run as root")

// RequireRoot returns a one-line error when changing the live system without root.
func RequireRoot(euid int, what string) error {
	if euid == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w (it writes /etc/systemd/system and manages units); rerun with sudo, use --dry-run to preview, or --root DIR for an image", what, ErrNotRoot)
}

// Apply carries out the plan. See the package documentation for what happens
// on failure.
func Apply(ctx context.Context, p *Plan, h Host) (*Result, error) {
	res := &Result{}
	live := p.Inputs.Root == ""
	euid := os.Geteuid
	if h.Euid != nil {
		euid = h.Euid
	}
	if live {
		if err := RequireRoot(euid(), "agent-provision apply"); err != nil {
			return res, err
		}
		if h.Manager == nil {
			return res, errors.New("agent-provision apply: no systemd connection; systemd must be PID 1 (or use --root DIR, or `agent-provision run`)")
		}
	}
	if h.WaitTimeout <= 0 {
		h.WaitTimeout = DefaultWaitTimeout
	}
	ensure := h.EnsureUser
	if ensure == nil {
		ensure = EnsureUser
	}
	userRoot := p.Inputs.Root
	if userRoot == "" {
		userRoot = p.Inputs.SystemRoot
	}
	uid, gid, err := ensure(ctx, userRoot, p.Inputs.User)
	if err != nil {
		return res, err
	}

	var active map[string]bool
	if live {
		// Units the plan keeps but that are down get started again.
		states, err := h.Manager.States(ctx, systemd.AgentPattern)
		if err != nil {
			return res, fmt.Errorf("list agent units: %w", err)
		}
		active = map[string]bool{}
		for _, s := range states {
			active[s.Name] = s.Active() || s.ActiveState == "activating" || s.ActiveState == "reloading"
		}
	}

	// Stop agents that are going away before their files disappear.
	var stops, starts, restarts []string
	for _, u := range p.Units {
		switch u.Action {
		case UnitStop:
			stops = append(stops, u.Unit)
		case UnitStart:
			starts = append(starts, u.Unit)
		case UnitRestart:
			restarts = append(restarts, u.Unit)
		case UnitKeep:
			if live && !active[u.Unit] {
				starts = append(starts, u.Unit)
			}
		}
	}
	if live && len(stops) > 0 {
		for _, u := range stops {
			h.logf("stop %s", u)
			if err := h.Manager.Stop(ctx, u); err != nil {
				return res, fmt.Errorf("%w; nothing was written yet", err)
			}
			res.Stopped = append(res.Stopped, u)
		}
		if err := h.Manager.Disable(ctx, stops); err != nil {
			return res, fmt.Errorf("%w; units %s are stopped, nothing was written yet", err, strings.Join(stops, ", "))
		}
	}

	// Write files; remember what was there for a rollback.
	var undo []undoEntry
	rollback := func(cause error) error {
		var failed []string
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i].restore(); err != nil {
				failed = append(failed, err.Error())
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("%v; rolling back the written files also failed: %s", cause, strings.Join(failed, "; "))
		}
		res.RolledBack = true
		note := ""
		if live && len(undo) > 0 {
			// Also after Ctrl-C (a cancelled ctx): systemd must see the old files.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackReloadTimeout)
			defer cancel()
			if err := h.Manager.Reload(rctx); err != nil {
				note = fmt.Sprintf(" (daemon-reload after the rollback failed too: %v; run systemctl daemon-reload)", err)
			}
		}
		return fmt.Errorf("%v; no unit was started, so the files written by this run were rolled back%s", cause, note)
	}
	for _, f := range p.Files {
		if f.Action == FileKeep {
			continue
		}
		u, err := snapshot(f.Path)
		if err != nil {
			return res, rollback(err)
		}
		undo = append(undo, u)
		if f.Action == FileDelete {
			h.logf("remove %s", f.Path)
			if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, rollback(fmt.Errorf("remove %s: %v", f.Path, err))
			}
			res.Removed = append(res.Removed, f.Path)
			continue
		}
		h.logf("write %s", f.Path)
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return res, rollback(fmt.Errorf("write %s: %v; check that %s is writable", f.Path, err, filepath.Dir(f.Path)))
		}
		o, g := -1, -1
		if f.AgentOwned {
			o, g = uid, gid
		}
		if err := config.WriteFileAtomic(f.Path, f.New, f.Mode, o, g); err != nil {
			return res, rollback(err)
		}
		res.Written = append(res.Written, f.Path)
	}

	var units []string
	for _, a := range p.Agents {
		units = append(units, a.Unit)
	}
	if !live {
		for _, u := range stops {
			link := filepath.Join(p.Inputs.Root, unitgen.UnitDir, unitgen.TargetName+".wants", u)
			if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, rollback(fmt.Errorf("disable %s offline: %v", u, err))
			}
		}
		if err := systemd.EnableOffline(ctx, p.Inputs.Root, unitgen.TargetName, units); err != nil {
			return res, rollback(err)
		}
		h.logf("enabled %s and %d agent unit(s) under %s; nothing started (image build)", unitgen.TargetName, len(units), p.Inputs.Root)
		return res, nil
	}

	// Live: reload, enable, start; roll back only while nothing started.
	if len(undo) == 0 && len(starts) == 0 && len(restarts) == 0 {
		h.logf("nothing to change: every agent is provisioned as asked and running")
		return res, nil
	}
	if len(undo) > 0 {
		h.logf("daemon-reload")
		if err := h.Manager.Reload(ctx); err != nil {
			return res, rollback(err)
		}
	}
	if err := h.Manager.Enable(ctx, append([]string{unitgen.TargetName}, units...)); err != nil {
		return res, rollback(err)
	}
	if h.NoStart {
		res.NotStarted = append(append(res.NotStarted, starts...), restarts...)
		h.logf("--no-start: units written and enabled, not started: %s", strings.Join(res.NotStarted, ", "))
		return res, nil
	}
	pending := append(append([]string{}, starts...), restarts...)
	fail := func(err error) (*Result, error) {
		if len(res.Started)+len(res.Restarted) == 0 {
			res.NotStarted = pending
			return res, rollback(err)
		}
		done := map[string]bool{}
		for _, u := range append(append([]string{}, res.Started...), res.Restarted...) {
			done[u] = true
		}
		for _, u := range pending {
			if !done[u] {
				res.NotStarted = append(res.NotStarted, u)
			}
		}
		return res, fmt.Errorf("%v; already started: %s; written but not started: %s; fix the cause and re-run agent-provision (it picks up where this stopped)",
			err, strings.Join(append(append([]string{}, res.Started...), res.Restarted...), ", "), orNone(res.NotStarted))
	}
	for _, u := range starts {
		h.logf("start %s", u)
		if err := h.Manager.Start(ctx, u); err != nil {
			return fail(err)
		}
		res.Started = append(res.Started, u)
	}
	for _, u := range restarts {
		h.logf("restart %s", u)
		if err := h.Manager.Restart(ctx, u); err != nil {
			return fail(err)
		}
		res.Restarted = append(res.Restarted, u)
	}
	if err := h.Manager.Start(ctx, unitgen.TargetName); err != nil {
		return res, err
	}
	if len(pending) > 0 {
		states, err := h.Manager.WaitActive(ctx, pending, h.WaitTimeout)
		res.States = states
		if err != nil {
			return res, err
		}
		for _, s := range states {
			h.logf("%s", s.String())
		}
	}
	return res, nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// undoEntry restores one path to what it was before Apply touched it.
type undoEntry struct {
	path     string
	existed  bool
	data     []byte
	mode     fs.FileMode
	uid, gid int
}

func snapshot(p string) (undoEntry, error) {
	u := undoEntry{path: p, uid: -1, gid: -1}
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return u, fmt.Errorf("stat %s: %v", p, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return u, fmt.Errorf("read %s: %v", p, err)
	}
	u.existed, u.data, u.mode = true, data, fi.Mode().Perm()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		u.uid, u.gid = int(st.Uid), int(st.Gid)
	}
	return u, nil
}

func (u undoEntry) restore() error {
	if !u.existed {
		if err := os.Remove(u.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	return config.WriteFileAtomic(u.path, u.data, u.mode, u.uid, u.gid)
}

// EnsureUser creates the system account with useradd when it is missing
// (with --root inside that tree, if it has an /etc/passwd) and returns its
// ids, or -1, -1 when an image root has no /etc/passwd yet (sysusers.d
// creates the account at boot, tmpfiles.d fixes the config's owner).
func EnsureUser(ctx context.Context, root, user string) (int, int, error) {
	passwd := filepath.Join(root, "/etc/passwd")
	if root != "" {
		if _, err := os.Stat(passwd); err != nil {
			return -1, -1, nil
		}
	}
	if uid, gid, ok := lookupPasswd(passwd, user); ok {
		return uid, gid, nil
	}
	args := []string{"--system", "--user-group", "--home-dir", AgentHome, "--no-create-home", "--shell", "/usr/sbin/nologin", "--comment", "ClearML agent"}
	if root != "" {
		args = append(args, "--root", root)
	}
	out, err := exec.CommandContext(ctx, "useradd", append(args, user)...).CombinedOutput()
	if err != nil {
		return -1, -1, fmt.Errorf("create system user %s: useradd: %v: %s; create it yourself or pass --user EXISTING", user, err, strings.TrimSpace(string(out)))
	}
	uid, gid, ok := lookupPasswd(passwd, user)
	if !ok {
		return -1, -1, fmt.Errorf("create system user %s: useradd succeeded but %s has no entry for it", user, passwd)
	}
	return uid, gid, nil
}

func lookupPasswd(file, user string) (int, int, bool) {
	f, err := os.Open(file)
	if err != nil {
		return -1, -1, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 4 || fields[0] != user {
			continue
		}
		uid, err1 := strconv.Atoi(fields[2])
		gid, err2 := strconv.Atoi(fields[3])
		if err1 == nil && err2 == nil {
			return uid, gid, true
		}
	}
	return -1, -1, false
}
