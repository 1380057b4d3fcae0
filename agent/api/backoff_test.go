package api

import (
	"testing"
	"time"
)

// The retry delays double from base up to max, each drawn from [d/2, d].
func TestNewBackOffDelays(t *testing.T) {
	t.Parallel()
	const base, max = 500 * time.Millisecond, 30 * time.Second
	for range 50 {
		b := NewBackOff(base, max)
		d := base
		for n := 1; n <= 12; n++ {
			got := b.NextBackOff()
			if got < d/2 || got > d {
				t.Fatalf("delay %d = %s, want within [%s, %s]", n, got, d/2, d)
			}
			d = min(2*d, max)
		}
	}
}

func TestRetryAfterHintLengthensDelay(t *testing.T) {
	t.Parallel()
	b := &retryAfter{BackOff: NewBackOff(10*time.Millisecond, time.Second), max: time.Second, hint: 5 * time.Second}
	if got := b.NextBackOff(); got != time.Second {
		t.Errorf("delay with a 5 s Retry-After = %s, want the 1 s cap", got)
	}
	if got := b.NextBackOff(); got > 20*time.Millisecond {
		t.Errorf("next delay = %s, want the hint used once", got)
	}
}
