package docker

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-units"
)

// ProtectedPaths are host paths the task's arguments may not mount (nor a
// directory above them, nor anything below them), read (--env-file) or use as
// a device, unless agent.docker_allow_protected_mounts is set. Symbolic links
// are resolved on both sides.
type ProtectedPaths struct {
	ConfigFile   string // the daemon's clearml.conf (it holds the agent's credentials)
	StateDir     string // the daemon's state directory
	DockerSocket string // the engine's unix socket; /var/run/docker.sock and /run/docker.sock always are
}

// protectedPath is one protected host path and what it gives away.
type protectedPath struct {
	path string
	what string
}

func (p ProtectedPaths) list() []protectedPath {
	var out []protectedPath
	add := func(pth, what string) {
		if pth != "" && path.IsAbs(pth) {
			out = append(out, protectedPath{path.Clean(pth), what})
		}
	}
	add(p.ConfigFile, "the agent's configuration file")
	add(p.StateDir, "the agent's state directory")
	add(strings.TrimPrefix(p.DockerSocket, "unix://"), "the docker socket")
	add("/var/run/docker.sock", "the docker socket")
	add("/run/docker.sock", "the docker socket")
	return out
}

// applyOptions are what applying options may read.
type applyOptions struct {
	hostEnv          map[string]string
	protected        []protectedPath
	allowProtected   bool
	allowHostEnviron bool
	readFile         func(string) ([]byte, error)
}

// applied collects what the options ask for.
type applied struct {
	cfg        container.Config
	host       container.HostConfig
	endpoints  map[string]*network.EndpointSettings
	env        envList
	labels     map[string]string
	entrypoint *string
	// targets maps each container path a user option mounts on to the option.
	targets  map[string]string
	warnings []string
}

func newApplied() *applied {
	return &applied{labels: map[string]string{}, targets: map[string]string{}}
}

// envList is an ordered environment: a key keeps its first position, the
// last value wins.
type envList struct {
	keys []string
	vals map[string]string
}

func (e *envList) set(k, v string) {
	if e.vals == nil {
		e.vals = map[string]string{}
	}
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *envList) get(k string) (string, bool) {
	v, ok := e.vals[k]
	return v, ok
}

func (e *envList) list() []string {
	out := make([]string, len(e.keys))
	for i, k := range e.keys {
		out[i] = k + "=" + e.vals[k]
	}
	return out
}

// argText is an option with its value, as written, for messages.
func argText(a Arg) string {
	s := a.Text
	if !strings.Contains(a.Text, "=") && a.Value != "true" && a.Value != "false" && !strings.HasSuffix(a.Text, a.Value) {
		s += " " + a.Value
	}
	if a.Flag == "env" {
		if k, _, ok := strings.Cut(a.Value, "="); ok && secretEnv(k, nil) {
			s = strings.Replace(s, a.Value, k+"=****", 1)
		}
	}
	return s
}

// fail is the one-line error about option a.
func fail(a Arg, format string, args ...any) error {
	return argError(argText(a), a.Source, format, args...)
}

// apply turns the options, in order, into API fields. A single-valued option
// given twice keeps the last value, as with the docker CLI.
func (p *applied) apply(args []Arg, o applyOptions) error {
	for _, a := range args {
		if err := p.applyOne(a, o); err != nil {
			return err
		}
	}
	return nil
}

func (p *applied) applyOne(a Arg, o applyOptions) error {
	v := a.Value
	switch a.Flag {
	case "env":
		return p.envVar(a, v, o)
	case "env-file":
		return p.envFile(a, o)
	case "volume":
		return p.volume(a, o)
	case "mount":
		return p.mount(a, o)
	case "ipc":
		if !validNamespace(v, "none", "private", "shareable", "host") {
			return fail(a, "%q is not an IPC mode; use host, private, shareable, none or container:<name>", v)
		}
		p.host.IpcMode = container.IpcMode(v)
	case "shm-size":
		n, err := units.RAMInBytes(v)
		if err != nil || n <= 0 {
			return fail(a, "%q is not a size; use e.g. 8g or 512m", v)
		}
		p.host.ShmSize = n
	case "network":
		if v == "" {
			return fail(a, "empty network; use e.g. --network host")
		}
		p.host.NetworkMode = container.NetworkMode(v)
		p.endpoints = nil
		if !validNamespace(v, "host", "none", "bridge", "default") {
			p.endpoints = map[string]*network.EndpointSettings{v: {}}
		}
	case "device":
		return p.device(a, o)
	case "user":
		if v == "" {
			return fail(a, "empty user; use e.g. --user 1000:1000")
		}
		p.cfg.User = v
	case "cap-add":
		p.host.CapAdd = append(p.host.CapAdd, v)
	case "cap-drop":
		p.host.CapDrop = append(p.host.CapDrop, v)
	case "privileged":
		p.host.Privileged = v == "true"
	case "entrypoint":
		ep := v
		p.entrypoint = &ep
	case "label":
		k, val, _ := strings.Cut(v, "=")
		if k == "" {
			return fail(a, "empty label name; use e.g. -l team=vision")
		}
		p.labels[k] = val
	case "rm", "tty", "interactive":
		// The agent removes the container itself after reading its exit code,
		// and it owns the container's streams.
	case "gpus":
		if a.Source.Trusted {
			return fail(a, "GPUs are assigned by the daemon's --gpus (or --cpu-only), not by docker arguments; remove it")
		}
		p.warnings = append(p.warnings, fmt.Sprintf("docker argument %q in %s was ignored: the task gets the GPUs of the agent's --gpus", argText(a), a.Source.Name))
	case "workdir":
		if !path.IsAbs(v) {
			return fail(a, "the working directory %q must be an absolute path", v)
		}
		p.cfg.WorkingDir = v
	case "hostname":
		if v == "" {
			return fail(a, "empty hostname")
		}
		p.cfg.Hostname = v
	case "ulimit":
		u, err := units.ParseUlimit(v)
		if err != nil {
			return fail(a, "%v; use e.g. --ulimit nofile=65536:65536", err)
		}
		kept := p.host.Ulimits[:0:0]
		for _, x := range p.host.Ulimits {
			if x.Name != u.Name {
				kept = append(kept, x)
			}
		}
		p.host.Ulimits = append(kept, u)
	case "group-add":
		p.host.GroupAdd = append(p.host.GroupAdd, v)
	case "security-opt":
		return p.securityOpt(a, o)
	case "tmpfs":
		dst, opts, _ := strings.Cut(v, ":")
		if !path.IsAbs(dst) {
			return fail(a, "the container path %q must be absolute; use e.g. --tmpfs /scratch:size=1g", dst)
		}
		if p.host.Tmpfs == nil {
			p.host.Tmpfs = map[string]string{}
		}
		p.host.Tmpfs[path.Clean(dst)] = opts
		p.targets[path.Clean(dst)] = argText(a)
	case "add-host":
		h := v
		if i := strings.IndexByte(h, '='); i > 0 {
			h = h[:i] + ":" + h[i+1:]
		}
		name, ip, ok := strings.Cut(h, ":")
		if !ok || name == "" || ip == "" {
			return fail(a, "use HOST:IP, e.g. --add-host files.local:10.0.0.5")
		}
		p.host.ExtraHosts = append(p.host.ExtraHosts, h)
	case "dns":
		if net.ParseIP(v) == nil {
			return fail(a, "%q is not an IP address", v)
		}
		p.host.DNS = append(p.host.DNS, v)
	case "pid":
		if !validNamespace(v, "host") {
			return fail(a, "%q is not a PID mode; use host or container:<name>", v)
		}
		p.host.PidMode = container.PidMode(v)
	case "init":
		b := v == "true"
		p.host.Init = &b
	case "memory":
		n, err := units.RAMInBytes(v)
		if err != nil || n <= 0 {
			return fail(a, "%q is not a size; use e.g. 16g", v)
		}
		p.host.Memory = n
	case "cpus":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return fail(a, "%q is not a number of CPUs; use e.g. 4 or 0.5", v)
		}
		p.host.NanoCPUs = int64(f * 1e9)
	case "runtime":
		if v == "" {
			return fail(a, "empty runtime; use e.g. --runtime nvidia")
		}
		p.host.Runtime = v
	case "sysctl":
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return fail(a, "use NAME=VALUE, e.g. --sysctl net.core.somaxconn=1024")
		}
		if p.host.Sysctls == nil {
			p.host.Sysctls = map[string]string{}
		}
		p.host.Sysctls[k] = val
	default:
		return fail(a, "not supported in docker mode (supported: %s)", supportedList())
	}
	return nil
}

// validNamespace accepts the named modes and container:<name>.
func validNamespace(v string, modes ...string) bool {
	for _, m := range modes {
		if v == m {
			return true
		}
	}
	name, ok := strings.CutPrefix(v, "container:")
	return ok && name != ""
}

// hostEnvAllowed says whether option a may read the agent's environment: the
// administrator's options always, the task's with agent.docker_allow_host_environ.
func hostEnvAllowed(a Arg, o applyOptions) bool {
	return a.Source.Trusted || o.allowHostEnviron
}

func (p *applied) envVar(a Arg, v string, o applyOptions) error {
	k, val, ok := strings.Cut(v, "=")
	if err := checkEnvName(a, k); err != nil {
		return err
	}
	if ok {
		if hostEnvAllowed(a, o) {
			val = expandVars(val, o.hostEnv)
		}
		p.env.set(k, val)
		return nil
	}
	p.envFromHost(a, k, o)
	return nil
}

func checkEnvName(a Arg, k string) error {
	if k == "" {
		return fail(a, "empty variable name; use KEY=VALUE")
	}
	if strings.ContainsAny(k, " \t\r\n") {
		return fail(a, "variable name %q contains whitespace; use KEY=VALUE", k)
	}
	return nil
}

// envFromHost is -e KEY: the agent's value of KEY, as the docker CLI passes
// its own; nothing when unset.
func (p *applied) envFromHost(a Arg, k string, o applyOptions) {
	if !hostEnvAllowed(a, o) {
		p.warnings = append(p.warnings, fmt.Sprintf("docker argument %q in %s was ignored: the task may copy the agent's environment only with agent.docker_allow_host_environ: true; write KEY=VALUE instead", argText(a), a.Source.Name))
		return
	}
	if hv, ok := o.hostEnv[k]; ok {
		p.env.set(k, hv)
	}
}

func (p *applied) envFile(a Arg, o applyOptions) error {
	file := a.Value
	if !path.IsAbs(file) {
		return fail(a, "%q is not an absolute path; the agent reads the file on its host, so write its full path", file)
	}
	if err := p.checkProtected(a, file, o); err != nil {
		return err
	}
	data, err := o.readFile(file)
	if err != nil {
		return fail(a, "the file cannot be read (%s); create it on the agent's host or remove the argument", errReason(err))
	}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimLeft(strings.TrimRight(line, "\r"), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, val, ok := strings.Cut(line, "=")
		if k == "" || strings.ContainsAny(k, " \t") {
			return fail(a, "line %d does not start with a variable name; write KEY=VALUE lines", n+1)
		}
		if ok {
			p.env.set(k, val)
			continue
		}
		p.envFromHost(a, k, o)
	}
	return nil
}

// errReason is an error without the path os errors repeat.
func errReason(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

var volumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

var volumeOptions = map[string]bool{
	"ro": true, "rw": true, "z": true, "Z": true, "nocopy": true,
	"shared": true, "rshared": true, "slave": true, "rslave": true, "private": true, "rprivate": true,
	"consistent": true, "cached": true, "delegated": true,
}

// volume is -v [SOURCE:]TARGET[:OPTIONS]: a host directory (absolute path), a
// named volume, or an anonymous volume (TARGET only).
func (p *applied) volume(a Arg, o applyOptions) error {
	parts := strings.Split(a.Value, ":")
	var src, dst, opts string
	switch len(parts) {
	case 1:
		dst = parts[0]
	case 2:
		src, dst = parts[0], parts[1]
	case 3:
		src, dst, opts = parts[0], parts[1], parts[2]
	default:
		return fail(a, "use SOURCE:TARGET[:OPTIONS], e.g. -v /data:/data:ro")
	}
	if !path.IsAbs(dst) {
		return fail(a, "the container path %q must be absolute", dst)
	}
	dst = path.Clean(dst)
	if len(parts) == 1 {
		if p.cfg.Volumes == nil {
			p.cfg.Volumes = map[string]struct{}{}
		}
		p.cfg.Volumes[dst] = struct{}{}
		p.targets[dst] = argText(a)
		return nil
	}
	if opts != "" {
		for _, opt := range strings.Split(opts, ",") {
			if !volumeOptions[opt] {
				return fail(a, "unknown volume option %q; use ro, rw, z, Z, nocopy or a propagation such as rslave", opt)
			}
		}
	}
	switch {
	case src == "":
		return fail(a, "empty source; use SOURCE:TARGET, e.g. -v /data:/data")
	case strings.HasPrefix(src, "/"):
		if err := p.checkProtected(a, src, o); err != nil {
			return err
		}
	case strings.HasPrefix(src, ".") || strings.HasPrefix(src, "~"):
		return fail(a, "the host path %q is relative; write an absolute path such as /home/me/data", src)
	case !volumeName.MatchString(src):
		return fail(a, "%q is neither an absolute host path nor a volume name", src)
	}
	p.host.Binds = append(p.host.Binds, a.Value)
	p.targets[dst] = argText(a)
	return nil
}

// mount is --mount type=bind|volume|tmpfs,source=...,target=...[,options].
func (p *applied) mount(a Arg, o applyOptions) error {
	r := csv.NewReader(strings.NewReader(a.Value))
	fields, err := r.Read()
	if err != nil {
		return fail(a, "not a comma-separated list of key=value (%v); use e.g. %s", err, specByLong["mount"].example)
	}
	m := mount.Mount{Type: mount.TypeVolume}
	bindOpt := func() *mount.BindOptions {
		if m.BindOptions == nil {
			m.BindOptions = &mount.BindOptions{}
		}
		return m.BindOptions
	}
	volOpt := func() *mount.VolumeOptions {
		if m.VolumeOptions == nil {
			m.VolumeOptions = &mount.VolumeOptions{}
		}
		return m.VolumeOptions
	}
	driver := func() *mount.Driver {
		if volOpt().DriverConfig == nil {
			m.VolumeOptions.DriverConfig = &mount.Driver{}
		}
		return m.VolumeOptions.DriverConfig
	}
	tmpfsOpt := func() *mount.TmpfsOptions {
		if m.TmpfsOptions == nil {
			m.TmpfsOptions = &mount.TmpfsOptions{}
		}
		return m.TmpfsOptions
	}
	boolVal := func(key, val string, has bool) (bool, error) {
		if !has {
			return true, nil
		}
		switch strings.ToLower(val) {
		case "true", "1":
			return true, nil
		case "false", "0":
			return false, nil
		}
		return false, fail(a, "%s=%q is not true or false", key, val)
	}
	for _, field := range fields {
		key, val, has := strings.Cut(strings.TrimSpace(field), "=")
		key = strings.ToLower(key)
		switch key {
		case "type":
			switch mount.Type(val) {
			case mount.TypeBind, mount.TypeVolume, mount.TypeTmpfs:
				m.Type = mount.Type(val)
			default:
				return fail(a, "type %q is not supported; use type=bind, type=volume or type=tmpfs", val)
			}
		case "source", "src":
			m.Source = val
		case "target", "destination", "dst":
			m.Target = val
		case "readonly", "ro":
			b, err := boolVal(key, val, has)
			if err != nil {
				return err
			}
			m.ReadOnly = b
		case "bind-propagation":
			ok := false
			for _, pr := range mount.Propagations {
				ok = ok || string(pr) == val
			}
			if !ok {
				return fail(a, "bind-propagation=%q is not a propagation; use rprivate, private, rshared, shared, rslave or slave", val)
			}
			bindOpt().Propagation = mount.Propagation(val)
		case "bind-nonrecursive":
			b, err := boolVal(key, val, has)
			if err != nil {
				return err
			}
			bindOpt().NonRecursive = b
		case "consistency":
			switch mount.Consistency(val) {
			case mount.ConsistencyFull, mount.ConsistencyCached, mount.ConsistencyDelegated, mount.ConsistencyDefault:
				m.Consistency = mount.Consistency(val)
			default:
				return fail(a, "consistency=%q; use consistent, cached, delegated or default", val)
			}
		case "volume-nocopy":
			b, err := boolVal(key, val, has)
			if err != nil {
				return err
			}
			volOpt().NoCopy = b
		case "volume-driver":
			driver().Name = val
		case "volume-opt", "volume-label":
			k, v, ok := strings.Cut(val, "=")
			if !ok || k == "" {
				return fail(a, "%s needs NAME=VALUE, e.g. %s=o=bind", key, key)
			}
			if key == "volume-label" {
				if volOpt().Labels == nil {
					m.VolumeOptions.Labels = map[string]string{}
				}
				m.VolumeOptions.Labels[k] = v
				break
			}
			if driver().Options == nil {
				m.VolumeOptions.DriverConfig.Options = map[string]string{}
			}
			m.VolumeOptions.DriverConfig.Options[k] = v
		case "volume-subpath":
			volOpt().Subpath = val
		case "tmpfs-size":
			n, err := units.RAMInBytes(val)
			if err != nil || n <= 0 {
				return fail(a, "tmpfs-size=%q is not a size; use e.g. tmpfs-size=1g", val)
			}
			tmpfsOpt().SizeBytes = n
		case "tmpfs-mode":
			n, err := strconv.ParseUint(val, 8, 32)
			if err != nil {
				return fail(a, "tmpfs-mode=%q is not an octal mode; use e.g. tmpfs-mode=1777", val)
			}
			tmpfsOpt().Mode = os.FileMode(n)
		default:
			return fail(a, "unknown key %q; use type, source, target, readonly, bind-propagation, consistency, volume-driver, volume-opt, volume-label, volume-nocopy, volume-subpath, tmpfs-size or tmpfs-mode", key)
		}
	}
	if m.Target == "" || !path.IsAbs(m.Target) {
		return fail(a, "target=%q must be an absolute container path; use e.g. %s", m.Target, specByLong["mount"].example)
	}
	m.Target = path.Clean(m.Target)
	switch m.Type {
	case mount.TypeBind:
		if m.VolumeOptions != nil || m.TmpfsOptions != nil {
			return fail(a, "volume-* and tmpfs-* keys do not apply to type=bind")
		}
		if !path.IsAbs(m.Source) {
			return fail(a, "type=bind needs source= an absolute host path, not %q", m.Source)
		}
		if err := p.checkProtected(a, m.Source, o); err != nil {
			return err
		}
	case mount.TypeVolume:
		if m.BindOptions != nil || m.TmpfsOptions != nil {
			return fail(a, "bind-* and tmpfs-* keys do not apply to type=volume")
		}
		if strings.HasPrefix(m.Source, "/") {
			return fail(a, "source=%q is a host path; use type=bind for host paths, a volume name for type=volume", m.Source)
		}
		if m.VolumeOptions != nil && m.VolumeOptions.DriverConfig != nil {
			if dev := m.VolumeOptions.DriverConfig.Options["device"]; strings.HasPrefix(dev, "/") {
				if err := p.checkProtected(a, dev, o); err != nil {
					return err
				}
			}
		}
	case mount.TypeTmpfs:
		if m.BindOptions != nil || m.VolumeOptions != nil {
			return fail(a, "bind-* and volume-* keys do not apply to type=tmpfs")
		}
		if m.Source != "" {
			return fail(a, "type=tmpfs takes no source")
		}
	}
	p.host.Mounts = append(p.host.Mounts, m)
	p.targets[m.Target] = argText(a)
	return nil
}

var (
	devicePerms = regexp.MustCompile(`^[rwm]{1,3}$`)
	nvidiaGPU   = regexp.MustCompile(`^/dev/nvidia[0-9]+$`)
)

// device is --device HOST[:CONTAINER[:PERMISSIONS]], or a CDI device name
// (vendor.com/class=name). GPUs are the agent's to give: a task asking for an
// NVIDIA GPU device is warned and the option ignored.
func (p *applied) device(a Arg, o applyOptions) error {
	v := a.Value
	if !strings.HasPrefix(v, "/") && strings.Contains(v, "/") && strings.Contains(v, "=") {
		if !a.Source.Trusted && strings.HasPrefix(v, "nvidia.com/gpu") {
			p.warnings = append(p.warnings, fmt.Sprintf("docker argument %q in %s was ignored: the task gets the GPUs of the agent's --gpus", argText(a), a.Source.Name))
			return nil
		}
		p.host.DeviceRequests = append(p.host.DeviceRequests, container.DeviceRequest{Driver: "cdi", DeviceIDs: []string{v}})
		return nil
	}
	parts := strings.Split(v, ":")
	d := container.DeviceMapping{PathOnHost: parts[0], PathInContainer: parts[0], CgroupPermissions: "rwm"}
	switch len(parts) {
	case 1:
	case 2:
		if devicePerms.MatchString(parts[1]) {
			d.CgroupPermissions = parts[1]
		} else {
			d.PathInContainer = parts[1]
		}
	case 3:
		d.PathInContainer, d.CgroupPermissions = parts[1], parts[2]
	default:
		return fail(a, "use HOST[:CONTAINER[:PERMISSIONS]], e.g. --device /dev/fuse")
	}
	if !path.IsAbs(d.PathOnHost) || !path.IsAbs(d.PathInContainer) {
		return fail(a, "device paths must be absolute, e.g. --device /dev/fuse")
	}
	if !devicePerms.MatchString(d.CgroupPermissions) {
		return fail(a, "permissions %q: use a combination of r, w and m", d.CgroupPermissions)
	}
	if !a.Source.Trusted && nvidiaGPU.MatchString(path.Clean(d.PathOnHost)) {
		p.warnings = append(p.warnings, fmt.Sprintf("docker argument %q in %s was ignored: the task gets the GPUs of the agent's --gpus", argText(a), a.Source.Name))
		return nil
	}
	if err := p.checkProtected(a, d.PathOnHost, o); err != nil {
		return err
	}
	p.host.Devices = append(p.host.Devices, d)
	return nil
}

// securityOpt passes the option on; a seccomp profile file is read and sent
// as its content, as the docker CLI does (from the administrator's arguments
// only: the task may not make the agent read its host's files this way).
func (p *applied) securityOpt(a Arg, o applyOptions) error {
	v := a.Value
	k, val, ok := strings.Cut(v, "=")
	if !ok {
		k, val, _ = strings.Cut(v, ":")
	}
	if k == "seccomp" && val != "" && val != "unconfined" && val != "builtin" {
		if !a.Source.Trusted {
			return fail(a, "a task cannot name a seccomp profile file on the agent's host; use seccomp=unconfined, or put the profile in agent.extra_docker_arguments")
		}
		data, err := o.readFile(val)
		if err != nil {
			return fail(a, "the seccomp profile cannot be read (%s); fix the path", errReason(err))
		}
		var b bytes.Buffer
		if err := json.Compact(&b, data); err != nil {
			return fail(a, "the seccomp profile is not JSON (%v); fix the file", err)
		}
		v = "seccomp=" + b.String()
	}
	if v == "" {
		return fail(a, "empty value; use e.g. --security-opt seccomp=unconfined")
	}
	p.host.SecurityOpt = append(p.host.SecurityOpt, v)
	return nil
}

// checkProtected refuses a host path of the task's options that is, is above
// or is below a protected path; with agent.docker_allow_protected_mounts it is
// a warning instead.
func (p *applied) checkProtected(a Arg, hostPath string, o applyOptions) error {
	if a.Source.Trusted {
		return nil
	}
	for _, pp := range o.protected {
		if !relatedPaths(hostPath, pp.path) {
			continue
		}
		if o.allowProtected {
			p.warnings = append(p.warnings, fmt.Sprintf("docker argument %q in %s exposes %s (%s) to the task; allowed by agent.docker_allow_protected_mounts", argText(a), a.Source.Name, pp.what, pp.path))
			return nil
		}
		return fail(a, "%s would expose %s (%s) to the task; use another path, or set agent.docker_allow_protected_mounts: true on the agent to allow it", hostPath, pp.what, pp.path)
	}
	return nil
}

// relatedPaths says whether a and b are the same path or one lies below the
// other, comparing both as written (cleaned) and with symbolic links resolved.
func relatedPaths(a, b string) bool {
	for _, x := range []string{path.Clean(a), resolvePath(a)} {
		for _, y := range []string{path.Clean(b), resolvePath(b)} {
			if x == y || under(x, y) || under(y, x) {
				return true
			}
		}
	}
	return false
}

func under(child, parent string) bool {
	return parent == "/" || strings.HasPrefix(child, parent+"/")
}

// resolvePath resolves symbolic links in p; the part of p that does not exist
// is kept as written below its deepest existing directory.
func resolvePath(p string) string {
	p = path.Clean(p)
	rest := ""
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return path.Join(r, rest)
		}
		parent := path.Dir(cur)
		if parent == cur {
			return p
		}
		rest = path.Join(path.Base(cur), rest)
		cur = parent
	}
}

// expandVars expands $NAME and ${NAME} from env like Python's
// os.path.expandvars: unknown names stay as written.
func expandVars(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j, name, end := i+1, "", 0
		if s[j] == '{' {
			k := strings.IndexByte(s[j:], '}')
			if k < 0 {
				b.WriteByte(s[i])
				i++
				continue
			}
			name, end = s[j+1:j+k], j+k+1
		} else {
			k := j
			for k < len(s) && (s[k] == '_' || s[k] >= 'a' && s[k] <= 'z' || s[k] >= 'A' && s[k] <= 'Z' || s[k] >= '0' && s[k] <= '9') {
				k++
			}
			name, end = s[j:k], k
		}
		if v, ok := env[name]; ok && name != "" {
			b.WriteString(v)
		} else {
			b.WriteString(s[i:end])
		}
		i = end
	}
	return b.String()
}
