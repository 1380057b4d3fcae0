package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/apischema"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

var endpointName = regexp.MustCompile(`^[a-z]+\.[a-z_]+$`)

// calledEndpoints reads this package's source and returns every endpoint
// name passed to the methods that send requests (Call, call, status, send):
// the endpoints the client calls.
func calledEndpoints(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	senders := []string{"Call", "call", "status", "send"}
	var out []string
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !slices.Contains(senders, sel.Sel.Name) {
				return true
			}
			for _, a := range call.Args {
				if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && endpointName.MatchString(s) && !slices.Contains(out, s) {
						out = append(out, s)
					}
				}
			}
			return true
		})
	}
	slices.Sort(out)
	return out
}

// sentRequest is one request as it left the client.
type sentRequest struct {
	path string
	body []byte
}

// fill sets every exported field of the value v points to (nested structs,
// pointers, slices, maps included) to a non-zero value, so that no field is
// left out of the JSON by omitempty. Where the schema type t has an enum,
// the first allowed value is used, so that only a field name or type the
// schema lacks makes the check fail.
func fill(v reflect.Value, t *apischema.Type) {
	sub := func(name string) *apischema.Type {
		if t == nil {
			return nil
		}
		if p, ok := t.Props[name]; ok {
			return p
		}
		return t.Values
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		fill(v.Elem(), t)
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fill(v.Field(i), sub(name))
		}
	case reflect.String:
		s := "x"
		if t != nil && len(t.Enum) > 0 {
			s = t.Enum[0]
		}
		v.SetString(s)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // raw JSON or bytes: left to the caller
		}
		var items *apischema.Type
		if t != nil {
			items = t.Items
		}
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), items)
		v.Set(s)
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() == reflect.Interface {
			return // free-form: the caller fills it
		}
		m := reflect.MakeMap(v.Type())
		e := reflect.New(v.Type().Elem()).Elem()
		fill(e, sub("k"))
		m.SetMapIndex(reflect.ValueOf("k"), e)
		v.Set(m)
	}
}

// filled returns a T with every field set (see fill), shaped by the request
// schema of endpoint at the version the client uses for it.
func filled[T any](t *testing.T, endpoint string) T {
	t.Helper()
	var out T
	fill(reflect.ValueOf(&out), requestType(t, endpoint, urlVersion(api.PathFor(endpoint, api.DefaultAPIVersion, ""))))
	return out
}

// urlVersion is the version in a request path, or the emulator's newest for
// unversioned (raw) calls, which the server serves at its newest version.
func urlVersion(path string) string {
	if v, ok := strings.CutPrefix(path, "/v"); ok {
		v, _, _ = strings.Cut(v, "/")
		return v
	}
	return apischema.MaxVersion
}

func requestType(t *testing.T, endpoint, version string) *apischema.Type {
	t.Helper()
	typ, err := apischema.Request(endpoint, version)
	if err != nil {
		t.Error(err)
	}
	return typ
}

// TestRequestsFollowTheSchema sends every request the client can send, with
// every field of its request struct set (nested ones too), and checks each
// body against clearml-server's request schema at the version the client
// put in the URL, as internal/apischema writes it down. An endpoint the
// client calls (found in this package's source) that the test does not
// send, or that has no schema entry at that version, fails it.
func TestRequestsFollowTheSchema(t *testing.T) {
	t.Parallel()
	srv := emulator.New(emulator.Options{Credentials: map[string]string{"key": "secret"}})
	t.Cleanup(func() { _ = srv.Close() })
	var (
		mu   sync.Mutex
		sent []sentRequest
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		mu.Lock()
		sent = append(sent, sentRequest{r.URL.Path, b})
		mu.Unlock()
		srv.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	c, err := api.New(api.Config{Host: ts.URL, AccessKey: "key", SecretKey: "secret", VerifyCertificate: true,
		MaxRetries: 1, RetryBaseDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// The answers do not matter here (many are errors: the ids are made
	// up); what the client sent does.
	ignore := func(...any) {}
	ignore(c.Login(ctx))
	ignore(c.GetTask(ctx, "t"))
	ignore(c.GetAllTasks(ctx, filled[api.GetAllTasksRequest](t, "tasks.get_all")))
	ignore(c.CreateTask(ctx, filled[api.CreateTaskRequest](t, "tasks.create")))
	// Fields is free-form: these are the keys the agent sets (agent/task
	// stores the commit; runtime is the documented use).
	ignore(c.EditTask(ctx, api.EditTaskRequest{Task: "t", Force: true, Fields: map[string]any{
		"runtime": map[string]any{"_exec_agent_hostname": "h"}, "script": map[string]any{"version_num": "abc"}}}))
	ignore(c.Enqueue(ctx, filled[api.EnqueueRequest](t, "tasks.enqueue")))
	ignore(c.Dequeue(ctx, filled[api.DequeueRequest](t, "tasks.dequeue")))
	for endpoint, f := range map[string]func(context.Context, api.StatusRequest) (api.Updated, error){
		"tasks.started": c.Started, "tasks.stopped": c.Stopped, "tasks.failed": c.Failed,
		"tasks.completed": c.Completed, "tasks.stop": c.Stop, "tasks.reset": c.Reset,
	} {
		ignore(f(ctx, filled[api.StatusRequest](t, endpoint)))
	}
	ignore(c.Ping(ctx, "t"))
	ignore(c.Clone(ctx, filled[api.CloneRequest](t, "tasks.clone")))
	ignore(c.SetRequirements(ctx, "t", filled[api.Requirements](t, "tasks.set_requirements")))
	ignore(c.GetAllQueues(ctx, filled[api.GetAllQueuesRequest](t, "queues.get_all")))
	ignore(c.QueuesByName(ctx, "q"))
	ignore(c.GetQueue(ctx, "q"))
	ignore(c.CreateQueue(ctx, filled[api.CreateQueueRequest](t, "queues.create")))
	ignore(c.GetDefaultQueue(ctx))
	ignore(c.GetNextTask(ctx, "q"))
	ignore(c.GetNextTaskWithInfo(ctx, "q"))
	ignore(c.AddTask(ctx, "q", "t"))
	ignore(c.RegisterWorker(ctx, "w", []string{"q"}, 600))
	ignore(c.ReportStatus(ctx, filled[api.StatusReport](t, "workers.status_report")))
	ignore(c.GetAllWorkers(ctx, filled[api.GetAllWorkersRequest](t, "workers.get_all")))
	ignore(c.UnregisterWorker(ctx, "w"))
	ignore(c.AddBatch(ctx, []api.Event{filled[api.Event](t, "events.add_batch")}))
	ignore(c.GetTaskLog(ctx, filled[api.GetTaskLogRequest](t, "events.get_task_log")))
	ignore(c.GetAllProjects(ctx, filled[api.GetAllProjectsRequest](t, "projects.get_all")))

	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for _, r := range sent {
		name := r.path[strings.LastIndex(r.path, "/")+1:]
		seen[name] = true
		version := urlVersion(r.path)
		typ, err := apischema.Request(name, version)
		if err != nil {
			t.Error(err)
			continue
		}
		bodies := [][]byte{r.body}
		if e, _ := apischema.Lookup(name); e.JSONLines {
			bodies = bytes.Split(bytes.TrimSpace(r.body), []byte("\n"))
		}
		for _, b := range bodies {
			if len(bytes.TrimSpace(b)) == 0 {
				b = []byte("{}")
			}
			for _, p := range typ.CheckJSON(b) {
				t.Errorf("%s request at %s: %s", name, version, p)
			}
		}
	}
	for _, name := range calledEndpoints(t) {
		if !seen[name] {
			t.Errorf("the client calls %s but this test does not send it; add a call", name)
		}
	}
}

// fitsSchema reports every JSON field of Go type rt (nested ones too) that
// the schema type t lacks, or whose Go type cannot hold t's values.
func fitsSchema(rt reflect.Type, t *apischema.Type, path string) []string {
	if t == nil {
		return nil // under an open object: anything goes
	}
	if rt == reflect.TypeFor[json.RawMessage]() || rt == reflect.TypeFor[json.Number]() || rt.Kind() == reflect.Interface {
		return nil // decoded later, or any JSON
	}
	if rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	want := map[reflect.Kind][]apischema.Kind{
		reflect.String: {apischema.String}, reflect.Bool: {apischema.Boolean},
		reflect.Int: {apischema.Integer}, reflect.Int64: {apischema.Integer}, reflect.Int32: {apischema.Integer},
		reflect.Float64: {apischema.Number, apischema.Integer}, reflect.Float32: {apischema.Number, apischema.Integer},
		reflect.Slice: {apischema.Array}, reflect.Struct: {apischema.Object}, reflect.Map: {apischema.Object},
	}[rt.Kind()]
	if !slices.Contains(want, t.Kind) {
		return []string{fmt.Sprintf("%s: Go %s cannot hold the schema's %s", path, rt, t.Kind)}
	}
	var out []string
	switch rt.Kind() {
	case reflect.Slice:
		out = fitsSchema(rt.Elem(), t.Items, path+"[]")
	case reflect.Map:
		if t.Values != nil {
			out = fitsSchema(rt.Elem(), t.Values, path+"{*}")
		}
	case reflect.Struct:
		for i := range rt.NumField() {
			f := rt.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			sub, ok := t.Props[name]
			switch {
			case ok:
			case t.Values != nil:
				sub = t.Values
			case t.Open:
				continue
			default:
				out = append(out, path+"."+name+": field not in the schema")
				continue
			}
			out = append(out, fitsSchema(f.Type, sub, path+"."+name)...)
		}
	}
	return out
}

// TestResponseTypesFollowTheSchema: every field of the exported answer
// types the client decodes exists in the newest response schema
// (apischema.MaxVersion) with a type the Go field can hold.
func TestResponseTypesFollowTheSchema(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		endpoint string
		path     []string // from data down to the value of type v ("[]" = array element)
		v        any
	}{
		{"tasks.get_by_id", []string{"task"}, api.Task{}},
		{"tasks.get_all", []string{"tasks", "[]"}, api.Task{}},
		{"tasks.edit", nil, api.Updated{}},
		{"tasks.started", nil, api.Updated{}},
		{"tasks.stopped", nil, api.Updated{}},
		{"tasks.failed", nil, api.Updated{}},
		{"tasks.completed", nil, api.Updated{}},
		{"tasks.stop", nil, api.Updated{}},
		{"tasks.reset", nil, api.Updated{}},
		{"tasks.set_requirements", nil, api.Updated{}},
		{"tasks.enqueue", nil, api.EnqueueResult{}},
		{"tasks.dequeue", nil, api.DequeueResult{}},
		{"queues.get_all", []string{"queues", "[]"}, api.Queue{}},
		{"queues.get_by_id", []string{"queue"}, api.Queue{}},
		{"queues.get_next_task", []string{"task_info"}, api.TaskInfo{}},
		{"workers.get_all", []string{"workers", "[]"}, api.Worker{}},
		{"events.add_batch", nil, api.AddBatchResult{}},
		{"events.get_task_log", nil, api.TaskLog{}},
		{"projects.get_all", []string{"projects", "[]"}, api.Project{}},
	} {
		typ, err := apischema.Response(tc.endpoint, apischema.MaxVersion)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, p := range tc.path {
			if p == "[]" {
				typ = typ.Items
			} else {
				typ = typ.Props[p]
			}
			if typ == nil {
				t.Fatalf("%s: no %v in the response schema", tc.endpoint, tc.path)
			}
		}
		for _, p := range fitsSchema(reflect.TypeOf(tc.v), typ, "data") {
			t.Errorf("%s: api.%s: %s", tc.endpoint, reflect.TypeOf(tc.v).Name(), p)
		}
	}
}
