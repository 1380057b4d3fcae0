// Package wheeltest builds Python wheels and serves them from a PEP 503
// simple index in tests, so that real pip runs against a real index without
// PyPI. Test support only: nothing outside _test.go files imports it.
package wheeltest

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// Build constructs a pure-python wheel for name==version with one module
// and one console script "<name>-cli" that prints sys.prefix.
func Build(t testing.TB, name, version string) (string, []byte) {
	t.Helper()
	dist := name + "-" + version + ".dist-info"
	files := []struct{ path, body string }{
		{name + "/__init__.py", "VALUE = 42\ndef main():\n    import sys\n    print(sys.prefix)\n"},
		{dist + "/METADATA", "Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version + "\n"},
		{dist + "/WHEEL", "Wheel-Version: 1.0\nGenerator: wheeltest\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
		{dist + "/entry_points.txt", "[console_scripts]\n" + name + "-cli = " + name + ":main\n"},
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var record strings.Builder
	for _, f := range files {
		w, err := zw.Create(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(f.body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.path, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.body))
	}
	fmt.Fprintf(&record, "%s/RECORD,,\n", dist)
	w, err := zw.Create(dist + "/RECORD")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(record.String())); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return name + "-" + version + "-py3-none-any.whl", buf.Bytes()
}

// Index is a PEP 503 simple index over wheels built in the test; it counts
// the requests it served.
type Index struct {
	*httptest.Server
	hits atomic.Int64
}

// Hits returns how many requests the index served.
func (ix *Index) Hits() int64 { return ix.hits.Load() }

// NewIndex serves wheels (file name -> content) until the test ends.
func NewIndex(t testing.TB, wheels map[string][]byte) *Index {
	t.Helper()
	return NewAuthIndex(t, wheels, "", "")
}

// NewAuthIndex is NewIndex behind HTTP basic auth with user and password
// (none when both are empty): a private index whose URL carries credentials.
func NewAuthIndex(t testing.TB, wheels map[string][]byte, user, password string) *Index {
	t.Helper()
	ix := &Index{}
	mux := http.NewServeMux()
	mux.HandleFunc("/simple/{project}/", func(w http.ResponseWriter, r *http.Request) {
		ix.hits.Add(1)
		project := r.PathValue("project")
		var links strings.Builder
		for file, body := range wheels {
			if strings.HasPrefix(file, strings.ReplaceAll(project, "-", "_")+"-") || strings.HasPrefix(file, project+"-") {
				sum := sha256.Sum256(body)
				fmt.Fprintf(&links, "<a href=\"/files/%s#sha256=%s\">%s</a>\n", file, hex.EncodeToString(sum[:]), file)
			}
		}
		if links.Len() == 0 {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "<!DOCTYPE html><html><body>\n%s</body></html>\n", links.String())
	})
	mux.HandleFunc("/files/{file}", func(w http.ResponseWriter, r *http.Request) {
		ix.hits.Add(1)
		body, ok := wheels[r.PathValue("file")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	})
	var h http.Handler = mux
	if user != "" || password != "" {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="wheeltest"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			mux.ServeHTTP(w, r)
		})
	}
	ix.Server = httptest.NewServer(h)
	t.Cleanup(ix.Close)
	return ix
}

// PipEnv keeps pip offline and quick to fail on this machine.
var PipEnv = []string{
	"PIP_FIND_LINKS=", "PIP_DEFAULT_TIMEOUT=5", "PIP_NO_INPUT=1",
	"PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_CONFIG_FILE=/dev/null", "PIP_RETRIES=0",
}

// backend is a PEP 517/660 build backend kept inside the project it builds
// (pyproject.toml names it with backend-path), so pip builds the project
// without fetching setuptools or any other build requirement: the
// project's module directory becomes a wheel, or for `pip install -e` a
// wheel holding a .pth file that points at the source.
const backend = `import base64, hashlib, os, zipfile

NAME, VERSION = %q, %q
HERE = os.path.dirname(os.path.abspath(__file__))


def _wheel(directory, files):
    dist = "%%s-%%s.dist-info" %% (NAME, VERSION)
    files = dict(files)
    files[dist + "/METADATA"] = "Metadata-Version: 2.1\nName: %%s\nVersion: %%s\n" %% (NAME, VERSION)
    files[dist + "/WHEEL"] = "Wheel-Version: 1.0\nGenerator: wheeltest\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, body in files.items():
        data = body.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%%s,sha256=%%s,%%d" %% (path, digest, len(data)))
    record.append(dist + "/RECORD,,")
    files[dist + "/RECORD"] = "\n".join(record) + "\n"
    name = "%%s-%%s-py3-none-any.whl" %% (NAME, VERSION)
    with zipfile.ZipFile(os.path.join(directory, name), "w") as z:
        for path, body in files.items():
            z.writestr(path, body)
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = {}
    for root, _, names in os.walk(os.path.join(HERE, NAME)):
        for n in names:
            if n.endswith(".py"):
                p = os.path.join(root, n)
                with open(p) as f:
                    files[os.path.relpath(p, HERE)] = f.read()
    return _wheel(wheel_directory, files)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {NAME + ".pth": HERE + "\n"})
`

// Project returns the files (path -> content) of a buildable source project
// for name==version whose module sets VALUE = value: pip installs it from a
// directory, with -e, or from git without any index. prefix is prepended to
// every path (e.g. "libs/name/").
func Project(prefix, name, version, value string) map[string]string {
	return map[string]string{
		prefix + "pyproject.toml": "[build-system]\nrequires = []\nbuild-backend = \"wheeltest_backend\"\nbackend-path = [\".\"]\n\n" +
			"[project]\nname = \"" + name + "\"\nversion = \"" + version + "\"\n",
		prefix + "wheeltest_backend.py": fmt.Sprintf(backend, name, version),
		prefix + name + "/__init__.py":  fmt.Sprintf("VALUE = %q\n", value),
	}
}

// SystemWheel reads the wheel Debian ships for project (python3-pip-whl puts
// pip's in /usr/share/python-wheels) and returns its file name and content;
// the test is skipped when there is none.
func SystemWheel(t testing.TB, project string) (string, []byte) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("/usr/share/python-wheels", project+"-*-py3-none-any.whl"))
	if len(files) == 0 {
		t.Skipf("no %s wheel in /usr/share/python-wheels (apt-get install python3-%s-whl)", project, project)
	}
	body, err := os.ReadFile(files[len(files)-1])
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(files[len(files)-1]), body
}

// PoetryEnv keeps poetry offline, non-interactive and away from the user's
// cache and keyring (as PipEnv does for pip).
func PoetryEnv(t testing.TB) []string {
	return append(slices.Clone(PipEnv), "POETRY_CACHE_DIR="+t.TempDir(), "POETRY_NO_INTERACTION=1",
		"PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring")
}

// PoetryProject writes a poetry project into dir: name, with a module of
// that name setting VALUE, depending on deps (project -> constraint) from
// the index at indexURL as its only source; then locks it with the real
// poetry (poetry.lock is written). The test is skipped without poetry.
func PoetryProject(t testing.TB, dir, name, indexURL string, deps map[string]string) {
	t.Helper()
	poetry, err := exec.LookPath("poetry")
	if err != nil {
		t.Skip("poetry not installed (apt-get install python3-poetry)")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[tool.poetry]\nname = %q\nversion = \"0.1.0\"\ndescription = \"\"\nauthors = [\"test <test@example.com>\"]\n\n", name)
	b.WriteString("[tool.poetry.dependencies]\npython = \"^3.8\"\n")
	for _, d := range slices.Sorted(maps.Keys(deps)) {
		fmt.Fprintf(&b, "%s = %q\n", d, deps[d])
	}
	fmt.Fprintf(&b, "\n[[tool.poetry.source]]\nname = \"local\"\nurl = %q\ndefault = true\n\n", indexURL)
	b.WriteString("[build-system]\nrequires = [\"poetry-core\"]\nbuild-backend = \"poetry.core.masonry.api\"\n")
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pyproject.toml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name, "__init__.py"), []byte("VALUE = 'poetry "+name+"'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(poetry, "lock")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), PoetryEnv(t)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("poetry lock in %s: %v\n%s", dir, err, out)
	}
}
