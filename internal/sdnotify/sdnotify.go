package sdnotify

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages to $NOTIFY_SOCKET. The zero value is ready
// to use; the environment is read at every call.
type Notifier struct{}

// New returns a Notifier.
func New() *Notifier { return &Notifier{} }

// Enabled reports whether NOTIFY_SOCKET is set.
func (n *Notifier) Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

func (n *Notifier) send(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %q to NOTIFY_SOCKET=%q: %w; check the socket exists and is writable",
			strings.TrimSpace(state), os.Getenv("NOTIFY_SOCKET"), err)
	}
	return nil
}

// Ready sends READY=1.
func (n *Notifier) Ready() error { return n.send(daemon.SdNotifyReady) }

// Status sends STATUS=s (shown by systemctl status). Newlines become spaces.
func (n *Notifier) Status(s string) error {
	return n.send("STATUS=" + strings.ReplaceAll(s, "\n", " "))
}

// Stopping sends STOPPING=1.
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }

// Watchdog sends WATCHDOG=1.
func (n *Notifier) Watchdog() error { return n.send(daemon.SdNotifyWatchdog) }

// WatchdogInterval returns how often to send WATCHDOG=1: half of
// WATCHDOG_USEC. ok is false when the watchdog is off, when WATCHDOG_PID names
// another process, or when the variables cannot be parsed.
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0, false
	}
	return d / 2, true
}

// RunWatchdog sends WATCHDOG=1 every WatchdogInterval while healthy() returns
// true, until ctx is done. It returns nil at once when the watchdog is off.
// Skipping keep-alives while unhealthy lets systemd restart a stuck agent.
func (n *Notifier) RunWatchdog(ctx context.Context, healthy func() bool) error {
	d, ok := n.WatchdogInterval()
	if !ok {
		return nil
	}
	t := time.NewTicker(d)
	defer t.Stop()
	return n.RunWatchdogTicks(ctx, t.C, healthy)
}

// RunWatchdogTicks is RunWatchdog driven by ticks (tests inject their own).
// It returns when ctx is done (nil) or ticks is closed (nil). A failed send
// is returned only if the next ones fail too: it keeps going after one error
// and returns the last error when it stops.
func (n *Notifier) RunWatchdogTicks(ctx context.Context, ticks <-chan time.Time, healthy func() bool) error {
	var last error
	for {
		select {
		case <-ctx.Done():
			return last
		case _, ok := <-ticks:
			if !ok {
				return last
			}
			if healthy() {
				if err := n.Watchdog(); err != nil {
					last = err
				} else {
					last = nil
				}
			}
		}
	}
}
