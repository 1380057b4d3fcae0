package cli

import (
	"cmp"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/agent/repo"
	"github.com/gpufleet/clearml-agent-go/agent/task"
)

// gpuEnv is the device environment of tasks for a --gpus value (reference
// section 6): "all" unsets CUDA_VISIBLE_DEVICES; a list goes into both, MIG
// "0.1" written "0:1"; cpu-only is "none".
func gpuEnv(gpus string, cpuOnly bool) map[string]string {
	switch {
	case cpuOnly:
		return map[string]string{"NVIDIA_VISIBLE_DEVICES": "none", "CUDA_VISIBLE_DEVICES": ""}
	case gpus == "":
		return nil
	case gpus == "all":
		return map[string]string{"NVIDIA_VISIBLE_DEVICES": "all"}
	default:
		v := strings.ReplaceAll(gpus, ".", ":")
		return map[string]string{"NVIDIA_VISIBLE_DEVICES": v, "CUDA_VISIBLE_DEVICES": v}
	}
}

// taskSettings maps the configuration onto the task runner's settings.
func taskSettings(g *Globals, cfg *config.Config, workerID, stateDir string, devices map[string]string, echo io.Writer, log *slog.Logger) task.Settings {
	a := cfg.Agent()
	s := task.Settings{
		WorkerID:               workerID,
		Git:                    repo.Creds{User: cmp.Or(g.Getenv("CLEARML_AGENT_GIT_USER"), a.GitUser), Pass: cmp.Or(g.Getenv("CLEARML_AGENT_GIT_PASS"), a.GitPass), Host: cmp.Or(g.Getenv("CLEARML_AGENT_GIT_HOST"), a.GitHost)},
		ForceSSH:               a.ForceGitSSHProtocol,
		SSHUser:                a.ForceGitSSHUser,
		SSHPort:                a.ForceGitSSHPort,
		TranslateSSH:           a.TranslateSSH,
		GitTimeout:             a.GitTimeout,
		InstallTimeout:         a.PackageManager.InstallTimeout,
		IgnoreRequestedVersion: a.IgnoreRequestedPythonVersion,
		ExtraIndexURLs:         a.PackageManager.ExtraIndexURL,
		ExtraPipFlags:          append(a.PackageManager.ExtraPipInstallFlags, strings.Fields(g.Getenv("CLEARML_EXTRA_PIP_INSTALL_FLAGS"))...),
		SystemSitePackages:     a.PackageManager.SystemSitePackages,
		VenvsDir:               a.VenvsDir,
		VenvsCacheMax:          a.VenvsCache.MaxEntries,
		ExtraEnv:               map[string]string{},
		ConfigFile:             cfg.File(),
		KeepCarriageReturn:     !a.SuppressCarriageReturn,
		AbortGrace:             a.AbortGracePeriod,
		PingInterval:           a.TaskPingInterval,
		Env:                    taskBaseEnv(g.Env, devices),
		SpoolDir:               filepath.Join(stateDir, "spool"),
		Echo:                   echo,
		Logger:                 log,
	}
	pm := a.PackageManager
	s.PackageManager, s.PipVersion, s.PoetryArgs = pm.Type, pm.PipVersion, pm.PoetryInstallExtraArgs
	s.PriorityPackages, s.PriorityOptionalPackages = pm.PriorityPackages, pm.PriorityOptionalPackages
	s.ForceRepoRequirements, s.ForceOriginalRequirements = pm.ForceRepoRequirementsTxt, pm.ForceOriginalRequirements
	if a.TaskPingInterval == 0 {
		s.PingInterval = -1
	}
	// How often a running task is checked for an abort (tasks.stop); ours.
	if d, ok := cfg.Duration("agent.abort_poll_interval_sec"); ok && d > 0 {
		s.StatusPoll = d
	}
	if a.VCSCacheEnabled {
		s.VCSCache = a.VCSCachePath
	}
	s.VenvsCache = cmp.Or(g.Getenv("CLEARML_AGENT_VENV_CACHE_PATH"), a.VenvsCache.Path)
	for _, p := range []string{a.PythonBinary, a.DefaultPython} {
		if p != "" {
			s.PythonFallbacks = append(s.PythonFallbacks, p)
		}
	}
	for k, v := range a.Environment {
		s.ExtraEnv[k] = v
	}
	for k, v := range devices {
		s.ExtraEnv[k] = v
	}
	return s
}

// taskBaseEnv is the agent's environment for tasks. With --gpus all the
// reference unsets CUDA_VISIBLE_DEVICES (every GPU is visible), so one
// inherited from the agent's own environment must not narrow it.
func taskBaseEnv(env []string, devices map[string]string) []string {
	if devices["NVIDIA_VISIBLE_DEVICES"] != "all" {
		return env
	}
	if _, set := devices["CUDA_VISIBLE_DEVICES"]; set {
		return env
	}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "CUDA_VISIBLE_DEVICES=") {
			out = append(out, kv)
		}
	}
	return out
}
