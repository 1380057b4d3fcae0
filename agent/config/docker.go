package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/google/shlex"
)

// DockerSettings is the docker-mode view of the agent section (reference
// section 4) with the environment variables that override it applied. Lists
// given as one string in the file are split like a shell would. Problems with
// the values (an environment variable that is not a boolean, a list that does
// not split) are in Warnings, and the key keeps its default.
type DockerSettings struct {
	// DefaultImage is CLEARML_DOCKER_IMAGE (or TRAINS_DOCKER_IMAGE), else
	// agent.default_docker.image, else "nvidia/cuda". Like the daemon's
	// --docker value it may carry arguments after the image ("img --ipc=host").
	DefaultImage string
	// DefaultImageOrigin names where DefaultImage came from, for messages:
	// "CLEARML_DOCKER_IMAGE" or "agent.default_docker.image (<origin>)".
	DefaultImageOrigin string
	// DefaultArguments is agent.default_docker.arguments: the arguments of the
	// default image when DefaultImage carries none.
	DefaultArguments       []string
	DefaultArgumentsOrigin string
	// UpdateBackTask is agent.default_docker.update_back_task (default true):
	// write the default image (or a match rule's container) into the task.
	UpdateBackTask bool
	// MatchRules is agent.default_docker.match_rules, in order.
	MatchRules []DockerMatchRule

	// ExtraArguments is CLEARML_AGENT_EXTRA_DOCKER_ARGS (shell-split), else
	// agent.extra_docker_arguments: arguments of every container, set by the
	// agent's administrator.
	ExtraArguments       []string
	ExtraArgumentsOrigin string
	// ExtraShellScript is agent.extra_docker_shell_script: commands run in
	// every container before the task's setup script.
	ExtraShellScript []string
	// ExtraLabels is CLEARML_AGENT_EXTRA_DOCKER_LABELS ("k=v k2=v2", or
	// comma-separated "k=v,k2=v2"): labels of every container.
	ExtraLabels map[string]string

	// InternalMounts is agent.docker_internal_mounts: paths inside the container.
	InternalMounts DockerInternalMounts

	// ForbiddenArgs is agent.forbidden_docker_args (default ["entrypoint"]):
	// switches dropped, with a warning, from every argument list.
	ForbiddenArgs []string
	// ProtectedExtraArgs is agent.protected_docker_extra_args (default
	// privileged, security-opt, network, ipc): when ExtraArguments set one of
	// these switches, the task's own is dropped.
	ProtectedExtraArgs []string
	// ExtraPrecedesTask is agent.docker_args_extra_precedes_task (default
	// true): ExtraArguments come before the task's (a later value wins a
	// single-valued switch); false puts the task's first and protects them.
	ExtraPrecedesTask bool
	// ArgsFilters is CLEARML_AGENT_DOCKER_ARGS_FILTERS (shell-split), else
	// agent.docker_args_filters: regexes, anchored at the start, one of which
	// each switch of the chosen image's arguments must match to be kept.
	ArgsFilters       []string
	ArgsFiltersOrigin string
	// AllowHostEnviron is agent.docker_allow_host_environ (default false):
	// expand $VAR in the -e values of the task's arguments from the agent's
	// environment (ExtraArguments are always expanded).
	AllowHostEnviron bool
	// AllowProtectedMounts is agent.docker_allow_protected_mounts (Go agent
	// only, default false): let the task's arguments bind-mount the agent's
	// configuration file, state directory or the docker socket.
	AllowProtectedMounts bool

	// ForcePull is agent.docker_force_pull: pull the image before every task.
	ForcePull bool
	// DisableSSHMount is agent.disable_ssh_mount or
	// CLEARML_AGENT_DISABLE_SSH_MOUNT: no copy of ~/.ssh in the container.
	DisableSSHMount bool
	// ContainerNameFormat is agent.docker_container_name_format, e.g.
	// "clearml-id-{task_id}-{rand_string:.8}"; "" lets the engine name it.
	ContainerNameFormat string
	// DisableTaskDockerOverride is agent.disable_task_docker_override: ignore
	// the task's image and arguments, always use the default.
	DisableTaskDockerOverride bool
	// HideEnvKeys is agent.hide_docker_command_env_vars.extra_keys plus
	// CLEARML_AGENT_DOCKER_ARGS_HIDE_ENV (shell-split): env names whose values
	// are masked in logged commands, on top of tokens, keys and passwords.
	HideEnvKeys []string
	// SkipGPUsFlag is CLEARML_DOCKER_SKIP_GPUS_FLAG: request no GPU devices
	// from the engine, only set NVIDIA_VISIBLE_DEVICES.
	SkipGPUsFlag bool

	// The host caches the container gets: agent.vcs_cache.enabled,
	// agent.venvs_cache.path (set = enabled), agent.pip_download_cache.enabled.
	VCSCache         bool
	VenvsCache       bool
	PipDownloadCache bool

	// Warnings are values that could not be used (the default was kept).
	Warnings []string
}

// DockerInternalMounts is agent.docker_internal_mounts.
type DockerInternalMounts struct {
	SDKCache    string // sdk_cache, "/clearml_agent_cache"
	AptCache    string // apt_cache, "/var/cache/apt/archives"
	SSHFolder   string // ssh_folder, "/root/.ssh": where the task expects ~/.ssh
	SSHROFolder string // ssh_ro_folder, "/.ssh": the read-only copy of the host's ~/.ssh
	PipCache    string // pip_cache, "/root/.cache/pip"
	PoetryCache string // poetry_cache, "/root/.cache/pypoetry"
	VCSCache    string // vcs_cache, "/root/.clearml/vcs-cache"
	VenvsCache  string // venvs_cache, "/root/.clearml/venvs-cache"
	VenvBuild   string // venv_build, "~/.clearml/venvs-builds" (a path, not a mount)
	PipDownload string // pip_download, "/root/.clearml/pip-download-cache"
}

// DockerMatchRule is one entry of agent.default_docker.match_rules.
type DockerMatchRule struct {
	// Key is "agent.default_docker.match_rules[i]", for messages.
	Key string
	// Image, Arguments (a string is shell-split) and SetupShellScript (a list
	// is joined with newlines) fill in the task's container.
	Image            string
	Arguments        []string
	SetupShellScript string
	// Force is force_container_rules: replace the task's own container fields.
	Force bool
	// UpdateBackTask is the rule's update_back_task; nil means the
	// agent.default_docker.update_back_task setting.
	UpdateBackTask *bool
	// Match maps each term, written as a dotted path ("project",
	// "script.repository", "tags", ...), to its regexes; a term given as an
	// object ("script.requirements.pip") has its keys flattened into the path.
	Match map[string][]string
}

// Docker returns the docker-mode settings.
func (c *Config) Docker() DockerSettings {
	d := DockerSettings{
		UpdateBackTask:            c.boolOr("agent.default_docker.update_back_task", true),
		ExtraShellScript:          c.strs("agent.extra_docker_shell_script"),
		ForbiddenArgs:             c.strs("agent.forbidden_docker_args"),
		ExtraPrecedesTask:         c.boolOr("agent.docker_args_extra_precedes_task", true),
		AllowHostEnviron:          c.boolOr("agent.docker_allow_host_environ", false),
		AllowProtectedMounts:      c.boolOr("agent.docker_allow_protected_mounts", false),
		ForcePull:                 c.boolOr("agent.docker_force_pull", false),
		DisableSSHMount:           c.boolOr("agent.disable_ssh_mount", false),
		ContainerNameFormat:       c.str("agent.docker_container_name_format"),
		DisableTaskDockerOverride: c.boolOr("agent.disable_task_docker_override", false),
		HideEnvKeys:               c.strs("agent.hide_docker_command_env_vars.extra_keys"),
		VCSCache:                  c.boolOr("agent.vcs_cache.enabled", true),
		VenvsCache:                c.str("agent.venvs_cache.path") != "",
		PipDownloadCache:          c.boolOr("agent.pip_download_cache.enabled", true) && c.str("agent.pip_download_cache.path") != "",
	}
	if p, ok := c.Strings("agent.protected_docker_extra_args"); ok {
		d.ProtectedExtraArgs = p
	} else {
		d.ProtectedExtraArgs = []string{"privileged", "security-opt", "network", "ipc"}
	}
	m := &d.InternalMounts
	for _, f := range []struct {
		key string
		dst *string
		def string
	}{
		{"sdk_cache", &m.SDKCache, "/clearml_agent_cache"},
		{"apt_cache", &m.AptCache, "/var/cache/apt/archives"},
		{"ssh_folder", &m.SSHFolder, "/root/.ssh"},
		{"ssh_ro_folder", &m.SSHROFolder, "/.ssh"},
		{"pip_cache", &m.PipCache, "/root/.cache/pip"},
		{"poetry_cache", &m.PoetryCache, "/root/.cache/pypoetry"},
		{"vcs_cache", &m.VCSCache, "/root/.clearml/vcs-cache"},
		{"venvs_cache", &m.VenvsCache, "/root/.clearml/venvs-cache"},
		{"venv_build", &m.VenvBuild, "~/.clearml/venvs-builds"},
		{"pip_download", &m.PipDownload, "/root/.clearml/pip-download-cache"},
	} {
		if *f.dst = c.str("agent.docker_internal_mounts." + f.key); *f.dst == "" {
			*f.dst = f.def
		}
	}

	// The default image: the environment, then the file, then the code default.
	d.DefaultImage, d.DefaultImageOrigin = "nvidia/cuda", "the built-in default"
	if name, v := c.firstEnv("CLEARML_DOCKER_IMAGE", "TRAINS_DOCKER_IMAGE"); v != "" {
		d.DefaultImage, d.DefaultImageOrigin = strings.TrimSpace(v), name
	} else if v := strings.TrimSpace(c.str("agent.default_docker.image")); v != "" {
		d.DefaultImage, d.DefaultImageOrigin = v, c.keyOrigin("agent.default_docker.image")
	}
	d.DefaultArguments = c.argList(&d, "agent.default_docker.arguments")
	d.DefaultArgumentsOrigin = c.keyOrigin("agent.default_docker.arguments")

	if name, v := c.firstEnv("CLEARML_AGENT_EXTRA_DOCKER_ARGS"); v != "" {
		d.ExtraArguments, d.ExtraArgumentsOrigin = d.split(name, v), name
	} else {
		d.ExtraArguments = c.argList(&d, "agent.extra_docker_arguments")
		d.ExtraArgumentsOrigin = c.keyOrigin("agent.extra_docker_arguments")
	}
	if name, v := c.firstEnv("CLEARML_AGENT_DOCKER_ARGS_FILTERS"); v != "" {
		d.ArgsFilters, d.ArgsFiltersOrigin = d.split(name, v), name
	} else {
		d.ArgsFilters = c.argList(&d, "agent.docker_args_filters")
		d.ArgsFiltersOrigin = c.keyOrigin("agent.docker_args_filters")
	}
	if name, v := c.firstEnv("CLEARML_AGENT_DOCKER_ARGS_HIDE_ENV"); v != "" {
		d.HideEnvKeys = append(d.HideEnvKeys, d.split(name, v)...)
	}
	if name, v := c.firstEnv("CLEARML_AGENT_EXTRA_DOCKER_LABELS"); v != "" {
		d.ExtraLabels = parseLabels(d.split(name, v))
	}
	if name, v := c.firstEnv("CLEARML_AGENT_DISABLE_SSH_MOUNT"); v != "" {
		if b, err := parseBool(v); err != nil {
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s=%q is not a boolean and was ignored; use true or false", name, v))
		} else if b {
			d.DisableSSHMount = true
		}
	}
	if name, v := c.firstEnv("CLEARML_DOCKER_SKIP_GPUS_FLAG", "TRAINS_DOCKER_SKIP_GPUS_FLAG"); v != "" {
		if b, err := parseBool(v); err != nil {
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s=%q is not a boolean and was ignored; use true or false", name, v))
		} else {
			d.SkipGPUsFlag = b
		}
	}
	d.MatchRules = c.matchRules(&d)
	return d
}

// firstEnv returns the first of names set to a non-empty value (empty means
// unset, as in the Python agent).
func (c *Config) firstEnv(names ...string) (string, string) {
	for _, n := range names {
		if v := c.env[n]; v != "" {
			return n, v
		}
	}
	return "", ""
}

// keyOrigin is "key (origin)" for messages, e.g.
// "agent.extra_docker_arguments (/root/clearml.conf:12)".
func (c *Config) keyOrigin(key string) string {
	if o := c.Origin(key); o != "" {
		return key + " (" + o + ")"
	}
	return key
}

// argList reads a list of arguments: a list as it is, a string shell-split.
func (c *Config) argList(d *DockerSettings, key string) []string {
	v, ok := c.Get(key)
	if !ok || v == nil {
		return nil
	}
	if s, ok := v.(string); ok {
		return d.split(c.keyOrigin(key), s)
	}
	l, _ := c.Strings(key)
	return l
}

func (d *DockerSettings) split(from, s string) []string {
	parts, err := shlex.Split(s)
	if err != nil {
		d.Warnings = append(d.Warnings, fmt.Sprintf("%s: %q does not split into arguments (%v) and was ignored; balance its quotes", from, s, err))
		return nil
	}
	return parts
}

// parseLabels reads "k=v" tokens; a token may hold several comma-separated
// labels ("a=1,b=2"), and a piece without '=' continues the previous value
// ("a=1,2" is a="1,2") unless it is the first (then it is a label with no value).
func parseLabels(tokens []string) map[string]string {
	out := map[string]string{}
	for _, tok := range tokens {
		last := ""
		for _, piece := range strings.Split(tok, ",") {
			k, v, ok := strings.Cut(piece, "=")
			switch {
			case ok && k != "":
				out[k], last = v, k
			case last != "":
				out[last] += "," + piece
			case piece != "":
				out[piece], last = "", piece
			}
		}
	}
	return out
}

func (c *Config) matchRules(d *DockerSettings) []DockerMatchRule {
	v, _ := c.Get("agent.default_docker.match_rules")
	list, ok := v.([]Value)
	if !ok {
		if v != nil {
			d.Warnings = append(d.Warnings, "agent.default_docker.match_rules is not a list and was ignored; write match_rules: [ {image: ..., match: {...}} ]")
		}
		return nil
	}
	var rules []DockerMatchRule
	for i, e := range list {
		key := fmt.Sprintf("agent.default_docker.match_rules[%d]", i)
		m, ok := e.(map[string]Value)
		if !ok {
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s is not an object and was ignored; write {image: ..., match: {...}}", key))
			continue
		}
		r := DockerMatchRule{Key: key, Image: strings.TrimSpace(scalarString(m["image"])), Match: map[string][]string{}}
		switch a := m["arguments"].(type) {
		case string:
			r.Arguments = d.split(key+".arguments", a)
		case []Value:
			for _, x := range a {
				r.Arguments = append(r.Arguments, scalarString(x))
			}
		}
		switch s := m["setup_shell_script"].(type) {
		case string:
			r.SetupShellScript = s
		case []Value:
			lines := make([]string, len(s))
			for j, x := range s {
				lines[j] = scalarString(x)
			}
			r.SetupShellScript = strings.Join(lines, "\n")
		}
		if b, ok := m["force_container_rules"].(bool); ok {
			r.Force = b
		}
		if b, ok := m["update_back_task"].(bool); ok {
			r.UpdateBackTask = &b
		}
		if mm, ok := m["match"].(map[string]Value); ok {
			flattenTerms(mm, "", r.Match)
		}
		rules = append(rules, r)
	}
	return rules
}

// flattenTerms turns {script {repository: x}} and {"script.repository": x}
// into "script.repository" -> [x]; lists keep every element.
func flattenTerms(m map[string]Value, prefix string, out map[string][]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := joinPath(prefix, k)
		switch x := m[k].(type) {
		case map[string]Value:
			flattenTerms(x, p, out)
		case []Value:
			for _, e := range x {
				out[p] = append(out[p], scalarString(e))
			}
		case nil:
		default:
			out[p] = append(out[p], scalarString(x))
		}
	}
}
