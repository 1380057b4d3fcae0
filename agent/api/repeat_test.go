package api_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

// Every endpoint the emulator serves or this package calls has its retry
// policy written in the endpoint table.
func TestEveryEndpointHasARetryPolicy(t *testing.T) {
	t.Parallel()
	for _, ep := range append(emulator.Endpoints(), calledEndpoints(t)...) {
		if !api.RepeatDecided(ep) {
			t.Errorf("%s: no retry policy in the endpoint table (repeat: safe or once)", ep)
		}
	}
	for ep, want := range map[string]bool{
		"tasks.enqueue": false, "tasks.clone": false, "tasks.create": false, "queues.create": false,
		"queues.get_next_task": false, "tasks.get_all": true, "tasks.started": true, "events.add_batch": true,
		"tasks.get_something_new": true, "tasks.do_something_new": false,
	} {
		if got := api.Repeatable(ep); got != want {
			t.Errorf("Repeatable(%s) = %v, want %v", ep, got, want)
		}
	}
}

// onceCalls are the calls that must not be carried out twice: each makes
// one call on a queued task and reports how many of its effects the server
// holds afterwards.
var onceCalls = []struct {
	endpoint string
	call     func(ctx context.Context, c *api.Client, task string) error
	effects  func(srv *emulator.Server, task string) int
}{
	{"tasks.enqueue", func(ctx context.Context, c *api.Client, task string) error {
		_, err := c.Enqueue(ctx, api.EnqueueRequest{Task: task, QueueName: "q2"})
		return err
	}, func(srv *emulator.Server, task string) int {
		q, _ := srv.Queue("q2")
		return len(q.Entries)
	}},
	{"tasks.clone", func(ctx context.Context, c *api.Client, task string) error {
		_, err := c.Clone(ctx, api.CloneRequest{Task: task, NewTaskName: "copy"})
		return err
	}, func(srv *emulator.Server, _ string) int {
		n := 0
		for _, t := range srv.Tasks() {
			if t.Name == "copy" {
				n++
			}
		}
		return n
	}},
	{"queues.create", func(ctx context.Context, c *api.Client, _ string) error {
		_, err := c.CreateQueue(ctx, api.CreateQueueRequest{Name: "q2"})
		return err
	}, func(srv *emulator.Server, _ string) int {
		_, ok := srv.Queue("q2")
		return map[bool]int{true: 1}[ok]
	}},
}

func onceServer(t *testing.T) (*emulator.Server, string) {
	t.Helper()
	srv := emulator.New(emulator.Options{Credentials: map[string]string{"key": "secret"}})
	t.Cleanup(func() { _ = srv.Close() })
	q := srv.CreateQueue("q1")
	task := srv.CreateTask(api.Task{Name: "t", Type: "training"})
	if err := srv.Enqueue(task, q); err != nil {
		t.Fatal(err)
	}
	return srv, task
}

func onceClient(t *testing.T, host string, edit func(*api.Config)) *api.Client {
	t.Helper()
	cfg := api.Config{Host: host, AccessKey: "key", SecretKey: "secret", VerifyCertificate: true,
		MaxRetries: 4, RetryBaseDelay: time.Millisecond, RetryMaxDelay: 5 * time.Millisecond}
	if edit != nil {
		edit(&cfg)
	}
	c, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A server that carries the call out and then drops the connection: the
// client does not send it again (not even through net/http's own resend of
// a GET on a reused connection) and says so in one line.
func TestLostAnswerIsNotRepeated(t *testing.T) {
	t.Parallel()
	for _, tc := range onceCalls {
		t.Run(tc.endpoint, func(t *testing.T) {
			t.Parallel()
			srv, task := onceServer(t)
			ts := httptest.NewServer(srv.Handler())
			t.Cleanup(ts.Close)
			c := onceClient(t, ts.URL, nil)
			if _, err := c.Login(t.Context()); err != nil { // the call reuses this connection
				t.Fatal(err)
			}
			srv.DropAnswers(tc.endpoint, 1)
			err := tc.call(t.Context(), c, task)
			if !api.IsAnswerLost(err) {
				t.Fatalf("error = %v, want a lost answer (IsAnswerLost)", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, tc.endpoint+": ") || !strings.Contains(msg, "may have carried it out") {
				t.Errorf("error = %q, want one line naming %s and saying it may have been carried out", msg, tc.endpoint)
			}
			if n := srv.Requests()[tc.endpoint]; n != 1 {
				t.Errorf("%s reached the server %d times, want 1", tc.endpoint, n)
			}
			if n := tc.effects(srv, task); n != 1 {
				t.Errorf("%s carried out %d times, want 1", tc.endpoint, n)
			}
		})
	}
}

// A refused connection means the request was never sent: it is retried,
// and the call is carried out once when the server comes back.
func TestRefusedConnectionIsRetriedForOnceCalls(t *testing.T) {
	t.Parallel()
	for _, tc := range onceCalls {
		t.Run(tc.endpoint, func(t *testing.T) {
			t.Parallel()
			srv, task := onceServer(t)
			first := httptest.NewServer(srv.Handler())
			addr := first.Listener.Addr().String()
			var second *httptest.Server
			t.Cleanup(func() {
				if second != nil {
					second.Close()
				}
			})
			var retries []int
			tr := http.DefaultTransport.(*http.Transport).Clone()
			c := onceClient(t, first.URL, func(cfg *api.Config) {
				cfg.HTTPClient = &http.Client{Transport: tr}
				cfg.OnRetry = func(ep string, attempt int, err error) {
					retries = append(retries, attempt)
					if ep != tc.endpoint || api.IsAnswerLost(err) {
						t.Errorf("OnRetry(%s, %d, %v)", ep, attempt, err)
					}
					if attempt == 2 { // refused twice: the server comes back
						l, lerr := net.Listen("tcp", addr)
						if lerr != nil {
							t.Errorf("listen again on %s: %v", addr, lerr)
							return
						}
						second = &httptest.Server{Listener: l, Config: &http.Server{Handler: srv.Handler()}}
						second.Start()
					}
				}
			})
			if _, err := c.Login(t.Context()); err != nil {
				t.Fatal(err)
			}
			first.Close()
			// The kept-alive connection is gone too: a request written on it
			// before the client noticed would look like a lost answer.
			tr.CloseIdleConnections()
			if err := tc.call(t.Context(), c, task); err != nil {
				t.Fatalf("%s after refused connections: %v", tc.endpoint, err)
			}
			if !slices.Equal(retries, []int{1, 2}) {
				t.Errorf("retries = %v, want [1 2]", retries)
			}
			if n := srv.Requests()[tc.endpoint]; n != 1 {
				t.Errorf("%s reached the server %d times, want 1", tc.endpoint, n)
			}
			if n := tc.effects(srv, task); n != 1 {
				t.Errorf("%s carried out %d times, want 1", tc.endpoint, n)
			}
		})
	}
}

// 429, and 503 in a ClearML envelope, are refusals before the call was
// carried out: retried for once calls too. A proxy's 502 page may come
// after the server carried the call out: not retried for them.
func TestOnceCallsRetryOnlyRefusals(t *testing.T) {
	t.Parallel()
	srv, task := onceServer(t)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	c := onceClient(t, ts.URL, func(cfg *api.Config) { cfg.MaxRetries = 1000 })
	if _, err := c.Login(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv.SetDown(true)
	done := make(chan error, 1)
	go func() {
		_, err := c.Enqueue(context.Background(), api.EnqueueRequest{Task: task, QueueName: "q2"})
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Requests()["tasks.enqueue"] < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	srv.SetDown(false)
	if err := <-done; err != nil {
		t.Fatalf("Enqueue after 503s: %v", err)
	}
	if q, _ := srv.Queue("q2"); len(q.Entries) != 1 || srv.Requests()["tasks.enqueue"] < 2 {
		t.Errorf("after 503s: q2 entries %v, tasks.enqueue calls %d; want 1 entry after at least 2 calls", q.Entries, srv.Requests()["tasks.enqueue"])
	}

	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "tasks.clone") {
			srv.Handler().ServeHTTP(httptest.NewRecorder(), r) // carried out, answer lost at the proxy
			http.Error(w, "<html>502 Bad Gateway</html>", http.StatusBadGateway)
			return
		}
		srv.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	pc := onceClient(t, proxy.URL, nil)
	_, err := pc.Clone(t.Context(), api.CloneRequest{Task: task, NewTaskName: "copy"})
	if !api.IsAnswerLost(err) || !api.IsCode(err, 502, 0) {
		t.Fatalf("Clone through a 502 = %v, want a lost answer wrapping the 502", err)
	}
	if n := srv.Requests()["tasks.clone"]; n != 1 {
		t.Errorf("tasks.clone reached the server %d times, want 1", n)
	}
}
