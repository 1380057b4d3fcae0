package api

import "context"

// RegisterWorker calls workers.register. queueIDs are queue ids; timeout (s)
// 0 leaves the server default (600 s), as the Python agent does.
func (c *Client) RegisterWorker(ctx context.Context, worker string, queueIDs []string, timeoutSec int) error {
	req := struct {
		Worker  string   `json:"worker"`
		Queues  []string `json:"queues,omitempty"`
		Timeout int      `json:"timeout,omitempty"`
	}{worker, queueIDs, timeoutSec}
	return c.Call(ctx, "workers.register", req, nil)
}

// UnregisterWorker calls workers.unregister.
func (c *Client) UnregisterWorker(ctx context.Context, worker string) error {
	return c.Call(ctx, "workers.unregister", map[string]string{"worker": worker}, nil)
}

// StatusReport is the body of workers.status_report. Timestamp is epoch
// milliseconds (the Python agent sends int(time())*1000).
type StatusReport struct {
	Worker       string        `json:"worker"`
	Timestamp    int64         `json:"timestamp"`
	MachineStats *MachineStats `json:"machine_stats,omitempty"`
	Task         string        `json:"task,omitempty"`
	Queue        string        `json:"queue,omitempty"`
	Queues       []string      `json:"queues,omitempty"`
	Tags         []string      `json:"tags,omitempty"`
}

// ReportStatus calls workers.status_report. A report with Task sets that
// task's last_worker and last_update on the server.
func (c *Client) ReportStatus(ctx context.Context, r StatusReport) error {
	return c.Call(ctx, "workers.status_report", r, nil)
}

// GetAllWorkersRequest is workers.get_all (v2.5, as the Python agent's
// list). worker_pattern only exists from 2.30, so it is not offered.
type GetAllWorkersRequest struct {
	LastSeen int `json:"last_seen,omitempty"` // seconds
}

// GetAllWorkers calls workers.get_all.
func (c *Client) GetAllWorkers(ctx context.Context, req GetAllWorkersRequest) ([]Worker, error) {
	var out struct {
		Workers []Worker `json:"workers"`
	}
	if err := c.Call(ctx, "workers.get_all", req, &out); err != nil {
		return nil, err
	}
	return out.Workers, nil
}
