package process

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzSplitter: whatever a task writes, in whatever chunks, every Line is
// valid UTF-8, holds no '\n', comes from at most max input bytes, and with '\r' kept as a
// line end no printable text is lost.
func FuzzSplitter(f *testing.F) {
	for _, s := range []string{"a\nb\n", "progress 10%\rprogress 20%\rdone\n", "\r\n\r\n", "x\xff\xfey\n", "héllo wörld\n", strings.Repeat("z", 300)} {
		f.Add([]byte(s), uint8(7), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8, keepCR bool) {
		const max = 64
		var lines []Line
		s := newSplitter(keepCR, max, func(l Line) { lines = append(lines, l) })
		step := int(chunk)%17 + 1
		for i := 0; i < len(in); i += step {
			s.write(in[i:min(i+step, len(in))])
		}
		s.flush()
		var got strings.Builder
		for _, l := range lines {
			// max bytes of input per line; an invalid byte becomes U+FFFD
			// (3 bytes), so a line of binary output can grow to 3 x max.
			if !utf8.ValidString(l.Text) || strings.ContainsAny(l.Text, "\n\b") || len(l.Text) > 3*max {
				t.Fatalf("bad line %q", l.Text)
			}
			got.WriteString(l.Text)
		}
		if keepCR && utf8.Valid(in) {
			want := strings.NewReplacer("\n", "", "\r", "", "\b", "").Replace(string(in))
			if got.String() != want {
				t.Fatalf("text lost: got %q want %q", got.String(), want)
			}
		}
	})
}
