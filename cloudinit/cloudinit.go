// Package cloudinit renders what a fresh cloud machine runs at its first
// boot to become a ClearML agent host: #cloud-config user-data, or the same
// steps as a plain startup script for providers that take one. The machine
// installs the release tarball (sha256-checked) unless its image has the
// agent, gets the credentials (written with mode 0600 from the user-data,
// or waited for in a file or at a metadata URL), runs agent-provision, and
// reports the agents.
//
// The templates are text/template files of package templates; every value
// is quoted by a template function (YAMLQuote, ShellQuote), never pasted.
// Secrets go only into the 0600 credentials file, never on a command line.
//
// It must not: read flags, the environment or files of this machine (the
// caller, provision's cloud-init command, validated the agent flags and
// passes them in Config), or write anything.
package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/gpufleet/clearml-agent-go/templates"
)

// Format is the kind of output.
type Format string

const (
	// FormatCloudConfig is #cloud-config user-data.
	FormatCloudConfig Format = "cloud-config"
	// FormatShell is a #!/bin/sh startup script.
	FormatShell Format = "shell"
)

// CredsMode says where the machine gets its ClearML credentials.
type CredsMode string

const (
	// CredsInline writes them from the user-data (mode 0600).
	CredsInline CredsMode = "inline"
	// CredsFile waits at boot for a file that something else puts there.
	CredsFile CredsMode = "file"
	// CredsURL waits at boot for a metadata URL to serve them.
	CredsURL CredsMode = "url"
	// CredsPlaceholder provisions without them; `agent-provision
	// first-boot` is run later by hand.
	CredsPlaceholder CredsMode = "placeholder"
)

// Paths on the provisioned machine.
const (
	DefaultCredsPath      = "/etc/clearml-agent/credentials"
	DefaultInstallDir     = "/var/lib/clearml-agent-install"
	DefaultInstanceIDFile = "/var/lib/cloud/data/instance-id"
	DefaultPrefix         = "/usr/local"
	DefaultCredsTimeout   = 5 * time.Minute
)

// Packages are what the agents need on a fresh machine; DockerPackages are
// added for docker mode.
var (
	Packages       = []string{"python3", "python3-venv", "git", "ca-certificates", "curl"}
	DockerPackages = []string{"docker.io"}
)

// Credentials are the values of the credentials file (CredsInline).
type Credentials struct {
	AccessKey, SecretKey, GitUser, GitPass string
}

// Config is what to render.
type Config struct {
	Format Format // default FormatCloudConfig
	// Prefix is where agent-provision is (PREFIX/bin) and where the
	// installer puts the binaries; default /usr/local.
	Prefix string
	// ApplyArgs are the flags of `agent-provision apply` on the machine,
	// without secrets and without --hostname when WorkerIDPrefix is set.
	ApplyArgs []string
	// ConfigPath is --config when it is not the default ("" otherwise):
	// first-boot fills in that file.
	ConfigPath string
	// WorkerIDPrefix makes worker ids PREFIX:<instance-id>:<agent> (the
	// autoscaler's convention); the instance id is read at boot.
	WorkerIDPrefix string

	CredsFrom    CredsMode // default CredsInline
	CredsFile    string    // CredsFile: where the file appears
	CredsURL     string    // CredsURL
	CredsHeaders []string  // CredsURL: "Name: value" request headers
	CredsTimeout time.Duration
	Credentials  Credentials // CredsInline

	// BinaryURL and BinarySHA256 install a release tarball first.
	BinaryURL, BinarySHA256 string
	NoPackages              bool
	DockerPackages          bool
	// PrebuiltImage: the image has the agent and its units (made with
	// --root --first-boot-creds); only the credentials are delivered.
	PrebuiltImage bool

	// Agents name the agents for the final message; GPUsAtBoot says the
	// GPU agents are decided at boot (--gpus all).
	Agents     []string
	GPUsAtBoot bool
	NoStart    bool

	// Where things are on the machine; zero values are the defaults
	// (tests point them into a temporary directory).
	CredsPath, InstallDir, InstanceIDFile string
}

// ParseCredsFrom parses --creds-from: inline, file:PATH, url:URL or
// placeholder. It returns the mode and the PATH or URL.
func ParseCredsFrom(s string) (CredsMode, string, error) {
	const fix = "use inline, file:PATH, url:URL or placeholder"
	switch {
	case s == "" || s == string(CredsInline):
		return CredsInline, "", nil
	case s == string(CredsPlaceholder):
		return CredsPlaceholder, "", nil
	case strings.HasPrefix(s, "file:"):
		p := strings.TrimPrefix(s, "file:")
		if err := checkAbsPath(p); err != nil {
			return "", "", fmt.Errorf("--creds-from %q: %v; e.g. file:%s", s, err, DefaultCredsPath)
		}
		return CredsFile, p, nil
	case strings.HasPrefix(s, "url:"):
		u := strings.TrimPrefix(s, "url:")
		if err := checkHTTPURL(u); err != nil {
			return "", "", fmt.Errorf("--creds-from %q: %v; e.g. url:http://169.254.169.254/...", s, err)
		}
		return CredsURL, u, nil
	}
	return "", "", fmt.Errorf("--creds-from %q: unknown source; %s", s, fix)
}

func checkAbsPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case !path.IsAbs(p) || path.Clean(p) != p:
		return fmt.Errorf("%q is not a clean absolute path", p)
	case hasControl(p):
		return fmt.Errorf("%q contains control characters", p)
	}
	return nil
}

func checkHTTPURL(s string) error {
	if hasControl(s) || strings.ContainsAny(s, " \t") {
		return fmt.Errorf("%q contains spaces or control characters", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

var (
	reSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)
	reHeader = regexp.MustCompile(`^[!#$%&'*+.^_` + "`" + `|~0-9A-Za-z-]+:`)
)

// CheckWorkerIDPrefix checks --worker-id-prefix.
func CheckWorkerIDPrefix(p string) error {
	switch {
	case p == "":
		return errors.New("--worker-id-prefix is empty; give e.g. --worker-id-prefix gpu-pool")
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("--worker-id-prefix %q contains whitespace or control characters; give e.g. gpu-pool", p)
	case strings.HasPrefix(p, ":") || strings.HasSuffix(p, ":"):
		return fmt.Errorf("--worker-id-prefix %q starts or ends with ':'; the instance id is joined with one ':', give e.g. gpu-pool", p)
	case strings.ContainsAny(p, `"'\$`+"`"):
		return fmt.Errorf("--worker-id-prefix %q contains quotes, '\\', '$' or '`'; give e.g. gpu-pool", p)
	}
	return nil
}

// check validates c and fills in its defaults.
func (c *Config) check() error {
	if c.Format == "" {
		c.Format = FormatCloudConfig
	}
	if c.Format != FormatCloudConfig && c.Format != FormatShell {
		return fmt.Errorf("--format %q: use cloud-config or shell", c.Format)
	}
	if c.CredsFrom == "" {
		c.CredsFrom = CredsInline
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Prefix, DefaultPrefix)
	def(&c.CredsPath, DefaultCredsPath)
	def(&c.InstallDir, DefaultInstallDir)
	def(&c.InstanceIDFile, DefaultInstanceIDFile)
	if c.CredsTimeout == 0 {
		c.CredsTimeout = DefaultCredsTimeout
	}
	for _, p := range []struct{ flag, v string }{{"--prefix", c.Prefix}, {"credentials path", c.CredsPath}, {"install dir", c.InstallDir}, {"instance id file", c.InstanceIDFile}} {
		if err := checkAbsPath(p.v); err != nil {
			return fmt.Errorf("%s: %v", p.flag, err)
		}
	}
	if c.ConfigPath != "" {
		if err := checkAbsPath(c.ConfigPath); err != nil {
			return fmt.Errorf("--config: %v", err)
		}
	}
	if c.CredsTimeout < 0 {
		return fmt.Errorf("--creds-timeout %s: must be positive, e.g. 5m", c.CredsTimeout)
	}
	switch c.CredsFrom {
	case CredsInline:
		cr := c.Credentials
		if cr.AccessKey == "" || cr.SecretKey == "" {
			return errors.New("credentials missing: the user-data needs --access-key and --secret-key (or CLEARML_API_ACCESS_KEY/CLEARML_API_SECRET_KEY, or --credentials-file FILE); or let the machine get them at boot with --creds-from file:PATH|url:URL, or --creds-from placeholder to run `agent-provision first-boot` later")
		}
		for _, v := range []struct{ name, v string }{{"access key", cr.AccessKey}, {"secret key", cr.SecretKey}, {"git user", cr.GitUser}, {"git password", cr.GitPass}} {
			if hasControl(v.v) {
				return fmt.Errorf("credentials: the %s contains a line break or control character; the credentials file holds one KEY=VALUE line each", v.name)
			}
		}
	case CredsFile:
		if err := checkAbsPath(c.CredsFile); err != nil {
			return fmt.Errorf("--creds-from file:PATH: %v", err)
		}
	case CredsURL:
		if err := checkHTTPURL(c.CredsURL); err != nil {
			return fmt.Errorf("--creds-from url:URL: %v", err)
		}
	case CredsPlaceholder:
	default:
		return fmt.Errorf("--creds-from %q: use inline, file:PATH, url:URL or placeholder", c.CredsFrom)
	}
	if c.CredsFrom != CredsURL && len(c.CredsHeaders) > 0 {
		return fmt.Errorf("--creds-header %q: headers are sent only with --creds-from url:URL", c.CredsHeaders[0])
	}
	for _, h := range c.CredsHeaders {
		if !reHeader.MatchString(h) || hasControl(h) {
			return fmt.Errorf("--creds-header %q: want 'Name: value' on one line, e.g. 'Metadata-Flavor: Google'", h)
		}
	}
	if c.CredsFrom != CredsInline && (c.Credentials != Credentials{}) {
		return fmt.Errorf("credentials were given, but --creds-from %s gets them at boot; drop --access-key/--secret-key (and CLEARML_API_* / --credentials-file), or use --creds-from inline", c.CredsFrom)
	}

	c.BinarySHA256 = strings.ToLower(c.BinarySHA256)
	switch {
	case c.BinaryURL != "" && c.BinarySHA256 == "":
		return fmt.Errorf("--binary-url %s needs --binary-sha256 HEX (the first field of the tarball's .sha256 file): the installer refuses an unchecked tarball", c.BinaryURL)
	case c.BinaryURL == "" && c.BinarySHA256 != "":
		return errors.New("--binary-sha256 without --binary-url: give the release tarball's URL too")
	case c.BinarySHA256 != "" && !reSHA256.MatchString(c.BinarySHA256):
		return fmt.Errorf("--binary-sha256 %q is not a sha256: want 64 hex digits (the first field of the tarball's .sha256 file)", c.BinarySHA256)
	}
	if c.BinaryURL != "" {
		if err := checkBinaryURL(c.BinaryURL); err != nil {
			return fmt.Errorf("--binary-url %q: %v", c.BinaryURL, err)
		}
	}
	if c.WorkerIDPrefix != "" {
		if err := CheckWorkerIDPrefix(c.WorkerIDPrefix); err != nil {
			return err
		}
	}
	if c.PrebuiltImage {
		switch {
		case c.BinaryURL != "":
			return errors.New("--prebuilt-image with --binary-url: the image already has the agent; drop one of them")
		case c.DockerPackages:
			return errors.New("--prebuilt-image with --docker-packages: install docker.io when the image is built (packer's install_docker); drop --docker-packages")
		}
	}
	for _, a := range append(append([]string{}, c.ApplyArgs...), c.Agents...) {
		if hasControl(a) || strings.ContainsRune(a, 0) {
			return fmt.Errorf("agent-provision argument %q contains a line break or control character", a)
		}
	}
	return nil
}

func checkBinaryURL(s string) error {
	if hasControl(s) || strings.ContainsAny(s, " \t") {
		return errors.New("contains spaces or control characters")
	}
	if strings.HasPrefix(s, "/") {
		return nil // a tarball already on the machine
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return errors.New("no host")
		}
	case "file":
		if u.Path == "" {
			return errors.New("no path")
		}
	default:
		return errors.New("want an http://, https:// or file:// URL of the release tarball, or an absolute path on the machine")
	}
	return nil
}

// file is one file the machine gets written.
type file struct {
	Path, Perm, Content string
	Secret              bool
	Delim               string // shell here-document delimiter
}

// step is one command. Script, when set, is run with `sh -c Script sh
// Args...`; else Args is the command line.
type step struct {
	Comment string
	Script  string
	Args    []string
}

// Argv is the command line of the step.
func (s step) Argv() []string {
	if s.Script == "" {
		return s.Args
	}
	return append([]string{"sh", "-c", s.Script, "sh"}, s.Args...)
}

// data is what the templates see.
type data struct {
	Config
	Packages []string
	Files    []file
	Steps    []step
	Summary  string
	// FinalMessage is cloud-init's final_message; FinalBefore and
	// FinalAfter surround the uptime in the startup script's last line.
	FinalMessage, FinalBefore, FinalAfter string
	Inline                                bool
}

const uptimeMark = "\x00UPTIME\x00"

// Render returns the user-data (or the startup script) for c.
func Render(c Config) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	d := data{Config: c, Inline: c.CredsFrom == CredsInline}
	if !c.NoPackages && !c.PrebuiltImage {
		d.Packages = append(d.Packages, Packages...)
		if c.DockerPackages {
			d.Packages = append(d.Packages, DockerPackages...)
		}
	}
	bin := path.Join(c.Prefix, "bin/agent-provision")
	credsFile := c.CredsPath
	if d.Inline {
		cr := c.Credentials
		var b strings.Builder
		b.WriteString("# ClearML credentials for agent-provision (deleted once they are in clearml.conf)\n")
		for _, kv := range []struct{ k, v string }{{"CLEARML_API_ACCESS_KEY", cr.AccessKey}, {"CLEARML_API_SECRET_KEY", cr.SecretKey}, {"CLEARML_AGENT_GIT_USER", cr.GitUser}, {"CLEARML_AGENT_GIT_PASS", cr.GitPass}} {
			if kv.v != "" {
				fmt.Fprintf(&b, "%s=%s\n", kv.k, credValue(kv.v))
			}
		}
		d.Files = append(d.Files, file{Path: c.CredsPath, Perm: "0600", Content: b.String(), Secret: true})
	}
	if c.BinaryURL != "" {
		script := string(templates.InstallScript())
		if !strings.HasSuffix(script, "\n") {
			script += "\n"
		}
		inst := path.Join(c.InstallDir, "install.sh")
		d.Files = append(d.Files, file{Path: inst, Perm: "0755", Content: script})
		d.Steps = append(d.Steps, step{
			Comment: "install the release tarball after checking its sha256 (install.sh refuses a mismatch)",
			Args:    []string{"sh", inst, "--prefix", c.Prefix, "--sha256", c.BinarySHA256, c.BinaryURL},
		})
	}
	for i := range d.Files {
		d.Files[i].Delim = heredocDelim(d.Files[i].Content)
	}

	firstBoot := []string{bin, "first-boot"}
	if c.ConfigPath != "" {
		firstBoot = append(firstBoot, "--config", c.ConfigPath)
	}
	wait := []string{"--creds-timeout", c.CredsTimeout.String()}
	switch c.CredsFrom {
	case CredsInline:
		firstBoot = append(firstBoot, "--creds-file", credsFile)
	case CredsFile:
		firstBoot = append(append(firstBoot, "--creds-file", c.CredsFile), wait...)
	case CredsURL:
		firstBoot = append(firstBoot, "--creds-url", c.CredsURL)
		for _, h := range c.CredsHeaders {
			firstBoot = append(firstBoot, "--creds-header", h)
		}
		firstBoot = append(firstBoot, wait...)
	}
	rmCreds := step{Comment: "the credentials are in clearml.conf now", Args: []string{"rm", "-f", credsFile}}
	later := fmt.Sprintf("%s first-boot --creds-file FILE (KEY=VALUE lines: CLEARML_API_ACCESS_KEY, CLEARML_API_SECRET_KEY)", bin)

	if c.PrebuiltImage {
		switch c.CredsFrom {
		case CredsPlaceholder:
			d.Summary = "the image's agents wait for credentials; run " + later
		default:
			fb := step{Comment: "fill the credentials into the image's clearml.conf and start its agents", Args: firstBoot}
			if c.WorkerIDPrefix != "" {
				// An image is built before its instance id is known:
				// first boot names the agents.
				fb.Comment = "worker ids <prefix>:<instance-id>:<agent>; " + fb.Comment
				fb.Script = instanceIDScript(c)
				fb.Args = append([]string{c.WorkerIDPrefix}, firstBoot...)
			}
			d.Steps = append(d.Steps, fb)
			if d.Inline {
				d.Steps = append(d.Steps, rmCreds)
			}
			d.Summary = "delivers the ClearML credentials to the agents of a prebuilt image and starts them"
		}
	} else {
		apply := append([]string{bin, "apply"}, c.ApplyArgs...)
		switch c.CredsFrom {
		case CredsInline:
			apply = append(apply, "--credentials-file", credsFile)
			d.Summary = "installs and starts the ClearML agents"
		default:
			if !contains(apply, "--first-boot-creds") {
				apply = append(apply, "--first-boot-creds")
			}
			if !contains(apply, "--no-start") {
				apply = append(apply, "--no-start")
			}
			d.Summary = "installs the ClearML agents, then starts them once their credentials arrive"
			if c.CredsFrom == CredsPlaceholder {
				d.Summary = "installs the ClearML agents without credentials; run " + later
			}
		}
		ap := step{Comment: "write clearml.conf and one systemd unit per agent", Args: apply}
		if c.WorkerIDPrefix != "" {
			ap.Comment = "worker ids <prefix>:<instance-id>:<agent>; " + ap.Comment
			ap.Script = instanceIDScript(c)
			ap.Args = append([]string{c.WorkerIDPrefix}, apply...)
		}
		d.Steps = append(d.Steps, ap)
		switch c.CredsFrom {
		case CredsInline:
			d.Steps = append(d.Steps, rmCreds)
		case CredsFile, CredsURL:
			d.Steps = append(d.Steps, step{Comment: "wait (bounded) for the credentials, fill them in and start the agents", Args: firstBoot})
		}
	}
	d.Steps = append(d.Steps, step{Comment: "show the agents", Args: []string{bin, "status"}})

	d.FinalMessage = finalMessage(c, later)
	d.FinalBefore, d.FinalAfter, _ = strings.Cut(d.FinalMessage, uptimeMark)
	d.FinalMessage = strings.Replace(d.FinalMessage, uptimeMark, "$UPTIME", 1)

	name := "cloud-config.tmpl"
	if c.Format == FormatShell {
		name = "startup.sh.tmpl"
	}
	t, err := template.New(name).Funcs(funcs).ParseFS(templates.FS, name)
	if err != nil {
		return nil, fmt.Errorf("template %s: %v", name, err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, d); err != nil {
		return nil, fmt.Errorf("render %s: %v", name, err)
	}
	return out.Bytes(), nil
}

// instanceIDScript: the apply step of --worker-id-prefix. $1 is the
// prefix, the rest the command; the instance id is read at boot.
func instanceIDScript(c Config) string {
	f, _ := ShellQuote(c.InstanceIDFile)
	read := "iid=$(cloud-init query v1.instance_id 2>/dev/null) || iid=; " +
		`[ -n "$iid" ] || iid=$(cat ` + f + ` 2>/dev/null) || iid=; `
	if c.Format == FormatShell {
		read = `iid=$(cat ` + f + ` 2>/dev/null) || iid=; [ -n "$iid" ] || iid=$(hostname); `
	}
	return read + `iid=$(printf %s "$iid" | tr -d '[:space:]'); ` +
		`[ -n "$iid" ] || { echo "agent-provision: no instance id found at boot, so worker ids $1:<instance-id>:<agent> cannot be made" >&2; exit 1; }; ` +
		`p=$1; shift; exec "$@" --hostname "$p:$iid"`
}

func finalMessage(c Config, later string) string {
	names := strings.Join(c.Agents, " ")
	if c.GPUsAtBoot {
		names = strings.TrimSpace("(one per GPU found at boot) " + names)
	}
	agents := "clearml agents " + names
	if names == "" || c.PrebuiltImage {
		agents = "clearml agents"
		if c.PrebuiltImage {
			agents = "the image's clearml agents"
		}
	}
	switch {
	case c.CredsFrom == CredsPlaceholder:
		return agents + " installed after " + uptimeMark + " s without credentials; to start them run " + later
	case c.NoStart:
		return agents + " provisioned (not started: --no-start) after " + uptimeMark + " s; agent-provision status shows their state"
	}
	return agents + " provisioned after " + uptimeMark + " s; agent-provision status shows their state"
}

// heredocDelim picks a here-document delimiter that is no line of content.
func heredocDelim(content string) string {
	lines := map[string]bool{}
	for _, l := range strings.Split(content, "\n") {
		lines[l] = true
	}
	d := "CLEARML_AGENT_EOF"
	for i := 1; lines[d]; i++ {
		d = fmt.Sprintf("CLEARML_AGENT_EOF_%d", i)
	}
	return d
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

var funcs = template.FuncMap{
	"yq":      YAMLQuote,
	"sq":      ShellQuote,
	"literal": YAMLBlock,
	"comment": comment,
	"dir":     path.Dir,
	// yamlArgv renders argv as a YAML flow sequence of quoted scalars.
	"yamlArgv": func(argv []string) (string, error) {
		q := make([]string, len(argv))
		for i, a := range argv {
			var err error
			if q[i], err = YAMLQuote(a); err != nil {
				return "", err
			}
		}
		return "[" + strings.Join(q, ", ") + "]", nil
	},
	// shellArgv renders argv as one shell command line.
	"shellArgv": func(argv []string) (string, error) {
		q := make([]string, len(argv))
		for i, a := range argv {
			var err error
			if q[i], err = ShellQuote(a); err != nil {
				return "", err
			}
		}
		return strings.Join(q, " "), nil
	},
	"join": strings.Join,
}
