package process

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Line is one line of child output (stdout and stderr share one pipe),
// without its line terminator.
type Line struct {
	Text string    // valid UTF-8, no '\n', no '\b'
	Time time.Time // when the line was complete
}

// DefaultMaxLineBytes is the longest line delivered in one piece; longer
// lines arrive as several Lines of at most this many bytes. It matches the
// reference agent's 64 KiB message split.
const DefaultMaxLineBytes = 64 << 10

// splitter turns a byte stream into Lines. It is not safe for concurrent use.
type splitter struct {
	keepCR    bool // false: keep only the last '\r' segment; true: '\r' ends a line
	max       int
	buf       []byte
	pendingCR bool
	continued bool      // the start of the current line was already sent by flushPartial
	since     time.Time // when the current line's first byte arrived; zero when none
	now       func() time.Time
	emit      func(Line)
}

func newSplitter(keepCR bool, max int, emit func(Line)) *splitter {
	if max <= 0 {
		max = DefaultMaxLineBytes
	}
	return &splitter{keepCR: keepCR, max: max, now: time.Now, emit: emit}
}

// write consumes p. Memory stays bounded by max whatever p holds.
func (s *splitter) write(p []byte) {
	for _, c := range p {
		if s.pendingCR {
			s.pendingCR = false
			if c == '\n' { // "\r\n" is one line end
				s.emitLine()
				continue
			}
			if s.keepCR {
				s.emitLine()
			} else {
				s.buf = s.buf[:0] // a progress bar redrew the line
			}
		}
		switch c {
		case '\n':
			s.emitLine()
		case '\r':
			s.pendingCR = true
		case '\b':
		default:
			if s.since.IsZero() {
				s.since = s.now()
			}
			s.buf = append(s.buf, c)
			if len(s.buf) >= s.max {
				s.emitChunk()
			}
		}
	}
}

// flush delivers the partial last line, if any (at EOF).
func (s *splitter) flush() {
	if len(s.buf) > 0 || s.pendingCR {
		s.pendingCR = false
		s.emitLine()
	}
}

// flushPartial delivers the line so far (the reference agent sends the
// partial last line of every read); what follows starts a new line.
func (s *splitter) flushPartial() {
	if len(s.buf) > 0 {
		s.emitLine()
		s.continued = true
	}
}

func (s *splitter) emitLine() {
	s.since = time.Time{}
	if len(s.buf) == 0 && s.continued { // the end of a line flushPartial already sent
		s.continued = false
		return
	}
	s.continued = false
	s.emit(Line{Text: toText(s.buf), Time: s.now()})
	s.buf = s.buf[:0]
}

// emitChunk delivers buf (full at max bytes) as one Line, except for an
// incomplete UTF-8 rune at its end, which stays for the next chunk.
func (s *splitter) emitChunk() {
	cut := len(s.buf)
	start := cut - 1
	for start > 0 && cut-start < utf8.UTFMax && !utf8.RuneStart(s.buf[start]) {
		start--
	}
	if start > 0 && !utf8.FullRune(s.buf[start:]) {
		cut = start
	}
	s.emit(Line{Text: toText(s.buf[:cut]), Time: s.now()})
	n := copy(s.buf, s.buf[cut:])
	s.buf = s.buf[:n]
}

func toText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
