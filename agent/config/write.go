package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
)

// APIWriteSettings is the api section written by `init` and agent-provision.
type APIWriteSettings struct {
	APIServer   string
	WebServer   string
	FilesServer string
	AccessKey   string
	SecretKey   string
}

// AgentWriteSettings is the agent part written by `init` and agent-provision.
type AgentWriteSettings struct {
	GitUser        string
	GitPass        string
	ExtraIndexURLs []string
	// DefaultOutputURI becomes sdk.development.default_output_uri when set.
	DefaultOutputURI string
	// Extra holds more agent keys (paths relative to agent, e.g. "worker_name" or
	// "default_docker.image"); values are string, bool, int, int64, float64 or []string.
	Extra map[string]any
}

// Render produces a clearml.conf in the format the Python agent's wizard writes.
func Render(api APIWriteSettings, agent AgentWriteSettings) []byte {
	var b bytes.Buffer
	b.WriteString("# CLEARML-AGENT configuration file\n")
	b.WriteString("api {\n")
	b.WriteString("    # Notice: 'host' is the api server (default port 8008), not the web server.\n")
	fmt.Fprintf(&b, "    api_server: %s\n", urlValue(api.APIServer))
	fmt.Fprintf(&b, "    web_server: %s\n", urlValue(api.WebServer))
	fmt.Fprintf(&b, "    files_server: %s\n", urlValue(api.FilesServer))
	b.WriteString("    # Credentials are generated using the webapp, <web_server>/settings\n")
	b.WriteString("    # Override with os environment: CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY\n")
	fmt.Fprintf(&b, "    credentials {\"access_key\": %s, \"secret_key\": %s}\n", jsonQuote(api.AccessKey), jsonQuote(api.SecretKey))
	b.WriteString("}\n\n")
	b.WriteString("# Set GIT user/pass credentials\n# leave blank for GIT SSH credentials\n")
	fmt.Fprintf(&b, "agent.git_user=%s\n", jsonQuote(agent.GitUser))
	fmt.Fprintf(&b, "agent.git_pass=%s\n\n", jsonQuote(agent.GitPass))
	b.WriteString("# extra_index_url: additional artifact repositories to use when installing python packages\n")
	b.WriteString("agent.package_manager.extra_index_url= [\n")
	for _, u := range agent.ExtraIndexURLs {
		b.WriteString(jsonQuote(u) + "\n")
	}
	b.WriteString("]\n")
	if len(agent.Extra) > 0 {
		b.WriteString("\n")
		writeKeys(&b, "agent.", agent.Extra, "")
	}
	if agent.DefaultOutputURI != "" {
		b.WriteString("\n# Default Task output_uri. if output_uri is not provided to Task.init, default_output_uri will be used instead.\n")
		fmt.Fprintf(&b, "sdk.development.default_output_uri=%s\n", jsonQuote(agent.DefaultOutputURI))
	}
	return b.Bytes()
}

// urlValue writes URLs unquoted like the Python wizard, unless a character would
// break pyhocon's unquoted-string rules.
func urlValue(u string) string {
	if u == "" || strings.ContainsAny(u, " \t^`+?!@*&\"[{}],=$#\\") {
		return jsonQuote(u)
	}
	return u
}

func writeKeys(b *bytes.Buffer, prefix string, keys map[string]any, indent string) {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(b, "%s%s%s: %s\n", indent, prefix, k, hoconLiteral(keys[k]))
	}
}

func hoconLiteral(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return jsonQuote(x)
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []string:
		q := make([]string, len(x))
		for i, s := range x {
			q[i] = jsonQuote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	case []any:
		q := make([]string, len(x))
		for i, s := range x {
			q[i] = hoconLiteral(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return jsonQuote(fmt.Sprint(v))
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory (github.com/google/renameio/v2: created 0600, chmod to mode
// regardless of the umask, optional fchown, fsync, rename), then fsyncs the
// directory so the rename survives a crash. uid/gid < 0 leave ownership alone.
func WriteFileAtomic(path string, data []byte, mode os.FileMode, uid, gid int) error {
	dir := filepath.Dir(path)
	f, err := renameio.NewPendingFile(path, renameio.WithTempDir(dir), renameio.WithStaticPermissions(mode))
	if err != nil {
		return fmt.Errorf("write %s: %w; check that %s exists and is writable", path, err, dir)
	}
	defer func() { _ = f.Cleanup() }() // a no-op once replaced
	if uid >= 0 || gid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return fmt.Errorf("write %s: chown %d:%d: %w", path, uid, gid, err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

const (
	managedBegin = "# BEGIN clearml-agent managed agent settings (rewritten by agent-provision; edit above this block)"
	managedEnd   = "# END clearml-agent managed agent settings"
)

// MergeAgentSection adds agent settings to an existing clearml.conf without
// touching anything else in it: it appends (or replaces, on a re-run) one managed
// `agent { ... }` block after the existing content; HOCON's deep merge makes its
// keys override the same keys set earlier in the file. keys are paths relative to
// agent ("git_user", "package_manager.extra_index_url"). name is used in errors. A
// file that does not parse is refused with name:line:col.
func MergeAgentSection(name string, existing []byte, keys map[string]any) ([]byte, error) {
	text := string(existing)
	// Drop a block written by an earlier run.
	if i := strings.Index(text, managedBegin); i >= 0 {
		if j := strings.Index(text[i:], managedEnd); j >= 0 {
			end := i + j + len(managedEnd)
			if end < len(text) && text[end] == '\n' {
				end++
			}
			text = strings.TrimRight(text[:i], "\n") + "\n" + text[end:]
			if strings.TrimSpace(text) == "" {
				text = ""
			}
		}
	}
	pr, _, err := parseRaw(name, text)
	if err != nil {
		return nil, fmt.Errorf("%v; fix the file before adding agent settings (it was left unchanged)", err)
	}
	var block bytes.Buffer
	block.WriteString(managedBegin + "\n")
	block.WriteString("agent {\n")
	writeKeys(&block, "", keys, "    ")
	block.WriteString("}\n")
	block.WriteString(managedEnd + "\n")

	var out bytes.Buffer
	if pr.rootBraced {
		// Root braces: the block goes inside them, before the closing '}'.
		out.WriteString(text[:pr.closeOffset])
		if !strings.HasSuffix(text[:pr.closeOffset], "\n") {
			out.WriteString("\n")
		}
		out.Write(block.Bytes())
		out.WriteString(text[pr.closeOffset:])
	} else {
		out.WriteString(text)
		if text != "" && !strings.HasSuffix(text, "\n") {
			out.WriteString("\n")
		}
		if text != "" {
			out.WriteString("\n")
		}
		out.Write(block.Bytes())
	}
	if _, _, err := parseRaw(name, out.String()); err != nil {
		return nil, fmt.Errorf("merged agent settings do not parse (%v); this is a bug, the file was left unchanged", err)
	}
	return out.Bytes(), nil
}
