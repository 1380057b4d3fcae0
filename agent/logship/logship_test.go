package logship

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

var errDown = errors.New("connect: connection refused")

// fakeSender is an in-memory Sender. fail decides, per call, whether it fails.
type fakeSender struct {
	mu       sync.Mutex
	fail     func(call int) error
	calls    int
	got      []api.Event   // accepted events, in order
	attempts [][]api.Event // every call's events
	accepted chan struct{}
}

func newFake(fail func(call int) error) *fakeSender {
	return &fakeSender{fail: fail, accepted: make(chan struct{}, 1)}
}

func (f *fakeSender) AddBatch(ctx context.Context, events []api.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.attempts = append(f.attempts, append([]api.Event(nil), events...))
	if f.fail != nil {
		if err := f.fail(f.calls); err != nil {
			return err
		}
	}
	f.got = append(f.got, events...)
	select {
	case f.accepted <- struct{}{}:
	default:
	}
	return nil
}

// lines splits the accepted messages back into lines and checks the
// timestamps strictly increase.
func (f *fakeSender) lines(t *testing.T) []string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	var last int64
	for i, e := range f.got {
		if e.Timestamp <= last {
			t.Fatalf("event %d timestamp %d <= previous %d", i, e.Timestamp, last)
		}
		last = e.Timestamp
		out = append(out, strings.Split(e.Msg, "\n")...)
	}
	return out
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testConfig() Config {
	return Config{
		Task: "t1", Worker: "host:gpu0", Logger: quietLogger(),
		RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond, FlushInterval: 10 * time.Millisecond,
	}
}

func numbered(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("line %06d", i)
	}
	return out
}

func writeAll(t testing.TB, s *Shipper, lines []string) {
	for _, l := range lines {
		if err := s.Write(LevelDebug, l); err != nil {
			t.Fatalf("Write(%q): %v", l, err)
		}
	}
}

func TestEventsCarryTaskWorkerLevel(t *testing.T) {
	t.Parallel()
	f := newFake(nil)
	s := New(testConfig(), f)
	s.Write(LevelInfo, "Executing task")
	s.Write(LevelDebug, "out 1")
	s.Write(LevelDebug, "out 2")
	s.Write(LevelDebug, "\x1b[0m")
	s.Write(LevelError, "bad \xff byte")
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var got []api.Event
	for _, e := range f.got {
		e.Timestamp = 0
		got = append(got, e)
	}
	ev := func(level, msg string) api.Event {
		return api.Event{Type: "log", Level: level, Task: "t1", Worker: "host:gpu0", Msg: msg}
	}
	want := []api.Event{ev("INFO", "Executing task"), ev("DEBUG", "out 1\nout 2"), ev("ERROR", "bad \uFFFD byte")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestOutageThenRecoveryDeliversAllOnceInOrder(t *testing.T) {
	t.Parallel()
	f := newFake(func(call int) error {
		if call <= 20 {
			return errDown
		}
		return nil
	})
	cfg := testConfig()
	cfg.MaxBatchLines = 100
	s := New(cfg, f)
	want := numbered(5000)
	writeAll(t, s, want)
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if diff := cmp.Diff(want, f.lines(t)); diff != "" {
		t.Errorf("delivered lines (-want +got):\n%s", diff)
	}
	st := s.Stats()
	if st.Retries != 20 || st.LinesSent != 5000 || st.LinesIn != 5000 || st.Pending != 0 {
		t.Errorf("stats %+v, want 20 retries and 5000 lines in and sent", st)
	}
	// A retried batch is resent unchanged.
	if diff := cmp.Diff(f.attempts[0], f.attempts[1]); diff != "" {
		t.Errorf("retry differs from the first attempt (-first +retry):\n%s", diff)
	}
}

func TestSpillToDiskAndReplay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	up := make(chan struct{})
	f := newFake(downUntil(up))
	cfg := testConfig()
	cfg.SpoolDir = dir
	cfg.MemoryMaxBytes = 128 << 10
	s := New(cfg, f)
	want := numbered(20000) // ~1.2 MB with overhead: most of it spills
	for i := range want {
		want[i] += strings.Repeat(".", 50)
	}
	writeAll(t, s, want)
	st := s.Stats()
	if st.SpilledBytes == 0 || st.SpoolBytes == 0 || st.LinesSpooled == 0 || st.LinesSpooled > uint64(len(want)) {
		t.Fatalf("stats %+v: want lines spilled to disk during the outage", st)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 1 {
		t.Fatalf("spool dir has %d files, want 1", len(files))
	}
	close(up)
	if err := s.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if diff := cmp.Diff(want, f.lines(t)); diff != "" {
		t.Errorf("delivered lines (-want +got):\n%s", diff)
	}
	if st := s.Stats(); st.SpoolBytes != 0 {
		t.Errorf("spool holds %d bytes after replay, want 0", st.SpoolBytes)
	}
	// Lines written after the replay go straight to memory again.
	s.Write(LevelDebug, "after")
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := f.lines(t); got[len(got)-1] != "after" {
		t.Errorf("last line %q, want %q", got[len(got)-1], "after")
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Errorf("spool dir has %d files after Close, want 0", len(files))
	}
}

// With the server down and memory and spool full, the writer (the task's
// output) is not held up: later lines are dropped, counted, and a line in the
// log says how many are missing where; everything before and after arrives in
// order.
func TestFullSpoolDropsAndReports(t *testing.T) {
	t.Parallel()
	up := make(chan struct{})
	f := newFake(downUntil(up))
	cfg := testConfig()
	cfg.SpoolDir = filepath.Join(t.TempDir(), "not", "yet", "there") // created on first spill
	cfg.MemoryMaxBytes = 128 << 10
	cfg.SpoolMaxBytes = 64 << 10
	s := New(cfg, f)
	want := numbered(10000)
	writeAll(t, s, want) // returns although the server is down
	st := s.Stats()
	if st.LinesSpoolDropped == 0 || st.LinesIn+st.LinesSpoolDropped != uint64(len(want)) {
		t.Fatalf("stats %+v: want some of %d lines dropped and the rest accepted", st, len(want))
	}
	close(up)
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	writeAll(t, s, []string{"after the outage"})
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := f.lines(t)
	kept := int(st.LinesIn)
	if diff := cmp.Diff(want[:kept], got[:kept]); diff != "" {
		t.Errorf("lines before the drop (-want +got):\n%s", diff)
	}
	marker := fmt.Sprintf("[clearml-agent] %d log lines were dropped here", st.LinesSpoolDropped)
	if len(got) != kept+2 || !strings.HasPrefix(got[kept], marker) || got[kept+1] != "after the outage" {
		t.Errorf("after the kept lines got %q, want the drop marker %q then the next line", got[kept:], marker)
	}
}

func TestFlushSendsWithoutWaitingForInterval(t *testing.T) {
	t.Parallel()
	f := newFake(nil)
	cfg := testConfig()
	cfg.FlushInterval = time.Hour
	s := New(cfg, f)
	defer s.Close(context.Background())
	writeAll(t, s, []string{"a", "b"})
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "b"}, f.lines(t)); diff != "" {
		t.Errorf("after Flush (-want +got):\n%s", diff)
	}
	// A full batch goes out without Flush and without the interval.
	cfg2 := cfg
	cfg2.MaxBatchLines = 10
	f2 := newFake(nil)
	s2 := New(cfg2, f2)
	defer s2.Close(context.Background())
	writeAll(t, s2, numbered(10))
	select {
	case <-f2.accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("a full batch was not sent")
	}
}

func TestCloseGivesUpWhenContextEnds(t *testing.T) {
	t.Parallel()
	f := newFake(func(int) error { return errDown })
	s := New(testConfig(), f)
	writeAll(t, s, numbered(3))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := s.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "3 lines not delivered") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want '3 lines not delivered' wrapping the deadline", err)
	}
	if err := s.Write(LevelDebug, "late"); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	if err2 := s.Close(t.Context()); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Close = %v, want the first result", err2)
	}
}

func TestPermanentErrorDropsBatch(t *testing.T) {
	t.Parallel()
	f := newFake(func(call int) error {
		if call == 1 {
			return Permanent(errors.New("HTTP 400: invalid event"))
		}
		return nil
	})
	s := New(testConfig(), f)
	writeAll(t, s, []string{"rejected"})
	if err := s.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	writeAll(t, s, []string{"kept"})
	err := s.Close(t.Context())
	if err == nil || !strings.Contains(err.Error(), "rejected 1 lines") {
		t.Errorf("Close = %v, want it to report 1 rejected line", err)
	}
	if diff := cmp.Diff([]string{"kept"}, f.lines(t)); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if st := s.Stats(); st.LinesDropped != 1 || st.Retries != 0 {
		t.Errorf("stats %+v, want 1 dropped and no retries", st)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	f := newFake(nil)
	s := New(testConfig(), f)
	big := strings.Repeat("€", 100000)      // 300 KB: split into 64 KiB messages at rune boundaries
	ctrl := strings.Repeat("\x01<", 100000) // escapes to 7x its size in JSON
	s.Write(LevelDebug, big)
	for range 20 {
		s.Write(LevelDebug, ctrl)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var joined strings.Builder
	for i, e := range f.got {
		if len(e.Msg) > MaxMsgBytes {
			t.Errorf("event %d msg is %d bytes, want <= %d", i, len(e.Msg), MaxMsgBytes)
		}
		if joined.Len() < len(big) {
			joined.WriteString(e.Msg)
		}
	}
	if joined.String() != big {
		t.Error("the split messages do not add up to the long line")
	}
	for i, batch := range f.attempts {
		var buf bytes.Buffer
		for _, e := range batch {
			b, _ := json.Marshal(e)
			buf.Write(b)
			buf.WriteByte('\n')
		}
		if buf.Len() > MaxPacketBytes {
			t.Errorf("batch %d is %d bytes as JSON lines, want <= %d", i, buf.Len(), MaxPacketBytes)
		}
	}
}

func TestConcurrentWritersKeepTheirOrder(t *testing.T) {
	t.Parallel()
	f := newFake(func(call int) error {
		if call%7 == 0 {
			return errDown
		}
		return nil
	})
	cfg := testConfig()
	cfg.SpoolDir = t.TempDir()
	cfg.MemoryMaxBytes = 128 << 10
	cfg.MaxBatchLines = 500
	s := New(cfg, f)
	const writers, per = 8, 3000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				s.Write(LevelDebug, fmt.Sprintf("w%d %d", w, i))
			}
		})
	}
	wg.Go(func() { // flushes and stats while writing
		for range 20 {
			s.Flush(t.Context())
			s.Stats()
		}
	})
	wg.Wait()
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	for _, l := range f.lines(t) {
		var w, i int
		if _, err := fmt.Sscanf(l, "w%d %d", &w, &i); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: got line %d, want %d", w, i, next[w])
		}
		next[w]++
	}
	for w, n := range next {
		if n != per {
			t.Errorf("writer %d: %d lines delivered, want %d", w, n, per)
		}
	}
}

func TestEcho(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	cfg := testConfig()
	cfg.Echo = &buf
	s := New(cfg, newFake(nil))
	writeAll(t, s, []string{"one", "two"})
	s.Close(t.Context())
	if got := buf.String(); got != "one\ntwo\n" {
		t.Errorf("echo %q, want %q", got, "one\ntwo\n")
	}
}

func TestTimestampsIncreaseWithAFrozenClock(t *testing.T) {
	t.Parallel()
	f := newFake(nil)
	cfg := testConfig()
	cfg.Now = func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	cfg.MaxBatchLines = 1
	s := New(cfg, f)
	writeAll(t, s, numbered(50))
	s.Write(LevelInfo, "other level")
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.lines(t) // checks strictly increasing timestamps
	if len(f.got) != 51 || f.got[0].Timestamp != 1_700_000_000_000 {
		t.Errorf("%d events starting at %d, want 51 starting at the clock", len(f.got), f.got[0].Timestamp)
	}
}

type countSender struct{ lines int }

func (c *countSender) AddBatch(_ context.Context, events []api.Event) error {
	for _, e := range events {
		c.lines += strings.Count(e.Msg, "\n") + 1
	}
	return nil
}

// BenchmarkMillionLines pushes 1,000,000 lines through Write, Close and a
// sender that only counts, and reports lines/s.
func BenchmarkMillionLines(b *testing.B) {
	const n = 1_000_000
	line := "Epoch 1/10 step 123/456 loss=0.1234 acc=0.9876 lr=1e-4"
	for b.Loop() {
		c := &countSender{}
		cfg := Config{Task: "bench", Worker: "w", Logger: quietLogger()}
		s := New(cfg, c)
		start := time.Now()
		for range n {
			s.Write(LevelDebug, line)
		}
		if err := s.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		if c.lines != n {
			b.Fatalf("sent %d lines, want %d", c.lines, n)
		}
		b.ReportMetric(float64(n)/el.Seconds(), "lines/s")
	}
}

// Lines dropped at the end of a task (nothing written after the outage) are
// still reported, at the end of the log, when the shipper closes.
func TestFullSpoolReportedOnClose(t *testing.T) {
	t.Parallel()
	up := make(chan struct{})
	f := newFake(downUntil(up))
	cfg := testConfig()
	cfg.SpoolDir = t.TempDir()
	cfg.MemoryMaxBytes = 64 << 10
	cfg.SpoolMaxBytes = 32 << 10
	s := New(cfg, f)
	writeAll(t, s, numbered(5000))
	st := s.Stats()
	close(up)
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := f.lines(t)
	if len(got) != int(st.LinesIn)+1 || !strings.Contains(got[len(got)-1], fmt.Sprintf("%d log lines were dropped", st.LinesSpoolDropped)) {
		t.Errorf("%d lines, last %q; want %d kept lines then the drop marker", len(got), got[len(got)-1], st.LinesIn)
	}
}

// downUntil is a fake server that fails every batch until up is closed.
func downUntil(up <-chan struct{}) func(int) error {
	return func(int) error {
		select {
		case <-up:
			return nil
		default:
			return errDown
		}
	}
}
