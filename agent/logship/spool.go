package logship

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
)

var errSpoolFull = errors.New("spool full")

// spool is an append-only file of records waiting for memory. Records are
// read back from r in the order written; when everything was read the file is
// truncated. The caller (Shipper) holds its mutex around every call.
type spool struct {
	dir  string
	max  int64
	task string

	f       *os.File
	r, w    int64  // read and write offsets
	records uint64 // unread records
	enc     []byte
}

func (sp *spool) enabled() bool { return sp.dir != "" }
func (sp *spool) unread() int64 { return sp.w - sp.r }

// append writes r at the end and returns the bytes written, or errSpoolFull.
func (sp *spool) append(r record) (int, error) {
	b := sp.enc[:0]
	b = binary.AppendUvarint(b, uint64(len(r.level)))
	b = append(b, r.level...)
	b = binary.AppendUvarint(b, uint64(len(r.text)))
	b = append(b, r.text...)
	b = binary.AppendVarint(b, r.ms)
	sp.enc = b
	if sp.w+int64(len(b)) > sp.max {
		return 0, errSpoolFull
	}
	if sp.f == nil {
		name := strings.Map(func(c rune) rune {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
				return c
			}
			return '_'
		}, sp.task)
		if err := os.MkdirAll(sp.dir, 0o700); err != nil {
			return 0, fmt.Errorf("create spool directory %q: %w; check that the agent's state directory is writable", sp.dir, err)
		}
		f, err := os.CreateTemp(sp.dir, "logship-"+name+"-*.spool")
		if err != nil {
			return 0, fmt.Errorf("create spool file in %q: %w; check agent.log_spool_dir exists and is writable", sp.dir, err)
		}
		sp.f = f
	}
	if _, err := sp.f.WriteAt(b, sp.w); err != nil {
		return 0, fmt.Errorf("write spool file %s: %w", sp.f.Name(), err)
	}
	sp.w += int64(len(b))
	sp.records++
	return len(b), nil
}

// read returns the next records whose memory size adds up to at most budget.
func (sp *spool) read(budget int) ([]record, error) {
	n := min(sp.unread(), int64(MaxMsgBytes*4))
	buf := make([]byte, n)
	if _, err := sp.f.ReadAt(buf, sp.r); err != nil {
		return nil, fmt.Errorf("read spool file %s at %d: %w", sp.f.Name(), sp.r, err)
	}
	var out []record
	used := 0
	off := 0
	for off < len(buf) {
		rec, size, ok := decodeRecord(buf[off:])
		if !ok {
			if off == 0 && int64(len(buf)) == sp.unread() {
				return nil, fmt.Errorf("spool file %s is corrupt at offset %d", sp.f.Name(), sp.r)
			}
			break
		}
		if used+rec.memSize() > budget {
			break
		}
		used += rec.memSize()
		out = append(out, rec)
		off += size
	}
	sp.r += int64(off)
	sp.records -= uint64(len(out))
	return out, nil
}

func decodeRecord(b []byte) (record, int, bool) {
	off := 0
	str := func() (string, bool) {
		l, n := binary.Uvarint(b[off:])
		if n <= 0 || uint64(len(b)-off-n) < l {
			return "", false
		}
		s := string(b[off+n : off+n+int(l)])
		off += n + int(l)
		return s, true
	}
	level, ok := str()
	if !ok {
		return record{}, 0, false
	}
	text, ok := str()
	if !ok {
		return record{}, 0, false
	}
	ms, n := binary.Varint(b[off:])
	if n <= 0 {
		return record{}, 0, false
	}
	off += n
	return record{level: level, text: text, ms: ms}, off, true
}

// discard forgets the unread records and returns how many there were.
func (sp *spool) discard() uint64 {
	n := sp.records
	sp.r, sp.records = sp.w, 0
	return n
}

// reset truncates the fully read file.
func (sp *spool) reset() error {
	sp.r, sp.w, sp.records = 0, 0, 0
	if sp.f == nil {
		return nil
	}
	return sp.f.Truncate(0)
}

// remove deletes the file.
func (sp *spool) remove() error {
	if sp.f == nil {
		return nil
	}
	name := sp.f.Name()
	sp.f.Close()
	sp.f = nil
	sp.r, sp.w, sp.records = 0, 0, 0
	return os.Remove(name)
}
