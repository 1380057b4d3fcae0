package docker

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gpufleet/clearml-agent-go/agent/config"
)

// newRequest is a complete request with the packaged default settings: a
// task image with its own arguments, GPUs 0 and 1, caches and a ~/.ssh copy.
func newRequest(t *testing.T) (Request, string) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Load(config.LoadOptions{Env: []string{}, Home: dir})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Docker()
	s.DefaultImage, s.DefaultImageOrigin = "busybox:1", "agent.default_docker.image"
	return Request{
		TaskID:      "t1",
		TaskName:    "train",
		WorkerID:    "host:gpu0",
		Settings:    s,
		GPUs:        "0,1",
		AgentBinary: writeFile(t, dir, "clearml-agent", "#!"),
		ConfigFile:  writeFile(t, dir, "container.conf", ""),
		CacheRoot:   filepath.Join(dir, "cache"),
		SSHDir:      filepath.Join(dir, "ssh"),
		Env:         []string{"CLEARML_AUTH_TOKEN=tok"},
		ExecuteArgs: []string{"execute", "--id", "t1", "--disable-monitoring"},
		ImageInput:  ImageInput{Task: TaskContainer{Image: "python:3.11", Arguments: []string{"--ipc=host", "-e", "A=1"}}},
	}, dir
}

func build(t *testing.T, req Request) *Spec {
	t.Helper()
	s, err := Build(req)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return s
}

func TestBuild(t *testing.T) {
	t.Parallel()
	req, dir := newRequest(t)
	s := build(t, req)
	cache := filepath.Join(dir, "cache")
	wantCfg := &container.Config{
		Image:        "python:3.11",
		AttachStdout: true,
		AttachStderr: true,
		Env: []string{
			"A=1",
			"CLEARML_AUTH_TOKEN=tok",
			"CLEARML_TASK_ID=t1",
			"CLEARML_WORKER_ID=host:gpu0",
			"CLEARML_DOCKER_IMAGE=python:3.11",
			"CLEARML_CONFIG_FILE=/opt/clearml-agent/clearml.conf",
			"NVIDIA_VISIBLE_DEVICES=0,1",
			"HOME=/root",
		},
		Labels:     map[string]string{"clearml-worker-id": "host:gpu0", "clearml-task-id": "t1", "clearml-parent-worker-id": "host:gpu0"},
		Entrypoint: []string{"/opt/clearml-agent/clearml-agent"},
		Cmd:        []string{"execute", "--id", "t1", "--disable-monitoring"},
	}
	wantHost := &container.HostConfig{
		IpcMode: "host",
		Mounts: []mount.Mount{
			{Type: mount.TypeBind, Source: req.AgentBinary, Target: "/opt/clearml-agent/clearml-agent", ReadOnly: true},
			{Type: mount.TypeBind, Source: req.ConfigFile, Target: "/opt/clearml-agent/clearml.conf", ReadOnly: true},
			{Type: mount.TypeBind, Source: filepath.Join(cache, "venvs-cache"), Target: "/root/.clearml/venvs-cache"},
			{Type: mount.TypeBind, Source: filepath.Join(cache, "vcs-cache"), Target: "/root/.clearml/vcs-cache"},
			{Type: mount.TypeBind, Source: filepath.Join(cache, "pip-cache"), Target: "/root/.cache/pip"},
			{Type: mount.TypeBind, Source: filepath.Join(cache, "pip-download-cache"), Target: "/root/.clearml/pip-download-cache"},
			{Type: mount.TypeBind, Source: filepath.Join(cache, "poetry-cache"), Target: "/root/.cache/pypoetry"},
			{Type: mount.TypeBind, Source: req.SSHDir, Target: "/.ssh", ReadOnly: true},
		},
		Resources: container.Resources{DeviceRequests: []container.DeviceRequest{{DeviceIDs: []string{"0", "1"}, Capabilities: [][]string{{"gpu"}}}}},
	}
	if diff := cmp.Diff(wantCfg, s.Config); diff != "" {
		t.Errorf("Config (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantHost, s.HostConfig); diff != "" {
		t.Errorf("HostConfig (-want +got):\n%s", diff)
	}
	if s.Image != "python:3.11" || s.Name != "" || s.NetworkingConfig != nil || len(s.Warnings) > 0 {
		t.Errorf("Image %q Name %q NetworkingConfig %v Warnings %q", s.Image, s.Name, s.NetworkingConfig, s.Warnings)
	}
	if s.Choice.From != "the task" || s.Choice.Default || s.Choice.WriteBack {
		t.Errorf("Choice = %+v", s.Choice)
	}
	for _, d := range []string{"venvs-cache", "vcs-cache", "pip-cache", "pip-download-cache", "poetry-cache"} {
		if st, err := os.Stat(filepath.Join(cache, d)); err != nil || !st.IsDir() {
			t.Errorf("cache directory %s: %v", d, err)
		}
	}
}

func TestBuildVariants(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, r *Request, dir string)
		check func(t *testing.T, s *Spec, r Request)
	}{
		{"setup script runs through /bin/sh and execs the agent", func(t *testing.T, r *Request, _ string) {
			r.ImageInput.Task.SetupScript = "# install\napt-get update\n\n   # more\nexport A=1  \r\nif true; then\n  echo ok\nfi\n"
			r.Settings.ExtraShellScript = []string{"echo extra", "# skipped"}
		}, func(t *testing.T, s *Spec, r Request) {
			want := []string{"/bin/sh", "-c", "echo extra\napt-get update\nexport A=1\nif true; then\n  echo ok\nfi\nexec \"$@\"", "sh"}
			if diff := cmp.Diff(want, []string(s.Config.Entrypoint)); diff != "" {
				t.Errorf("Entrypoint (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{AgentPath, "execute", "--id", "t1", "--disable-monitoring"}, []string(s.Config.Cmd)); diff != "" {
				t.Errorf("Cmd (-want +got):\n%s", diff)
			}
		}},
		{"a script of comments only runs the agent directly", func(t *testing.T, r *Request, _ string) {
			r.ImageInput.Task.SetupScript = "# nothing\n\n"
		}, func(t *testing.T, s *Spec, r Request) {
			if diff := cmp.Diff([]string{AgentPath}, []string(s.Config.Entrypoint)); diff != "" {
				t.Errorf("Entrypoint (-want +got):\n%s", diff)
			}
		}},
		{"forbidden entrypoint is dropped with a warning", func(t *testing.T, r *Request, _ string) {
			r.ImageInput.Task.Arguments = []string{"--entrypoint", "/bin/bash"}
		}, func(t *testing.T, s *Spec, r Request) {
			if s.Config.Entrypoint[0] != AgentPath {
				t.Errorf("Entrypoint = %q", s.Config.Entrypoint)
			}
			wantWarnings(t, s, `docker argument "--entrypoint /bin/bash" in the task's container arguments was dropped: agent.forbidden_docker_args forbids --entrypoint`)
		}},
		{"an allowed entrypoint wraps the agent", func(t *testing.T, r *Request, _ string) {
			r.Settings.ForbiddenArgs = nil
			r.Settings.ExtraArguments = []string{"--entrypoint=/usr/bin/tini"}
			r.ImageInput.Task.SetupScript = "echo hi"
		}, func(t *testing.T, s *Spec, r Request) {
			if diff := cmp.Diff([]string{"/usr/bin/tini"}, []string(s.Config.Entrypoint)); diff != "" {
				t.Errorf("Entrypoint (-want +got):\n%s", diff)
			}
			want := []string{"/bin/sh", "-c", "echo hi\nexec \"$@\"", "sh", AgentPath, "execute", "--id", "t1", "--disable-monitoring"}
			if diff := cmp.Diff(want, []string(s.Config.Cmd)); diff != "" {
				t.Errorf("Cmd (-want +got):\n%s", diff)
			}
			wantWarnings(t, s, `the container's entrypoint is "/usr/bin/tini" (from --entrypoint); it must run its arguments (exec "$@") for the task to start`)
		}},
		{"cpu-only: no device request, NVIDIA_VISIBLE_DEVICES=none", func(t *testing.T, r *Request, _ string) {
			r.CPUOnly = true
		}, func(t *testing.T, s *Spec, r Request) {
			if len(s.HostConfig.DeviceRequests) != 0 || !hasEnv(s, "NVIDIA_VISIBLE_DEVICES=none") {
				t.Errorf("DeviceRequests %v Env %q", s.HostConfig.DeviceRequests, s.Config.Env)
			}
		}},
		{"all GPUs", func(t *testing.T, r *Request, _ string) { r.GPUs = "all" }, func(t *testing.T, s *Spec, r Request) {
			want := []container.DeviceRequest{{Count: -1, Capabilities: [][]string{{"gpu"}}}}
			if diff := cmp.Diff(want, s.HostConfig.DeviceRequests); diff != "" || !hasEnv(s, "NVIDIA_VISIBLE_DEVICES=all") {
				t.Errorf("DeviceRequests (-want +got):\n%s\nEnv %q", diff, s.Config.Env)
			}
		}},
		{"MIG slots", func(t *testing.T, r *Request, _ string) { r.GPUs = "0.1,1:0" }, func(t *testing.T, s *Spec, r Request) {
			want := []container.DeviceRequest{{DeviceIDs: []string{"0:1", "1:0"}, Capabilities: [][]string{{"gpu"}}}}
			if diff := cmp.Diff(want, s.HostConfig.DeviceRequests); diff != "" || !hasEnv(s, "NVIDIA_VISIBLE_DEVICES=0:1,1:0") {
				t.Errorf("DeviceRequests (-want +got):\n%s\nEnv %q", diff, s.Config.Env)
			}
		}},
		{"SSH agent socket instead of the ~/.ssh copy", func(t *testing.T, r *Request, _ string) {
			r.SSHAuthSock = "/tmp/ssh-x/agent.1"
		}, func(t *testing.T, s *Spec, r Request) {
			last := s.HostConfig.Mounts[len(s.HostConfig.Mounts)-1]
			if diff := cmp.Diff(mount.Mount{Type: mount.TypeBind, Source: "/tmp/ssh-x/agent.1", Target: "/tmp/ssh-x/agent.1"}, last); diff != "" {
				t.Errorf("last mount (-want +got):\n%s", diff)
			}
			if !hasEnv(s, "SSH_AUTH_SOCK=/tmp/ssh-x/agent.1") || hasMountTarget(s, "/.ssh") {
				t.Errorf("Env %q Mounts %v", s.Config.Env, s.HostConfig.Mounts)
			}
		}},
		{"disable_ssh_mount", func(t *testing.T, r *Request, _ string) { r.Settings.DisableSSHMount = true }, func(t *testing.T, s *Spec, r Request) {
			if hasMountTarget(s, "/.ssh") {
				t.Errorf("Mounts %v", s.HostConfig.Mounts)
			}
		}},
		{"disabled caches and no cache root", func(t *testing.T, r *Request, _ string) {
			r.Settings.VCSCache, r.Settings.VenvsCache, r.Settings.PipDownloadCache = false, false, false
			r.Settings.InternalMounts.PipCache = "/home/u/.cache/pip/"
		}, func(t *testing.T, s *Spec, r Request) {
			var targets []string
			for _, m := range s.HostConfig.Mounts {
				targets = append(targets, m.Target)
			}
			want := []string{AgentPath, ConfigPath, "/home/u/.cache/pip", "/root/.cache/pypoetry", "/.ssh"}
			if diff := cmp.Diff(want, targets); diff != "" {
				t.Errorf("mount targets (-want +got):\n%s", diff)
			}
		}},
		{"a user mount replaces the agent's cache mount", func(t *testing.T, r *Request, _ string) {
			r.Settings.ExtraArguments = []string{"-v", "/shared/pip:/root/.cache/pip"}
		}, func(t *testing.T, s *Spec, r Request) {
			if hasMountTarget(s, "/root/.cache/pip") || len(s.HostConfig.Binds) != 1 {
				t.Errorf("Mounts %v Binds %v", s.HostConfig.Mounts, s.HostConfig.Binds)
			}
			wantWarnings(t, s, `docker argument "-v /shared/pip:/root/.cache/pip" replaces the agent's pip cache mount at /root/.cache/pip`)
		}},
		{"non-root user", func(t *testing.T, r *Request, _ string) {
			r.ImageInput.Task.Arguments = []string{"-u", "1000"}
		}, func(t *testing.T, s *Spec, r Request) {
			if _, ok := envOf(s, "HOME"); ok || s.Config.User != "1000" {
				t.Errorf("Env %q User %q", s.Config.Env, s.Config.User)
			}
			wantWarnings(t, s, `the container runs as user "1000", but the caches and the ~/.ssh copy go to the agent.docker_internal_mounts paths under /root; point agent.docker_internal_mounts at directories that user can write`)
		}},
		{"non-root image user, root by --user", func(t *testing.T, r *Request, _ string) {
			r.ImageUser = "app"
			r.Settings.ExtraArguments = []string{"--user", "root"}
		}, func(t *testing.T, s *Spec, r Request) {
			if v, _ := envOf(s, "HOME"); v != "/root" || len(s.Warnings) > 0 {
				t.Errorf("HOME %q Warnings %q", v, s.Warnings)
			}
		}},
		{"the user's HOME stays", func(t *testing.T, r *Request, _ string) {
			r.ImageInput.Task.Arguments = []string{"-e", "HOME=/work"}
		}, func(t *testing.T, s *Spec, r Request) {
			if v, _ := envOf(s, "HOME"); v != "/work" {
				t.Errorf("HOME = %q", v)
			}
		}},
		{"reserved environment and labels", func(t *testing.T, r *Request, _ string) {
			r.ImageInput.Task.Arguments = []string{"-e", "CLEARML_TASK_ID=other", "-e", "CLEARML_WORKER_ID=host:gpu0", "-l", "clearml-task-id=x", "-l", "mine=1"}
			r.Settings.ExtraLabels = map[string]string{"team": "vision", "mine": "2"}
			r.Env = append(r.Env, "A=from-caller")
		}, func(t *testing.T, s *Spec, r Request) {
			if v, _ := envOf(s, "CLEARML_TASK_ID"); v != "t1" {
				t.Errorf("CLEARML_TASK_ID = %q", v)
			}
			if v, _ := envOf(s, "A"); v != "from-caller" {
				t.Errorf("A = %q", v)
			}
			want := map[string]string{"clearml-worker-id": "host:gpu0", "clearml-task-id": "t1", "clearml-parent-worker-id": "host:gpu0", "team": "vision", "mine": "2"}
			if diff := cmp.Diff(want, s.Config.Labels); diff != "" {
				t.Errorf("Labels (-want +got):\n%s", diff)
			}
			wantWarnings(t, s,
				"environment variable CLEARML_TASK_ID=other from the docker arguments was replaced: the agent sets CLEARML_TASK_ID",
				"label clearml-task-id=x from the docker arguments was replaced: the agent sets clearml-task-id")
		}},
		{"services mode", func(t *testing.T, r *Request, _ string) {
			r.Services, r.ParentWorkerID, r.WorkerID, r.CPUOnly = true, "host:0", "host:0:service:t1", true
		}, func(t *testing.T, s *Spec, r Request) {
			if s.Config.Labels[LabelParentWorker] != "host:0" || s.Config.Labels[LabelWorker] != "host:0:service:t1" ||
				!hasEnv(s, "CLEARML_AGENT_SERVICE_TASK=1") || !hasEnv(s, "CLEARML_WORKER_ID=host:0:service:t1") {
				t.Errorf("Labels %v Env %q", s.Config.Labels, s.Config.Env)
			}
		}},
		{"name format", func(t *testing.T, r *Request, _ string) {
			r.Settings.ContainerNameFormat = "clearml-{worker_id}-{task_id}-{rand_string:.8}"
		}, func(t *testing.T, s *Spec, r Request) {
			if !regexp.MustCompile(`^clearml-host-gpu0-t1-[a-z]{8}$`).MatchString(s.Name) {
				t.Errorf("Name = %q", s.Name)
			}
		}},
		{"a bad name format is a warning", func(t *testing.T, r *Request, _ string) {
			r.Settings.ContainerNameFormat = "{project}"
		}, func(t *testing.T, s *Spec, r Request) {
			if s.Name != "" {
				t.Errorf("Name = %q", s.Name)
			}
			wantWarnings(t, s, `agent.docker_container_name_format "{project}": unknown field {project}; use task_id, worker_id, task_name or rand_string; the engine names the container`)
		}},
		{"user network and stdin", func(t *testing.T, r *Request, _ string) {
			r.Settings.ExtraArguments = []string{"--network", "clearml"}
			r.OpenStdin = true
		}, func(t *testing.T, s *Spec, r Request) {
			want := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"clearml": {}}}
			if diff := cmp.Diff(want, s.NetworkingConfig); diff != "" || s.HostConfig.NetworkMode != "clearml" {
				t.Errorf("NetworkingConfig (-want +got):\n%s", diff)
			}
			if !s.Config.OpenStdin || !s.Config.StdinOnce || !s.Config.AttachStdin || s.Config.Tty || s.HostConfig.AutoRemove {
				t.Errorf("stdin %v/%v/%v tty %v autoremove %v", s.Config.OpenStdin, s.Config.StdinOnce, s.Config.AttachStdin, s.Config.Tty, s.HostConfig.AutoRemove)
			}
		}},
		{"default image written back, settings warnings passed on", func(t *testing.T, r *Request, _ string) {
			r.ImageInput.Task = TaskContainer{}
			r.Settings.DefaultArguments = []string{"--shm-size", "1g"}
			r.Settings.Warnings = []string{"a settings warning"}
		}, func(t *testing.T, s *Spec, r Request) {
			if s.Image != "busybox:1" || !s.Choice.Default || !s.Choice.WriteBack || s.HostConfig.ShmSize != 1<<30 {
				t.Errorf("Image %q Choice %+v ShmSize %d", s.Image, s.Choice, s.HostConfig.ShmSize)
			}
			wantWarnings(t, s, "a settings warning")
		}},
		{"host environment for the administrator's arguments", func(t *testing.T, r *Request, _ string) {
			r.HostEnv = []string{"DATA=/mnt/data", "TOKEN_FOR_TASKS=s3"}
			r.Settings.ExtraArguments = []string{"-e", "DATA_DIR=$DATA/x", "-e", "TOKEN_FOR_TASKS"}
		}, func(t *testing.T, s *Spec, r Request) {
			if !hasEnv(s, "DATA_DIR=/mnt/data/x") || !hasEnv(s, "TOKEN_FOR_TASKS=s3") {
				t.Errorf("Env %q", s.Config.Env)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, dir := newRequest(t)
			tt.setup(t, &req, dir)
			tt.check(t, build(t, req), req)
		})
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(r *Request, dir string)
		want  string
	}{
		{"no task id", func(r *Request, _ string) { r.TaskID = "" }, "docker spec: no task id; pass Request.TaskID"},
		{"no worker id", func(r *Request, _ string) { r.WorkerID = "" }, "docker spec for task t1: no worker id; pass Request.WorkerID"},
		{"no execute args", func(r *Request, _ string) { r.ExecuteArgs = nil }, "docker spec for task t1: no agent arguments; pass Request.ExecuteArgs (execute --id t1 ...)"},
		{"missing binary", func(r *Request, dir string) { r.AgentBinary = filepath.Join(dir, "nope") },
			"the agent binary %DIR%/nope cannot be used (no such file or directory); check that it exists on the host"},
		{"relative config", func(r *Request, _ string) { r.ConfigFile = "clearml.conf" },
			`the container configuration file path "clearml.conf" is not absolute; pass an absolute host path`},
		{"config is a directory", func(r *Request, dir string) { r.ConfigFile = dir }, "the container configuration file %DIR% is a directory; pass the file"},
		{"relative cache root", func(r *Request, _ string) { r.CacheRoot = "cache" }, `the cache root "cache" is not absolute`},
		{"bad caller env", func(r *Request, _ string) { r.Env = []string{"NOEQUALS"} }, `environment entry "NOEQUALS" is not KEY=VALUE; fix the caller`},
		{"bad GPUs", func(r *Request, _ string) { r.GPUs = "0,,1" }, `--gpus "0,,1": empty GPU id at position 2`},
		{"bad extra argument", func(r *Request, _ string) { r.Settings.ExtraArguments = []string{"-p", "80:80"} },
			`docker argument "-p" in agent.extra_docker_arguments (default): -p is not supported in docker mode; edit agent.extra_docker_arguments`},
		{"bad extra argument from the environment", func(r *Request, _ string) {
			r.Settings.ExtraArguments, r.Settings.ExtraArgumentsOrigin = []string{"--ipc"}, "CLEARML_AGENT_EXTRA_DOCKER_ARGS"
		}, `docker argument "--ipc" in CLEARML_AGENT_EXTRA_DOCKER_ARGS: needs a value, e.g. --ipc host; change CLEARML_AGENT_EXTRA_DOCKER_ARGS`},
		{"bad task argument", func(r *Request, _ string) { r.ImageInput.Task.Arguments = []string{"--mount", "type=bind,target=/x"} },
			`docker argument "--mount type=bind,target=/x" in the task's container arguments: type=bind needs source= an absolute host path`},
		{"task mounts the docker socket", func(r *Request, _ string) {
			r.ImageInput.Task.Arguments = []string{"-v", "/var/run/docker.sock:/var/run/docker.sock"}
		}, `docker argument "-v /var/run/docker.sock:/var/run/docker.sock" in the task's container arguments: /var/run/docker.sock would expose the docker socket (/var/run/docker.sock) to the task`},
		{"task mounts the agent's state", func(r *Request, dir string) {
			r.Protected.StateDir = filepath.Join(dir, "state")
			r.ImageInput.Task.Arguments = []string{"-v", dir + ":/d"}
		}, `would expose the agent's state directory (%DIR%/state) to the task`},
		{"mount on the agent's directory", func(r *Request, _ string) { r.Settings.ExtraArguments = []string{"--tmpfs", "/opt/clearml-agent"} },
			`docker argument "--tmpfs /opt/clearml-agent" mounts on /opt/clearml-agent, where the agent's own binary and configuration go; mount somewhere else`},
		{"bad internal mount", func(r *Request, _ string) { r.Settings.InternalMounts.PipCache = "cache/pip" },
			`agent.docker_internal_mounts: the pip cache target "cache/pip" is not an absolute container path; fix it`},
		{"bad match rule", func(r *Request, _ string) {
			r.ImageInput.Task.Image = ""
			r.Settings.MatchRules = []config.DockerMatchRule{{Key: "agent.default_docker.match_rules[0]", Match: map[string][]string{"tag": {"x"}}}}
		}, "agent.default_docker.match_rules[0].match.tag: unknown match term"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, dir := newRequest(t)
			tt.setup(&req, dir)
			_, err := Build(req)
			want := strings.ReplaceAll(tt.want, "%DIR%", dir)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Build error = %v, want it to contain %s", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("not one line: %q", err)
			}
		})
	}
}

func TestBuildAllowsProtectedMountWithTheSetting(t *testing.T) {
	t.Parallel()
	req, _ := newRequest(t)
	req.ImageInput.Task.Arguments = []string{"-v", "/var/run/docker.sock:/var/run/docker.sock"}
	req.Settings.AllowProtectedMounts = true
	s := build(t, req)
	if diff := cmp.Diff([]string{"/var/run/docker.sock:/var/run/docker.sock"}, s.HostConfig.Binds); diff != "" {
		t.Errorf("Binds (-want +got):\n%s", diff)
	}
	wantWarnings(t, s, `docker argument "-v /var/run/docker.sock:/var/run/docker.sock" in the task's container arguments exposes the docker socket (/var/run/docker.sock) to the task; allowed by agent.docker_allow_protected_mounts`)
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	req, dir := newRequest(t)
	req.Env = []string{"CLEARML_AUTH_TOKEN=eyJhbGciOi", "CLEARML_API_SECRET_KEY=s3cr3t", "PIP_INDEX_URL=https://bob:hunter2@pypi.internal/simple"}
	req.Settings.HideEnvKeys = []string{"MY_VAR"}
	req.Settings.ContainerNameFormat = "clearml-{task_id}"
	req.ImageInput.Task.Arguments = []string{"-e", "MY_VAR=hidden", "-e", "PLAIN=x y", "--shm-size", "1g", "--network", "host", "--privileged"}
	req.ImageInput.Task.SetupScript = "export HF_TOKEN=hf_abc\necho 'ready'"
	want := "docker run --name clearml-t1" +
		" -e MY_VAR=**** -e 'PLAIN=x y' -e CLEARML_AUTH_TOKEN=**** -e CLEARML_API_SECRET_KEY=**** -e PIP_INDEX_URL=https://****@pypi.internal/simple" +
		" -e CLEARML_TASK_ID=t1 -e CLEARML_WORKER_ID=host:gpu0 -e CLEARML_DOCKER_IMAGE=python:3.11 -e CLEARML_CONFIG_FILE=/opt/clearml-agent/clearml.conf" +
		" -e NVIDIA_VISIBLE_DEVICES=0,1 -e HOME=/root" +
		" -l clearml-parent-worker-id=host:gpu0 -l clearml-task-id=t1 -l clearml-worker-id=host:gpu0" +
		" --mount type=bind,source=%DIR%/clearml-agent,target=/opt/clearml-agent/clearml-agent,readonly" +
		" --mount type=bind,source=%DIR%/container.conf,target=/opt/clearml-agent/clearml.conf,readonly" +
		" --mount type=bind,source=%DIR%/cache/venvs-cache,target=/root/.clearml/venvs-cache" +
		" --mount type=bind,source=%DIR%/cache/vcs-cache,target=/root/.clearml/vcs-cache" +
		" --mount type=bind,source=%DIR%/cache/pip-cache,target=/root/.cache/pip" +
		" --mount type=bind,source=%DIR%/cache/pip-download-cache,target=/root/.clearml/pip-download-cache" +
		" --mount type=bind,source=%DIR%/cache/poetry-cache,target=/root/.cache/pypoetry" +
		" --mount type=bind,source=%DIR%/ssh,target=/.ssh,readonly" +
		` --gpus '"device=0,1"' --network host --shm-size 1073741824 --privileged` +
		" --entrypoint /bin/sh python:3.11 -c 'export HF_TOKEN=****\necho '\\''ready'\\''\nexec \"$@\"' sh /opt/clearml-agent/clearml-agent execute --id t1 --disable-monitoring"
	want = strings.ReplaceAll(want, "%DIR%", dir)
	if got := build(t, req).Describe(); got != want {
		t.Errorf("Describe =\n%s\nwant\n%s", got, want)
	}
}

func wantWarnings(t *testing.T, s *Spec, want ...string) {
	t.Helper()
	if diff := cmp.Diff(want, s.Warnings, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Warnings (-want +got):\n%s", diff)
	}
}

func envOf(s *Spec, key string) (string, bool) {
	for _, kv := range s.Config.Env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v, true
		}
	}
	return "", false
}

func hasEnv(s *Spec, kv string) bool {
	k, v, _ := strings.Cut(kv, "=")
	got, ok := envOf(s, k)
	return ok && got == v
}

func hasMountTarget(s *Spec, target string) bool {
	for _, m := range s.HostConfig.Mounts {
		if m.Target == target {
			return true
		}
	}
	return false
}
