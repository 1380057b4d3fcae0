package logship

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/process"
)

// TestProcessToShipper wires a real process into a Shipper the way agent/task
// does: every output line becomes a DEBUG line, flushed before the final status.
func TestProcessToShipper(t *testing.T) {
	t.Parallel()
	f := newFake(func(call int) error {
		if call%3 == 1 {
			return errDown
		}
		return nil
	})
	s := New(testConfig(), f)
	p, err := process.Start(t.Context(), process.Spec{
		Path: "/bin/sh",
		Args: []string{"-c", `i=0; while [ $i -lt 2000 ]; do echo "line $i"; printf '\r10%%\r100%%\n' >&2; i=$((i+1)); done; exit 3`},
		Sink: func(l process.Line) { s.Write(LevelDebug, l.Text) },
	})
	if err != nil {
		t.Fatal(err)
	}
	res := p.Wait()
	if err := s.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if res.Code != 3 {
		t.Errorf("result %v, want exit code 3", res)
	}
	var want []string
	for i := range 2000 {
		want = append(want, fmt.Sprintf("line %d", i), "100%")
	}
	if diff := cmp.Diff(want, f.lines(t)); diff != "" {
		t.Errorf("shipped lines (-want +got):\n%s", diff)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}
