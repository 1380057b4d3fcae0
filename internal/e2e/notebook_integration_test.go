//go:build integration

package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"

	"github.com/gpufleet/clearml-agent-go/internal/nspawn"
)

// TestIntegrationNotebookBootstrap runs the notebook cell (scripts/notebook_bootstrap.py)
// in the cloud-init rootfs without booting it: a plain process tree under a
// stub init, no systemd, as in a Colab runtime. The cell downloads and
// installs the release (sha256 checked), starts the agents under
// `agent-provision run`, a task completes with a headless matplotlib
// backend, and interrupting the cell (SIGINT, as the notebook's stop button
// does) drains them: the running task completes and the workers leave.
func TestIntegrationNotebookBootstrap(t *testing.T) {
	nspawn.SkipUnlessRoot(t)
	srv, queues := startServer(t, "default")
	rel := release(t)
	url := serveFile(t, rel.Tarball)
	root := nspawn.EphemeralRoot(t, nspawn.RootfsCloudInit(t))
	for src, dst := range map[string]string{
		"scripts/notebook_bootstrap.py": "content/notebook_bootstrap.py",
		"templates/install.sh":          "content/install.sh",
	} {
		if err := copyFile(filepath.Join(repoRoot(t), src), filepath.Join(root, dst), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// Missing secrets: the cell names them and stops.
	var miss testenv.Buffer
	cmd := nspawn.Process(t, root, []string{"CLEARML_API_HOST=" + srv.URL}, &miss, "python3", "/content/notebook_bootstrap.py")
	if err := cmd.Wait(); err == nil {
		t.Errorf("the cell succeeded without secrets:\n%s", miss.String())
	}
	for _, name := range []string{"CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY"} {
		if !strings.Contains(miss.String(), name) {
			t.Errorf("the cell's output does not name the missing %s:\n%s", name, miss.String())
		}
	}

	var out testenv.Buffer
	start := time.Now()
	cmd = nspawn.Process(t, root, []string{
		"CLEARML_API_HOST=" + srv.URL, "CLEARML_API_ACCESS_KEY=" + accessKey, "CLEARML_API_SECRET_KEY=" + secretKey,
		"CLEARML_QUEUE=default", "CLEARML_AGENT_GO_URL=" + url, "CLEARML_AGENT_GO_SHA256=" + rel.SHA256,
	}, &out, "python3", "/content/notebook_bootstrap.py")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(2 * time.Minute)
	for len(srv.Workers()) == 0 {
		select {
		case err := <-exited:
			t.Fatalf("the cell ended (%v) before an agent registered:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agent registered within 2m:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("TIMING notebook cell start-to-registered: %s", time.Since(start).Round(10*time.Millisecond))
	_, log := runTask(t, srv, queues["default"], "plot", "echo \"MPLBACKEND=$MPLBACKEND\"\n", 2*time.Minute)
	if !strings.Contains(log, "MPLBACKEND=Agg") {
		t.Errorf("the task does not see MPLBACKEND=Agg:\n%s", log)
	}
	t.Logf("TIMING notebook cell start-to-first-task-completed: %s", time.Since(start).Round(10*time.Millisecond))

	// Stop the cell while a task runs: it drains.
	long := enqueueScript(t, srv, queues["default"], "long", "echo \"started $CLEARML_TASK_ID\"\nsleep 4\necho finished\n")
	waitLog(t, srv, long, "started "+long, time.Minute)
	py := nspawn.FindProcess(cmd.Process.Pid, "notebook_bootstrap.py")
	if py == 0 {
		t.Fatalf("no python process of the cell under systemd-nspawn (pid %d)", cmd.Process.Pid)
	}
	if err := syscall.Kill(py, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the interrupted cell exited with %v, want 0 after a clean drain", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("the cell did not end within 2m of SIGINT:\n%s", out.String())
	}
	log = waitTask(t, srv, long, 10*time.Second)
	if !strings.Contains(log, "finished") {
		t.Errorf("the drained task lacks its last line:\n%s", log)
	}
	if w := srv.Workers(); len(w) != 0 {
		t.Errorf("workers still registered after the cell stopped: %v", w)
	}
	t.Logf("cell output:\n%s", out.String())
}
