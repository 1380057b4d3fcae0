package main

// Server outages while a task runs (issue 10): the task runs on at full speed
// (its output spills to the spool), every line reaches the server exactly
// once and in order after the outage, and the final status follows the last
// line. An abort during the outage ends the task within its grace period.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/emulator"
)

const outage = 30 * time.Second

// checkLines verifies that the log of task holds "line NNNNNNN" for 0..n-1
// exactly once each and in order.
func checkLines(t *testing.T, srv *server, id string, n int) {
	t.Helper()
	next := 0
	for _, e := range srv.TaskLog(id) {
		for _, l := range strings.Split(e.Msg, "\n") {
			num, ok := strings.CutPrefix(strings.TrimSpace(l), "line ")
			if !ok {
				continue
			}
			k, err := strconv.Atoi(num)
			if err != nil {
				t.Fatalf("mangled line %q", l)
			}
			if k != next {
				t.Fatalf("line %d arrived where line %d was due (missing, duplicated or reordered)", k, next)
			}
			next++
		}
	}
	if next != n {
		t.Fatalf("%d of %d lines arrived", next, n)
	}
}

// doneAt reads the unix time (ns) the task wrote into $GATE/<id>.done.
func doneAt(t *testing.T, e *env, id string) (time.Time, bool) {
	b, err := os.ReadFile(filepath.Join(e.gate, id+".done"))
	if err != nil {
		return time.Time{}, false
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return time.Time{}, false // created, not written yet
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("done file %q: %v", b, err)
	}
	return time.Unix(0, ns), true
}

// A task printing more than the memory buffer while the server is cut off
// for 30 s finishes during the outage; afterwards all its lines arrive once,
// in order, and then its final status.
func TestOutageTaskRunsOnNoLineLost(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e := newEnv(t, srv.URL)
	const n = 1_200_000
	script := fmt.Sprintf(`import os, sys, time
print("line 0000000", flush=True)
time.sleep(1)  # the test cuts the server off now
w = sys.stdout.write
for i in range(1, %d):
    w("line %%07d\n" %% i)
sys.stdout.flush()
open(os.path.join(os.environ["GATE"], os.environ["CLEARML_TASK_ID"] + ".done"), "w").write(str(time.time_ns()))
`, n)
	id := srv.scriptTask(t, "flood", "python3", "flood.py", script, nil)
	srv.enqueue(t, id, "q")
	a := startAgent(t, e, "daemon", "--queue", "q", "--cpu-only")
	// A failed assertion must not leave the server cut off while the agent
	// is stopped (it would drain for its whole timeout).
	t.Cleanup(func() { srv.SetOutage(emulator.OutageNone) })
	waitFor(t, "the first line", func() bool { return strings.Contains(srv.logText(id), "line 0000000") })
	srv.SetOutage(emulator.OutageReset)
	cut := time.Now()
	waitFor(t, "the task to finish during the outage", func() bool { _, ok := doneAt(t, e, id); return ok })
	end, _ := doneAt(t, e, id)
	if back := cut.Add(outage); end.After(back) {
		t.Fatalf("the task finished %s after the outage began, not during it: the server outage held it up", end.Sub(cut))
	}
	t.Logf("task finished %s into the outage", end.Sub(cut).Round(time.Millisecond))
	time.Sleep(time.Until(cut.Add(outage)))
	srv.SetOutage(emulator.OutageNone)
	srv.waitStatus(t, id, api.StatusCompleted)
	checkLines(t, srv, id, n)
	a.signal(syscall.SIGTERM)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d", code)
	}
}

// An abort (a second SIGTERM) during the outage ends the task within its
// grace period; the lines and the stopped status reach the server after it.
func TestOutageAbortWithinGrace(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e := newEnv(t, srv.URL) // abort grace 2 s
	script := `import os, signal, sys, time
def stop(*_):
    print("got SIGTERM", flush=True)
    open(os.path.join(os.environ["GATE"], os.environ["CLEARML_TASK_ID"] + ".done"), "w").write(str(time.time_ns()))
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
i = 0
while True:
    print("line %07d" % i, flush=True)
    i += 1
    time.sleep(0.001)
`
	id := srv.scriptTask(t, "abort-in-outage", "python3", "loop.py", script, nil)
	srv.enqueue(t, id, "q")
	a := startAgent(t, e, "daemon", "--queue", "q", "--cpu-only")
	t.Cleanup(func() { srv.SetOutage(emulator.OutageNone) })
	waitFor(t, "the task running", func() bool { return strings.Contains(srv.logText(id), "line 0000010") })
	srv.SetOutage(emulator.OutageReset)
	cut := time.Now()
	a.signal(syscall.SIGTERM) // drain
	a.saw("STATUS=draining")
	a.signal(syscall.SIGTERM) // abort
	aborted := time.Now()
	waitFor(t, "the task to end", func() bool { _, ok := doneAt(t, e, id); return ok })
	end, _ := doneAt(t, e, id)
	if end.After(cut.Add(outage)) {
		t.Fatalf("the aborted task ended %s after the abort, after the outage: held up by it", end.Sub(aborted))
	}
	time.Sleep(time.Until(cut.Add(outage)))
	srv.SetOutage(emulator.OutageNone)
	srv.waitStatus(t, id, api.StatusStopped)
	if code := a.wait(); code != 0 {
		t.Errorf("exit status %d", code)
	}
	log := srv.logText(id)
	if !strings.Contains(log, "got SIGTERM") {
		t.Errorf("the task's last line did not arrive:\n%.2000s", log)
	}
	// Every line it printed, once, in order.
	last := strings.LastIndex(log, "line ")
	k, _ := strconv.Atoi(strings.Fields(log[last+5:])[0])
	checkLines(t, srv, id, k+1)
}
