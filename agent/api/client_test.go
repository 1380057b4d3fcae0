package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error
	}{
		{"no host", Config{AccessKey: "k", SecretKey: "s"}, "set api.api_server in clearml.conf or CLEARML_API_HOST"},
		{"bad host", Config{Host: "clearml:8008", AccessKey: "k", SecretKey: "s"}, `api.api_server "clearml:8008": want an http(s) URL`},
		{"no credentials", Config{Host: "http://h:8008"}, "missing credentials: set api.credentials.access_key/secret_key or CLEARML_API_ACCESS_KEY/CLEARML_API_SECRET_KEY"},
		{"key only", Config{Host: "http://h:8008", AccessKey: "k"}, "missing credentials"},
		{"bad method", Config{Host: "http://h:8008", Token: "t", DefaultMethod: "patch"}, `api.http.default_method "patch": want get, post or put`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New(%+v) error = %v, want it to contain %q", tt.cfg, err, tt.want)
			}
		})
	}
	if _, err := New(Config{Host: "https://h:8008/", Token: "t", DefaultMethod: "POST"}); err != nil {
		t.Fatalf("New with token: %v", err)
	}
}

func TestHeadersVersionAndGetWithBody(t *testing.T) {
	f := newFake(t)
	f.handle("queues.get_next_task", func(r recorded) reply {
		if strings.Contains(r.Body, `"q-empty"`) {
			return reply{Data: map[string]any{}}
		}
		return reply{Data: map[string]any{"entry": map[string]any{"task": "t1", "added": "2024-01-01T00:00:00"}}}
	})
	c := f.client(t, nil)

	got, err := c.GetNextTask(t.Context(), "q1")
	if err != nil || got != "t1" {
		t.Fatalf("GetNextTask(q1) = %q, %v; want t1, nil", got, err)
	}
	got, err = c.GetNextTask(t.Context(), "q-empty")
	if err != nil || got != "" {
		t.Fatalf("GetNextTask(q-empty) = %q, %v; want empty, nil", got, err)
	}

	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests, want 2", len(reqs))
	}
	r := reqs[0]
	if r.Method != "GET" || r.Path != "/v2.14/queues.get_next_task" {
		t.Errorf("got %s %s, want GET /v2.14/queues.get_next_task", r.Method, r.Path)
	}
	if r.Body != `{"queue":"q1"}` {
		t.Errorf("body = %s, want {\"queue\":\"q1\"}", r.Body)
	}
	wantHdr := map[string]string{
		"X-Clearml-Worker": "host1",
		"X-Clearml-Agent":  "api-1.2.3",
		"X-Trains-Worker":  "host1",
		"X-Trains-Agent":   "api-1.2.3",
		"Content-Type":     "application/json",
	}
	gotHdr := map[string]string{}
	for k := range wantHdr {
		gotHdr[k] = r.Header.Get(k)
	}
	if d := cmp.Diff(wantHdr, gotHdr); d != "" {
		t.Errorf("headers (-want +got):\n%s", d)
	}
	if a := r.Header.Get("Authorization"); !strings.HasPrefix(a, "Bearer ey") {
		t.Errorf("Authorization = %q, want Bearer <jwt>", a)
	}
	if n := f.loginCount(); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
	info := c.ServerInfo()
	if info.APIVersion != "2.34" || info.FeatureSet != "basic" || info.User != "u1" || info.Enterprise() {
		t.Errorf("ServerInfo = %+v, want api 2.34, basic, user u1", info)
	}
}

func TestDefaultMethodPostAndTypedVersion(t *testing.T) {
	f := newFake(t)
	f.handle("tasks.get_by_id", func(r recorded) reply {
		return reply{Data: map[string]any{"task": map[string]any{"id": "t1", "status": "queued", "script": map[string]any{"entry_point": "train.py"}}}}
	})
	c := f.client(t, func(c *Config) { c.DefaultMethod = "post" })
	task, err := c.GetTask(t.Context(), "t1")
	if err != nil {
		t.Fatal(err)
	}
	want := &Task{ID: "t1", Status: StatusQueued, Script: &Script{EntryPoint: "train.py"}}
	if d := cmp.Diff(want, task); d != "" {
		t.Errorf("task (-want +got):\n%s", d)
	}
	r := f.requests()[0]
	if r.Method != "POST" || r.Path != "/v2.5/tasks.get_by_id" {
		t.Errorf("got %s %s, want POST /v2.5/tasks.get_by_id", r.Method, r.Path)
	}
}

func TestVersionNeverAboveServer(t *testing.T) {
	f := newFake(t)
	f.apiVersion = "2.9"
	f.handle("queues.get_next_task", func(recorded) reply { return reply{} })
	f.handle("tasks.ping", func(recorded) reply { return reply{} })
	c := f.client(t, nil)
	if _, err := c.GetNextTask(t.Context(), "q"); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(t.Context(), "t"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range f.requests() {
		got = append(got, r.Path)
	}
	want := []string{"/v2.9/queues.get_next_task", "/v2.5/tasks.ping"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("paths (-want +got):\n%s", d)
	}
}

func TestEnvelopeErrorNoRetryOn400(t *testing.T) {
	f := newFake(t)
	f.handle("tasks.started", func(recorded) reply {
		return reply{Code: 400, Subcode: 101, Msg: "Invalid task id: id=abc"}
	})
	var retries atomic.Int32
	c := f.client(t, func(c *Config) { c.OnRetry = func(string, int, error) { retries.Add(1) } })
	_, err := c.Started(t.Context(), StatusRequest{Task: "abc", StatusMessage: "pulled by agent", Force: true})
	if err == nil {
		t.Fatal("Started: got nil error, want 400/101")
	}
	if got, want := err.Error(), "tasks.started: 400/101 Invalid task id: id=abc"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	if !IsCode(err, 400, 101) || !IsInvalidTask(err) || IsInvalidQueue(err) || IsUnauthorized(err) {
		t.Errorf("code helpers disagree for %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.HTTPStatus != 400 || e.Endpoint != "tasks.started" {
		t.Errorf("errors.As *Error = %+v", e)
	}
	if n := len(f.requests()); n != 1 || retries.Load() != 0 {
		t.Errorf("requests = %d, retries = %d; want 1, 0", n, retries.Load())
	}
	if got := f.requests()[0].Body; got != `{"task":"abc","status_message":"pulled by agent","force":true}` {
		t.Errorf("body = %s", got)
	}
}

func TestInvalidQueueTyped(t *testing.T) {
	f := newFake(t)
	f.handle("queues.get_next_task", func(recorded) reply {
		return reply{Code: 400, Subcode: 701, Msg: "Invalid queue id: id=nope"}
	})
	c := f.client(t, nil)
	_, err := c.GetNextTask(t.Context(), "nope")
	if !IsInvalidQueue(err) {
		t.Fatalf("GetNextTask error = %v, want InvalidQueueId", err)
	}
}

func TestRetryOn503ThenSuccess(t *testing.T) {
	f := newFake(t)
	var n atomic.Int32
	f.handle("workers.register", func(recorded) reply {
		if n.Add(1) <= 2 {
			return reply{Code: 503, Msg: "maintenance"}
		}
		return reply{}
	})
	var hooks []int
	var mu sync.Mutex
	c := f.client(t, func(c *Config) {
		c.OnRetry = func(ep string, attempt int, err error) {
			mu.Lock()
			defer mu.Unlock()
			if ep != "workers.register" || !IsCode(err, 503, 0) {
				t.Errorf("OnRetry(%s, %d, %v)", ep, attempt, err)
			}
			hooks = append(hooks, attempt)
		}
	})
	if err := c.RegisterWorker(t.Context(), "host1:gpu0", []string{"q1"}, 0); err != nil {
		t.Fatalf("RegisterWorker: %v", err)
	}
	if d := cmp.Diff([]int{1, 2}, hooks); d != "" {
		t.Errorf("OnRetry attempts (-want +got):\n%s", d)
	}
	if got := f.requests()[0].Body; got != `{"worker":"host1:gpu0","queues":["q1"]}` {
		t.Errorf("body = %s", got)
	}
}

func TestRetryOnProxy502PageThenGiveUp(t *testing.T) {
	f := newFake(t)
	f.handle("tasks.ping", func(recorded) reply {
		return reply{HTTP: 502, Raw: "<html>\n<body>502 Bad Gateway</body>\n</html>"}
	})
	c := f.client(t, func(c *Config) { c.MaxRetries = 2 })
	err := c.Ping(t.Context(), "t1")
	var te *TransportError
	if !errors.As(err, &te) || te.Attempts != 3 {
		t.Fatalf("Ping error = %v, want TransportError after 3 attempts", err)
	}
	if !IsCode(err, 502, 0) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error = %q, want one line wrapping a 502", err)
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("requests = %d, want 3", n)
	}
}

func TestRefreshAndRetryAfter401(t *testing.T) {
	f := newFake(t)
	f.handle("tasks.ping", func(recorded) reply { return reply{} })
	c := f.client(t, nil)
	if err := c.Ping(t.Context(), "t1"); err != nil {
		t.Fatal(err)
	}
	f.revokeAll()
	if err := c.Ping(t.Context(), "t1"); err != nil {
		t.Fatalf("Ping after revoke: %v", err)
	}
	if n := f.loginCount(); n != 2 {
		t.Errorf("logins = %d, want 2", n)
	}
	// 3 pings reached the handler or the 401: first, rejected, retried.
	if n := len(f.requests()); n != 3 {
		t.Errorf("requests = %d, want 3", n)
	}
}

func TestOnly1ReloginOn401(t *testing.T) {
	f := newFake(t)
	f.handle("tasks.ping", func(recorded) reply {
		return reply{Code: 401, Subcode: 1, Msg: "Unauthorized (not authorized for endpoint)"}
	})
	c := f.client(t, nil)
	err := c.Ping(t.Context(), "t1")
	if !IsCode(err, 401, 1) || !IsUnauthorized(err) {
		t.Fatalf("Ping error = %v, want 401/1", err)
	}
	if n := f.loginCount(); n != 2 {
		t.Errorf("logins = %d, want 2", n)
	}
}

func TestTokenRefreshBeforeExpiry(t *testing.T) {
	f := newFake(t)
	f.ttl = 100 * time.Second // threshold = min(12h, 50s)
	f.handle("tasks.ping", func(recorded) reply { return reply{} })
	c := f.client(t, nil)
	steps := []struct {
		advance time.Duration
		logins  int
	}{
		{0, 1},
		{40 * time.Second, 1},  // 60 s left > 50 s
		{15 * time.Second, 2},  // 45 s left: refresh
		{30 * time.Second, 2},  // new token: 70 s left
		{500 * time.Second, 3}, // expired: refresh
	}
	for i, s := range steps {
		f.advance(s.advance)
		if err := c.Ping(t.Context(), "t1"); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if n := f.loginCount(); n != s.logins {
			t.Errorf("step %d: logins = %d, want %d", i, n, s.logins)
		}
	}
	if exp := c.ServerInfo().Expires; !exp.Equal(f.clock().Add(100 * time.Second)) {
		t.Errorf("Expires = %v, want now+100s", exp)
	}
}

func TestLoginConcurrentCallsShareOneLogin(t *testing.T) {
	f := newFake(t)
	f.handle("tasks.ping", func(recorded) reply { return reply{} })
	c := f.client(t, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := c.Ping(t.Context(), "t1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := f.loginCount(); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
}

func TestBadCredentials(t *testing.T) {
	f := newFake(t)
	c := f.client(t, func(c *Config) { c.SecretKey = "wrong" })
	err := c.Ping(t.Context(), "t1")
	want := "invalid credentials for " + f.srv.URL + ": Unauthorized (invalid credentials); check access_key/secret_key"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error = %v, want prefix %q", err, want)
	}
	var le *LoginError
	if !errors.As(err, &le) || le.HTTPStatus != 401 || !IsUnauthorized(err) {
		t.Errorf("errors.As LoginError = %+v", le)
	}
	if n := len(f.allRequests()); n != 1 {
		t.Errorf("server saw %d requests, want 1 (no retry of a 401 login)", n)
	}
}

func TestTokenModeLogin(t *testing.T) {
	f := newFake(t)
	f.bearer = "child-token"
	f.handle("tasks.ping", func(recorded) reply { return reply{} })
	c := f.client(t, func(c *Config) { c.AccessKey, c.SecretKey, c.Token = "", "", "child-token" })
	if err := c.Ping(t.Context(), "t1"); err != nil {
		t.Fatal(err)
	}
	if got := f.allRequests()[0].Header.Get("Authorization"); got != "Bearer child-token" {
		t.Errorf("login Authorization = %q, want Bearer child-token", got)
	}
	if tok, err := c.Token(t.Context()); err != nil || tok == "child-token" || tok == "" {
		t.Errorf("Token() = %q, %v; want the new session token", tok, err)
	}
}

func TestLoginWithoutToken(t *testing.T) {
	f := newFake(t)
	f.noToken = true
	c := f.client(t, nil)
	_, err := c.Login(t.Context())
	if err == nil || !strings.Contains(err.Error(), "returned no token") || !strings.Contains(err.Error(), "port 8008") {
		t.Fatalf("Login error = %v, want a misconfigured-server hint", err)
	}
}

func TestAddBatchJSONLines(t *testing.T) {
	f := newFake(t)
	f.handle("events.add_batch", func(r recorded) reply {
		return reply{Data: map[string]any{"added": strings.Count(r.Body, "\n"), "errors": 0}}
	})
	c := f.client(t, nil) // default method GET; add_batch must still POST
	events := []Event{
		{Type: "log", Level: "DEBUG", Task: "t1", Worker: "host1:gpu0", Msg: "epoch 1 <ok> & done\n", Timestamp: 1700000000000},
		{Type: "log", Level: "INFO", Task: "t1", Worker: "host1:gpu0", Msg: "line2", Timestamp: 1700000000001},
	}
	res, err := c.AddBatch(t.Context(), events)
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 2 || res.Errors != 0 {
		t.Errorf("AddBatch = %+v, want added 2", res)
	}
	r := f.requests()[0]
	if r.Method != "POST" || r.Path != "/events.add_batch" || r.Header.Get("Content-Type") != "application/json-lines" {
		t.Errorf("got %s %s %q, want POST /events.add_batch application/json-lines", r.Method, r.Path, r.Header.Get("Content-Type"))
	}
	lines := strings.Split(strings.TrimSuffix(r.Body, "\n"), "\n")
	var got []Event
	for _, l := range lines {
		var e Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, e)
	}
	if d := cmp.Diff(events, got); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	if strings.Contains(r.Body, `\u003c`) {
		t.Errorf("body escapes HTML: %s", r.Body)
	}
	if _, err := c.AddBatch(t.Context(), nil); err != nil || len(f.requests()) != 1 {
		t.Errorf("empty AddBatch sent a request or failed: %v", err)
	}
}

func TestServerDownOneLineError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var retries atomic.Int32
	c, err := New(Config{
		Host: "http://" + addr, AccessKey: "k", SecretKey: "s", MaxRetries: -1,
		RetryBaseDelay: 5 * time.Millisecond, RetryMaxDelay: 20 * time.Millisecond,
		OnRetry: func(string, int, error) { retries.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err = c.Ping(ctx, "t1")
	if err == nil {
		t.Fatal("Ping to a closed port succeeded")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "auth.login: server http://"+addr+"/auth.login unreachable") ||
		!strings.Contains(msg, "context deadline exceeded") || !strings.Contains(msg, "CLEARML_API_HOST") {
		t.Errorf("error = %q, want one line naming the URL, the deadline and the fix", msg)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(err, DeadlineExceeded) = false for %v", err)
	}
	if retries.Load() == 0 {
		t.Errorf("OnRetry never called")
	}
	t.Logf("error: %s (retries %d)", msg, retries.Load())
}

func TestEditFlattensFields(t *testing.T) {
	f := newFake(t)
	f.handle("tasks.edit", func(recorded) reply {
		return reply{Data: map[string]any{"updated": 1, "fields": map[string]any{"runtime": map[string]any{}}}}
	})
	c := f.client(t, nil)
	up, err := c.EditTask(t.Context(), EditTaskRequest{Task: "t1", Force: true, Fields: map[string]any{"runtime": map[string]any{"_exec_agent_hostname": "host1"}}})
	if err != nil || up.Updated != 1 {
		t.Fatalf("EditTask = %+v, %v", up, err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(f.requests()[0].Body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"task": "t1", "force": true, "runtime": map[string]any{"_exec_agent_hostname": "host1"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("body (-want +got):\n%s", d)
	}
}
