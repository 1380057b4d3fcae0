package main

import (
	"io"

	"github.com/alecthomas/kingpin/v2"
	"github.com/gpufleet/clearml-agent-go/cloudinit"
	"github.com/gpufleet/clearml-agent-go/provision"
	"github.com/gpufleet/clearml-agent-go/unitgen"
)

// parse turns the command line (and AGENT_PROVISION_* / CLEARML_* variables)
// into a provision.Command. exit >= 0 when kingpin already answered
// (--help, --version) and the program should end with that status.
func parse(args []string, stdout, stderr io.Writer) (c provision.Command, exit int, err error) {
	c.Stdout, c.Stderr = stdout, stderr
	app := kingpin.New("agent-provision", "Provision ClearML agents: clearml.conf plus one systemd unit per GPU agent.\n\nSecrets: --secret-key and --git-pass show in ps and shell history; pass them as CLEARML_API_SECRET_KEY and CLEARML_AGENT_GIT_PASS (with CLEARML_API_ACCESS_KEY, CLEARML_AGENT_GIT_USER) or in a --credentials-file instead.")
	app.Writer(stdout)
	app.ErrorWriter(stderr)
	app.UsageWriter(stderr)
	exit = -1
	app.Terminate(func(code int) {
		if exit < 0 {
			exit = code
		}
	})
	env := func(name string) string { return "AGENT_PROVISION_" + name }
	in := &c.Inputs
	app.Flag("api-host", "ClearML API server URL.").Envar("CLEARML_API_HOST").StringVar(&in.APIHost)
	app.Flag("web-host", "ClearML web server URL.").Envar("CLEARML_WEB_HOST").StringVar(&in.WebHost)
	app.Flag("files-host", "ClearML files server URL.").Envar("CLEARML_FILES_HOST").StringVar(&in.FilesHost)
	app.Flag("access-key", "API access key (written only into clearml.conf); or --credentials-file.").Envar("CLEARML_API_ACCESS_KEY").StringVar(&in.AccessKey)
	app.Flag("secret-key", "API secret key (written only into clearml.conf). A flag shows in ps and shell history: prefer CLEARML_API_SECRET_KEY or --credentials-file.").Envar("CLEARML_API_SECRET_KEY").StringVar(&in.SecretKey)
	app.Flag("queue", "Queue of every GPU/CPU agent; repeat or comma-separate for several (default: default).").Envar(env("QUEUE")).StringsVar(&c.Queues)
	app.Flag("agent-queues", "Queues of one agent, e.g. gpu0=q1,q2; repeatable.").Envar(env("AGENT_QUEUES")).StringsVar(&c.AgentQueues)
	app.Flag("gpus", "GPUs: 0,1 (one agent each), 0,1+2,3 (groups), all, UUIDs, MIG 0:1.").Envar(env("GPUS")).StringVar(&in.GPUs)
	app.Flag("gpus-per-agent", "Group this many GPUs per agent.").Envar(env("GPUS_PER_AGENT")).IntVar(&in.GPUsPerAgent)
	app.Flag("cpu-agents", "Number of CPU-only agents.").Envar(env("CPU_AGENTS")).IntVar(&in.CPUAgents)
	app.Flag("services-agent", "Add a services-mode agent.").Envar(env("SERVICES_AGENT")).BoolVar(&in.ServicesAgent)
	app.Flag("services-queue", "Queue of the services agent.").Default(provision.DefaultServicesQueue).Envar(env("SERVICES_QUEUE")).StringVar(&in.ServicesQueue)
	app.Flag("docker", "Run every agent's tasks in containers on the Docker engine (daemon --docker).").Envar(env("DOCKER")).IsSetByUser(&c.DockerSet).BoolVar(&in.Docker)
	app.Flag("docker-image", "Default image of the task containers (implies --docker); default: agent.default_docker in clearml.conf.").Envar(env("DOCKER_IMAGE")).StringVar(&in.DockerImage)
	app.Flag("docker-agent-binary", "Static clearml-agent bind-mounted into task containers (implies --docker; default PREFIX/bin/clearml-agent-static).").Envar(env("DOCKER_AGENT_BINARY")).StringVar(&in.DockerAgentBinary)
	app.Flag("docker-host", "Docker engine of the agents in docker mode (default unix:///var/run/docker.sock).").Envar("DOCKER_HOST").StringVar(&in.DockerHost)
	app.Flag("git-user", "Git user for task repositories.").Envar("CLEARML_AGENT_GIT_USER").StringVar(&in.GitUser)
	app.Flag("git-pass", "Git password or token (written only into clearml.conf). A flag shows in ps and shell history: prefer CLEARML_AGENT_GIT_PASS or --credentials-file.").Envar("CLEARML_AGENT_GIT_PASS").StringVar(&in.GitPass)
	app.Flag("credentials-file", "File (mode 0600) of KEY=VALUE lines: CLEARML_API_ACCESS_KEY, CLEARML_API_SECRET_KEY, optionally CLEARML_AGENT_GIT_USER and CLEARML_AGENT_GIT_PASS; fills what flags and environment leave empty.").Envar(env("CREDENTIALS_FILE")).StringVar(&c.CredentialsFile)
	app.Flag("extra-index-url", "Extra Python package index; repeatable.").Envar(env("EXTRA_INDEX_URL")).StringsVar(&in.ExtraIndexURLs)
	app.Flag("default-output-uri", "Default output URI of tasks.").Envar(env("DEFAULT_OUTPUT_URI")).StringVar(&in.DefaultOutputURI)
	app.Flag("user", "System account the agents run as.").Default(unitgen.DefaultUser).Envar(env("USER")).StringVar(&in.User)
	app.Flag("prefix", "Install prefix of the clearml-agent binary (PREFIX/bin/clearml-agent).").Default(provision.DefaultPrefix).Envar(env("PREFIX")).StringVar(&in.Prefix)
	app.Flag("config", "clearml.conf to write or merge into.").Default(unitgen.DefaultConfigPath).Envar(env("CONFIG")).StringVar(&in.ConfigPath)
	app.Flag("root", "Write everything under this image root, enable units offline, start nothing.").Envar(env("ROOT")).StringVar(&in.Root)
	app.Flag("metrics-listen", "Prometheus endpoint of the first agent, HOST:PORT (e.g. 127.0.0.1:9101); each further agent gets the next port.").Envar(env("METRICS_LISTEN")).StringVar(&in.MetricsListen)
	app.Flag("first-boot-creds", "Allow missing credentials; `agent-provision first-boot` fills them in.").Envar(env("FIRST_BOOT_CREDS")).BoolVar(&in.FirstBootCreds)
	app.Flag("hostname", "Host name for worker ids (default: this host; none with --root).").Envar(env("HOSTNAME")).StringVar(&in.Hostname)
	app.Flag("watchdog-sec", "Unit WatchdogSec (0: default, -1: off).").Envar(env("WATCHDOG_SEC")).Hidden().IntVar(&in.WatchdogSec)
	app.Flag("dry-run", "Print the plan (files with diffs, units) and change nothing.").Envar(env("DRY_RUN")).BoolVar(&c.DryRun)
	app.Flag("no-start", "Write and enable the units but start nothing.").Envar(env("NO_START")).BoolVar(&c.NoStart)
	app.Flag("wait", "How long to wait for agents to report READY.").Default(provision.DefaultWait.String()).Envar(env("WAIT")).DurationVar(&c.WaitTimeout)

	app.Command(string(provision.ActionApply), "Write the config and units and start the agents (default).").Default()
	app.Command(string(provision.ActionStatus), "Show the agents: unit, GPUs, queues, worker id, state, STATUS, uptime.")
	removeCmd := app.Command(string(provision.ActionRemove), "Stop, disable and delete the agents and their files.")
	removeCmd.Flag("purge-config", "Delete clearml.conf too.").Envar(env("PURGE_CONFIG")).BoolVar(&c.PurgeConfig)
	app.Command(string(provision.ActionGPUs), "List the GPUs NVML finds.")
	runCmd := app.Command(string(provision.ActionRun), "Supervise the agents as child processes (no systemd needed).")
	runCmd.Flag("state-dir", "Where the agents keep state, cache and logs.").Envar(env("STATE_DIR")).StringVar(&c.StateDir)
	firstBootCmd := app.Command(string(provision.ActionFirstBoot), "Fill in credentials of a --first-boot-creds config, then start the agents.")
	firstBootCmd.Flag("creds-file", "File with CLEARML_API_ACCESS_KEY=... and CLEARML_API_SECRET_KEY=... lines; waited for (up to --creds-timeout) until it is there.").Envar(env("CREDS_FILE")).StringVar(&c.CredsFile)
	firstBootCmd.Flag("creds-url", "Metadata URL that answers 200 with the same KEY=VALUE lines; retried with backoff up to --creds-timeout.").Envar(env("CREDS_URL")).StringVar(&c.CredsURL)
	firstBootCmd.Flag("creds-header", "Request header of --creds-url, 'Name: value' (e.g. 'Metadata-Flavor: Google'); repeatable.").Envar(env("CREDS_HEADER")).StringsVar(&c.CredsHeaders)
	firstBootCmd.Flag("creds-timeout", "How long to wait for --creds-file or --creds-url before failing.").Default(provision.DefaultCredsTimeout.String()).Envar(env("CREDS_TIMEOUT")).DurationVar(&c.CredsTimeout)

	ci := &c.CloudInit
	cloudInitCmd := app.Command(string(provision.ActionCloudInit), "Print #cloud-config user-data (or a startup script) that installs and provisions the agents these flags describe at a machine's first boot.")
	cloudInitCmd.Flag("output", "Write it to this file (mode 0600: it may hold the credentials) instead of stdout.").Short('o').Envar(env("OUTPUT")).StringVar(&ci.Output)
	cloudInitCmd.Flag("format", "cloud-config (user-data) or shell (a #!/bin/sh startup script).").Default(string(cloudinit.FormatCloudConfig)).Envar(env("FORMAT")).EnumVar(&ci.Format, string(cloudinit.FormatCloudConfig), string(cloudinit.FormatShell))
	cloudInitCmd.Flag("binary-url", "Release tarball to install at boot (http(s)://, file:// or a path on the machine); needs --binary-sha256.").Envar(env("BINARY_URL")).StringVar(&ci.BinaryURL)
	cloudInitCmd.Flag("binary-sha256", "sha256 of the --binary-url tarball (the first field of its .sha256 file); a mismatch stops the install.").Envar(env("BINARY_SHA256")).StringVar(&ci.BinarySHA256)
	cloudInitCmd.Flag("creds-from", "Where the machine gets the credentials: inline (written 0600 from the user-data; default), file:PATH or url:URL (waited for at boot), placeholder (none; run `agent-provision first-boot` later).").Envar(env("CREDS_FROM")).StringVar(&ci.CredsFrom)
	cloudInitCmd.Flag("creds-header", "Request header of --creds-from url:URL, 'Name: value'; repeatable.").Envar(env("CREDS_HEADER")).StringsVar(&c.CredsHeaders)
	cloudInitCmd.Flag("creds-timeout", "How long the machine waits for --creds-from file:/url: credentials.").Default(provision.DefaultCredsTimeout.String()).Envar(env("CREDS_TIMEOUT")).DurationVar(&c.CredsTimeout)
	cloudInitCmd.Flag("worker-id-prefix", "Worker ids PREFIX:<instance-id>:<agent> (the autoscaler's convention), the instance id read at boot.").Envar(env("WORKER_ID_PREFIX")).StringVar(&ci.WorkerIDPrefix)
	cloudInitCmd.Flag("no-packages", "Install no packages (the image has python3, python3-venv, git, ca-certificates, curl).").Envar(env("NO_PACKAGES")).BoolVar(&ci.NoPackages)
	cloudInitCmd.Flag("docker-packages", "Install docker.io too (for --docker).").Envar(env("DOCKER_PACKAGES")).BoolVar(&ci.DockerPackages)
	cloudInitCmd.Flag("prebuilt-image", "The image has the agent and its units (packer: --root / --first-boot-creds): only deliver the credentials and start the agents.").Envar(env("PREBUILT_IMAGE")).BoolVar(&ci.PrebuiltImage)

	app.Command(string(provision.ActionDoctor), "Check every provisioned agent as its unit would run: `clearml-agent doctor` with its queues, GPUs and mode, as its user; a table per agent with the fix for each failure.")

	cmd, err := app.Parse(args)
	c.Action = provision.Action(cmd)
	return c, exit, err
}
