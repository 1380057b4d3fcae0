package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
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
	insts, err := envInstances(dir)
	if err != nil {
		return nil, err
	}
	for _, inst := range insts {
		env, err := ReadEnvFile(filepath.Join(dir, inst+".env"))
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
		hp(SysusersPath), hp(TmpfilesPath), hp(PendingMarker(o.ConfigPath)))
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
	return FirstBootWait(context.Background(), configPath, env, CredsSource{File: credsFile, Timeout: -1})
}

// FirstBootWait is FirstBoot with credentials that may not be there yet:
// when env has neither key, it waits for src (WaitCredentials). A config
// that already has credentials is left alone without waiting.
func FirstBootWait(ctx context.Context, configPath string, env map[string]string, src CredsSource) (bool, error) {
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
	if access == "" && secret == "" && (src.File != "" || src.URL != "") {
		creds, err := WaitCredentials(ctx, src)
		if err != nil {
			return false, err
		}
		access, secret = creds[EnvAccessKey], creds[EnvSecretKey]
		if src.Log != nil && (creds[EnvGitUser] != "" || creds[EnvGitPass] != "") {
			fmt.Fprintf(src.Log, "warning: first boot fills in the API keys only; %s/%s from %s were not used (pass --git-user/--git-pass when provisioning)\n", EnvGitUser, EnvGitPass, src.what())
		}
	}
	if access == "" || secret == "" {
		return false, fmt.Errorf("first boot: %s has no credentials and neither %s/%s nor a creds file (--creds-file, lines %s=...) or --creds-url provide both", configPath, EnvAccessKey, EnvSecretKey, EnvAccessKey)
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

// Defaults of CredsSource.
const (
	DefaultCredsTimeout   = 5 * time.Minute
	DefaultCredsFirstWait = time.Second
	DefaultCredsMaxWait   = 15 * time.Second
	DefaultCredsRequest   = 10 * time.Second
	maxCredsBody          = 64 << 10
)

// CredsSource is where first boot finds the credentials: a file that
// something else writes (a secrets agent, the provider), or a metadata URL
// that answers 200 with KEY=VALUE lines. Both may not be there yet.
type CredsSource struct {
	File    string
	URL     string
	Headers http.Header // sent with URL requests
	// Timeout bounds the whole wait (default DefaultCredsTimeout); a
	// negative one tries once.
	Timeout time.Duration
	// The pause between tries starts at FirstWait and doubles up to
	// MaxWait; each request may take RequestTimeout (defaults above).
	FirstWait, MaxWait, RequestTimeout time.Duration
	Client                             *http.Client // default: a plain client
	Log                                io.Writer    // progress lines; nil: none
}

func (s CredsSource) what() string {
	if s.URL != "" {
		return s.URL
	}
	return s.File
}

// ParseHeader parses a --creds-header "Name: value".
func ParseHeader(h string) (name, value string, err error) {
	name, value, ok := strings.Cut(h, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) }) ||
		strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
		return "", "", fmt.Errorf("--creds-header %q: want 'Name: value' on one line, e.g. 'Metadata-Flavor: Google'", h)
	}
	return name, value, nil
}

// WaitCredentials tries src until it yields valid credentials (both API
// keys), pausing between tries, for at most src.Timeout. A missing file, an
// unreachable URL, a non-200 answer and a body that is not credentials are
// all retried; when time is up the error names the source and the last
// reason, on one line.
func WaitCredentials(ctx context.Context, src CredsSource) (map[string]string, error) {
	if (src.File == "") == (src.URL == "") {
		return nil, errors.New("first boot: give one of --creds-file FILE and --creds-url URL")
	}
	timeout := src.Timeout
	if timeout == 0 {
		timeout = DefaultCredsTimeout
	}
	wait, maxWait, reqTimeout := src.FirstWait, src.MaxWait, src.RequestTimeout
	if wait <= 0 {
		wait = DefaultCredsFirstWait
	}
	if maxWait <= 0 {
		maxWait = DefaultCredsMaxWait
	}
	if reqTimeout <= 0 {
		reqTimeout = DefaultCredsRequest
	}
	client := src.Client
	if client == nil {
		client = &http.Client{}
	}
	once := timeout < 0
	if once {
		timeout = reqTimeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for try := 1; ; try++ {
		var creds map[string]string
		var err error
		if src.URL != "" {
			creds, err = fetchCreds(ctx, client, src.URL, src.Headers, reqTimeout)
		} else {
			creds, err = readCreds(src.File)
		}
		if err != nil && ctx.Err() != nil && last != nil {
			err = last // cut short by the deadline: the previous answer says more
		}
		last = err
		if last == nil {
			if try > 1 && src.Log != nil {
				fmt.Fprintf(src.Log, "first boot: credentials from %s (try %d)\n", src.what(), try)
			}
			return creds, nil
		}
		if once {
			return nil, fmt.Errorf("first boot: %v", last)
		}
		if src.Log != nil {
			fmt.Fprintf(src.Log, "first boot: waiting for credentials at %s: %v; next try in %s\n", src.what(), last, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if parent.Err() != nil {
				return nil, fmt.Errorf("first boot: interrupted while waiting for credentials at %s (last: %v)", src.what(), last)
			}
			fix := "check that the file is written (KEY=VALUE lines " + EnvAccessKey + "=..., " + EnvSecretKey + "=...)"
			if src.URL != "" {
				fix = "check the URL, its headers (--creds-header) and that it serves KEY=VALUE lines " + EnvAccessKey + "=..., " + EnvSecretKey + "=..."
			}
			return nil, fmt.Errorf("first boot: no credentials from %s within --creds-timeout %s (%d tries; last: %v); %s, or raise --creds-timeout", src.what(), timeout, try, last, fix)
		case <-t.C:
		}
		wait = min(wait*2, maxWait)
	}
}

// readCreds reads a credentials file that may not exist yet.
func readCreds(file string) (map[string]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist yet", file)
		}
		return nil, fmt.Errorf("read %s: %v", file, err)
	}
	creds, err := ParseCredentials(data)
	if err != nil {
		return nil, fmt.Errorf("%s is not a credentials file: %v", file, err)
	}
	return creds, nil
}

// fetchCreds asks url once, within reqTimeout (and ctx).
func fetchCreds(ctx context.Context, client *http.Client, url string, h http.Header, reqTimeout time.Duration) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, reqTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bad URL: %v", err)
	}
	for k, vs := range h {
		req.Header[k] = append([]string(nil), vs...)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, oneLine(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCredsBody+1))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %v", oneLine(err))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	if len(body) > maxCredsBody {
		return nil, fmt.Errorf("the answer is over %d KiB, not a credentials file", maxCredsBody>>10)
	}
	creds, err := ParseCredentials(body)
	if err != nil {
		return nil, fmt.Errorf("the answer is not credentials: %v", err)
	}
	return creds, nil
}

func oneLine(err error) error {
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}

// FillWorkerIDs gives every agent environment file under root that has no
// CLEARML_WORKER_ID one, "<hostname>:<agent>" as a live apply names them:
// an image is provisioned before its host name (or instance id) is known,
// so first boot names its agents. Files that have one are left alone. It
// returns the worker ids it wrote.
func FillWorkerIDs(root, hostname string) ([]string, error) {
	if hostname == "" {
		return nil, nil
	}
	dir := filepath.Join(root, "/", unitgen.DefaultEnvDir)
	insts, err := envInstances(dir)
	if err != nil {
		return nil, fmt.Errorf("first boot: %v", err)
	}
	var ids []string
	for _, inst := range insts {
		p := filepath.Join(dir, inst+".env")
		data, err := os.ReadFile(p)
		if err != nil {
			return ids, fmt.Errorf("first boot: %v", err)
		}
		has := false
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), unitgen.EnvWorkerID+"=") {
				has = true
			}
		}
		if has {
			continue
		}
		id := hostname + ":" + inst
		if len(data) > 0 && data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		data = append(data, []byte(unitgen.EnvWorkerID+"="+id+"\n")...)
		fi, err := os.Stat(p)
		if err != nil {
			return ids, fmt.Errorf("first boot: %v", err)
		}
		u, err := snapshot(p)
		if err != nil {
			return ids, err
		}
		if err := config.WriteFileAtomic(p, data, fi.Mode().Perm(), u.uid, u.gid); err != nil {
			return ids, fmt.Errorf("first boot: %v", err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
