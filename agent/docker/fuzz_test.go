package docker

import (
	"strings"
	"testing"
)

// FuzzParseArgs: any docker run arguments (NUL-separated here) parse or give
// a one-line error; no panic.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{
		"--ipc=host", "-e\x00A=1\x00--shm-size\x008g", "-v\x00/a:/b:ro\x00--mount\x00type=bind,src=/a,dst=/b",
		"--network\x00host\x00--privileged", "--entrypoint\x00/bin/sh", "-it", "--no-such-flag", "-e", "--env-file=/x",
		"--device=/dev/nvidia0:/dev/nvidia0:rwm", "--ulimit\x00nofile=1024:2048", "-u\x001000:1000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, joined string) {
		argv := strings.Split(joined, "\x00")
		_, err := ParseArgs(argv, ArgSource{Name: "fuzz", Fix: "edit the fuzz input"})
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error is not one line: %q", err)
		}
	})
}

// FuzzEnvFile: any --env-file content is read into KEY=VALUE pairs or gives
// a one-line error naming the line; no panic.
func FuzzEnvFile(f *testing.F) {
	for _, s := range []string{"A=1\n# comment\nB\n", "  C = x\r\n", "=nokey\n", "KEY WITH SPACE=1", "\x00=\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := newApplied()
		o := applyOptions{hostEnv: map[string]string{"B": "from host"},
			readFile: func(string) ([]byte, error) { return data, nil }}
		a := Arg{Flag: "env-file", Text: "--env-file=/x.env", Value: "/x.env", Source: ArgSource{Name: "fuzz", Fix: "edit it", Trusted: true}}
		if err := p.envFile(a, o); err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error is not one line: %q", err)
		}
	})
}
