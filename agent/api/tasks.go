package api

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
)

// Updated is the common answer of task updates: how many documents changed
// and the fields the server set.
type Updated struct {
	Updated int            `json:"updated"`
	Fields  map[string]any `json:"fields,omitempty"`
}

// GetTask calls tasks.get_by_id.
func (c *Client) GetTask(ctx context.Context, taskID string) (*Task, error) {
	var out struct {
		Task *Task `json:"task"`
	}
	if err := c.Call(ctx, "tasks.get_by_id", map[string]string{"task": taskID}, &out); err != nil {
		return nil, err
	}
	if out.Task == nil {
		return nil, fmt.Errorf("tasks.get_by_id: no task in the answer for id %q", taskID)
	}
	return out.Task, nil
}

// GetAllTasksRequest is tasks.get_all (v2.14).
type GetAllTasksRequest struct {
	ID           []string `json:"id,omitempty"`
	Name         string   `json:"name,omitempty"`
	Status       []string `json:"status,omitempty"`
	Project      []string `json:"project,omitempty"`
	OnlyFields   []string `json:"only_fields,omitempty"`
	SearchHidden bool     `json:"search_hidden,omitempty"`
	PageSize     int      `json:"page_size,omitempty"`
	Page         *int     `json:"page,omitempty"`
}

// GetAllTasks calls tasks.get_all.
func (c *Client) GetAllTasks(ctx context.Context, req GetAllTasksRequest) ([]Task, error) {
	var out struct {
		Tasks []Task `json:"tasks"`
	}
	if err := c.Call(ctx, "tasks.get_all", req, &out); err != nil {
		return nil, err
	}
	return out.Tasks, nil
}

// CreateTaskRequest is tasks.create.
type CreateTaskRequest struct {
	Name      string     `json:"name"`
	Type      string     `json:"type"` // e.g. "training"
	Project   string     `json:"project,omitempty"`
	Comment   string     `json:"comment,omitempty"`
	Tags      []string   `json:"tags,omitempty"`
	Script    *Script    `json:"script,omitempty"`
	Execution *Execution `json:"execution,omitempty"`
	Container *Container `json:"container,omitempty"`
}

// CreateTask calls tasks.create and returns the new task id.
func (c *Client) CreateTask(ctx context.Context, req CreateTaskRequest) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := c.Call(ctx, "tasks.create", req, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// EditTaskRequest is tasks.edit: Fields holds the task fields to set
// (e.g. "runtime": map[string]any{...}), sent beside task and force.
type EditTaskRequest struct {
	Task   string
	Force  bool
	Fields map[string]any
}

// MarshalJSON flattens Fields next to task and force.
func (r EditTaskRequest) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(r.Fields)+2)
	maps.Copy(m, r.Fields)
	m["task"] = r.Task
	if r.Force {
		m["force"] = true
	}
	return json.Marshal(m)
}

// EditTask calls tasks.edit.
func (c *Client) EditTask(ctx context.Context, req EditTaskRequest) (Updated, error) {
	var out Updated
	err := c.Call(ctx, "tasks.edit", req, &out)
	return out, err
}

// EnqueueRequest is tasks.enqueue; set Queue (an id) or QueueName.
type EnqueueRequest struct {
	Task          string `json:"task"`
	Queue         string `json:"queue,omitempty"`
	QueueName     string `json:"queue_name,omitempty"`
	StatusReason  string `json:"status_reason,omitempty"`
	StatusMessage string `json:"status_message,omitempty"`
}

// EnqueueResult is tasks.enqueue's answer.
type EnqueueResult struct {
	Queued  int            `json:"queued"`
	Updated int            `json:"updated"`
	Fields  map[string]any `json:"fields,omitempty"`
}

// Enqueue calls tasks.enqueue.
func (c *Client) Enqueue(ctx context.Context, req EnqueueRequest) (EnqueueResult, error) {
	var out EnqueueResult
	err := c.Call(ctx, "tasks.enqueue", req, &out)
	return out, err
}

// DequeueRequest is tasks.dequeue.
type DequeueRequest struct {
	Task          string `json:"task"`
	NewStatus     string `json:"new_status,omitempty"`
	StatusReason  string `json:"status_reason,omitempty"`
	StatusMessage string `json:"status_message,omitempty"`
}

// DequeueResult is tasks.dequeue's answer.
type DequeueResult struct {
	Dequeued int            `json:"dequeued"`
	Updated  int            `json:"updated"`
	Fields   map[string]any `json:"fields,omitempty"`
}

// Dequeue calls tasks.dequeue.
func (c *Client) Dequeue(ctx context.Context, req DequeueRequest) (DequeueResult, error) {
	var out DequeueResult
	err := c.Call(ctx, "tasks.dequeue", req, &out)
	return out, err
}

// StatusRequest is the body of tasks.started/stopped/failed/completed/stop/reset.
type StatusRequest struct {
	Task          string `json:"task"`
	StatusReason  string `json:"status_reason,omitempty"`
	StatusMessage string `json:"status_message,omitempty"`
	Force         bool   `json:"force,omitempty"`
}

// Started calls tasks.started (-> in_progress).
func (c *Client) Started(ctx context.Context, req StatusRequest) (Updated, error) {
	return c.status(ctx, "tasks.started", req)
}

// Stopped calls tasks.stopped (-> stopped).
func (c *Client) Stopped(ctx context.Context, req StatusRequest) (Updated, error) {
	return c.status(ctx, "tasks.stopped", req)
}

// Failed calls tasks.failed (-> failed).
func (c *Client) Failed(ctx context.Context, req StatusRequest) (Updated, error) {
	return c.status(ctx, "tasks.failed", req)
}

// Completed calls tasks.completed (-> completed).
func (c *Client) Completed(ctx context.Context, req StatusRequest) (Updated, error) {
	return c.status(ctx, "tasks.completed", req)
}

// Stop calls tasks.stop (a user abort: a running task stays in_progress with
// status_message "stopping" until its agent reports stopped).
func (c *Client) Stop(ctx context.Context, req StatusRequest) (Updated, error) {
	return c.status(ctx, "tasks.stop", req)
}

// Reset calls tasks.reset (-> created, dequeued).
func (c *Client) Reset(ctx context.Context, req StatusRequest) (Updated, error) {
	return c.status(ctx, "tasks.reset", req)
}

func (c *Client) status(ctx context.Context, endpoint string, req StatusRequest) (Updated, error) {
	var out Updated
	err := c.Call(ctx, endpoint, req, &out)
	return out, err
}

// Ping calls tasks.ping, which touches the task's last_update.
func (c *Client) Ping(ctx context.Context, taskID string) error {
	return c.Call(ctx, "tasks.ping", map[string]string{"task": taskID}, nil)
}

// CloneRequest is tasks.clone.
type CloneRequest struct {
	Task           string `json:"task"`
	NewTaskName    string `json:"new_task_name,omitempty"`
	NewTaskProject string `json:"new_task_project,omitempty"`
	NewTaskComment string `json:"new_task_comment,omitempty"`
}

// Clone calls tasks.clone and returns the new task id.
func (c *Client) Clone(ctx context.Context, req CloneRequest) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := c.Call(ctx, "tasks.clone", req, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// SetRequirements calls tasks.set_requirements.
func (c *Client) SetRequirements(ctx context.Context, taskID string, req Requirements) (Updated, error) {
	body := struct {
		Task         string       `json:"task"`
		Requirements Requirements `json:"requirements"`
	}{taskID, req}
	var out Updated
	err := c.Call(ctx, "tasks.set_requirements", body, &out)
	return out, err
}
