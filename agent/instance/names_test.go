package instance

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEscapeID(t *testing.T) {
	for id, want := range map[string]string{
		"host:gpu0,1":     "host:gpu0,1",
		"../etc/passwd":   "%2E.%2Fetc%2Fpasswd",
		".lock":           "%2Elock",
		"a b%c":           "a%20b%25c",
		"aws:i-0abc@prod": "aws:i-0abc@prod",
	} {
		got := escapeID(id)
		if got != want {
			t.Errorf("escapeID(%q) = %q, want %q", id, got, want)
		}
		if back := unescapeID(got); back != id {
			t.Errorf("unescapeID(%q) = %q, want %q", got, back, id)
		}
	}
}

func TestStripDetached(t *testing.T) {
	got := StripDetached([]string{"-d", "--config-file", "c.conf", "daemon", "--detached", "--queue", "q", "-d", "--detached=true", "--gpus", "0"})
	want := []string{"-d", "--config-file", "c.conf", "daemon", "--queue", "q", "--gpus", "0"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("StripDetached (-want +got):\n%s", d)
	}
}
