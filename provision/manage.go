package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/internal/credfile"
	"github.com/gpufleet/clearml-agent-go/provision/systemd"
	"github.com/gpufleet/clearml-agent-go/unitgen"
)

// StatusRow is one line of `agent-provision status`.
type StatusRow struct {
	Unit     string
	GPUs     string
	Queues   string
	WorkerID string // from the environment file, else the agent's pid file
	State    systemd.UnitState
	// Docker mode: the engine the agent uses and its containers (filled in
	// by AddContainers), or why they could not be listed.
	Docker     bool
	DockerHost string
	Containers []ContainerRow
	DockerErr  string
}

// ContainerRow is one container of a docker-mode agent.
type ContainerRow struct {
	ID, Image, Task, Status string
	Worker                  string // the container's clearml-worker-id (services: the child worker)
}

// Status joins the agents' environment files under root ("" = /) with the
// unit states systemd reports (mgr may be nil, e.g. without systemd).
func Status(ctx context.Context, mgr systemd.Manager, root string) ([]StatusRow, error) {
	rows := map[string]*StatusRow{}
	dir := filepath.Join(root, "/", unitgen.DefaultEnvDir)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("list %s: %v", dir, err)
	}
	for _, e := range entries {
		inst, ok := strings.CutSuffix(e.Name(), ".env")
		if !ok {
			continue
		}
		env, err := ReadEnvFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		u := unitgen.InstanceUnit(inst)
		r := &StatusRow{Unit: u, GPUs: env[unitgen.EnvGPUs], Queues: strings.ReplaceAll(env[unitgen.EnvQueues], " ", ","),
			WorkerID: env[unitgen.EnvWorkerID], State: systemd.UnitState{Name: u, ActiveState: "unknown"}}
		if r.WorkerID == "" {
			r.WorkerID = runningWorkerID(stateDirOf(root, inst))
		}
		if dockerAgent(env) {
			r.Docker, r.DockerHost = true, env[EnvDockerHost]
			if r.DockerHost == "" {
				r.DockerHost = DefaultDockerHost
			}
		}
		rows[u] = r
	}
	if mgr != nil {
		states, err := mgr.States(ctx, systemd.AgentPattern)
		if err != nil {
			return nil, fmt.Errorf("list agent units: %w", err)
		}
		for _, s := range states {
			r, ok := rows[s.Name]
			if !ok && !s.Active() && !s.Failed() {
				continue // removed, merely still loaded
			}
			if !ok {
				r = &StatusRow{Unit: s.Name}
				rows[s.Name] = r
			}
			r.State = s
		}
	}
	out := make([]StatusRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Unit < out[j].Unit })
	return out, nil
}

// FormatStatus renders rows as a table; now computes uptimes.
func FormatStatus(rows []StatusRow, now time.Time) string {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "UNIT\tGPUS\tQUEUES\tWORKER\tSTATE\tSTATUS\tUPTIME")
	for _, r := range rows {
		up := "-"
		if r.State.Active() && !r.State.ActiveEnter.IsZero() {
			up = now.Sub(r.State.ActiveEnter).Truncate(time.Second).String()
		}
		state := r.State.ActiveState
		if r.State.SubState != "" {
			state += "/" + r.State.SubState
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Unit, dash(r.GPUs), dash(r.Queues), dash(r.WorkerID), state, dash(r.State.StatusText), up)
	}
	w.Flush()
	if len(rows) == 0 {
		return "no agents provisioned; run agent-provision --gpus 0,1 (or --cpu-agents 1)\n"
	}
	formatContainers(&b, rows)
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ReadEnvFile reads KEY=VALUE lines (credfile.ReadEnv).
func ReadEnvFile(file string) (map[string]string, error) { return credfile.ReadEnv(file) }

// RemoveOptions say what Remove deletes.
type RemoveOptions struct {
	Root        string // image root; "" is the live system
	SystemRoot  string // where / of the live system is (tests); "" is /
	ConfigPath  string // default unitgen.DefaultConfigPath
	PurgeConfig bool   // delete clearml.conf too
}

// Remove stops and disables every provisioned agent and deletes the files
// agent-provision wrote (clearml.conf only with PurgeConfig). It returns the
// host paths it removed.
func Remove(ctx context.Context, o RemoveOptions, h Host) ([]string, error) {
	live := o.Root == ""
	if o.ConfigPath == "" {
		o.ConfigPath = unitgen.DefaultConfigPath
	}
	if live {
		euid := os.Geteuid
		if h.Euid != nil {
			euid = h.Euid
		}
		if err := RequireRoot(euid(), "agent-provision remove"); err != nil {
			return nil, err
		}
		if h.Manager == nil {
			return nil, errors.New("agent-provision remove: no systemd connection; systemd must be PID 1 (or use --root DIR)")
		}
	}
	base := o.Root
	if base == "" {
		base = o.SystemRoot
	}
	hp := func(target string) string { return filepath.Join(base, "/", target) }
	envDir := hp(unitgen.DefaultEnvDir)
	units := map[string]bool{}
	entries, err := os.ReadDir(envDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("list %s: %v", envDir, err)
	}
	for _, e := range entries {
		if inst, ok := strings.CutSuffix(e.Name(), ".env"); ok {
			units[unitgen.InstanceUnit(inst)] = true
		}
	}
	if live {
		states, err := h.Manager.States(ctx, systemd.AgentPattern)
		if err != nil {
			return nil, fmt.Errorf("list agent units: %w", err)
		}
		for _, s := range states {
			units[s.Name] = true
		}
		names := make([]string, 0, len(units))
		for u := range units {
			names = append(names, u)
		}
		sort.Strings(names)
		if err := h.Manager.Stop(ctx, unitgen.TargetName); err != nil {
			h.logf("stop %s: %v", unitgen.TargetName, err)
		}
		for _, u := range names {
			h.logf("stop %s", u)
			if err := h.Manager.Stop(ctx, u); err != nil {
				return nil, fmt.Errorf("%w; nothing was deleted, re-run agent-provision remove", err)
			}
		}
		if err := h.Manager.Disable(ctx, append([]string{unitgen.TargetName}, names...)); err != nil {
			return nil, fmt.Errorf("%w; agents are stopped, nothing was deleted; re-run agent-provision remove", err)
		}
	}
	var removed []string
	rm := func(p string) error {
		err := os.Remove(p)
		if err == nil {
			removed = append(removed, p)
			h.logf("remove %s", p)
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %v", p, err)
	}
	var paths []string
	for _, e := range entries {
		paths = append(paths, filepath.Join(envDir, e.Name()))
	}
	unitDir := hp(unitgen.UnitDir)
	if !live {
		// What EnableOffline (systemctl --root enable) linked.
		wants := filepath.Join(unitDir, unitgen.TargetName+".wants")
		links, _ := os.ReadDir(wants)
		for _, l := range links {
			paths = append(paths, filepath.Join(wants, l.Name()))
		}
		paths = append(paths, wants, filepath.Join(unitDir, "multi-user.target.wants", unitgen.TargetName))
	}
	paths = append(paths, envDir, filepath.Join(unitDir, unitgen.TemplateName), filepath.Join(unitDir, unitgen.TargetName),
		hp(SysusersPath), hp(TmpfilesPath))
	if o.PurgeConfig {
		paths = append(paths, hp(o.ConfigPath), filepath.Dir(hp(o.ConfigPath)))
	}
	for _, p := range paths {
		if err := rm(p); err != nil {
			if isNotEmpty(err) {
				continue // a directory that still holds files the user put there
			}
			return removed, err
		}
	}
	if live {
		if err := h.Manager.Reload(ctx); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

func isNotEmpty(err error) bool {
	return strings.Contains(err.Error(), "directory not empty")
}

// Credential environment variables read by FirstBoot (and the CLI).
const (
	EnvAccessKey = "CLEARML_API_ACCESS_KEY"
	EnvSecretKey = "CLEARML_API_SECRET_KEY"
)

// emptyCreds is the credentials line config.Render writes without keys.
const emptyCreds = `credentials {"access_key": "", "secret_key": ""}`

// FirstBoot fills the credentials into a clearml.conf written with
// --first-boot-creds: from env (CLEARML_API_ACCESS_KEY/SECRET_KEY) or, when
// those are unset, from credsFile (the same KEY=VALUE lines). A config that
// already has credentials is left alone. It reports whether it wrote.
func FirstBoot(configPath string, env map[string]string, credsFile string) (bool, error) {
	if configPath == "" {
		configPath = unitgen.DefaultConfigPath
	}
	data, err := os.ReadFile(configPath)
	if err != nil {
		return false, fmt.Errorf("first boot: read %s: %v; provision first (agent-provision --root DIR ... --first-boot-creds)", configPath, err)
	}
	if !bytes.Contains(data, []byte(emptyCreds)) {
		return false, nil
	}
	access, secret := env[EnvAccessKey], env[EnvSecretKey]
	if access == "" && secret == "" && credsFile != "" {
		f, err := ReadEnvFile(credsFile)
		if err != nil {
			return false, fmt.Errorf("first boot: %v", err)
		}
		access, secret = f[EnvAccessKey], f[EnvSecretKey]
	}
	if access == "" || secret == "" {
		return false, fmt.Errorf("first boot: %s has no credentials and neither %s/%s nor a creds file (--creds-file, lines %s=...) provide both", configPath, EnvAccessKey, EnvSecretKey, EnvAccessKey)
	}
	a, _ := json.Marshal(access)
	s, _ := json.Marshal(secret)
	line := fmt.Sprintf(`credentials {"access_key": %s, "secret_key": %s}`, a, s)
	out := bytes.Replace(data, []byte(emptyCreds), []byte(line), 1)
	u, err := snapshot(configPath)
	if err != nil {
		return false, err
	}
	if err := config.WriteFileAtomic(configPath, out, 0o600, u.uid, u.gid); err != nil {
		return false, fmt.Errorf("first boot: %v", err)
	}
	return true, nil
}
