package cli

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/internal/credfile"
)

type initFlags struct {
	nonInteractive  bool
	credentialsFile string
	apiHost         string
	webHost         string
	filesHost       string
	accessKey       string
	secretKey       string
	gitUser         string
	gitPass         string
	extraIndexURLs  []string
	outputURI       string
	noVerify        bool
}

// initEnv binds each non-interactive flag to its environment variable.
var initEnv = []struct {
	flag, env string
}{
	{"api-host", "CLEARML_API_HOST"},
	{"web-host", "CLEARML_WEB_HOST"},
	{"files-host", "CLEARML_FILES_HOST"},
	{"access-key", "CLEARML_API_ACCESS_KEY"},
	{"secret-key", "CLEARML_API_SECRET_KEY"},
	{"git-user", "CLEARML_AGENT_GIT_USER"},
	{"git-pass", "CLEARML_AGENT_GIT_PASS"},
	{"extra-index-url", "CLEARML_AGENT_EXTRA_INDEX_URL"},
	{"output-uri", "CLEARML_AGENT_DEFAULT_OUTPUT_URI"},
}

func registerInit(app *kingpin.Application, g *Globals) {
	f := &initFlags{}
	cmd := app.Command("init", "Create ~/clearml.conf (or --config-file) with a wizard; never overwrites an existing file.")
	cmd.Flag("non-interactive", "Do not prompt; take everything from the flags below (or their environment variables).").BoolVar(&f.nonInteractive)
	cmd.Flag("api-host", "API server URL (env CLEARML_API_HOST), e.g. https://api.clear.ml.").StringVar(&f.apiHost)
	cmd.Flag("web-host", "Web app URL (env CLEARML_WEB_HOST); derived from --api-host when empty.").StringVar(&f.webHost)
	cmd.Flag("files-host", "File server URL (env CLEARML_FILES_HOST); derived from --api-host when empty.").StringVar(&f.filesHost)
	cmd.Flag("access-key", "API access key (env CLEARML_API_ACCESS_KEY).").StringVar(&f.accessKey)
	cmd.Flag("secret-key", "API secret key (env CLEARML_API_SECRET_KEY; prefer the variable: a flag shows in ps and shell history).").StringVar(&f.secretKey)
	cmd.Flag("git-user", "Git user for cloning (env CLEARML_AGENT_GIT_USER); empty = SSH keys.").StringVar(&f.gitUser)
	cmd.Flag("credentials-file", "KEY=VALUE file with CLEARML_API_ACCESS_KEY, CLEARML_API_SECRET_KEY (and optionally CLEARML_AGENT_GIT_USER/PASS), mode 0600: keeps secrets out of ps and shell history.").
		PlaceHolder("FILE").StringVar(&f.credentialsFile)
	cmd.Flag("git-pass", "Git password or token (env CLEARML_AGENT_GIT_PASS; prefer the variable: a flag shows in ps and shell history).").StringVar(&f.gitPass)
	cmd.Flag("extra-index-url", "Extra pip index URL; repeatable (env CLEARML_AGENT_EXTRA_INDEX_URL, space-separated).").StringsVar(&f.extraIndexURLs)
	cmd.Flag("output-uri", "sdk.development.default_output_uri (env CLEARML_AGENT_DEFAULT_OUTPUT_URI).").StringVar(&f.outputURI)
	cmd.Flag("no-verify", "Do not log in to the server to check the credentials.").BoolVar(&f.noVerify)
	g.Handle(cmd, func(ctx context.Context) error { return runInit(ctx, g, f) })
}

func runInit(ctx context.Context, g *Globals, f *initFlags) error {
	target, others := g.initTarget()
	for _, p := range append([]string{target}, others...) {
		if st, err := os.Stat(p); err == nil && st.Size() > 0 {
			return &ExitError{Code: 1, Msg: fmt.Sprintf("Configuration file already exists: %s; it was not changed. Add the agent settings to it by hand "+
				"(see 'Adding ClearML Agent to a Configuration File' in the manual) or with agent-provision", p)}
		}
	}
	if f.nonInteractive || (f.accessKey != "" && f.secretKey != "") {
		return initNonInteractive(ctx, g, f, target)
	}
	w := &wizard{g: g, in: bufio.NewReader(g.Stdin), out: g.Stdout}
	return w.run(ctx, target)
}

// initTarget is where init writes and the other files whose existence stops it.
func (g *Globals) initTarget() (string, []string) {
	if g.ConfigFile != "" {
		return g.ConfigFile, nil
	}
	if p := g.Getenv("CLEARML_CONFIG_FILE"); p != "" {
		return p, nil
	}
	home := g.Home()
	return filepath.Join(home, "clearml.conf"), []string{filepath.Join(home, "trains.conf")}
}

func initNonInteractive(ctx context.Context, g *Globals, f *initFlags, target string) error {
	vals := map[string]*string{"api-host": &f.apiHost, "web-host": &f.webHost, "files-host": &f.filesHost, "access-key": &f.accessKey,
		"secret-key": &f.secretKey, "git-user": &f.gitUser, "git-pass": &f.gitPass, "output-uri": &f.outputURI}
	for _, b := range initEnv {
		if b.flag == "extra-index-url" {
			if len(f.extraIndexURLs) == 0 {
				f.extraIndexURLs = strings.Fields(g.Getenv(b.env))
			}
			continue
		}
		if p := vals[b.flag]; *p == "" {
			*p = g.Getenv(b.env)
		}
	}
	if f.credentialsFile != "" {
		creds, err := credfile.ReadCredentials(f.credentialsFile)
		if err != nil {
			return err
		}
		for key, p := range map[string]*string{credfile.EnvAccessKey: &f.accessKey, credfile.EnvSecretKey: &f.secretKey,
			credfile.EnvGitUser: &f.gitUser, credfile.EnvGitPass: &f.gitPass} {
			*p = cmp.Or(*p, creds[key])
		}
	}
	if f.apiHost == "" && f.webHost == "" {
		return fmt.Errorf("init --non-interactive: no server; pass --api-host https://api.example.com (or set CLEARML_API_HOST)")
	}
	if f.accessKey == "" || f.secretKey == "" {
		return fmt.Errorf("init --non-interactive: no credentials; pass --access-key and --secret-key (or set CLEARML_API_ACCESS_KEY/CLEARML_API_SECRET_KEY)")
	}
	hosts, err := config.DeriveHosts(f.webHost, f.apiHost, f.filesHost)
	if err != nil {
		return err
	}
	warnHTTP(g.Stderr, hosts)
	if !f.noVerify {
		vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, _, err := g.verifier(true).Verify(vctx, hosts.API, f.accessKey, f.secretKey); err != nil {
			return fmt.Errorf("%v (no configuration written; use --no-verify to skip the check)", err)
		}
	}
	return writeInit(g, target, hosts, f.accessKey, f.secretKey, f.gitUser, f.gitPass, f.extraIndexURLs, outputURI(f.outputURI, hosts))
}

func outputURI(choice string, h config.Hosts) string {
	switch strings.ToLower(choice) {
	case "", "n", "none":
		return ""
	case "s", "server":
		return h.Files
	}
	return choice
}

func writeInit(g *Globals, target string, h config.Hosts, key, secret, gitUser, gitPass string, extra []string, outURI string) error {
	data := config.Render(
		config.APIWriteSettings{APIServer: h.API, WebServer: h.Web, FilesServer: h.Files, AccessKey: key, SecretKey: secret},
		config.AgentWriteSettings{GitUser: gitUser, GitPass: gitPass, ExtraIndexURLs: extra, DefaultOutputURI: outURI},
	)
	if dir := filepath.Dir(target); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s: %v", dir, err)
		}
	}
	if err := config.WriteFileAtomic(target, data, 0o600, -1, -1); err != nil {
		return err
	}
	fmt.Fprintf(g.Stdout, "New configuration stored in %s\n", target)
	fmt.Fprintln(g.Stdout, "CLEARML-AGENT setup completed successfully.")
	return nil
}

type wizard struct {
	g   *Globals
	in  *bufio.Reader
	out io.Writer
	eof bool
}

func (w *wizard) readLine() string {
	line, err := w.in.ReadString('\n')
	if err != nil {
		w.eof = true
	}
	return strings.TrimRight(line, "\r\n")
}

func (w *wizard) ask(prompt, def string) string {
	fmt.Fprintf(w.out, "%s [%s] ", prompt, def)
	s := strings.TrimSpace(w.readLine())
	if s == "" {
		return def
	}
	return s
}

func (w *wizard) run(ctx context.Context, target string) error {
	fmt.Fprint(w.out, "CLEARML-AGENT setup process\n\n"+
		"Please create new clearml credentials through the settings page in your `clearml-server` web app, \n"+
		"or create a free account at https://app.clear.ml/settings/webapp-configuration\n\n"+
		"In the settings > workspace page, press \"Create new credentials\", then press \"Copy to clipboard\".\n\n"+
		"Paste copied configuration here:\n")
	pasted := w.readPasted()
	key, secret, web, api, files := parsePasted(pasted)
	if key == "" || secret == "" {
		if w.eof {
			return &ExitError{Code: 1, Msg: "init: input ended before credentials were given; no configuration written"}
		}
		fmt.Fprintln(w.out, "Could not parse credentials, please try entering them manually.")
		fmt.Fprint(w.out, "Enter user access key: ")
		key = strings.TrimSpace(w.readLine())
		fmt.Fprint(w.out, "Enter user secret: ")
		secret = strings.TrimSpace(w.readLine())
		if key == "" || secret == "" {
			return &ExitError{Code: 1, Msg: "init: access key and secret are required; no configuration written"}
		}
	}
	fmt.Fprintf(w.out, "Detected credentials key=%q secret=%q\n", strings.Repeat("*", len(key)), strings.Repeat("*", len(secret)))

	if web == "" && api == "" {
		api = w.g.Getenv("CLEARML_API_HOST")
	}
	def, err := config.DeriveHosts(web, api, files)
	if err != nil {
		def = config.Hosts{Web: "https://app.clear.ml", API: "https://api.clear.ml", Files: "https://files.clear.ml"}
	}
	var h config.Hosts
	for {
		webIn := w.ask("WEB Host configured to:", def.Web)
		d2, err := config.DeriveHosts(webIn, "", "")
		if err != nil {
			if w.eof {
				return &ExitError{Code: 1, Msg: "init: " + err.Error()}
			}
			fmt.Fprintln(w.out, err)
			continue
		}
		if webIn == def.Web {
			d2 = def
		}
		h.Web = d2.Web
		h.API = w.ask("API Host configured to:", d2.API)
		h.Files = w.ask("File Store Host configured to:", d2.Files)
		break
	}
	fmt.Fprintf(w.out, "\nCLEARML Hosts configuration:\nWeb App: %s\nAPI: %s\nFile Store: %s\n\n", h.Web, h.API, h.Files)
	warnHTTP(w.g.Stderr, h)

	var verr error
	for try := 1; try <= 2; try++ {
		fmt.Fprintln(w.out, "Verifying credentials ...")
		vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, _, verr = w.g.verifier(true).Verify(vctx, h.API, key, secret)
		cancel()
		if verr == nil {
			fmt.Fprintln(w.out, "Credentials verified!")
			break
		}
		fmt.Fprintf(w.out, "Error: could not verify credentials: %v\n", verr)
	}
	if verr != nil {
		return &ExitError{Code: 1, Msg: "Exiting setup without creating configuration file"}
	}

	choice := strings.ToLower(w.ask("\nDefault Output URI (used to automatically store models and artifacts): (N)one/ClearML (S)erver/(C)ustom", "None"))
	var outURI string
	switch {
	case strings.HasPrefix(choice, "s"):
		outURI = h.Files
	case strings.HasPrefix(choice, "c"):
		fmt.Fprint(w.out, "Custom Default Output URI: ")
		outURI = strings.TrimSpace(w.readLine())
	}
	if outURI != "" {
		fmt.Fprintf(w.out, "Default Output URI: %s\n", outURI)
	} else {
		fmt.Fprintln(w.out, "Default Output URI: not set")
	}

	gitUser := w.ask("Enter git username for repository cloning (leave blank for SSH key authentication):", "")
	var gitPass string
	if gitUser != "" {
		fmt.Fprintf(w.out, "Enter password for user '%s': ", gitUser)
		gitPass = strings.TrimSpace(w.readLine())
		fmt.Fprintf(w.out, "Git repository cloning will be using user=%s password=%s\n", gitUser, strings.Repeat("*", len(gitPass)))
	} else {
		fmt.Fprintln(w.out, "Git repository cloning will be using SSH credentials")
	}

	var extra []string
	for !w.eof {
		fmt.Fprint(w.out, "Enter additional artifact repository (extra-index-url) to use when installing python packages (leave blank if not required): ")
		u := strings.TrimSpace(w.readLine())
		if u == "" {
			break
		}
		extra = append(extra, u)
	}
	return writeInit(w.g, target, h, key, secret, gitUser, gitPass, extra, outURI)
}

// readPasted reads the pasted `api { ... }` block: up to the line that closes the
// outermost brace (or a lone "}" line), or end of input.
func (w *wizard) readPasted() string {
	var b strings.Builder
	depth, opened := 0, false
	for !w.eof {
		line := w.readLine()
		b.WriteString(line + "\n")
		inQuote := false
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case c == '\\' && inQuote:
				i++
			case c == '"':
				inQuote = !inQuote
			case c == '{' && !inQuote:
				depth++
				opened = true
			case c == '}' && !inQuote:
				depth--
			}
		}
		if (opened && depth <= 0) || (!opened && strings.TrimSpace(line) == "}") {
			break
		}
	}
	return b.String()
}

func parsePasted(text string) (key, secret, web, api, files string) {
	cfg, err := config.Parse("pasted configuration", []byte(text))
	if err != nil {
		return
	}
	get := func(p string) string { s, _ := cfg.String(p); return strings.TrimSpace(s) }
	api = get("api.api_server")
	if api == "" {
		api = get("api.host")
	}
	return get("api.credentials.access_key"), get("api.credentials.secret_key"), get("api.web_server"), api, get("api.files_server")
}

// warnHTTP warns when a non-loopback host uses plain http.
func warnHTTP(w io.Writer, h config.Hosts) {
	for _, s := range []string{h.Web, h.API, h.Files} {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "http" {
			continue
		}
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			continue
		}
		fmt.Fprintf(w, "Warning: %s uses http: credentials and data travel unencrypted; use https unless this network is trusted\n", s)
	}
}
