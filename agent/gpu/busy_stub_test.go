//go:build !cgo

package gpu

import (
	"errors"
	"testing"
)

func TestNoCgoBusyChecker(t *testing.T) {
	t.Parallel()
	c := NewBusyChecker([]string{"0"}, BusyPolicy{}, nil)
	defer c.Close()
	if r, err := c.Check(); !errors.Is(err, ErrNoNVML) || r.IsBusy() {
		t.Errorf("Check() = %+v, %v; want ErrNoNVML and not busy", r, err)
	}
	c = NewBusyChecker([]string{"0"}, BusyPolicy{Mode: BusyIgnore}, nil)
	if r, err := c.Check(); err != nil || r.IsBusy() {
		t.Errorf("Check(ignore) = %+v, %v; want not busy without NVML", r, err)
	}
}
