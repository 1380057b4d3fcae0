package instance

import (
	"os"
	"path/filepath"
	"strings"
)

// EnvStateDir overrides the state directory.
const EnvStateDir = "CLEARML_AGENT_STATE_DIR"

// DefaultStateDir is where pid files, locks and detached logs live:
// $CLEARML_AGENT_STATE_DIR, else $STATE_DIRECTORY (set by systemd's
// StateDirectory=; the first entry), else /var/lib/clearml-agent for root,
// else $XDG_STATE_HOME/clearml-agent, else ~/.local/state/clearml-agent.
// It is never under /tmp, so tmp cleaners and PrivateTmp= cannot lose it.
func DefaultStateDir() string {
	home, _ := os.UserHomeDir()
	return StateDir(os.Getenv, home)
}

// StateDir is DefaultStateDir with the environment read through getenv and
// the given home directory (callers that keep their own environment).
func StateDir(getenv func(string) string, home string) string {
	return stateDirFrom(getenv, os.Geteuid(), home)
}

func stateDirFrom(getenv func(string) string, euid int, home string) string {
	if d := getenv(EnvStateDir); d != "" {
		return d
	}
	if d, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":"); d != "" {
		return d
	}
	if euid == 0 {
		return "/var/lib/clearml-agent"
	}
	if d := getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "clearml-agent")
	}
	if home == "" {
		home = "/"
	}
	return filepath.Join(home, ".local", "state", "clearml-agent")
}
