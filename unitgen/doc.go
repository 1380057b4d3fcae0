// Package unitgen turns a list of agents into the systemd files that run
// them: the template unit clearml-agent@.service, the clearml-agents.target
// that pulls in one instance per agent, and one environment file per
// instance. It is pure: data in, files out.
//
// It owns: the unit directives (Type=notify with a watchdog, drain-aware stop
// timeout, per-instance state/cache/logs directories, sandboxing that keeps
// the NVIDIA devices reachable; in docker mode the docker group, ordering
// after the local docker.service, and no devices for the agent itself), the
// environment-file format, and the validation of instance names, queues and
// extra variables.
//
// It must not: write to disk, call systemctl, read the GPU inventory
// (agent/gpu does), or put credentials anywhere: API keys and git passwords
// stay in clearml.conf (mode 0600), and Generate rejects extra variables
// whose names look like secrets.
package unitgen
