package main

// clearml-agent doctor and the daemon's preflight, end to end: the real
// binary against the emulator, each failure injected for real (a closed
// port, a wrong secret, a PATH without python, an engine socket that is not
// there, no NVML on this machine, a disk floor above the free space, a
// server clock that is off).

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

// doctorConf writes a clearml.conf for srvURL (plus extra lines in the
// agent section) and returns its path and an environment without the
// API variables of newEnv, so that the file is what counts.
func doctorConf(t *testing.T, srvURL, secret string, agent ...string) (string, *env) {
	t.Helper()
	e := newEnv(t, srvURL)
	var vars []string
	for _, kv := range e.vars {
		if !strings.HasPrefix(kv, "CLEARML_API_") {
			vars = append(vars, kv)
		}
	}
	e.vars = vars
	conf := filepath.Join(e.home, "clearml.conf")
	text := fmt.Sprintf("api {\n  api_server: %q\n  credentials { access_key: %q, secret_key: %q }\n}\nagent {\n  %s\n}\n",
		srvURL, testKey, secret, strings.Join(agent, "\n  "))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf, e
}

// listening accepts (and drops) connections on a 127.0.0.1 port until the test ends.
func listening(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().String()
}

// row returns the table row of check.
func row(out, check string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, check+"  ") {
			return l
		}
	}
	return ""
}

func TestDoctorHealthy(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	srv.CreateQueue("e2e")
	conf, e := doctorConf(t, srv.URL, testSecret, fmt.Sprintf("git_host: %q", listening(t)))
	code, out, stderr := runAgent(t, e, "--config-file", conf, "doctor", "--queue", "e2e", "--queue", "more", "--create-queue", "--cpu-only")
	if code != 0 {
		t.Fatalf("doctor exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	t.Logf("healthy:\n%s", out)
	for check, want := range map[string]string{
		"server":      "OK      " + srv.URL + " answers (HTTP ",
		"credentials": "OK      logged in as",
		"api version": "OK      ClearML server " + emulator.ServerVersion,
		"queues":      "OK      e2e exist; more will be created",
		"clock":       "OK      within 2 s",
		"python":      "OK      python3 is ",
		"venv":        "OK      ",
		"gpus":        "SKIP    --cpu-only",
		"disk":        "OK      ",
		"git host":    "OK      git 127.0.0.1:",
	} {
		if r := row(out, check); !strings.Contains(r, want) {
			t.Errorf("%s row %q, want %q", check, r, want)
		}
	}
	if !strings.HasSuffix(out, "0 failed, 0 warnings, 9 ok, 1 skipped\n") {
		t.Errorf("summary:\n%s", out)
	}
}

// skewedServer is the emulator behind a handler whose Date header runs
// skew ahead of this machine's clock.
func skewedServer(t *testing.T, skew time.Duration) string {
	t.Helper()
	emu := emulator.New(emulator.Options{Credentials: map[string]string{testKey: testSecret}})
	emu.CreateQueue("e2e")
	h := emu.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().Add(skew).UTC().Format(http.TimeFormat))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { hs.Close(); emu.Close() })
	return hs.URL
}

func TestDoctorBroken(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	srv.CreateQueue("e2e")
	empty := t.TempDir()
	for _, tc := range []struct {
		name   string
		url    string // "" = srv
		secret string // "" = testSecret
		agent  []string
		env    []string
		args   []string
		code   int
		check  string
		want   string
	}{
		{name: "unreachable server", url: "http://" + freePort(t), code: 1, check: "server", want: "FAIL    http://127.0.0.1:"},
		{name: "wrong secret", secret: "wrong", code: 1, check: "credentials", want: "FAIL    invalid credentials: the server refused the access key and secret"},
		{name: "missing queue", args: []string{"--queue", "nope"}, code: 1, check: "queues", want: `FAIL    queue "nope" not found (existing queues: e2e)`},
		{name: "no python", agent: []string{`python_binary: "/nowhere/python3"`}, env: []string{"PATH=" + empty}, code: 1,
			check: "python", want: "FAIL    no python interpreter found (tried python3, python, /nowhere/python3 on PATH " + empty + ")"},
		{name: "docker engine", env: []string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}, args: []string{"--docker=busybox"}, code: 1,
			check: "docker", want: "FAIL    docker engine at unix:///nonexistent/docker.sock does not answer"},
		{name: "gpu not there", args: []string{"--gpus", "1000"}, code: 1, check: "gpus", want: "FAIL    "},
		{name: "disk floor", agent: []string{"disk_min_free_gb: 1000000000"}, code: 1,
			check: "disk", want: "below the 1000000000 GiB floor (agent.disk_min_free_gb)"},
		{name: "git host down", agent: []string{fmt.Sprintf("git_host: %q", freePort(t))}, code: 1, check: "git host", want: "FAIL    cannot connect to git 127.0.0.1:"},
		{name: "clock warns", url: skewedServer(t, 2*time.Minute), code: 0, check: "clock", want: "WARN    server clock 2m0s ahead of this machine's (more than 30s)"},
		{name: "clock fails", url: skewedServer(t, -10*time.Minute), code: 1, check: "clock", want: "FAIL    server clock 10m0s behind this machine's (more than 5m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url, secret := srv.URL, testSecret
			if tc.url != "" {
				url = tc.url
			}
			if tc.secret != "" {
				secret = tc.secret
			}
			conf, e := doctorConf(t, url, secret, tc.agent...)
			args := tc.args
			if !strings.Contains(strings.Join(args, " "), "--gpus") {
				args = append(args, "--cpu-only")
			}
			code, out, stderr := runAgent(t, e.with(tc.env...), append([]string{"--config-file", conf, "doctor", "--queue", "e2e"}, args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstderr:\n%s", code, tc.code, stderr)
			}
			r := row(out, tc.check)
			if !strings.Contains(r, tc.want) {
				t.Errorf("%s row %q, want %q\n%s", tc.check, r, tc.want, out)
			}
			if tc.code != 0 && !strings.Contains(r, "FAIL") {
				t.Errorf("the failing row is not FAIL: %q", r)
			}
			t.Logf("%s:\n%s", tc.name, out)
		})
	}
}

// realPython is the interpreter behind python3 on this machine's PATH.
func realPython(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("python3: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// The daemon's preflight: without a python the daemon stays not READY,
// says why in STATUS= (logging it once), and becomes READY when the
// interpreter appears.
func TestPreflightHoldsReadyUntilPythonAppears(t *testing.T) {
	t.Parallel()
	py := realPython(t)
	srv := startServer(t)
	empty, bin := t.TempDir(), t.TempDir()
	target := filepath.Join(bin, "python3")
	e := newEnv(t, srv.URL).with("PATH="+empty, "CLEARML_AGENT__AGENT__PYTHON_BINARY="+target)
	a := startAgent(t, e, "daemon", "--queue", "pf", "--create-queue", "--cpu-only", "--foreground")

	st := a.notePrefix("STATUS=not ready: python: no python interpreter found (tried python3, python, " + target)
	if !strings.Contains(st, "; fix: install python3") {
		t.Errorf("STATUS without the fix: %q", st)
	}
	for _, n := range a.notifications() {
		if n == "READY=1" {
			t.Fatalf("READY=1 while python is missing: %q", a.notifications())
		}
	}
	// Registered (the checks run after workers.register) but not READY.

	// The interpreter appears (a wrapper, renamed into place at once).
	tmp := filepath.Join(bin, ".python3.tmp")
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\nexec "+py+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, target); err != nil {
		t.Fatal(err)
	}
	a.noteIs("READY=1")
	a.saw("STATUS=idle, polling pf")
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	logs := a.stderr.String()
	if n := strings.Count(logs, "not ready: retrying"); n != 1 {
		t.Errorf("the failure was logged %d times, want once (per change):\n%s", n, logs)
	}
	if !strings.Contains(logs, "preflight passed") {
		t.Errorf("no 'preflight passed' in the log:\n%s", logs)
	}
}

// A failing git host keeps the daemon not READY too; the STATUS names the
// check and its fix.
func TestPreflightGitHostDown(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	addr := freePort(t)
	e := newEnv(t, srv.URL).with("CLEARML_AGENT_GIT_HOST=" + addr)
	a := startAgent(t, e, "daemon", "--queue", "pf", "--create-queue", "--cpu-only", "--foreground")
	st := a.notePrefix("STATUS=not ready: git host: cannot connect to git " + addr + ": connection refused; fix: ")
	if !strings.Contains(st, "agent.git_host") {
		t.Errorf("STATUS %q does not name the setting", st)
	}
	// The port opens: the daemon goes on.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	a.noteIs("READY=1")
	a.signal(syscall.SIGTERM)
	a.wait()
}

// skipWithNVIDIAToolkit skips where the engine can give containers GPUs.
func skipWithNVIDIAToolkit(t *testing.T) {
	t.Helper()
	if p, err := exec.LookPath("nvidia-container-runtime-hook"); err == nil {
		t.Skipf("%s is installed: this engine serves GPU requests", p)
	}
}

// doctor --docker against the test engine: the engine and the image are
// fine; asking for GPUs from an engine without the NVIDIA runtime fails.
func TestDoctorDockerEngine(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	srv.CreateQueue("dq")
	e, eng := dockerEnv(t, srv)
	code, out, stderr := runAgent(t, e, "doctor", "--queue", "dq", "--docker="+eng.BusyboxImage, "--cpu-only")
	if code != 0 {
		t.Fatalf("doctor --docker exit %d\n%s\n%s", code, out, stderr)
	}
	for check, want := range map[string]string{
		"docker":       "OK      ",
		"docker gpu":   "SKIP    containers get no GPUs (--cpu-only)",
		"agent binary": "OK      ",
	} {
		if r := row(out, check); !strings.Contains(r, want) {
			t.Errorf("%s row %q, want %q\n%s", check, r, want, out)
		}
	}
	if r := row(out, "docker"); !strings.Contains(r, "at "+eng.Host+"; image "+eng.BusyboxImage+" present") {
		t.Errorf("docker row %q", r)
	}
	if row(out, "python") != "" {
		t.Errorf("python checked in docker mode:\n%s", out)
	}

	skipWithNVIDIAToolkit(t)
	code, out, _ = runAgent(t, e, "doctor", "--queue", "dq", "--docker="+eng.BusyboxImage, "--gpus", "0")
	if r := row(out, "docker gpu"); code != 1 || !strings.Contains(r, "FAIL    the engine cannot give containers GPUs: no nvidia runtime") || !strings.Contains(r, "nvidia-ctk runtime configure") {
		t.Errorf("exit %d, docker gpu row %q\n%s", code, r, out)
	}
	t.Logf("docker mode, GPUs asked:\n%s", out)
}

// In docker mode with GPUs, an engine that cannot give containers GPUs
// keeps the daemon not READY (it used to take tasks and fail each one);
// the task stays queued for an agent that can run it.
func TestPreflightDockerGPURuntimeMissing(t *testing.T) {
	t.Parallel()
	skipWithNVIDIAToolkit(t)
	srv := startServer(t)
	e, _ := dockerEnv(t, srv)
	id := srv.scriptTask(t, "gpu", "bash", "run.sh", "echo never\n", nil)
	srv.enqueue(t, id, "dq")
	a := startAgent(t, e, "daemon", "--queue", "dq", "--docker", "--gpus", "0")
	st := a.notePrefix("STATUS=not ready: docker gpu: the engine cannot give containers GPUs")
	if !strings.Contains(st, "; fix: install nvidia-container-toolkit") {
		t.Errorf("STATUS %q lacks the fix", st)
	}
	for _, n := range a.notifications() {
		if n == "READY=1" {
			t.Errorf("READY=1 without GPU support: %q", a.notifications())
		}
	}
	if got := srv.Task(id).Status; got != "queued" {
		t.Errorf("task status %q, want queued", got)
	}
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}
