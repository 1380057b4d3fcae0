package docker

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gpufleet/clearml-agent-go/agent/config"
)

func TestChooseImage(t *testing.T) {
	t.Parallel()
	no := false
	defaultArgsSrc := ArgSource{Name: "agent.default_docker.arguments (default)", Fix: "edit agent.default_docker.arguments", Trusted: true}
	base := config.DockerSettings{
		DefaultImage:           "nvidia/cuda:12",
		DefaultImageOrigin:     "agent.default_docker.image (default)",
		DefaultArguments:       []string{"--ipc=host"},
		DefaultArgumentsOrigin: "agent.default_docker.arguments (default)",
		UpdateBackTask:         true,
	}
	rules := []config.DockerMatchRule{
		{Key: "agent.default_docker.match_rules[0]", Image: "vision:1", Arguments: []string{"--shm-size=8g"}, SetupShellScript: "echo vision",
			Match: map[string][]string{"project": {"^vision/"}, "tags": {"gpu", "^large$"}}},
		{Key: "agent.default_docker.match_rules[1]", Image: "forced:1", Arguments: []string{"-e", "F=1"}, SetupShellScript: "echo forced", Force: true,
			Match: map[string][]string{"script.repository": {"github.com/org/forced"}, "script.branch": {"^main$"}}},
		{Key: "agent.default_docker.match_rules[2]", Image: "nowrite:1", UpdateBackTask: &no,
			Match: map[string][]string{"script.binary": {`python3\.10`}, "user_id": {"^u1$"}}},
		{Key: "agent.default_docker.match_rules[3]", Arguments: []string{"--lost"},
			Match: map[string][]string{"project_id": {"^p-empty$"}}},
		{Key: "agent.default_docker.match_rules[4]", Image: "by-container:1",
			Match: map[string][]string{"container": {"^old/"}}},
		{Key: "agent.default_docker.match_rules[5]", Image: "never"},
	}
	tests := []struct {
		name     string
		in       ImageInput
		settings func(*config.DockerSettings)
		want     ImageChoice
	}{
		{name: "task image runs with only its own arguments",
			in:   ImageInput{Task: TaskContainer{Image: " python:3.11 ", Arguments: []string{"-e", "A=1"}, SetupScript: "echo hi"}},
			want: ImageChoice{Image: "python:3.11", Arguments: []string{"-e", "A=1"}, ArgsSource: taskArgs, SetupScript: "echo hi", From: "the task", Rule: -1}},
		{name: "task image without arguments gets none",
			in:   ImageInput{Task: TaskContainer{Image: "python:3.11"}},
			want: ImageChoice{Image: "python:3.11", ArgsSource: taskArgs, From: "the task", Rule: -1}},
		{name: "no task image: the default, written back",
			in: ImageInput{Task: TaskContainer{Arguments: []string{"-e", "IGNORED=1"}, SetupScript: "echo hi"}},
			want: ImageChoice{Image: "nvidia/cuda:12", Arguments: []string{"--ipc=host"}, ArgsSource: defaultArgsSrc, SetupScript: "echo hi",
				From: "agent.default_docker.image (default)", Default: true, WriteBack: true, Rule: -1}},
		{name: "no write-back without update_back_task",
			settings: func(s *config.DockerSettings) { s.UpdateBackTask = false },
			want: ImageChoice{Image: "nvidia/cuda:12", Arguments: []string{"--ipc=host"}, ArgsSource: defaultArgsSrc,
				From: "agent.default_docker.image (default)", Default: true, Rule: -1}},
		{name: "--docker image keeps the default arguments",
			in: ImageInput{CLIDocker: "ubuntu:22.04"},
			want: ImageChoice{Image: "ubuntu:22.04", Arguments: []string{"--ipc=host"}, ArgsSource: defaultArgsSrc,
				From: "--docker", Default: true, WriteBack: true, Rule: -1}},
		{name: "--docker with spaces is image and arguments",
			in: ImageInput{CLIDocker: "ubuntu:22.04 -e 'A=x y' --shm-size 1g"},
			want: ImageChoice{Image: "ubuntu:22.04", Arguments: []string{"-e", "A=x y", "--shm-size", "1g"}, ArgsSource: cliArgs,
				From: "--docker", Default: true, WriteBack: true, Rule: -1}},
		{name: "the task's image wins over --docker",
			in:   ImageInput{CLIDocker: "ubuntu:22.04", Task: TaskContainer{Image: "python:3.11"}},
			want: ImageChoice{Image: "python:3.11", ArgsSource: taskArgs, From: "the task", Rule: -1}},
		{name: "CLEARML_DOCKER_IMAGE with arguments",
			settings: func(s *config.DockerSettings) {
				s.DefaultImage, s.DefaultImageOrigin = "busybox:1 --network host", "CLEARML_DOCKER_IMAGE"
			},
			want: ImageChoice{Image: "busybox:1", Arguments: []string{"--network", "host"},
				ArgsSource: ArgSource{Name: "CLEARML_DOCKER_IMAGE", Fix: "change CLEARML_DOCKER_IMAGE", Trusted: true},
				From:       "CLEARML_DOCKER_IMAGE", Default: true, WriteBack: true, Rule: -1}},
		{name: "disable_task_docker_override ignores the task's image, keeps its script",
			in:       ImageInput{Task: TaskContainer{Image: "python:3.11", Arguments: []string{"-e", "A=1"}, SetupScript: "echo hi"}},
			settings: func(s *config.DockerSettings) { s.DisableTaskDockerOverride, s.MatchRules = true, rules },
			want: ImageChoice{Image: "nvidia/cuda:12", Arguments: []string{"--ipc=host"}, ArgsSource: defaultArgsSrc, SetupScript: "echo hi",
				From: "agent.default_docker.image (default)", Default: true, WriteBack: true, Rule: -1}},
		{name: "a rule fills in a task without a container",
			in:       ImageInput{Facts: TaskFacts{Project: "vision/detection", Tags: []string{"large", "gpu-a100"}}},
			settings: func(s *config.DockerSettings) { s.MatchRules = rules },
			want: ImageChoice{Image: "vision:1", Arguments: []string{"--shm-size=8g"},
				ArgsSource:  ArgSource{Name: "agent.default_docker.match_rules[0].arguments", Fix: "edit agent.default_docker.match_rules[0].arguments", Trusted: true},
				SetupScript: "echo vision", From: "agent.default_docker.match_rules[0]", WriteBack: true, Rule: 0}},
		{name: "every term must match: a tag regex finds no tag",
			in:       ImageInput{Facts: TaskFacts{Project: "vision/detection", Tags: []string{"gpu"}}},
			settings: func(s *config.DockerSettings) { s.MatchRules = rules },
			want: ImageChoice{Image: "nvidia/cuda:12", Arguments: []string{"--ipc=host"}, ArgsSource: defaultArgsSrc,
				From: "agent.default_docker.image (default)", Default: true, WriteBack: true, Rule: -1}},
		{name: "a rule does not replace the task's own fields",
			in:       ImageInput{Task: TaskContainer{Image: "mine:1", SetupScript: "echo mine"}, Facts: TaskFacts{Project: "vision/x", Tags: []string{"large", "gpu"}}},
			settings: func(s *config.DockerSettings) { s.MatchRules = rules },
			want: ImageChoice{Image: "mine:1", Arguments: []string{"--shm-size=8g"},
				ArgsSource:  ArgSource{Name: "agent.default_docker.match_rules[0].arguments", Fix: "edit agent.default_docker.match_rules[0].arguments", Trusted: true},
				SetupScript: "echo mine", From: "the task", WriteBack: true, Rule: 0}},
		{name: "a forced rule replaces them",
			in: ImageInput{Task: TaskContainer{Image: "mine:1", Arguments: []string{"-e", "M=1"}, SetupScript: "echo mine"},
				Facts: TaskFacts{Repository: "https://github.com/org/forced.git", Branch: "main"}},
			settings: func(s *config.DockerSettings) { s.MatchRules = rules },
			want: ImageChoice{Image: "forced:1", Arguments: []string{"-e", "F=1"},
				ArgsSource:  ArgSource{Name: "agent.default_docker.match_rules[1].arguments", Fix: "edit agent.default_docker.match_rules[1].arguments", Trusted: true},
				SetupScript: "echo forced", From: "agent.default_docker.match_rules[1]", WriteBack: true, Rule: 1}},
		{name: "a rule's update_back_task: false",
			in:       ImageInput{Facts: TaskFacts{Binary: "python3.10", UserID: "u1"}},
			settings: func(s *config.DockerSettings) { s.MatchRules = rules },
			want: ImageChoice{Image: "nowrite:1",
				ArgsSource: ArgSource{Name: "agent.default_docker.match_rules[2].arguments", Fix: "edit agent.default_docker.match_rules[2].arguments", Trusted: true},
				From:       "agent.default_docker.match_rules[2]", Rule: 2}},
		{name: "a rule without an image leaves the default",
			in:       ImageInput{Facts: TaskFacts{ProjectID: "p-empty"}},
			settings: func(s *config.DockerSettings) { s.MatchRules = rules },
			want: ImageChoice{Image: "nvidia/cuda:12", Arguments: []string{"--ipc=host"}, ArgsSource: defaultArgsSrc,
				From: "agent.default_docker.image (default)", Default: true, WriteBack: true, Rule: 3}},
		{name: "a rule on the task's image",
			in:       ImageInput{Task: TaskContainer{Image: "old/py:2"}},
			settings: func(s *config.DockerSettings) { s.MatchRules = rules },
			want: ImageChoice{Image: "old/py:2",
				ArgsSource: ArgSource{Name: "agent.default_docker.match_rules[4].arguments", Fix: "edit agent.default_docker.match_rules[4].arguments", Trusted: true},
				From:       "the task", WriteBack: true, Rule: 4}},
		{name: "rules are ignored with --docker",
			in:       ImageInput{CLIDocker: "cli:1", Facts: TaskFacts{Project: "vision/x", Tags: []string{"large", "gpu"}}},
			settings: func(s *config.DockerSettings) { s.MatchRules = rules },
			want: ImageChoice{Image: "cli:1", Arguments: []string{"--ipc=host"}, ArgsSource: defaultArgsSrc,
				From: "--docker", Default: true, WriteBack: true, Rule: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := base
			if tt.settings != nil {
				tt.settings(&s)
			}
			got, warnings, err := ChooseImage(tt.in, s)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ChooseImage (-want +got):\n%s", diff)
			}
			if len(warnings) > 0 {
				t.Errorf("warnings = %q", warnings)
			}
		})
	}
}

func TestChooseImageRuleProblems(t *testing.T) {
	t.Parallel()
	s := config.DockerSettings{DefaultImage: "d:1", DefaultImageOrigin: "agent.default_docker.image"}
	rule := func(match map[string][]string) []config.DockerMatchRule {
		return []config.DockerMatchRule{
			{Key: "agent.default_docker.match_rules[0]", Image: "r:1", Match: match},
			{Key: "agent.default_docker.match_rules[1]", Image: "fallback:1", Match: map[string][]string{"project": {"."}}},
		}
	}

	s.MatchRules = rule(map[string][]string{"script.requirements.pip.torch": {"~=2.1"}})
	c, warnings, err := ChooseImage(ImageInput{Facts: TaskFacts{Project: "p"}}, s)
	if err != nil || c.Image != "fallback:1" || len(warnings) != 1 ||
		warnings[0] != "agent.default_docker.match_rules[0].match.script.requirements.pip.torch: matching on requirements is not supported by this agent, so the rule was skipped; match on project, script.repository, tags, ..." {
		t.Errorf("requirements rule: %v %q %q", err, c.Image, warnings)
	}

	for match, want := range map[string]string{
		"projects": "agent.default_docker.match_rules[0].match.projects: unknown match term; use one of project, project_id, script.repository, script.branch, script.binary, user_id, container, tags",
		"project":  `agent.default_docker.match_rules[0].match.project: regex "(?=x)" does not compile (invalid or unsupported Perl syntax); fix it (Go RE2 syntax: no lookarounds or backreferences)`,
	} {
		s.MatchRules = rule(map[string][]string{match: {"(?=x)"}})
		if _, _, err := ChooseImage(ImageInput{}, s); err == nil || err.Error() != want {
			t.Errorf("match %s: error = %v, want %s", match, err, want)
		}
	}

	for cli, want := range map[string]string{
		"   ":           "", // blank is not given
		"'unbalanced":   `docker image "'unbalanced" (from --docker) does not split into an image and arguments: EOF found when expecting closing quote; balance its quotes`,
		`"" --ipc=host`: "docker image from --docker is empty",
	} {
		_, _, err := ChooseImage(ImageInput{CLIDocker: cli}, config.DockerSettings{DefaultImage: "d:1"})
		if want == "" {
			if err != nil {
				t.Errorf("--docker %q: %v", cli, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("--docker %q: error = %v, want %s", cli, err, want)
		}
	}
}

func TestLogLine(t *testing.T) {
	t.Parallel()
	c := ImageChoice{Image: "nvidia/cuda:12", Default: true,
		Arguments: []string{"-e", "CLEARML_API_SECRET_KEY=abc", "--env=HF_TOKEN=xyz", "-eMY_VAR=1", "-e", "PLAIN=it's", "-v", "/a:/b", "--env", "URL=https://u:pw@host/x"}}
	want := `Running Task t1 inside default docker: nvidia/cuda:12 arguments: ['-e', 'CLEARML_API_SECRET_KEY=****', '--env=HF_TOKEN=****', '-eMY_VAR=****', '-e', "PLAIN=it's", '-v', '/a:/b', '--env', 'URL=https://****@host/x']`
	if got := c.LogLine("t1", []string{"MY_VAR"}); got != want {
		t.Errorf("LogLine =\n%s\nwant\n%s", got, want)
	}
	c = ImageChoice{Image: "python:3.11"}
	if got, want := c.LogLine("t2", nil), "Running Task t2 inside docker: python:3.11 arguments: []"; got != want {
		t.Errorf("LogLine = %q, want %q", got, want)
	}
}
