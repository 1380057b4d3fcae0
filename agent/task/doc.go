// Package task runs one ClearML task in venv mode, the same code for
// `clearml-agent execute --id T` and for the daemon: read the task, mark it
// started, clone its repository (agent/repo), pick its requirements (the
// stored script.requirements.pip, or the repository's requirements.txt when
// it stores none or with force_repo_requirements_txt), build or reuse its
// Python environment (agent/venv), run the entry point as a supervised process
// group (agent/process), ship every output line to the server
// (agent/logship), watch for aborts and ping the task, and report the final
// status after the last log line was flushed.
//
// Setup steps print to the task log, as the Python agent does, so a user sees
// in the web UI why a task failed.
//
// Two signals reach a running task and they are kept apart:
//   - a user abort (tasks.stop leaves the task in_progress with status
//     message "stopping"), detected by polling the task, and
//   - the agent's own abort: cancelling the context given to Run (the second
//     SIGTERM of the drain contract).
//
// Both send SIGTERM to the task's process group, wait the grace period, then
// SIGKILL, and mark the task stopped.
//
// It must not: poll queues, register workers or read the config file (the
// caller passes Settings).
package task
