package provision

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/gpufleet/clearml-agent-go/agent/doctor"
	"github.com/gpufleet/clearml-agent-go/unitgen"
)

// DoctorAgent is how one provisioned agent's `clearml-agent doctor` runs:
// its command line, environment and the account it runs as.
type DoctorAgent struct {
	Instance string
	Argv     []string
	Env      []string
	// Cred is the agent user's uid, gid and groups (nil: as the caller, for
	// a caller that is not root or an account that does not exist yet).
	Cred *syscall.Credential
}

// DoctorAgents lists, for every agent provisioned under root (its
// environment file), the `clearml-agent doctor` invocation that checks what
// its unit would run: the same binary, config, queues and daemon
// arguments, the environment the unit sets (state, cache and log
// directories, HOME) and, as root, the agent's account with the unit's
// supplementary docker group.
func DoctorAgents(in Inputs, euid int) ([]DoctorAgent, error) {
	dir := filepath.Join(in.SystemRoot, "/", unitgen.DefaultEnvDir)
	names, err := envInstances(dir)
	if err != nil {
		return nil, fmt.Errorf("doctor: %v", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("doctor: no agents provisioned (no %s/*.env); provision them first, or run `clearml-agent doctor` with the daemon's flags", dir)
	}
	if in.ConfigPath == "" {
		in.ConfigPath = unitgen.DefaultConfigPath
	}
	if in.Prefix == "" {
		in.Prefix = DefaultPrefix
	}
	if in.User == "" {
		in.User = unitgen.DefaultUser
	}
	// SystemRoot is "" on a live system (tests point it at a directory).
	binary := filepath.Join(in.SystemRoot, "/", in.Prefix, "bin/clearml-agent")
	conf := filepath.Join(in.SystemRoot, "/", in.ConfigPath)
	var cred *syscall.Credential
	if euid == 0 {
		cred = userCredential(in.User)
	}
	var out []DoctorAgent
	for _, inst := range names {
		env, err := ReadEnvFile(filepath.Join(dir, inst+".env"))
		if err != nil {
			return nil, fmt.Errorf("doctor: %v", err)
		}
		argv := []string{binary, "--config-file", conf, "doctor", "--json"}
		for _, q := range strings.Fields(env[unitgen.EnvQueues]) {
			argv = append(argv, "--queue", q)
		}
		daemonArgs := strings.Fields(env[unitgen.EnvDaemonArgs])
		argv = append(argv, daemonArgs...)
		state := path.Join(AgentHome, inst)
		penv := []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"LANG=C.UTF-8",
			"HOME=" + state,
			"CLEARML_AGENT_STATE_DIR=" + state,
			"CLEARML_AGENT_CACHE_DIR=" + path.Join("/var/cache/clearml-agent", inst),
			"CLEARML_AGENT_LOG_DIR=" + path.Join("/var/log/clearml-agent", inst),
		}
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			penv = append(penv, k+"="+env[k])
		}
		c := cred
		if c != nil && contains(daemonArgs, "--docker") {
			c = withDockerGroup(c)
		}
		out = append(out, DoctorAgent{Instance: inst, Argv: argv, Env: penv, Cred: c})
	}
	return out, nil
}

func contains(list []string, prefix string) bool {
	for _, s := range list {
		if s == prefix || strings.HasPrefix(s, prefix+"=") {
			return true
		}
	}
	return false
}

// userCredential is name's uid, gid and groups, or nil when it does not
// exist (sysusers creates it at boot).
func userCredential(name string) *syscall.Credential {
	u, err := user.Lookup(name)
	if err != nil {
		return nil
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if n, err := strconv.ParseUint(id, 10, 32); err == nil {
				c.Groups = append(c.Groups, uint32(n))
			}
		}
	}
	return c
}

func withDockerGroup(c *syscall.Credential) *syscall.Credential {
	g, err := user.LookupGroup(DockerGroup)
	if err != nil {
		return c
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return c
	}
	cc := *c
	cc.Groups = append(append([]uint32(nil), c.Groups...), uint32(n))
	return &cc
}

// RunDoctor runs each agent's doctor and prints one table per agent. It
// fails (one line naming the agents and their first failure) when a check
// failed for any of them.
func RunDoctor(ctx context.Context, agents []DoctorAgent, out *bytes.Buffer) error {
	var failed []string
	for i, a := range agents {
		if i > 0 {
			out.WriteString("\n")
		}
		fmt.Fprintf(out, "== %s (%s)\n", unitgen.InstanceUnit(a.Instance), strings.Join(a.Argv[3:], " "))
		cmd := exec.CommandContext(ctx, a.Argv[0], a.Argv[1:]...)
		cmd.Env = a.Env
		if a.Cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: a.Cred}
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		runErr := cmd.Run()
		rep, perr := doctor.ReadJSON(&stdout)
		if perr != nil {
			msg := strings.TrimSpace(stderr.String())
			if msg == "" && runErr != nil {
				msg = runErr.Error()
			}
			fmt.Fprintf(out, "could not run the checks: %s\n", firstLine(msg))
			failed = append(failed, fmt.Sprintf("%s (%s)", a.Instance, firstLine(msg)))
			continue
		}
		_ = rep.WriteTable(out)
		if err := rep.Err(); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", a.Instance, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("doctor: checks failed for %s", strings.Join(failed, "; "))
	}
	return nil
}
