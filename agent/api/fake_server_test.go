package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// recorded is one request the fake server saw.
type recorded struct {
	Method string
	Path   string
	Header http.Header
	Body   string
}

// reply is what a fake endpoint answers.
type reply struct {
	HTTP    int // default 200, or Code when Code != 200
	Code    int // meta.result_code, default 200
	Subcode int
	Msg     string
	Data    any
	Raw     string // when set, sent verbatim instead of an envelope
}

// fakeServer is a small ClearML API stand-in for this package's tests: it
// issues JWTs on auth.login, rejects unknown tokens with 401 and routes other
// calls to per-endpoint handlers.
type fakeServer struct {
	t   testing.TB
	srv *httptest.Server

	mu         sync.Mutex
	now        time.Time
	ttl        time.Duration
	apiVersion string
	key, sec   string
	bearer     string // accepted Bearer credential for token-mode login
	noToken    bool   // auth.login answers 200 without a token
	tokens     map[string]bool
	logins     int
	reqs       []recorded
	handlers   map[string]func(r recorded) reply
	seq        int
}

func newFake(t testing.TB) *fakeServer {
	t.Helper()
	f := &fakeServer{
		t:          t,
		now:        time.Unix(1_700_000_000, 0),
		ttl:        30 * 24 * time.Hour,
		apiVersion: "2.34",
		key:        "key",
		sec:        "secret",
		tokens:     map[string]bool{},
		handlers:   map[string]func(recorded) reply{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) handle(endpoint string, h func(r recorded) reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[endpoint] = h
}

func (f *fakeServer) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeServer) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func (f *fakeServer) revokeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.tokens)
}

func (f *fakeServer) loginCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins
}

// allRequests returns every request seen so far, logins included.
func (f *fakeServer) allRequests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// requests returns the non-login requests seen so far.
func (f *fakeServer) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []recorded
	for _, r := range f.reqs {
		if r.Path != "/auth.login" {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeServer) client(t *testing.T, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Host:           f.srv.URL + "/",
		AccessKey:      "key",
		SecretKey:      "secret",
		WorkerHeader:   "host1",
		AgentVersion:   "1.2.3",
		RetryBaseDelay: time.Millisecond,
		RetryMaxDelay:  5 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.now = f.clock
	return c
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: string(body)}
	f.mu.Lock()
	f.reqs = append(f.reqs, rec)
	f.mu.Unlock()

	if r.URL.Path == "/auth.login" {
		f.login(w, r)
		return
	}
	endpoint := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	ok := f.tokens[tok]
	h := f.handlers[endpoint]
	f.mu.Unlock()
	if !ok {
		writeEnvelope(w, endpoint, reply{Code: 401, Subcode: 30, Msg: "Invalid token"})
		return
	}
	if h == nil {
		writeEnvelope(w, endpoint, reply{Code: 400, Subcode: 1, Msg: "Unable to find endpoint for name " + endpoint})
		return
	}
	writeEnvelope(w, endpoint, h(rec))
}

func (f *fakeServer) login(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	f.mu.Lock()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(f.key+":"+f.sec))
	okBearer := f.bearer != "" && auth == "Bearer "+f.bearer
	f.mu.Unlock()
	if auth != want && !okBearer {
		writeEnvelope(w, "auth.login", reply{Code: 401, Subcode: 22, Msg: "Unauthorized (invalid credentials)"})
		return
	}
	f.mu.Lock()
	if f.noToken {
		f.mu.Unlock()
		writeEnvelope(w, "auth.login", reply{})
		return
	}
	f.logins++
	f.seq++
	claims := jwt.MapClaims{
		"api_version":    f.apiVersion,
		"server_version": "2.0.0",
		"feature_set":    "basic",
		"identity":       map[string]any{"user": "u1", "company": "c1", "role": "user"},
		"iat":            f.now.Unix(),
		"exp":            f.now.Add(f.ttl).Unix(),
		"seq":            f.seq,
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("server-secret"))
	if err != nil {
		f.mu.Unlock()
		f.t.Errorf("sign: %v", err)
		return
	}
	f.tokens[tok] = true
	f.mu.Unlock()
	writeEnvelope(w, "auth.login", reply{Data: map[string]string{"token": tok}})
}

func writeEnvelope(w http.ResponseWriter, endpoint string, r reply) {
	if r.Code == 0 {
		r.Code = 200
	}
	if r.HTTP == 0 {
		r.HTTP = r.Code
	}
	if r.Raw != "" {
		w.WriteHeader(r.HTTP)
		fmt.Fprint(w, r.Raw)
		return
	}
	env := map[string]any{
		"meta": map[string]any{
			"id": "req-1", "trx": "req-1",
			"endpoint":    map[string]any{"name": endpoint, "requested_version": "2.5", "actual_version": "1.0"},
			"result_code": r.Code, "result_subcode": r.Subcode, "result_msg": r.Msg, "error_stack": "",
		},
		"data": r.Data,
	}
	if r.Data == nil {
		env["data"] = map[string]any{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(r.HTTP)
	_ = json.NewEncoder(w).Encode(env)
}
