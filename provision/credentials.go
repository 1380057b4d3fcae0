package provision

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gpufleet/clearml-agent-go/internal/credfile"
)

// The git credentials of a --credentials-file (the agent reads the same
// variables from its environment).
const (
	EnvGitUser = "CLEARML_AGENT_GIT_USER"
	EnvGitPass = "CLEARML_AGENT_GIT_PASS"
)

// ReadCredentialsFile reads --credentials-file (credfile.ReadCredentials).
func ReadCredentialsFile(file string) (map[string]string, error) {
	return credfile.ReadCredentials(file)
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

// ParseCredentials reads a credentials body (a first-boot --creds-url
// answer): the KEY=VALUE lines of a credentials file, # comments, values
// bare or "double-quoted" with \ escapes. Both API keys must be there;
// other keys are reported with them missing (a typo), else ignored.
func ParseCredentials(data []byte) (map[string]string, error) {
	if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
		return nil, errors.New("not a text of KEY=VALUE lines (binary data)")
	}
	env, err := credfile.ParseEnv(data)
	if err != nil {
		return nil, fmt.Errorf("line %v", err)
	}
	var missing, unknown []string
	for _, k := range []string{EnvAccessKey, EnvSecretKey} {
		if env[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return env, nil
	}
	for k := range env {
		switch k {
		case EnvAccessKey, EnvSecretKey, EnvGitUser, EnvGitPass:
		default:
			if q := strconv.Quote(k); q[1:len(q)-1] != k {
				k = q // control characters stay escaped, on one line
			}
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	msg := fmt.Sprintf("no %s line", strings.Join(missing, " line and no "))
	if len(unknown) > 0 {
		msg += fmt.Sprintf(" (it has %s)", strings.Join(unknown, ", "))
	}
	return nil, errors.New(msg)
}
