package logship

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v5"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// Sender delivers one batch of events (events.add_batch). It must not keep
// the slice. Return an error wrapped with Permanent when retrying cannot help.
type Sender interface {
	AddBatch(ctx context.Context, events []api.Event) error
}

// Limits from the reference agent (section 3.5).
const (
	MaxMsgBytes    = 64 << 10 // one event's msg
	MaxPacketBytes = 1 << 20  // one events.add_batch request
)

// Levels as the reference agent sends them.
const (
	LevelDebug   = "DEBUG" // streamed task output
	LevelInfo    = "INFO"
	LevelWarning = "WARNING"
	LevelError   = "ERROR"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("logship: shipper closed; no lines can be added after Close")

// Config configures a Shipper. Zero values take the defaults noted.
type Config struct {
	Task   string // required: the task id every event carries
	Worker string // the worker id

	MaxBatchLines int           // lines per request; default 5000
	MaxBatchBytes int           // request size; default and cap MaxPacketBytes
	FlushInterval time.Duration // longest a line waits before sending; default 1 s

	MemoryMaxBytes int    // queued text kept in memory; default 8 MiB, at least 128 KiB
	SpoolDir       string // where to spill when memory is full; "" = never spill (Write blocks)
	SpoolMaxBytes  int64  // size cap of the spool file; default 1 GiB

	RetryBase   time.Duration // first retry delay; default 500 ms
	RetryMax    time.Duration // retry delay cap; default 30 s
	SendTimeout time.Duration // one AddBatch call; default 30 s

	Logger *slog.Logger     // default slog.Default()
	Echo   io.Writer        // when set, every line is also written here (the daemon's output)
	Now    func() time.Time // default time.Now
}

func (c *Config) defaults() {
	if c.MaxBatchLines <= 0 {
		c.MaxBatchLines = 5000
	}
	if c.MaxBatchBytes <= 0 || c.MaxBatchBytes > MaxPacketBytes {
		c.MaxBatchBytes = MaxPacketBytes
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.MemoryMaxBytes <= 0 {
		c.MemoryMaxBytes = 8 << 20
	}
	if c.MemoryMaxBytes < 128<<10 {
		c.MemoryMaxBytes = 128 << 10
	}
	if c.SpoolMaxBytes <= 0 {
		c.SpoolMaxBytes = 1 << 30
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 500 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.RetryMax < c.RetryBase {
		c.RetryMax = c.RetryBase
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Stats counts what a Shipper did. Lines are counted after splitting long
// texts at MaxMsgBytes.
type Stats struct {
	LinesIn      uint64 // accepted by Write
	LinesSent    uint64 // acknowledged by the server
	LinesDropped uint64 // in batches the server rejected permanently
	// LinesSpoolDropped counts the lines dropped because memory and the
	// spool were both full during an outage; the log says where.
	LinesSpoolDropped uint64
	Pending           uint64 // accepted, neither sent nor dropped
	Batches           uint64 // successful requests
	Retries           uint64 // failed requests that were retried
	LinesSpooled      uint64 // written to the spool file (memory was full)
	SpilledBytes      int64  // written to the spool file in total
	SpoolBytes        int64  // spool file size now
}

type record struct {
	level string
	text  string
	ms    int64 // wall clock when written
}

func (r record) memSize() int { return len(r.text) + len(r.level) + 48 }

// Shipper ships one task's lines. Its methods are safe for concurrent use.
type Shipper struct {
	cfg  Config
	send Sender
	log  *slog.Logger

	runCtx    context.Context // cancelled to abandon sending (Close timed out)
	cancelRun context.CancelFunc
	kick      chan struct{}
	stop      chan struct{}
	loopDone  chan struct{}

	mu       sync.Mutex
	space    *sync.Cond // signalled when memory or spool space frees up, or on close
	q        []record
	qHead    int
	memBytes int
	spool    spool
	seqIn    uint64
	seqDone  uint64
	lastTS   int64
	closed   bool
	flushing int // Flush calls waiting

	spoolDropped   uint64 // lines dropped since the spool filled up, not yet reported in the log
	spoolErrLogged bool
	progress       chan struct{} // closed and replaced whenever seqDone grows
	stats          Stats
	lastErr        error
	closeErr       error
}

// New starts a Shipper for cfg.Task. Call Close to stop it.
func New(cfg Config, send Sender) *Shipper {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Shipper{
		cfg:       cfg,
		send:      send,
		log:       cfg.Logger.With("component", "logship", "task", cfg.Task),
		runCtx:    ctx,
		cancelRun: cancel,
		kick:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		loopDone:  make(chan struct{}),
		progress:  make(chan struct{}),
		spool:     spool{dir: cfg.SpoolDir, max: cfg.SpoolMaxBytes, task: cfg.Task},
	}
	s.space = sync.NewCond(&s.mu)
	go s.loop()
	return s
}

// Write queues text (one line, or several joined by '\n') at level. Texts
// longer than MaxMsgBytes are split; invalid UTF-8 is replaced; a lone
// "\x1b[0m" is dropped as the reference agent does. Write returns quickly
// unless both memory and spool are full; then it blocks until the sender
// makes room (see the package doc). It returns ErrClosed after Close.
func (s *Shipper) Write(level, text string) error {
	if text == "\x1b[0m" {
		return nil
	}
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.cfg.Echo != nil {
		_, _ = io.WriteString(s.cfg.Echo, text+"\n")
	}
	for {
		chunk := text
		if len(chunk) > MaxMsgBytes {
			chunk = chunk[:cutAt(chunk, MaxMsgBytes)]
		}
		if err := s.addLocked(record{level: level, text: chunk, ms: s.cfg.Now().UnixMilli()}); err != nil {
			return err
		}
		text = text[len(chunk):]
		if text == "" {
			return nil
		}
	}
}

// cutAt returns the largest n <= max at a rune boundary (max if none near).
func cutAt(s string, max int) int {
	for n := max; n > max-utf8.UTFMax && n > 0; n-- {
		if utf8.RuneStart(s[n]) {
			return n
		}
	}
	return max
}

func (s *Shipper) addLocked(r record) error {
	if err := s.reportDroppedLocked(r.ms); err != nil {
		return err
	}
	ok, err := s.placeLocked(r)
	if err != nil {
		return err
	}
	if !ok {
		// Memory and spool are full: the task must not be held up by the
		// server's outage, so the line is dropped, counted and reported.
		if s.spoolDropped == 0 {
			s.log.Warn("log spool full while the server is unreachable: dropping task log lines until it drains",
				"task", s.cfg.Task, "spool_max_bytes", s.cfg.SpoolMaxBytes)
		}
		s.spoolDropped++
		s.stats.LinesSpoolDropped++
		return nil
	}
	s.afterPlaceLocked()
	return nil
}

// reportDroppedLocked puts a line saying how many lines are missing where
// they were dropped, once there is room again.
func (s *Shipper) reportDroppedLocked(ms int64) error {
	if s.spoolDropped == 0 {
		return nil
	}
	m := record{level: "WARNING", ms: ms, text: fmt.Sprintf("[clearml-agent] %d log lines were dropped here: "+
		"the server was unreachable and the log spool reached its limit of %d bytes", s.spoolDropped, s.cfg.SpoolMaxBytes)}
	ok, err := s.placeLocked(m)
	if err != nil {
		return err
	}
	if ok {
		s.spoolDropped = 0
		s.afterPlaceLocked()
	}
	return nil
}

// placeLocked puts r in memory, or in the spool once memory is full. With a
// spool it reports false when the spool is full (or cannot be written)
// instead of waiting; without one it waits for the sender to make room.
func (s *Shipper) placeLocked(r record) (bool, error) {
	size := r.memSize()
	for {
		if s.closed {
			return false, ErrClosed
		}
		if s.spool.unread() == 0 && s.memBytes+size <= s.cfg.MemoryMaxBytes {
			s.q = append(s.q, r)
			s.memBytes += size
			return true, nil
		}
		if s.spool.enabled() {
			n, err := s.spool.append(r)
			if err == nil {
				s.stats.SpilledBytes += int64(n)
				s.stats.LinesSpooled++
				return true, nil
			}
			if !errors.Is(err, errSpoolFull) && !s.spoolErrLogged {
				s.spoolErrLogged = true
				s.log.Error("cannot spill log lines to disk", "err", err)
			}
			return false, nil
		}
		s.space.Wait()
	}
}

func (s *Shipper) afterPlaceLocked() {
	s.seqIn++
	if s.seqIn-s.seqDone >= uint64(s.cfg.MaxBatchLines) || s.memBytes >= s.cfg.MaxBatchBytes {
		s.kickSender()
	}
}

func (s *Shipper) kickSender() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Flush sends every line written before the call and returns when the server
// has acknowledged them, or with an error when ctx ends first. Call it before
// reporting the task's final status.
func (s *Shipper) Flush(ctx context.Context) error {
	s.mu.Lock()
	target := s.seqIn
	s.flushing++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.flushing--
		s.mu.Unlock()
	}()
	for {
		s.kickSender()
		s.mu.Lock()
		done, ch, lastErr := s.seqDone, s.progress, s.lastErr
		s.mu.Unlock()
		if done >= target {
			return nil
		}
		select {
		case <-ch:
		case <-s.loopDone:
			return fmt.Errorf("logship: task %s: %d lines not delivered: shipper stopped", s.cfg.Task, target-done)
		case <-ctx.Done():
			return fmt.Errorf("logship: task %s: %d lines not delivered (last send error: %v): %w",
				s.cfg.Task, target-done, lastErr, ctx.Err())
		}
	}
}

// Close stops accepting lines, flushes (bounded by ctx), stops the sender and
// removes the spool file. Lines still unsent when ctx ends are lost and
// reported in the error, as are lines the server rejected. Close is
// idempotent.
func (s *Shipper) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.loopDone
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.closeErr
	}
	if s.spoolDropped > 0 {
		// Lines were dropped and nothing was written since: make room,
		// then say so at the end of the log.
		s.mu.Unlock()
		_ = s.Flush(ctx)
		s.mu.Lock()
		if err := s.reportDroppedLocked(s.cfg.Now().UnixMilli()); err != nil {
			s.log.Warn("could not report dropped log lines", "err", err)
		}
	}
	s.closed = true
	s.space.Broadcast()
	s.mu.Unlock()

	err := s.Flush(ctx)
	s.cancelRun()
	close(s.stop)
	<-s.loopDone

	s.mu.Lock()
	defer s.mu.Unlock()
	if rmErr := s.spool.remove(); rmErr != nil {
		s.log.Warn("cannot remove spool file", "err", rmErr)
	}
	if err == nil && s.stats.LinesDropped > 0 {
		err = fmt.Errorf("logship: task %s: the server rejected %d lines (last error: %v)",
			s.cfg.Task, s.stats.LinesDropped, s.lastErr)
	}
	s.closeErr = err
	return err
}

// Stats returns a snapshot of the counters.
func (s *Shipper) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.LinesIn = s.seqIn
	st.Pending = s.seqIn - s.seqDone
	st.SpoolBytes = s.spool.w
	return st
}

func (s *Shipper) loop() {
	defer close(s.loopDone)
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.drain(true)
		case <-s.kick:
			s.drain(false)
		}
	}
}

// drain sends batches until the queue is empty (all) or no full batch is
// left, or until sending is abandoned.
func (s *Shipper) drain(all bool) {
	for {
		events, n := s.nextBatch(all)
		if n == 0 {
			return
		}
		sent, ok := s.sendWithRetry(events)
		if !ok {
			return
		}
		s.ack(n, sent)
	}
}

// nextBatch builds the next batch from the head of the queue. Consecutive
// lines of one level written within a second share one event (as the
// reference agent joins the lines of one read), up to MaxMsgBytes.
func (s *Shipper) nextBatch(all bool) ([]api.Event, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.qHead == len(s.q) {
		s.refillLocked()
	}
	avail := len(s.q) - s.qHead
	if avail == 0 {
		return nil, 0
	}
	if !all && s.flushing == 0 && avail < s.cfg.MaxBatchLines && s.memBytes < s.cfg.MaxBatchBytes {
		return nil, 0
	}
	var (
		events     []api.Event
		msg        strings.Builder
		firstMs    int64
		batchBytes int
		n          int
	)
	overhead := len(`{"type":"log","level":"","task":"","worker":"","msg":"","timestamp":}`) + 24 +
		jsonLen(s.cfg.Task) + jsonLen(s.cfg.Worker)
	finish := func() {
		if len(events) > 0 {
			events[len(events)-1].Msg = msg.String()
		}
		msg.Reset()
	}
	for n < avail && n < s.cfg.MaxBatchLines {
		r := s.q[s.qHead+n]
		last := len(events) - 1
		if last >= 0 && events[last].Level == r.level && msg.Len()+1+len(r.text) <= MaxMsgBytes && r.ms-firstMs < 1000 {
			add := 2 + jsonLen(r.text)
			if batchBytes+add > s.cfg.MaxBatchBytes {
				break
			}
			batchBytes += add
			msg.WriteByte('\n')
			msg.WriteString(r.text)
			n++
			continue
		}
		add := overhead + len(r.level) + jsonLen(r.text)
		if n > 0 && batchBytes+add > s.cfg.MaxBatchBytes {
			break
		}
		finish()
		ts := max(r.ms, s.lastTS+1)
		s.lastTS = ts
		events = append(events, api.Event{Type: "log", Level: r.level, Task: s.cfg.Task, Worker: s.cfg.Worker, Timestamp: ts})
		firstMs = r.ms
		msg.WriteString(r.text)
		batchBytes += add
		n++
	}
	finish()
	return events, n
}

// jsonLen is an upper bound of len(JSON string body of s).
func jsonLen(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c == '<', c == '>', c == '&':
			n += 6
		case c == '"', c == '\\', c >= 0x80:
			n += 2
		default:
			n++
		}
	}
	return n
}

// sendWithRetry sends events until accepted (true, true), rejected for good
// (false, true) or abandoned (_, false), with api.NewBackOff between tries.
func (s *Shipper) sendWithRetry(events []api.Event) (sent, ok bool) {
	attempts := 0
	rejected := false
	_, err := backoff.Retry(s.runCtx, func() (struct{}, error) {
		attempts++
		ctx, cancel := context.WithTimeout(s.runCtx, s.cfg.SendTimeout)
		err := s.send.AddBatch(ctx, events)
		cancel()
		if err == nil {
			return struct{}{}, nil
		}
		if s.runCtx.Err() != nil {
			return struct{}{}, backoff.Permanent(err)
		}
		s.mu.Lock()
		s.lastErr = err
		if IsPermanent(err) {
			s.mu.Unlock()
			s.log.Error("server rejected a log batch; dropping it", "events", len(events), "err", err)
			rejected = true
			return struct{}{}, backoff.Permanent(err)
		}
		s.stats.Retries++
		s.mu.Unlock()
		if attempts == 1 || (attempts-1)%10 == 0 {
			s.log.Warn("log batch not delivered; will retry", "attempt", attempts, "err", err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(api.NewBackOff(s.cfg.RetryBase, s.cfg.RetryMax)), backoff.WithMaxElapsedTime(0))
	switch {
	case err == nil:
		if attempts > 1 {
			s.log.Info("log shipping recovered", "attempts", attempts)
		}
		return true, true
	case rejected:
		return false, true
	}
	return false, false // the shipper is closing
}

// ack removes the n head records after their batch was sent or dropped.
func (s *Shipper) ack(n int, sent bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := s.qHead; i < s.qHead+n; i++ {
		s.memBytes -= s.q[i].memSize()
		s.q[i] = record{}
	}
	s.qHead += n
	if s.qHead == len(s.q) {
		s.q, s.qHead = s.q[:0], 0
	} else if s.qHead > 4096 && s.qHead > len(s.q)/2 {
		k := copy(s.q, s.q[s.qHead:])
		clear(s.q[k:])
		s.q, s.qHead = s.q[:k], 0
	}
	s.seqDone += uint64(n)
	if sent {
		s.stats.LinesSent += uint64(n)
		s.stats.Batches++
	} else {
		s.stats.LinesDropped += uint64(n)
	}
	s.refillLocked()
	close(s.progress)
	s.progress = make(chan struct{})
	s.space.Broadcast()
}

// refillLocked moves spooled records into memory while there is room.
func (s *Shipper) refillLocked() {
	if s.spool.unread() == 0 {
		return
	}
	for s.spool.unread() > 0 && s.memBytes+MaxMsgBytes+64 <= s.cfg.MemoryMaxBytes {
		recs, err := s.spool.read(s.cfg.MemoryMaxBytes - s.memBytes)
		if err != nil {
			// The spool is our own file; if it cannot be read the lines in it are lost.
			s.log.Error("cannot read spooled log lines; they are lost", "err", err)
			lost := s.spool.discard()
			s.seqDone += lost
			s.stats.LinesDropped += lost
			break
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			s.q = append(s.q, r)
			s.memBytes += r.memSize()
		}
	}
	if s.spool.unread() == 0 {
		if err := s.spool.reset(); err != nil {
			s.log.Warn("cannot truncate spool file", "err", err)
		}
	}
}

// Permanent wraps err to tell the Shipper that retrying the batch cannot
// help (e.g. HTTP 400): the batch is dropped and counted.
func Permanent(err error) error { return permanentError{err} }

type permanentError struct{ err error }

func (e permanentError) Error() string   { return e.err.Error() }
func (e permanentError) Unwrap() error   { return e.err }
func (e permanentError) Permanent() bool { return true }

// IsPermanent reports whether err (or an error it wraps) has a method
// Permanent() bool returning true. An api client's error type can implement
// it for 4xx answers other than 408 and 429.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}
