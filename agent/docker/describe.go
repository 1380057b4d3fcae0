package docker

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/mount"

	"github.com/gpufleet/clearml-agent-go/internal/secret"
)

// secretEnv says whether an environment variable's value must be masked in
// logs: a secret name (secret.Name) or one of the hidden keys.
func secretEnv(name string, hide []string) bool {
	for _, h := range hide {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return secret.Name(name)
}

// assignment finds NAME=value words in scripts.
var assignment = regexp.MustCompile(`\b([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|'[^']*'|\S+)`)

// maskText hides URL passwords and the values of secret NAME=value words.
func maskText(s string, hide []string) string {
	s = secret.MaskURLs(s)
	return assignment.ReplaceAllStringFunc(s, func(m string) string {
		k, _, _ := strings.Cut(m, "=")
		if secretEnv(k, hide) {
			return k + "=****"
		}
		return m
	})
}

// maskEnv masks one KEY=VALUE.
func maskEnv(kv string, hide []string) string {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return kv
	}
	if secretEnv(k, hide) {
		if v == "" {
			return kv
		}
		return k + "=****"
	}
	return k + "=" + secret.MaskURLs(v)
}

// maskArgs masks the secret values of -e/--env options and URL passwords in
// a list of docker arguments.
func maskArgs(args []string, hide []string) []string {
	out := make([]string, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case (a == "-e" || a == "--env") && i+1 < len(args):
			out[i], out[i+1] = a, maskEnv(args[i+1], hide)
			i++
			continue
		case strings.HasPrefix(a, "--env="):
			a = "--env=" + maskEnv(a[len("--env="):], hide)
		case strings.HasPrefix(a, "-e") && len(a) > 2:
			a = "-e" + maskEnv(strings.TrimPrefix(a[2:], "="), hide)
		default:
			a = secret.MaskURLs(a)
		}
		out[i] = a
	}
	return out
}

// shellQuote quotes a word for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@%+*", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Describe is the container as an equivalent `docker run` command line for
// the task log (the Python agent's "Executing: [...]" line), with secret
// environment values, URL passwords and secret assignments in the setup
// script masked.
func (s *Spec) Describe() string {
	c, h := s.Config, s.HostConfig
	var w []string
	add := func(a ...string) { w = append(w, a...) }
	add("docker", "run")
	if s.Name != "" {
		add("--name", s.Name)
	}
	for _, kv := range c.Env {
		add("-e", maskEnv(kv, s.hideKeys))
	}
	for _, k := range sortedKeys(c.Labels) {
		add("-l", k+"="+c.Labels[k])
	}
	for _, m := range h.Mounts {
		add("--mount", describeMount(m))
	}
	for _, b := range h.Binds {
		add("-v", b)
	}
	vols := make([]string, 0, len(c.Volumes))
	for v := range c.Volumes {
		vols = append(vols, v)
	}
	sort.Strings(vols)
	for _, v := range vols {
		add("-v", v)
	}
	for _, k := range sortedKeys(h.Tmpfs) {
		if h.Tmpfs[k] != "" {
			add("--tmpfs", k+":"+h.Tmpfs[k])
		} else {
			add("--tmpfs", k)
		}
	}
	for _, r := range h.DeviceRequests {
		switch {
		case r.Driver == "cdi":
			add("--device", strings.Join(r.DeviceIDs, ","))
		case r.Count == -1:
			add("--gpus", "all")
		default:
			add("--gpus", `"device=`+strings.Join(r.DeviceIDs, ",")+`"`)
		}
	}
	for _, d := range h.Devices {
		add("--device", d.PathOnHost+":"+d.PathInContainer+":"+d.CgroupPermissions)
	}
	if h.NetworkMode != "" {
		add("--network", string(h.NetworkMode))
	}
	if h.IpcMode != "" {
		add("--ipc", string(h.IpcMode))
	}
	if h.PidMode != "" {
		add("--pid", string(h.PidMode))
	}
	if h.ShmSize > 0 {
		add("--shm-size", fmt.Sprint(h.ShmSize))
	}
	if h.Memory > 0 {
		add("--memory", fmt.Sprint(h.Memory))
	}
	if h.NanoCPUs > 0 {
		add("--cpus", fmt.Sprint(float64(h.NanoCPUs)/1e9))
	}
	if h.Privileged {
		add("--privileged")
	}
	if h.Init != nil && *h.Init {
		add("--init")
	}
	if h.Runtime != "" {
		add("--runtime", h.Runtime)
	}
	for _, x := range h.CapAdd {
		add("--cap-add", x)
	}
	for _, x := range h.CapDrop {
		add("--cap-drop", x)
	}
	for _, x := range h.SecurityOpt {
		if strings.HasPrefix(x, "seccomp={") {
			x = "seccomp=<profile>"
		}
		add("--security-opt", x)
	}
	for _, x := range h.GroupAdd {
		add("--group-add", x)
	}
	for _, u := range h.Ulimits {
		add("--ulimit", u.String())
	}
	for _, x := range h.ExtraHosts {
		add("--add-host", x)
	}
	for _, x := range h.DNS {
		add("--dns", x)
	}
	for _, k := range sortedKeys(h.Sysctls) {
		add("--sysctl", k+"="+h.Sysctls[k])
	}
	if c.User != "" {
		add("--user", c.User)
	}
	if c.WorkingDir != "" {
		add("--workdir", c.WorkingDir)
	}
	if c.Hostname != "" {
		add("--hostname", c.Hostname)
	}
	cmd := append(append([]string(nil), c.Entrypoint...), c.Cmd...)
	if len(cmd) > 0 {
		add("--entrypoint", cmd[0])
	}
	add(c.Image)
	if len(cmd) > 1 {
		add(cmd[1:]...)
	}
	q := make([]string, len(w))
	for i, x := range w {
		q[i] = shellQuote(maskText(x, s.hideKeys))
	}
	return strings.Join(q, " ")
}

func describeMount(m mount.Mount) string {
	parts := []string{"type=" + string(m.Type)}
	if m.Source != "" {
		parts = append(parts, "source="+m.Source)
	}
	parts = append(parts, "target="+m.Target)
	if m.ReadOnly {
		parts = append(parts, "readonly")
	}
	return strings.Join(parts, ",")
}
