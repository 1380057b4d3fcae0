package worker

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// DefaultLostPopAfter is how long a task must stay queued in no queue, with
// nothing changing, before the daemon puts it back on its queue. An agent
// that really popped a task starts it (tasks.started) within a second.
const DefaultLostPopAfter = 60 * time.Second

// lostPopAPI is what putting back lost pops needs beyond API; *api.Client
// has it. A client without it (a test double) skips the recovery.
type lostPopAPI interface {
	GetAllTasks(ctx context.Context, req api.GetAllTasksRequest) ([]api.Task, error)
	GetAllQueues(ctx context.Context, req api.GetAllQueuesRequest) ([]api.Queue, error)
	AddTask(ctx context.Context, queueID, taskID string) error
	AddBatch(ctx context.Context, events []api.Event) (api.AddBatchResult, error)
}

// lostPops is the state of the lost-pop recovery. queues.get_next_task
// removes the entry from the queue and leaves the task queued; when its
// answer is lost (api.IsAnswerLost) nobody runs the task and it sits in no
// queue. After such a failure the daemon looks twice, after and then
// LostPopAfter after that, for tasks of its queues that are queued but in no
// queue; those the second look finds unchanged go back on their queue.
// Two looks because the server does not stamp the task on a pop: only
// watching it shows that no agent started it. Only the main loop uses it.
type lostPops struct {
	pending bool              // a pop's answer was lost and is not yet handled
	again   bool              // another was lost after the first look
	seen    map[string]string // first look: task id -> what must stay the same
	seenAt  time.Time
	next    time.Time // no look before then (a look that failed waits a window)
}

// lostPop records a queues.get_next_task failure; it reports whether it
// could have popped a task.
func (d *Daemon) lostPop(err error) bool {
	if !api.IsAnswerLost(err) {
		return false
	}
	if d.lost.seen != nil {
		d.lost.again = true
	}
	d.lost.pending = true
	return true
}

// recoverLostPops makes the next look of a pending lost-pop recovery when
// it is due. It is called from the main loop after polls the server
// answered.
func (d *Daemon) recoverLostPops(ctx context.Context) {
	l := &d.lost
	window := d.cfg.LostPopAfter
	if window == 0 {
		window = DefaultLostPopAfter
	}
	c, ok := d.c.(lostPopAPI)
	now := time.Now()
	if !l.pending || !ok || window < 0 || now.Before(l.next) || l.seen != nil && now.Sub(l.seenAt) < window {
		return
	}
	found, err := d.unqueued(ctx, c)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("could not look for a task lost in a queues.get_next_task answer; looking again later", "err", err)
		}
		l.next = now.Add(window)
		return
	}
	if l.seen == nil { // first look
		if len(found) == 0 {
			*l = lostPops{}
			return
		}
		l.seen, l.seenAt = map[string]string{}, now
		for _, t := range found {
			l.seen[t.ID] = stamp(t)
		}
		return
	}
	for _, t := range found {
		if s, ok := l.seen[t.ID]; ok && s == stamp(t) {
			d.putBack(ctx, c, t, window)
		}
	}
	again := l.again
	*l = lostPops{pending: again}
}

// stamp is what must not change between the two looks.
func stamp(t api.Task) string {
	q := ""
	if t.Execution != nil {
		q = t.Execution.Queue
	}
	return t.Status + "|" + t.LastUpdate + "|" + t.StatusChanged + "|" + q
}

// unqueued returns the tasks whose queue (execution.queue, which
// tasks.enqueue sets and a pop leaves) is one of the daemon's, that are
// queued, and that no queue lists.
func (d *Daemon) unqueued(ctx context.Context, c lostPopAPI) ([]api.Task, error) {
	mine := queueIDs(d.Queues())
	tasks, err := c.GetAllTasks(ctx, api.GetAllTasksRequest{
		Status:       []string{api.StatusQueued},
		OnlyFields:   []string{"id", "name", "status", "execution.queue", "last_update", "status_changed"},
		SearchHidden: true,
	})
	if err != nil {
		return nil, err
	}
	queues, err := c.GetAllQueues(ctx, api.GetAllQueuesRequest{OnlyFields: []string{"id", "entries"}, SearchHidden: true})
	if err != nil {
		return nil, err
	}
	listed := map[string]bool{}
	for _, q := range queues {
		for _, e := range q.Entries {
			listed[e.Task] = true
		}
	}
	var out []api.Task
	for _, t := range tasks {
		if t.Status == api.StatusQueued && t.Execution != nil && slices.Contains(mine, t.Execution.Queue) && !listed[t.ID] {
			out = append(out, t)
		}
	}
	return out, nil
}

// putBack adds the task to its queue again (queues.add_task: the inverse of
// the pop; tasks.enqueue refuses a task that is already queued unless
// forced) and says why in the task's log.
func (d *Daemon) putBack(ctx context.Context, c lostPopAPI, t api.Task, window time.Duration) {
	q := t.Execution.Queue
	name := q
	for _, dq := range d.Queues() {
		if dq.ID == q {
			name = dq.Name
		}
	}
	if err := c.AddTask(ctx, q, t.ID); err != nil {
		d.log.Warn("could not put a task lost in a queues.get_next_task answer back on its queue", "task", t.ID, "queue", name, "err", err)
		return
	}
	msg := fmt.Sprintf("clearml-agent: task put back on queue %s by worker %s: it was taken from the queue but no agent started it "+
		"(the answer to queues.get_next_task was lost), and it stayed queued in no queue for %s", name, d.cfg.WorkerID, window)
	d.log.Warn("task lost in a queues.get_next_task answer put back on its queue", "task", t.ID, "queue", name)
	fmt.Fprintf(d.cfg.Out, "task %s put back on queue %s (lost in a queues.get_next_task answer)\n", t.ID, name)
	ev := api.Event{Type: "log", Level: "warning", Task: t.ID, Worker: d.cfg.WorkerID, Msg: msg, Timestamp: time.Now().UnixMilli()}
	if _, err := c.AddBatch(ctx, []api.Event{ev}); err != nil {
		d.log.Warn("could not write to the task log why the task was put back", "task", t.ID, "err", err)
	}
}
