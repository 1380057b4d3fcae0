package apischema

import (
	"slices"
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	doc := obj(props{
		"id":      str(),
		"status":  strEnum(TaskStatuses...),
		"updated": zeroOrOne(),
		"count":   integer(),
		"ratio":   number(),
		"ok":      boolean(),
		"when":    date(),
		"tags":    strs(),
		"params":  mapOf(obj(props{"value": str()})),
		"free":    anyObject(),
		"loose":   openWith(props{"n": integer()}),
		"stack":   nullable(str()),
		"items":   arr(obj(props{"key": str(), "type": str()}, "key", "type")),
		"grid":    arr(arr(str())),
	}, "id")
	for _, tc := range []struct {
		name, json string
		want       []string
	}{
		{"fits", `{"id":"a","status":"in_progress","updated":1,"count":3,"ratio":0.5,"ok":true,
			"when":"2025-03-01T12:00:00.000000+00:00","tags":["x"],"params":{"Args":{"value":"1"}},
			"free":{"anything":[1,{"x":null}]},"loose":{"n":2,"other":"y"},"stack":null,
			"items":[{"key":"k","type":"t"}],"grid":[["a","b"]]}`, nil},
		{"object where a string belongs", `{"id":{"id":"c"}}`, []string{"id: want string, got object"}},
		{"unknown field", `{"id":"a","extra":1}`, []string{"extra: field not in the schema"}},
		{"required field", `{}`, []string{"id: required field missing"}},
		{"enum", `{"id":"a","status":"running"}`, []string{`status: "running" is not one of created, queued, in_progress, stopped, published, publishing, closed, failed, completed, unknown`}},
		{"integer enum", `{"id":"a","updated":2}`, []string{"updated: 2 is not one of 0, 1"}},
		{"integer", `{"id":"a","count":1.5}`, []string{"count: want integer, got 1.5"}},
		{"number", `{"id":"a","ratio":"1"}`, []string{"ratio: want number, got string"}},
		{"boolean", `{"id":"a","ok":"true"}`, []string{"ok: want boolean, got string"}},
		{"date-time", `{"id":"a","when":"yesterday"}`, []string{`when: "yesterday" is not an ISO 8601 date-time`}},
		{"null", `{"id":null}`, []string{"id: want string, got null"}},
		{"array", `{"id":"a","tags":"x"}`, []string{"tags: want array, got string"}},
		{"array element", `{"id":"a","tags":["x",2]}`, []string{"tags[1]: want string, got number"}},
		{"map value", `{"id":"a","params":{"Args":{"value":1}}}`, []string{"params.Args.value: want string, got number"}},
		{"open object keeps typed props", `{"id":"a","loose":{"n":"2"}}`, []string{"loose.n: want integer, got string"}},
		{"nested required", `{"id":"a","items":[{"key":"k"}]}`, []string{"items[0].type: required field missing"}},
		{"nested arrays", `{"id":"a","grid":[["a"],[1]]}`, []string{"grid[1][0]: want string, got number"}},
		{"top level", `[]`, []string{"(top): want object, got array"}},
		{"not JSON", `{`, []string{"not JSON: unexpected EOF"}},
	} {
		got := doc.CheckJSON([]byte(tc.json))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestAtPicksTheNewestRevisionNotAboveTheVersion(t *testing.T) {
	t.Parallel()
	e, ok := Lookup("tasks.enqueue") // revisions 1.5, 2.19, 2.22, 2.31
	if !ok {
		t.Fatal("tasks.enqueue is not in the table")
	}
	for _, tc := range []struct {
		version, want string
		ok            bool
	}{
		{"2.5", "1.5", true}, {"2.19", "2.19", true}, {"2.21", "2.19", true}, {"2.30", "2.22", true},
		{"2.31", "2.31", true}, {"2.34", "2.31", true}, {"3", "2.31", true},
		{"1.4", "", false}, {"x.y", "", false}, {"", "", false},
	} {
		r, ok := e.At(tc.version)
		if r.Since != tc.want || ok != tc.ok {
			t.Errorf("At(%q) = %q, %v; want %q, %v", tc.version, r.Since, ok, tc.want, tc.ok)
		}
	}
}

func TestLookupErrorsNameWhatIsMissing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{second(Response("tasks.no_such", "2.31")), "endpoint tasks.no_such has no schema entry"},
		{second(Request("tasks.get_hyper_params", "2.5")), "tasks.get_hyper_params does not exist at version \"2.5\" (its first revision is 2.9)"},
		{second(Request("tasks.get_all", "2.1")), "the request of tasks.get_all revision 2.1 (in effect at 2.1) is not written down"},
		{second(Response("tasks.enqueue", "2.20")), "the response of tasks.enqueue revision 2.19 (in effect at 2.20) is not written down"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) || strings.Contains(tc.err.Error(), "\n") {
			t.Errorf("got %v, want one line containing %q", tc.err, tc.want)
		}
	}
}

func second(_ *Type, err error) error { return err }

// TestTableIsWellFormed guards the tables themselves: revisions in order,
// a response written down at MaxVersion for every endpoint, and types that
// make sense (required fields exist, arrays have items...).
func TestTableIsWellFormed(t *testing.T) {
	t.Parallel()
	if len(Names()) == 0 {
		t.Fatal("empty table")
	}
	for _, name := range Names() {
		e, _ := Lookup(name)
		if e.Name != name || len(e.Revisions) == 0 {
			t.Errorf("%s: name %q, %d revisions", name, e.Name, len(e.Revisions))
			continue
		}
		prev := ""
		for i, r := range e.Revisions {
			if _, ok := api.ParseVersion(r.Since); !ok || i > 0 && api.CompareVersions(prev, r.Since) >= 0 {
				t.Errorf("%s: revision %q is not a version above the one before", name, r.Since)
			}
			prev = r.Since
			for part, typ := range map[string]*Type{"request": r.Request, "response": r.Response} {
				if typ != nil {
					wellFormed(t, name+" "+r.Since+" "+part, typ)
				}
			}
		}
		if _, err := Response(name, MaxVersion); err != nil {
			t.Error(err)
		}
	}
	wellFormed(t, "envelope", Envelope)
}

func wellFormed(t *testing.T, where string, typ *Type) {
	t.Helper()
	switch {
	case typ.Kind < String || typ.Kind > Array:
		t.Errorf("%s: kind %v", where, typ.Kind)
	case typ.Kind == Array && typ.Items == nil:
		t.Errorf("%s: array without items", where)
	case typ.Kind != Object && (typ.Props != nil || typ.Values != nil || typ.Open || typ.Required != nil):
		t.Errorf("%s: object parts on a %v", where, typ.Kind)
	case len(typ.Enum) > 0 && typ.Kind != String && typ.Kind != Integer:
		t.Errorf("%s: enum on a %v", where, typ.Kind)
	case typ.DateTime && typ.Kind != String:
		t.Errorf("%s: date-time on a %v", where, typ.Kind)
	case typ.Values != nil && typ.Open:
		t.Errorf("%s: both Values and Open", where)
	}
	for _, r := range typ.Required {
		if _, ok := typ.Props[r]; !ok {
			t.Errorf("%s: required %q is not a property", where, r)
		}
	}
	for k, p := range typ.Props {
		wellFormed(t, where+"."+k, p)
	}
	if typ.Values != nil {
		wellFormed(t, where+"{*}", typ.Values)
	}
	if typ.Items != nil {
		wellFormed(t, where+"[]", typ.Items)
	}
}

// TestExtrasSayWhy: a field the schema lacks is only in the table with the
// reason the real server sends it.
func TestExtrasSayWhy(t *testing.T) {
	t.Parallel()
	resp, err := Response("tasks.get_by_id", MaxVersion)
	if err != nil {
		t.Fatal(err)
	}
	var extras []string
	for k, p := range resp.Props["task"].Props {
		if p.Why != "" {
			extras = append(extras, k)
			if !strings.Contains(p.Why, "real server") {
				t.Errorf("task.%s: reason %q does not say why the real server sends it", k, p.Why)
			}
		}
	}
	slices.Sort(extras)
	if want := []string{"enqueue_status", "last_changed_by"}; !slices.Equal(extras, want) {
		t.Errorf("task extras = %v, want %v", extras, want)
	}
}
