package apischema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// CheckJSON decodes b and checks it against t. It returns one line per
// problem, each naming the JSON path ("tasks[0].company: want string, got
// object"); none means b fits.
func (t *Type) CheckJSON(b []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	if dec.More() {
		return []string{"more than one JSON value"}
	}
	return t.Check(v)
}

// Check checks a decoded JSON value (numbers as json.Number or float64)
// against t; see CheckJSON.
func (t *Type) Check(v any) []string {
	var out []string
	t.check(v, "", &out)
	return out
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number, float64, int, int64:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("Go %T", v)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func show(path string) string {
	if path == "" {
		return "(top)"
	}
	return path
}

func (t *Type) check(v any, path string, out *[]string) {
	bad := func(format string, args ...any) {
		*out = append(*out, show(path)+": "+fmt.Sprintf(format, args...))
	}
	if v == nil {
		if !t.Nullable {
			bad("want %s, got null", t.Kind)
		}
		return
	}
	switch t.Kind {
	case String:
		s, ok := v.(string)
		if !ok {
			bad("want string, got %s", jsonKind(v))
			return
		}
		if len(t.Enum) > 0 && !slices.Contains(t.Enum, s) {
			bad("%q is not one of %s", s, strings.Join(t.Enum, ", "))
		}
		if t.DateTime {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				bad("%q is not an ISO 8601 date-time", s)
			}
		}
	case Integer, Number:
		text, ok := numberText(v)
		if !ok {
			bad("want %s, got %s", t.Kind, jsonKind(v))
			return
		}
		if t.Kind == Integer {
			if _, err := strconv.ParseInt(text, 10, 64); err != nil {
				bad("want integer, got %s", text)
				return
			}
		}
		if len(t.Enum) > 0 && !slices.Contains(t.Enum, text) {
			bad("%s is not one of %s", text, strings.Join(t.Enum, ", "))
		}
	case Boolean:
		if _, ok := v.(bool); !ok {
			bad("want boolean, got %s", jsonKind(v))
		}
	case Array:
		list, ok := v.([]any)
		if !ok {
			bad("want array, got %s", jsonKind(v))
			return
		}
		for i, e := range list {
			t.Items.check(e, path+"["+strconv.Itoa(i)+"]", out)
		}
	case Object:
		m, ok := v.(map[string]any)
		if !ok {
			bad("want object, got %s", jsonKind(v))
			return
		}
		t.checkObject(m, path, out)
	default:
		bad("table error: unknown kind %d", t.Kind)
	}
}

func (t *Type) checkObject(m map[string]any, path string, out *[]string) {
	for _, r := range t.Required {
		if _, ok := m[r]; !ok {
			*out = append(*out, show(join(path, r))+": required field missing")
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := join(path, k)
		switch pt, known := t.Props[k]; {
		case known:
			pt.check(m[k], p, out)
		case t.Values != nil:
			t.Values.check(m[k], p, out)
		case !t.Open:
			*out = append(*out, show(p)+": field not in the schema")
		}
	}
}

// numberText returns the decimal text of a JSON number.
func numberText(v any) (string, bool) {
	switch n := v.(type) {
	case json.Number:
		return n.String(), true
	case float64:
		return strconv.FormatFloat(n, 'f', -1, 64), true
	case int:
		return strconv.Itoa(n), true
	case int64:
		return strconv.FormatInt(n, 10), true
	}
	return "", false
}
