package emulator

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

// The methods in this file are for tests and the demo: they act directly on
// server state, as an administrator would, without HTTP or tokens.

func timeFromMillis(ms int64) time.Time { return time.UnixMilli(ms) }

var adminIdentity = identity{User: "emulator-admin", Company: CompanyID, Role: "admin"}

// internal runs an endpoint handler in-process with admin identity.
func (s *Server) internal(endpoint string, data map[string]any) (any, error) {
	h, ok := endpoints[endpoint]
	if !ok {
		return nil, fmt.Errorf("emulator: unknown endpoint %q", endpoint)
	}
	raw := map[string]json.RawMessage{}
	for k, v := range data {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("emulator: %s field %q: %w", endpoint, k, err)
		}
		raw[k] = b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &call{endpoint: endpoint, version: s.opts.APIVersion, data: raw, identity: adminIdentity, now: s.opts.Now()}
	s.expireWorkers(c.now)
	out, aerr := h(s, c)
	if aerr != nil {
		return nil, fmt.Errorf("emulator: %s: %w", endpoint, aerr)
	}
	return out, nil
}

// CreateQueue creates a queue and returns its id. An existing queue of that
// name is reused.
func (s *Server) CreateQueue(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.queueByName(name); q != nil {
		return q.ID
	}
	return s.createQueue(s.opts.Now(), name, nil, nil, adminIdentity.User).ID
}

// CreateTask stores t and returns its id. Empty ID, Status, Type and Created
// get the defaults (new id, "created", "training", now); other fields are
// stored as given, so tests can set up any state.
func (s *Server) CreateTask(t api.Task) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := fmtTime(s.opts.Now())
	doc := toDoc(t)
	defaults := map[string]any{"id": newID(), "status": api.StatusCreated, "type": "training", "created": now,
		"last_update": now, "status_changed": now, "user": adminIdentity.User}
	for k, v := range defaults {
		if getStr(doc, k) == "" {
			doc[k] = v
		}
	}
	doc["company"] = CompanyID
	s.insertTask(doc)
	return getStr(doc, "id")
}

// Enqueue runs tasks.enqueue (validated, no force) for taskID on queueID.
func (s *Server) Enqueue(taskID, queueID string) error {
	_, err := s.internal("tasks.enqueue", map[string]any{"task": taskID, "queue": queueID})
	return err
}

// Stop runs tasks.stop for taskID as a user abort from the UI would.
func (s *Server) Stop(taskID string) error {
	_, err := s.internal("tasks.stop", map[string]any{"task": taskID})
	return err
}

// Call runs any endpoint in-process with admin identity and returns its
// data object, e.g. Call("tasks.reset", map[string]any{"task": id}).
func (s *Server) Call(endpoint string, data map[string]any) (map[string]any, error) {
	out, err := s.internal(endpoint, data)
	if err != nil {
		return nil, err
	}
	return toDoc(out), nil
}

// Task returns the task (zero Task with empty ID when unknown).
func (s *Server) Task(id string) api.Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, ok := s.tasks[id]
	if !ok {
		return api.Task{}
	}
	return docToTask(doc)
}

// TaskDoc returns a copy of the full stored task document, including fields
// api.Task lacks (last_changed_by, completed, hyperparams...); nil when unknown.
func (s *Server) TaskDoc(id string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, ok := s.tasks[id]
	if !ok {
		return nil
	}
	return deepCopy(doc).(map[string]any)
}

// Tasks returns every task in creation order.
func (s *Server) Tasks() []api.Task {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.Task, 0, len(s.taskOrder))
	for _, id := range s.taskOrder {
		out = append(out, docToTask(s.tasks[id]))
	}
	return out
}

// Queue returns the queue with that id, or by name when no id matches.
func (s *Server) Queue(idOrName string) (api.Queue, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[idOrName]
	if q == nil {
		q = s.queueByName(idOrName)
	}
	if q == nil {
		return api.Queue{}, false
	}
	return cloneQueue(q), true
}

// TaskLog returns every event of the task in the order received.
func (s *Server) TaskLog(id string) []api.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.Event, 0, len(s.events[id]))
	for _, e := range s.events[id] {
		out = append(out, eventToAPI(e))
	}
	return out
}

// Workers returns the live workers (expired ones are dropped), sorted by id.
func (s *Server) Workers() []api.Worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireWorkers(s.opts.Now())
	out := []api.Worker{}
	for _, id := range sortedKeys(s.workers) {
		out = append(out, s.workerDoc(s.workers[id]))
	}
	return out
}

// WorkerStats returns the machine_stats of the last status report of worker
// id (zero when it sent none).
func (s *Server) WorkerStats(id string) api.MachineStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ms api.MachineStats
	if w, ok := s.workers[id]; ok && len(w.MachineStats) > 0 {
		_ = json.Unmarshal(w.MachineStats, &ms)
	}
	return ms
}
