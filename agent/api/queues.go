package api

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// GetAllQueuesRequest is queues.get_all. Name is a regular expression on the
// server (the agent sends regexp.QuoteMeta(name) and then matches exactly).
type GetAllQueuesRequest struct {
	Name         string   `json:"name,omitempty"`
	ID           []string `json:"id,omitempty"`
	Tags         []string `json:"tags,omitempty"`
	OnlyFields   []string `json:"only_fields,omitempty"`
	SearchHidden bool     `json:"search_hidden,omitempty"`
}

// GetAllQueues calls queues.get_all.
func (c *Client) GetAllQueues(ctx context.Context, req GetAllQueuesRequest) ([]Queue, error) {
	var out struct {
		Queues []Queue `json:"queues"`
	}
	if err := c.Call(ctx, "queues.get_all", req, &out); err != nil {
		return nil, err
	}
	return out.Queues, nil
}

// QueuesByName finds queues named name as the Python agent does at startup:
// queues.get_all {name: <escaped name>, only_fields: [id, name],
// search_hidden: true}, then a case-insensitive exact match on the names. It
// returns every match (none, one, or several); the caller decides.
func (c *Client) QueuesByName(ctx context.Context, name string) ([]Queue, error) {
	all, err := c.GetAllQueues(ctx, GetAllQueuesRequest{
		Name:         regexp.QuoteMeta(name),
		OnlyFields:   []string{"id", "name"},
		SearchHidden: true,
	})
	if err != nil {
		return nil, err
	}
	var out []Queue
	for _, q := range all {
		if strings.EqualFold(q.Name, name) {
			out = append(out, q)
		}
	}
	return out, nil
}

// GetQueue calls queues.get_by_id.
func (c *Client) GetQueue(ctx context.Context, queueID string) (*Queue, error) {
	var out struct {
		Queue *Queue `json:"queue"`
	}
	if err := c.Call(ctx, "queues.get_by_id", map[string]string{"queue": queueID}, &out); err != nil {
		return nil, err
	}
	if out.Queue == nil {
		return nil, fmt.Errorf("queues.get_by_id: no queue in the answer for id %q", queueID)
	}
	return out.Queue, nil
}

// CreateQueueRequest is queues.create.
type CreateQueueRequest struct {
	Name       string   `json:"name"`
	Tags       []string `json:"tags,omitempty"`
	SystemTags []string `json:"system_tags,omitempty"`
}

// CreateQueue calls queues.create and returns the new queue id.
func (c *Client) CreateQueue(ctx context.Context, req CreateQueueRequest) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := c.Call(ctx, "queues.create", req, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// GetDefaultQueue calls queues.get_default and returns its id and name.
func (c *Client) GetDefaultQueue(ctx context.Context) (id, name string, err error) {
	var out struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := c.Call(ctx, "queues.get_default", nil, &out); err != nil {
		return "", "", err
	}
	return out.ID, out.Name, nil
}

// TaskInfo is queues.get_next_task's task_info (get_task_info=true).
type TaskInfo struct {
	Company string `json:"company,omitempty"`
	User    string `json:"user,omitempty"`
}

// NextTask is what queues.get_next_task popped.
type NextTask struct {
	TaskID string    // "" when the queue was empty
	Added  string    // when the entry was queued
	Info   *TaskInfo // only with GetNextTaskWithInfo
}

// GetNextTask atomically pops the first entry of queueID (queues.get_next_task,
// v2.14). It returns "" and no error when the queue is empty; an unknown
// queue gives an error for which IsInvalidQueue is true.
func (c *Client) GetNextTask(ctx context.Context, queueID string) (string, error) {
	n, err := c.getNextTask(ctx, queueID, false)
	return n.TaskID, err
}

// GetNextTaskWithInfo is GetNextTask with get_task_info=true (the task's
// owner, for owner-token impersonation).
func (c *Client) GetNextTaskWithInfo(ctx context.Context, queueID string) (NextTask, error) {
	return c.getNextTask(ctx, queueID, true)
}

func (c *Client) getNextTask(ctx context.Context, queueID string, info bool) (NextTask, error) {
	req := struct {
		Queue       string `json:"queue"`
		GetTaskInfo bool   `json:"get_task_info,omitempty"`
	}{queueID, info}
	var out struct {
		Entry *struct {
			Task  string `json:"task"`
			Added string `json:"added"`
		} `json:"entry"`
		TaskInfo *TaskInfo `json:"task_info"`
	}
	if err := c.Call(ctx, "queues.get_next_task", req, &out); err != nil {
		return NextTask{}, err
	}
	if out.Entry == nil {
		return NextTask{}, nil
	}
	return NextTask{TaskID: out.Entry.Task, Added: out.Entry.Added, Info: out.TaskInfo}, nil
}

// AddTask calls queues.add_task (the Python agent never does; tests and
// tools may).
func (c *Client) AddTask(ctx context.Context, queueID, taskID string) error {
	var out struct {
		Added json.Number `json:"added"`
	}
	return c.Call(ctx, "queues.add_task", map[string]string{"queue": queueID, "task": taskID}, &out)
}
