package docker

import (
	"crypto/rand"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// containerNameRe is what the engine accepts as a container name.
var containerNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

var unsafeNameChars = regexp.MustCompile(`[^a-zA-Z0-9._-]`)

// randString returns 32 random lowercase letters (the {rand_string} field);
// tests replace it.
var randString = func() string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

// containerName renders agent.docker_container_name_format the way Python's
// str.format does for the fields it supports: {task_id}, {worker_id},
// {task_name} (characters a name may not hold become '-') and
// {rand_string}, each optionally truncated ({rand_string:.8}); "{{" and "}}"
// are literal braces. The result must be a valid container name.
func containerName(format string, fields map[string]string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		switch {
		case c == '{' && i+1 < len(format) && format[i+1] == '{':
			b.WriteByte('{')
			i++
		case c == '}' && i+1 < len(format) && format[i+1] == '}':
			b.WriteByte('}')
			i++
		case c == '}':
			return "", fmt.Errorf("agent.docker_container_name_format %q: single '}' at %d; write }} for a literal brace", format, i)
		case c == '{':
			j := strings.IndexByte(format[i:], '}')
			if j < 0 {
				return "", fmt.Errorf("agent.docker_container_name_format %q: '{' at %d is not closed", format, i)
			}
			field, spec, _ := strings.Cut(format[i+1:i+j], ":")
			v, ok := fields[field]
			if !ok {
				return "", fmt.Errorf("agent.docker_container_name_format %q: unknown field {%s}; use task_id, worker_id, task_name or rand_string", format, field)
			}
			if spec != "" {
				n, err := strconv.Atoi(strings.TrimPrefix(spec, "."))
				if !strings.HasPrefix(spec, ".") || err != nil || n < 0 {
					return "", fmt.Errorf("agent.docker_container_name_format %q: format %q of {%s} is not supported; use a length such as {%s:.8}", format, spec, field, field)
				}
				if n < len(v) {
					v = v[:n]
				}
			}
			b.WriteString(v)
			i += j
		default:
			b.WriteByte(c)
		}
	}
	name := b.String()
	if !containerNameRe.MatchString(name) {
		return "", fmt.Errorf("agent.docker_container_name_format %q gives %q, which is not a container name (letters, digits, _ . - and at least 2 characters, starting with a letter or digit); change the format", format, name)
	}
	return name, nil
}

// nameFields are the values of the name format's fields.
func nameFields(taskID, workerID, taskName string) map[string]string {
	return map[string]string{
		"task_id":     unsafeNameChars.ReplaceAllString(taskID, "-"),
		"worker_id":   unsafeNameChars.ReplaceAllString(workerID, "-"),
		"task_name":   unsafeNameChars.ReplaceAllString(taskName, "-"),
		"rand_string": randString(),
	}
}
