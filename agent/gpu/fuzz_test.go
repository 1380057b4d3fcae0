package gpu

import (
	"strings"
	"testing"
)

// FuzzParseAssignment: any --gpus value and --gpus-per-agent give agents or
// a one-line error naming the value; no panic.
func FuzzParseAssignment(f *testing.F) {
	for _, s := range []string{"0", "0,1", "0,1+2,3", "0-3", "0:1,0:2", "all", "GPU-02cca6e6-1111-2222-3333-444455556666", "MIG-x", "3-1", "+", ",,", "0-999999999999"} {
		f.Add(s, 1)
	}
	f.Add("0,1,2,3", 2)
	f.Add("0,1,2", -1)
	f.Fuzz(func(t *testing.T, spec string, perAgent int) {
		as, _, err := ParseAssignment(spec, perAgent%64, nil)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if len(as) == 0 {
			t.Fatalf("no agents and no error for %q", spec)
		}
	})
}

// FuzzParseBusyPolicy: any agent.gpu_busy_policy gives a policy that
// parses back from its String, or a one-line error naming the key.
func FuzzParseBusyPolicy(f *testing.F) {
	for _, s := range []string{"", "wait", "ignore", "2048", "2048MiB", "2048 MiB", "-1", "1e9", "WAIT", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseBusyPolicy(s)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") || !strings.Contains(err.Error(), "agent.gpu_busy_policy") {
				t.Fatalf("error is not one line naming the key: %q", err)
			}
			return
		}
		again, err := ParseBusyPolicy(p.String())
		if err != nil || again != p {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, p, p.String(), again, err)
		}
	})
}
