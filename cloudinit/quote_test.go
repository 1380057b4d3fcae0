package cloudinit

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"go.yaml.in/yaml/v3"
)

var tricky = []string{
	"", "plain", "with space", `quote " and \ backslash`, "single ' quote", "$HOME `cmd` $(cmd)",
	"line\nbreak", "tab\there", "cr\r\n", "nul-free \x01\x1f\x7f", "yes", "no", "0600", "~", "null", "- dash", "# hash",
	"key: value", "{a: b}", "[1, 2]", "*alias", "&anchor", "!tag", "%directive", "@at", "ünïcødé 日本", "\u0085nel\u2028ls\u2029ps\ufeffbom",
	"\u00adsoft hyphen", "emoji 🚀", "--flag=value", "trailing space ", " leading space",
}

// pyYAML loads each document with cloud-init's YAML reader (PyYAML) and
// returns what it read as strings.
func pyYAML(t *testing.T, docs []string) []string {
	t.Helper()
	py := testenv.Tool(t, "/usr/bin/python3")
	if err := exec.Command(py, "-c", "import yaml").Run(); err != nil {
		testenv.Missing(t, "python3 has no yaml module (apt-get install python3-yaml; cloud-init, which CI installs, depends on it): %v", err)
	}
	in, _ := json.Marshal(docs)
	cmd := exec.Command(py, "-c", `import json, sys, yaml
docs = json.load(sys.stdin)
json.dump([yaml.safe_load(d)["v"] for d in docs], sys.stdout)`)
	cmd.Stdin = strings.NewReader(string(in))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("PyYAML: %v", err)
	}
	var got []string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestYAMLQuoteRoundTrip(t *testing.T) {
	var docs []string
	for _, s := range tricky {
		q, err := YAMLQuote(s)
		if err != nil {
			t.Fatal(err)
		}
		doc := "v: " + q + "\n"
		docs = append(docs, doc)
		var v struct{ V string }
		if err := yaml.Unmarshal([]byte(doc), &v); err != nil || v.V != s {
			t.Errorf("yaml.v3 read %q back as %q (%v) from %s", s, v.V, err, doc)
		}
	}
	for i, got := range pyYAML(t, docs) {
		if got != tricky[i] {
			t.Errorf("PyYAML read %q back as %q from %s", tricky[i], got, docs[i])
		}
	}
	if _, err := YAMLQuote("bad \xff utf-8"); err == nil {
		t.Error("YAMLQuote accepted invalid UTF-8")
	}
}

func TestYAMLBlockRoundTrip(t *testing.T) {
	contents := []string{
		"#!/bin/sh\nset -eu\n\tindented with a tab\n  two spaces\n\nempty line above\n--- not a document marker\n... nor this\n",
		"KEY=\"v: a # b\"\n",
		"no final newline", "two final newlines\n\n", " leading space\n", "\tleading tab\n", "\nleading newline\n", "cr\r\nlf\n", "",
	}
	var docs []string
	for _, c := range contents {
		b, err := YAMLBlock(c, 4)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(c, "#!") && !strings.HasPrefix(b, "|\n") {
			t.Errorf("a script is not written as a literal block: %s", b)
		}
		doc := "x:\n  v: " + b + "\n"
		docs = append(docs, "v: "+b+"\n")
		var v struct{ X struct{ V string } }
		if err := yaml.Unmarshal([]byte(doc), &v); err != nil || v.X.V != c {
			t.Errorf("yaml.v3 read %q back as %q (%v) from\n%s", c, v.X.V, err, doc)
		}
	}
	for i, got := range pyYAML(t, docs) {
		if got != contents[i] {
			t.Errorf("PyYAML read %q back as %q from\n%s", contents[i], got, docs[i])
		}
	}
}

func TestShellQuoteRoundTrip(t *testing.T) {
	sh := testenv.Tool(t, "sh")
	for _, s := range append(tricky, "a=b", "-", "*", "?", "[a]", "{a,b}", "~root", "x;y", "a|b", "a&b", "<a>") {
		if strings.ContainsRune(s, 0) {
			continue
		}
		q, err := ShellQuote(s)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sh, "-c", "printf '%s' "+q).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh read %q back as %q (%v) from %s", s, out, err, q)
		}
	}
	if _, err := ShellQuote("a\x00b"); err == nil {
		t.Error("ShellQuote accepted a NUL byte")
	}
}
