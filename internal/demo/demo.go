package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

// Options configure one demo run.
type Options struct {
	AgentBin string    // path of the clearml-agent binary
	WorkDir  string    // scratch directory (config, repo, venvs, state)
	Out      io.Writer // where the demo narrates
}

const sampleTask = `import time

print("sample task: training a tiny model", flush=True)
loss = 1.0
for epoch in range(1, 6):
    loss *= 0.6
    print(f"epoch {epoch}/5 loss={loss:.4f}", flush=True)
    time.sleep(0.3)
print("done: final loss", round(loss, 4))
`

// Run executes the demo; it returns an error when any step fails.
func Run(ctx context.Context, o Options) error {
	say := func(format string, a ...any) { fmt.Fprintf(o.Out, "==> "+format+"\n", a...) }
	wd, err := filepath.Abs(o.WorkDir)
	if err != nil {
		return err
	}
	o.WorkDir = wd
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return err
	}

	// 1. The server.
	const key, secret = "DEMOACCESSKEY0000001", "demo-secret-key-for-the-local-emulator-only"
	srv := emulator.New(emulator.Options{Credentials: map[string]string{key: secret}})
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	host := "http://" + ln.Addr().String()
	say("ClearML API emulator listening on %s", host)

	// 2. clearml.conf through the real init command, then config.
	conf := filepath.Join(o.WorkDir, "clearml.conf")
	_ = os.Remove(conf)
	env := append(os.Environ(), "HOME="+o.WorkDir)
	if err := runCmd(ctx, o, env, o.AgentBin, "--config-file", conf, "init", "--non-interactive",
		"--api-host", host, "--access-key", key, "--secret-key", secret); err != nil {
		return fmt.Errorf("clearml-agent init: %w", err)
	}
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "\n# demo: keep every cache inside the demo directory\nagent.venvs_dir: %q\nagent.vcs_cache.path: %q\nagent.venvs_cache.path: %q\n",
		filepath.Join(o.WorkDir, "venvs-builds"), filepath.Join(o.WorkDir, "vcs-cache"), filepath.Join(o.WorkDir, "venvs-cache"))
	f.Close()
	say("clearml-agent config (secrets masked), the api section:")
	out, err := exec.CommandContext(ctx, o.AgentBin, "--config-file", conf, "config").CombinedOutput()
	if err != nil {
		return fmt.Errorf("clearml-agent config: %w: %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Current") || strings.HasPrefix(l, "api.credentials") || strings.Contains(l, "_server =") {
			fmt.Fprintln(o.Out, "    "+l)
		}
	}

	// 3. A sample repository.
	repoDir := filepath.Join(o.WorkDir, "sample-repo")
	_ = os.RemoveAll(repoDir)
	if err := makeRepo(ctx, repoDir); err != nil {
		return fmt.Errorf("sample repository: %w", err)
	}
	say("sample task repository: %s (train.py)", repoDir)

	// 4. The agent.
	state := filepath.Join(o.WorkDir, "state")
	agent := exec.CommandContext(ctx, o.AgentBin, "--config-file", conf, "daemon", "--queue", "demo", "--create-queue",
		"--foreground", "--state-dir", state)
	agent.Env = append(env, "CLEARML_AGENT_QUEUE_POLL_FREQ_SEC=1")
	agent.Stdout = prefix(o.Out, "    [agent] ")
	agent.Stderr = prefix(o.Out, "    [agent] ")
	agent.Cancel = func() error { return agent.Process.Signal(syscall.SIGTERM) }
	agent.WaitDelay = 30 * time.Second
	if err := agent.Start(); err != nil {
		return err
	}
	say("clearml-agent daemon --queue demo --create-queue --foreground (pid %d)", agent.Process.Pid)
	var q api.Queue
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var ok bool
		if q, ok = srv.Queue("demo"); ok && len(srv.Workers()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the agent did not register within 20 s")
		}
	}

	// 5. A task, enqueued as the SDK would.
	id := srv.CreateTask(api.Task{Name: "demo training", Type: "training", Script: &api.Script{
		Repository: "file://" + repoDir, Branch: "main", EntryPoint: "train.py", Binary: "python3"}})
	if err := srv.Enqueue(id, q.ID); err != nil {
		return err
	}
	say("enqueued task %s on queue demo; following its log on the server:", id)
	seen := 0
	var final api.Task
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		for _, e := range srv.TaskLog(id)[seen:] {
			for _, l := range strings.Split(strings.TrimRight(e.Msg, "\n"), "\n") {
				fmt.Fprintf(o.Out, "    [task log %-5s] %s\n", e.Level, l)
			}
			seen++
		}
		final = srv.Task(id)
		if st := final.Status; st == api.StatusCompleted || st == api.StatusFailed || st == api.StatusStopped {
			time.Sleep(300 * time.Millisecond)
			for _, e := range srv.TaskLog(id)[seen:] {
				fmt.Fprintf(o.Out, "    [task log %-5s] %s\n", e.Level, strings.TrimRight(e.Msg, "\n"))
			}
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("task %s did not finish within 3 minutes (status %s)", id, final.Status)
		}
	}
	say("task %s final status: %s (%s)", id, final.Status, final.StatusReason)

	// 6. Drain and stop the agent (first SIGTERM).
	_ = agent.Process.Signal(syscall.SIGTERM)
	werr := agent.Wait()
	say("agent stopped (%v); workers left registered: %d", exitText(werr), len(srv.Workers()))
	if final.Status != api.StatusCompleted {
		return fmt.Errorf("task ended %s, want completed", final.Status)
	}
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

func runCmd(ctx context.Context, o Options, env []string, bin string, args ...string) error {
	c := exec.CommandContext(ctx, bin, args...)
	c.Env = env
	c.Stdout, c.Stderr = prefix(o.Out, "    "), prefix(o.Out, "    ")
	return c.Run()
}

func makeRepo(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "train.py"), []byte(sampleTask), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "train.py"},
		{"-c", "user.email=demo@example.com", "-c", "user.name=demo", "commit", "-q", "-m", "sample task"}} {
		if out, err := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %w: %s", args[0], err, out)
		}
	}
	return nil
}

// prefix returns a writer that prefixes every line written to w.
func prefix(w io.Writer, p string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(w, p+sc.Text())
		}
	}()
	return pw
}
