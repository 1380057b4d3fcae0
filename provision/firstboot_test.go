package provision

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/provision/systemd/systemdtest"
)

const credsBody = "# from the metadata server\nCLEARML_API_ACCESS_KEY=META_AK\nCLEARML_API_SECRET_KEY=\"META \\\"SK\\\"\"\n"

// fast is a source that retries without real pauses.
func fast(src CredsSource) CredsSource {
	src.FirstWait, src.MaxWait = time.Millisecond, 4*time.Millisecond
	return src
}

// waitDone runs WaitCredentials and fails the test if it does not return
// at all (a liveness guard, not a timing assertion).
func waitDone(t *testing.T, ctx context.Context, src CredsSource) (map[string]string, error) {
	t.Helper()
	type result struct {
		creds map[string]string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c, err := WaitCredentials(ctx, src)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.creds, r.err
	case <-time.After(2 * time.Minute):
		t.Fatal("WaitCredentials did not return: the wait is not bounded")
		return nil, nil
	}
}

func oneLineErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one with %q", want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// The metadata answers 404 a few times (not there yet), then the
// credentials; the headers are sent with every request.
func TestWaitCredentialsURLArrives(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "missing Metadata-Flavor", http.StatusForbidden)
			return
		}
		if n.Add(1) <= 3 {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(credsBody))
	}))
	defer srv.Close()
	var log bytes.Buffer
	creds, err := waitDone(t, t.Context(), fast(CredsSource{URL: srv.URL + "/creds", Headers: http.Header{"Metadata-Flavor": {"Google"}}, Timeout: time.Minute, Log: &log}))
	if err != nil {
		t.Fatalf("WaitCredentials: %v\n%s", err, log.String())
	}
	if creds[EnvAccessKey] != "META_AK" || creds[EnvSecretKey] != `META "SK"` {
		t.Errorf("creds = %q", creds)
	}
	if n.Load() != 4 || !strings.Contains(log.String(), "HTTP 404 Not Found; next try in") || !strings.Contains(log.String(), "(try 4)") {
		t.Errorf("%d requests; log:\n%s", n.Load(), log.String())
	}
}

// Metadata that never arrives: an error naming the URL and the last
// answer once --creds-timeout has passed, not an endless loop.
func TestWaitCredentialsURLNeverArrives(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := waitDone(t, t.Context(), fast(CredsSource{URL: srv.URL + "/creds", Timeout: 200 * time.Millisecond}))
	oneLineErr(t, err, "first boot: no credentials from "+srv.URL+"/creds within --creds-timeout 200ms", "last: HTTP 404 Not Found", "raise --creds-timeout")
}

// A 200 whose body is not credentials is retried, then reported.
func TestWaitCredentialsURLGarbage(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"<html><body>instance metadata</body></html>\n", `the answer is not credentials: line 1: want KEY=VALUE, got "<html><body>instance metadata</body></ht..."`},
		{"FOO=bar\nCLEARML_API_ACCESS_KEY=a\n", "the answer is not credentials: no CLEARML_API_SECRET_KEY line (it has FOO)"},
		{"\x00\x01\x02", "binary data"},
	} {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.Write([]byte(tc.body))
		}))
		_, err := waitDone(t, t.Context(), fast(CredsSource{URL: srv.URL, Timeout: 100 * time.Millisecond}))
		srv.Close()
		oneLineErr(t, err, "no credentials from "+srv.URL, tc.want)
		if n.Load() < 2 {
			t.Errorf("%d request(s): a bad body must be retried (it may be written as we read)", n.Load())
		}
	}
}

// A server that accepts the request and never answers cannot hold first
// boot past its deadline: every request is bounded by it.
func TestWaitCredentialsURLHangs(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	_, err := waitDone(t, t.Context(), fast(CredsSource{URL: srv.URL, Timeout: 300 * time.Millisecond}))
	oneLineErr(t, err, "no credentials from "+srv.URL+" within --creds-timeout 300ms", "deadline exceeded")
	// The per-request bound alone (with a long overall wait) also ends a hung request.
	_, err = waitDone(t, t.Context(), CredsSource{URL: srv.URL, Timeout: 300 * time.Millisecond, RequestTimeout: 50 * time.Millisecond, FirstWait: time.Millisecond})
	oneLineErr(t, err, "no credentials from", "deadline exceeded")
	if strings.Contains(err.Error(), "(1 tries") {
		t.Errorf("one try only: the request bound did not end the hung request before the deadline: %v", err)
	}
}

// logHook runs fn when the n-th progress line is written.
type logHook struct {
	mu    sync.Mutex
	lines int
	n     int
	fn    func()
}

func (h *logHook) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines += bytes.Count(p, []byte("\n"))
	if h.lines == h.n {
		h.fn()
	}
	return len(p), nil
}

// A credentials file written by something else while first boot waits;
// a half-written one is retried.
func TestWaitCredentialsFileAppears(t *testing.T) {
	file := filepath.Join(t.TempDir(), "creds")
	hook := &logHook{n: 2, fn: func() { os.WriteFile(file, []byte("CLEARML_API_ACCESS_KEY=a\n"), 0o600) }}
	hook2 := &logHook{n: 4, fn: func() { os.WriteFile(file, []byte(credsBody), 0o600) }}
	log := multiHook{hook, hook2}
	creds, err := waitDone(t, t.Context(), fast(CredsSource{File: file, Timeout: time.Minute, Log: log}))
	if err != nil || creds[EnvAccessKey] != "META_AK" {
		t.Fatalf("WaitCredentials = %q, %v", creds, err)
	}
	_, err = waitDone(t, t.Context(), fast(CredsSource{File: file + ".missing", Timeout: 50 * time.Millisecond}))
	oneLineErr(t, err, "no credentials from "+file+".missing within --creds-timeout 50ms", "does not exist yet", "check that the file is written")
}

type multiHook []*logHook

func (m multiHook) Write(p []byte) (int, error) {
	for _, h := range m {
		h.Write(p)
	}
	return len(p), nil
}

// SIGTERM (a cancelled context) ends the wait with its own message.
func TestWaitCredentialsInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	hook := &logHook{n: 1, fn: cancel}
	_, err := waitDone(t, ctx, fast(CredsSource{File: "/nonexistent/creds", Timeout: time.Hour, Log: hook}))
	oneLineErr(t, err, "interrupted while waiting for credentials at /nonexistent/creds")
}

func TestParseCredentials(t *testing.T) {
	c, err := ParseCredentials([]byte("CLEARML_API_ACCESS_KEY=a\r\n  CLEARML_API_SECRET_KEY=\"b c\"\n; note\nCLEARML_AGENT_GIT_USER=u\n"))
	if err != nil || c[EnvAccessKey] != "a" || c[EnvSecretKey] != "b c" || c[EnvGitUser] != "u" {
		t.Errorf("ParseCredentials = %q, %v", c, err)
	}
	for body, want := range map[string]string{
		"":                         "no CLEARML_API_ACCESS_KEY line and no CLEARML_API_SECRET_KEY line",
		"CLEARML_API_ACCESS_KEY=a": "no CLEARML_API_SECRET_KEY line",
		"oops":                     `line 1: want KEY=VALUE, got "oops"`,
		"\xff\xfe":                 "binary data",
	} {
		if _, err := ParseCredentials([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCredentials(%q) = %v; want %q", body, err, want)
		}
	}
}

func TestParseHeader(t *testing.T) {
	if n, v, err := ParseHeader("Metadata-Flavor:  Google "); err != nil || n != "Metadata-Flavor" || v != "Google" {
		t.Errorf("ParseHeader = %q %q %v", n, v, err)
	}
	for _, h := range []string{"NoColon", ": v", "Bad Name: v", "A: b\r\nInjected: x"} {
		if _, _, err := ParseHeader(h); err == nil || !strings.Contains(err.Error(), "want 'Name: value'") {
			t.Errorf("ParseHeader(%q) = %v", h, err)
		}
	}
}

// first-boot --creds-url through Run: the credentials come from the URL
// (with the header), then the agents start.
func TestRunFirstBootCredsURL(t *testing.T) {
	root := t.TempDir()
	in := baseInputs(root)
	in.AccessKey, in.SecretKey, in.FirstBootCreds = "", "", true
	fake := &systemdtest.Fake{}
	if _, err := Apply(t.Context(), mustPlan(t, in), fakeHost(fake)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Token") != "t 1" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		w.Write([]byte(credsBody))
	}))
	defer srv.Close()
	conf := filepath.Join(root, "etc/clearml-agent/clearml.conf")
	var out bytes.Buffer
	c := Command{Action: ActionFirstBoot, Inputs: Inputs{ConfigPath: conf}, CredsURL: srv.URL, CredsHeaders: []string{"X-Token: t 1"}, CredsTimeout: time.Minute, Stdout: &out}
	if err := Run(t.Context(), c, fakeDeps(fake)); err != nil {
		t.Fatalf("first-boot: %v\n%s", err, out.String())
	}
	if b, _ := os.ReadFile(conf); !strings.Contains(string(b), `"secret_key": "META \"SK\""`) {
		t.Errorf("clearml.conf lacks the secret from the URL:\n%s", b)
	}
	if !strings.Contains(out.String(), "started clearml-agents.target") {
		t.Errorf("first-boot output:\n%s", out.String())
	}
	// Run again (a reboot): the config has credentials, nothing is waited for.
	srv.Close()
	out.Reset()
	if err := Run(t.Context(), c, fakeDeps(fake)); err != nil || !strings.Contains(out.String(), "already has credentials") {
		t.Errorf("second first-boot: %v\n%s", err, out.String())
	}
}

func TestRunFirstBootBadFlags(t *testing.T) {
	for _, tc := range []struct {
		c    Command
		want string
	}{
		{Command{CredsFile: "/f", CredsURL: "http://x/"}, "--creds-file and --creds-url: give one of them"},
		{Command{CredsHeaders: []string{"A: b"}}, "headers are sent only with --creds-url"},
		{Command{CredsURL: "http://x/", CredsHeaders: []string{"bad"}}, "--creds-header \"bad\": want 'Name: value'"},
		{Command{CredsURL: "ftp://x/"}, `--creds-url "ftp://x/": want an http:// or https:// URL`},
		{Command{CredsFile: "/f", CredsTimeout: -time.Second}, "--creds-timeout -1s: must be positive"},
	} {
		tc.c.Action = ActionFirstBoot
		err := Run(t.Context(), tc.c, fakeDeps(&systemdtest.Fake{}))
		if !errors.As(err, new(UsageError)) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want a UsageError with %q", tc.c, err, tc.want)
		}
	}
}
