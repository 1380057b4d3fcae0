package systemdtest

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gpufleet/clearml-agent-go/provision/systemd"
)

func TestFake(t *testing.T) {
	ctx := t.Context()
	f := &Fake{Fail: map[string]string{"clearml-agent@1.service": "boom"}, Ready: "polling"}
	var m systemd.Manager = f
	units := []string{"clearml-agent@0.service", "clearml-agent@1.service"}
	if err := m.Enable(ctx, units); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, units[0]); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, units[1]); err == nil || !strings.Contains(err.Error(), units[1]) {
		t.Fatalf("Start(failing) = %v, want error naming %s", err, units[1])
	}
	states, err := m.WaitActive(ctx, units, time.Second)
	if err == nil {
		t.Fatal("WaitActive = nil error, want one for the failed unit")
	}
	if states[0].StatusText != "polling" || !states[0].Active() || !states[1].Failed() || states[1].Journal != "boom" {
		t.Errorf("states = %+v", states)
	}
	list, err := m.States(ctx, systemd.AgentPattern)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff(units, names); diff != "" {
		t.Errorf("States names (-want +got):\n%s", diff)
	}
	want := []string{"enable clearml-agent@0.service", "enable clearml-agent@1.service",
		"start clearml-agent@0.service", "start clearml-agent@1.service"}
	if diff := cmp.Diff(want, f.Calls); diff != "" {
		t.Errorf("Calls (-want +got):\n%s", diff)
	}
}
