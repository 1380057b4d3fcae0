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
		"--index-url https://user:tok@pypi.internal/simple": "--index-url https://****@pypi.internal/simple",
		"git+ssh://:pw@host/x and http://h:1/simple":        "git+ssh://:****@host/x and http://h:1/simple",
		"no url here": "no url here",
	} {
		if got := MaskURLs(in); got != want {
			t.Errorf("MaskURLs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMaskURLsUserinfo(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://ghp_TOKEN123@github.com/org/x.git":       "https://****@github.com/org/x.git",
		"Looking in indexes: https://tok:****@h/simple":   "Looking in indexes: https://****@h/simple",
		"git+https://oauth2:glpat-XYZ@gitlab.com/a/b.git": "git+https://****@gitlab.com/a/b.git",
		"git+ssh://git@github.com/org/x.git":              "git+ssh://git@github.com/org/x.git",
		"ssh://git:pw@host/x":                             "ssh://git:****@host/x",
		"http://host/path?q=a@b":                          "http://host/path?q=a@b",
	} {
		if got := MaskURLs(in); got != want {
			t.Errorf("MaskURLs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStripURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://ghp_TOKEN123@github.com/org/x.git": "https://github.com/org/x.git",
		"https://user:pass@host:8443/x.git?ref=a@b": "https://host:8443/x.git?ref=a@b",
		"http://h/x.git":                   "http://h/x.git",
		"ssh://git:pw@host:2222/org/x.git": "ssh://git@host:2222/org/x.git",
		"ssh://git@host/org/x.git":         "ssh://git@host/org/x.git",
		"git@github.com:org/x.git":         "git@github.com:org/x.git",
		"user:pw@github.com:org/x.git":     "user@github.com:org/x.git",
		"/local/path/repo":                 "/local/path/repo",
		"file:///tmp/x":                    "file:///tmp/x",
	} {
		if got := StripURL(in); got != want {
			t.Errorf("StripURL(%q) = %q, want %q", in, got, want)
		}
	}
}
