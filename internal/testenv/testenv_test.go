package testenv

import (
	"testing"
)

// recorder notes whether Need skipped or failed instead of doing it.
type recorder struct {
	testing.TB
	skipped, failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Skipf(string, ...any)  { r.skipped = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

func TestNeed(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			r := &recorder{TB: t}
			Need(r, "sh", "no-such-tool-for-testenv")
			if wantFail := ci == "true"; r.failed != wantFail || r.skipped == wantFail {
				t.Errorf("failed %v skipped %v with CI=%q; want a failure in CI, a skip elsewhere", r.failed, r.skipped, ci)
			}
			r = &recorder{TB: t}
			Need(r, "sh")
			if r.failed || r.skipped {
				t.Errorf("sh is there, but Need failed %v skipped %v", r.failed, r.skipped)
			}
		})
	}
}
