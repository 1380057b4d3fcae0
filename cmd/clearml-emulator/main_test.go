package main

import (
	"strings"
	"testing"
)

func TestRunRefusesBadListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ listen, access, secret, want string }{
		{"0.0.0.0:8008", "", "", "not a loopback address; use 127.0.0.1 or add --allow-remote"},
		{"10.1.2.3:8008", "", "", "not a loopback address"},
		{"8008", "", "", "use e.g. --listen 127.0.0.1:8008"},
		{"127.0.0.1:0", "key", "", "must be given together"},
	} {
		err := run(tc.listen, tc.access, tc.secret, "", nil, false, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q, %q, %q) = %v, want error containing %q", tc.listen, tc.access, tc.secret, err, tc.want)
		}
	}
}
