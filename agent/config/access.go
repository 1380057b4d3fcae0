package config

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/secret"
)

// File is the configuration file that was loaded, or "" when none exists.
func (c *Config) File() string { return c.file }

// Home is the home directory used for ~ expansion.
func (c *Config) Home() string { return c.home }

// Get returns the value at a dotted path.
func (c *Config) Get(path string) (Value, bool) {
	var cur Value = c.root
	for _, seg := range splitPath(path) {
		m, ok := cur.(map[string]Value)
		if !ok {
			return nil, false
		}
		cur, ok = m[seg]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}

// Origin says where the value at path came from: "default", "<file>:<line>" or
// "env <NAME>"; "" when the path is not set.
func (c *Config) Origin(path string) string {
	if _, ok := c.Get(path); !ok {
		return ""
	}
	if o, ok := c.origins[path]; ok {
		return o
	}
	return "default"
}

// Keys lists every leaf path (lists are leaves), sorted.
func (c *Config) Keys() []string { return leafPaths(c.root, "") }

// String returns a scalar as a string; false when unset or null or not a scalar.
func (c *Config) String(path string) (string, bool) {
	v, ok := c.Get(path)
	if !ok || v == nil {
		return "", false
	}
	switch v.(type) {
	case map[string]Value, []Value:
		return "", false
	}
	return scalarString(v), true
}

// Path returns a string value with a leading ~ expanded against the home directory.
func (c *Config) Path(path string) (string, bool) {
	s, ok := c.String(path)
	if !ok {
		return "", false
	}
	return expandHome(s, c.home), true
}

// Bool returns a boolean (true/false/yes/no/on/off/1/0 accepted).
func (c *Config) Bool(path string) (bool, bool) {
	v, ok := c.Get(path)
	if !ok {
		return false, false
	}
	switch x := v.(type) {
	case bool:
		return x, true
	case int64:
		return x != 0, true
	case string:
		b, err := parseBool(x)
		return b, err == nil
	}
	return false, false
}

// Int returns an integer; floats with no fraction and numeric strings are accepted.
func (c *Config) Int(path string) (int64, bool) {
	v, ok := c.Get(path)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case int64:
		return x, true
	case float64:
		if x == float64(int64(x)) {
			return int64(x), true
		}
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

// Float returns a number.
func (c *Config) Float(path string) (float64, bool) {
	v, ok := c.Get(path)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	return 0, false
}

var periodRe = regexp.MustCompile(`^\s*(-?[0-9.]+)\s*([a-zA-Z]*)\s*$`)

// Duration reads a period: a bare number is seconds; HOCON units ("10 seconds",
// "5m", "2 hours", "500ms") and Go durations are accepted.
func (c *Config) Duration(path string) (time.Duration, bool) {
	v, ok := c.Get(path)
	if !ok || v == nil {
		return 0, false
	}
	d, err := ParseDuration(scalarString(v))
	return d, err == nil
}

// ParseDuration parses a HOCON period; a bare number means seconds.
func ParseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
		return d, nil
	}
	m := periodRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("period %q: use a number of seconds or e.g. \"10 seconds\"", s)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("period %q: %v", s, err)
	}
	unit := map[string]time.Duration{
		"": time.Second, "ns": time.Nanosecond, "nanosecond": time.Nanosecond, "nanoseconds": time.Nanosecond,
		"us": time.Microsecond, "microsecond": time.Microsecond, "microseconds": time.Microsecond,
		"ms": time.Millisecond, "millisecond": time.Millisecond, "milliseconds": time.Millisecond,
		"s": time.Second, "second": time.Second, "seconds": time.Second,
		"m": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hour": time.Hour, "hours": time.Hour,
		"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	}
	u, ok := unit[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("period %q: unknown unit %q; use ms, seconds, minutes, hours or days", s, m[2])
	}
	return time.Duration(n * float64(u)), nil
}

// Strings returns a list of scalars as strings; a single scalar string becomes a
// one-element list ("" gives none).
func (c *Config) Strings(path string) ([]string, bool) {
	v, ok := c.Get(path)
	if !ok || v == nil {
		return nil, ok
	}
	switch x := v.(type) {
	case []Value:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, scalarString(e))
		}
		return out, true
	case map[string]Value:
		return nil, false
	}
	s := scalarString(v)
	if s == "" {
		return nil, true
	}
	return []string{s}, true
}

// StringMap returns an object of scalars as strings (e.g. agent.environment).
func (c *Config) StringMap(path string) map[string]string {
	v, _ := c.Get(path)
	m, ok := v.(map[string]Value)
	if !ok {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, e := range m {
		out[k] = scalarString(e)
	}
	return out
}

// Mask hides a secret value. Access keys keep their first and last two characters
// (enough to tell keys apart); everything else becomes "****".
func Mask(path, value string) string {
	if value == "" {
		return ""
	}
	leaf := strings.ToLower(path[strings.LastIndexByte(path, '.')+1:])
	if leaf == "access_key" && len(value) > 8 {
		return value[:2] + "****" + value[len(value)-2:]
	}
	return "****"
}

// ToJSON renders the whole configuration as indented JSON; secrets (and the
// credentials in URLs, secret.MaskURLs) are masked unless showSecrets.
func ToJSON(c *Config, showSecrets bool) ([]byte, error) {
	return json.MarshalIndent(toJSONValue(c.root, showSecrets, ""), "", "  ")
}

func toJSONValue(v Value, show bool, path string) any {
	switch x := v.(type) {
	case map[string]Value:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = toJSONValue(e, show, joinPath(path, k))
		}
		return out
	case []Value:
		out := make([]any, 0, len(x))
		for _, e := range x {
			out = append(out, toJSONValue(e, show, path))
		}
		return out
	case string:
		if !show && path != "" && secret.Name(path) {
			return Mask(path, x)
		}
		if !show {
			return secret.MaskURLs(x) // extra_index_url and the like
		}
		return x
	}
	return v
}

// Display renders a leaf for `config` output: strings as-is, lists as JSON.
func (c *Config) Display(path string, showSecrets bool) string {
	v, _ := c.Get(path)
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if !showSecrets && secret.Name(path) {
			return Mask(path, x)
		}
		if !showSecrets {
			return secret.MaskURLs(x)
		}
		return x
	case []Value:
		b, _ := json.Marshal(toJSONValue(x, showSecrets, path))
		return string(b)
	}
	return scalarString(v)
}
