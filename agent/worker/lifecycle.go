package worker

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// LifecycleConfig says what each step of the signal contract does; the CLI
// fills it in (Daemon.Drain, cancelling Run's context, process.KillAll).
type LifecycleConfig struct {
	// Drain is called on the first stop signal: take no new task
	// (Daemon.Drain) and tell systemd the unit is stopping.
	Drain func()
	// Abort is called once, on the second stop signal, when the drain
	// timeout passes, or with the first stop signal when the daemon has not
	// connected yet (there is nothing to drain): abort the running task
	// (cancel Daemon.Run's context).
	Abort func()
	// Kill is called on the third stop signal, before Exited closes: kill
	// the task process groups (process.KillAll).
	Kill func()
	// Reload is called on SIGHUP.
	Reload func()
	// Connected reports whether the daemon has connected to the server
	// (READY=1 went out); nil means it has.
	Connected func() bool
	// DrainTimeout, when positive, aborts the running task that long after
	// the first stop signal.
	DrainTimeout time.Duration
	// After starts the drain timeout; nil means time.After (tests pass a
	// channel they fire themselves).
	After  func(time.Duration) <-chan time.Time
	Logger *slog.Logger
}

// Lifecycle is the daemon's signal contract (docs/signals.md), in one place:
// the first SIGTERM or SIGINT drains, the second aborts the running task, the
// third kills the task process groups and exits at once; SIGHUP reloads. Run
// reads the signals from a channel, so tests drive it with plain values and
// no real signals; the CLI connects os/signal to it.
type Lifecycle struct {
	cfg    LifecycleConfig
	log    *slog.Logger
	stops  int
	abort  sync.Once
	drain  chan struct{}
	exited chan struct{}
}

// NewLifecycle returns a lifecycle; call Run.
func NewLifecycle(cfg LifecycleConfig) *Lifecycle {
	nop := func() {}
	if cfg.Drain == nil {
		cfg.Drain = nop
	}
	if cfg.Abort == nil {
		cfg.Abort = nop
	}
	if cfg.Kill == nil {
		cfg.Kill = nop
	}
	if cfg.Reload == nil {
		cfg.Reload = nop
	}
	if cfg.Connected == nil {
		cfg.Connected = func() bool { return true }
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Lifecycle{cfg: cfg, log: cfg.Logger, drain: make(chan struct{}), exited: make(chan struct{})}
}

// Draining reports whether a stop signal came (a requested stop, not a
// failure, whatever Daemon.Run returns after it).
func (l *Lifecycle) Draining() bool {
	select {
	case <-l.drain:
		return true
	default:
		return false
	}
}

// Exited is closed after the third stop signal, once the task process groups
// are killed: the caller exits at once, without waiting for anything.
func (l *Lifecycle) Exited() <-chan struct{} { return l.exited }

// Run handles sigs until ctx ends or the third stop signal. SIGHUP reloads;
// every other signal counts as a stop (SIGTERM, SIGINT). All of the
// config's functions are called from Run's goroutine.
func (l *Lifecycle) Run(ctx context.Context, sigs <-chan os.Signal) {
	var timeout <-chan time.Time // the drain timeout, once armed
	for {
		select {
		case <-ctx.Done():
			return
		case <-timeout:
			timeout = nil
			l.log.Warn("drain timeout reached: aborting the running task", "drain_timeout", l.cfg.DrainTimeout.String())
			l.abortOnce()
		case s := <-sigs:
			if s == syscall.SIGHUP {
				l.cfg.Reload()
				continue
			}
			l.stops++
			switch l.stops {
			case 1:
				l.log.Info("draining: finishing the running task, taking no new one (send the signal again to abort it)", "signal", s.String())
				close(l.drain)
				l.cfg.Drain()
				if dt := l.cfg.DrainTimeout; dt > 0 {
					l.log.Info("the running task is aborted if it has not finished by then", "drain_timeout", dt.String())
					timeout = l.cfg.After(dt)
				}
				if !l.cfg.Connected() {
					// Not connected yet (the API client may be retrying
					// the login): no task can run, so stop waiting now.
					l.abortOnce()
				}
			case 2:
				l.log.Warn("aborting the running task (send the signal again to exit at once)", "signal", s.String())
				timeout = nil
				l.abortOnce()
			default:
				l.log.Error("exiting at once; killing the running task's process group", "signal", s.String())
				l.cfg.Kill()
				close(l.exited)
				return
			}
		}
	}
}

func (l *Lifecycle) abortOnce() { l.abort.Do(l.cfg.Abort) }
