// Package executor runs each task of the daemon in a child process,
// `clearml-agent execute --id T`, as buildkite-agent runs its bootstrap per
// job: the child clones, builds the environment, runs the task, ships its log
// and reports the final status, while the daemon only polls, supervises,
// forwards aborts and reports the worker. A crash or a leak in one task's
// setup cannot take the daemon down, the idle daemon stays small, and venv
// and docker mode differ only in where the child runs.
//
// It owns both ends of the small protocol between the two processes:
//
//   - fd 3 of the child (events): one JSON object per line, "loaded" (the task
//     was read: id and name), "started" (the task's process group) and
//     "outcome" (how the run ended), written by Reporter;
//   - fd 4 of the child (lifeline): the daemon never writes to it; end of
//     file means the daemon is gone, and the child aborts its task (Lifeline);
//   - SIGTERM to the child aborts the task (SIGTERM to its process group, the
//     grace period, SIGKILL, tasks.stopped), as it does for `execute` by hand;
//   - CLEARML_AUTH_TOKEN hands the child the daemon's session token, so it
//     does not log in again.
//
// It must not: run task code itself, or read the configuration (the CLI
// passes the command line and environment in Config).
package executor
