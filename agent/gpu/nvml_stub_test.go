//go:build !cgo

package gpu

import (
	"errors"
	"testing"
)

func TestNoCgoDiscover(t *testing.T) {
	t.Parallel()
	if inv, err := Discover(); inv != nil || !errors.Is(err, ErrNoNVML) {
		t.Errorf("Discover() = %v, %v; want nil, ErrNoNVML", inv, err)
	}
}

func TestNoCgoSampler(t *testing.T) {
	t.Parallel()
	s := NewSystemSampler([]string{"0"})
	defer s.Close()
	for i := 1; i <= maxFailures+1; i++ {
		_, err := s.Sample()
		if !errors.Is(err, ErrNoNVML) && i <= maxFailures {
			t.Errorf("Sample #%d error = %v, want ErrNoNVML", i, err)
		}
		if got := errors.Is(err, ErrSamplerDisabled); got != (i >= maxFailures) {
			t.Errorf("Sample #%d error = %v; disabled = %v, want %v", i, err, got, i >= maxFailures)
		}
	}
}
