package docker

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	admin = ArgSource{Name: "agent.extra_docker_arguments", Fix: "edit agent.extra_docker_arguments", Trusted: true}
	task  = taskArgs
)

func TestParseArgsForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		argv []string
		want []Arg
	}{
		{"long with space", []string{"--env", "A=1"}, []Arg{{Flag: "env", Text: "--env", Value: "A=1"}}},
		{"long with =", []string{"--env=A=1"}, []Arg{{Flag: "env", Text: "--env=A=1", Value: "A=1"}}},
		{"short with space", []string{"-e", "A=1"}, []Arg{{Flag: "env", Text: "-e", Value: "A=1"}}},
		{"short attached", []string{"-eA=1"}, []Arg{{Flag: "env", Text: "-eA=1", Value: "A=1"}}},
		{"short with =", []string{"-e=A=1"}, []Arg{{Flag: "env", Text: "-e=A=1", Value: "A=1"}}},
		{"alias", []string{"--net", "host"}, []Arg{{Flag: "network", Text: "--net", Value: "host"}}},
		{"alias with =", []string{"--net=host"}, []Arg{{Flag: "network", Text: "--net=host", Value: "host"}}},
		{"switch", []string{"--privileged"}, []Arg{{Flag: "privileged", Text: "--privileged", Value: "true"}}},
		{"switch =false", []string{"--privileged=false"}, []Arg{{Flag: "privileged", Text: "--privileged=false", Value: "false"}}},
		{"short switch =true", []string{"-t=true"}, []Arg{{Flag: "tty", Text: "-t=true", Value: "true"}}},
		{"grouped switches", []string{"-it"}, []Arg{{Flag: "interactive", Text: "-it", Value: "true"}, {Flag: "tty", Text: "-it", Value: "true"}}},
		{"short value flags", []string{"-u", "1000:1000", "-w", "/work", "-h", "box", "-l", "a=b", "-m16g", "-v", "/a:/b"}, []Arg{
			{Flag: "user", Text: "-u", Value: "1000:1000"},
			{Flag: "workdir", Text: "-w", Value: "/work"},
			{Flag: "hostname", Text: "-h", Value: "box"},
			{Flag: "label", Text: "-l", Value: "a=b"},
			{Flag: "memory", Text: "-m16g", Value: "16g"},
			{Flag: "volume", Text: "-v", Value: "/a:/b"},
		}},
		{"blanks around options, kept in values", []string{" --ipc=host", "--privileged ", "-e", "A= x "}, []Arg{
			{Flag: "ipc", Text: "--ipc=host", Value: "host"},
			{Flag: "privileged", Text: "--privileged", Value: "true"},
			{Flag: "env", Text: "-e", Value: "A= x "},
		}},
		{"empty elements skipped", []string{"", "--ipc=host", "  "}, []Arg{{Flag: "ipc", Text: "--ipc=host", Value: "host"}}},
		{"every long flag", []string{"--env-file", "/f", "--mount", "type=tmpfs,target=/t", "--shm-size", "1g", "--device", "/dev/fuse",
			"--cap-add", "SYS_ADMIN", "--cap-drop", "NET_RAW", "--entrypoint", "/e", "--rm", "--gpus", "all", "--workdir", "/w",
			"--hostname", "h", "--ulimit", "nofile=1:2", "--group-add", "video", "--security-opt", "seccomp=unconfined",
			"--tmpfs", "/s", "--add-host", "a:1.2.3.4", "--dns", "1.1.1.1", "--pid", "host", "--init", "--memory", "1g",
			"--cpus", "2", "--runtime", "nvidia", "--sysctl", "a.b=1", "--user", "u", "--label", "k", "--volume", "/v",
			"--network", "n", "--tty", "--interactive"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseArgs(tt.argv, admin)
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", tt.argv, err)
			}
			if tt.want == nil {
				return
			}
			for i := range tt.want {
				tt.want[i].Source = admin
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseArgs(%q) (-want +got):\n%s", tt.argv, diff)
			}
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		argv []string
		src  ArgSource
		want string
	}{
		{"unknown long", []string{"--publish", "8080:80"}, task,
			`docker argument "--publish" in the task's container arguments: --publish is not supported in docker mode; edit the task's container arguments (Execution > Container in the web app) (supported: -e/--env, --env-file, -v/--volume`},
		{"unknown long with =", []string{"--name=x"}, admin, `docker argument "--name=x" in agent.extra_docker_arguments: --name is not supported in docker mode; edit agent.extra_docker_arguments (supported:`},
		{"unknown short", []string{"-p", "80:80"}, task, `docker argument "-p" in the task's container arguments: -p is not supported`},
		{"unknown in a group", []string{"-itx"}, task, `docker argument "-itx" in the task's container arguments: -x is not supported`},
		{"value flag in a group", []string{"-ie", "A=1"}, task, `-e takes a value, so it cannot be grouped with other switches; write it on its own, e.g. -e KEY=VALUE`},
		{"missing value at end", []string{"--ipc=host", "-e"}, admin, `docker argument "-e" in agent.extra_docker_arguments: needs a value, e.g. -e KEY=VALUE; edit agent.extra_docker_arguments`},
		{"value is an option", []string{"-v", "--ipc=host"}, task, `docker argument "-v" in the task's container arguments: needs a value, e.g. -v /data:/data:ro`},
		{"long missing value", []string{"--shm-size"}, task, `docker argument "--shm-size" in the task's container arguments: needs a value, e.g. --shm-size 8g`},
		{"positional", []string{"ubuntu:22.04", "bash"}, task, `docker argument "ubuntu:22.04" in the task's container arguments: not an option (only docker run options go there: the agent sets the image and the command)`},
		{"lone dash", []string{"-"}, task, `docker argument "-" in the task's container arguments: not an option`},
		{"bad switch value", []string{"--privileged=maybe"}, admin, `docker argument "--privileged=maybe" in agent.extra_docker_arguments: "maybe" is not true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseArgs(tt.argv, tt.src)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseArgs(%q) error = %v, want it to contain %q", tt.argv, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestCanonicalFlag(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"net": "network", "--network": "network", "e": "env", "-v": "volume", "entrypoint": "entrypoint", "security-opt": "security-opt", "bogus": "bogus"} {
		if got := canonicalFlag(in); got != want {
			t.Errorf("canonicalFlag(%q) = %q, want %q", in, got, want)
		}
	}
}
