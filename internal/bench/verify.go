package bench

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// linePrefix starts every line of the log relay task: "bench-line 0000042".
const linePrefix = "bench-line "

// verifyLines checks that the task log holds the lines "bench-line 0000000"
// .. n-1 exactly once and in order, reading the events in the order the
// server received them and splitting each msg on '\n'. Other lines (the
// agent's own setup output) are ignored. It returns how many bench lines it
// saw and the first problem.
func verifyLines(events []api.Event, n int) (seen int, err error) {
	next := 0
	for ei, e := range events {
		for _, l := range strings.Split(e.Msg, "\n") {
			i := strings.Index(l, linePrefix)
			if i < 0 {
				continue
			}
			digits := strings.TrimRight(l[i+len(linePrefix):], "\r \t")
			k, perr := strconv.Atoi(digits)
			if perr != nil {
				if err == nil {
					err = fmt.Errorf("event %d: mangled line %q", ei, l)
				}
				continue
			}
			seen++
			if err == nil {
				switch {
				case k < next:
					err = fmt.Errorf("event %d: line %d again or out of order after line %d", ei, k, next-1)
				case k > next:
					err = fmt.Errorf("event %d: line %d arrived where line %d was due (%d lost or reordered)", ei, k, next, k-next)
				}
			}
			if k >= next {
				next = k + 1
			}
		}
	}
	if err == nil && next != n {
		err = fmt.Errorf("only lines 0..%d of %d arrived", next-1, n)
	}
	if err == nil && seen != n {
		err = fmt.Errorf("%d lines arrived, want %d", seen, n)
	}
	return seen, err
}
