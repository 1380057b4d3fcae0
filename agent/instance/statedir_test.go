package instance

import "testing"

func TestStateDir(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name string
		env  map[string]string
		euid int
		want string
	}{
		{"override", map[string]string{EnvStateDir: "/srv/agent", "STATE_DIRECTORY": "/var/lib/x"}, 0, "/srv/agent"},
		{"systemd", map[string]string{"STATE_DIRECTORY": "/var/lib/clearml-agent-gpu0:/var/lib/other"}, 1000, "/var/lib/clearml-agent-gpu0"},
		{"root", nil, 0, "/var/lib/clearml-agent"},
		{"xdg", map[string]string{"XDG_STATE_HOME": "/home/u/.st"}, 1000, "/home/u/.st/clearml-agent"},
		{"relative xdg ignored", map[string]string{"XDG_STATE_HOME": "st"}, 1000, "/home/u/.local/state/clearml-agent"},
		{"home", nil, 1000, "/home/u/.local/state/clearml-agent"},
	}
	for _, tt := range tests {
		if got := stateDirFrom(env(tt.env), tt.euid, "/home/u"); got != tt.want {
			t.Errorf("%s: state dir = %q, want %q", tt.name, got, tt.want)
		}
	}
}
