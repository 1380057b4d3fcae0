package emulator

import (
	"encoding/json"
	"net"
	"path"
	"slices"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// worker is the server-side worker entry (Redis with a TTL on the real
// server). Exported fields are saved in snapshots.
type worker struct {
	ID           string          `json:"id"`
	User         string          `json:"user"`
	IP           string          `json:"ip,omitempty"`
	Registered   time.Time       `json:"register_time"`
	LastActivity time.Time       `json:"last_activity_time"`
	LastReport   time.Time       `json:"last_report_time,omitzero"`
	Timeout      time.Duration   `json:"timeout"`
	Queues       []string        `json:"queues,omitempty"`
	Queue        string          `json:"queue,omitempty"`
	Task         string          `json:"task,omitempty"`
	Tags         []string        `json:"tags,omitempty"`
	MachineStats json.RawMessage `json:"machine_stats,omitempty"`
}

// expireWorkers drops workers idle for longer than their timeout. Callers
// hold s.mu.
func (s *Server) expireWorkers(now time.Time) {
	for id, w := range s.workers {
		if now.Sub(w.LastActivity) > w.Timeout {
			delete(s.workers, id)
			s.changed()
		}
	}
}

func (s *Server) touchWorker(c *call, id string) *worker {
	w := s.workers[id]
	if w == nil {
		w = &worker{ID: id, User: c.identity.User, Registered: c.now, Timeout: s.opts.WorkerTimeout}
		s.workers[id] = w
	}
	w.LastActivity = c.now
	if ip := remoteIP(c.remote); ip != "" {
		w.IP = ip
	}
	s.changed()
	return w
}

func (s *Server) workersRegister(c *call) (any, *apiError) {
	id, err := c.str("worker", true)
	if err != nil {
		return nil, err
	}
	var timeout int
	if _, err := c.field("timeout", &timeout, false); err != nil {
		return nil, err
	}
	queues, err := c.strList("queues")
	if err != nil {
		return nil, err
	}
	tags, err := c.strList("tags")
	if err != nil {
		return nil, err
	}
	w := s.touchWorker(c, id)
	w.Registered = c.now
	if timeout > 0 {
		w.Timeout = time.Duration(timeout) * time.Second
	}
	if queues != nil {
		w.Queues = queues
	}
	if tags != nil {
		w.Tags = tags
	}
	return map[string]any{}, nil
}

// workersUnregister tolerates unknown workers, like the real server.
func (s *Server) workersUnregister(c *call) (any, *apiError) {
	id, err := c.str("worker", true)
	if err != nil {
		return nil, err
	}
	if _, ok := s.workers[id]; ok {
		delete(s.workers, id)
		s.changed()
	}
	return map[string]any{}, nil
}

// workersStatusReport auto-registers unknown workers and, when a task is
// given, sets that task's last_worker and last_update.
func (s *Server) workersStatusReport(c *call) (any, *apiError) {
	id, err := c.str("worker", true)
	if err != nil {
		return nil, err
	}
	var ts int64
	if _, err := c.field("timestamp", &ts, true); err != nil {
		return nil, err
	}
	var stats api.MachineStats
	if _, err := c.field("machine_stats", &stats, false); err != nil {
		return nil, err
	}
	task, err := c.str("task", false)
	if err != nil {
		return nil, err
	}
	queue, err := c.str("queue", false)
	if err != nil {
		return nil, err
	}
	queues, err := c.strList("queues")
	if err != nil {
		return nil, err
	}
	tags, err := c.strList("tags")
	if err != nil {
		return nil, err
	}
	if task != "" {
		doc, err := s.task(task)
		if err != nil {
			return nil, err
		}
		doc["last_worker"] = id
		doc["last_update"] = fmtTime(c.now)
	}
	w := s.touchWorker(c, id)
	w.LastReport = c.now
	w.Task, w.Queue = task, queue
	if queues != nil {
		w.Queues = queues
	}
	if tags != nil {
		w.Tags = tags
	}
	w.MachineStats = c.data["machine_stats"]
	return map[string]any{}, nil
}

func idName(id, name string) map[string]any {
	return map[string]any{"id": id, "name": name}
}

// queueEntry renders a queue the way workers.get_all does: id, name, how
// many tasks wait in it and which is next.
func (s *Server) queueEntry(id string) map[string]any {
	out := idName(id, s.queueName(id))
	if q := s.queues[id]; q != nil {
		out["num_tasks"] = len(q.Entries)
		if len(q.Entries) > 0 {
			next := q.Entries[0].Task
			out["next_task"] = idName(next, getStr(s.tasks[next], "name"))
		}
	}
	return out
}

// workerDoc renders a worker as workers.get_all does: "user", "company" and
// "task" are {id, name} objects, "queues" and "queue" (the queue of the
// running task) are queue entries, as on the real server.
func (s *Server) workerDoc(w *worker) api.Worker {
	raw := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	out := api.Worker{
		ID: w.ID, IP: w.IP,
		User:             raw(idName(w.User, "emulator user")),
		Company:          raw(idName(CompanyID, "emulator")),
		RegisterTime:     fmtTime(w.Registered),
		LastActivityTime: fmtTime(w.LastActivity),
		Tags:             slices.Clone(w.Tags),
	}
	if !w.LastReport.IsZero() {
		out.LastReportTime = fmtTime(w.LastReport)
	}
	qs := []any{}
	for _, q := range w.Queues {
		qs = append(qs, s.queueEntry(q))
	}
	out.Queues = raw(qs)
	if w.Queue != "" && slices.Contains(w.Queues, w.Queue) { // as the real server: only one of its queues
		out.Queue = raw(s.queueEntry(w.Queue))
	}
	if w.Task != "" {
		out.Task = raw(idName(w.Task, getStr(s.tasks[w.Task], "name")))
	}
	return out
}

func (s *Server) workersGetAll(c *call) (any, *apiError) {
	var lastSeen int
	if _, err := c.field("last_seen", &lastSeen, false); err != nil {
		return nil, err
	}
	pattern, err := c.str("worker_pattern", false)
	if err != nil {
		return nil, err
	}
	if pattern != "" {
		if _, err := path.Match(pattern, ""); err != nil {
			return nil, errValidation("worker_pattern", "bad glob pattern: "+err.Error())
		}
	}
	out := []api.Worker{}
	for _, id := range sortedKeys(s.workers) {
		w := s.workers[id]
		if lastSeen > 0 && c.now.Sub(w.LastActivity) > time.Duration(lastSeen)*time.Second {
			continue
		}
		if pattern != "" {
			if ok, _ := path.Match(pattern, id); !ok {
				continue
			}
		}
		out = append(out, s.workerDoc(w))
	}
	return map[string]any{"workers": out}, nil
}

func remoteIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
