package provision

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeCreds(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "creds")
	if err := os.WriteFile(f, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return f
}

func TestReadCredentialsFile(t *testing.T) {
	good := "# agent credentials\nCLEARML_API_ACCESS_KEY=AK123\nCLEARML_API_SECRET_KEY=\"s3cr=t\"\nCLEARML_AGENT_GIT_USER=bot\nCLEARML_AGENT_GIT_PASS=ghp_x\n"
	t.Run("good", func(t *testing.T) {
		in := Inputs{GitUser: "from-flag"}
		if err := in.applyCredentialsFile(writeCreds(t, good, 0o600)); err != nil {
			t.Fatal(err)
		}
		if in.AccessKey != "AK123" || in.SecretKey != "s3cr=t" || in.GitUser != "from-flag" || in.GitPass != "ghp_x" {
			t.Errorf("Inputs = %+v", in)
		}
	})
	for _, tc := range []struct {
		name, body string
		mode       os.FileMode
		want       []string
	}{
		{"mode 0644", good, 0o644, []string{"is accessible by group or others (mode 0644); run: chmod 600 "}},
		{"mode 0640", good, 0o640, []string{"(mode 0640); run: chmod 600 "}},
		{"missing secret key", "CLEARML_API_ACCESS_KEY=AK\n", 0o600, []string{"CLEARML_API_SECRET_KEY missing; add CLEARML_API_SECRET_KEY=... line(s)"}},
		{"missing both", "# empty\n", 0o600, []string{"CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY missing"}},
		{"unknown key", good + "CLEARML_API_SECRET=x\n", 0o600, []string{"unknown key(s) CLEARML_API_SECRET"}},
		{"not KEY=VALUE", "CLEARML_API_ACCESS_KEY AK\n", 0o600, []string{":1: want KEY=VALUE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeCreds(t, tc.body, tc.mode)
			_, err := ReadCredentialsFile(f)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			for _, w := range append(tc.want, f) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, "s3cr=t") {
				t.Errorf("error %q: want one line without the secret", msg)
			}
		})
	}
	if _, err := ReadCredentialsFile(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "credentials file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestMaskSecretsURLs(t *testing.T) {
	got := maskSecrets(`extra_index_url: ["https://bob:p4ss@pypi.internal/simple"]`, nil)
	if strings.Contains(got, "p4ss") || !strings.Contains(got, "https://****@pypi.internal/simple") {
		t.Errorf("maskSecrets = %q", got)
	}
}
