package provision

import (
	"strings"
	"testing"
)

// FuzzParseCredentials: whatever a metadata URL answers (first-boot
// --creds-url), the parse gives both API keys or a one-line error; no panic.
func FuzzParseCredentials(f *testing.F) {
	for _, s := range []string{"CLEARML_API_ACCESS_KEY=a\nCLEARML_API_SECRET_KEY=b\n", "<html>404</html>", "", "\x00\x01",
		"CLEARML_API_ACCESS_KEY=\"a\\\"b\"\n# c\nCLEARML_API_SECRET_KEY=b", "ACCESS=a\nSECRET=b", "=\n=\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ParseCredentials(data)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if env[EnvAccessKey] == "" || env[EnvSecretKey] == "" {
			t.Fatalf("no error but the keys are missing: %q", env)
		}
	})
}
