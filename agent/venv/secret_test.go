package venv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/internal/wheeltest"
)

// TestIndexCredentials: index URLs with credentials reach pip through
// PIP_INDEX_URL / PIP_EXTRA_INDEX_URL, never its command line (which `ps`
// shows), and no task log line holds the passwords. Two indexes behind basic
// auth, each holding one of the packages, prove pip got both.
func TestIndexCredentials(t *testing.T) {
	needPython(t)
	tinyFile, tinyBody := wheeltest.Build(t, "tinypkg", "1.0")
	otherFile, otherBody := wheeltest.Build(t, "otherpkg", "1.0")
	main := wheeltest.NewAuthIndex(t, map[string][]byte{tinyFile: tinyBody}, "alice", "m41n-s3cret")
	extra := wheeltest.NewAuthIndex(t, map[string][]byte{otherFile: otherBody}, "bob", "3xtra-s3cret")
	withAuth := func(ix *wheeltest.Index, userinfo string) string {
		return strings.Replace(ix.URL, "http://", "http://"+userinfo+"@", 1) + "/simple/"
	}
	log, lines := collect(t)
	spec := Spec{PythonBinary: "python3", Requirements: "tinypkg==1.0\notherpkg==1.0", PriorityPackages: []string{"otherpkg"},
		IndexURL: withAuth(main, "alice:m41n-s3cret"), ExtraIndexURLs: []string{withAuth(extra, "bob:3xtra-s3cret")},
		WorkDir: t.TempDir(), Env: wheeltest.PipEnv}
	venv, err := Ensure(t.Context(), spec, log)
	if err != nil {
		t.Fatal(err)
	}
	run(t, venv.Python, "-c", "import tinypkg, otherpkg")
	all := strings.Join(*lines, "\n")
	for _, pw := range []string{"m41n-s3cret", "3xtra-s3cret"} {
		if strings.Contains(all, pw) {
			t.Errorf("password %s in the task log:\n%s", pw, all)
		}
	}
	if strings.Contains(all, "--index-url") || strings.Contains(all, "--extra-index-url") {
		t.Errorf("index options on pip's command line:\n%s", all)
	}
	if !strings.Contains(all, "PIP_INDEX_URL=http://****@127.0.0.1") || !strings.Contains(all, "PIP_EXTRA_INDEX_URL=http://****@127.0.0.1") {
		t.Errorf("the log does not say which indexes pip uses (masked):\n%s", all)
	}
}

// TestIndexCredentialsUV: uv gets the index URLs in UV_INDEX_URL and
// UV_EXTRA_INDEX_URL (several space-separated), not in its arguments.
func TestIndexCredentialsUV(t *testing.T) {
	needPython(t)
	ix := tinyIndex(t, nil)
	bin := t.TempDir()
	argsLog := filepath.Join(t.TempDir(), "uv-args")
	writeTree(t, bin, map[string]string{"uv": `#!/bin/sh
echo "args=$* index=$UV_INDEX_URL extra=$UV_EXTRA_INDEX_URL" >> "` + argsLog + `"
py=$4; shift 4
exec python3 -m pip --python "$py" install "$@"
`})
	if err := os.Chmod(filepath.Join(bin, "uv"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(append([]string{}, wheeltest.PipEnv...), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	spec := Spec{PythonBinary: "python3", Manager: "uv", Requirements: "tinypkg==1.0",
		IndexURL: ix.URL + "/simple/", ExtraIndexURLs: []string{"https://u:p4ss@one.invalid/simple", " ", "https://tok3n@two.invalid/simple"},
		WorkDir: t.TempDir(), Env: env}
	if _, err := Ensure(t.Context(), spec, func(s string) { t.Log(s) }); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(argsLog)
	got := string(b)
	if want := " index=" + ix.URL + "/simple/ extra=https://u:p4ss@one.invalid/simple https://tok3n@two.invalid/simple\n"; !strings.HasSuffix(got, want) {
		t.Errorf("uv calls:\n%s\nwant them to end %q", got, want)
	}
	if args, _, _ := strings.Cut(got, " index="); strings.Contains(args, "p4ss") || strings.Contains(args, "tok3n") || strings.Contains(args, "index-url") {
		t.Errorf("index URLs in uv's arguments: %s", got)
	}
}

// TestOutputMasked: the installers' own output lines reach the task log with
// URL credentials masked.
func TestOutputMasked(t *testing.T) {
	log, lines := collect(t)
	ins := &installer{dir: t.TempDir(), log: log}
	out, err := ins.run(t.Context(), t.TempDir(), nil, "sh", "-c", "echo 'Looking in indexes: https://tok3n@pypi.internal/simple'; echo 'ERROR: 401 for https://u:p4ss@h/x' >&2")
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(*lines, "\n") + out
	if strings.Contains(all, "tok3n") || strings.Contains(all, "p4ss") || !strings.Contains(all, "Looking in indexes: https://****@pypi.internal/simple") {
		t.Errorf("output not masked:\n%s", all)
	}
}
