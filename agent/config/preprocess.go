package config

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// The pre-processing pass reads the clearml.conf dialect (what the Python agent's
// vendored pyhocon accepts) and re-emits it in the strict subset that
// github.com/gurkankaymak/hocon parses reliably:
//
//   - every key segment is quoted ("agent"."git_user");
//   - every scalar is a number, true/false/null, or a JSON-quoted string, so unquoted
//     URLs (`https://api.clear.ml`), paths and `a b c` survive;
//   - comments are dropped everywhere (inside arrays too), newlines are kept so the
//     library's line numbers still match the source;
//   - array elements are separated by commas (newline-separated lists work);
//   - `include` directives are removed and returned to the caller, which loads them;
//   - `${a.b}` / `${?ENV}` substitutions become marker strings resolved by the loader
//     (against the merged tree, then the LoadOptions environment).
//
// Along the way it records the source line of every scalar/array assignment so the
// loader can report the origin (file:line) of each value.

const (
	substOpen  = "\x01" // marker: "\x01" + ["?"] + path + "\x02"
	substClose = "\x02"
	negNumber  = "\x03" // prefix of a negative number literal
)

type includeDirective struct {
	path     string
	required bool
	prefix   []string
	line     int
}

type ppResult struct {
	text     string
	includes []includeDirective
	lines    map[string]int // dotted leaf path -> line of its last assignment
	// rootBraced reports whether the document is wrapped in { }; closeOffset is the
	// byte offset of the root's closing brace in the source (only when rootBraced).
	rootBraced  bool
	closeOffset int
}

// posError is a syntax error at a source position.
type posError struct {
	line, col int
	msg       string
}

// Error is one line whatever the file held: control characters quoted from
// the text are written as escapes.
func (e *posError) Error() string {
	return fmt.Sprintf("%d:%d: %s", e.line, e.col, strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(e.msg))
}

type pp struct {
	src       string
	i         int
	line, col int
	out       strings.Builder
	res       ppResult
}

func preprocess(src string) (*ppResult, error) {
	p := &pp{src: src, line: 1, col: 1}
	p.res.lines = map[string]int{}
	p.skipSpace(true)
	if p.peek() == '{' {
		p.res.rootBraced = true
		p.emitByte('{')
		p.advance()
		if err := p.objectBody(nil, true); err != nil {
			return nil, err
		}
		p.res.closeOffset = p.i - 1
		p.skipSpace(true)
		if p.i < len(p.src) {
			return nil, p.errf("unexpected %q after the closing '}' of the root object; remove it or drop the root braces", p.peek())
		}
	} else if err := p.objectBody(nil, false); err != nil {
		return nil, err
	}
	p.res.text = p.out.String()
	return &p.res, nil
}

func (p *pp) errf(format string, args ...any) error {
	return &posError{line: p.line, col: p.col, msg: fmt.Sprintf(format, args...)}
}

func (p *pp) peek() byte {
	if p.i >= len(p.src) {
		return 0
	}
	return p.src[p.i]
}

func (p *pp) peekAt(n int) byte {
	if p.i+n >= len(p.src) {
		return 0
	}
	return p.src[p.i+n]
}

func (p *pp) advance() {
	if p.i >= len(p.src) {
		return
	}
	if p.src[p.i] == '\n' {
		p.line++
		p.col = 1
		p.i++
		return
	}
	_, size := utf8.DecodeRuneInString(p.src[p.i:])
	p.i += size
	p.col++
}

func (p *pp) emitByte(b byte) { p.out.WriteByte(b) }

// atComment reports whether a comment starts at the current position.
func (p *pp) atComment() bool {
	c := p.peek()
	return c == '#' || (c == '/' && p.peekAt(1) == '/')
}

func (p *pp) skipComment() {
	for p.i < len(p.src) && p.peek() != '\n' {
		p.advance()
	}
}

// skipSpace skips blanks and comments; with newlines it also crosses line breaks
// (emitting them so line numbers are preserved). It returns whether a newline was
// crossed.
func (p *pp) skipSpace(newlines bool) bool {
	crossed := false
	for p.i < len(p.src) {
		c := p.peek()
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			p.advance()
		case strings.HasPrefix(p.src[p.i:], "\ufeff"):
			p.i += 3
		case c == '\n':
			if !newlines {
				return crossed
			}
			crossed = true
			p.emitByte('\n')
			p.advance()
		case p.atComment():
			p.skipComment()
		default:
			return crossed
		}
	}
	return crossed
}

func (p *pp) objectBody(prefix []string, braced bool) error {
	openLine, openCol := p.line, p.col-1
	for {
		p.skipSpace(true)
		for p.peek() == ',' {
			p.advance()
			p.skipSpace(true)
		}
		switch c := p.peek(); {
		case c == 0:
			if braced {
				return &posError{line: p.line, col: p.col, msg: fmt.Sprintf("unexpected end of file: '{' opened at %d:%d is never closed; add a '}'", openLine, openCol)}
			}
			return nil
		case c == '}':
			if !braced {
				return p.errf("unexpected '}' with no matching '{'; remove it or add the missing '{'")
			}
			p.emitByte('}')
			p.advance()
			return nil
		case c == ']' || c == '[' || c == ':' || c == '=' || c == ',':
			return p.errf("unexpected %q where a key was expected", c)
		}
		if p.atInclude() {
			if err := p.include(prefix); err != nil {
				return err
			}
			continue
		}
		keyLine, keyCol := p.line, p.col
		key, err := p.key()
		if err != nil {
			return err
		}
		path := append(append([]string{}, prefix...), key...)
		p.emitKey(key)
		p.skipSpace(false)
		switch c := p.peek(); {
		case c == '{':
			// key { ... } needs no separator.
		case c == ':' || c == '=':
			p.emitByte(':')
			p.advance()
		case c == '+' && p.peekAt(1) == '=':
			p.out.WriteString("+=")
			p.advance()
			p.advance()
		default:
			if c == 0 || c == '\n' {
				return &posError{line: keyLine, col: keyCol, msg: fmt.Sprintf("key %q has no value; write %s: <value>", strings.Join(key, "."), strings.Join(key, "."))}
			}
			return p.errf("unexpected %q after key %q; expected ':', '=' or '{'", c, strings.Join(key, "."))
		}
		if err := p.value(path); err != nil {
			return err
		}
		p.out.WriteByte(',')
	}
}

func (p *pp) atInclude() bool {
	if !strings.HasPrefix(p.src[p.i:], "include") {
		return false
	}
	rest := strings.TrimLeft(p.src[p.i+len("include"):], " \t")
	if len(rest) == len(p.src[p.i+len("include"):]) {
		return false // "include" must be followed by blanks
	}
	return strings.HasPrefix(rest, `"`) || strings.HasPrefix(rest, "file(") ||
		strings.HasPrefix(rest, "required(") || strings.HasPrefix(rest, "url(") || strings.HasPrefix(rest, "classpath(")
}

var includeRe = regexp.MustCompile(`^include[ \t]+(required\([ \t]*)?(file\([ \t]*|url\([ \t]*|classpath\([ \t]*)?"((?:[^"\\\n]|\\.)*)"[ \t]*(\))?[ \t]*(\))?`)

func (p *pp) include(prefix []string) error {
	m := includeRe.FindStringSubmatch(p.src[p.i:])
	if m == nil {
		return p.errf(`malformed include; use include "other.conf" or include required(file("other.conf"))`)
	}
	opened := 0
	if m[1] != "" {
		opened++
	}
	if m[2] != "" {
		opened++
	}
	closed := 0
	if m[4] != "" {
		closed++
	}
	if m[5] != "" {
		closed++
	}
	if opened != closed {
		return p.errf("include: unbalanced parentheses in %q", strings.TrimSpace(m[0]))
	}
	if strings.HasPrefix(m[2], "url") || strings.HasPrefix(m[2], "classpath") {
		return p.errf("include %s...): only file includes are supported; copy the settings into the file", strings.TrimSpace(strings.TrimSuffix(m[2], "(")))
	}
	var target string
	if err := json.Unmarshal([]byte(`"`+m[3]+`"`), &target); err != nil {
		return p.errf("include: bad string %q", m[3])
	}
	p.res.includes = append(p.res.includes, includeDirective{path: target, required: m[1] != "", prefix: append([]string{}, prefix...), line: p.line})
	for n := len(m[0]); n > 0; n-- {
		p.advance()
	}
	return nil
}

// key reads a (possibly dotted, possibly quoted) key and returns its segments.
func (p *pp) key() ([]string, error) {
	var segs []string
	var cur strings.Builder
	quotedSeg := false
	for {
		c := p.peek()
		switch {
		case c == '"':
			s, err := p.quoted()
			if err != nil {
				return nil, err
			}
			cur.WriteString(s)
			quotedSeg = true
		case c == '.':
			if cur.Len() == 0 && !quotedSeg {
				return nil, p.errf("empty key segment before '.'; remove the extra '.'")
			}
			segs = append(segs, cur.String())
			cur.Reset()
			quotedSeg = false
			p.advance()
		case c == 0 || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ':' || c == '=' || c == '{' || (c == '+' && p.peekAt(1) == '=') || p.atComment():
			if cur.Len() == 0 && !quotedSeg {
				if len(segs) > 0 {
					return nil, p.errf("key ends with '.'; remove the trailing '.'")
				}
				return nil, p.errf("expected a key")
			}
			return append(segs, strings.TrimSpace(cur.String())), nil
		case strings.ContainsRune("}[],$?!@*&^`\\()", rune(c)):
			return nil, p.errf("unexpected %q in key; quote the key if it really contains it", c)
		default:
			cur.WriteByte(c)
			p.advance()
		}
	}
}

func (p *pp) emitKey(segs []string) {
	for n, s := range segs {
		if n > 0 {
			p.emitByte('.')
		}
		p.out.WriteString(jsonQuote(s))
	}
}

// quoted reads a "..." string (JSON escapes) at the current position.
func (p *pp) quoted() (string, error) {
	startLine, startCol := p.line, p.col
	start := p.i
	p.advance()
	for {
		c := p.peek()
		switch c {
		case 0, '\n':
			return "", &posError{line: startLine, col: startCol, msg: "unterminated string; add the closing '\"'"}
		case '\\':
			p.advance()
			p.advance()
		case '"':
			p.advance()
			var s string
			if err := json.Unmarshal([]byte(p.src[start:p.i]), &s); err != nil {
				return "", &posError{line: startLine, col: startCol, msg: fmt.Sprintf("bad escape in string %q", p.src[start:p.i])}
			}
			return s, nil
		default:
			p.advance()
		}
	}
}

// tripleQuoted reads a """...""" string verbatim; it returns the number of newlines crossed.
func (p *pp) tripleQuoted() (string, int, error) {
	startLine, startCol := p.line, p.col
	p.advance()
	p.advance()
	p.advance()
	start := p.i
	end := strings.Index(p.src[p.i:], `"""`)
	if end < 0 {
		return "", 0, &posError{line: startLine, col: startCol, msg: `unterminated """ string; add the closing """`}
	}
	end += p.i
	// Extra quotes right before the closing """ belong to the string.
	for end+3 < len(p.src) && p.src[end+3] == '"' {
		end++
	}
	s := p.src[start:end]
	for p.i < end+3 {
		p.advance()
	}
	return s, strings.Count(s, "\n"), nil
}

var numberRe = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// value reads one value after a separator (or an array element) and emits it.
func (p *pp) value(path []string) error {
	p.skipSpace(false)
	switch p.peek() {
	case '{':
		p.emitByte('{')
		p.advance()
		return p.objectBody(path, true)
	case '[':
		if path != nil {
			p.res.lines[strings.Join(path, ".")] = p.line
		}
		p.emitByte('[')
		p.advance()
		return p.array(path)
	}
	if path != nil {
		p.res.lines[strings.Join(path, ".")] = p.line
	}
	return p.scalar()
}

// scalar reads a run of unquoted text, quoted strings and substitutions up to the end
// of the value (newline, ',', '}', ']', or a comment) and emits it in canonical form.
func (p *pp) scalar() error {
	var b strings.Builder
	pieces, extraLines := 0, 0
	onlyQuoted := true
	var pending string // blanks between pieces, kept only when more follows
	startLine, startCol := p.line, p.col
	for {
		c := p.peek()
		if c == 0 || c == '\n' || c == ',' || c == '}' || c == ']' || p.atComment() {
			break
		}
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			pending += string(c)
			p.advance()
			continue
		case c == '"' && strings.HasPrefix(p.src[p.i:], `"""`):
			s, nl, err := p.tripleQuoted()
			if err != nil {
				return err
			}
			extraLines += nl
			b.WriteString(pending)
			b.WriteString(s)
		case c == '"':
			s, err := p.quoted()
			if err != nil {
				return err
			}
			b.WriteString(pending)
			b.WriteString(s)
		case c == '$' && p.peekAt(1) == '{':
			end := strings.IndexAny(p.src[p.i:], "}\n")
			if end < 0 || p.src[p.i+end] != '}' {
				return p.errf("unterminated substitution; write ${path} or ${?ENV_VAR}")
			}
			inner := strings.TrimSpace(p.src[p.i+2 : p.i+end])
			optional := strings.HasPrefix(inner, "?")
			name := strings.TrimSpace(strings.TrimPrefix(inner, "?"))
			if name == "" {
				return p.errf("empty substitution ${}; write ${path} or ${?ENV_VAR}")
			}
			for n := 0; n <= end; n++ {
				p.advance()
			}
			b.WriteString(pending)
			b.WriteString(substOpen)
			if optional {
				b.WriteString("?")
			}
			b.WriteString(strings.Trim(name, `"`))
			b.WriteString(substClose)
			onlyQuoted = false
		case c == '{' || c == '[':
			return p.errf("unexpected %q inside a value; start objects and lists right after the separator", c)
		default:
			start := p.i
			for {
				c := p.peek()
				if c == 0 || c == '\n' || c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\r' || c == '"' || c == '{' || c == '[' ||
					(c == '$' && p.peekAt(1) == '{') || (c == '#') || (c == '/' && p.peekAt(1) == '/' && (p.i == start || isBlank(p.src[p.i-1]))) {
					break
				}
				p.advance()
			}
			b.WriteString(pending)
			b.WriteString(p.src[start:p.i])
			onlyQuoted = false
		}
		pending = ""
		pieces++
	}
	if pieces == 0 {
		return &posError{line: startLine, col: startCol, msg: "missing value; write \"\" for an empty string"}
	}
	s := b.String()
	switch {
	case !onlyQuoted && pieces == 1 && numberRe.MatchString(s) && strings.HasPrefix(s, "-"):
		// The library reads negative numbers as strings; mark them for the loader.
		p.out.WriteString(jsonQuote(negNumber + s))
	case !onlyQuoted && pieces == 1 && numberRe.MatchString(s):
		p.out.WriteString(s)
	case !onlyQuoted && pieces == 1 && (strings.EqualFold(s, "true") || strings.EqualFold(s, "false") || strings.EqualFold(s, "null")):
		p.out.WriteString(strings.ToLower(s))
	default:
		p.out.WriteString(jsonQuote(s))
	}
	for ; extraLines > 0; extraLines-- {
		p.emitByte('\n')
	}
	return nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func (p *pp) array(path []string) error {
	openLine, openCol := p.line, p.col-1
	first := true
	for {
		p.skipSpace(true)
		for p.peek() == ',' {
			p.advance()
			p.skipSpace(true)
		}
		switch p.peek() {
		case 0:
			return &posError{line: p.line, col: p.col, msg: fmt.Sprintf("unexpected end of file: '[' opened at %d:%d is never closed; add a ']'", openLine, openCol)}
		case ']':
			p.emitByte(']')
			p.advance()
			return nil
		case '}':
			return p.errf("unexpected '}' inside a list opened at %d:%d; close the list with ']'", openLine, openCol)
		}
		if !first {
			p.out.WriteString(", ")
		}
		first = false
		if err := p.value(nil); err != nil {
			return err
		}
	}
}

func jsonQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			// \u0022 rather than \": the hocon library trims quote characters off both
			// ends of a string token, which would eat an escaped trailing quote.
			b.WriteString(`\u0022`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
