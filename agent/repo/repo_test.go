package repo

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/internal/gittest"
	"github.com/gpufleet/clearml-agent-go/internal/testenv"
)

// gitCLI runs the real git in dir and returns trimmed stdout.
func gitCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v in %s: %v\n%s", args, dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fixture is an origin repository built with the git CLI:
// main: c1 (tag v1) -> c2; feature: c2 -> c3; submodule "sub" added in c2.
type fixture struct {
	root         string // holds origin.git-like dirs
	origin       string // path of the origin repository
	c1, c2, c3   string
	subCommitMsg string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	root := t.TempDir()
	sub := filepath.Join(root, "sub")
	gitCLI(t, root, "init", "-q", "-b", "main", sub)
	writeFile(t, filepath.Join(sub, "lib.py"), "X = 1\n")
	gitCLI(t, sub, "add", ".")
	gitCLI(t, sub, "commit", "-q", "-m", "sub")

	o := filepath.Join(root, "origin")
	gitCLI(t, root, "init", "-q", "-b", "main", o)
	writeFile(t, filepath.Join(o, "train.py"), "print('v1')\n")
	gitCLI(t, o, "add", ".")
	gitCLI(t, o, "commit", "-q", "-m", "one")
	gitCLI(t, o, "tag", "-a", "v1", "-m", "release v1")
	c1 := gitCLI(t, o, "rev-parse", "HEAD")
	writeFile(t, filepath.Join(o, "train.py"), "print('v2')\n")
	gitCLI(t, o, "-c", "protocol.file.allow=always", "submodule", "add", "-q", "file://"+sub, "sub")
	gitCLI(t, o, "add", ".")
	gitCLI(t, o, "commit", "-q", "-m", "two")
	c2 := gitCLI(t, o, "rev-parse", "HEAD")
	gitCLI(t, o, "checkout", "-q", "-b", "feature")
	writeFile(t, filepath.Join(o, "feature.py"), "print('feature')\n")
	gitCLI(t, o, "add", ".")
	gitCLI(t, o, "commit", "-q", "-m", "three")
	c3 := gitCLI(t, o, "rev-parse", "HEAD")
	gitCLI(t, o, "checkout", "-q", "main")
	return fixture{root: root, origin: o, c1: c1, c2: c2, c3: c3}
}

func TestPrepareRevisions(t *testing.T) {
	f := newFixture(t)
	url := "file://" + f.origin
	tests := []struct {
		name       string
		spec       Spec
		wantCommit string
		wantBranch string
		wantTrain  string
	}{
		{"default branch main", Spec{URL: url}, f.c2, "main", "print('v2')\n"},
		{"commit wins over branch", Spec{URL: url, Commit: f.c1, Branch: "feature"}, f.c1, "", "print('v1')\n"},
		{"short commit", Spec{URL: url, Commit: f.c1[:8]}, f.c1, "", "print('v1')\n"},
		{"annotated tag", Spec{URL: url, Tag: "v1", Branch: "feature"}, f.c1, "", "print('v1')\n"},
		{"branch", Spec{URL: url, Branch: "feature"}, f.c3, "feature", "print('v2')\n"},
		{"origin/ prefix", Spec{URL: url, Branch: "origin/feature"}, f.c3, "feature", "print('v2')\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "task_repository", "origin")
			var logs []string
			res, err := Prepare(t.Context(), tc.spec, dest, func(s string) { logs = append(logs, s) })
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			want := Result{Dir: dest, Commit: tc.wantCommit, Branch: tc.wantBranch, URL: url}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Errorf("Result mismatch (-want +got):\n%s\nlogs: %q", diff, logs)
			}
			if got := readFile(t, filepath.Join(dest, "train.py")); got != tc.wantTrain {
				t.Errorf("train.py = %q, want %q", got, tc.wantTrain)
			}
			// The real git must agree with go-git about the checkout.
			if got := gitCLI(t, dest, "rev-parse", "HEAD"); got != tc.wantCommit {
				t.Errorf("git rev-parse HEAD = %s, want %s", got, tc.wantCommit)
			}
			if st := gitCLI(t, dest, "status", "--porcelain", "--ignore-submodules"); st != "" {
				t.Errorf("working tree not clean:\n%s", st)
			}
		})
	}
}

func TestPrepareSubmodule(t *testing.T) {
	f := newFixture(t)
	dest := filepath.Join(t.TempDir(), "code")
	if _, err := Prepare(t.Context(), Spec{URL: "file://" + f.origin}, dest, func(s string) { t.Log(s) }); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dest, "sub", "lib.py")); got != "X = 1\n" {
		t.Errorf("sub/lib.py = %q", got)
	}
	// The renamed checkout must still be a working repository for git.
	if got := gitCLI(t, filepath.Join(dest, "sub"), "log", "-1", "--format=%s"); got != "sub" {
		t.Errorf("submodule log = %q", got)
	}
}

func TestPrepareErrors(t *testing.T) {
	f := newFixture(t)
	url := "file://" + f.origin
	missing := strings.Repeat("ab", 20)
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"missing repo", Spec{URL: "file://" + filepath.Join(f.root, "nope")}, "not found or access denied"},
		{"missing commit", Spec{URL: url, Commit: missing}, "commit " + missing + " not found in " + url},
		{"missing tag", Spec{URL: url, Tag: "v9"}, "tag v9 not found in " + url},
		{"missing branch", Spec{URL: url, Branch: "nope"}, "branch nope not found in " + url},
		{"git diff without repo", Spec{Diff: "diff --git a/x b/x\n"}, "script.repository is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "code")
			_, err := Prepare(t.Context(), tc.spec, dest, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has several lines: %q", err)
			}
			if _, serr := os.Stat(dest); !os.IsNotExist(serr) {
				t.Errorf("dest %s left behind after failure", dest)
			}
		})
	}
}

func TestPrepareDiff(t *testing.T) {
	f := newFixture(t)
	url := "file://" + f.origin
	good := "diff --git a/train.py b/train.py\n" +
		"--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-print('v2')\n+print('patched')\n" +
		"diff --git a/new.py b/new.py\nnew file mode 100644\n--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+print('new')"
	t.Run("applies", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "code")
		res, err := Prepare(t.Context(), Spec{URL: url, Diff: good}, dest, func(s string) { t.Log(s) })
		if err != nil {
			t.Fatal(err)
		}
		if res.Script != "" {
			t.Errorf("Script = %q, want empty for a git diff", res.Script)
		}
		if got := readFile(t, filepath.Join(dest, "train.py")); got != "print('patched')\n" {
			t.Errorf("train.py = %q", got)
		}
		if got := readFile(t, filepath.Join(dest, "new.py")); got != "print('new')\n" {
			t.Errorf("new.py = %q", got)
		}
	})
	t.Run("does not apply", func(t *testing.T) {
		bad := "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-print('something else')\n+print('x')"
		dest := filepath.Join(t.TempDir(), "code")
		_, err := Prepare(t.Context(), Spec{URL: url, Diff: bad}, dest, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "failed applying git diff: error: patch failed: train.py") {
			t.Fatalf("error = %v, want failed applying git diff: error: patch failed: train.py...", err)
		}
	})
	t.Run("literal script", func(t *testing.T) {
		script := "import os\nprint(os.getcwd())\n"
		dest := filepath.Join(t.TempDir(), "code")
		res, err := Prepare(t.Context(), Spec{URL: url, Diff: script}, dest, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Script != script {
			t.Errorf("Script = %q, want %q", res.Script, script)
		}
	})
	t.Run("literal script without repo", func(t *testing.T) {
		res, err := Prepare(t.Context(), Spec{Diff: "print(1)"}, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(Result{Script: "print(1)"}, res); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// gitServer serves every repository under root over git's smart HTTP
// protocol with the real `git http-backend`. Paths under /private/ need
// basic auth user "alice" password "s3cret".
type gitServer struct {
	*httptest.Server
	mu    sync.Mutex
	auths []string // Authorization headers seen
}

func newGitServer(t *testing.T, root string) *gitServer {
	t.Helper()
	testenv.Need(t, "git")
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	s := &gitServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if h := r.Header.Get("Authorization"); h != "" {
			s.auths = append(s.auths, h)
		}
		s.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/private/") {
			u, p, ok := r.BasicAuth()
			if !ok || u != "alice" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *gitServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auths...)
}

func TestPrepareHTTP(t *testing.T) {
	f := newFixture(t)
	srvRoot := t.TempDir()
	for _, dir := range []string{"private", "public"} {
		if err := os.MkdirAll(filepath.Join(srvRoot, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		gitCLI(t, srvRoot, "clone", "-q", "--bare", f.origin, filepath.Join(srvRoot, dir, "proj.git"))
	}
	srv := newGitServer(t, srvRoot)
	host := strings.TrimPrefix(srv.URL, "http://")
	hostname := strings.Split(host, ":")[0]

	t.Run("credentials sent to their host", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "code")
		res, err := Prepare(t.Context(), Spec{
			URL: srv.URL + "/private/proj.git", Creds: Creds{User: "alice", Pass: "s3cret", Host: hostname},
		}, dest, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Commit != f.c2 {
			t.Errorf("Commit = %s, want %s", res.Commit, f.c2)
		}
		// The password must not be stored in the clone's config.
		if cfg := readFile(t, filepath.Join(dest, ".git", "config")); strings.Contains(cfg, "s3cret") {
			t.Errorf(".git/config holds the password:\n%s", cfg)
		}
	})
	t.Run("credentials in URL", func(t *testing.T) {
		u := strings.Replace(srv.URL, "http://", "http://alice:s3cret@", 1) + "/private/proj.git"
		var logs []string
		res, err := Prepare(t.Context(), Spec{URL: u, Branch: "feature"}, filepath.Join(t.TempDir(), "code"),
			func(s string) { logs = append(logs, s) })
		if err != nil {
			t.Fatal(err)
		}
		if res.Commit != f.c3 || strings.Contains(res.URL, "s3cret") {
			t.Errorf("Result = %+v", res)
		}
		if strings.Contains(strings.Join(logs, "\n"), "s3cret") {
			t.Errorf("password in logs: %q", logs)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		_, err := Prepare(t.Context(), Spec{
			URL: srv.URL + "/private/proj.git", Creds: Creds{User: "alice", Pass: "wrong-pw"},
		}, filepath.Join(t.TempDir(), "code"), nil)
		if err == nil || !strings.Contains(err.Error(), "repository "+srv.URL+"/private/proj.git not found or access denied") ||
			!strings.Contains(err.Error(), "agent.git_user/git_pass") {
			t.Fatalf("error = %v", err)
		}
		if strings.Contains(err.Error(), "wrong-pw") {
			t.Errorf("password in error: %v", err)
		}
	})
	t.Run("missing repository", func(t *testing.T) {
		_, err := Prepare(t.Context(), Spec{URL: srv.URL + "/public/none.git"}, filepath.Join(t.TempDir(), "code"), nil)
		if err == nil || !strings.Contains(err.Error(), "not found or access denied") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("credentials not sent to other hosts", func(t *testing.T) {
		before := len(srv.seen())
		_, err := Prepare(t.Context(), Spec{
			URL: srv.URL + "/public/proj.git", Creds: Creds{User: "alice", Pass: "s3cret", Host: "git.example.com"},
		}, filepath.Join(t.TempDir(), "code"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := srv.seen()[before:]; len(got) != 0 {
			t.Errorf("server saw Authorization headers %q for a host outside agent.git_host", got)
		}
		_, err = Prepare(t.Context(), Spec{
			URL: srv.URL + "/private/proj.git", Creds: Creds{User: "alice", Pass: "s3cret", Host: "git.example.com"},
		}, filepath.Join(t.TempDir(), "code"), nil)
		if err == nil || !strings.Contains(err.Error(), "not found or access denied") {
			t.Fatalf("error = %v, want access denied", err)
		}
	})
}

func TestPrepareCache(t *testing.T) {
	f := newFixture(t)
	url := "file://" + f.origin
	cache := t.TempDir()
	work := t.TempDir()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	results := make([]Result, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Prepare(t.Context(), Spec{URL: url, CacheDir: cache},
				filepath.Join(work, "w"+string(rune('0'+i))), nil)
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("Prepare %d: %v", i, errs[i])
		}
		if results[i].Commit != f.c2 {
			t.Errorf("Prepare %d commit = %s, want %s", i, results[i].Commit, f.c2)
		}
	}
	entries, err := filepath.Glob(filepath.Join(cache, "origin.*"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if !strings.HasSuffix(e, ".lock") {
			dirs = append(dirs, filepath.Base(e))
		}
	}
	if len(dirs) != 1 {
		t.Fatalf("cache entries = %q, want exactly one", dirs)
	}

	// A new commit on the origin is fetched into the cache.
	writeFile(t, filepath.Join(f.origin, "train.py"), "print('v4')\n")
	gitCLI(t, f.origin, "commit", "-q", "-am", "four")
	c4 := gitCLI(t, f.origin, "rev-parse", "HEAD")
	var logs []string
	res, err := Prepare(t.Context(), Spec{URL: url, CacheDir: cache}, filepath.Join(work, "w0"),
		func(s string) { logs = append(logs, s) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit != c4 {
		t.Errorf("commit after refresh = %s, want %s", res.Commit, c4)
	}
	if got := readFile(t, filepath.Join(work, "w0", "train.py")); got != "print('v4')\n" {
		t.Errorf("train.py = %q", got)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "using vcs cache") {
		t.Errorf("cache not reused; logs: %q", logs)
	}

	// Each use stamps the entry's mtime: agent/diskguard evicts the least
	// recently used entries by it.
	entry := filepath.Join(cache, dirs[0])
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(entry, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(t.Context(), Spec{URL: url, CacheDir: cache}, filepath.Join(work, "w1"), nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(entry); err != nil || !st.ModTime().After(old) {
		t.Errorf("vcs cache entry mtime after a use = %v, %v; want it stamped", st.ModTime(), err)
	}
}

func TestRewrite(t *testing.T) {
	tests := []struct {
		name      string
		spec      Spec
		wantURL   string
		wantCreds Creds
	}{
		{"https with creds", Spec{URL: "https://github.com/o/r.git", Creds: Creds{User: "u", Pass: "p"}},
			"https://github.com/o/r.git", Creds{User: "u", Pass: "p"}},
		{"creds scoped elsewhere", Spec{URL: "https://github.com/o/r.git", Creds: Creds{User: "u", Pass: "p", Host: "gitlab.com"}},
			"https://github.com/o/r.git", Creds{}},
		{"scope with scheme and port", Spec{URL: "https://git.local:8443/o/r.git", Creds: Creds{User: "u", Pass: "p", Host: "https://git.local:8443"}},
			"https://git.local:8443/o/r.git", Creds{User: "u", Pass: "p", Host: "https://git.local:8443"}},
		{"scope with other port", Spec{URL: "https://git.local:8443/o/r.git", Creds: Creds{User: "u", Pass: "p", Host: "git.local:9000"}},
			"https://git.local:8443/o/r.git", Creds{}},
		{"force ssh", Spec{URL: "https://github.com/o/r.git", ForceSSH: true},
			"ssh://git@github.com/o/r.git", Creds{}},
		{"force ssh user port", Spec{URL: "https://github.com/o/r.git", ForceSSH: true, SSHUser: "me", SSHPort: 2222},
			"ssh://me@github.com:2222/o/r.git", Creds{}},
		{"force ssh limited to git_host", Spec{URL: "https://github.com/o/r.git", ForceSSH: true, Creds: Creds{Host: "gitlab.com"}},
			"https://github.com/o/r.git", Creds{}},
		{"translate scp ssh", Spec{URL: "git@github.com:o/r.git", TranslateSSH: true, Creds: Creds{User: "u", Pass: "p"}},
			"https://github.com/o/r.git", Creds{User: "u", Pass: "p"}},
		{"translate ssh url", Spec{URL: "ssh://git@github.com/o/r.git", TranslateSSH: true, Creds: Creds{User: "u", Pass: "p"}},
			"https://github.com/o/r.git", Creds{User: "u", Pass: "p"}},
		{"no translate without creds", Spec{URL: "git@github.com:o/r.git", TranslateSSH: true},
			"git@github.com:o/r.git", Creds{}},
		{"url creds", Spec{URL: "https://u:p@github.com/o/r.git"},
			"https://github.com/o/r.git", Creds{User: "u", Pass: "p", Host: "github.com"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep, creds := rewrite(tc.spec)
			if got := ep.String(); got != tc.wantURL {
				t.Errorf("URL = %q, want %q", got, tc.wantURL)
			}
			if diff := cmp.Diff(tc.wantCreds, creds); diff != "" {
				t.Errorf("creds (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStripPassword(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p@host/r.git":   "https://host/r.git",
		"https://TOKEN@host/r.git": "https://host/r.git",
		"https://host/r.git":       "https://host/r.git",
		"git@host:o/r.git":         "git@host:o/r.git",
		"/local/path":              "/local/path",
	} {
		if got := StripPassword(in); got != want {
			t.Errorf("StripPassword(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrepareCacheBusy(t *testing.T) {
	f := newFixture(t)
	url := "file://" + f.origin
	cache := t.TempDir()
	ep, _ := parseEndpoint(url)
	sum := md5.Sum([]byte(url))
	held := flock.New(filepath.Join(cache, repoName(ep)+"."+hex.EncodeToString(sum[:])+".lock"))
	if err := held.Lock(); err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	old := lockWait
	lockWait = 300 * time.Millisecond
	defer func() { lockWait = old }()

	var logs []string
	res, err := Prepare(t.Context(), Spec{URL: url, CacheDir: cache}, filepath.Join(t.TempDir(), "code"),
		func(s string) { logs = append(logs, s) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit != f.c2 {
		t.Errorf("Commit = %s, want %s", res.Commit, f.c2)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "busy") {
		t.Errorf("want a busy-cache message, logs: %q", logs)
	}
}

func BenchmarkPrepareCached(b *testing.B) {
	root := b.TempDir()
	o := filepath.Join(root, "origin")
	for _, args := range [][]string{{"init", "-q", "-b", "main", o}} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(o, "a.py"), []byte("print(1)\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, args := range [][]string{{"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "x"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = o
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
	cache := b.TempDir()
	dest := filepath.Join(b.TempDir(), "code")
	for b.Loop() {
		if _, err := Prepare(b.Context(), Spec{URL: "file://" + o, CacheDir: cache}, dest, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// hungServer accepts TCP connections on 127.0.0.1 and never answers: a git
// server that hangs.
func hungServer(t *testing.T) string {
	t.Helper()
	return "http://" + gittest.HungServer(t) + "/team/project.git"
}

func TestPrepareTimeout(t *testing.T) {
	url := hungServer(t)
	const limit = 300 * time.Millisecond
	check := func(t *testing.T, err error, op string) {
		t.Helper()
		var te *TimeoutError
		if !errors.As(err, &te) {
			t.Fatalf("Prepare = %v, want a TimeoutError", err)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.Contains(msg, "agent.git_timeout_sec") ||
			!strings.Contains(msg, op+" "+url) || !strings.Contains(msg, limit.String()) {
			t.Errorf("reason %q: want one line naming the operation, the URL, the limit and agent.git_timeout_sec", msg)
		}
	}

	t.Run("clone", func(t *testing.T) {
		_, err := Prepare(t.Context(), Spec{URL: url, Timeout: limit}, filepath.Join(t.TempDir(), "w"), nil)
		check(t, err, "cloning")
	})

	t.Run("cache fetch", func(t *testing.T) {
		// A cache entry for the URL exists; refreshing it hangs, and the
		// timeout fails the task instead of cloning (which would hang too).
		f := newFixture(t)
		cache := t.TempDir()
		ep, _ := rewrite(Spec{URL: url})
		sum := md5.Sum([]byte(StripPassword(ep.String())))
		entry := filepath.Join(cache, repoName(ep)+"."+hex.EncodeToString(sum[:]))
		gitCLI(t, cache, "clone", "-q", "--no-checkout", f.origin, entry)
		gitCLI(t, entry, "remote", "set-url", "origin", url)
		var logs []string
		_, err := Prepare(t.Context(), Spec{URL: url, Timeout: limit, CacheDir: cache}, filepath.Join(t.TempDir(), "w"),
			func(s string) { logs = append(logs, s) })
		check(t, err, "fetching")
		if l := strings.Join(logs, "\n"); strings.Contains(l, "cloning again") {
			t.Errorf("cloned again after the fetch timed out; logs: %q", logs)
		}
	})

	t.Run("caller's cancel is not a timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), limit)
		defer cancel()
		_, err := Prepare(ctx, Spec{URL: url, Timeout: time.Hour}, filepath.Join(t.TempDir(), "w"), nil)
		var te *TimeoutError
		if err == nil || errors.As(err, &te) {
			t.Fatalf("Prepare with a cancelled context = %v, want the context's error", err)
		}
	})
}
