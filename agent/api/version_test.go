package api

import "testing"

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"2.14", "2.5", 1},
		{"2.5", "2.14", -1},
		{"v2.13", "2.13", 0},
		{"2", "2.0", 0},
		{"3.0", "2.31", 1},
		{"2.x", "2.0", -1}, // unparsable sorts below
		{"", "", 0},
	} {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	for _, bad := range []string{"", "x", "2.x", "2.5.1", "-1", "2.-1"} {
		if _, ok := ParseVersion(bad); ok {
			t.Errorf("ParseVersion(%q) ok, want not a version", bad)
		}
	}
}
