package executor

import (
	"context"
	"strings"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// record records the process group pgid leads for task id in the
// configured Recorder; the func it returns drops the record.
func (r *Runner) record(id string, pgid int, role string) func() {
	if r.cfg.Groups == nil {
		return func() {}
	}
	remove, err := r.cfg.Groups.Add(id, pgid, role)
	if err != nil {
		r.cfg.Logger.Warn("could not record the task's process group; a restarted agent would not end it", "task", id, "pgid", pgid, "err", err)
	}
	return remove
}

// Leftovers is the record of the process groups an earlier run of this
// worker started (agent/instance.Groups).
type Leftovers interface {
	// EndLeftovers ends the recorded groups that still run and returns the
	// tasks to mark.
	EndLeftovers(log func(string)) (taskIDs []string, err error)
	// Forget drops the records of a task once it has been marked.
	Forget(taskID string) error
}

// EndOrphans ends, before the agent takes any work, the task processes an
// earlier run of this worker left running (an agent killed by the watchdog
// or SIGKILL: its execute children and their tasks lead their own process
// groups and survive it), then marks each such task failed with reason
// reason (instance.OrphanReason) in the background, while ctx lasts. A
// task that is no longer in progress (its execute child reported how it
// ended), or that another worker runs now, keeps its status. Records of tasks that could not be marked stay for the next start.
func (r *Runner) EndOrphans(ctx context.Context, l Leftovers, reason string) error {
	ids, err := l.EndLeftovers(func(s string) { r.cfg.Logger.Warn(s) })
	if len(ids) == 0 || r.cfg.API == nil {
		return err
	}
	go func() {
		for _, id := range ids {
			if r.markOrphan(ctx, id, reason) {
				if ferr := l.Forget(id); ferr != nil {
					r.cfg.Logger.Warn("could not update the process group record", "task", id, "err", ferr)
				}
			}
		}
	}()
	return err
}

// markOrphan marks task id failed if it is still in progress; it reports
// whether the task needs nothing more.
func (r *Runner) markOrphan(ctx context.Context, id, reason string) bool {
	for attempt := 0; ; attempt++ {
		c, cancel := context.WithTimeout(ctx, time.Minute)
		t, err := r.cfg.API.GetTask(c, id)
		if err == nil && (t.Status != api.StatusInProgress || !r.ranHere(t.LastWorker)) {
			cancel()
			return true // it ended, or runs elsewhere now
		}
		if err == nil {
			_, err = r.cfg.API.Failed(c, api.StatusRequest{Task: id, Force: true, StatusReason: reason, StatusMessage: "agent restarted"})
		}
		cancel()
		if err == nil {
			r.cfg.Logger.Warn("marked the task of an earlier run of this agent failed", "task", id, "reason", reason)
			return true
		}
		r.cfg.Logger.Warn("could not mark the task of an earlier run of this agent failed", "task", id, "err", err)
		if attempt >= 5 {
			return false // the record stays for the next start
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(time.Duration(attempt+1)*5*time.Second, time.Minute)):
		}
	}
}

// ranHere reports whether worker (a task's last_worker) is this agent's
// worker or one of its services-mode children.
func (r *Runner) ranHere(worker string) bool {
	return worker == "" || r.cfg.WorkerID == "" || worker == r.cfg.WorkerID || strings.HasPrefix(worker, r.cfg.WorkerID+":service:")
}

// withoutServiceEnv is env without what a service manager hands the agent
// alone: the notify socket, the watchdog and socket activation. A task that
// inherited NOTIFY_SOCKET could report READY/WATCHDOG for the agent.
func withoutServiceEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES":
			continue
		}
		out = append(out, kv)
	}
	return out
}
