package bench

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// timeStart starts the agent, times exec -> workers.register and
// exec -> READY=1 (zero when none came), and stops it.
func (h *harness) timeStart(ctx context.Context, name string) (reg, ready time.Duration, err error) {
	p := h.rec.watch("workers.register", false)
	defer h.rec.unwatch(p)
	a, err := h.startAgent(name)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = a.stop(ctx) }()
	at, err := waitProbe(ctx, p, a, 60*time.Second)
	if err != nil {
		return 0, 0, err
	}
	reg = at.Sub(a.started)
	var rat time.Time
	if waitUntil(ctx, 5*time.Second, func() bool {
		var ok bool
		rat, ok = h.notify.first(a.started, "READY=1")
		return ok
	}) {
		ready = rat.Sub(a.started)
	}
	return reg, ready, nil
}

// phaseStart times Starts cold starts.
func (h *harness) phaseStart(ctx context.Context) error {
	var regs, readies []time.Duration
	for i := range h.cfg.Starts {
		reg, ready, err := h.timeStart(ctx, fmt.Sprintf("start-%d", i))
		if err != nil {
			return err
		}
		regs = append(regs, reg)
		if ready > 0 {
			readies = append(readies, ready)
		}
	}
	lo, med := minMedian(regs)
	h.add("start -> workers.register", ms(med), "<= 25 ms",
		fmt.Sprintf("median of %d starts, min %s", len(regs), ms(lo)))
	if len(readies) == 0 {
		h.add("start -> READY=1", "n/a", "", "no READY=1 on NOTIFY_SOCKET within 5 s of register")
	} else {
		lo, med := minMedian(readies)
		h.add("start -> READY=1", ms(med), "", fmt.Sprintf("median of %d starts, min %s", len(readies), ms(lo)))
	}
	return nil
}

// phaseIdle measures idle RSS and the idle request rate with the default
// poll (5 s) and report (30 s) intervals.
func (h *harness) phaseIdle(ctx context.Context) error {
	p := h.rec.watch("workers.register", false)
	defer h.rec.unwatch(p)
	a, err := h.startAgent("idle")
	if err != nil {
		return err
	}
	defer func() { _ = a.stop(ctx) }()
	regAt, err := waitProbe(ctx, p, a, 60*time.Second)
	if err != nil {
		return err
	}
	from := regAt.Add(h.cfg.IdleSettle)
	if !sleepUntil(ctx, from) {
		return ctx.Err()
	}
	kb, procs, err := treeRSS(a.pid())
	if err != nil {
		return fmt.Errorf("agent pid %d: %w; its log ends: %s", a.pid(), err, a.tail(5))
	}
	_, hwm, _ := memKB(a.pid())
	anon, file := rssSplit(a.pid())
	h.add(fmt.Sprintf("idle RSS after %s", h.cfg.IdleSettle), mib(kb), "",
		fmt.Sprintf("VmRSS of %d process(es); agent: RssAnon %s, RssFile %s, VmHWM %s", procs, mib(anon), mib(file), mib(hwm)))

	to := from.Add(h.cfg.IdleWindow)
	if !sleepUntil(ctx, to) {
		return ctx.Err()
	}
	counts := h.rec.counts(from, to)
	total := 0
	var parts []string
	for ep, n := range counts {
		total += n
		parts = append(parts, fmt.Sprintf("%s=%d", ep, n))
	}
	sort.Strings(parts)
	perMin := float64(total) * float64(time.Minute) / float64(h.cfg.IdleWindow)
	h.add("idle requests/min (one queue)", fmt.Sprintf("%.1f", perMin), "<= 14",
		fmt.Sprintf("%d in %s: %s", total, h.cfg.IdleWindow, strings.Join(parts, " ")))
	if kb2, _, err := treeRSS(a.pid()); err == nil {
		h.add(fmt.Sprintf("idle RSS after %s", h.cfg.IdleSettle+h.cfg.IdleWindow), mib(kb2), "", "")
	}
	return nil
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	select {
	case <-time.After(time.Until(t)):
		return true
	case <-ctx.Done():
		return false
	}
}

// newTask creates a task running one of the bench scripts.
func (h *harness) newTask(name, entry string) string {
	sc := &api.Script{EntryPoint: entry, WorkingDir: ".", Binary: h.cfg.Python}
	if h.repoURL != "" {
		sc.Repository, sc.Branch = h.repoURL, "main"
	} else {
		sc.Diff = h.scripts()[entry]
	}
	return h.srv.CreateTask(api.Task{Name: name, Type: "training", Script: sc})
}

func final(status string) bool {
	switch status {
	case api.StatusCompleted, api.StatusFailed, api.StatusStopped, api.StatusClosed, api.StatusPublished:
		return true
	}
	return false
}

// waitFinal waits for the task to reach a final status and returns it.
func (h *harness) waitFinal(ctx context.Context, a *agentProc, id string, d time.Duration) (string, error) {
	var st string
	ok := waitUntil(ctx, d, func() bool {
		st = h.srv.Task(id).Status
		return final(st) || a.exited()
	})
	if !ok || !final(st) {
		return st, fmt.Errorf("task %s still %q after %s; agent log ends: %s", id, st, d, a.tail(5))
	}
	return st, nil
}

// firstLine runs first.py once and returns get_next_task response -> the
// add_batch holding its first output line.
func (h *harness) firstLine(ctx context.Context, a *agentProc, name string) (time.Duration, error) {
	return h.timeFirst(ctx, a, h.newTask(name, "first.py"))
}

// timeFirst enqueues task id, whose first output line starts with
// BENCH-FIRST-<id>, waits until it completed and returns get_next_task
// response -> the add_batch holding that line.
func (h *harness) timeFirst(ctx context.Context, a *agentProc, id string) (time.Duration, error) {
	gnt := h.rec.watch("queues.get_next_task", true, id)
	first := h.rec.watch("events.add_batch", false, "BENCH-FIRST-", id)
	defer h.rec.unwatch(gnt, first)
	if err := h.srv.Enqueue(id, h.queueID); err != nil {
		return 0, err
	}
	st, err := h.waitFinal(ctx, a, id, 5*time.Minute)
	if err != nil {
		return 0, err
	}
	if st != api.StatusCompleted {
		return 0, fmt.Errorf("task %s ended %s (%s); log: %s", id, st, h.srv.Task(id).StatusReason, h.logTail(id, 5))
	}
	g, ok1 := gnt.fired()
	f, ok2 := first.fired()
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("task %s completed but get_next_task (%v) or its first line (%v) was not seen; log: %s", id, ok1, ok2, h.logTail(id, 8))
	}
	return f.Sub(g), nil
}

func (h *harness) logTail(id string, n int) string {
	var lines []string
	for _, e := range h.srv.TaskLog(id) {
		lines = append(lines, strings.Split(strings.TrimRight(e.Msg, "\n"), "\n")...)
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// phaseTasks runs the task metrics on one agent with a short poll interval
// (none of them is about load).
func (h *harness) phaseTasks(ctx context.Context) error {
	p := h.rec.watch("workers.register", false)
	defer h.rec.unwatch(p)
	a, err := h.startAgent("tasks", "CLEARML_AGENT_QUEUE_POLL_FREQ_SEC="+h.cfg.FastPoll)
	if err != nil {
		return err
	}
	defer func() { _ = a.stop(ctx) }()
	if _, err := waitProbe(ctx, p, a, 60*time.Second); err != nil {
		return err
	}

	cold, err := h.firstLine(ctx, a, "first-cold")
	if err != nil {
		return fmt.Errorf("first task (cold cache): %w", err)
	}
	h.add("get_next_task -> first line, cold", ms(cold), "", "first run: clone and venv created")
	var warm []time.Duration
	for i := range h.cfg.Repeats {
		d, err := h.firstLine(ctx, a, fmt.Sprintf("first-warm-%d", i))
		if err != nil {
			return fmt.Errorf("warm run %d: %w", i, err)
		}
		warm = append(warm, d)
	}
	lo, med := minMedian(warm)
	h.add("get_next_task -> first line, warm", ms(med), "aim 0.1 s",
		fmt.Sprintf("median of %d, min %s; vcs and venv cache warm", len(warm), ms(lo)))

	if err := h.relay(ctx, a); err != nil {
		h.add("log relay", "FAILED", "", oneline.Of(err))
	}
	if err := h.abort(ctx, a); err != nil {
		h.add("abort", "FAILED", "", oneline.Of(err))
	}
	return nil
}

// relay runs the N-line task: wall time, lines/s, order, peak agent RSS.
func (h *harness) relay(ctx context.Context, a *agentProc) error {
	n := h.cfg.Lines
	id := h.newTask("lines", "lines.py")
	gnt := h.rec.watch("queues.get_next_task", true, id)
	firstL := h.rec.watch("events.add_batch", false, id, fmt.Sprintf("%s%07d", linePrefix, 0))
	lastL := h.rec.watch("events.add_batch", false, id, fmt.Sprintf("%s%07d", linePrefix, n-1))
	done := h.rec.watch("tasks.completed", false, id)
	defer h.rec.unwatch(gnt, firstL, lastL, done)

	var (
		mu      sync.Mutex
		peak    int64
		samples int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, _, err := memKB(a.pid()); err == nil {
				mu.Lock()
				peak, samples = max(peak, rss), samples+1
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	if err := h.srv.Enqueue(id, h.queueID); err != nil {
		close(stop)
		wg.Wait()
		return err
	}
	st, err := h.waitFinal(ctx, a, id, 5*time.Minute)
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	g, _ := gnt.fired()
	f, okF := firstL.fired()
	l, okL := lastL.fired()
	c, okC := done.fired()
	_, hwm, _ := memKB(a.pid())
	if okC {
		h.add(fmt.Sprintf("%d-line task wall time", n), fmt.Sprintf("%.2f s", c.Sub(g).Seconds()), "",
			"get_next_task response -> tasks.completed; task alone: "+h.producerAlone(ctx))
	} else {
		h.add(fmt.Sprintf("%d-line task wall time", n), "n/a", "", "final status "+st)
	}
	if okF && okL && l.After(f) {
		h.add("log relay lines/s", fmt.Sprintf("%.0f", float64(n)/l.Sub(f).Seconds()), "",
			fmt.Sprintf("first -> last line at the server %.2f s", l.Sub(f).Seconds()))
	}
	events := h.srv.TaskLog(id)
	seen, verr := verifyLines(events, n)
	if verr != nil {
		h.add("lines delivered in order, once", "NO", "all", fmt.Sprintf("%d seen in %d events: %v", seen, len(events), verr))
	} else {
		h.add("lines delivered in order, once", "yes", "all", fmt.Sprintf("%d lines in %d events", seen, len(events)))
	}
	mu.Lock()
	h.add("peak agent RSS during relay", mib(peak), "", fmt.Sprintf("max VmRSS of %d samples (50 ms); agent VmHWM %s", samples, mib(hwm)))
	mu.Unlock()
	return nil
}

// producerAlone times the line script writing into a pipe with no agent.
func (h *harness) producerAlone(ctx context.Context) string {
	cmd := exec.CommandContext(ctx, h.cfg.Python, "-c", linesScript(h.cfg.Lines))
	cmd.Env = append(cmd.Environ(), "PYTHONUNBUFFERED=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "n/a"
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return "n/a"
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := out.Read(buf); err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2f s (unbuffered, into a pipe)", time.Since(t0).Seconds())
}

// abort runs a task that traps SIGTERM and times tasks.stop -> tasks.stopped.
func (h *harness) abort(ctx context.Context, a *agentProc) error {
	id := h.newTask("abort", "abort.py")
	ready := h.rec.watch("events.add_batch", false, id, "BENCH-ABORT-READY")
	stopped := h.rec.watch("tasks.stopped", false, id)
	defer h.rec.unwatch(ready, stopped)
	if err := h.srv.Enqueue(id, h.queueID); err != nil {
		return err
	}
	if _, err := waitProbe(ctx, ready, a, 2*time.Minute); err != nil {
		return fmt.Errorf("abort task %s did not start: %w (status %s)", id, err, h.srv.Task(id).Status)
	}
	t0 := time.Now()
	if err := h.srv.Stop(id); err != nil {
		return err
	}
	at, err := waitProbe(ctx, stopped, a, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("after tasks.stop: %w (status %s)", err, h.srv.Task(id).Status)
	}
	// The agent flushes the log before the final status; give a slow one a moment.
	trapped := waitUntil(ctx, 2*time.Second, func() bool {
		for _, e := range h.srv.TaskLog(id) {
			if strings.Contains(e.Msg, "got SIGTERM") {
				return true
			}
		}
		return false
	})
	note := "trap line \"got SIGTERM\" in the log: "
	if trapped {
		note += "yes"
	} else {
		note += "NO"
	}
	var st string
	waitUntil(ctx, 2*time.Second, func() bool { st = h.srv.Task(id).Status; return final(st) })
	note += "; includes the agent's abort poll and the task's 1 s trap; final status " + st
	h.add("abort: tasks.stop -> tasks.stopped", ms(at.Sub(t0)), "", note)
	return nil
}
