package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/config"
)

// newClient builds the API client from the merged configuration. onRetry,
// when set, hears about every retried call (the daemon turns it into STATUS).
func newClient(g *Globals, cfg *config.Config, onRetry func(string, int, error), log *slog.Logger) (*api.Client, error) {
	a := cfg.API()
	host, _ := os.Hostname()
	// CLEARML_AUTH_TOKEN is used as the session token at once (the daemon
	// hands its own to each task child); with no key and secret it also logs
	// in again when the token nears its expiry.
	session := g.Getenv("CLEARML_AUTH_TOKEN")
	var token string
	if a.AccessKey == "" || a.SecretKey == "" {
		token = session
	}
	return api.New(api.Config{
		Host: a.APIServer, AccessKey: a.AccessKey, SecretKey: a.SecretKey, Token: token, SessionToken: session,
		DefaultMethod: a.DefaultMethod, VerifyCertificate: a.VerifyCertificate, WorkerHeader: host,
		AgentVersion: Version, TokenExpirationThreshold: a.TokenExpirationThreshold, OnRetry: onRetry, Logger: log,
	})
}

// newLogger returns the agent's own logger: text on stderr, without
// timestamps under journald (it stamps lines itself).
func newLogger(g *Globals, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		lv = slog.LevelInfo
	}
	if g.Debug {
		lv = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: lv}
	if g.Getenv("JOURNAL_STREAM") != "" || g.Getenv("INVOCATION_ID") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(g.Stderr, opts))
}

// exitErr formats an error for the CLI.
func exitErr(code int, format string, args ...any) error {
	return &ExitError{Code: code, Msg: "clearml-agent: error: " + fmt.Sprintf(format, args...)}
}
