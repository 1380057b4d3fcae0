package emulator_test

import (
	"bytes"
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

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

const (
	access = "ACCESSKEY"
	secret = "SECRETKEY"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	srv   *emulator.Server
	ts    *httptest.Server
	clock *clock
	token string
}

func newFixture(t *testing.T, opts emulator.Options) *fixture {
	t.Helper()
	clk := &clock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	if opts.Credentials == nil {
		opts.Credentials = map[string]string{access: secret}
	}
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	srv := emulator.New(opts)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	f := &fixture{t: t, srv: srv, ts: ts, clock: clk}
	f.token = f.login(access, secret)
	return f
}

type result struct {
	HTTP int
	Meta struct {
		ResultCode    int    `json:"result_code"`
		ResultSubcode int    `json:"result_subcode"`
		ResultMsg     string `json:"result_msg"`
		Endpoint      struct {
			Name             string `json:"name"`
			RequestedVersion string `json:"requested_version"`
			ActualVersion    string `json:"actual_version"`
		} `json:"endpoint"`
		ID         string `json:"id"`
		ErrorStack any    `json:"error_stack"`
	} `json:"meta"`
	Data json.RawMessage `json:"data"`
}

func (r result) decode(t *testing.T, out any) {
	t.Helper()
	if err := json.Unmarshal(r.Data, out); err != nil {
		t.Fatalf("decoding data %s: %v", r.Data, err)
	}
}

func (f *fixture) do(method, path, auth, contentType string, body []byte) result {
	f.t.Helper()
	req, err := http.NewRequestWithContext(f.t.Context(), method, f.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r result
	if err := json.Unmarshal(raw, &r); err != nil {
		f.t.Fatalf("%s %s: response is not an envelope: %v: %s", method, path, err, raw)
	}
	r.HTTP = resp.StatusCode
	return r
}

// call sends a GET with a JSON body, as the Python agent does by default.
func (f *fixture) call(endpoint string, body any) result {
	f.t.Helper()
	b, _ := json.Marshal(body)
	return f.do(http.MethodGet, "/"+endpoint, "Bearer "+f.token, "application/json", b)
}

// ok calls and fails the test unless the result is 200.
func (f *fixture) ok(endpoint string, body any, out any) {
	f.t.Helper()
	r := f.call(endpoint, body)
	if r.HTTP != 200 || r.Meta.ResultCode != 200 {
		f.t.Fatalf("%s %v: got %d/%d %q, want 200", endpoint, body, r.Meta.ResultCode, r.Meta.ResultSubcode, r.Meta.ResultMsg)
	}
	if out != nil {
		r.decode(f.t, out)
	}
}

func basic(a, s string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(a+":"+s))
}

func (f *fixture) login(a, s string) string {
	f.t.Helper()
	r := f.do(http.MethodGet, "/auth.login", basic(a, s), "", nil)
	var d struct{ Token string }
	r.decode(f.t, &d)
	if r.HTTP != 200 || d.Token == "" {
		f.t.Fatalf("auth.login: got %d %q, no token", r.HTTP, r.Meta.ResultMsg)
	}
	return d.Token
}

func wantErr(t *testing.T, r result, code, subcode int, msgPart string) {
	t.Helper()
	if r.HTTP != code || r.Meta.ResultCode != code || r.Meta.ResultSubcode != subcode || !strings.Contains(r.Meta.ResultMsg, msgPart) {
		t.Errorf("got HTTP %d, %d/%d %q; want %d/%d containing %q",
			r.HTTP, r.Meta.ResultCode, r.Meta.ResultSubcode, r.Meta.ResultMsg, code, subcode, msgPart)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{TokenTTL: time.Hour})

	wantErr(t, f.do("GET", "/auth.login", "", "", nil), 401, 20, "Unauthorized (missing credentials)")
	wantErr(t, f.do("GET", "/auth.login", basic(access, "wrong"), "", nil), 401, 22, "Unauthorized (invalid credentials)")
	wantErr(t, f.do("GET", "/auth.login", basic("nobody", secret), "", nil), 401, 22, "Unauthorized (invalid credentials)")
	wantErr(t, f.do("GET", "/tasks.get_all", "", "", nil), 401, 20, "missing credentials")
	wantErr(t, f.do("GET", "/tasks.get_all", "Bearer garbage", "", nil), 401, 30, "Invalid token")

	// The claims the Python agent reads without verification.
	parts := strings.Split(f.token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", f.token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"api_version", "server_version", "feature_set", "exp", "iat", "identity"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("claim %q missing from %v", k, claims)
		}
	}
	if claims["feature_set"] != "basic" || claims["api_version"] != "2.31" {
		t.Errorf("claims %v: want feature_set basic, api_version 2.31", claims)
	}
	id, _ := claims["identity"].(map[string]any)
	for _, k := range []string{"user", "company", "role"} {
		if id[k] == "" || id[k] == nil {
			t.Errorf("identity.%s missing: %v", k, id)
		}
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 3600 {
		t.Errorf("exp-iat = %v, want 3600 (TokenTTL)", exp-iat)
	}

	// Token mode: a Bearer token logs in again.
	r := f.do("GET", "/auth.login?expiration_sec=60", "Bearer "+f.token, "", nil)
	var d struct{ Token string }
	r.decode(t, &d)
	if r.HTTP != 200 || d.Token == "" {
		t.Fatalf("token-mode login: %d %q", r.HTTP, r.Meta.ResultMsg)
	}
	short := d.Token
	f.clock.Advance(2 * time.Minute)
	wantErr(t, f.do("GET", "/queues.get_all", "Bearer "+short, "", nil), 401, 30, "Invalid token (token expired)")
	if r := f.call("queues.get_all", map[string]any{}); r.HTTP != 200 {
		t.Errorf("long token after 2m: %d %q", r.HTTP, r.Meta.ResultMsg)
	}

	f.srv.AddCredentials("K2", "S2")
	f.login("K2", "S2")
}

func TestEnvelopeAndRouting(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	auth := "Bearer " + f.token

	r := f.do("POST", "/v2.5/queues.create", auth, "application/json", []byte(`{"name":"q1"}`))
	if r.HTTP != 200 || r.Meta.ResultMsg != "OK" || r.Meta.ResultSubcode != 0 || r.Meta.ID == "" || r.Meta.ErrorStack != nil {
		t.Fatalf("versioned POST: %+v", r.Meta)
	}
	// actual_version is the schema revision that served the call (queues.create: 2.4).
	if got, want := r.Meta.Endpoint.Name+" "+r.Meta.Endpoint.RequestedVersion+" "+r.Meta.Endpoint.ActualVersion, "queues.create 2.5 2.4"; got != want {
		t.Errorf("endpoint meta = %q, want %q", got, want)
	}
	r = f.do("GET", "/queues.get_all", auth, "application/json", []byte(`{"name":"^q1$"}`))
	var qs struct{ Queues []api.Queue }
	r.decode(t, &qs)
	if len(qs.Queues) != 1 || r.Meta.Endpoint.RequestedVersion != "2.31" {
		t.Errorf("unversioned GET: queues %+v, requested_version %q", qs.Queues, r.Meta.Endpoint.RequestedVersion)
	}

	wantErr(t, f.do("GET", "/workers.set_runtime_properties", auth, "", nil), 404, 0,
		"Unable to find endpoint for name workers.set_runtime_properties")
	wantErr(t, f.do("GET", "/not-a-path", auth, "", nil), 400, 0, "Invalid request path")
	wantErr(t, f.do("GET", "/tasks.get_by_id", auth, "", []byte(`{not json`)), 400, 12, "Validation error")
	wantErr(t, f.call("tasks.get_by_id", map[string]any{}), 400, 12, "error for field 'task'. field is required!")
	wantErr(t, f.call("tasks.get_by_id", map[string]any{"task": "nope"}), 400, 101, "Invalid task id: id=nope")
	wantErr(t, f.call("queues.get_next_task", map[string]any{"queue": "nope"}), 400, 701, "Invalid queue id: id=nope")
	wantErr(t, f.call("tasks.create", map[string]any{"name": "x", "type": "bogus"}), 400, 12, "'type'")
	wantErr(t, f.call("queues.create", map[string]any{"name": "q1"}), 400, 801, "name=q1")
	wantErr(t, f.call("queues.get_default", map[string]any{}), 400, 707, "default queue")
	f.srv.CreateQueue("default")
	var def struct{ ID, Name string }
	f.ok("queues.get_default", map[string]any{}, &def)
	if def.Name != "default" {
		t.Errorf("get_default = %+v", def)
	}

	counts := f.srv.Requests()
	if counts["queues.create"] != 2 || counts["auth.login"] != 1 || counts["tasks.get_by_id"] != 3 {
		t.Errorf("Requests() = %v", counts)
	}
}

// statusCall moves a task to a status through the endpoint an agent or UI
// would use.
func statusCall(f *fixture, task, queue, to string, force bool) result {
	body := map[string]any{"task": task, "force": force}
	switch to {
	case api.StatusQueued:
		body["queue"] = queue
		return f.call("tasks.enqueue", body)
	case api.StatusInProgress:
		return f.call("tasks.started", body)
	case api.StatusStopped:
		return f.call("tasks.stopped", body)
	case api.StatusFailed:
		return f.call("tasks.failed", body)
	case api.StatusCompleted:
		return f.call("tasks.completed", body)
	case api.StatusClosed:
		return f.call("tasks.close", body)
	case api.StatusPublished:
		return f.call("tasks.publish", body)
	}
	panic(to)
}

func TestStateMachineTable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	q := f.srv.CreateQueue("q")
	from := []string{api.StatusCreated, api.StatusQueued, api.StatusInProgress, api.StatusStopped, api.StatusClosed,
		api.StatusFailed, api.StatusCompleted, api.StatusPublishing, api.StatusPublished}
	to := []string{api.StatusQueued, api.StatusInProgress, api.StatusStopped, api.StatusFailed, api.StatusCompleted,
		api.StatusClosed, api.StatusPublished}
	// Independent statement of reference section 9's table.
	allowed := map[string]string{
		api.StatusCreated:    "queued in_progress",
		api.StatusQueued:     "created in_progress stopped",
		api.StatusInProgress: "stopped failed created completed",
		api.StatusStopped:    "closed created failed queued in_progress published publishing completed",
		api.StatusClosed:     "created failed published publishing stopped",
		api.StatusFailed:     "created stopped published queued",
		api.StatusCompleted:  "published in_progress created",
		api.StatusPublishing: "published",
		api.StatusPublished:  "",
	}
	for _, a := range from {
		for _, b := range to {
			want := a == b || strings.Contains(" "+allowed[a]+" ", " "+b+" ")
			if got := emulator.AllowedTransition(a, b); got != want {
				t.Errorf("AllowedTransition(%s, %s) = %v, want %v", a, b, got, want)
			}
			id := f.srv.CreateTask(api.Task{Name: a + "->" + b, Status: a})
			r := statusCall(f, id, q, b, false)
			if want {
				if r.HTTP != 200 {
					t.Errorf("%s -> %s: got %d %q, want OK", a, b, r.HTTP, r.Meta.ResultMsg)
					continue
				}
				if got := f.srv.Task(id); got.Status != b || got.StatusChanged == "" || got.LastUpdate == "" {
					t.Errorf("%s -> %s: task now %+v", a, b, got)
				}
			} else {
				wantErr(t, r, 400, 110, "current_status="+a+", new_status="+b)
				if got := f.srv.Task(id).Status; got != a {
					t.Errorf("%s -> %s rejected but status is now %s", a, b, got)
				}
				// force skips validation.
				if r := statusCall(f, id, q, b, true); r.HTTP != 200 || f.srv.Task(id).Status != b {
					t.Errorf("%s -> %s with force: %d %q", a, b, r.HTTP, r.Meta.ResultMsg)
				}
			}
		}
	}
}

func TestStatusFields(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	var created struct{ ID string }
	f.ok("tasks.create", map[string]any{"name": "t", "type": "training",
		"script": map[string]any{"repository": "https://example.com/r.git", "entry_point": "train.py"}}, &created)
	id := created.ID
	f.ok("tasks.started", map[string]any{"task": id, "status_message": "pulled by agent", "force": true}, nil)
	first := f.srv.Task(id).Started
	f.clock.Advance(time.Minute)
	f.ok("tasks.started", map[string]any{"task": id, "status_message": "launch by agent", "force": true}, nil)
	doc := f.srv.TaskDoc(id)
	if doc["started"] != first || first == "" {
		t.Errorf("started moved: %v then %v", first, doc["started"])
	}
	if doc["status_message"] != "launch by agent" || doc["last_changed_by"] == "" {
		t.Errorf("doc after started: %v", doc)
	}
	f.ok("tasks.completed", map[string]any{"task": id, "status_reason": "worker execution done",
		"status_message": "Changed by clearml-agent w"}, nil)
	got := f.srv.Task(id)
	if diff := cmp.Diff("completed|worker execution done|Changed by clearml-agent w",
		got.Status+"|"+got.StatusReason+"|"+got.StatusMessage); diff != "" {
		t.Errorf("after completed (-want +got):\n%s", diff)
	}
}

func TestEditCloneGetAll(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	id := f.srv.CreateTask(api.Task{Name: "src", Script: &api.Script{Repository: "r", EntryPoint: "e.py"},
		Container: &api.Container{Image: "python:3"}, Runtime: map[string]any{"a": "b"}})
	f.ok("tasks.edit", map[string]any{"task": id, "comment": "hi", "execution": map[string]any{"docker_cmd": "x"}}, nil)
	if got := f.srv.Task(id); got.Comment != "hi" || got.Execution.DockerCmd != "x" {
		t.Errorf("after edit: %+v", got)
	}
	wantErr(t, f.call("tasks.edit", map[string]any{"task": id, "status": "completed"}), 400, 12, "'status'")
	// As the server, an embedded document (script) is merged one level
	// deep: the agent's {version_num, binary: null} keeps the repository.
	f.ok("tasks.edit", map[string]any{"task": id, "force": true, "script": map[string]any{"version_num": "abc123", "binary": nil}}, nil)
	if got := f.srv.Task(id).Script; got == nil || got.Repository != "r" || got.EntryPoint != "e.py" || got.VersionNum != "abc123" {
		t.Errorf("script after a partial edit: %+v", got)
	}

	var clone struct{ ID string }
	f.ok("tasks.clone", map[string]any{"task": id, "new_task_name": "copy"}, &clone)
	c := f.srv.Task(clone.ID)
	if c.Name != "copy" || c.Status != "created" || c.Script == nil || c.Script.EntryPoint != "e.py" ||
		c.Container == nil || c.Container.Image != "python:3" || c.Execution.DockerCmd != "x" {
		t.Errorf("clone: %+v", c)
	}

	f.ok("tasks.started", map[string]any{"task": id}, nil)
	wantErr(t, f.call("tasks.edit", map[string]any{"task": id, "comment": "no"}), 400, 110, "expected=created, status=in_progress")
	f.ok("tasks.edit", map[string]any{"task": id, "force": true, "runtime": map[string]any{"_exec_agent_hostname": "h"}}, nil)

	var all struct{ Tasks []map[string]any }
	f.ok("tasks.get_all", map[string]any{"id": []string{id}, "only_fields": []string{"runtime", "script.entry_point", "status"},
		"search_hidden": true}, &all)
	want := []map[string]any{{"id": id, "status": "in_progress", "runtime": map[string]any{"_exec_agent_hostname": "h"},
		"script": map[string]any{"entry_point": "e.py"}}}
	if diff := cmp.Diff(want, all.Tasks); diff != "" {
		t.Errorf("projection (-want +got):\n%s", diff)
	}

	hid := f.srv.CreateTask(api.Task{Name: "hidden one", SystemTags: []string{"hidden"}})
	f.ok("tasks.get_all", map[string]any{"name": "hidden"}, &all)
	if len(all.Tasks) != 0 {
		t.Errorf("hidden task listed without search_hidden: %v", all.Tasks)
	}
	f.ok("tasks.get_all", map[string]any{"name": "HIDDEN", "search_hidden": true, "only_fields": []string{"name"}}, &all)
	if len(all.Tasks) != 1 || all.Tasks[0]["id"] != hid {
		t.Errorf("search_hidden: %v", all.Tasks)
	}
	f.ok("tasks.set_requirements", map[string]any{"task": id, "requirements": map[string]any{"pip": "numpy==2.0"}}, nil)
	if got := f.srv.Task(id).Script.Requirements; got == nil || got.Pip != "numpy==2.0" {
		t.Errorf("requirements: %+v", got)
	}
}

func TestEnqueueDequeue(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	q1, q2 := f.srv.CreateQueue("q1"), f.srv.CreateQueue("q2")
	id := f.srv.CreateTask(api.Task{Name: "t"})
	if err := f.srv.Enqueue(id, q1); err != nil {
		t.Fatal(err)
	}
	f.ok("tasks.enqueue", map[string]any{"task": id, "queue_name": "q2"}, nil)
	got := f.srv.Task(id)
	if got.Status != "queued" || got.EnqueueStatus != "created" || got.Execution.Queue != q2 {
		t.Errorf("after enqueue: %+v", got)
	}
	if q, _ := f.srv.Queue(q1); len(q.Entries) != 0 {
		t.Errorf("q1 still has %v", q.Entries)
	}
	if q, _ := f.srv.Queue("q2"); len(q.Entries) != 1 || q.Entries[0].Task != id {
		t.Errorf("q2 entries %v", q.Entries)
	}
	var dq struct{ Dequeued, Updated int }
	f.ok("tasks.dequeue", map[string]any{"task": id}, &dq)
	if got := f.srv.Task(id); got.Status != "created" || dq.Dequeued != 1 || dq.Updated != 1 {
		t.Errorf("after dequeue: %+v %+v", got, dq)
	}

	done := f.srv.CreateTask(api.Task{Name: "done", Status: "completed"})
	wantErr(t, f.call("tasks.enqueue", map[string]any{"task": done, "queue": q1}), 400, 110, "new_status=queued")

	// queue_name of a missing queue creates it.
	f.ok("tasks.enqueue", map[string]any{"task": id, "queue_name": "fresh"}, nil)
	if _, ok := f.srv.Queue("fresh"); !ok {
		t.Error("queue_name did not create the queue")
	}
	var reset struct{ Updated int }
	f.ok("tasks.reset", map[string]any{"task": id}, &reset)
	if got := f.srv.Task(id); got.Status != "created" || (got.Execution != nil && got.Execution.Queue != "") {
		t.Errorf("after reset: %+v", got)
	}
}

func TestGetNextTask(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	q := f.srv.CreateQueue("q")
	var empty map[string]any
	f.ok("queues.get_next_task", map[string]any{"queue": q}, &empty)
	if len(empty) != 0 {
		t.Errorf("empty queue gave %v", empty)
	}
	a := f.srv.CreateTask(api.Task{Name: "a"})
	b := f.srv.CreateTask(api.Task{Name: "b"})
	for _, id := range []string{a, b} {
		if err := f.srv.Enqueue(id, q); err != nil {
			t.Fatal(err)
		}
	}
	// An abort racing the enqueue: stopped task still in the queue.
	f.ok("tasks.stopped", map[string]any{"task": a, "force": true}, nil)
	var next struct {
		Entry    api.QueueEntry
		TaskInfo map[string]string `json:"task_info"`
	}
	f.ok("queues.get_next_task", map[string]any{"queue": q, "get_task_info": true}, &next)
	if next.Entry.Task != a || next.Entry.Added == "" || next.TaskInfo["company"] == "" {
		t.Errorf("first pop: %+v", next)
	}
	if st := f.srv.Task(a).Status; st != "queued" {
		t.Errorf("popped stopped task has status %s, want queued", st)
	}
	f.ok("queues.get_next_task", map[string]any{"queue": q}, &next)
	if next.Entry.Task != b || f.srv.Task(b).Status != "queued" {
		t.Errorf("second pop: %+v, status %s", next, f.srv.Task(b).Status)
	}
}

func TestConcurrentPop(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	q := f.srv.CreateQueue("q")
	const n = 120
	for i := range n {
		if err := f.srv.Enqueue(f.srv.CreateTask(api.Task{Name: fmt.Sprint(i)}), q); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				b, _ := json.Marshal(map[string]any{"queue": q})
				req, _ := http.NewRequestWithContext(t.Context(), "GET", f.ts.URL+"/queues.get_next_task", bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+f.token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var env struct {
					Data struct {
						Entry *api.QueueEntry
					}
				}
				err = json.NewDecoder(resp.Body).Decode(&env)
				resp.Body.Close()
				if err != nil {
					t.Error(err)
					return
				}
				if env.Data.Entry == nil {
					return
				}
				mu.Lock()
				seen[env.Data.Entry.Task]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("popped %d distinct tasks, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("task %s popped %d times", id, c)
		}
	}
}

func TestStop(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	q := f.srv.CreateQueue("q")

	queued := f.srv.CreateTask(api.Task{Name: "queued"})
	if err := f.srv.Enqueue(queued, q); err != nil {
		t.Fatal(err)
	}
	f.ok("tasks.stop", map[string]any{"task": queued}, nil)
	if got, _ := f.srv.Queue(q); f.srv.Task(queued).Status != "stopped" || len(got.Entries) != 0 {
		t.Errorf("stop of queued task: %+v, queue %v", f.srv.Task(queued), got.Entries)
	}

	// Run by a worker: stays in_progress with "stopping".
	running := f.srv.CreateTask(api.Task{Name: "running"})
	f.ok("tasks.started", map[string]any{"task": running}, nil)
	f.ok("workers.status_report", map[string]any{"worker": "host:gpu0", "timestamp": 1, "task": running,
		"machine_stats": map[string]any{"cpu_usage": []float64{1}}}, nil)
	if got := f.srv.Task(running).LastWorker; got != "host:gpu0" {
		t.Errorf("last_worker = %q", got)
	}
	f.ok("tasks.stop", map[string]any{"task": running}, nil)
	if got := f.srv.Task(running); got.Status != "in_progress" || got.StatusMessage != "stopping" {
		t.Errorf("stop of worker-run task: %+v", got)
	}
	// The agent then reports stopped.
	f.ok("tasks.stopped", map[string]any{"task": running, "status_reason": "task was stopped by tasks.stop"}, nil)
	if got := f.srv.Task(running).Status; got != "stopped" {
		t.Errorf("after agent stopped: %s", got)
	}

	// Stale last_update: stopped directly.
	stale := f.srv.CreateTask(api.Task{Name: "stale"})
	f.ok("tasks.started", map[string]any{"task": stale}, nil)
	f.ok("workers.status_report", map[string]any{"worker": "w", "timestamp": 1, "task": stale}, nil)
	f.clock.Advance(emulator.TaskUpdateTimeout + time.Second)
	f.ok("tasks.stop", map[string]any{"task": stale}, nil)
	if got := f.srv.Task(stale).Status; got != "stopped" {
		t.Errorf("stale task: %s, want stopped", got)
	}
	// No worker at all: stopped directly; ping touches last_update only.
	lone := f.srv.CreateTask(api.Task{Name: "lone"})
	f.ok("tasks.started", map[string]any{"task": lone}, nil)
	before := f.srv.Task(lone)
	f.clock.Advance(time.Second)
	f.ok("tasks.ping", map[string]any{"task": lone}, nil)
	if after := f.srv.Task(lone); after.LastUpdate == before.LastUpdate || after.StatusChanged != before.StatusChanged {
		t.Errorf("ping: before %+v after %+v", before, after)
	}
	if err := f.srv.Stop(lone); err != nil {
		t.Fatal(err)
	}
	if got := f.srv.Task(lone).Status; got != "stopped" {
		t.Errorf("lone task: %s", got)
	}
}

func TestWorkers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{WorkerTimeout: time.Minute})
	q := f.srv.CreateQueue("q")
	f.ok("workers.register", map[string]any{"worker": "a:gpu0", "queues": []string{q}}, nil)
	f.ok("workers.status_report", map[string]any{"worker": "b:gpu1", "timestamp": time.Now().UnixMilli()}, nil) // auto-registers
	f.ok("workers.unregister", map[string]any{"worker": "never-seen"}, nil)
	ws := f.srv.Workers()
	if len(ws) != 2 || ws[0].ID != "a:gpu0" || ws[1].ID != "b:gpu1" {
		t.Fatalf("Workers() = %+v", ws)
	}
	var queues []map[string]any
	if err := json.Unmarshal(ws[0].Queues, &queues); err != nil || len(queues) != 1 || queues[0]["name"] != "q" {
		t.Errorf("queues of a:gpu0 = %s (%v)", ws[0].Queues, err)
	}
	f.clock.Advance(30 * time.Second)
	f.ok("workers.status_report", map[string]any{"worker": "b:gpu1", "timestamp": 1}, nil)
	var all struct{ Workers []api.Worker }
	f.ok("workers.get_all", map[string]any{"last_seen": 10}, &all)
	if len(all.Workers) != 1 || all.Workers[0].ID != "b:gpu1" {
		t.Errorf("last_seen 10: %+v", all.Workers)
	}
	f.ok("workers.get_all", map[string]any{"worker_pattern": "a:gpu*"}, &all)
	if len(all.Workers) != 1 || all.Workers[0].ID != "a:gpu0" {
		t.Errorf("pattern: %+v", all.Workers)
	}
	f.clock.Advance(45 * time.Second) // a:gpu0 idle 75 s > 60 s timeout
	if ws := f.srv.Workers(); len(ws) != 1 || ws[0].ID != "b:gpu1" {
		t.Errorf("after expiry: %+v", ws)
	}
	f.ok("workers.unregister", map[string]any{"worker": "b:gpu1"}, nil)
	if ws := f.srv.Workers(); len(ws) != 0 {
		t.Errorf("after unregister: %+v", ws)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	id := f.srv.CreateTask(api.Task{Name: "t"})
	var lines bytes.Buffer
	msgs := []string{"third\n", "first\n", "second\n"}
	for i, m := range msgs {
		b, _ := json.Marshal(api.Event{Type: "log", Level: "DEBUG", Task: id, Worker: "w", Msg: m, Timestamp: int64(1000 + i)})
		lines.Write(b)
		lines.WriteByte('\n')
	}
	bad, _ := json.Marshal(api.Event{Type: "log", Task: "missing", Msg: "x", Timestamp: 5})
	lines.Write(bad)
	r := f.do("POST", "/events.add_batch", "Bearer "+f.token, "application/json-lines", lines.Bytes())
	var res struct{ Added, Errors int }
	r.decode(t, &res)
	if r.HTTP != 200 || res.Added != 3 || res.Errors != 1 {
		t.Fatalf("add_batch: %d %q %+v", r.HTTP, r.Meta.ResultMsg, res)
	}
	arr, _ := json.Marshal([]api.Event{{Type: "log", Level: "INFO", Task: id, Msg: "fourth", Timestamp: 2000}})
	r = f.do("POST", "/events.add_batch", "Bearer "+f.token, "application/json", arr)
	r.decode(t, &res)
	if res.Added != 1 {
		t.Fatalf("array body: %+v %q", res, r.Meta.ResultMsg)
	}
	wantErr(t, f.do("POST", "/events.add_batch", "Bearer "+f.token, "application/json-lines", nil), 400, 17, "no items")

	var got []string
	for _, e := range f.srv.TaskLog(id) {
		got = append(got, e.Msg)
	}
	if diff := cmp.Diff([]string{"third\n", "first\n", "second\n", "fourth"}, got); diff != "" {
		t.Errorf("TaskLog order (-want +got):\n%s", diff)
	}

	var page struct {
		Events          []api.Event
		Returned, Total int
	}
	f.ok("events.get_task_log", map[string]any{"task": id, "batch_size": 2}, &page)
	if page.Returned != 2 || page.Total != 4 || page.Events[0].Msg != "fourth" || page.Events[1].Msg != "second\n" {
		t.Errorf("latest page: %+v", page)
	}
	f.ok("events.get_task_log", map[string]any{"task": id, "batch_size": 10, "navigate_earlier": false, "from_timestamp": 1000}, &page)
	if page.Returned != 3 || page.Events[0].Msg != "first\n" || page.Events[2].Msg != "fourth" {
		t.Errorf("forward page: %+v", page)
	}
}

func TestOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	f.srv.SetDown(true)
	wantErr(t, f.call("queues.get_all", map[string]any{}), 503, 0, "unavailable")
	f.srv.SetOutage(emulator.OutageReset)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", f.ts.URL+"/queues.get_all", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("OutageReset: got HTTP %d, want a connection error", resp.StatusCode)
	}
	f.srv.SetDown(false)
	f.ok("queues.get_all", map[string]any{}, nil)
}

func TestSnapshotRestart(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/state.json"
	f := newFixture(t, emulator.Options{SnapshotPath: path})
	q := f.srv.CreateQueue("q")
	id := f.srv.CreateTask(api.Task{Name: "persisted"})
	if err := f.srv.Enqueue(id, q); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(api.Event{Type: "log", Task: id, Msg: "hello", Timestamp: 7})
	f.do("POST", "/events.add_batch", "Bearer "+f.token, "application/json-lines", b)
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}

	again := emulator.New(emulator.Options{SnapshotPath: path, Now: f.clock.Now})
	defer again.Close()
	ts := httptest.NewServer(again.Handler())
	defer ts.Close()
	if got := again.Task(id); got.Name != "persisted" || got.Status != "queued" || got.Execution.Queue != q {
		t.Errorf("task after restart: %+v", got)
	}
	if qq, ok := again.Queue("q"); !ok || len(qq.Entries) != 1 {
		t.Errorf("queue after restart: %+v", qq)
	}
	if log := again.TaskLog(id); len(log) != 1 || log[0].Msg != "hello" || log[0].Timestamp != 7 {
		t.Errorf("log after restart: %+v", log)
	}
	// The old token still works: the signing key is in the snapshot.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", ts.URL+"/queues.get_next_task",
		strings.NewReader(`{"queue":"`+q+`"}`))
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Data struct{ Entry api.QueueEntry }
	}
	_ = json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	if resp.StatusCode != 200 || env.Data.Entry.Task != id {
		t.Errorf("pop after restart: %d %+v", resp.StatusCode, env)
	}
}

// DropAnswers: the call is carried out (the entry is popped), then its
// connection closes without an answer; the next call answers as usual.
func TestDropAnswers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	q := f.srv.CreateQueue("q")
	id := f.srv.CreateTask(api.Task{Name: "popped"})
	if err := f.srv.Enqueue(id, q); err != nil {
		t.Fatal(err)
	}
	f.srv.DropAnswers("queues.get_next_task", 1)
	b, _ := json.Marshal(map[string]any{"queue": q})
	req, _ := http.NewRequestWithContext(t.Context(), "POST", f.ts.URL+"/queues.get_next_task", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+f.token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped answer: got HTTP %d, want a connection error", resp.StatusCode)
	}
	if got, _ := f.srv.Queue(q); len(got.Entries) != 0 {
		t.Errorf("queue entries after the dropped pop = %v, want none (carried out)", got.Entries)
	}
	if st := f.srv.Task(id).Status; st != api.StatusQueued {
		t.Errorf("popped task status = %q, want queued", st)
	}
	var next struct {
		Entry *struct{ Task string } `json:"entry"`
	}
	f.ok("queues.get_next_task", map[string]any{"queue": q}, &next)
	if next.Entry != nil {
		t.Errorf("second pop = %+v, want an answered empty pop", next.Entry)
	}
}
