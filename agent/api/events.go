package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// AddBatchResult is events.add_batch's answer.
type AddBatchResult struct {
	Added      int            `json:"added"`
	Errors     int            `json:"errors"`
	ErrorsInfo map[string]any `json:"errors_info,omitempty"`
}

// AddBatch sends events with events.add_batch: always POST to
// <host>/events.add_batch, one JSON event per line, Content-Type
// application/json-lines. Splitting into packets (1 MiB) is the caller's job.
// An empty batch sends nothing.
func (c *Client) AddBatch(ctx context.Context, events []Event) (AddBatchResult, error) {
	var out AddBatchResult
	if len(events) == 0 {
		return out, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // Encode appends '\n' after each event
	enc.SetEscapeHTML(false)
	for i := range events {
		if err := enc.Encode(&events[i]); err != nil {
			return out, fmt.Errorf("events.add_batch: encode event %d of task %q: %w", i, events[i].Task, err)
		}
	}
	err := c.call(ctx, "events.add_batch", buf.Bytes(), "application/json-lines", &out)
	return out, err
}

// GetTaskLogRequest is events.get_task_log (v2.9 form): the newest
// BatchSize events, or those before/after FromTimestamp.
type GetTaskLogRequest struct {
	Task            string `json:"task"`
	BatchSize       int    `json:"batch_size,omitempty"`
	NavigateEarlier *bool  `json:"navigate_earlier,omitempty"`
	FromTimestamp   int64  `json:"from_timestamp,omitempty"` // epoch ms
}

// TaskLog is events.get_task_log's answer.
type TaskLog struct {
	Events   []Event `json:"events"`
	Returned int     `json:"returned"`
	Total    float64 `json:"total"` // a JSON number in the schema (1.7 on)
}

// GetTaskLog calls events.get_task_log.
func (c *Client) GetTaskLog(ctx context.Context, req GetTaskLogRequest) (TaskLog, error) {
	var out TaskLog
	err := c.Call(ctx, "events.get_task_log", req, &out)
	return out, err
}
