package sdnotify_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/internal/sdnotify"
	"github.com/gpufleet/clearml-agent-go/internal/sdnotify/sdnotifytest"
)

func TestMessages(t *testing.T) {
	_, recv := sdnotifytest.Listen(t)
	n := sdnotify.New()
	if !n.Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}
	steps := []struct {
		call func() error
		want string
	}{
		{n.Ready, "READY=1"},
		{func() error { return n.Status("polling queue default\nidle") }, "STATUS=polling queue default idle"},
		{n.Watchdog, "WATCHDOG=1"},
		{n.Stopping, "STOPPING=1"},
	}
	for _, s := range steps {
		if err := s.call(); err != nil {
			t.Fatalf("%s: %v", s.want, err)
		}
		if got := recv(); got != s.want {
			t.Errorf("datagram %q, want %q", got, s.want)
		}
	}
}

func TestNoSocketIsNoOp(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	n := sdnotify.New()
	for _, f := range []func() error{n.Ready, n.Stopping, n.Watchdog, func() error { return n.Status("x") }} {
		if err := f(); err != nil {
			t.Errorf("without NOTIFY_SOCKET: %v, want nil", err)
		}
	}
	if err := n.RunWatchdog(t.Context(), func() bool { return true }); err != nil {
		t.Errorf("RunWatchdog without watchdog: %v", err)
	}
}

func TestMissingSocketIsAnError(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/nonexistent/notify.sock")
	if err := sdnotify.New().Ready(); err == nil {
		t.Error("Ready to a missing socket: got nil error")
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"", "", 0, false},
		{"30000000", "", 15 * time.Second, true},
		{"30000000", pid, 15 * time.Second, true},
		{"30000000", "1", 0, false}, // meant for another process
		{"junk", "", 0, false},
	}
	for _, tc := range tests {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		if tc.pid == "" {
			os.Unsetenv("WATCHDOG_PID")
		}
		got, ok := sdnotify.New().WatchdogInterval()
		if got != tc.want || ok != tc.ok {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: got (%v, %v), want (%v, %v)", tc.usec, tc.pid, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRunWatchdogOnlyWhileHealthy(t *testing.T) {
	_, recv := sdnotifytest.Listen(t)
	n := sdnotify.New()
	ticks := make(chan time.Time)
	health := []bool{false, true, false, true, true, false}
	calls := 0
	done := make(chan error, 1)
	go func() {
		done <- n.RunWatchdogTicks(t.Context(), ticks, func() bool { h := health[calls]; calls++; return h })
	}()
	for range health {
		ticks <- time.Now()
	}
	close(ticks)
	if err := <-done; err != nil {
		t.Fatalf("RunWatchdogTicks: %v", err)
	}
	if err := n.Status("end"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for s := ""; s != "STATUS=end"; {
		s = recv()
		got = append(got, s)
	}
	want := []string{"WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1", "STATUS=end"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("datagrams (-want +got):\n%s", diff)
	}
}

func TestRunWatchdogUsesHalfInterval(t *testing.T) {
	_, recv := sdnotifytest.Listen(t)
	t.Setenv("WATCHDOG_USEC", "20000") // 20 ms: keep-alives every 10 ms
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- sdnotify.New().RunWatchdog(ctx, func() bool { return true }) }()
	for i := 0; i < 3; i++ {
		if got := recv(); got != "WATCHDOG=1" {
			t.Fatalf("datagram %q, want WATCHDOG=1", got)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("RunWatchdog: %v", err)
	}
}
