package api

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestQueuesByName(t *testing.T) {
	f := newFake(t)
	f.handle("queues.get_all", func(recorded) reply {
		return reply{Data: map[string]any{"queues": []map[string]any{
			{"id": "1", "name": "gpu.a"}, {"id": "2", "name": "GPU.A"}, {"id": "3", "name": "gpu.a-big"},
		}}}
	})
	c := f.client(t, nil)
	got, err := c.QueuesByName(t.Context(), "gpu.a")
	if err != nil {
		t.Fatal(err)
	}
	want := []Queue{{ID: "1", Name: "gpu.a"}, {ID: "2", Name: "GPU.A"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("queues (-want +got):\n%s", d)
	}
	r := f.requests()[0]
	var body map[string]any
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
		t.Fatal(err)
	}
	wantBody := map[string]any{"name": `gpu\.a`, "only_fields": []any{"id", "name"}, "search_hidden": true}
	if d := cmp.Diff(wantBody, body); d != "" || r.Path != "/v2.21/queues.get_all" {
		t.Errorf("%s body (-want +got):\n%s", r.Path, d)
	}
}

func TestGetTaskLogAndWorkers(t *testing.T) {
	f := newFake(t)
	f.handle("events.get_task_log", func(recorded) reply {
		return reply{Data: map[string]any{"events": []map[string]any{
			{"type": "log", "task": "t1", "level": "DEBUG", "msg": "hi", "timestamp": 5, "worker": "w", "@timestamp": "x"},
		}, "returned": 1, "total": 7}}
	})
	f.handle("workers.get_all", func(recorded) reply {
		return reply{Data: map[string]any{"workers": []map[string]any{{"id": "host:gpu0", "queue": map[string]any{"id": "q", "name": "q"}}}}}
	})
	c := f.client(t, nil)
	earlier := true
	log, err := c.GetTaskLog(t.Context(), GetTaskLogRequest{Task: "t1", BatchSize: 100, NavigateEarlier: &earlier})
	if err != nil {
		t.Fatal(err)
	}
	want := TaskLog{Events: []Event{{Type: "log", Task: "t1", Level: "DEBUG", Msg: "hi", Timestamp: 5, Worker: "w"}}, Returned: 1, Total: 7}
	if d := cmp.Diff(want, log); d != "" {
		t.Errorf("log (-want +got):\n%s", d)
	}
	ws, err := c.GetAllWorkers(t.Context(), GetAllWorkersRequest{LastSeen: 600})
	if err != nil || len(ws) != 1 || ws[0].ID != "host:gpu0" {
		t.Errorf("GetAllWorkers = %+v, %v", ws, err)
	}
	reqs := f.requests()
	if reqs[0].Path != "/v2.9/events.get_task_log" || reqs[0].Body != `{"task":"t1","batch_size":100,"navigate_earlier":true}` {
		t.Errorf("get_task_log: %s %s", reqs[0].Path, reqs[0].Body)
	}
	if reqs[1].Body != `{"last_seen":600}` {
		t.Errorf("workers.get_all body = %s", reqs[1].Body)
	}
}

// BenchmarkCall prints the cost of one typed call against a local server.
func BenchmarkCall(b *testing.B) {
	f := newFake(b)
	f.handle("tasks.ping", func(recorded) reply { return reply{} })
	c, err := New(Config{Host: f.srv.URL, AccessKey: "key", SecretKey: "secret"})
	if err != nil {
		b.Fatal(err)
	}
	c.now = f.clock
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Ping(b.Context(), "t1"); err != nil {
			b.Fatal(err)
		}
	}
}
