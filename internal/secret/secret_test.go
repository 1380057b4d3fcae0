package secret

import "testing"

func TestName(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"api.credentials.secret_key": true,
		"api.credentials.access_key": true,
		"agent.git_pass":             true,
		"agent.git_user":             false,
		"sdk.aws.s3.secret":          true,
		"HF_TOKEN":                   true,
		"CLEARML_API_SECRET_KEY":     true,
		"MY_PASS":                    true,
		"DB_PASSWD":                  true,
		"GOOGLE_CREDENTIALS":         true,
		"PIP_INDEX_URL":              false,
		"PATH":                       false,
		"agent.extra_keys":           false,
	} {
		if got := Name(name); got != want {
			t.Errorf("Name(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestMaskURLs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"--index-url https://user:tok@pypi.internal/simple": "--index-url https://user:****@pypi.internal/simple",
		"git+ssh://:pw@host/x and http://h:1/simple":        "git+ssh://:****@host/x and http://h:1/simple",
		"no url here": "no url here",
	} {
		if got := MaskURLs(in); got != want {
			t.Errorf("MaskURLs(%q) = %q, want %q", in, got, want)
		}
	}
}
