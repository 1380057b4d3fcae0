package provision

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

// The git credentials of a --credentials-file (the agent reads the same
// variables from its environment).
const (
	EnvGitUser = "CLEARML_AGENT_GIT_USER"
	EnvGitPass = "CLEARML_AGENT_GIT_PASS"
)

// ReadCredentialsFile reads --credentials-file: KEY=VALUE lines (the format
// of first-boot's --creds-file: # comments, optional "double quotes") with
// CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY, and optionally
// CLEARML_AGENT_GIT_USER and CLEARML_AGENT_GIT_PASS. It refuses a file that
// group or others may access (the fix is chmod 600), one that lacks either
// API key, and keys it does not know (a typo would go unnoticed).
func ReadCredentialsFile(file string) (map[string]string, error) {
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
	env, err := ReadEnvFile(file)
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

// applyCredentialsFile fills in the key pair (and the git user and password
// the file has) where the flags and the environment left them empty.
func (in *Inputs) applyCredentialsFile(file string) error {
	env, err := ReadCredentialsFile(file)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		key string
		v   *string
	}{{EnvAccessKey, &in.AccessKey}, {EnvSecretKey, &in.SecretKey}, {EnvGitUser, &in.GitUser}, {EnvGitPass, &in.GitPass}} {
		if *f.v == "" {
			*f.v = env[f.key]
		}
	}
	return nil
}
