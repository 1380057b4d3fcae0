// Package secret is the one rule for what counts as a secret in what the
// agent prints: configuration keys, environment variable names and URL
// passwords. agent/config masks its secret keys with it, agent/docker the
// environment of a container and its arguments, agent/venv the package index
// URLs in the task log.
//
// It must not: know where the text goes, or hide known secret values (the
// callers that hold a value, such as agent/repo with its git password,
// replace it themselves).
package secret

import (
	"regexp"
	"strings"
)

// Name reports whether the value of a configuration key (its last dotted
// part decides) or of an environment variable must be hidden: names holding
// password, passwd, token, secret or credential, and names ending in _key or
// _pass (access_key, secret_key, git_pass, AWS_SECRET_ACCESS_KEY, ...).
// Case does not matter.
func Name(name string) bool {
	n := strings.ToLower(name[strings.LastIndexByte(name, '.')+1:])
	if strings.HasSuffix(n, "_key") || strings.HasSuffix(n, "_pass") {
		return true
	}
	for _, w := range []string{"password", "passwd", "token", "secret", "credential"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// urlPassword finds the password of scheme://user:password@host.
var urlPassword = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):([^@\s/]+)@`)

// MaskURLs replaces the password of every scheme://user:password@host in s
// with ****, as pip does in its own output.
func MaskURLs(s string) string {
	return urlPassword.ReplaceAllString(s, "$1:****@")
}
