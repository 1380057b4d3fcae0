//go:build gpu

package gpucheck

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

func TestGPUAgent(t *testing.T) {
	bin := os.Getenv("CLEARML_AGENT_BIN")
	if bin == "" {
		t.Fatal("set CLEARML_AGENT_BIN to the clearml-agent binary")
	}
	srv := emulator.New(emulator.Options{Credentials: map[string]string{"AK": "SK"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, srv.Handler())
	dir := t.TempDir()
	conf := filepath.Join(dir, "clearml.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("api { api_server: http://%s\n credentials { access_key: AK, secret_key: SK } }\nagent.venvs_dir: %s/venvs\n", ln.Addr(), dir)), 0o600)
	cmd := exec.Command(bin, "--config-file", conf, "daemon", "--queue", "gpu", "--create-queue", "--gpus", "0", "--foreground", "--state-dir", filepath.Join(dir, "state"))
	cmd.Env = append(os.Environ(), "CLEARML_AGENT_QUEUE_POLL_FREQ_SEC=0.5", "CLEARML_AGENT_STATUS_REPORT_FREQ_SEC=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()

	var q api.Queue
	deadline := time.Now().Add(30 * time.Second)
	for ; time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var ok bool
		if q, ok = srv.Queue("gpu"); ok && len(srv.Workers()) > 0 {
			break
		}
	}
	w := srv.Workers()
	if len(w) == 0 {
		t.Fatal("agent did not register")
	}
	t.Logf("worker id: %s", w[0].ID)
	// Two tasks without a repository (script.diff holds the script): a bash
	// one printing the device variables, a python one counting CUDA devices
	// through the driver API (ctypes, no packages needed).
	run := func(name, entry, binary, script string) string {
		id := srv.CreateTask(api.Task{Name: name, Script: &api.Script{EntryPoint: entry, Binary: binary, Diff: script}})
		if err := srv.Enqueue(id, q.ID); err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if st := srv.Task(id).Status; st == api.StatusCompleted || st == api.StatusFailed {
				break
			}
		}
		var log []string
		for _, e := range srv.TaskLog(id) {
			log = append(log, e.Msg)
		}
		text := strings.Join(log, "\n")
		t.Logf("task %s (%s): %s\n%s", id, name, srv.Task(id).Status, text)
		if st := srv.Task(id).Status; st != api.StatusCompleted {
			t.Errorf("task %s ended %s", name, st)
		}
		return text
	}
	if text := run("devices", "check.sh", "bash", "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES\nnvidia-smi -L || true\n"); !strings.Contains(text, "CUDA_VISIBLE_DEVICES=0 NVIDIA_VISIBLE_DEVICES=0") {
		t.Errorf("task did not see GPU 0 in its environment")
	}
	if text := run("cuda", "cuda.py", "python3", cudaScript); !strings.Contains(text, "cuda devices: 1") {
		t.Errorf("python task did not see exactly one CUDA device")
	}
	// machine stats with GPU fields, from the emulator's worker list
	time.Sleep(3 * time.Second)
	ms := srv.WorkerStats(w[0].ID)
	t.Logf("machine_stats: %+v", ms)
	if len(ms.GPUUsage) == 0 || len(ms.GPUMemoryFree) == 0 {
		t.Errorf("status reports carry no GPU fields: %+v", ms)
	}
}

const cudaScript = `import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0, "cuInit failed"
n = ctypes.c_int()
cuda.cuDeviceGetCount(ctypes.byref(n))
print("cuda devices:", n.value, flush=True)
`
