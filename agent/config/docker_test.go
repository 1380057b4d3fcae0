package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func loadText(t *testing.T, text string, env ...string) *Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "clearml.conf")
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return load(t, f, env...)
}

func TestDockerDefaults(t *testing.T) {
	t.Parallel()
	d := loadText(t, "").Docker()
	want := DockerSettings{
		DefaultImage:           "nvidia/cuda:11.0.3-cudnn8-runtime-ubuntu20.04",
		DefaultImageOrigin:     "agent.default_docker.image (default)",
		DefaultArgumentsOrigin: "agent.default_docker.arguments (default)",
		UpdateBackTask:         true,
		ExtraArgumentsOrigin:   "agent.extra_docker_arguments (default)",
		InternalMounts: DockerInternalMounts{
			SDKCache: "/clearml_agent_cache", AptCache: "/var/cache/apt/archives",
			SSHFolder: "/root/.ssh", SSHROFolder: "/.ssh",
			PipCache: "/root/.cache/pip", PoetryCache: "/root/.cache/pypoetry",
			VCSCache: "/root/.clearml/vcs-cache", VenvsCache: "/root/.clearml/venvs-cache",
			VenvBuild: "~/.clearml/venvs-builds", PipDownload: "/root/.clearml/pip-download-cache",
		},
		ForbiddenArgs:      []string{"entrypoint"},
		ProtectedExtraArgs: []string{"privileged", "security-opt", "network", "ipc"},
		ExtraPrecedesTask:  true,
		ArgsFiltersOrigin:  "agent.docker_args_filters (default)",
		VCSCache:           true,
		VenvsCache:         true,
		PipDownloadCache:   true,
	}
	if diff := cmp.Diff(want, d, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Docker() defaults (-want +got):\n%s", diff)
	}
}

func TestDockerFromFile(t *testing.T) {
	t.Parallel()
	c := loadText(t, `
agent {
    default_docker {
        image: "python:3.11 --ipc=host"
        arguments: "-e A=1 --shm-size 8g"
        update_back_task: false
        match_rules: [
            {
                image: "pytorch:2"
                arguments: "--ipc=host -e X='a b'"
                setup_shell_script: ["apt-get update", "apt-get install -y git"]
                force_container_rules: true
                update_back_task: true
                match: {
                    script { repository: "github.com/org/.*", branch: "^main$" }
                    project: ["^examples", "vision"]
                    tags: gpu
                }
            },
            {
                image: "other:1"
                arguments: ["--network", "host"]
                match: { "script.binary": "python3.10" }
            },
            "not an object"
        ]
    }
    extra_docker_arguments: ["--network", "host", "-e", "HOST=$HOSTNAME"]
    extra_docker_shell_script: ["echo hi"]
    docker_internal_mounts { pip_cache: "/home/user/.cache/pip" }
    docker_args_filters: ["^--env$", "^-e$"]
    docker_allow_host_environ: true
    docker_allow_protected_mounts: true
    docker_force_pull: true
    disable_ssh_mount: true
    docker_container_name_format: "clearml-{task_id}"
    disable_task_docker_override: true
    hide_docker_command_env_vars.extra_keys: ["MY_VAR"]
    vcs_cache.enabled: false
    venvs_cache.path: ""
    pip_download_cache.enabled: false
}
`)
	d := c.Docker()
	f := c.File()
	check := func(name string, got, want any) {
		t.Helper()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	check("DefaultImage", d.DefaultImage, "python:3.11 --ipc=host")
	check("DefaultImageOrigin", d.DefaultImageOrigin, "agent.default_docker.image ("+f+":4)")
	check("DefaultArguments", d.DefaultArguments, []string{"-e", "A=1", "--shm-size", "8g"})
	check("UpdateBackTask", d.UpdateBackTask, false)
	check("ExtraArguments", d.ExtraArguments, []string{"--network", "host", "-e", "HOST=$HOSTNAME"})
	check("ExtraArgumentsOrigin", d.ExtraArgumentsOrigin, "agent.extra_docker_arguments ("+f+":28)")
	check("ExtraShellScript", d.ExtraShellScript, []string{"echo hi"})
	check("PipCache", d.InternalMounts.PipCache, "/home/user/.cache/pip")
	check("SSHROFolder", d.InternalMounts.SSHROFolder, "/.ssh")
	check("ArgsFilters", d.ArgsFilters, []string{"^--env$", "^-e$"})
	check("switches", []bool{d.AllowHostEnviron, d.AllowProtectedMounts, d.ForcePull, d.DisableSSHMount, d.DisableTaskDockerOverride},
		[]bool{true, true, true, true, true})
	check("ContainerNameFormat", d.ContainerNameFormat, "clearml-{task_id}")
	check("HideEnvKeys", d.HideEnvKeys, []string{"MY_VAR"})
	check("caches", []bool{d.VCSCache, d.VenvsCache, d.PipDownloadCache}, []bool{false, false, false})
	yes := true
	check("MatchRules", d.MatchRules, []DockerMatchRule{
		{
			Key:              "agent.default_docker.match_rules[0]",
			Image:            "pytorch:2",
			Arguments:        []string{"--ipc=host", "-e", "X=a b"},
			SetupShellScript: "apt-get update\napt-get install -y git",
			Force:            true,
			UpdateBackTask:   &yes,
			Match: map[string][]string{
				"script.repository": {"github.com/org/.*"},
				"script.branch":     {"^main$"},
				"project":           {"^examples", "vision"},
				"tags":              {"gpu"},
			},
		},
		{
			Key:       "agent.default_docker.match_rules[1]",
			Image:     "other:1",
			Arguments: []string{"--network", "host"},
			Match:     map[string][]string{"script.binary": {"python3.10"}},
		},
	})
	check("Warnings", d.Warnings, []string{"agent.default_docker.match_rules[2] is not an object and was ignored; write {image: ..., match: {...}}"})
}

func TestDockerEnvironment(t *testing.T) {
	t.Parallel()
	c := loadText(t, `agent.extra_docker_arguments: ["--ipc=host"]`,
		"CLEARML_DOCKER_IMAGE=ubuntu:22.04 -e A=1",
		"CLEARML_AGENT_EXTRA_DOCKER_ARGS=--network host -e 'B=x y'",
		"CLEARML_AGENT_DOCKER_ARGS_FILTERS=^--network$ ^-e$",
		"CLEARML_AGENT_DISABLE_SSH_MOUNT=yes",
		"CLEARML_AGENT_EXTRA_DOCKER_LABELS=team=vision,owner=bob cost=a,b solo",
		"CLEARML_AGENT_DOCKER_ARGS_HIDE_ENV=HF_HUB MY_PASS",
		"CLEARML_DOCKER_SKIP_GPUS_FLAG=1",
	)
	d := c.Docker()
	got := []any{d.DefaultImage, d.DefaultImageOrigin, d.ExtraArguments, d.ExtraArgumentsOrigin, d.ArgsFilters, d.ArgsFiltersOrigin,
		d.DisableSSHMount, d.ExtraLabels, d.HideEnvKeys, d.SkipGPUsFlag, d.Warnings}
	want := []any{"ubuntu:22.04 -e A=1", "CLEARML_DOCKER_IMAGE", []string{"--network", "host", "-e", "B=x y"}, "CLEARML_AGENT_EXTRA_DOCKER_ARGS",
		[]string{"^--network$", "^-e$"}, "CLEARML_AGENT_DOCKER_ARGS_FILTERS",
		true, map[string]string{"team": "vision", "owner": "bob", "cost": "a,b", "solo": ""}, []string{"HF_HUB", "MY_PASS"}, true, []string(nil)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Docker() with the environment (-want +got):\n%s", diff)
	}
}

func TestDockerBadValues(t *testing.T) {
	t.Parallel()
	c := loadText(t, `agent.default_docker.arguments: "-e 'unbalanced"`+"\n"+`agent.default_docker.match_rules: "nope"`,
		"CLEARML_AGENT_DISABLE_SSH_MOUNT=maybe", "TRAINS_DOCKER_IMAGE=legacy:1")
	d := c.Docker()
	if d.DisableSSHMount || d.DefaultArguments != nil || d.MatchRules != nil {
		t.Errorf("bad values kept: ssh=%v args=%q rules=%v", d.DisableSSHMount, d.DefaultArguments, d.MatchRules)
	}
	if d.DefaultImage != "legacy:1" || d.DefaultImageOrigin != "TRAINS_DOCKER_IMAGE" {
		t.Errorf("DefaultImage = %q from %q, want legacy:1 from TRAINS_DOCKER_IMAGE", d.DefaultImage, d.DefaultImageOrigin)
	}
	want := []string{
		`agent.default_docker.arguments (` + c.File() + `:1): "-e 'unbalanced" does not split`,
		`CLEARML_AGENT_DISABLE_SSH_MOUNT="maybe" is not a boolean`,
		`agent.default_docker.match_rules is not a list`,
	}
	if len(d.Warnings) != len(want) {
		t.Fatalf("Warnings = %q, want %d", d.Warnings, len(want))
	}
	for _, w := range want {
		found := false
		for _, got := range d.Warnings {
			found = found || strings.HasPrefix(got, w)
		}
		if !found {
			t.Errorf("no warning starting %q in %q", w, d.Warnings)
		}
	}
}
