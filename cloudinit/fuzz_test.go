package cloudinit

import (
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/gpufleet/clearml-agent-go/internal/credfile"
)

// FuzzQuote: every value the templates interpolate reads back as itself: a
// YAML double-quoted scalar through a YAML parser, a credentials-file value
// through the KEY=VALUE parser first-boot and --credentials-file use.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "plain", "a b", `q"uo\te`, "new\nline", "tab\there", "#x", "- item", "{a: b}",
		"\u2028", "\ufeffbom", "\x7f", "'single'", "$(id)", "key: value", "🙂"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			if _, err := YAMLQuote(s); err == nil {
				t.Fatalf("YAMLQuote accepted invalid UTF-8 %q", s)
			}
			return
		}
		q, err := YAMLQuote(s)
		if err != nil {
			t.Fatalf("YAMLQuote(%q): %v", s, err)
		}
		var back string
		if err := yaml.Unmarshal([]byte("v: "+q+"\n"), &struct{ V *string }{&back}); err != nil {
			t.Fatalf("YAMLQuote(%q) = %s does not parse: %v", s, q, err)
		}
		if back != s {
			t.Fatalf("YAMLQuote(%q) = %s reads back as %q", s, q, back)
		}
		if strings.ContainsAny(s, "\n\r\x00") {
			return // not a credentials value: the render refuses it before quoting
		}
		env, err := credfile.ParseEnv([]byte("K=" + credValue(s) + "\n"))
		if err != nil {
			t.Fatalf("credValue(%q) = %s: %v", s, credValue(s), err)
		}
		if env["K"] != s {
			t.Fatalf("credValue(%q) = %s reads back as %q", s, credValue(s), env["K"])
		}
	})
}
