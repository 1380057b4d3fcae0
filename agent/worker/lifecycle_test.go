package worker_test

import (
	"context"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/worker"
)

// timeout in an event list fires the drain timeout.
const timeout = syscall.Signal(-1)

// The signal contract of docs/signals.md, driven through Run's channel with
// plain values: no real signals, no sleeps. Each event is handed over on an
// unbuffered channel, so the next one is only taken once Run has finished
// with the last.
func TestLifecycle(t *testing.T) {
	term, sigint, hup := syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP
	for i, c := range []struct {
		name         string
		disconnected bool          // the daemon has not said READY yet
		drainTimeout time.Duration // 0: none
		events       []os.Signal
		want         []string // what the lifecycle did, in order
		exited       bool
	}{
		{"first SIGTERM drains", false, 0, []os.Signal{term}, []string{"drain"}, false},
		{"second aborts", false, 0, []os.Signal{term, term}, []string{"drain", "abort"}, false},
		{"third kills and exits", false, 0, []os.Signal{term, term, term}, []string{"drain", "abort", "kill"}, true},
		{"SIGINT counts as SIGTERM", false, 0, []os.Signal{sigint, term, sigint}, []string{"drain", "abort", "kill"}, true},
		{"SIGHUP reloads and does not count", false, 0, []os.Signal{hup, term, hup, hup, term},
			[]string{"reload", "drain", "reload", "reload", "abort"}, false},
		{"SIGHUP alone", false, 0, []os.Signal{hup}, []string{"reload"}, false},
		{"stop before connecting aborts at once", true, 0, []os.Signal{term}, []string{"drain", "abort"}, false},
		{"before connecting: the second aborts no more", true, 0, []os.Signal{term, term}, []string{"drain", "abort"}, false},
		{"before connecting: the third exits", true, 0, []os.Signal{term, term, term}, []string{"drain", "abort", "kill"}, true},
		{"drain timeout armed", false, time.Minute, []os.Signal{term}, []string{"drain", "timer 1m0s"}, false},
		{"drain timeout aborts", false, time.Minute, []os.Signal{term, timeout}, []string{"drain", "timer 1m0s", "abort"}, false},
		{"after the drain timeout the second aborts no more", false, time.Minute, []os.Signal{term, timeout, term},
			[]string{"drain", "timer 1m0s", "abort"}, false},
		{"after the drain timeout the third still exits", false, time.Minute, []os.Signal{term, timeout, term, term},
			[]string{"drain", "timer 1m0s", "abort", "kill"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			record := func(s string) func() { return func() { got = append(got, s) } }
			fire := make(chan time.Time)
			l := worker.NewLifecycle(worker.LifecycleConfig{
				Drain: record("drain"), Abort: record("abort"), Kill: record("kill"), Reload: record("reload"),
				Connected:    func() bool { return !c.disconnected },
				DrainTimeout: c.drainTimeout,
				After: func(d time.Duration) <-chan time.Time {
					got = append(got, "timer "+d.String())
					return fire
				},
				Logger: slog.New(slog.DiscardHandler),
			})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			sigs := make(chan os.Signal)
			done := make(chan struct{})
			go func() { defer close(done); l.Run(ctx, sigs) }()
			for _, ev := range c.events {
				var err string
				if ev == timeout {
					select {
					case fire <- time.Now():
					case <-done:
						err = "Run returned before the drain timeout fired"
					case <-time.After(time.Minute):
						err = "the drain timeout is not armed"
					}
				} else {
					select {
					case sigs <- ev:
					case <-done:
						err = "Run returned before " + ev.String()
					case <-time.After(time.Minute):
						err = "Run did not take " + ev.String()
					}
				}
				if err != "" {
					t.Fatalf("#%d: %s", i, err)
				}
			}
			if !c.exited {
				cancel() // Run finishes the last event first: it is back at its select
			}
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatalf("#%d: Run did not return", i)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("#%d: actions (-want +got):\n%s", i, diff)
			}
			select {
			case <-l.Exited():
				if !c.exited {
					t.Errorf("#%d: Exited closed, want open", i)
				}
			default:
				if c.exited {
					t.Errorf("#%d: Exited open, want closed", i)
				}
			}
			if want := hasStop(c.events); l.Draining() != want {
				t.Errorf("#%d: Draining() = %v, want %v", i, l.Draining(), want)
			}
		})
	}
}

func hasStop(events []os.Signal) bool {
	for _, e := range events {
		if e == syscall.SIGTERM || e == syscall.SIGINT {
			return true
		}
	}
	return false
}
