//go:build integration

package provision_test

import (
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
	"github.com/gpufleet/clearml-agent-go/internal/nspawn"
)

// TestIntegrationNspawn provisions two GPU agents and a services agent inside
// a container with real systemd as PID 1 and the emulator on the host.
func TestIntegrationNspawn(t *testing.T) {
	nspawn.SkipUnlessRoot(t)
	ctx := t.Context()
	srv := emulator.New(emulator.Options{Credentials: map[string]string{"AKEY": "SKEY"}})
	t.Cleanup(func() { srv.Close() })
	srv.CreateQueue("gpu")
	drainQ := srv.CreateQueue("gpu0")
	srv.CreateQueue("services")
	frozenQ := srv.CreateQueue("gpu1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	m := nspawn.Boot(t, nspawn.Options{Ephemeral: true})
	for bin, pkg := range map[string]string{"agent-provision": "../cmd/agent-provision", "clearml-agent": "../cmd/clearml-agent"} {
		out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(m.Root(), "usr/local/bin", bin), pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	sh := func(args ...string) string {
		t.Helper()
		out, err := m.Exec(ctx, args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	show := func(unit, prop string) string {
		return strings.TrimSpace(sh("systemctl", "show", "-p", prop, "--value", unit))
	}
	waitActiveNewPID := func(unit, oldPID string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			pid, state := show(unit, "MainPID"), show(unit, "ActiveState")
			if state == "active" && pid != "0" && pid != oldPID {
				t.Logf("%s active again with pid %s (was %s)", unit, pid, oldPID)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not restarted within %s: pid %s state %s\n%s", unit, within, pid, state, m.Journal(unit))
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	provision := []string{"agent-provision", "--gpus", "0,1", "--services-agent", "--queue", "gpu",
		"--api-host", "http://" + ln.Addr().String(), "--access-key", "AKEY", "--secret-key", "SKEY",
		"--agent-queues", "gpu0=gpu,gpu0", "--agent-queues", "gpu1=gpu1", "--watchdog-sec", "5", "--wait", "90s"}
	out, err := m.Exec(ctx, provision...)
	t.Logf("agent-provision:\n%s", out)
	if err != nil {
		for _, u := range []string{"gpu0", "gpu1", "services"} {
			t.Logf("journal of %s:\n%s", u, m.Journal("clearml-agent@"+u+".service"))
		}
		t.Fatalf("agent-provision: %v", err)
	}
	if !strings.Contains(out, "NVML not found") {
		t.Errorf("no NVML warning for --gpus 0,1 without a driver")
	}
	units := []string{"clearml-agent@gpu0.service", "clearml-agent@gpu1.service", "clearml-agent@services.service"}
	for _, u := range units {
		if s := show(u, "ActiveState"); s != "active" {
			t.Errorf("%s is %s", u, s)
		}
	}
	status := sh("agent-provision", "status")
	t.Logf("agent-provision status:\n%s", status)
	deadline := time.Now().Add(30 * time.Second)
	for len(srv.Workers()) < 3 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	var ids []string
	for _, w := range srv.Workers() {
		ids = append(ids, w.ID)
	}
	if len(ids) < 3 {
		t.Errorf("workers registered with the emulator: %v, want 3", ids)
	}
	t.Logf("registered workers: %v", ids)

	// systemd restarts a killed agent.
	pid := show(units[0], "MainPID")
	sh("systemctl", "kill", "-s", "KILL", units[0])
	waitActiveNewPID(units[0], pid, 60*time.Second)

	// A frozen agent misses its watchdog and is restarted; the task it ran
	// does not run on without it: it ends with a reason on the server.
	frozen := srv.CreateTask(api.Task{Name: "frozen", Type: "training", Script: &api.Script{
		EntryPoint: "long.sh", Binary: "bash", Diff: "echo \"started $CLEARML_TASK_ID\"\nsleep 600\n"}})
	if err := srv.Enqueue(frozen, frozenQ); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(60 * time.Second)
	for !taskLogHas(srv, frozen, "started "+frozen) {
		if time.Now().After(deadline) {
			t.Fatalf("task on gpu1 did not start: %q\n%s", srv.Task(frozen).Status, m.Journal(units[1]))
		}
		time.Sleep(100 * time.Millisecond)
	}
	pid = show(units[1], "MainPID")
	sh("systemctl", "kill", "-s", "STOP", "--kill-whom=main", units[1])
	waitActiveNewPID(units[1], pid, 90*time.Second)
	if j := m.Journal(units[1]); !strings.Contains(j, "atchdog") {
		t.Errorf("journal of %s does not mention the watchdog:\n%s", units[1], j)
	}
	deadline = time.Now().Add(60 * time.Second)
	for st := srv.Task(frozen).Status; st != api.StatusStopped && st != api.StatusFailed; st = srv.Task(frozen).Status {
		if time.Now().After(deadline) {
			t.Fatalf("the frozen agent's task is %q after the watchdog restart, want stopped or failed\n%s", st, m.Journal(units[1]))
		}
		time.Sleep(200 * time.Millisecond)
	}
	tk := srv.Task(frozen)
	if tk.StatusReason == "" {
		t.Errorf("the frozen agent's task is %s without a reason", tk.Status)
	}
	t.Logf("after the watchdog restart the task that ran is %s: %q", tk.Status, tk.StatusReason)

	// Re-provisioning with the same inputs changes nothing.
	pids := map[string]string{}
	for _, u := range units {
		pids[u] = show(u, "MainPID")
	}
	out = sh(provision...)
	if !strings.Contains(out, "nothing to change") {
		t.Errorf("re-provision was not a no-op:\n%s", out)
	}
	for _, u := range units {
		if p := show(u, "MainPID"); p != pids[u] {
			t.Errorf("re-provision restarted %s (pid %s -> %s)", u, pids[u], p)
		}
	}

	// `systemctl stop` while a task runs drains: the agent gets SIGTERM,
	// finishes the task (completed, every log line shipped), then exits; the
	// stop returns only after that. The task's repository lives inside the
	// container, owned by the agent user, on the gpu0 agent's own queue.
	sh("sh", "-c", `set -e
mkdir -p /srv/tasks && cd /srv/tasks
printf 'echo "started $CLEARML_TASK_ID"\nsleep 5\necho finished\n' > drain.sh
git init -q -b main && git add drain.sh
git -c user.name=it -c user.email=it@example.com commit -q -m drain
# git refuses a repository owned by someone else ("dubious ownership").
chown -R clearml:clearml /srv/tasks`)
	task := srv.CreateTask(api.Task{Name: "drain", Type: "training", Script: &api.Script{
		Repository: "file:///srv/tasks", Branch: "main", EntryPoint: "drain.sh", Binary: "bash", WorkingDir: ".",
	}})
	if err := srv.Enqueue(task, drainQ); err != nil {
		t.Fatal(err)
	}
	logText := func() string {
		var b strings.Builder
		for _, e := range srv.TaskLog(task) {
			b.WriteString(e.Msg + "\n")
		}
		return b.String()
	}
	deadline = time.Now().Add(60 * time.Second)
	for !strings.Contains(logText(), "started "+task) {
		if time.Now().After(deadline) {
			t.Fatalf("drain task did not start: status %q\nlog:\n%s\njournal:\n%s", srv.Task(task).Status, logText(), m.Journal(units[0]))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if w := srv.Task(task).LastWorker; w != "clearml-test:gpu0" {
		t.Errorf("drain task ran on %q, want clearml-test:gpu0", w)
	}
	stopStart := time.Now()
	sh("systemctl", "stop", units[0])
	t.Logf("systemctl stop %s returned after %s", units[0], time.Since(stopStart).Round(100*time.Millisecond))
	// No polling: the stop must have waited for the task.
	if st := srv.Task(task).Status; st != api.StatusCompleted {
		t.Errorf("task status right after systemctl stop = %q, want completed (the stop did not wait for the drain)\njournal:\n%s", st, m.Journal(units[0]))
	}
	if l := logText(); !strings.Contains(l, "finished") {
		t.Errorf("drained task log lacks its last line:\n%s", l)
	}
	for _, l := range strings.Split(m.Journal(units[0]), "\n") {
		if strings.Contains(l, "drain") || strings.Contains(l, "finished") || strings.Contains(l, "Deactivated") || strings.Contains(l, "Stopped") {
			t.Logf("journal: %s", l)
		}
	}
	if s := show(units[0], "ActiveState"); s != "inactive" {
		t.Errorf("%s is %s after stop, want inactive (a clean exit, not failed)", units[0], s)
	}
	if r := show(units[0], "Result"); r != "success" {
		t.Errorf("%s Result=%s after the drain, want success (no stop timeout, no SIGKILL)", units[0], r)
	}
	for _, w := range srv.Workers() {
		if w.ID == "clearml-test:gpu0" {
			t.Errorf("gpu0 still registered after its drain")
		}
	}
	if j := m.Journal(units[0]); !strings.Contains(j, "drain") {
		t.Errorf("journal of %s does not mention the drain:\n%s", units[0], j)
	}

	sec, _ := m.Exec(ctx, "systemd-analyze", "security", "--no-pager", units[0])
	for _, l := range strings.Split(sec, "\n") {
		if strings.Contains(l, "Overall exposure level") {
			t.Logf("systemd-analyze security %s: %s", units[0], strings.TrimSpace(l))
		}
	}

	// remove leaves nothing behind (the config is kept unless purged).
	t.Logf("remove:\n%s", sh("agent-provision", "remove", "--purge-config"))
	if left := unitsLeft(t, sh); left != "" {
		t.Errorf("units left after remove:\n%s", left)
	}
	if left, _ := m.Exec(ctx, "sh", "-c", "ls -d /etc/clearml-agent /etc/systemd/system/clearml-agent* /etc/systemd/system/*/clearml-agent* /usr/lib/sysusers.d/clearml-agent.conf 2>/dev/null"); strings.TrimSpace(left) != "" {
		t.Errorf("files left after remove:\n%s", left)
	}
}

func taskLogHas(srv *emulator.Server, id, text string) bool {
	for _, e := range srv.TaskLog(id) {
		if strings.Contains(e.Msg, text) {
			return true
		}
	}
	return false
}

// unitsLeft lists the clearml-agent units systemd still has loaded after a
// remove. A stopped unit whose file is gone may stay listed as "not-found"
// until systemd's next garbage collection, so that state gets a few
// seconds to clear; anything else is reported at once.
func unitsLeft(t *testing.T, sh func(args ...string) string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := strings.TrimSpace(sh("systemctl", "list-units", "--all", "--no-legend", "--plain", "clearml-agent*"))
		if left == "" {
			return ""
		}
		gone := true
		for _, l := range strings.Split(left, "\n") {
			if f := strings.Fields(l); len(f) < 4 || f[1] != "not-found" || f[2] != "inactive" {
				gone = false
			}
		}
		if !gone || time.Now().After(deadline) {
			return left
		}
		time.Sleep(200 * time.Millisecond)
	}
}
