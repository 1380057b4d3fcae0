package supervise

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the fake agent when SUPERVISE_FAKE is set.
func TestMain(m *testing.M) {
	if mode := os.Getenv("SUPERVISE_FAKE"); mode != "" {
		os.Exit(fakeAgent(mode))
	}
	os.Exit(m.Run())
}

// fakeAgent appends "start" to $FAKE_LOG, sends READY=1 and STATUS=, then:
// crash: exits 3; drain: records each SIGTERM and exits 0 after the second;
// stubborn: ignores SIGTERM; freeze: logs WATCHDOG_USEC, sends WATCHDOG=1
// three times at a quarter of it, then goes silent (a hung agent); quiet:
// logs WATCHDOG_USEC and never sends WATCHDOG=1.
func fakeAgent(mode string) int {
	logf := func(s string) {
		f, err := os.OpenFile(os.Getenv("FAKE_LOG"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, s)
			f.Close()
		}
	}
	terms := make(chan os.Signal, 4)
	signal.Notify(terms, syscall.SIGTERM)
	logf("start")
	if c, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET")); err == nil {
		c.Write([]byte("READY=1\nSTATUS=polling queue q"))
		c.Close()
	}
	switch mode {
	case "crash":
		return 3
	case "drain":
		<-terms
		logf("drain")
		<-terms
		logf("abort")
		return 0
	case "stubborn":
		for range terms {
			logf("ignored")
		}
	case "foreign":
		logf("sock=" + os.Getenv("NOTIFY_SOCKET"))
		<-terms
		if c, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET")); err == nil {
			c.Write([]byte("STATUS=bye"))
			c.Close()
		}
		return 0
	case "freeze", "quiet":
		logf("watchdog_usec=" + os.Getenv("WATCHDOG_USEC"))
		usec, _ := strconv.Atoi(os.Getenv("WATCHDOG_USEC"))
		for i := 0; mode == "freeze" && i < 3; i++ {
			if c, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET")); err == nil {
				c.Write([]byte("WATCHDOG=1"))
				c.Close()
			}
			time.Sleep(time.Duration(usec) * time.Microsecond / 4)
		}
		<-terms
		logf("drain")
		return 0
	}
	return 0
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func child(t *testing.T, name, mode string) (Child, string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), name+".log")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "SUPERVISE_FAKE="+mode, "FAKE_LOG="+log)
	return Child{Name: name, Argv: []string{exe, "-test.run=^$"}, Env: env}, log
}

// waitFor polls cond until it holds or the test deadline nears.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func count(file, word string) int {
	data, _ := os.ReadFile(file)
	return strings.Count(string(data), word+"\n")
}

func TestCrashRestartsAndDrain(t *testing.T) {
	crash, crashLog := child(t, "gpu0", "crash")
	drain, drainLog := child(t, "services", "drain")
	out := &syncBuf{}
	sigs := make(chan os.Signal, 3)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(t.Context(), Options{Children: []Child{crash, drain}, Out: out, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond}, sigs)
	}()
	waitFor(t, "3 starts of the crashing child", func() bool { return count(crashLog, "start") >= 3 })
	waitFor(t, "READY and STATUS of the draining child", func() bool {
		s := out.String()
		return strings.Contains(s, "services: ready") && strings.Contains(s, `services: status "polling queue q"`)
	})
	sigs <- syscall.SIGTERM
	waitFor(t, "drain on the first signal", func() bool { return count(drainLog, "drain") == 1 })
	if count(drainLog, "abort") != 0 {
		t.Fatal("child aborted after one signal")
	}
	sigs <- syscall.SIGINT
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v, want nil after both children stopped\n%s", err, out)
	}
	if count(drainLog, "abort") != 1 || count(drainLog, "start") != 1 {
		t.Errorf("draining child log:\n%s", must(os.ReadFile(drainLog)))
	}
	for _, want := range []string{"gpu0: exited with status 3; restarting in", "supervisor: got terminated: draining", "services: stopped (exited with status 0)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestThirdSignalKills(t *testing.T) {
	c, log := child(t, "gpu1", "stubborn")
	out := &syncBuf{}
	sigs := make(chan os.Signal, 3)
	errc := make(chan error, 1)
	go func() { errc <- Run(t.Context(), Options{Children: []Child{c}, Out: out}, sigs) }()
	waitFor(t, "ready", func() bool { return strings.Contains(out.String(), "gpu1: ready") })
	sigs <- syscall.SIGTERM
	waitFor(t, "first SIGTERM ignored", func() bool { return count(log, "ignored") == 1 })
	sigs <- syscall.SIGTERM
	waitFor(t, "second SIGTERM ignored", func() bool { return count(log, "ignored") == 2 })
	sigs <- syscall.SIGTERM
	if err := <-errc; !errors.Is(err, ErrKilled) {
		t.Fatalf("Run = %v, want ErrKilled", err)
	}
	if !strings.Contains(out.String(), "gpu1: stopped (killed by signal killed)") {
		t.Errorf("output:\n%s", out)
	}
}

func TestCleanExitNotRestarted(t *testing.T) {
	c, log := child(t, "cpu0", "exit0")
	out := &syncBuf{}
	if err := Run(t.Context(), Options{Children: []Child{c}, Out: out}, nil); err != nil {
		t.Fatal(err)
	}
	if n := count(log, "start"); n != 1 {
		t.Errorf("started %d times, want 1", n)
	}
}

func TestBadChildren(t *testing.T) {
	if err := Run(t.Context(), Options{}, nil); err == nil {
		t.Error("Run with no children = nil")
	}
	c := Child{Name: "a", Argv: []string{"true"}}
	if err := Run(t.Context(), Options{Children: []Child{c, c}}, nil); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("duplicate names: %v", err)
	}
}

// A child that fed the watchdog and then froze is killed and restarted; one
// that never sent WATCHDOG=1 is left alone; both see WATCHDOG_USEC.
func TestWatchdogRestartsFrozenChild(t *testing.T) {
	frozen, frozenLog := child(t, "gpu0", "freeze")
	quiet, quietLog := child(t, "gpu1", "quiet")
	frozen.Watchdog, quiet.Watchdog = 200*time.Millisecond, 200*time.Millisecond
	out := &syncBuf{}
	sigs := make(chan os.Signal, 3)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(t.Context(), Options{Children: []Child{frozen, quiet}, Out: out, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}, sigs)
	}()
	waitFor(t, "two watchdog restarts", func() bool { return count(frozenLog, "start") >= 3 })
	waitFor(t, "the quiet child's start", func() bool { return count(quietLog, "start") == 1 })
	sigs <- syscall.SIGTERM
	if err := <-errc; err != nil {
		t.Fatalf("Run = %v\n%s", err, out)
	}
	if n := count(quietLog, "start"); n != 1 {
		t.Errorf("child without WATCHDOG=1 started %d times, want 1 (never killed for silence)\n%s", n, out)
	}
	for _, l := range []string{frozenLog, quietLog} {
		if n := count(l, "watchdog_usec=200000"); n < 1 {
			t.Errorf("%s: WATCHDOG_USEC not 200000:\n%s", l, must(os.ReadFile(l)))
		}
	}
	for _, want := range []string{"gpu0: watchdog timeout: no WATCHDOG=1 for", "gpu0: watchdog timeout, killed by signal killed; restarting in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out.String(), "gpu1: watchdog") {
		t.Errorf("the quiet child hit the watchdog:\n%s", out)
	}
}

// Without Watchdog the child sees no WATCHDOG_USEC, even if the
// supervisor's own environment has one.
func TestNoWatchdogNoEnv(t *testing.T) {
	c, log := child(t, "cpu0", "quiet")
	c.Env = append(c.Env, "WATCHDOG_USEC=5", "WATCHDOG_PID=1")
	out := &syncBuf{}
	sigs := make(chan os.Signal, 1)
	errc := make(chan error, 1)
	go func() { errc <- Run(t.Context(), Options{Children: []Child{c}, Out: out}, sigs) }()
	waitFor(t, "start", func() bool { return count(log, "watchdog_usec=") == 1 })
	sigs <- syscall.SIGTERM
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// Notify messages from any process but the agent (here the test itself)
// are ignored, and logged once.
func TestNotifyFromOtherPIDIgnored(t *testing.T) {
	c, log := child(t, "gpu0", "foreign")
	out := &syncBuf{}
	sigs := make(chan os.Signal, 1)
	errc := make(chan error, 1)
	go func() { errc <- Run(t.Context(), Options{Children: []Child{c}, Out: out}, sigs) }()
	var sock string
	waitFor(t, "the socket path", func() bool {
		for _, l := range strings.Split(must(os.ReadFile(log)), "\n") {
			if v, ok := strings.CutPrefix(l, "sock="); ok {
				sock = v
			}
		}
		return sock != "" && strings.Contains(out.String(), "gpu0: ready")
	})
	send := func(msg string) {
		conn, err := net.Dial("unixgram", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	send("STATUS=forged\nREADY=1")
	waitFor(t, "the foreign message logged", func() bool { return strings.Contains(out.String(), "ignoring notify messages from pid") })
	send("STATUS=forged again\nWATCHDOG=1")
	sigs <- syscall.SIGTERM
	waitFor(t, "the agent's last status", func() bool { return strings.Contains(out.String(), `gpu0: status "bye"`) })
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if n := strings.Count(s, "ignoring notify messages from pid "+strconv.Itoa(os.Getpid())); n != 1 {
		t.Errorf("foreign sender logged %d times, want once:\n%s", n, s)
	}
	if strings.Contains(s, "forged") || strings.Count(s, "gpu0: ready") != 1 {
		t.Errorf("a foreign message was acted on:\n%s", s)
	}
}

func must(b []byte, _ error) string { return string(b) }
