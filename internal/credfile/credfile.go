// Package credfile reads the small KEY=VALUE files that hold the agent's
// credentials (agent-provision --credentials-file and first-boot's --creds-file,
// clearml-agent init --credentials-file), so that secrets need not be passed
// as command-line flags, which every user sees in ps and shell history.
//
// It must not: write files, or read the process environment.
package credfile

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"
)

// The keys of a credentials file.
const (
	EnvAccessKey = "CLEARML_API_ACCESS_KEY"
	EnvSecretKey = "CLEARML_API_SECRET_KEY"
	EnvGitUser   = "CLEARML_AGENT_GIT_USER"
	EnvGitPass   = "CLEARML_AGENT_GIT_PASS"
)

// ReadEnv parses a KEY=VALUE file (a unitgen environment file; values bare or
// double-quoted with \ escapes).
func ReadEnv(file string) (map[string]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %v", file, err)
	}
	env, err := ParseEnv(data)
	if err != nil {
		return nil, fmt.Errorf("%s:%v", file, err)
	}
	return env, nil
}

// ParseEnv parses KEY=VALUE lines: blank lines and # or ; comments are
// skipped, values are bare or "double-quoted" with \ escapes. An error
// names the line ("3: want KEY=VALUE, got ...").
func ParseEnv(data []byte) (map[string]string, error) {
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			if len(line) > 40 {
				line = line[:40] + "..."
			}
			return nil, fmt.Errorf("%d: want KEY=VALUE, got %q", n, line)
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			var b strings.Builder
			for i := 1; i < len(v)-1; i++ {
				if v[i] == '\\' && i+1 < len(v)-1 {
					i++
				}
				b.WriteByte(v[i])
			}
			v = b.String()
		}
		env[strings.TrimSpace(k)] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("0: %v", err)
	}
	return env, nil
}

// ReadCredentials reads a credentials file: KEY=VALUE lines (the format
// of first-boot's --creds-file: # comments, optional "double quotes") with
// CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY, and optionally
// CLEARML_AGENT_GIT_USER and CLEARML_AGENT_GIT_PASS. It refuses a file that
// group or others may access (the fix is chmod 600), one that lacks either
// API key, and keys it does not know (a typo would go unnoticed).
func ReadCredentials(file string) (map[string]string, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, fmt.Errorf("credentials file: %v", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("credentials file %s is not a regular file", file)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("credentials file %s is accessible by group or others (mode %04o); run: chmod 600 %s", file, perm, file)
	}
	env, err := ReadEnv(file)
	if err != nil {
		return nil, fmt.Errorf("credentials file %v", err)
	}
	known := map[string]bool{EnvAccessKey: true, EnvSecretKey: true, EnvGitUser: true, EnvGitPass: true}
	var unknown, missing []string
	for k := range env {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	for _, k := range []string{EnvAccessKey, EnvSecretKey} {
		if env[k] == "" {
			missing = append(missing, k)
		}
	}
	sort.Strings(unknown)
	switch {
	case len(unknown) > 0:
		return nil, fmt.Errorf("credentials file %s: unknown key(s) %s; it takes %s, %s, %s and %s", file, strings.Join(unknown, ", "), EnvAccessKey, EnvSecretKey, EnvGitUser, EnvGitPass)
	case len(missing) > 0:
		return nil, fmt.Errorf("credentials file %s: %s missing; add %s=... line(s)", file, strings.Join(missing, " and "), strings.Join(missing, "=... and "))
	}
	return env, nil
}
