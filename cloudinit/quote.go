package cloudinit

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// YAMLQuote returns s as a YAML double-quoted scalar that PyYAML (cloud-init)
// and go.yaml.in/yaml/v3 read back as s: backslash, double quote and every
// character that is not printable (control characters, line and paragraph
// separators, the byte order mark) are escaped. s must be valid UTF-8.
func YAMLQuote(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%q is not valid UTF-8", s)
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case yamlPrintable(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// yamlPrintable: characters written as they are inside a quoted scalar or a
// literal block (a subset of YAML's c-printable that no YAML reader treats
// as a line break or whitespace of its own).
func yamlPrintable(r rune) bool {
	if r < 0x80 {
		return r >= 0x20 && r < 0x7f
	}
	switch r {
	case 0x85, 0xa0, 0x2028, 0x2029, 0xfeff:
		return false
	}
	return r >= 0xa0 && unicode.IsPrint(r)
}

// YAMLBlock returns content as a YAML literal block scalar ("|" and the
// lines indented by indent spaces) when it can be written as one byte for
// byte, and else as a double-quoted scalar. The value is what follows
// "key: " on the same line.
func YAMLBlock(content string, indent int) (string, error) {
	if !literalOK(content) {
		return YAMLQuote(content)
	}
	var b strings.Builder
	b.WriteString("|")
	pad := strings.Repeat(" ", indent)
	for _, line := range strings.Split(strings.TrimSuffix(content, "\n"), "\n") {
		b.WriteByte('\n')
		if line != "" {
			b.WriteString(pad + line)
		}
	}
	return b.String(), nil
}

// literalOK: content ends in exactly one line break (the block's default
// chomping), its first line starts with a visible character (so the
// indentation is detected from it), and it has only printable characters
// and tabs.
func literalOK(content string) bool {
	if !utf8.ValidString(content) || !strings.HasSuffix(content, "\n") || strings.HasSuffix(content, "\n\n") {
		return false
	}
	if content[0] == ' ' || content[0] == '\t' || content[0] == '\n' {
		return false
	}
	for _, r := range content {
		if r != '\n' && r != '\t' && !yamlPrintable(r) {
			return false
		}
	}
	return true
}

// ShellQuote returns s as one POSIX shell word: as it is when it has only
// characters no shell treats specially (letters, digits, _@%+:,./-), else
// in single quotes (an embedded single quote closes them, is escaped with
// a backslash, and reopens them). A shell word cannot hold a NUL byte.
func ShellQuote(s string) (string, error) {
	if strings.ContainsRune(s, 0) {
		return "", fmt.Errorf("%q contains a NUL byte", s)
	}
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_@%+:,./-", r))
	}) {
		return s, nil
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}

// credValue quotes a credentials-file value: double quotes with \ escapes
// (the KEY=VALUE format provision.ReadCredentialsFile reads).
func credValue(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// comment makes s safe on one comment line.
func comment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
			return ' '
		}
		return r
	}, s)
}
