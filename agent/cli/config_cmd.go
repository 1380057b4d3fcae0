package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// Verifier checks a key pair against a ClearML API server (auth.login).
type Verifier interface {
	Verify(ctx context.Context, host, key, secret string) (serverVersion, apiVersion string, err error)
}

func registerConfig(app *kingpin.Application, g *Globals) {
	cmd := app.Command("config", "Print the merged configuration (secrets masked).")
	asJSON := cmd.Flag("json", "Print JSON instead of key = value lines.").Bool()
	showSecrets := cmd.Flag("show-secrets", "Do not mask secrets (with --json).").Bool()
	origin := cmd.Flag("origin", "Append where each value comes from (default, file:line, env var).").Bool()
	verify := cmd.Flag("verify", "Log in to the API server with the configured credentials (5 s budget).").Bool()
	g.Handle(cmd, func(ctx context.Context) error {
		cfg, err := g.LoadConfig()
		if err != nil {
			return err
		}
		if *verify {
			return verifyConfig(ctx, g, cfg)
		}
		if *asJSON {
			b, err := config.ToJSON(cfg, *showSecrets)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.Stdout, "%s\n", b)
			return nil
		}
		loc := cfg.File()
		if loc == "" {
			loc = "none, defaults and environment only"
		}
		fmt.Fprintf(g.Stdout, "Current configuration (clearml_agent v%s, location: %s):\n", Version, loc)
		for _, k := range cfg.Keys() {
			line := k + " = " + cfg.Display(k, false)
			if *origin {
				line += "  # " + cfg.Origin(k)
			}
			fmt.Fprintln(g.Stdout, line)
		}
		return nil
	})
}

func verifyConfig(ctx context.Context, g *Globals, cfg *config.Config) error {
	api := cfg.API()
	if api.APIServer == "" {
		return &ExitError{Code: 1, Msg: "api.api_server is not set; run 'clearml-agent init' or set CLEARML_API_HOST"}
	}
	if api.AccessKey == "" || api.SecretKey == "" {
		return &ExitError{Code: 1, Msg: fmt.Sprintf("no credentials for %s: set api.credentials.access_key/secret_key or CLEARML_API_ACCESS_KEY/CLEARML_API_SECRET_KEY", api.APIServer)}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sv, av, err := g.verifier(api.VerifyCertificate).Verify(ctx, api.APIServer, api.AccessKey, api.SecretKey)
	if err != nil {
		return &ExitError{Code: 1, Msg: err.Error()}
	}
	fmt.Fprintf(g.Stdout, "Credentials verified for %s (server %s, API %s)\n", api.APIServer, sv, av)
	return nil
}

func (g *Globals) verifier(verifyCert bool) Verifier {
	if g.Verifier != nil {
		return g.Verifier
	}
	return HTTPVerifier{InsecureSkipVerify: !verifyCert}
}

// HTTPVerifier logs in at the API server with the key pair (the agent's own
// API client: auth.login, the token's claims read with the JWT library) and
// reports the server's versions. It tries once: a wizard or `config --verify`
// should answer at once, not retry for minutes.
type HTTPVerifier struct {
	InsecureSkipVerify bool
}

// Verify implements Verifier.
func (v HTTPVerifier) Verify(ctx context.Context, host, key, secret string) (string, string, error) {
	c, err := api.New(api.Config{Host: host, AccessKey: key, SecretKey: secret,
		VerifyCertificate: !v.InsecureSkipVerify, MaxRetries: 1, AgentVersion: Version})
	if err != nil {
		return "", "", err
	}
	info, err := c.Login(ctx)
	var le *api.LoginError
	var te *api.TransportError
	switch {
	case errors.As(err, &le) && (le.HTTPStatus == 401 || le.HTTPStatus == 403 || le.ResultCode == 401):
		return "", "", fmt.Errorf("the API server %s rejected the credentials (%s); check the access key and secret key",
			host, oneline.Squash(le.ResultMsg, 200))
	case errors.As(err, &te):
		return "", "", fmt.Errorf("cannot reach the API server %s: %s; check api.api_server and that the server is up",
			host, oneline.Of(te.Err))
	case err != nil:
		return "", "", err
	}
	return cmp.Or(info.ServerVersion, "unknown"), cmp.Or(info.APIVersion, "unknown"), nil
}
