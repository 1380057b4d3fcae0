package provision

import (
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// diffContext is how many unchanged lines are shown around a change.
const diffContext = 2

// lineDiff is a unified diff of a and b (go-difflib). With no file names
// it has no ---/+++ header (the plan names the file on the line above): hunks
// start with "@@ -l,s +l,s @@", then " same", "-old" and "+new" lines.
func lineDiff(a, b string) string {
	ud := difflib.UnifiedDiff{A: splitLines(a), B: splitLines(b), Context: diffContext}
	text, err := difflib.GetUnifiedDiffString(ud)
	if err != nil { // only a failing writer errs; a strings.Builder does not
		return ""
	}
	return text
}

// splitLines splits s into lines that keep their "\n", as difflib wants them.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	} else {
		lines[len(lines)-1] += "\n"
	}
	return lines
}
