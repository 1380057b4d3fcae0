package docker

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Arg is one `docker run` option from a list of docker arguments.
type Arg struct {
	// Flag is the option's long name without dashes ("env", "volume",
	// "network"); aliases and short forms are mapped to it (-e, --net).
	Flag string
	// Text is the option as written, first token only: "-e", "--env=A=1", "-eA=1".
	Text string
	// Value is the option's value; "true" or "false" for switches.
	Value string
	// Source is the list the option came from.
	Source ArgSource
}

// flagSpec describes one supported option.
type flagSpec struct {
	name    string
	short   byte     // 0 for none
	aliases []string // other long names
	value   bool     // takes a value (else a switch, optionally =true|false)
	example string   // shown when the value is missing
}

// flagSpecs are the options the agent turns into API fields. Anything else is
// refused with an error naming the option.
var flagSpecs = []flagSpec{
	{name: "env", short: 'e', value: true, example: "-e KEY=VALUE"},
	{name: "env-file", value: true, example: "--env-file /etc/clearml/task.env"},
	{name: "volume", short: 'v', value: true, example: "-v /data:/data:ro"},
	{name: "mount", value: true, example: "--mount type=bind,source=/data,target=/data,readonly"},
	{name: "ipc", value: true, example: "--ipc host"},
	{name: "shm-size", value: true, example: "--shm-size 8g"},
	{name: "network", aliases: []string{"net"}, value: true, example: "--network host"},
	{name: "device", value: true, example: "--device /dev/fuse"},
	{name: "user", short: 'u', value: true, example: "--user 1000:1000"},
	{name: "cap-add", value: true, example: "--cap-add SYS_ADMIN"},
	{name: "cap-drop", value: true, example: "--cap-drop NET_RAW"},
	{name: "privileged"},
	{name: "entrypoint", value: true, example: "--entrypoint /usr/local/bin/wrapper"},
	{name: "label", short: 'l', value: true, example: "-l team=vision"},
	{name: "rm"},
	{name: "tty", short: 't'},
	{name: "interactive", short: 'i'},
	{name: "gpus", value: true, example: "--gpus all"},
	{name: "workdir", short: 'w', value: true, example: "-w /workspace"},
	{name: "hostname", short: 'h', value: true, example: "--hostname trainer"},
	{name: "ulimit", value: true, example: "--ulimit memlock=-1:-1"},
	{name: "group-add", value: true, example: "--group-add video"},
	{name: "security-opt", value: true, example: "--security-opt seccomp=unconfined"},
	{name: "tmpfs", value: true, example: "--tmpfs /scratch:size=1g"},
	{name: "add-host", value: true, example: "--add-host files.local:10.0.0.5"},
	{name: "dns", value: true, example: "--dns 10.0.0.2"},
	{name: "pid", value: true, example: "--pid host"},
	{name: "init"},
	{name: "memory", short: 'm', value: true, example: "--memory 16g"},
	{name: "cpus", value: true, example: "--cpus 4"},
	{name: "runtime", value: true, example: "--runtime nvidia"},
	{name: "sysctl", value: true, example: "--sysctl net.core.somaxconn=1024"},
}

var (
	specByLong  = map[string]*flagSpec{}
	specByShort = map[byte]*flagSpec{}
)

func init() {
	for i := range flagSpecs {
		f := &flagSpecs[i]
		specByLong[f.name] = f
		for _, a := range f.aliases {
			specByLong[a] = f
		}
		if f.short != 0 {
			specByShort[f.short] = f
		}
	}
}

// supportedList is the options in messages: "-e/--env, --env-file, ...".
func supportedList() string {
	names := make([]string, len(flagSpecs))
	for i, f := range flagSpecs {
		n := "--" + f.name
		if f.short != 0 {
			n = "-" + string(f.short) + "/" + n
		}
		names[i] = n
	}
	return strings.Join(names, ", ")
}

// canonicalFlag maps a switch name as written in a setting ("net", "e",
// "--network") to its long name; unknown names are returned without dashes.
func canonicalFlag(name string) string {
	n := strings.TrimLeft(strings.TrimSpace(name), "-")
	if f, ok := specByLong[n]; ok {
		return f.name
	}
	if len(n) == 1 {
		if f, ok := specByShort[n[0]]; ok {
			return f.name
		}
	}
	return n
}

// argError is the one-line error about one argument of src.
func argError(text string, src ArgSource, format string, a ...any) error {
	return fmt.Errorf("docker argument %q in %s: %s; %s", text, src.Name, fmt.Sprintf(format, a...), src.Fix)
}

// ParseArgs reads a list of `docker run` options as the docker CLI does:
// "--flag value", "--flag=value", "-f value", "-fvalue", "-f=value",
// switches with an optional "=true|false", and grouped short switches ("-it").
// Empty elements are skipped. An option the agent does not support, an option
// without its value, or a word that is not an option is an error naming the
// option, src and the fix. Values are checked when the options are applied.
func ParseArgs(argv []string, src ArgSource) ([]Arg, error) {
	var out []Arg
	for i := 0; i < len(argv); i++ {
		// Surrounding blanks of an option are dropped (they creep into
		// configuration lists); a value keeps them after '='.
		tok := strings.TrimLeft(argv[i], " \t\r\n")
		if !strings.Contains(tok, "=") {
			tok = strings.TrimSpace(tok)
		}
		if strings.TrimSpace(tok) == "" {
			continue
		}
		if !strings.HasPrefix(tok, "-") || tok == "-" || tok == "--" {
			return nil, fmt.Errorf("docker argument %q in %s: not an option (only docker run options go there: the agent sets the image and the command); %s", tok, src.Name, src.Fix)
		}
		var (
			spec     *flagSpec
			value    string
			hasValue bool
		)
		if strings.HasPrefix(tok, "--") {
			name, v, eq := strings.Cut(tok[2:], "=")
			spec = specByLong[name]
			if spec == nil {
				return nil, unsupported("--"+name, tok, src)
			}
			value, hasValue = v, eq
		} else {
			spec = specByShort[tok[1]]
			if spec == nil {
				return nil, unsupported(tok[:2], tok, src)
			}
			rest := tok[2:]
			switch {
			case spec.value:
				rest = strings.TrimPrefix(rest, "=")
				value, hasValue = rest, rest != ""
			case strings.HasPrefix(rest, "="):
				value, hasValue = rest[1:], true
			case rest != "":
				// Grouped switches: -it. Each letter must be a switch.
				group := []Arg{{Flag: spec.name, Text: tok, Value: "true", Source: src}}
				for j := 0; j < len(rest); j++ {
					g := specByShort[rest[j]]
					if g == nil {
						return nil, unsupported("-"+rest[j:j+1], tok, src)
					}
					if g.value {
						return nil, argError(tok, src, "-%c takes a value, so it cannot be grouped with other switches; write it on its own, e.g. %s", rest[j], g.example)
					}
					group = append(group, Arg{Flag: g.name, Text: tok, Value: "true", Source: src})
				}
				out = append(out, group...)
				continue
			}
		}
		a := Arg{Flag: spec.name, Text: tok, Source: src}
		switch {
		case !spec.value:
			a.Value = "true"
			if hasValue {
				b, ok := parseSwitch(value)
				if !ok {
					return nil, argError(tok, src, "%q is not true or false", value)
				}
				a.Value = b
			}
		case hasValue:
			a.Value = value
		default:
			if i+1 >= len(argv) || strings.HasPrefix(strings.TrimSpace(argv[i+1]), "-") || strings.TrimSpace(argv[i+1]) == "" {
				return nil, argError(tok, src, "needs a value, e.g. %s", spec.example)
			}
			i++
			a.Value = argv[i]
		}
		out = append(out, a)
	}
	return out, nil
}

func unsupported(name, tok string, src ArgSource) error {
	return fmt.Errorf("docker argument %q in %s: %s is not supported in docker mode; %s (supported: %s)", tok, src.Name, printable(name), src.Fix, supportedList())
}

func parseSwitch(v string) (string, bool) {
	switch strings.ToLower(v) {
	case "true", "1", "t", "yes":
		return "true", true
	case "false", "0", "f", "no":
		return "false", true
	}
	return "", false
}

// switchesOf is the set of options used in args.
func switchesOf(args []Arg) map[string]bool {
	s := map[string]bool{}
	for _, a := range args {
		s[a.Flag] = true
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// printable is s as it is, or quoted when it holds control characters, so
// that a message stays on one line.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
