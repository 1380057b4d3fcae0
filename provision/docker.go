package provision

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/client"

	"github.com/gpufleet/clearml-agent-go/unitgen"
)

// Docker mode: what the plan checks and what the units get.
const (
	// DefaultDockerHost is the engine the agents use when DOCKER_HOST is unset.
	DefaultDockerHost = client.DefaultDockerHost
	// StaticSuffix names the static agent beside the binary, which the agent
	// bind-mounts into task containers unless CLEARML_AGENT_DOCKER_BINARY
	// points elsewhere.
	StaticSuffix = "-static"
	// EnvDockerBinary and EnvDockerHost go into the environment files when
	// they differ from the defaults.
	EnvDockerBinary = "CLEARML_AGENT_DOCKER_BINARY"
	EnvDockerHost   = "DOCKER_HOST"
	// DockerGroup owns the engine's socket; the units join it.
	DockerGroup = "docker"
	// DockerUnit is the local engine's systemd service.
	DockerUnit = "docker.service"
	// dockerPingTimeout bounds the plan's engine check.
	dockerPingTimeout = 5 * time.Second
)

// DockerInfo is what the plan found for docker mode.
type DockerInfo struct {
	Host    string // the engine the agents use (DOCKER_HOST)
	Version string // the engine's version, when it answered
	Binary  string // the static agent bind-mounted into task containers
	Image   string // the default image (--docker-image); "" leaves it to clearml.conf
	Unit    string // the systemd unit the agents are ordered after, or ""
}

// dockerHost is the engine of the agents: in.DockerHost or the default.
func dockerHost(in Inputs) string {
	if in.DockerHost == "" {
		return DefaultDockerHost
	}
	return in.DockerHost
}

// localDockerService reports whether host is the socket of the engine a
// local docker.service runs.
func localDockerService(host string) bool {
	return host == DefaultDockerHost || host == "unix:///run/docker.sock"
}

// validateDockerInputs checks the docker flags themselves (no I/O).
func validateDockerInputs(in Inputs) error {
	if strings.ContainsFunc(in.DockerImage, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("--docker-image %q: give one image name without spaces; put docker arguments in clearml.conf (agent.default_docker.arguments or agent.extra_docker_arguments)", in.DockerImage)
	}
	if b := in.DockerAgentBinary; b != "" && (!path.IsAbs(b) || path.Clean(b) != b || strings.ContainsAny(b, " \t\n\"'\\$%")) {
		return fmt.Errorf("--docker-agent-binary %q: must be a clean absolute path without spaces or quotes, e.g. %s", b, path.Join(DefaultPrefix, "bin/clearml-agent"+StaticSuffix))
	}
	if h := in.DockerHost; h != "" {
		u, err := client.ParseHostURL(h)
		switch {
		case err != nil:
			return fmt.Errorf("--docker-host (DOCKER_HOST) %q: %v; use e.g. %s or tcp://HOST:2375", h, err, DefaultDockerHost)
		case u.Scheme != "unix" && u.Scheme != "tcp":
			return fmt.Errorf("--docker-host (DOCKER_HOST) %q: the agents speak to unix:// and tcp:// engines only; use e.g. %s", h, DefaultDockerHost)
		case strings.ContainsFunc(h, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' }):
			return fmt.Errorf("--docker-host (DOCKER_HOST) %q: no spaces or quotes; use e.g. %s", h, DefaultDockerHost)
		}
	}
	return nil
}

// dockerEnv is what the environment files carry for docker mode: only the
// settings that differ from what the agent finds by itself.
func dockerEnv(in Inputs) map[string]string {
	env := map[string]string{}
	if b := in.DockerAgentBinary; b != "" && b != defaultStatic(in) {
		env[EnvDockerBinary] = b
	}
	if h := dockerHost(in); h != DefaultDockerHost {
		env[EnvDockerHost] = h
	}
	return env
}

func defaultStatic(in Inputs) string {
	return path.Join(in.Prefix, "bin/clearml-agent") + StaticSuffix
}

// checkDocker fills p.Docker and checks what docker mode needs on the
// provisioned system: the static agent, the docker group and the engine.
// Errors are one line each and name the fix; with --root (an image build,
// whose engine does not run yet) missing pieces are warnings.
func (p *Plan) checkDocker(ctx context.Context) error {
	in := p.Inputs
	image := in.Root != ""
	info := &DockerInfo{Host: dockerHost(in), Image: in.DockerImage}
	if localDockerService(info.Host) {
		info.Unit = DockerUnit
	}
	p.Docker = info

	// The static agent the task containers run.
	bin := in.DockerAgentBinary
	if bin == "" {
		bin = defaultStatic(in)
	}
	info.Binary = bin
	interp, err := elfInterp(p.hostPath(bin))
	switch {
	case err == nil && interp != "":
		return fmt.Errorf("docker mode: %s is dynamically linked (it needs %s), but task containers need a static agent: rebuild it with CGO_ENABLED=0 go build -o %s ./cmd/clearml-agent, or pass --docker-agent-binary with a static one", bin, interp, bin)
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && in.DockerAgentBinary == "":
		// Without a -static beside it, the agent mounts itself when it is static.
		self := path.Join(in.Prefix, "bin/clearml-agent")
		if si, serr := elfInterp(p.hostPath(self)); serr == nil && si == "" {
			info.Binary = self
			break
		}
		msg := fmt.Sprintf("docker mode: no static agent at %s (task containers run it, and %s is not static or missing): install one there (CGO_ENABLED=0 go build -o %s ./cmd/clearml-agent) or pass --docker-agent-binary PATH", bin, self, bin)
		if !image {
			return errors.New(msg)
		}
		p.Warnings = append(p.Warnings, msg+"; the agents fail to start until it is there")
	case errors.Is(err, fs.ErrNotExist):
		msg := fmt.Sprintf("--docker-agent-binary %s: no such file; install a static clearml-agent there (CGO_ENABLED=0 go build -o %s ./cmd/clearml-agent)", bin, bin)
		if !image {
			return errors.New(msg)
		}
		p.Warnings = append(p.Warnings, msg+"; the agents fail to start until it is there")
	default:
		flag := "--docker-agent-binary"
		if in.DockerAgentBinary == "" {
			flag = "docker mode: static agent"
		}
		return fmt.Errorf("%s %s: %v; give a static clearml-agent built with CGO_ENABLED=0", flag, bin, err)
	}

	if image {
		// The engine is installed with the image and runs only once it
		// boots; sysusers.d creates the docker group if docker.io did not.
		if info.Unit != "" && !p.imageHasDocker() {
			p.Warnings = append(p.Warnings, fmt.Sprintf("docker engine not found in image root %s (no docker.service, no usr/bin/dockerd): install docker.io in the image, or point --docker-host at the engine the agents will use; the engine is not checked during an image build", in.Root))
		} else {
			p.Warnings = append(p.Warnings, fmt.Sprintf("docker engine at %s is not checked during an image build; the agents wait for it (STATUS says why) once the image boots", info.Host))
		}
		return nil
	}

	if !in.Supervised {
		gid, ok := lookupGroup(p.hostPath("/etc/group"), DockerGroup)
		if !ok && in.SystemRoot == "" {
			// A group from NSS (LDAP, sssd) serves SupplementaryGroups= too.
			if g, err := user.LookupGroup(DockerGroup); err == nil {
				gid, _ = strconv.Atoi(g.Gid)
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("docker mode: no group %q here, so the units' SupplementaryGroups=%s would fail: install docker.io (it creates the group and docker.service), or groupadd --system %s and give it the engine's socket", DockerGroup, DockerGroup, DockerGroup)
		}
		if sock, ok := strings.CutPrefix(info.Host, "unix://"); ok {
			if fi, err := os.Stat(p.hostPath(sock)); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) != gid && fi.Mode().Perm()&0o006 != 0o006 {
					p.Warnings = append(p.Warnings, fmt.Sprintf("%s belongs to group %d, not %s (%d): the agents may not reach the engine; chgrp %s %s, or set the engine's socket group", sock, st.Gid, DockerGroup, gid, DockerGroup, sock))
				}
			}
		}
	}

	v, err := pingDocker(ctx, info.Host)
	if err != nil {
		return fmt.Errorf("docker engine not reachable at %s (%s): install docker.io and start docker.service, or point --docker-host (DOCKER_HOST) at a running engine", info.Host, err)
	}
	info.Version = v
	return nil
}

// imageHasDocker reports whether the image root has a docker engine.
func (p *Plan) imageHasDocker() bool {
	for _, f := range []string{"/usr/bin/dockerd", "/usr/lib/systemd/system/docker.service", "/lib/systemd/system/docker.service", "/etc/systemd/system/docker.service"} {
		if _, err := os.Stat(p.hostPath(f)); err == nil {
			return true
		}
	}
	return false
}

// dockerClient is a Docker API client for host, version negotiated.
func dockerClient(host string) (*client.Client, error) {
	return client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
}

// pingDocker asks the engine at host for its version; the error is one line.
func pingDocker(ctx context.Context, host string) (string, error) {
	c, err := dockerClient(host)
	if err != nil {
		return "", errors.New(firstLine(err.Error()))
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, dockerPingTimeout)
	defer cancel()
	v, err := c.ServerVersion(ctx)
	if err != nil {
		return "", errors.New(firstLine(err.Error()))
	}
	return v.Version, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// elfInterp returns the program interpreter (dynamic loader) of the ELF
// executable at p, "" for a static one.
func elfInterp(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		return "", fmt.Errorf("not an ELF executable (%v)", err)
	}
	defer ef.Close()
	for _, prog := range ef.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return "", fmt.Errorf("read its program interpreter: %v", err)
		}
		if s := strings.TrimRight(string(b), "\x00"); s != "" {
			return s, nil
		}
		return "a dynamic loader", nil
	}
	return "", nil
}

// lookupGroup returns the gid of group name in an /etc/group file.
func lookupGroup(file, name string) (int, bool) {
	f, err := os.Open(file)
	if err != nil {
		return -1, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 3 && fields[0] == name {
			if gid, err := strconv.Atoi(fields[2]); err == nil {
				return gid, true
			}
		}
	}
	return -1, false
}

// dockerAgents reports whether the environment file's daemon arguments run
// tasks in docker.
func dockerAgent(env map[string]string) bool {
	for _, a := range strings.Fields(env[unitgen.EnvDaemonArgs]) {
		if a == "--docker" {
			return true
		}
	}
	return false
}

// stateDirOf is where the unit of instance keeps its state (StateDirectory=).
func stateDirOf(root, instance string) string {
	return filepath.Join(root, "/var/lib/clearml-agent", instance)
}
