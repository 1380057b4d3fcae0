package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// Status is the outcome of one check.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn" // works, but something is off; never blocks the daemon
	Fail Status = "fail" // the agent cannot run tasks until it is fixed
	Skip Status = "skip" // does not apply here (mode, flags) or an earlier check failed
)

// Result is what one check found. Fix says how to repair a warn or fail.
type Result struct {
	Name   string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Check is one named check. Run must honour ctx; Run on its own is given
// Timeout (DefaultTimeout when zero) and a Result that outlives it is a
// failure.
type Check struct {
	Name    string
	Timeout time.Duration
	Run     func(ctx context.Context) Result
}

// maxText caps a detail or fix (a tool's error output can be long).
const maxText = 400

// DefaultTimeout bounds a check that sets no Timeout.
const DefaultTimeout = 15 * time.Second

// Report is the outcome of a run, in the order the checks were given.
type Report struct {
	OK      bool     `json:"ok"` // no check failed (warnings allowed)
	Results []Result `json:"checks"`
}

// Run runs the checks one after the other, each under its timeout, and
// returns their results. A check that panics or overruns fails; Run never
// returns early (a cancelled ctx makes the remaining checks fail quickly).
func Run(ctx context.Context, checks []Check) Report {
	r := Report{OK: true}
	for _, c := range checks {
		res := runOne(ctx, c)
		if res.Status == Fail {
			r.OK = false
		}
		r.Results = append(r.Results, res)
	}
	return r
}

func runOne(ctx context.Context, c Check) Result {
	limit := c.Timeout
	if limit <= 0 {
		limit = DefaultTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	done := make(chan Result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- Result{Status: Fail, Detail: fmt.Sprintf("the check crashed: %v", p), Fix: "report this as a clearml-agent bug"}
			}
		}()
		done <- c.Run(cctx)
	}()
	var res Result
	select {
	case res = <-done:
	case <-cctx.Done():
		// The check ignored its context (a hung mount, say): leave it.
		res = Result{Status: Fail, Detail: fmt.Sprintf("no answer within %s", limit), Fix: "see what blocks it (a hung network mount or service)"}
		if ctx.Err() != nil {
			res.Detail = "interrupted"
			res.Fix = ""
		}
	}
	res.Name = c.Name
	res.Detail = oneline.Squash(res.Detail, maxText)
	res.Fix = oneline.Squash(res.Fix, maxText)
	if res.Status == OK || res.Status == Skip {
		res.Fix = ""
	}
	if res.Status == "" {
		res.Status = Fail
	}
	return res
}

// Failures returns the failed results.
func (r Report) Failures() []Result { return r.with(Fail) }

// Warnings returns the results with warnings.
func (r Report) Warnings() []Result { return r.with(Warn) }

func (r Report) with(s Status) []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Status == s {
			out = append(out, res)
		}
	}
	return out
}

// Err is nil when no check failed, else a *FailedError naming the first
// failure in one line ("python: ...; fix: ..."): what the daemon shows in
// STATUS= while it is not ready.
func (r Report) Err() error {
	f := r.Failures()
	if len(f) == 0 {
		return nil
	}
	return &FailedError{First: f[0], More: len(f) - 1}
}

// FailedError is a report with at least one failed check.
type FailedError struct {
	First Result
	More  int // further failed checks
}

func (e *FailedError) Error() string {
	return Line(e.First) + more(e.More)
}

func more(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return " (and 1 more failed check)"
	}
	return fmt.Sprintf(" (and %d more failed checks)", n)
}

// Line is one result as one line: "name: detail; fix: fix".
func Line(r Result) string {
	s := r.Name + ": " + r.Detail
	if r.Fix != "" && (r.Status == Fail || r.Status == Warn) {
		s += "; fix: " + r.Fix
	}
	return s
}

// Summary is the last line of the table: "2 failed, 1 warning, 7 ok, 1 skipped".
func (r Report) Summary() string {
	var n = map[Status]int{}
	for _, res := range r.Results {
		n[res.Status]++
	}
	plural := func(k int, one, many string) string {
		if k == 1 {
			return fmt.Sprintf("%d %s", k, one)
		}
		return fmt.Sprintf("%d %s", k, many)
	}
	parts := []string{fmt.Sprintf("%d failed", n[Fail]), plural(n[Warn], "warning", "warnings"), fmt.Sprintf("%d ok", n[OK])}
	if n[Skip] > 0 {
		parts = append(parts, fmt.Sprintf("%d skipped", n[Skip]))
	}
	return strings.Join(parts, ", ")
}

// WriteTable prints the results as an aligned table (CHECK, STATUS, DETAIL,
// FIX; the fix only for warnings and failures) and the summary line.
func (r Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL\tFIX")
	for _, res := range r.Results {
		fix := ""
		if res.Status == Fail || res.Status == Warn {
			fix = res.Fix
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.Name, strings.ToUpper(string(res.Status)), tabless(res.Detail), tabless(fix))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range strings.SplitAfter(b.String(), "\n") {
		if l != "" {
			if _, err := io.WriteString(w, strings.TrimRight(l, " \n")+"\n"); err != nil {
				return err
			}
		}
	}
	_, err := fmt.Fprintln(w, r.Summary())
	return err
}

func tabless(s string) string { return strings.ReplaceAll(s, "\t", " ") }

// WriteJSON prints the report as one JSON object:
// {"ok": bool, "checks": [{"check", "status", "detail", "fix"}, ...]}.
func (r Report) WriteJSON(w io.Writer) error {
	if r.Results == nil {
		r.Results = []Result{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads what WriteJSON wrote (agent-provision doctor reads the
// report of each agent's `clearml-agent doctor --json`).
func ReadJSON(r io.Reader) (Report, error) {
	var rep Report
	dec := json.NewDecoder(r)
	if err := dec.Decode(&rep); err != nil {
		return Report{}, fmt.Errorf("doctor report: %w", err)
	}
	return rep, nil
}

// Preflight turns checks into a worker.Config.Preflight: each call builds
// the checks afresh (they share state within one run only) and runs them,
// and returns the report's Err (the first failure, in one line). warn, when
// set, hears each warning once per change of its line (the daemon logs it);
// warnings never block.
func Preflight(checks func() []Check, warn func(Result)) func(ctx context.Context) error {
	var mu sync.Mutex
	seen := map[string]string{}
	return func(ctx context.Context) error {
		rep := Run(ctx, checks())
		mu.Lock()
		defer mu.Unlock()
		for _, res := range rep.Results {
			line := ""
			if res.Status == Warn {
				line = Line(res)
			}
			if line != "" && line != seen[res.Name] && warn != nil {
				warn(res)
			}
			seen[res.Name] = line
		}
		return rep.Err()
	}
}
