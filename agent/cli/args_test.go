package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizeArgs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"daemon --queue high low --foreground", "daemon --queue=high --queue=low --foreground"},
		{"daemon --queue a", "daemon --queue=a"},
		{"doctor --queue a b --docker --cpu-only", "doctor --queue=a --queue=b --docker= --cpu-only"},
		{"doctor --docker nvidia/cuda:12 --services-mode 2", "doctor --docker=nvidia/cuda:12 --services-mode=2"},
		{"daemon --services-mode --queue s", "daemon --services-mode=-1 --queue=s"},
		{"daemon --services-mode 2 --queue s", "daemon --services-mode=2 --queue=s"},
		{"daemon --services-mode", "daemon --services-mode=-1"},
		{"daemon --stop", "daemon --stop="},
		{"daemon --stop host:gpu0 host:gpu1", "daemon --stop=host:gpu0 --stop=host:gpu1"},
		{"-d daemon -d --queue q", "-d daemon --detached --queue=q"},
		{"daemon --child-report-tags a b --cpu-only", "daemon --child-report-tags=a --child-report-tags=b --cpu-only"},
		{"execute --id T", "execute --id T"},
		{"daemon -- --queue x", "daemon -- --queue x"},
		{"daemon --docker --queue q", "daemon --docker= --queue=q"},
		{"daemon --queue q --docker nvidia/cuda:12", "daemon --queue=q --docker=nvidia/cuda:12"},
		{"execute --id T --docker", "execute --id T --docker="},
		{"execute --docker img:1 --id T", "execute --docker=img:1 --id T"},
	} {
		got := strings.Join(normalizeArgs(strings.Fields(tc.in)), " ")
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("normalizeArgs(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestParseServices(t *testing.T) {
	for _, tc := range []struct {
		in      string
		max     int
		on, bad bool
	}{
		{"", 0, false, false}, {"-1", 0, true, false}, {"3", 3, true, false}, {"0", 0, false, true}, {"x", 0, false, true},
	} {
		max, on, err := parseServices(tc.in)
		if max != tc.max || on != tc.on || (err != nil) != tc.bad {
			t.Errorf("parseServices(%q) = %d, %v, %v; want %d, %v, error %v", tc.in, max, on, err, tc.max, tc.on, tc.bad)
		}
		if err != nil && !strings.Contains(err.Error(), tc.in) {
			t.Errorf("error %q does not name the input", err)
		}
	}
}
