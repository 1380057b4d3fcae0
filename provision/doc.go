// Package provision turns agent-provision's inputs into a Plan (clearml.conf,
// the unit files and per-agent environment files from package unitgen, each
// with its diff against what is on disk, and the units to start, restart or
// stop) and applies it: atomic writes, the agent system user, then
// daemon-reload, enable, start and wait through a systemd.Manager, or
// offline enabling under an image root (--root). It also lists the provisioned
// agents (Status, with the containers of docker-mode agents: AddContainers),
// removes them (Remove) and fills in credentials on first boot (FirstBoot).
//
// Run carries out one agent-provision Command (apply, status, remove, gpus,
// first-boot, run: the supervisor's assembly), taking from the machine only
// what Deps gives (systemd, NVML, euid, clock, environment, signals), which
// tests replace. SIGINT/SIGTERM cancel an apply; its rollback still runs.
//
// Docker mode (Inputs.Docker): the plan checks, before anything is written,
// that the static agent for the task containers exists and is static, that
// the docker group exists and that the engine answers (one-line errors
// naming the fix; warnings only for --root image builds, whose engine is not
// running). It talks to the engine only through the Docker API client: a
// version query in the plan, a container list by label in AddContainers.
//
// Rules it keeps: re-applying the same inputs writes nothing and restarts
// nothing; changed inputs restart only the affected agents; agents no longer
// wanted are stopped, disabled and their files removed. If applying fails
// before any unit was started or restarted, the files written by that run are
// restored to what was there before (new files removed) and systemd is
// reloaded again; once a unit was started, nothing is rolled back and the
// error names the units that were written but not started. A cancelled
// context (Ctrl-C) is such a failure: the rollback's daemon-reload runs on a
// context of its own.
//
// It must not render unit directives (unitgen does), parse --gpus (agent/gpu
// does), talk D-Bus itself (provision/systemd does) or parse command-line
// flags (cmd/agent-provision does). Credentials go only into clearml.conf
// (mode 0600, owned by the agent user) and are masked in plan output.
package provision
