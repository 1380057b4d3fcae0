package docker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-units"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// result is what applying options produced, for comparing.
type result struct {
	Cfg        container.Config
	Host       container.HostConfig
	Env        []string
	Labels     map[string]string
	Endpoints  map[string]*network.EndpointSettings
	Entrypoint *string
}

func applyTo(t *testing.T, argv []string, src ArgSource, o applyOptions) (result, []string, error) {
	t.Helper()
	args, err := ParseArgs(argv, src)
	if err != nil {
		t.Fatalf("ParseArgs(%q): %v", argv, err)
	}
	if o.readFile == nil {
		o.readFile = os.ReadFile
	}
	p := newApplied()
	err = p.apply(args, o)
	return result{Cfg: p.cfg, Host: p.host, Env: p.env.list(), Labels: p.labels, Endpoints: p.endpoints, Entrypoint: p.entrypoint}, p.warnings, err
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func ptr[T any](v T) *T { return &v }

func TestApplyOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	envFile := writeFile(t, dir, "task.env", "# comment\n\nA=1\n  B= spaced value \r\nFROM_HOST\nUNSET_ON_HOST\nC=x=y\n")
	seccomp := writeFile(t, dir, "seccomp.json", "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\"\n}\n")
	hostEnv := map[string]string{"HOME": "/home/agent", "USER": "agent", "FROM_HOST": "hv"}
	tests := []struct {
		name     string
		argv     []string
		src      ArgSource
		opts     applyOptions
		want     result
		wantWarn string
	}{
		{name: "env forms and host copy", argv: []string{"-e", "A=1", "--env=B=2", "-eC=3", "-e=D=4", "--env", "FROM_HOST", "-e", "UNSET_ON_HOST", "-e", "A=last"},
			src: admin, want: result{Env: []string{"A=last", "B=2", "C=3", "D=4", "FROM_HOST=hv"}}},
		{name: "admin env is expanded", argv: []string{"-e", "P=$HOME/x:${USER}:$NOPE:${NOPE}:$:$5"}, src: admin,
			want: result{Env: []string{"P=/home/agent/x:agent:$NOPE:${NOPE}:$:$5"}}},
		{name: "task env is not expanded", argv: []string{"-e", "P=$HOME"}, src: task,
			want: result{Env: []string{"P=$HOME"}}},
		{name: "task env expanded with docker_allow_host_environ", argv: []string{"-e", "P=$HOME", "-e", "FROM_HOST"}, src: task,
			opts: applyOptions{allowHostEnviron: true}, want: result{Env: []string{"P=/home/agent", "FROM_HOST=hv"}}},
		{name: "task may not copy the host env", argv: []string{"-e", "FROM_HOST"}, src: task,
			wantWarn: `docker argument "-e FROM_HOST" in the task's container arguments was ignored: the task may copy the agent's environment only with agent.docker_allow_host_environ: true`},
		{name: "env file", argv: []string{"--env-file", envFile}, src: admin,
			want: result{Env: []string{"A=1", "B= spaced value ", "FROM_HOST=hv", "C=x=y"}}},
		{name: "volumes", argv: []string{"-v", "/a:/b", "-v", "/a:/c:ro,rslave", "--volume=data:/d", "-v", "/anon/"}, src: task,
			want: result{Host: container.HostConfig{Binds: []string{"/a:/b", "/a:/c:ro,rslave", "data:/d"}}, Cfg: container.Config{Volumes: map[string]struct{}{"/anon": {}}}}},
		{name: "mounts", argv: []string{
			"--mount", "type=bind,source=/a,target=/b,readonly,bind-propagation=rslave",
			"--mount", "type=volume,src=v,dst=/v/,volume-opt=o=bind,volume-nocopy,volume-driver=local,volume-label=k=v,volume-subpath=sub",
			"--mount", "type=tmpfs,target=/t,tmpfs-size=1g,tmpfs-mode=1777",
			"--mount", "target=/anon,ro=false",
			"--mount", `"type=bind","source=/with,comma",target=/w,consistency=cached`,
		}, src: task,
			want: result{Host: container.HostConfig{Mounts: []mount.Mount{
				{Type: mount.TypeBind, Source: "/a", Target: "/b", ReadOnly: true, BindOptions: &mount.BindOptions{Propagation: mount.PropagationRSlave}},
				{Type: mount.TypeVolume, Source: "v", Target: "/v", VolumeOptions: &mount.VolumeOptions{NoCopy: true, Labels: map[string]string{"k": "v"}, Subpath: "sub",
					DriverConfig: &mount.Driver{Name: "local", Options: map[string]string{"o": "bind"}}}},
				{Type: mount.TypeTmpfs, Target: "/t", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 30, Mode: 0o1777}},
				{Type: mount.TypeVolume, Target: "/anon"},
				{Type: mount.TypeBind, Source: "/with,comma", Target: "/w", Consistency: mount.ConsistencyCached},
			}}}},
		{name: "ipc, shm, network", argv: []string{"--ipc=host", "--shm-size", "8g", "--network", "host"}, src: task,
			want: result{Host: container.HostConfig{IpcMode: "host", ShmSize: 8 << 30, NetworkMode: "host"}}},
		{name: "user-defined network", argv: []string{"--network", "host", "--net=mynet", "--ipc", "container:other"}, src: admin,
			want: result{Host: container.HostConfig{NetworkMode: "mynet", IpcMode: "container:other"}, Endpoints: map[string]*network.EndpointSettings{"mynet": {}}}},
		{name: "devices", argv: []string{"--device", "/dev/fuse", "--device", "/dev/sda:/dev/xvda:r", "--device=/dev/kfd:rw", "--device", "vendor.com/class=x"}, src: task,
			want: result{Host: container.HostConfig{Resources: container.Resources{
				Devices: []container.DeviceMapping{
					{PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "rwm"},
					{PathOnHost: "/dev/sda", PathInContainer: "/dev/xvda", CgroupPermissions: "r"},
					{PathOnHost: "/dev/kfd", PathInContainer: "/dev/kfd", CgroupPermissions: "rw"},
				},
				DeviceRequests: []container.DeviceRequest{{Driver: "cdi", DeviceIDs: []string{"vendor.com/class=x"}}},
			}}}},
		{name: "task NVIDIA device ignored", argv: []string{"--device", "/dev/nvidia0"}, src: task,
			wantWarn: `docker argument "--device /dev/nvidia0" in the task's container arguments was ignored: the task gets the GPUs of the agent's --gpus`},
		{name: "task CDI GPU ignored", argv: []string{"--device=nvidia.com/gpu=all"}, src: task,
			wantWarn: `docker argument "--device=nvidia.com/gpu=all" in the task's container arguments was ignored`},
		{name: "admin NVIDIA device kept", argv: []string{"--device", "/dev/nvidia0"}, src: admin,
			want: result{Host: container.HostConfig{Resources: container.Resources{Devices: []container.DeviceMapping{{PathOnHost: "/dev/nvidia0", PathInContainer: "/dev/nvidia0", CgroupPermissions: "rwm"}}}}}},
		{name: "identity and capabilities", argv: []string{"-u", "1000:1000", "-w", "/work", "-h", "box", "--cap-add", "SYS_ADMIN", "--cap-add=IPC_LOCK", "--cap-drop", "NET_RAW",
			"--privileged", "--group-add", "video", "-l", "team=vision", "--label=flag", "--rm", "-it"}, src: task,
			want: result{
				Cfg:    container.Config{User: "1000:1000", WorkingDir: "/work", Hostname: "box"},
				Host:   container.HostConfig{CapAdd: []string{"SYS_ADMIN", "IPC_LOCK"}, CapDrop: []string{"NET_RAW"}, Privileged: true, GroupAdd: []string{"video"}},
				Labels: map[string]string{"team": "vision", "flag": ""},
			}},
		{name: "privileged off again", argv: []string{"--privileged", "--privileged=false"}, src: task, want: result{}},
		{name: "entrypoint", argv: []string{"--entrypoint", "/usr/bin/tini"}, src: admin, want: result{Entrypoint: ptr("/usr/bin/tini")}},
		{name: "task gpus ignored", argv: []string{"--gpus", "all"}, src: task,
			wantWarn: `docker argument "--gpus all" in the task's container arguments was ignored: the task gets the GPUs of the agent's --gpus`},
		{name: "ulimits replace by name", argv: []string{"--ulimit", "nofile=1024:2048", "--ulimit", "memlock=-1:-1", "--ulimit", "nofile=4096"}, src: task,
			want: result{Host: container.HostConfig{Resources: container.Resources{Ulimits: []*units.Ulimit{{Name: "memlock", Soft: -1, Hard: -1}, {Name: "nofile", Soft: 4096, Hard: 4096}}}}}},
		{name: "security options", argv: []string{"--security-opt", "apparmor:unconfined", "--security-opt=seccomp=unconfined", "--security-opt", "label=disable"}, src: task,
			want: result{Host: container.HostConfig{SecurityOpt: []string{"apparmor:unconfined", "seccomp=unconfined", "label=disable"}}}},
		{name: "admin seccomp profile is read", argv: []string{"--security-opt", "seccomp=" + seccomp}, src: admin,
			want: result{Host: container.HostConfig{SecurityOpt: []string{`seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`}}}},
		{name: "tmpfs, hosts, dns, pid, init, resources, runtime, sysctl", argv: []string{"--tmpfs", "/scratch:size=1g", "--tmpfs=/run/x",
			"--add-host", "files.local:10.0.0.5", "--add-host=api.local=10.0.0.6", "--dns", "1.1.1.1", "--pid", "host", "--init",
			"-m", "16g", "--cpus", "1.5", "--runtime", "nvidia", "--sysctl", "net.core.somaxconn=1024"}, src: task,
			want: result{Host: container.HostConfig{
				Tmpfs:      map[string]string{"/scratch": "size=1g", "/run/x": ""},
				ExtraHosts: []string{"files.local:10.0.0.5", "api.local:10.0.0.6"},
				DNS:        []string{"1.1.1.1"}, PidMode: "host", Init: ptr(true), Runtime: "nvidia",
				Sysctls:   map[string]string{"net.core.somaxconn": "1024"},
				Resources: container.Resources{Memory: 16 << 30, NanoCPUs: 1500000000},
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := tt.opts
			o.hostEnv = hostEnv
			got, warnings, err := applyTo(t, tt.argv, tt.src, o)
			if err != nil {
				t.Fatalf("apply(%q): %v", tt.argv, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("apply(%q) (-want +got):\n%s", tt.argv, diff)
			}
			if tt.wantWarn == "" && len(warnings) > 0 {
				t.Errorf("warnings = %q, want none", warnings)
			}
			if tt.wantWarn != "" && (len(warnings) != 1 || !strings.HasPrefix(warnings[0], tt.wantWarn)) {
				t.Errorf("warnings = %q, want one starting %q", warnings, tt.wantWarn)
			}
		})
	}
}

func TestApplyOptionErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badEnv := writeFile(t, dir, "bad.env", "A=1\nNOT A VARIABLE\n")
	badJSON := writeFile(t, dir, "bad.json", "{not json")
	tests := []struct {
		name string
		argv []string
		src  ArgSource
		want string
	}{
		{"empty env name", []string{"-e", "=1"}, task, `docker argument "-e =1" in the task's container arguments: empty variable name; use KEY=VALUE; edit the task's container arguments`},
		{"env name with space", []string{"-e", "A B=1"}, task, `variable name "A B" contains whitespace`},
		{"env file missing", []string{"--env-file", filepath.Join(dir, "missing.env")}, admin,
			`docker argument "--env-file ` + filepath.Join(dir, "missing.env") + `" in agent.extra_docker_arguments: the file cannot be read (no such file or directory); create it on the agent's host or remove the argument; edit agent.extra_docker_arguments`},
		{"env file relative", []string{"--env-file=task.env"}, task, `"task.env" is not an absolute path`},
		{"env file bad line", []string{"--env-file", badEnv}, admin, `line 2 does not start with a variable name; write KEY=VALUE lines`},
		{"volume relative host path", []string{"-v", "./data:/data"}, task, `the host path "./data" is relative; write an absolute path such as /home/me/data`},
		{"volume home path", []string{"-v", "~/data:/data"}, task, `the host path "~/data" is relative`},
		{"volume relative target", []string{"-v", "/data:data"}, task, `the container path "data" must be absolute`},
		{"volume bad option", []string{"-v", "/a:/b:rx"}, task, `unknown volume option "rx"`},
		{"volume too many parts", []string{"-v", "/a:/b:ro:x"}, task, `use SOURCE:TARGET[:OPTIONS]`},
		{"volume bad name", []string{"-v", "bad$name:/x"}, task, `"bad$name" is neither an absolute host path nor a volume name`},
		{"volume empty source", []string{"-v", ":/x"}, task, `empty source`},
		{"mount bad csv", []string{"--mount", `"type=bind,target=/x`}, task, `not a comma-separated list of key=value`},
		{"mount bad type", []string{"--mount", "type=nfs,target=/x"}, task, `type "nfs" is not supported; use type=bind, type=volume or type=tmpfs`},
		{"mount no target", []string{"--mount", "type=bind,source=/a"}, task, `target="" must be an absolute container path`},
		{"mount bind without source", []string{"--mount", "type=bind,target=/b"}, task, `type=bind needs source= an absolute host path, not ""`},
		{"mount tmpfs with source", []string{"--mount", "type=tmpfs,source=/a,target=/t"}, task, `type=tmpfs takes no source`},
		{"mount bind with tmpfs key", []string{"--mount", "type=bind,source=/a,target=/b,tmpfs-size=1g"}, task, `volume-* and tmpfs-* keys do not apply to type=bind`},
		{"mount volume with host source", []string{"--mount", "type=volume,source=/a,target=/b"}, task, `source="/a" is a host path; use type=bind`},
		{"mount unknown key", []string{"--mount", "type=bind,source=/a,target=/b,foo=1"}, task, `unknown key "foo"`},
		{"mount bad readonly", []string{"--mount", "type=bind,source=/a,target=/b,readonly=maybe"}, task, `readonly="maybe" is not true or false`},
		{"mount bad propagation", []string{"--mount", "type=bind,source=/a,target=/b,bind-propagation=up"}, task, `bind-propagation="up" is not a propagation`},
		{"mount bad tmpfs size", []string{"--mount", "type=tmpfs,target=/t,tmpfs-size=lots"}, task, `tmpfs-size="lots" is not a size`},
		{"mount bad tmpfs mode", []string{"--mount", "type=tmpfs,target=/t,tmpfs-mode=999"}, task, `tmpfs-mode="999" is not an octal mode`},
		{"mount volume-opt without =", []string{"--mount", "type=volume,target=/t,volume-opt=x"}, task, `volume-opt needs NAME=VALUE`},
		{"bad ipc", []string{"--ipc", "bogus"}, task, `"bogus" is not an IPC mode; use host, private, shareable, none or container:<name>`},
		{"bad shm", []string{"--shm-size=lots"}, task, `"lots" is not a size; use e.g. 8g or 512m`},
		{"bad device", []string{"--device", "fuse"}, task, `device paths must be absolute`},
		{"bad device perms", []string{"--device", "/a:/b:xyz"}, task, `permissions "xyz": use a combination of r, w and m`},
		{"relative workdir", []string{"-w", "work"}, task, `the working directory "work" must be an absolute path`},
		{"admin gpus", []string{"--gpus", "all"}, admin, `docker argument "--gpus all" in agent.extra_docker_arguments: GPUs are assigned by the daemon's --gpus (or --cpu-only), not by docker arguments; remove it`},
		{"bad ulimit", []string{"--ulimit", "nofile"}, task, `use e.g. --ulimit nofile=65536:65536`},
		{"task seccomp file", []string{"--security-opt", "seccomp=/etc/profile.json"}, task, `a task cannot name a seccomp profile file on the agent's host`},
		{"seccomp not JSON", []string{"--security-opt", "seccomp=" + badJSON}, admin, `the seccomp profile is not JSON`},
		{"relative tmpfs", []string{"--tmpfs", "scratch"}, task, `the container path "scratch" must be absolute`},
		{"bad add-host", []string{"--add-host", "files.local"}, task, `use HOST:IP`},
		{"bad dns", []string{"--dns", "resolver"}, task, `"resolver" is not an IP address`},
		{"bad pid", []string{"--pid", "private"}, task, `"private" is not a PID mode`},
		{"bad memory", []string{"--memory", "0"}, task, `"0" is not a size`},
		{"bad cpus", []string{"--cpus", "many"}, task, `"many" is not a number of CPUs`},
		{"bad sysctl", []string{"--sysctl", "x"}, task, `use NAME=VALUE`},
		{"empty label", []string{"-l", "=v"}, task, `empty label name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := applyTo(t, tt.argv, tt.src, applyOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("apply(%q) error = %v, want it to contain %q", tt.argv, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestProtectedPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(filepath.Join(state, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := writeFile(t, dir, "clearml.conf", "")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(state, link); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "docker.sock")
	envFile := writeFile(t, state, "x.env", "A=1\n")
	protected := ProtectedPaths{ConfigFile: conf, StateDir: state, DockerSocket: "unix://" + sock}.list()
	tests := []struct {
		name string
		argv []string
		what string // "" when allowed
	}{
		{"docker socket", []string{"-v", "/var/run/docker.sock:/var/run/docker.sock"}, "the docker socket (/var/run/docker.sock)"},
		{"parent of the socket", []string{"-v", "/var/run:/host-run"}, "the docker socket (/var/run/docker.sock)"},
		{"root", []string{"-v", "/:/host"}, "the agent's configuration file"},
		{"configured socket's directory", []string{"--mount", "type=bind,source=" + filepath.Dir(sock) + ",target=/r"}, "the docker socket (" + sock + ")"},
		{"config file", []string{"-v", conf + ":/c:ro"}, "the agent's configuration file (" + conf + ")"},
		{"config file's directory", []string{"-v", dir + "/:/d"}, "the agent's configuration file (" + conf + ")"},
		{"below the state dir", []string{"-v", filepath.Join(state, "sub") + ":/s"}, "the agent's state directory (" + state + ")"},
		{"uncleaned path", []string{"-v", state + "/../state/./sub:/s"}, "the agent's state directory (" + state + ")"},
		{"through a symlink", []string{"-v", link + "/sub:/s"}, "the agent's state directory (" + state + ")"},
		{"volume driver device", []string{"--mount", "type=volume,target=/v,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=" + state}, "the agent's state directory"},
		{"env file", []string{"--env-file", envFile}, "the agent's state directory"},
		{"socket as a device", []string{"--device", "/run/docker.sock"}, "the docker socket"},
		{"sibling is fine", []string{"-v", filepath.Join(dir, "data") + ":/data"}, ""},
		{"prefix that is not a parent", []string{"-v", state + "-other:/data"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, warnings, err := applyTo(t, tt.argv, task, applyOptions{protected: protected})
			if tt.what == "" {
				if err != nil || len(warnings) > 0 {
					t.Fatalf("apply(%q) = %v, %q; want it allowed", tt.argv, err, warnings)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "would expose "+tt.what) ||
				!strings.Contains(err.Error(), "set agent.docker_allow_protected_mounts: true on the agent to allow it") {
				t.Fatalf("apply(%q) error = %v, want it to expose %s", tt.argv, err, tt.what)
			}
			// The setting allows it, with a warning.
			_, warnings, err = applyTo(t, tt.argv, task, applyOptions{protected: protected, allowProtected: true})
			if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "allowed by agent.docker_allow_protected_mounts") {
				t.Errorf("with docker_allow_protected_mounts: err = %v, warnings = %q", err, warnings)
			}
			// The administrator's arguments may.
			if _, warnings, err := applyTo(t, tt.argv, admin, applyOptions{protected: protected}); err != nil || len(warnings) > 0 {
				t.Errorf("admin arguments: err = %v, warnings = %q", err, warnings)
			}
		})
	}
}

func TestExpandVars(t *testing.T) {
	t.Parallel()
	env := map[string]string{"A": "1", "B_2": "two", "EMPTY": ""}
	for in, want := range map[string]string{
		"plain":               "plain",
		"$A-${B_2}":           "1-two",
		"x$EMPTY.y":           "x.y",
		"$MISSING ${MISSING}": "$MISSING ${MISSING}",
		"${unclosed":          "${unclosed",
		"cost $":              "cost $",
		"$$A":                 "$1",
	} {
		if got := expandVars(in, env); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}
