// Package secret is the one rule for what counts as a secret in what the
// agent prints: configuration keys, environment variable names and URL
// credentials. agent/config masks its secret keys with it, agent/docker the
// environment of a container and its arguments, agent/venv the package index
// URLs and pip's output in the task log, agent/repo the repository URL in
// logs and errors, provision the plans it prints.
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

// urlUserinfo finds the user information of scheme://userinfo@host.
var urlUserinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*)://([^/\s@?#]+)@`)

// sshScheme reports whether the user name of a URL of that scheme is a login
// name (ssh://git@host) rather than a credential.
func sshScheme(scheme string) bool {
	return strings.Contains(strings.ToLower(scheme), "ssh")
}

// MaskURLs hides the credentials of every scheme://userinfo@host in s: the
// whole user information of http(s) and any other non-ssh URL becomes ****
// (a user name alone is often a token: https://TOKEN@host), and an ssh URL
// keeps its login name but not its password (ssh://git:****@host).
func MaskURLs(s string) string {
	return urlUserinfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := urlUserinfo.FindStringSubmatch(m)
		scheme, info := sub[1], sub[2]
		if sshScheme(scheme) {
			user, _, ok := strings.Cut(info, ":")
			if !ok {
				return m
			}
			return scheme + "://" + user + ":****@"
		}
		return scheme + "://****@"
	})
}

// scpPassword finds the password of the scp-like user:password@host:path.
var scpPassword = regexp.MustCompile(`^([^@/:\s]+):[^@/\s]+@`)

// StripURL returns the single URL raw without its credentials, for logs,
// errors and what the agent reports: http(s) and other non-ssh URLs lose
// their whole user information (https://TOKEN@host/x -> https://host/x), ssh
// URLs and the scp-like user@host:path form keep the login name but lose a
// password. The rest of raw is left as written.
func StripURL(raw string) string {
	if !strings.Contains(raw, "://") {
		return scpPassword.ReplaceAllString(raw, "$1@")
	}
	loc := urlUserinfo.FindStringSubmatchIndex(raw)
	if loc == nil || strings.Contains(raw[:loc[0]], "/") {
		return raw
	}
	scheme, info := raw[loc[2]:loc[3]], raw[loc[4]:loc[5]]
	if sshScheme(scheme) {
		user, _, _ := strings.Cut(info, ":")
		return raw[:loc[4]] + user + "@" + raw[loc[1]:]
	}
	return raw[:loc[4]] + raw[loc[1]:]
}
