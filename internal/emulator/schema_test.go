package emulator_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/apischema"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

// answer is one raw call: the HTTP status and the envelope as sent.
type answer struct {
	http int
	raw  []byte
	env  struct {
		Meta struct {
			ResultCode int    `json:"result_code"`
			ResultMsg  string `json:"result_msg"`
			Endpoint   struct {
				Name             string  `json:"name"`
				RequestedVersion string  `json:"requested_version"`
				ActualVersion    *string `json:"actual_version"`
			} `json:"endpoint"`
		} `json:"meta"`
		Data json.RawMessage `json:"data"`
	}
}

func (f *fixture) raw(method, path, auth, contentType string, body []byte) answer {
	f.t.Helper()
	req, err := http.NewRequestWithContext(f.t.Context(), method, f.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	a := answer{http: resp.StatusCode}
	if a.raw, err = io.ReadAll(resp.Body); err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	if err := json.Unmarshal(a.raw, &a.env); err != nil {
		f.t.Fatalf("%s %s: answer is not an envelope: %v: %s", method, path, err, a.raw)
	}
	return a
}

// schemaCheck checks a whole answer against internal/apischema: the
// envelope, the endpoint meta, and data against the endpoint's response at
// the version that served it.
func schemaCheck(t *testing.T, endpoint string, a answer) {
	t.Helper()
	for _, p := range apischema.Envelope.CheckJSON(a.raw) {
		t.Errorf("%s: envelope: %s", endpoint, p)
	}
	ep := a.env.Meta.Endpoint
	if ep.Name != endpoint || ep.RequestedVersion != apischema.MaxVersion {
		t.Errorf("%s: meta.endpoint name %q requested_version %q, want %q %q", endpoint, ep.Name, ep.RequestedVersion, endpoint, apischema.MaxVersion)
	}
	if a.http != 200 || a.env.Meta.ResultCode != 200 {
		t.Errorf("%s: HTTP %d, result %d %q; want 200", endpoint, a.http, a.env.Meta.ResultCode, a.env.Meta.ResultMsg)
		return
	}
	e, ok := apischema.Lookup(endpoint)
	if !ok {
		return // reported by the caller
	}
	rev, _ := e.At(apischema.MaxVersion)
	if ep.ActualVersion == nil || *ep.ActualVersion != rev.Since {
		t.Errorf("%s: meta.endpoint.actual_version %v, want %q (the revision in effect at %s)", endpoint, ep.ActualVersion, rev.Since, apischema.MaxVersion)
	}
	resp, err := apischema.Response(endpoint, apischema.MaxVersion)
	if err != nil {
		t.Error(err)
		return
	}
	for _, p := range resp.CheckJSON(a.env.Data) {
		t.Errorf("%s: data.%s", endpoint, p)
	}
}

// TestResponsesFollowTheSchema calls every endpoint of the emulator's
// routing table, on state rich enough to fill every field the emulator
// writes (full task documents, queue entries, a worker running a task, log
// events), and checks each answer against clearml-server's schema as
// internal/apischema writes it down. A served endpoint without a schema
// entry, or one this test does not call, fails it.
func TestResponsesFollowTheSchema(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{WorkerTimeout: time.Hour})
	bearer := "Bearer " + f.token
	called := map[string]int{}
	var out map[string]any
	// call sends body to endpoint (unversioned, so the emulator's newest
	// version serves it), checks the answer and decodes data into out.
	call := func(endpoint string, body any) {
		t.Helper()
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		a := f.raw(http.MethodGet, "/"+endpoint, bearer, "application/json", b)
		called[endpoint]++
		schemaCheck(t, endpoint, a)
		out = nil
		if err := json.Unmarshal(a.env.Data, &out); err != nil {
			t.Fatalf("%s: data: %v", endpoint, err)
		}
	}
	id := func() string { s, _ := out["id"].(string); return s }

	a := f.raw(http.MethodGet, "/auth.login", basic(access, secret), "", nil)
	called["auth.login"]++
	schemaCheck(t, "auth.login", a)

	call("projects.create", map[string]any{"name": "proj", "description": "all fields"})
	proj := id()
	call("projects.get_all", map[string]any{})
	call("queues.create", map[string]any{"name": "q1", "tags": []string{"gpu"}, "system_tags": []string{"default"}})
	q1 := id()
	call("queues.create", map[string]any{"name": "q2"})
	call("queues.get_default", map[string]any{})

	call("tasks.create", map[string]any{
		"name": "full", "type": "training", "project": proj, "comment": "c", "tags": []string{"a"},
		"system_tags": []string{"s"}, "output_dest": "s3://bucket/out",
		"script": map[string]any{"repository": "https://example.com/r.git", "branch": "main", "tag": "v1",
			"version_num": "abc", "entry_point": "train.py", "working_dir": ".", "binary": "python3", "diff": "",
			"requirements": map[string]any{"pip": "numpy"}},
		"execution": map[string]any{"parameters": map[string]any{"Args/lr": "0.1"}, "docker_cmd": "python:3.11",
			"framework": "pytorch", "model_labels": map[string]any{"cat": 1},
			"artifacts": []any{map[string]any{"key": "data", "type": "csv", "mode": "input", "uri": "s3://x"}}},
		"container":     map[string]any{"image": "python:3.11", "arguments": "--ipc=host", "setup_shell_script": "true"},
		"hyperparams":   map[string]any{"Args": map[string]any{"lr": map[string]any{"section": "Args", "name": "lr", "value": "0.1", "type": "float", "description": "rate"}}},
		"configuration": map[string]any{"General": map[string]any{"name": "General", "value": "{}", "type": "json", "description": "d"}},
		"models":        map[string]any{"input": []any{map[string]any{"name": "base", "model": "m1"}}, "output": []any{}},
	})
	task := id()
	call("tasks.edit", map[string]any{"task": task, "runtime": map[string]any{"gpu": "0"}, "output_dest": "s3://other",
		"script": map[string]any{"repository": "https://example.com/r.git", "entry_point": "train.py", "binary": nil}})
	call("tasks.get_by_id", map[string]any{"task": task})
	call("tasks.set_requirements", map[string]any{"task": task, "requirements": map[string]any{"pip": "numpy==2"}})
	call("tasks.get_hyper_params", map[string]any{"tasks": []string{task}})
	call("tasks.enqueue", map[string]any{"task": task, "queue": q1})
	call("queues.get_all", map[string]any{})
	call("queues.get_by_id", map[string]any{"queue": q1})

	stats := map[string]any{"cpu_usage": []float64{1.5}, "memory_used": 100, "memory_free": 200,
		"gpu_usage": []float64{50}, "gpu_memory_used": []float64{1024}, "disk_free_home": 40}
	call("workers.register", map[string]any{"worker": "host:gpu0", "queues": []string{q1}, "timeout": 600, "tags": []string{"t"}})
	call("workers.status_report", map[string]any{"worker": "host:gpu0", "timestamp": time.Now().UnixMilli(), "machine_stats": stats, "queues": []string{q1}})
	call("workers.get_all", map[string]any{}) // a queue with a task waiting: num_tasks and next_task
	call("queues.get_next_task", map[string]any{"queue": q1, "get_task_info": true})
	call("tasks.started", map[string]any{"task": task, "status_reason": "pulled"})
	call("workers.status_report", map[string]any{"worker": "host:gpu0", "timestamp": time.Now().UnixMilli(), "machine_stats": stats,
		"queues": []string{q1}, "queue": q1, "task": task})
	call("workers.get_all", map[string]any{}) // a worker running a task: task and queue objects
	call("tasks.ping", map[string]any{"task": task})

	lines := `{"type":"log","task":"` + task + `","level":"info","worker":"host:gpu0","msg":"hello","timestamp":1700000000000}` + "\n" +
		`{"type":"log","task":"` + task + `","msg":"no timestamp"}` + "\n" + `{"type":"bogus","task":"` + task + `"}` + "\n"
	a = f.raw(http.MethodPost, "/events.add_batch", bearer, "application/json-lines", []byte(lines))
	called["events.add_batch"]++
	schemaCheck(t, "events.add_batch", a)
	call("events.get_task_log", map[string]any{"task": task})

	call("tasks.stop", map[string]any{"task": task}) // run by a worker: stays in_progress, "stopping"
	call("tasks.stopped", map[string]any{"task": task, "status_reason": "user abort"})
	call("tasks.get_all", map[string]any{}) // every field the emulator writes, full documents
	call("tasks.get_all", map[string]any{"id": []string{task}, "only_fields": []string{"status", "script.repository", "company"}})
	call("tasks.reset", map[string]any{"task": task})
	call("tasks.enqueue", map[string]any{"task": task, "queue_name": "q2"})
	call("tasks.dequeue", map[string]any{"task": task})
	call("queues.add_task", map[string]any{"queue": q1, "task": task})
	call("queues.remove_task", map[string]any{"queue": q1, "task": task})
	call("tasks.started", map[string]any{"task": task})
	call("tasks.failed", map[string]any{"task": task, "status_reason": "exit code 1"})

	call("tasks.clone", map[string]any{"task": task, "new_task_name": "copy"})
	clone := id()
	call("tasks.started", map[string]any{"task": clone})
	call("tasks.completed", map[string]any{"task": clone, "publish": true})
	call("tasks.clone", map[string]any{"task": task, "new_task_name": "copy 2"})
	clone2 := id()
	call("tasks.stopped", map[string]any{"task": clone2, "force": true})
	call("tasks.close", map[string]any{"task": clone2})
	call("tasks.publish", map[string]any{"task": clone2, "force": true})
	call("tasks.get_all", map[string]any{"id": []string{task, clone, clone2}})
	call("workers.unregister", map[string]any{"worker": "host:gpu0"})

	for _, name := range emulator.Endpoints() {
		if _, ok := apischema.Lookup(name); !ok {
			t.Errorf("%s is served but has no schema entry in internal/apischema", name)
		}
		if called[name] == 0 {
			t.Errorf("%s is served but this test does not call it; add a call", name)
		}
	}
	for name := range called {
		if !slices.Contains(emulator.Endpoints(), name) {
			t.Errorf("the test called %s, which the routing table lacks", name)
		}
	}
}

// TestErrorEnvelopesFollowTheSchema: failed calls keep the envelope shape;
// actual_version is null until the endpoint is resolved, as on the real
// server, and an endpoint asked for below its first revision is not found.
func TestErrorEnvelopesFollowTheSchema(t *testing.T) {
	t.Parallel()
	f := newFixture(t, emulator.Options{})
	bearer := "Bearer " + f.token
	for _, tc := range []struct {
		path, body string
		code       int
		actual     string // "" = null
		msg        string
	}{
		{"/tasks.get_by_id", `{"task":"nope"}`, 400, "2.1", "Invalid task id"},
		{"/v2.5/tasks.get_by_id", `{}`, 400, "2.1", "field is required"},
		{"/v2.5/tasks.get_hyper_params", `{"tasks":["x"]}`, 404, "", "Unable to find endpoint for name tasks.get_hyper_params and version 2.5"},
		{"/workers.set_runtime_properties", `{}`, 404, "", "Unable to find endpoint"},
		{"/v2.20/tasks.dequeue", `{"task":"nope"}`, 400, "1.5", "Invalid task id"},
		{"/v9.1/queues.get_default", `{}`, 400, "2.4", "No queue is tagged"},
	} {
		a := f.raw(http.MethodGet, tc.path, bearer, "application/json", []byte(tc.body))
		for _, p := range apischema.Envelope.CheckJSON(a.raw) {
			t.Errorf("%s: envelope: %s", tc.path, p)
		}
		got := ""
		if v := a.env.Meta.Endpoint.ActualVersion; v != nil {
			got = *v
		}
		if a.http != tc.code || a.env.Meta.ResultCode != tc.code || got != tc.actual || !strings.Contains(a.env.Meta.ResultMsg, tc.msg) {
			t.Errorf("%s: HTTP %d, %d %q, actual_version %q; want %d containing %q, actual_version %q",
				tc.path, a.http, a.env.Meta.ResultCode, a.env.Meta.ResultMsg, got, tc.code, tc.msg, tc.actual)
		}
	}
}
