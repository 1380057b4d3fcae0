package config

import (
	"strings"
	"testing"
)

// FuzzParse: the clearml.conf front-end (the real dialect: unquoted URLs,
// comments in arrays, includes refused, ...) never panics, and a bad file is
// one line naming where it went wrong.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"api { api_server: https://api.clear.ml\n credentials { access_key: \"K\", secret_key: \"S\" } }",
		"agent.package_manager.extra_index_url: [\n # a comment\n https://x/simple ]",
		"a.b = ${?HOME}\nc: [1, 2, 3]\nd: \"\"\"multi\nline\"\"\"",
		"include \"missing.conf\"",
		"a { b: 1 ",
		"x: 'single'\ny = --ipc=host",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		_, err := Parse("fuzz.conf", text)
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error is not one line: %q", err)
		}
	})
}
