package doctor

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func fixed(r Result) func(context.Context) Result {
	return func(context.Context) Result { return r }
}

func TestDoctorRunTimeoutsAndPanics(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	rep := Run(t.Context(), []Check{
		{Name: "fine", Run: fixed(Result{Status: OK, Detail: "all good", Fix: "dropped on ok"})},
		{Name: "hung", Timeout: 50 * time.Millisecond, Run: func(context.Context) Result { <-block; return Result{Status: OK} }},
		{Name: "crash", Run: func(context.Context) Result { panic("boom") }},
		{Name: "blank", Run: fixed(Result{Detail: "line one\nline two"})},
	})
	if rep.OK {
		t.Fatalf("report OK with failures: %+v", rep)
	}
	want := []Result{
		{Name: "fine", Status: OK, Detail: "all good"},
		{Name: "hung", Status: Fail, Detail: "no answer within 50ms", Fix: "see what blocks it (a hung network mount or service)"},
		{Name: "crash", Status: Fail, Detail: "the check crashed: boom", Fix: "report this as a clearml-agent bug"},
		{Name: "blank", Status: Fail, Detail: "line one line two"},
	}
	for i, w := range want {
		if rep.Results[i] != w {
			t.Errorf("result %d = %+v, want %+v", i, rep.Results[i], w)
		}
	}
}

func TestDoctorReportTableErrJSON(t *testing.T) {
	rep := Run(t.Context(), []Check{
		{Name: "server", Run: fixed(Result{Status: OK, Detail: "http://x answers (HTTP 404)"})},
		{Name: "python", Run: fixed(Result{Status: Fail, Detail: "no python interpreter found", Fix: "install python3"})},
		{Name: "clock", Run: fixed(Result{Status: Warn, Detail: "server clock 1m0s ahead", Fix: "enable NTP"})},
		{Name: "gpus", Run: fixed(Result{Status: Skip, Detail: "--cpu-only", Fix: "never shown"})},
		{Name: "git host", Run: fixed(Result{Status: Fail, Detail: "cannot connect", Fix: "check the firewall"})},
	})
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	want := `CHECK     STATUS  DETAIL                       FIX
server    OK      http://x answers (HTTP 404)
python    FAIL    no python interpreter found  install python3
clock     WARN    server clock 1m0s ahead      enable NTP
gpus      SKIP    --cpu-only
git host  FAIL    cannot connect               check the firewall
2 failed, 1 warning, 1 ok, 1 skipped
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	err := rep.Err()
	var fe *FailedError
	if !errors.As(err, &fe) || err.Error() != "python: no python interpreter found; fix: install python3 (and 1 more failed check)" {
		t.Errorf("Err = %v", err)
	}
	if len(rep.Warnings()) != 1 || len(rep.Failures()) != 2 {
		t.Errorf("warnings %v failures %v", rep.Warnings(), rep.Failures())
	}

	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"check": "python"`) || !strings.Contains(b.String(), `"ok": false`) {
		t.Errorf("json:\n%s", b.String())
	}
	back, err := ReadJSON(&b)
	if err != nil || back.OK || len(back.Results) != 5 || back.Results[1] != rep.Results[1] {
		t.Errorf("ReadJSON = %+v, %v", back, err)
	}
	if _, err := ReadJSON(strings.NewReader("not json")); err == nil || !strings.HasPrefix(err.Error(), "doctor report: ") {
		t.Errorf("ReadJSON of garbage: %v", err)
	}

	ok := Run(t.Context(), []Check{{Name: "a", Run: fixed(Result{Status: Warn, Detail: "meh", Fix: "f"})}})
	if !ok.OK || ok.Err() != nil {
		t.Errorf("a warning fails the report: %+v", ok)
	}
}

// The daemon's preflight: checks are built afresh for every run, a
// failure is the error, a warning is reported once per change.
func TestPreflightWarnsOncePerChange(t *testing.T) {
	var builds int
	status := []Result{
		{Status: Warn, Detail: "a"}, {Status: Warn, Detail: "a"}, {Status: Warn, Detail: "b"},
		{Status: OK}, {Status: Warn, Detail: "b"}, {Status: Fail, Detail: "broken", Fix: "fix it"},
	}
	var warned []string
	pf := Preflight(func() []Check {
		r := status[builds]
		builds++
		return []Check{{Name: "x", Run: fixed(r)}}
	}, func(r Result) { warned = append(warned, r.Detail) })
	var errs []string
	for range status {
		if err := pf(t.Context()); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if strings.Join(warned, ",") != "a,b,b" {
		t.Errorf("warned %q, want a,b,b (once per change)", warned)
	}
	if len(errs) != 1 || errs[0] != "x: broken; fix: fix it" {
		t.Errorf("errors %q", errs)
	}
}
