package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

const (
	testKey    = "DOCTORKEY1234567"
	testSecret = "doctor-secret"
)

// emu is the in-repo ClearML server emulator behind real HTTP, its handler
// wrapped by wrap when set.
func emu(t *testing.T, wrap func(http.Handler) http.Handler) (*emulator.Server, string) {
	t.Helper()
	e := emulator.New(emulator.Options{Credentials: map[string]string{testKey: testSecret}})
	h := e.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); e.Close() })
	return e, srv.URL
}

func client(t *testing.T, url, secret string) *api.Client {
	t.Helper()
	c, err := api.New(api.Config{Host: url, AccessKey: testKey, SecretKey: secret, VerifyCertificate: true, MaxRetries: 1,
		RetryBaseDelay: time.Millisecond, RetryMaxDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// closedAddr is a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func byName(rep Report) map[string]Result {
	m := map[string]Result{}
	for _, r := range rep.Results {
		m[r.Name] = r
	}
	return m
}

func expect(t *testing.T, rep Report, name string, status Status, detail, fix string) {
	t.Helper()
	r, ok := byName(rep)[name]
	if !ok {
		t.Fatalf("no %q result in %+v", name, rep.Results)
	}
	if r.Status != status || !strings.Contains(r.Detail, detail) || !strings.Contains(r.Fix, fix) {
		t.Errorf("%s = %s %q (fix %q), want %s with %q (fix %q)", name, r.Status, r.Detail, r.Fix, status, detail, fix)
	}
}

func TestDoctorServerHealthy(t *testing.T) {
	e, url := emu(t, nil)
	e.CreateQueue("gpu")
	id := e.CreateQueue("cpu")
	rep := Run(t.Context(), ServerChecks(ServerOptions{URL: url, API: client(t, url, testSecret), Queues: []string{"gpu", id, "new"}, CreateQueue: true}))
	if !rep.OK {
		t.Fatalf("not OK: %+v", rep.Results)
	}
	expect(t, rep, "server", OK, url+" answers (HTTP ", "")
	expect(t, rep, "credentials", OK, "logged in as", "")
	expect(t, rep, "api version", OK, "ClearML server "+emulator.ServerVersion+", API 2.", "")
	expect(t, rep, "queues", OK, "gpu, cpu exist; new will be created", "")
	expect(t, rep, "clock", OK, "within 2 s", "")

	// No --queue: the server's default queue, else one named "default".
	rep = Run(t.Context(), ServerChecks(ServerOptions{URL: url, API: client(t, url, testSecret)}))
	expect(t, rep, "queues", Fail, `queue "default" not found (existing queues: cpu, gpu)`, "--create-queue")
	e.CreateQueue("default")
	rep = Run(t.Context(), ServerChecks(ServerOptions{URL: url, API: client(t, url, testSecret)}))
	expect(t, rep, "queues", OK, "default queue default (", "")
}

func TestDoctorServerFailures(t *testing.T) {
	e, url := emu(t, nil)
	e.CreateQueue("gpu")

	t.Run("unreachable", func(t *testing.T) {
		dead := "http://" + closedAddr(t)
		rep := Run(t.Context(), ServerChecks(ServerOptions{URL: dead, API: client(t, dead, testSecret)}))
		expect(t, rep, "server", Fail, dead+" does not answer: dial tcp", "check api.api_server")
		expect(t, rep, "server", Fail, "connection refused", "CLEARML_API_HOST")
		for _, n := range []string{"credentials", "api version", "queues", "clock"} {
			expect(t, rep, n, Skip, "", "")
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		rep := Run(t.Context(), ServerChecks(ServerOptions{URL: url, API: client(t, url, "wrong")}))
		expect(t, rep, "server", OK, "answers", "")
		expect(t, rep, "credentials", Fail, "invalid credentials: the server refused the access key and secret", "CLEARML_API_ACCESS_KEY")
		expect(t, rep, "credentials", Fail, "", "clearml-agent init")
		expect(t, rep, "queues", Skip, "needs a login", "")
	})
	t.Run("no credentials", func(t *testing.T) {
		rep := Run(t.Context(), ServerChecks(ServerOptions{URL: url, APIErr: errors.New("missing credentials: set api.credentials")}))
		expect(t, rep, "credentials", Fail, "missing credentials", "api.credentials.access_key")
	})
	t.Run("missing queue", func(t *testing.T) {
		rep := Run(t.Context(), ServerChecks(ServerOptions{URL: url, API: client(t, url, testSecret), Queues: []string{"gpu", "nope"}}))
		expect(t, rep, "queues", Fail, `queue "nope" not found (existing queues: gpu)`, "pass --create-queue")
	})
	t.Run("not an API server", func(t *testing.T) {
		web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>web ui</html>") }))
		defer web.Close()
		rep := Run(t.Context(), ServerChecks(ServerOptions{URL: web.URL, API: client(t, web.URL, testSecret)}))
		expect(t, rep, "server", OK, "HTTP 200", "")
		if r := byName(rep)["credentials"]; r.Status != Fail || !strings.Contains(r.Fix, "port 8008") {
			t.Errorf("credentials = %+v, want a failure pointing at the API port", r)
		}
	})
	t.Run("no server configured", func(t *testing.T) {
		rep := Run(t.Context(), ServerChecks(ServerOptions{}))
		expect(t, rep, "server", Fail, "no API server configured", "CLEARML_API_HOST")
	})
}

// A server whose Date header is off: the emulator behind a handler that
// stamps its answers with a skewed clock.
func TestDoctorClockSkew(t *testing.T) {
	for _, tc := range []struct {
		skew   time.Duration
		status Status
		detail string
	}{
		{10 * time.Second, OK, "server clock 10s ahead of this machine's"},
		{-time.Minute, Warn, "server clock 1m0s behind this machine's (more than 30s)"},
		{10 * time.Minute, Fail, "server clock 10m0s ahead of this machine's (more than 5m0s"},
	} {
		t.Run(tc.skew.String(), func(t *testing.T) {
			_, url := emu(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Date", time.Now().Add(tc.skew).UTC().Format(http.TimeFormat))
					h.ServeHTTP(w, r)
				})
			})
			rep := Run(t.Context(), ServerChecks(ServerOptions{URL: url, API: client(t, url, testSecret), Queues: []string{"q"}, CreateQueue: true}))
			expect(t, rep, "clock", tc.status, tc.detail, map[Status]string{OK: "", Warn: "NTP", Fail: "timedatectl set-ntp true"}[tc.status])
			expect(t, rep, "credentials", OK, "logged in", "")
		})
	}
}

// The whole group shares one GET and one login.
func TestDoctorServerSharesLogin(t *testing.T) {
	f := &fakeServer{}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	Run(t.Context(), ServerChecks(ServerOptions{URL: srv.URL, API: f, Queues: []string{"a"}, CreateQueue: true}))
	if f.logins != 1 {
		t.Errorf("%d logins, want 1", f.logins)
	}
}

type fakeServer struct{ logins int }

func (f *fakeServer) Login(context.Context) (api.ServerInfo, error) {
	f.logins++
	return api.ServerInfo{}, nil
}
func (f *fakeServer) GetQueue(context.Context, string) (*api.Queue, error) { return nil, nil }
func (f *fakeServer) QueuesByName(context.Context, string) ([]api.Queue, error) {
	return nil, nil
}
func (f *fakeServer) GetAllQueues(context.Context, api.GetAllQueuesRequest) ([]api.Queue, error) {
	return nil, nil
}
func (f *fakeServer) GetDefaultQueue(context.Context) (string, string, error) { return "", "", nil }
