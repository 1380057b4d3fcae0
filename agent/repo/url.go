package repo

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/gpufleet/clearml-agent-go/internal/secret"
)

// scpLike matches the scp-like ssh syntax "user@host:path" (no scheme).
var scpLike = regexp.MustCompile(`^(?:([^@/]+)@)?([^:/]+):(.+)$`)

// endpoint is a parsed repository address.
type endpoint struct {
	scheme string // "https", "http", "ssh", "file", "git"
	user   string
	pass   string
	host   string // hostname, no port
	port   string
	path   string // with leading "/" for URL forms, as written for scp forms
	scp    bool   // written as user@host:path
}

// parseEndpoint understands URLs (scheme://...) and the scp-like ssh form.
// A plain local path is returned as scheme "file".
func parseEndpoint(raw string) (endpoint, bool) {
	raw = strings.TrimSpace(raw)
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return endpoint{}, false
		}
		e := endpoint{scheme: strings.ToLower(u.Scheme), host: u.Hostname(), port: u.Port(), path: u.Path}
		if u.User != nil {
			e.user = u.User.Username()
			e.pass, _ = u.User.Password()
		}
		return e, true
	}
	if m := scpLike.FindStringSubmatch(raw); m != nil && !strings.HasPrefix(raw, "/") {
		return endpoint{scheme: "ssh", user: m[1], host: m[2], path: m[3], scp: true}, true
	}
	return endpoint{scheme: "file", path: raw}, true
}

// String renders the endpoint, password included.
func (e endpoint) String() string {
	if e.scp {
		if e.user != "" {
			return e.user + "@" + e.host + ":" + e.path
		}
		return e.host + ":" + e.path
	}
	if e.scheme == "file" && e.host == "" && !strings.HasPrefix(e.path, "/") {
		return e.path
	}
	u := url.URL{Scheme: e.scheme, Host: e.host, Path: e.path}
	if e.port != "" {
		u.Host = e.host + ":" + e.port
	}
	switch {
	case e.user != "" && e.pass != "":
		u.User = url.UserPassword(e.user, e.pass)
	case e.user != "":
		u.User = url.User(e.user)
	}
	return u.String()
}

func (e endpoint) isHTTP() bool { return e.scheme == "http" || e.scheme == "https" }
func (e endpoint) isSSH() bool {
	return e.scheme == "ssh" || e.scheme == "git+ssh" || e.scheme == "ssh+git"
}

// StripPassword returns raw without its credentials, for logs, errors and
// the task's report (secret.StripURL): an http(s) URL loses its whole user
// information (https://TOKEN@host/x is https://host/x), an ssh URL keeps its
// login name but loses a password.
func StripPassword(raw string) string {
	return secret.StripURL(raw)
}

// hostMatches reports whether the endpoint is in the scope of credentials
// limited to host (agent.git_host). An empty scope matches every host. The
// scope may carry a scheme, a port or a path; without a port it matches any
// port of that host.
func hostMatches(e endpoint, scope string) bool {
	scope = strings.TrimSpace(scope)
	if scope == "" {
		return true
	}
	if i := strings.Index(scope, "://"); i >= 0 {
		scope = scope[i+3:]
	}
	if i := strings.IndexAny(scope, "/"); i >= 0 {
		scope = scope[:i]
	}
	if i := strings.LastIndex(scope, "@"); i >= 0 {
		scope = scope[i+1:]
	}
	h, p := scope, ""
	if i := strings.LastIndex(scope, ":"); i >= 0 && !strings.Contains(scope[i+1:], "]") {
		h, p = scope[:i], scope[i+1:]
	}
	h = strings.Trim(h, "[]")
	if !strings.EqualFold(h, e.host) {
		return false
	}
	return p == "" || p == e.port
}

// rewrite applies force_git_ssh_protocol / translate_ssh to the endpoint and
// returns the address to clone plus the credentials to send over http(s), or
// empty credentials when none apply to that host.
func rewrite(spec Spec) (endpoint, Creds) {
	e, _ := parseEndpoint(spec.URL)
	creds := spec.Creds
	if creds.User == "" && creds.Pass == "" && e.isHTTP() && e.user != "" {
		// Credentials written into the URL itself apply to that URL only.
		creds = Creds{User: e.user, Pass: e.pass, Host: e.host}
	}
	if e.isHTTP() {
		e.user, e.pass = "", ""
	}
	haveCreds := creds.User != "" || creds.Pass != ""
	switch {
	case spec.ForceSSH && e.isHTTP() && hostMatches(e, spec.Creds.Host):
		user := spec.SSHUser
		if user == "" {
			user = "git"
		}
		port := ""
		if spec.SSHPort > 0 {
			port = strconv.Itoa(spec.SSHPort)
		}
		e = endpoint{scheme: "ssh", user: user, host: e.host, port: port, path: e.path}
	case spec.TranslateSSH && haveCreds && e.isSSH() && hostMatches(e, creds.Host):
		p := e.path
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		e = endpoint{scheme: "https", host: e.host, path: p}
	}
	if !e.isHTTP() || !haveCreds || !hostMatches(e, creds.Host) {
		creds = Creds{}
	}
	return e, creds
}

// repoName is the last path element without ".git", used for cache names.
func repoName(e endpoint) string {
	p := strings.TrimRight(e.path, "/")
	if i := strings.LastIndexAny(p, "/:"); i >= 0 {
		p = p[i+1:]
	}
	p = strings.TrimSuffix(p, ".git")
	if p == "" || p == "." || p == ".." {
		return "repo"
	}
	return p
}
