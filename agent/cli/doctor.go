package cli

import (
	"cmp"
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/agent/docker"
	"github.com/gpufleet/clearml-agent-go/agent/doctor"
	"github.com/gpufleet/clearml-agent-go/agent/gpu"
	"github.com/gpufleet/clearml-agent-go/agent/instance"
)

// doctorFlags are doctor's command-line settings (the daemon's, where they
// mean the same).
type doctorFlags struct {
	queues      []string
	createQueue bool
	gpus        string
	cpuOnly     bool
	docker      string
	dockerSet   bool
	json        bool
	stateDir    string
}

func registerDoctor(app *kingpin.Application, g *Globals) {
	var f doctorFlags
	cmd := app.Command("doctor", "Check that this machine can run tasks, as `daemon` with the same flags would: the server, "+
		"credentials and queues, the clock, python and venv (or docker and its GPU support), the GPUs, disk space and agent.git_host. "+
		"Prints a table with the fix for each problem; exits 1 when a check fails.")
	cmd.Flag("queue", "Queues the daemon would pull from, names or ids (repeat --queue, or a,b). Default: the server's default queue.").
		Envar("CLEARML_AGENT_QUEUES").StringsVar(&f.queues)
	cmd.Flag("create-queue", "Queues that do not exist will be created (the daemon's --create-queue): not a failure.").BoolVar(&f.createQueue)
	cmd.Flag("gpus", "GPUs the daemon would use: 0, 0,1, all, or MIG ids like 0:1; each must be visible through NVML.").StringVar(&f.gpus)
	cmd.Flag("cpu-only", "The daemon would run tasks without GPUs.").Envar("CLEARML_CPU_ONLY").BoolVar(&f.cpuOnly)
	cmd.Flag("docker", "Check docker mode: the engine (DOCKER_HOST), its GPU support, and this image (default agent.default_docker.image) instead of python and venv.").
		PlaceHolder("IMAGE").IsSetByUser(&f.dockerSet).StringVar(&f.docker)
	cmd.Flag("json", "Print the results as JSON instead of a table.").BoolVar(&f.json)
	// The daemon's arguments pass through unchanged (agent-provision doctor
	// hands each agent's CLEARML_AGENT_DAEMON_ARGS over); these change
	// nothing that doctor checks.
	cmd.Flag("services-mode", "Accepted as daemon takes it; checks are the same.").Hidden().String()
	cmd.Flag("foreground", "Accepted as daemon takes it.").Hidden().Bool()
	cmd.Flag("state-dir", "The daemon's state directory, for the disk check (default as for daemon).").StringVar(&f.stateDir)
	g.Handle(cmd, func(ctx context.Context) error { return runDoctor(ctx, g, &f) })
}

func runDoctor(ctx context.Context, g *Globals, f *doctorFlags) error {
	if f.cpuOnly && f.gpus != "" {
		return exitErr(2, "--gpus %q and --cpu-only contradict each other; drop one", f.gpus)
	}
	if spec := strings.ReplaceAll(strings.TrimSpace(f.gpus), ".", ":"); spec != "" && !strings.EqualFold(spec, "all") {
		if _, _, err := gpu.ParseAssignment(spec, 1, nil); err != nil {
			return exitErr(2, "%v", err)
		}
	}
	cfg, err := g.LoadConfig()
	if err != nil {
		return err
	}
	stateDir := cmp.Or(f.stateDir, instance.StateDir(g.Getenv, g.Home()))
	a := cfg.API()
	so := doctor.ServerOptions{URL: a.APIServer, VerifyCertificate: a.VerifyCertificate, Queues: splitQueues(f.queues), CreateQueue: f.createQueue}
	if c, err := doctorClient(g, cfg); err != nil {
		so.APIErr = err
	} else {
		so.API = c
	}
	checks := doctor.ServerChecks(so)
	checks = append(checks, localChecks(g, cfg, localSetup{
		gpus: f.gpus, cpuOnly: f.cpuOnly || cfg.Agent().CPUOnly, docker: f.dockerSet, image: f.docker, stateDir: stateDir,
	})...)
	rep := doctor.Run(ctx, checks)
	if f.json {
		err = rep.WriteJSON(g.Stdout)
	} else {
		err = rep.WriteTable(g.Stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK {
		return &ExitError{Code: 1}
	}
	return nil
}

// doctorClient is the daemon's API client, but giving up after one retry:
// the server check already says whether the server answers.
func doctorClient(g *Globals, cfg *config.Config) (*api.Client, error) {
	a := cfg.API()
	host, _ := os.Hostname()
	var token string
	if a.AccessKey == "" || a.SecretKey == "" {
		token = g.Getenv("CLEARML_AUTH_TOKEN")
	}
	return api.New(api.Config{
		Host: a.APIServer, AccessKey: a.AccessKey, SecretKey: a.SecretKey, Token: token,
		DefaultMethod: a.DefaultMethod, VerifyCertificate: a.VerifyCertificate, WorkerHeader: host,
		AgentVersion: Version, TokenExpirationThreshold: a.TokenExpirationThreshold, MaxRetries: 1,
	})
}

// localSetup is how the agent would run, for the checks of this machine.
type localSetup struct {
	gpus     string
	cpuOnly  bool
	docker   bool
	image    string // the --docker value: "" or "image [args...]"
	stateDir string
	// daemon: the daemon's preflight. It reaches the engine itself
	// (connect), and NVML missing altogether is a warning there (a GPU-less
	// test machine or a static build cannot be told from a broken driver).
	daemon  bool
	connect func(ctx context.Context) (*docker.Engine, error)
}

// localChecks are the checks of this machine that `doctor` prints and the
// daemon's preflight runs: python and venv (venv mode) or docker and its
// GPU support (docker mode), the GPUs, disk space, agent.git_host.
func localChecks(g *Globals, cfg *config.Config, s localSetup) []doctor.Check {
	a := cfg.Agent()
	var checks []doctor.Check
	if s.docker {
		do := doctor.DockerOptions{NeedGPU: !s.cpuOnly && !cfg.Docker().SkipGPUsFlag, Env: g.Env}
		if !s.daemon {
			do.Image = a.DefaultDocker.Image
			if fields := strings.Fields(s.image); len(fields) > 0 {
				do.Image = fields[0]
			}
		}
		if s.connect != nil {
			connect := s.connect
			do.SkipEngine = true
			do.Inspect = func(ctx context.Context) (doctor.DockerInfo, error) {
				e, err := connect(ctx)
				if err != nil {
					return doctor.DockerInfo{}, err
				}
				return doctor.EngineInfo(ctx, e, "")
			}
		}
		checks = append(checks, doctor.DockerChecks(do)...)
		if !s.daemon { // the daemon stops at once without it
			checks = append(checks, doctor.Check{Name: "agent binary", Run: func(context.Context) doctor.Result {
				bin, err := containerAgentBinary(g)
				if err != nil {
					detail, fix, _ := strings.Cut(err.Error(), "; ")
					return doctor.Result{Status: doctor.Fail, Detail: detail, Fix: fix}
				}
				return doctor.Result{Status: doctor.OK, Detail: bin + " (static: runs inside any image)"}
			}})
		}
	} else {
		checks = append(checks, doctor.PythonChecks(doctor.PythonOptions{
			PythonBinary: a.PythonBinary, DefaultPython: a.DefaultPython, Manager: a.PackageManager.Type,
			SystemSitePackages: a.PackageManager.SystemSitePackages, Env: g.Env, TempDir: g.TempDir(),
		})...)
	}
	gpuOpts := doctor.GPUOptions{GPUs: s.gpus, CPUOnly: s.cpuOnly}
	if s.daemon {
		gpuOpts.NoNVML = doctor.Warn
	}
	checks = append(checks, doctor.GPUCheck(gpuOpts))

	var paths []doctor.DiskPath
	if s.docker {
		paths = append(paths, doctor.DiskPath{Label: "docker caches", Path: filepath.Join(g.Home(), ".clearml", "docker-cache")})
	} else {
		paths = append(paths, doctor.DiskPath{Label: "venvs", Path: a.VenvsDir},
			doctor.DiskPath{Label: "venv cache", Path: cmp.Or(g.Getenv("CLEARML_AGENT_VENV_CACHE_PATH"), a.VenvsCache.Path)})
		if a.VCSCacheEnabled {
			paths = append(paths, doctor.DiskPath{Label: "vcs cache", Path: a.VCSCachePath})
		}
		paths = append(paths, doctor.DiskPath{Label: "pip cache", Path: a.PipDownloadCache})
	}
	paths = append(paths, doctor.DiskPath{Label: "state dir", Path: s.stateDir})
	checks = append(checks, diskCheck(paths, a.DiskMinFreeGB))

	checks = append(checks, doctor.GitHostCheck(doctor.GitOptions{
		Host: cmp.Or(g.Getenv("CLEARML_AGENT_GIT_HOST"), a.GitHost), ForceSSH: a.ForceGitSSHProtocol, SSHPort: a.ForceGitSSHPort,
	}))
	return checks
}

// diskCheck is the disk-space floor of the caches and the state dir. For
// now the floor is agent.venvs_cache.free_space_threshold_gb; the hard
// floor of the disk watermarks (agent.disk_min_free_gb) replaces it here.
func diskCheck(paths []doctor.DiskPath, minFreeGB float64) doctor.Check {
	return doctor.DiskCheck(doctor.DiskOptions{Paths: paths, MinFreeGB: minFreeGB, Setting: "agent.disk_min_free_gb"})
}

// daemonPreflight is the daemon's start check: engine (docker mode, with
// the recovery of an earlier run's containers), then the local checks;
// warnings are logged once per change and do not block.
func daemonPreflight(engine func(context.Context) error, checks func() []doctor.Check, warn func(doctor.Result)) func(context.Context) error {
	local := doctor.Preflight(checks, warn)
	return func(ctx context.Context) error {
		if engine != nil {
			if err := engine(ctx); err != nil {
				return err
			}
		}
		return local(ctx)
	}
}
