package repo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrepareTokenURL: a repository URL whose user name is a token
// (https://TOKEN@host/...) or that carries user:password never shows the
// token in a log line, an error or the Result, with or without the vcs cache.
func TestPrepareTokenURL(t *testing.T) {
	f := newFixture(t)
	srvRoot := t.TempDir()
	for _, dir := range []string{"private", "public"} {
		if err := os.MkdirAll(filepath.Join(srvRoot, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		gitCLI(t, srvRoot, "clone", "-q", "--bare", f.origin, filepath.Join(srvRoot, dir, "proj.git"))
	}
	srv := newGitServer(t, srvRoot)
	const token = "ghp_t0kenV4lue"
	withUser := func(userinfo, path string) string {
		return strings.Replace(srv.URL, "http://", "http://"+userinfo+"@", 1) + path
	}
	for _, tc := range []struct {
		name, url string
		cache     bool
		wantErr   bool
	}{
		{"token user, public", withUser(token, "/public/proj.git"), false, false},
		{"token user, public, cached", withUser(token, "/public/proj.git"), true, false},
		{"token user refused", withUser(token, "/private/proj.git"), false, true},
		{"token user refused, cached", withUser(token, "/private/proj.git"), true, true},
		{"token password refused", withUser("x-token:"+token, "/private/proj.git"), false, true},
		{"token user, missing repository", withUser(token, "/public/none.git"), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs []string
			spec := Spec{URL: tc.url}
			if tc.cache {
				spec.CacheDir = t.TempDir()
			}
			res, err := Prepare(t.Context(), spec, filepath.Join(t.TempDir(), "code"), func(s string) { logs = append(logs, s) })
			if (err != nil) != tc.wantErr {
				t.Fatalf("Prepare error = %v, want error %v", err, tc.wantErr)
			}
			all := strings.Join(logs, "\n") + "\n" + res.URL
			if err != nil {
				all += "\n" + err.Error()
				if !strings.Contains(err.Error(), srv.URL+"/") {
					t.Errorf("error %q does not name the repository without credentials", err)
				}
			} else if res.URL != srv.URL+"/public/proj.git" {
				t.Errorf("Result.URL = %q", res.URL)
			}
			if strings.Contains(all, token) {
				t.Errorf("the token shows in logs, error or Result:\n%s", all)
			}
		})
	}
}

func TestRedactErr(t *testing.T) {
	err := redactErr(errors.New(`Get "https://ghp_tok@host/x/info/refs": EOF; user oauth2 pass pw123`), "pw123", "")
	if got, want := err.Error(), `Get "https://****@host/x/info/refs": EOF; user oauth2 pass ***`; got != want {
		t.Errorf("redactErr = %q, want %q", got, want)
	}
	plain := errors.New("plain")
	if redactErr(plain, "", "x-none") != plain {
		t.Error("an error without secrets was replaced")
	}
}
