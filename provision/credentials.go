package provision

import "github.com/gpufleet/clearml-agent-go/internal/credfile"

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
