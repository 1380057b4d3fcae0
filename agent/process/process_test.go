package process

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// collector is a LineSink that records lines and can wait for one.
type collector struct {
	mu    sync.Mutex
	lines []Line
	seen  chan string
}

func newCollector() *collector { return &collector{seen: make(chan string, 1024)} }

func (c *collector) sink(l Line) {
	c.mu.Lock()
	c.lines = append(c.lines, l)
	c.mu.Unlock()
	select {
	case c.seen <- l.Text:
	default:
	}
}

func (c *collector) texts() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.lines {
		out = append(out, l.Text)
	}
	return out
}

func (c *collector) waitFor(t *testing.T, text string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-c.seen:
			if got == text {
				return
			}
		case <-timeout:
			t.Fatalf("line %q never arrived; got %q", text, c.texts())
		}
	}
}

func runSh(t *testing.T, script string, mod func(*Spec)) (*collector, ExitResult) {
	t.Helper()
	c := newCollector()
	spec := Spec{Path: "/bin/sh", Args: []string{"-c", script}, Sink: c.sink}
	if mod != nil {
		mod(&spec)
	}
	p, err := Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c, p.Wait()
}

func TestCombinedStreamsKeepOrder(t *testing.T) {
	t.Parallel()
	c, res := runSh(t, "echo a; echo b >&2; echo c; echo d >&2", nil)
	if !res.Success() {
		t.Fatalf("result %v, want success", res)
	}
	if diff := cmp.Diff([]string{"a", "b", "c", "d"}, c.texts()); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	for _, l := range c.lines {
		if l.Time.IsZero() {
			t.Errorf("line %+v: want a time", l)
		}
	}
}

func TestCarriageReturn(t *testing.T) {
	t.Parallel()
	script := `printf 'start\r 10%%\r 50%%\r100%%\ndos line\r\nbar\r\r\nlast\r'`
	tests := []struct {
		name   string
		keepCR bool
		want   []string
	}{
		{"suppress (default)", false, []string{"100%", "dos line", "", "last"}},
		{"keep as line breaks", true, []string{"start", " 10%", " 50%", "100%", "dos line", "bar", "", "last"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := runSh(t, script, func(s *Spec) { s.KeepCarriageReturn = tc.keepCR })
			if diff := cmp.Diff(tc.want, c.texts()); diff != "" {
				t.Errorf("lines (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBinaryJunkAndBackspace(t *testing.T) {
	t.Parallel()
	c, _ := runSh(t, `printf '\377\376ok\b\bz\000y\nno newline at end'`, nil)
	want := []string{"\uFFFDokz\x00y", "no newline at end"}
	if diff := cmp.Diff(want, c.texts()); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestOneMegabyteLineIsChunked(t *testing.T) {
	t.Parallel()
	c, res := runSh(t, `head -c 1048576 /dev/zero | tr '\000' a`, nil)
	if !res.Success() {
		t.Fatalf("result %v, want success", res)
	}
	total := 0
	for i, s := range c.texts() {
		if len(s) > DefaultMaxLineBytes {
			t.Errorf("chunk %d is %d bytes, want <= %d", i, len(s), DefaultMaxLineBytes)
		}
		total += len(s)
	}
	if total != 1<<20 || len(c.lines) != 16 {
		t.Errorf("got %d bytes in %d lines, want %d bytes in 16", total, len(c.lines), 1<<20)
	}
}

func TestChunksNeverSplitRunes(t *testing.T) {
	t.Parallel()
	in := strings.Repeat("€", 100000) // 3 bytes each; 64 KiB is not a multiple of 3
	var got []string
	sp := newSplitter(false, DefaultMaxLineBytes, func(l Line) { got = append(got, l.Text) })
	sp.write([]byte(in[:12345]))
	sp.write([]byte(in[12345:]))
	sp.flush()
	for i, s := range got {
		if !utf8.ValidString(s) || strings.ContainsRune(s, utf8.RuneError) {
			t.Fatalf("chunk %d has a broken rune", i)
		}
	}
	if strings.Join(got, "") != in {
		t.Errorf("chunks do not add up to the input (%d chunks)", len(got))
	}
}

func TestExitCodesAndSignals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		script string
		want   ExitResult
	}{
		{"exit 0", ExitResult{Code: 0}},
		{"exit 3", ExitResult{Code: 3}},
		{"exit 254", ExitResult{Code: 254}},
		{"kill -USR1 $$", ExitResult{Code: -int(syscall.SIGUSR1), Signal: syscall.SIGUSR1}},
	}
	for _, tc := range tests {
		_, got := runSh(t, tc.script, nil)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q: result (-want +got):\n%s", tc.script, diff)
		}
		if (got.Err() == nil) != tc.want.Success() {
			t.Errorf("%q: Err() = %v, want nil only on success", tc.script, got.Err())
		}
	}
	_, res := runSh(t, "kill -USR1 $$", nil)
	if got, want := res.Error(), "killed by signal SIGUSR1 (code -10)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestNeverStarted(t *testing.T) {
	t.Parallel()
	p, err := Start(t.Context(), Spec{Path: "/nonexistent/prog"})
	if err == nil {
		t.Fatal("Start of a missing program: got nil error")
	}
	res := p.Wait()
	if !res.NotStarted || res.Code != -1 || res.Success() {
		t.Errorf("result %+v, want NotStarted with code -1", res)
	}
	if !errors.Is(res, os.ErrNotExist) {
		t.Errorf("result %v does not wrap os.ErrNotExist", res)
	}
	if !strings.Contains(err.Error(), "/nonexistent/prog") {
		t.Errorf("error %q does not name the program", err)
	}
}

func TestTerminateHonoursTrappedSIGTERM(t *testing.T) {
	t.Parallel()
	c := newCollector()
	p, err := Start(t.Context(), Spec{Path: "/bin/sh", Sink: c.sink, Args: []string{"-c",
		`trap 'echo cleaning up; exit 7' TERM; echo ready; while :; do sleep 0.05; done`}})
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "ready")
	if err := p.Terminate(time.Minute); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	res := p.Wait()
	if diff := cmp.Diff(ExitResult{Code: 7, Terminated: true}, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	// sh may also report its SIGTERM-ed sleep ("Terminated") in between.
	if got := c.texts(); len(got) < 2 || got[0] != "ready" || got[len(got)-1] != "cleaning up" {
		t.Errorf("lines %q, want \"ready\" first and \"cleaning up\" last", got)
	}
}

func TestTerminateKillsChildIgnoringSIGTERM(t *testing.T) {
	t.Parallel()
	c := newCollector()
	p, err := Start(t.Context(), Spec{Path: "/bin/sh", Sink: c.sink, Args: []string{"-c",
		`trap '' TERM; echo ready; while :; do sleep 0.05; done`}})
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "ready")
	if err := p.Terminate(200 * time.Millisecond); err != nil {
		t.Fatalf("Terminate: %v", err)
	}
	res := p.Wait()
	want := ExitResult{Code: -9, Signal: syscall.SIGKILL, Terminated: true}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	// Terminate after exit is fine.
	if err := p.Terminate(0); err != nil {
		t.Errorf("Terminate after exit: %v", err)
	}
}

// gone reports whether pid no longer runs (absent or a zombie awaiting its reaper).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTerminateKillsGrandchildren(t *testing.T) {
	t.Parallel()
	c := newCollector()
	p, err := Start(t.Context(), Spec{Path: "/bin/sh", Sink: c.sink, Args: []string{"-c",
		`sleep 1000 & echo $!; wait`}})
	if err != nil {
		t.Fatal(err)
	}
	var pidLine string
	select {
	case pidLine = <-c.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("no pid line")
	}
	gpid, err := strconv.Atoi(pidLine)
	if err != nil {
		t.Fatalf("pid line %q: %v", pidLine, err)
	}
	p.Terminate(0)
	if res := p.Wait(); res.Signal != syscall.SIGKILL {
		t.Errorf("result %v, want SIGKILL", res)
	}
	waitGone(t, gpid)
}

func TestStragglersKilledAfterLeaderExits(t *testing.T) {
	t.Parallel()
	// The background sleep keeps the output pipe open; Wait must still return.
	c, res := runSh(t, `sleep 1000 & echo $!; exit 5`, nil)
	if res.Code != 5 || res.Terminated {
		t.Errorf("result %+v, want code 5 and not terminated", res)
	}
	texts := c.texts()
	if len(texts) != 1 {
		t.Fatalf("lines %q, want one pid", texts)
	}
	pid, _ := strconv.Atoi(texts[0])
	waitGone(t, pid)
}

func TestEscapedProcessDoesNotHangWait(t *testing.T) {
	t.Parallel()
	// setsid leaves the group; the escapee holds the pipe open.
	c, res := runSh(t, `setsid sh -c 'echo $$; exec sleep 1000' & sleep 0.2; echo leader done`,
		func(s *Spec) { s.OutputDrain = 100 * time.Millisecond })
	if !res.Success() {
		t.Errorf("result %v, want success", res)
	}
	for _, s := range c.texts() {
		if pid, err := strconv.Atoi(s); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if got := c.texts(); len(got) != 2 {
		t.Errorf("lines %q, want the escapee pid and 'leader done'", got)
	}
}

func TestContextCancelKillsGroup(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	c := newCollector()
	p, err := Start(ctx, Spec{Path: "/bin/sh", Sink: c.sink, Args: []string{"-c", `echo ready; exec sleep 1000`}})
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "ready")
	cancel()
	res := p.Wait()
	if res.Signal != syscall.SIGKILL || !res.Terminated {
		t.Errorf("result %+v, want SIGKILL after terminate", res)
	}
}

func TestEnvAndDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, _ := runSh(t, `echo "$FOO"; pwd`, func(s *Spec) {
		s.Env = []string{"FOO=bar", "PATH=/usr/bin:/bin"}
		s.Dir = dir
	})
	if diff := cmp.Diff([]string{"bar", dir}, c.texts()); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestPartialLineAfter(t *testing.T) {
	t.Parallel()
	fifo := t.TempDir() + "/step"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	step := func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("go\n")
		f.Close()
	}
	c := newCollector()
	p, err := Start(t.Context(), Spec{Path: "/bin/sh", Sink: c.sink, PartialLineAfter: 20 * time.Millisecond,
		Args: []string{"-c", `printf 'progress 10%%'; read x <"$1"; printf '\r50%%'; read x <"$1"; printf '\r100%%\n'; echo done`, "sh", fifo}})
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "progress 10%")
	step()
	c.waitFor(t, "50%")
	step()
	p.Wait()
	if diff := cmp.Diff([]string{"progress 10%", "50%", "100%", "done"}, c.texts()); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestKillAllKillsLiveGroups(t *testing.T) {
	p, err := Start(t.Context(), Spec{Path: "sh", Args: []string{"-c", "trap '' TERM; sleep 60 & wait"}})
	if err != nil {
		t.Fatal(err)
	}
	KillAll()
	res := p.Wait()
	if res.Signal != syscall.SIGKILL {
		t.Fatalf("exit = %v, want killed by SIGKILL", res)
	}
	live.mu.Lock()
	n := len(live.m)
	live.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d groups still registered after Wait, want 0", n)
	}
}
