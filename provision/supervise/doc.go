// Package supervise runs agents as child processes where systemd is not PID 1
// (Colab-like containers, notebooks): `agent-provision run`. Each child gets
// the argv and environment its systemd unit would give it and its own
// NOTIFY_SOCKET, a unixgram socket the supervisor reads, so READY=1 and
// STATUS= are reported just as systemd would show them. A child that exits
// non-zero or is killed is restarted with exponential backoff (like
// Restart=on-failure); one that exits 0 stays stopped.
//
// Signals follow the agent's drain contract: the first SIGTERM/SIGINT is
// forwarded as SIGTERM to every child (drain: finish the running task) and
// stops restarts, the second is forwarded again (abort the task), the third
// SIGKILLs the children and Run returns.
//
// A child with Watchdog set gets WATCHDOG_USEC like systemd's WatchdogSec=;
// once it has sent WATCHDOG=1, a longer silence (a frozen or deadlocked
// agent) gets its process group SIGKILLed and it is restarted like a crash.
//
// A task leads its own process group (and so does the execute child that
// runs it), so killing an agent does not end its tasks; the agent records
// those groups in its state directory (agent/instance Groups). Before each
// start of a child, and after a third signal, the supervisor ends the
// recorded groups a dead run left running (checking each is still the
// recorded one), and the restarted agent marks their tasks failed with
// instance.OrphanReason. A child subreaper (PR_SET_CHILD_SUBREAPER) was not
// used: it would cover only this supervisor, not an agent restarted by hand
// or by --detached, and an orphan reparented to it no longer says which
// agent it belonged to. Under systemd the unit's cgroup does the same
// (KillMode=mixed: whatever is left when the main process dies is killed
// before the restart).
//
// Notify messages are accepted only from the agent's own pid (SO_PASSCRED,
// like NotifyAccess=main); a message from a task or any other process is
// ignored, and logged once per child.
//
// It owns child processes only: it must not render configs or units.
package supervise
