package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/gpufleet/clearml-agent-go/agent/config"
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

// HTTPVerifier calls GET <host>/auth.login with HTTP Basic key:secret and reads
// the versions from the returned token (decoded without verification, as the
// Python agent does).
type HTTPVerifier struct {
	InsecureSkipVerify bool
}

// Verify implements Verifier.
func (v HTTPVerifier) Verify(ctx context.Context, host, key, secret string) (string, string, error) {
	host = strings.TrimRight(host, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, host+"/auth.login", nil)
	if err != nil {
		return "", "", fmt.Errorf("api server %q: %v; use e.g. https://api.clear.ml", host, err)
	}
	req.SetBasicAuth(key, secret)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if v.InsecureSkipVerify {
		tr.TLSClientConfig.InsecureSkipVerify = true
	}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return "", "", fmt.Errorf("cannot reach the API server %s: no answer in time; check api.api_server and that the server is up", host)
		}
		return "", "", fmt.Errorf("cannot reach the API server %s: %v; check api.api_server and that the server is up", host, err)
	}
	defer resp.Body.Close()
	var body struct {
		Meta struct {
			ResultCode int    `json:"result_code"`
			ResultMsg  string `json:"result_msg"`
		} `json:"meta"`
		Data struct {
			Token string `json:"token"`
		} `json:"data"`
	}
	decErr := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&body)
	if resp.StatusCode != http.StatusOK {
		msg := body.Meta.ResultMsg
		if msg == "" {
			msg = resp.Status
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return "", "", fmt.Errorf("%s rejected the credentials (%s); create new ones in the web app's settings page", host, msg)
		}
		return "", "", fmt.Errorf("%s/auth.login: %s; check that api.api_server is the API server (port 8008), not the web app", host, msg)
	}
	if decErr != nil || body.Data.Token == "" {
		return "", "", fmt.Errorf("%s/auth.login returned no token; api_server is misconfigured (is it the API server, port 8008?)", host)
	}
	sv, av := tokenVersions(body.Data.Token)
	return sv, av, nil
}

func tokenVersions(token string) (serverVersion, apiVersion string) {
	serverVersion, apiVersion = "unknown", "unknown"
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return
	}
	var claims struct {
		ServerVersion string `json:"server_version"`
		APIVersion    string `json:"api_version"`
	}
	if json.Unmarshal(raw, &claims) != nil {
		return
	}
	if claims.ServerVersion != "" {
		serverVersion = claims.ServerVersion
	}
	if claims.APIVersion != "" {
		apiVersion = claims.APIVersion
	}
	return
}
