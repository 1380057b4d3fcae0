// Package oneline turns errors and messages into the one line that logs,
// STATUS= texts, task status reasons and CLI errors show.
//
// It must not: add prefixes, wrap errors, or know where the line goes.
package oneline

import "strings"

// Of returns err's message up to its first line break, trimmed; "" for nil.
func Of(err error) string {
	if err == nil {
		return ""
	}
	return First(err.Error())
}

// First returns s up to its first line break, trimmed.
func First(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

// Squash joins all of s onto one line (whitespace runs become one space) and
// caps it at max bytes (at a rune boundary, with "..." appended); max <= 0
// means no cap. For server messages and HTML pages that span lines.
func Squash(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if max > 0 && len(s) > max {
		cut := max
		for cut > 0 && cut > max-4 && !runeStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

func runeStart(b byte) bool { return b&0xC0 != 0x80 }
