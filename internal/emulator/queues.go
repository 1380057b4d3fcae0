package emulator

import (
	"slices"
	"strings"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
)

func cloneQueue(q *api.Queue) api.Queue {
	out := *q
	out.Tags = slices.Clone(q.Tags)
	out.SysTags = slices.Clone(q.SysTags)
	out.Entries = slices.Clone(q.Entries)
	return out
}

func (s *Server) createQueue(now time.Time, name string, tags, sysTags []string, user string) *api.Queue {
	q := &api.Queue{ID: newID(), Name: name, Tags: tags, SysTags: sysTags, Created: fmtTime(now),
		Company: CompanyID, User: user}
	s.queues[q.ID] = q
	s.queueOrder = append(s.queueOrder, q.ID)
	s.changed()
	return q
}

func (s *Server) queueByName(name string) *api.Queue {
	for _, id := range s.queueOrder {
		if s.queues[id].Name == name {
			return s.queues[id]
		}
	}
	return nil
}

// defaultQueue is the queue with system tag "default", else tag "default",
// else the queue named "default".
func (s *Server) defaultQueue() *api.Queue {
	for _, pick := range []func(q *api.Queue) bool{
		func(q *api.Queue) bool { return slices.Contains(q.SysTags, "default") },
		func(q *api.Queue) bool { return slices.Contains(q.Tags, "default") },
		func(q *api.Queue) bool { return q.Name == "default" },
	} {
		for _, id := range s.queueOrder {
			if pick(s.queues[id]) {
				return s.queues[id]
			}
		}
	}
	return nil
}

// removeFromQueues drops every entry of task from queue qid, or from all
// queues when qid is "". It returns the number of entries removed.
func (s *Server) removeFromQueues(task, qid string) int {
	n := 0
	for _, id := range s.queueOrder {
		if qid != "" && id != qid {
			continue
		}
		q := s.queues[id]
		before := len(q.Entries)
		q.Entries = slices.DeleteFunc(q.Entries, func(e api.QueueEntry) bool { return e.Task == task })
		n += before - len(q.Entries)
	}
	if n > 0 {
		s.changed()
	}
	return n
}

func (s *Server) queue(c *call) (*api.Queue, *apiError) {
	id, err := c.str("queue", true)
	if err != nil {
		return nil, err
	}
	q := s.queues[id]
	if q == nil {
		return nil, errInvalidQueueID(id)
	}
	return q, nil
}

func (s *Server) queuesCreate(c *call) (any, *apiError) {
	name, err := c.str("name", true)
	if err != nil {
		return nil, err
	}
	tags, err := c.strList("tags")
	if err != nil {
		return nil, err
	}
	sys, err := c.strList("system_tags")
	if err != nil {
		return nil, err
	}
	if s.queueByName(name) != nil {
		return nil, errNotUnique("queue", name)
	}
	q := s.createQueue(c.now, name, tags, sys, c.identity.User)
	return map[string]any{"id": q.ID}, nil
}

func queueDoc(q *api.Queue) map[string]any {
	doc := toDoc(cloneQueue(q))
	if _, ok := doc["entries"]; !ok {
		doc["entries"] = []any{}
	}
	if _, ok := doc["tags"]; !ok {
		doc["tags"] = []any{}
	}
	if _, ok := doc["system_tags"]; !ok {
		doc["system_tags"] = []any{}
	}
	return doc
}

func (s *Server) queuesGetAll(c *call) (any, *apiError) {
	g, err := c.getAllArgs()
	if err != nil {
		return nil, err
	}
	tags, err := c.strList("tags")
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, id := range s.queueOrder {
		q := s.queues[id]
		switch {
		case g.skip(id, q.Name, slices.Contains(q.SysTags, "hidden")),
			len(tags) > 0 && !slices.ContainsFunc(tags, func(t string) bool { return slices.Contains(q.Tags, t) }):
			continue
		}
		out = append(out, project(queueDoc(q), g.fields))
	}
	return map[string]any{"queues": out}, nil
}

func (s *Server) queuesGetByID(c *call) (any, *apiError) {
	q, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	return map[string]any{"queue": queueDoc(q)}, nil
}

func (s *Server) queuesGetDefault(c *call) (any, *apiError) {
	q := s.defaultQueue()
	if q == nil {
		return nil, errNoDefaultQueue()
	}
	return map[string]any{"id": q.ID, "name": q.Name}, nil
}

// queuesGetNextTask atomically pops the first entry. The task keeps its
// status (queued) until tasks.started; a stopped task (an abort racing the
// enqueue) is put back to queued.
func (s *Server) queuesGetNextTask(c *call) (any, *apiError) {
	q, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	withInfo, err := c.boolean("get_task_info")
	if err != nil {
		return nil, err
	}
	for len(q.Entries) > 0 {
		e := q.Entries[0]
		q.Entries = slices.Delete(q.Entries, 0, 1)
		s.changed()
		doc, ok := s.tasks[e.Task]
		if !ok {
			continue // deleted task: skip the stale entry
		}
		if getStr(doc, "status") == api.StatusStopped {
			if _, err := s.setStatus(c, doc, api.StatusQueued, true, "", ""); err != nil {
				return nil, err
			}
		}
		out := map[string]any{"entry": map[string]any{"task": e.Task, "added": e.Added}}
		if withInfo {
			out["task_info"] = map[string]any{"company": getStr(doc, "company"), "user": getStr(doc, "user")}
		}
		return out, nil
	}
	return map[string]any{}, nil
}

func (s *Server) queuesAddTask(c *call) (any, *apiError) {
	q, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	id, err := c.str("task", true)
	if err != nil {
		return nil, err
	}
	if _, err := s.task(id); err != nil {
		return nil, err
	}
	if slices.ContainsFunc(q.Entries, func(e api.QueueEntry) bool { return e.Task == id }) {
		return nil, newErr(400, 706, "Failed adding task to queue since task is already queued", "", "task", id)
	}
	q.Entries = append(q.Entries, api.QueueEntry{Task: id, Added: fmtTime(c.now)})
	s.changed()
	return map[string]any{"added": 1}, nil
}

func (s *Server) queuesRemoveTask(c *call) (any, *apiError) {
	q, err := s.queue(c)
	if err != nil {
		return nil, err
	}
	id, err := c.str("task", true)
	if err != nil {
		return nil, err
	}
	if s.removeFromQueues(id, q.ID) == 0 {
		return nil, errTaskNotQueued(q.ID, id)
	}
	return map[string]any{"removed": 1}, nil // the number of queues changed
}

// queueNames maps ids to names for worker listings.
func (s *Server) queueName(id string) string {
	if q := s.queues[id]; q != nil {
		return q.Name
	}
	return strings.Clone(id)
}
