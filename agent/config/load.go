package config

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/gurkankaymak/hocon"
)

//go:embed defaults.conf
var defaultsConf string

// OverridePrefix starts the dynamic override variables, e.g.
// CLEARML_AGENT__AGENT__DEFAULT_DOCKER__IMAGE -> agent.default_docker.image.
const OverridePrefix = "CLEARML_AGENT__"

// Value is a configuration value: string, int64, float64, bool, nil, []Value or
// map[string]Value.
type Value any

// LoadOptions says where the configuration comes from.
type LoadOptions struct {
	// File is --config-file; it must exist when set.
	File string
	// Env is the environment in os.Environ form; nil means os.Environ().
	Env []string
	// Home is the home directory for ~/clearml.conf and ~ expansion; "" means $HOME
	// from Env, then os.UserHomeDir.
	Home string
}

// Config is the merged configuration with the origin of every leaf.
type Config struct {
	root    map[string]Value
	origins map[string]string
	file    string
	home    string
	env     map[string]string
}

// Load reads the packaged defaults, the configuration file, the CLEARML_AGENT__*
// overrides and the fixed environment variables, lowest first.
func Load(opts LoadOptions) (*Config, error) {
	envList := opts.Env
	if envList == nil {
		envList = os.Environ()
	}
	env := map[string]string{}
	for _, kv := range envList {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	home := opts.Home
	if home == "" {
		home = env["HOME"]
	}
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	c := &Config{root: map[string]Value{}, origins: map[string]string{}, home: home, env: env}

	defaults, err := parseText("defaults.conf", defaultsConf, func(int) string { return "default" })
	if err != nil {
		return nil, fmt.Errorf("packaged defaults: %w", err)
	}
	c.merge(defaults)

	file, err := chooseFile(opts.File, env, home)
	if err != nil {
		return nil, err
	}
	if file != "" {
		c.file = file
		tree, err := parseFile(file, 0)
		if err != nil {
			return nil, err
		}
		c.merge(tree)
	}

	if err := c.applyOverrides(env); err != nil {
		return nil, err
	}
	if err := c.resolve(); err != nil {
		return nil, err
	}
	if err := c.applyFixedEnv(env); err != nil {
		return nil, err
	}
	if s, _ := c.String("api.host"); s == "" {
		if v, ok := c.Get("api.api_server"); ok {
			c.set("api.host", v, c.Origin("api.api_server"))
		}
	}
	return c, nil
}

// Parse reads one configuration text on its own: no defaults, no includes, no
// environment (substitutions must resolve inside the text). name is used in errors.
func Parse(name string, text []byte) (*Config, error) {
	pr, tree, err := parseRaw(name, string(text))
	if err != nil {
		return nil, singleLine(err)
	}
	c := &Config{root: map[string]Value{}, origins: map[string]string{}, env: map[string]string{}}
	own := &node{tree: tree, origins: map[string]string{}}
	for _, leaf := range leafPaths(tree, "") {
		own.origins[leaf] = originFor(name, pr.lines, leaf)
	}
	c.merge(own)
	if err := c.resolve(); err != nil {
		return nil, singleLine(err)
	}
	return c, nil
}

// singleLine keeps an error on one line when the text it quotes (or the
// HOCON library's message) holds line breaks.
func singleLine(err error) error {
	if !strings.ContainsAny(err.Error(), "\n\r") {
		return err
	}
	return errors.New(strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(err.Error()))
}

func chooseFile(flag string, env map[string]string, home string) (string, error) {
	if flag != "" {
		return mustExist(flag, "--config-file")
	}
	for _, name := range []string{"CLEARML_CONFIG_FILE", "TRAINS_CONFIG_FILE"} {
		if v := env[name]; v != "" {
			return mustExist(expandHome(v, home), name)
		}
	}
	if home == "" {
		return "", nil
	}
	for _, name := range []string{"clearml.conf", "trains.conf"} {
		p := filepath.Join(home, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", nil
}

func mustExist(p, from string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%s %q: configuration file not found; create it with 'clearml-agent init' or fix the path", from, p)
	}
	if st.IsDir() {
		return "", fmt.Errorf("%s %q: is a directory; point it at a clearml.conf file", from, p)
	}
	return p, nil
}

// node is a parsed layer: a tree plus an origin per leaf path.
type node struct {
	tree    map[string]Value
	origins map[string]string
}

const maxIncludeDepth = 10

func parseFile(path string, depth int) (*node, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pr, tree, err := parseRaw(path, string(data))
	if err != nil {
		return nil, err
	}
	n := &node{tree: map[string]Value{}, origins: map[string]string{}}
	// Included files sit below the including file's own keys (the usual pattern is
	// "include defaults, then override").
	for _, inc := range pr.includes {
		if depth >= maxIncludeDepth {
			return nil, fmt.Errorf("%s:%d: include %q: includes nested more than %d deep; check for an include cycle", path, inc.line, inc.path, maxIncludeDepth)
		}
		target := inc.path
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		if _, err := os.Stat(target); err != nil {
			if inc.required {
				return nil, fmt.Errorf("%s:%d: include required(%q): %s does not exist; create it or drop required()", path, inc.line, inc.path, target)
			}
			continue
		}
		sub, err := parseFile(target, depth+1)
		if err != nil {
			return nil, err
		}
		prefix := strings.Join(inc.prefix, ".")
		wrapped := &node{tree: map[string]Value{}, origins: map[string]string{}}
		setPath(wrapped.tree, inc.prefix, Value(sub.tree))
		for k, o := range sub.origins {
			wrapped.origins[joinPath(prefix, k)] = o
		}
		mergeNode(n, wrapped)
	}
	own := &node{tree: tree, origins: map[string]string{}}
	for _, leaf := range leafPaths(tree, "") {
		own.origins[leaf] = originFor(path, pr.lines, leaf)
	}
	mergeNode(n, own)
	return n, nil
}

func originFor(file string, lines map[string]int, leaf string) string {
	for p := leaf; p != ""; {
		if l, ok := lines[p]; ok {
			return fmt.Sprintf("%s:%d", file, l)
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return file
}

func parseText(name, text string, _ func(int) string) (*node, error) {
	_, tree, err := parseRaw(name, text)
	if err != nil {
		return nil, err
	}
	n := &node{tree: tree, origins: map[string]string{}}
	for _, leaf := range leafPaths(tree, "") {
		n.origins[leaf] = "default"
	}
	return n, nil
}

var libErrRe = regexp.MustCompile(`at: (\d+):(\d+), (.*)$`)

// parseRaw pre-processes text and parses it with the hocon library.
func parseRaw(name, text string) (*ppResult, map[string]Value, error) {
	pr, err := preprocess(text)
	if err != nil {
		return nil, nil, fmt.Errorf("%s:%w", name, err)
	}
	if strings.TrimSpace(pr.text) == "" || strings.TrimSpace(pr.text) == "{}" {
		return pr, map[string]Value{}, nil
	}
	cfg, err := hocon.ParseString(pr.text)
	if err != nil {
		if m := libErrRe.FindStringSubmatch(err.Error()); m != nil {
			return nil, nil, fmt.Errorf("%s:%s:%s: %s", name, m[1], m[2], m[3])
		}
		return nil, nil, fmt.Errorf("%s: %v", name, err)
	}
	obj, ok := cfg.GetRoot().(hocon.Object)
	if !ok {
		return nil, nil, fmt.Errorf("%s: the root must be an object (key: value lines), not a list", name)
	}
	v, err := fromHocon(obj)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return pr, v.(map[string]Value), nil
}

func fromHocon(v hocon.Value) (Value, error) {
	switch x := v.(type) {
	case nil, hocon.Null:
		return nil, nil
	case hocon.Object:
		m := make(map[string]Value, len(x))
		for k, e := range x {
			c, err := fromHocon(e)
			if err != nil {
				return nil, err
			}
			m[k] = c
		}
		return m, nil
	case hocon.Array:
		l := make([]Value, 0, len(x))
		for _, e := range x {
			c, err := fromHocon(e)
			if err != nil {
				return nil, err
			}
			l = append(l, c)
		}
		return l, nil
	case hocon.String:
		var s string
		if err := json.Unmarshal([]byte(`"`+string(x)+`"`), &s); err != nil {
			return string(x), nil
		}
		if num, ok := strings.CutPrefix(s, negNumber); ok {
			if n, err := strconv.ParseInt(num, 10, 64); err == nil {
				return n, nil
			}
			f, _ := strconv.ParseFloat(num, 64)
			return f, nil
		}
		return s, nil
	case hocon.Int:
		return int64(x), nil
	case hocon.Float64:
		return float64(x), nil
	case hocon.Float32:
		return float64(x), nil
	case hocon.Boolean:
		return bool(x), nil
	case hocon.Duration:
		return x.String(), nil
	default:
		return nil, fmt.Errorf("unsupported value %s (%T)", v.String(), v)
	}
}

// merge deep-merges a layer into c.
func (c *Config) merge(n *node) {
	mergeTree(c.root, n.tree)
	for k, o := range n.origins {
		c.origins[k] = o
	}
}

func mergeNode(dst, src *node) {
	mergeTree(dst.tree, src.tree)
	for k, o := range src.origins {
		dst.origins[k] = o
	}
}

// mergeTree merges src into dst: objects deep-merge, anything else replaces.
func mergeTree(dst, src map[string]Value) {
	for k, sv := range src {
		if sm, ok := sv.(map[string]Value); ok {
			if dm, ok := dst[k].(map[string]Value); ok {
				mergeTree(dm, sm)
				continue
			}
			cp := map[string]Value{}
			mergeTree(cp, sm)
			dst[k] = cp
			continue
		}
		dst[k] = sv
	}
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	return a + "." + b
}

func splitPath(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(p, ".")
}

func setPath(root map[string]Value, path []string, v Value) {
	if len(path) == 0 {
		if m, ok := v.(map[string]Value); ok {
			mergeTree(root, m)
		}
		return
	}
	cur := root
	for _, seg := range path[:len(path)-1] {
		next, ok := cur[seg].(map[string]Value)
		if !ok {
			next = map[string]Value{}
			cur[seg] = next
		}
		cur = next
	}
	last := path[len(path)-1]
	if m, ok := v.(map[string]Value); ok {
		if dm, ok := cur[last].(map[string]Value); ok {
			mergeTree(dm, m)
			return
		}
	}
	cur[last] = v
}

func deletePath(root map[string]Value, path []string) {
	cur := root
	for _, seg := range path[:len(path)-1] {
		next, ok := cur[seg].(map[string]Value)
		if !ok {
			return
		}
		cur = next
	}
	delete(cur, path[len(path)-1])
}

// leafPaths lists the dotted paths of every non-object value (lists are leaves).
func leafPaths(m map[string]Value, prefix string) []string {
	var out []string
	for k, v := range m {
		p := joinPath(prefix, k)
		if sub, ok := v.(map[string]Value); ok {
			out = append(out, leafPaths(sub, p)...)
			continue
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func (c *Config) set(path string, v Value, origin string) {
	segs := splitPath(path)
	setPath(c.root, segs, v)
	if m, ok := v.(map[string]Value); ok {
		for _, leaf := range leafPaths(m, path) {
			c.origins[leaf] = origin
		}
		return
	}
	c.origins[path] = origin
}

// applyOverrides applies CLEARML_AGENT__SECTION__KEY variables in sorted order.
func (c *Config) applyOverrides(env map[string]string) error {
	var names []string
	for k := range env {
		if strings.HasPrefix(k, OverridePrefix) && len(k) > len(OverridePrefix) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		path := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, OverridePrefix), "__", "."))
		raw := env[name]
		v, err := parseValue(raw)
		if err != nil {
			return fmt.Errorf("%s=%s: not a valid HOCON value for %s (%v); quote strings, e.g. %s='\"%s\"'",
				name, raw, path, err, name, strings.ReplaceAll(raw, `"`, `\"`))
		}
		c.set(path, v, "env "+name)
	}
	return nil
}

// parseValue parses one HOCON value the way an override's value is parsed.
func parseValue(raw string) (Value, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("empty value")
	}
	pr, tree, err := parseRaw("value", "v: "+raw)
	if err != nil {
		msg := err.Error()
		if m := regexp.MustCompile(`^value:\d+:(\d+): (.*)$`).FindStringSubmatch(msg); m != nil {
			col, _ := strconv.Atoi(m[1])
			msg = fmt.Sprintf("column %d: %s", col-3, m[2])
		}
		return nil, errors.New(msg)
	}
	if len(pr.includes) > 0 {
		return nil, errors.New("include is not allowed in a value")
	}
	v, ok := tree["v"]
	if !ok {
		return nil, errors.New("no value")
	}
	if s, ok := v.(string); ok && strings.ContainsAny(s, "?@") && !strings.HasPrefix(strings.TrimSpace(raw), `"`) {
		// pyhocon rejects these characters unquoted; so do we, so that configs stay portable.
		return nil, fmt.Errorf("unquoted %q contains '?' or '@'", s)
	}
	return v, nil
}

// resolve replaces substitution markers: first against the merged tree, then the
// environment. An unresolved optional substitution removes the key.
func (c *Config) resolve() error {
	for _, leaf := range leafPaths(c.root, "") {
		v, _ := c.Get(leaf)
		nv, keep, err := c.resolveValue(v, 0)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", leaf, c.origins[leaf], err)
		}
		if !keep {
			deletePath(c.root, splitPath(leaf))
			continue
		}
		setPath(c.root, splitPath(leaf), nv)
	}
	return nil
}

func (c *Config) resolveValue(v Value, depth int) (Value, bool, error) {
	if depth > 20 {
		return nil, false, errors.New("substitution nested more than 20 deep; check for a cycle")
	}
	switch x := v.(type) {
	case []Value:
		out := make([]Value, 0, len(x))
		for _, e := range x {
			r, keep, err := c.resolveValue(e, depth+1)
			if err != nil {
				return nil, false, err
			}
			if keep {
				out = append(out, r)
			}
		}
		return out, true, nil
	case map[string]Value:
		out := map[string]Value{}
		for k, e := range x {
			r, keep, err := c.resolveValue(e, depth+1)
			if err != nil {
				return nil, false, err
			}
			if keep {
				out[k] = r
			}
		}
		return out, true, nil
	case string:
		if !strings.Contains(x, substOpen) {
			return x, true, nil
		}
		// A value that is exactly one substitution takes the referenced value's type.
		if strings.HasPrefix(x, substOpen) && strings.Index(x, substClose) == len(x)-1 {
			return c.lookupSubst(x[1:len(x)-1], depth)
		}
		var b strings.Builder
		rest := x
		for {
			i := strings.Index(rest, substOpen)
			if i < 0 {
				b.WriteString(rest)
				break
			}
			b.WriteString(rest[:i])
			j := strings.Index(rest[i:], substClose)
			if j < 0 { // a stray marker byte from the input, not a substitution
				b.WriteString(rest[i:])
				break
			}
			ref := rest[i+1 : i+j]
			rest = rest[i+j+1:]
			r, keep, err := c.lookupSubst(ref, depth)
			if err != nil {
				return nil, false, err
			}
			if keep {
				b.WriteString(scalarString(r))
			}
		}
		return b.String(), true, nil
	}
	return v, true, nil
}

func (c *Config) lookupSubst(ref string, depth int) (Value, bool, error) {
	optional := strings.HasPrefix(ref, "?")
	name := strings.TrimPrefix(ref, "?")
	if v, ok := c.Get(name); ok {
		return c.resolveValue(v, depth+1)
	}
	if v, ok := c.env[name]; ok {
		return v, true, nil
	}
	if optional {
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("${%s}: no such key and no environment variable %s; set it or write ${?%s}", name, name, name)
}

// fixedEnv maps the fixed environment variables onto configuration keys.
var fixedEnv = []struct {
	names []string
	path  string
	kind  string // "str", "bool"
}{
	{[]string{"CLEARML_API_HOST", "TRAINS_API_HOST"}, "api.api_server", "str"},
	{[]string{"CLEARML_WEB_HOST", "TRAINS_WEB_HOST"}, "api.web_server", "str"},
	{[]string{"CLEARML_FILES_HOST", "TRAINS_FILES_HOST"}, "api.files_server", "str"},
	{[]string{"CLEARML_API_ACCESS_KEY", "TRAINS_API_ACCESS_KEY"}, "api.credentials.access_key", "str"},
	{[]string{"CLEARML_API_SECRET_KEY", "TRAINS_API_SECRET_KEY"}, "api.credentials.secret_key", "str"},
	{[]string{"CLEARML_API_HOST_VERIFY_CERT", "TRAINS_API_HOST_VERIFY_CERT"}, "api.verify_certificate", "bool"},
	{[]string{"CLEARML_API_DEFAULT_REQ_METHOD", "TRAINS_API_DEFAULT_REQ_METHOD"}, "api.http.default_method", "str"},
	{[]string{"CLEARML_WORKER_NAME", "TRAINS_WORKER_NAME"}, "agent.worker_name", "str"},
	{[]string{"CLEARML_WORKER_ID", "TRAINS_WORKER_ID"}, "agent.worker_id", "str"},
	{[]string{"CLEARML_CUDA_VERSION", "TRAINS_CUDA_VERSION", "CUDA_VERSION"}, "agent.cuda_version", "str"},
	{[]string{"CLEARML_CUDNN_VERSION", "TRAINS_CUDNN_VERSION", "CUDNN_VERSION"}, "agent.cudnn_version", "str"},
	{[]string{"CLEARML_CPU_ONLY", "TRAINS_CPU_ONLY", "CPU_ONLY"}, "agent.cpu_only", "bool"},
	{[]string{"CLEARML_AGENT_CRASH_ON_EXCEPTION"}, "agent.crash_on_exception", "bool"},
	{[]string{"CLEARML_AGENT_GIT_USER", "TRAINS_AGENT_GIT_USER"}, "agent.git_user", "str"},
	{[]string{"CLEARML_AGENT_GIT_PASS", "TRAINS_AGENT_GIT_PASS"}, "agent.git_pass", "str"},
	{[]string{"CLEARML_AGENT_GIT_HOST", "TRAINS_AGENT_GIT_HOST"}, "agent.git_host", "str"},
}

func (c *Config) applyFixedEnv(env map[string]string) error {
	for _, f := range fixedEnv {
		for _, name := range f.names {
			raw, ok := env[name]
			if !ok || raw == "" {
				continue // empty means unset
			}
			var v Value = raw
			if f.kind == "bool" {
				b, err := parseBool(raw)
				if err != nil {
					return fmt.Errorf("%s=%q: %v; use true or false", name, raw, err)
				}
				v = b
			}
			if f.path == "api.api_server" {
				v = strings.TrimRight(raw, "/")
			}
			c.set(f.path, v, "env "+name)
			break
		}
	}
	return nil
}

// parseBool accepts what Python's strtobool accepts.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "y", "yes", "t", "true", "on", "1":
		return true, nil
	case "n", "no", "f", "false", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean")
}

func scalarString(v Value) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	default:
		b, _ := json.Marshal(toJSONValue(v, true, ""))
		return string(b)
	}
}

func expandHome(p, home string) string {
	if home == "" {
		return p
	}
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[2:])
	}
	return p
}
