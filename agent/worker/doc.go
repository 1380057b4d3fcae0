// Package worker is the daemon loop of clearml-agent: log in, resolve the
// queues once, register the worker, poll the queues (priority order or round
// robin), run each task through agent/task, report machine stats every 30 s,
// and unregister on exit. It tells systemd what it is doing (READY once
// registered and polling, STATUS on every state change, WATCHDOG only while
// the loop is healthy, STOPPING on shutdown).
//
// Shutdown is two separate signals, owned here:
//   - Drain (Daemon.Drain, the first SIGTERM): take no new task, finish the
//     running one, then unregister and return.
//   - Abort (cancelling Run's context, the second SIGTERM): the running task
//     gets SIGTERM, the grace period, SIGKILL, and is marked stopped.
//
// Lifecycle is the whole signal contract of docs/signals.md (drain, abort,
// exit at once, SIGHUP reload, drain timeout), fed signals through a channel:
// the CLI connects os/signal to it and turns Exited into its exit status.
//
// Idle server load: one queues.get_next_task per queue per poll interval and
// one workers.status_report per report interval. Queue metadata is fetched
// once at start (the Python agent re-fetches it on every pass).
//
// It must not: parse flags or config files (the CLI builds Config), run
// processes itself (agent/task does), subscribe to OS signals or exit the
// process (the CLI does both).
package worker
