package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestURLCredentialsMasked: index URLs with credentials are masked in
// `config` output (ToJSON, Display) unless secrets are asked for.
func TestURLCredentialsMasked(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.conf")
	conf := `agent.package_manager.extra_index_url: ["https://bob:p4ss@pypi.internal/simple", "https://tok3n@other/simple"]` + "\n" +
		`agent.package_manager.index_url: "https://bob:p4ss@pypi.internal/simple"` + "\n"
	if err := os.WriteFile(f, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(LoadOptions{File: f, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	masked, err := ToJSON(c, false)
	if err != nil {
		t.Fatal(err)
	}
	shown := string(masked) + c.Display("agent.package_manager.extra_index_url", false) + c.Display("agent.package_manager.index_url", false)
	if strings.Contains(shown, "p4ss") || strings.Contains(shown, "tok3n") || !strings.Contains(shown, "https://****@pypi.internal/simple") {
		t.Errorf("URL credentials not masked:\n%s", shown)
	}
	if all, _ := ToJSON(c, true); !strings.Contains(string(all), "bob:p4ss@") {
		t.Errorf("--show-secrets hides URL credentials:\n%s", all)
	}
}
