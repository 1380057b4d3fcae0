// Package sdnotify tells systemd about the agent's state (sd_notify(3)):
// READY=1 after the worker registered, STATUS= lines, STOPPING=1 on shutdown,
// and WATCHDOG=1 keep-alives sent only while the agent is healthy.
//
// It is a thin wrapper over github.com/coreos/go-systemd/v22/daemon. Every call
// is a no-op when NOTIFY_SOCKET is unset (not started by systemd, or a unit
// that is not Type=notify). It must not decide what "healthy" means (the
// caller passes that in) nor touch unit files or D-Bus.
package sdnotify
