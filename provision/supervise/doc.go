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
// It owns child processes only: it must not render configs or units.
package supervise
