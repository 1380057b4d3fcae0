package docker

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/config"
)

// texts renders merged options back to words, for comparing.
func texts(args []Arg) []string {
	var out []string
	for _, a := range args {
		out = append(out, argText(a))
	}
	return out
}

func mustParse(t *testing.T, argv []string, src ArgSource) []Arg {
	t.Helper()
	a, err := ParseArgs(argv, src)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestMergeArgs(t *testing.T) {
	t.Parallel()
	base := config.DockerSettings{
		ForbiddenArgs:      []string{"entrypoint"},
		ProtectedExtraArgs: []string{"privileged", "security-opt", "net", "ipc"},
		ExtraPrecedesTask:  true,
	}
	tests := []struct {
		name      string
		extra     []string
		task      []string
		settings  func(*config.DockerSettings)
		want      []string
		wantWarns []string
	}{
		{name: "extra first, then the task",
			extra: []string{"--shm-size", "1g"}, task: []string{"--shm-size=2g", "-e", "A=1"},
			want: []string{"--shm-size 1g", "--shm-size=2g", "-e A=1"}},
		{name: "protected switches of the extra arguments drop the task's",
			extra: []string{"--network", "host", "--ipc=host"},
			task:  []string{"--net", "bridge", "--ipc", "private", "--privileged", "-e", "A=1"},
			want:  []string{"--network host", "--ipc=host", "--privileged", "-e A=1"},
			wantWarns: []string{
				`docker argument "--net bridge" in the task's container arguments was dropped: agent.extra_docker_arguments already sets --network (agent.protected_docker_extra_args)`,
				`docker argument "--ipc private" in the task's container arguments was dropped: agent.extra_docker_arguments already sets --ipc (agent.protected_docker_extra_args)`,
			}},
		{name: "task first when the extra arguments do not precede",
			extra:    []string{"--network", "host", "--shm-size", "1g"},
			task:     []string{"--network=bridge"},
			settings: func(s *config.DockerSettings) { s.ExtraPrecedesTask = false },
			want:     []string{"--network=bridge", "--shm-size 1g"},
			wantWarns: []string{
				`docker argument "--network host" in agent.extra_docker_arguments was dropped: the task's container arguments already sets --network (agent.protected_docker_extra_args)`,
			}},
		{name: "forbidden from both",
			extra: []string{"--entrypoint", "/a"}, task: []string{"--entrypoint=/b", "-e", "A=1"},
			want: []string{"-e A=1"},
			wantWarns: []string{
				`docker argument "--entrypoint /a" in agent.extra_docker_arguments was dropped: agent.forbidden_docker_args forbids --entrypoint`,
				`docker argument "--entrypoint=/b" in the task's container arguments was dropped: agent.forbidden_docker_args forbids --entrypoint`,
			}},
		{name: "forbidden by short name",
			task:     []string{"-v", "/a:/b", "-e", "A=1"},
			settings: func(s *config.DockerSettings) { s.ForbiddenArgs = []string{"v"} },
			want:     []string{"-e A=1"},
			wantWarns: []string{
				`docker argument "-v /a:/b" in the task's container arguments was dropped: agent.forbidden_docker_args forbids --volume`,
			}},
		{name: "filters keep matching options of the task only",
			extra: []string{"--ipc=host"},
			task:  []string{"--env", "A=1", "-e", "SECRET_TOKEN=x", "--env=C=3", "--network", "host", "-v", "/a:/b"},
			settings: func(s *config.DockerSettings) {
				s.ArgsFilters, s.ArgsFiltersOrigin = []string{"--env$", "-e", "-v"}, "agent.docker_args_filters (f:3)"
			},
			want: []string{"--ipc=host", "--env A=1", "-e SECRET_TOKEN=****", "-v /a:/b"},
			wantWarns: []string{
				`docker argument "--env=C=3" in the task's container arguments was dropped: it matches none of agent.docker_args_filters (f:3)`,
				`docker argument "--network host" in the task's container arguments was dropped: it matches none of agent.docker_args_filters (f:3)`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := base
			if tt.settings != nil {
				tt.settings(&s)
			}
			merged, warnings, err := mergeArgs(mustParse(t, tt.extra, admin), mustParse(t, tt.task, task), s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, texts(merged)); diff != "" {
				t.Errorf("merged (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantWarns, warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeArgsBadFilter(t *testing.T) {
	t.Parallel()
	s := config.DockerSettings{ArgsFilters: []string{"(?=lookahead)"}, ArgsFiltersOrigin: "CLEARML_AGENT_DOCKER_ARGS_FILTERS"}
	_, _, err := mergeArgs(nil, mustParse(t, []string{"-e", "A=1"}, task), s)
	want := `CLEARML_AGENT_DOCKER_ARGS_FILTERS: regex "(?=lookahead)" does not compile (invalid or unsupported Perl syntax); fix it (Go RE2 syntax: no lookarounds or backreferences)`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("not one line: %q", err)
	}
}
