package cli

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpufleet/clearml-agent-go/agent/doctor"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

// doctorEnv serves the emulator (with queue "q") and returns an
// environment pointing the agent at it.
func doctorEnv(t *testing.T) []string {
	t.Helper()
	emu := emulator.New(emulator.Options{Credentials: map[string]string{"DOCTORCLIKEY1234": "s3cret"}})
	emu.CreateQueue("q")
	srv := httptest.NewServer(emu.Handler())
	t.Cleanup(func() { srv.Close(); emu.Close() })
	root := t.TempDir()
	return []string{
		"HOME=" + filepath.Join(root, "home"), "TMPDIR=" + root, "PATH=" + os.Getenv("PATH"),
		"CLEARML_API_HOST=" + srv.URL, "CLEARML_API_ACCESS_KEY=DOCTORCLIKEY1234", "CLEARML_API_SECRET_KEY=s3cret",
		"CLEARML_AGENT_STATE_DIR=" + filepath.Join(root, "state"),
	}
}

func TestDoctorCLIHealthy(t *testing.T) {
	env := doctorEnv(t)
	code, out, stderr := runCLI(t, "", env, "doctor", "--queue", "q", "--cpu-only")
	if code != 0 || stderr != "" {
		t.Fatalf("doctor exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, want := range []string{"CHECK", "STATUS", "DETAIL", "FIX", "server ", "credentials ", "api version ", "queues ", "clock ",
		"python ", "venv ", "gpus ", "disk ", "git host ", "\n0 failed, 0 warnings, "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runCLI(t, "", env, "doctor", "--queue", "q,new", "--create-queue", "--cpu-only", "--json")
	rep, err := doctor.ReadJSON(strings.NewReader(out))
	if code != 0 || err != nil || !rep.OK {
		t.Fatalf("doctor --json exit %d, %v:\n%s", code, err, out)
	}
	for _, r := range rep.Results {
		if r.Name == "queues" && r.Detail != "q exist; new will be created" {
			t.Errorf("queues = %+v", r)
		}
	}
}

func TestDoctorCLIFailures(t *testing.T) {
	env := doctorEnv(t)
	empty := t.TempDir()
	for _, tc := range []struct {
		name  string
		env   []string
		args  []string
		check string // the failing row
		want  string
	}{
		{"missing queue", nil, []string{"--queue", "nope"}, "queues", `queue "nope" not found (existing queues: q)`},
		{"wrong secret", []string{"CLEARML_API_SECRET_KEY=wrong"}, nil, "credentials", "invalid credentials"},
		{"no python", []string{"PATH=" + empty, "CLEARML_AGENT__AGENT__PYTHON_BINARY=/nowhere/python3"}, nil, "python", "no python interpreter found (tried python3, python, /nowhere/python3"},
		{"git host", []string{"CLEARML_AGENT_GIT_HOST=127.0.0.1:1"}, nil, "git host", "cannot connect to git 127.0.0.1:1"},
		{"disk", []string{"CLEARML_AGENT__AGENT__DISK_MIN_FREE_GB=1000000000"}, nil, "disk", "below the 1000000000 GiB floor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"doctor", "--cpu-only"}, tc.args...)
			code, out, _ := runCLI(t, "", append(append([]string(nil), env...), tc.env...), args...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			row := ""
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, tc.check+"  ") {
					row = l
				}
			}
			if !strings.Contains(row, "FAIL") || !strings.Contains(row, tc.want) {
				t.Errorf("%s row %q, want FAIL with %q\n%s", tc.check, row, tc.want, out)
			}
		})
	}
}

func TestDoctorCLIBadFlags(t *testing.T) {
	env := doctorEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--gpus", "x"}, `clearml-agent: error: --gpus "x": invalid GPU id "x" at position 1`},
		{[]string{"--gpus", "0", "--cpu-only"}, `clearml-agent: error: --gpus "0" and --cpu-only contradict each other; drop one`},
		{[]string{"--gpus", "3-1"}, `range "3-1" at position 1 runs backwards`},
		{[]string{"--bogus"}, "clearml-agent: error: unknown long flag '--bogus'; try --help"},
	} {
		code, out, stderr := runCLI(t, "", env, append([]string{"doctor"}, tc.args...)...)
		if code != 2 || out != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("doctor %v: exit %d, stdout %q, stderr %q; want 2 and one line with %q", tc.args, code, out, stderr, tc.want)
		}
	}
}

// Docker mode checks the engine at DOCKER_HOST instead of python.
func TestDoctorCLIDockerUnreachable(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	code, out, _ := runCLI(t, "", doctorEnv(t), "doctor", "--docker=busybox", "--cpu-only")
	if code != 1 || !strings.Contains(out, "docker engine at unix:///nonexistent/docker.sock does not answer") ||
		strings.Contains(out, "\npython ") || !strings.Contains(out, "docker gpu") || !strings.Contains(out, "agent binary") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}
