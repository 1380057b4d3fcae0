package api

import "encoding/json"

// Task statuses, as the server names them (reference section 9).
const (
	StatusCreated    = "created"
	StatusQueued     = "queued"
	StatusInProgress = "in_progress"
	StatusStopped    = "stopped"
	StatusPublished  = "published"
	StatusPublishing = "publishing"
	StatusClosed     = "closed"
	StatusFailed     = "failed"
	StatusCompleted  = "completed"
	StatusUnknown    = "unknown"
)

// Requirements is task.script.requirements. Values are free text (pip) as the
// SDK stores them; the server keeps any extra keys.
type Requirements struct {
	Pip      string `json:"pip,omitempty"`
	Conda    string `json:"conda,omitempty"`
	OrgPip   string `json:"org_pip,omitempty"`
	OrgConda string `json:"org_conda,omitempty"`

	// HasPip is true when the server's document has a pip key, even an
	// empty one: the Python agent then installs what it says (possibly
	// nothing) instead of the repository's requirements.txt.
	HasPip bool `json:"-"`
}

// UnmarshalJSON reads the fields and notes whether the pip key was there.
func (r *Requirements) UnmarshalJSON(b []byte) error {
	type plain Requirements
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return err
	}
	_, p.HasPip = keys["pip"]
	*r = Requirements(p)
	return nil
}

// Script is task.script: where the code is and how to start it.
type Script struct {
	Repository   string        `json:"repository,omitempty"`
	Branch       string        `json:"branch,omitempty"`
	Tag          string        `json:"tag,omitempty"`
	VersionNum   string        `json:"version_num,omitempty"`
	EntryPoint   string        `json:"entry_point,omitempty"`
	WorkingDir   string        `json:"working_dir,omitempty"`
	Binary       string        `json:"binary,omitempty"`
	Diff         string        `json:"diff,omitempty"`
	Requirements *Requirements `json:"requirements,omitempty"`
}

// Execution is task.execution.
type Execution struct {
	Queue      string            `json:"queue,omitempty"`
	DockerCmd  string            `json:"docker_cmd,omitempty"`
	Parameters map[string]string `json:"parameters,omitempty"`
}

// Container is task.container (docker image, arguments, setup script).
type Container struct {
	Image            string `json:"image,omitempty"`
	Arguments        string `json:"arguments,omitempty"`
	SetupShellScript string `json:"setup_shell_script,omitempty"`
}

// Task is the subset of the server's task document the agent reads or writes.
// Unknown fields are ignored on decode.
type Task struct {
	ID            string         `json:"id"`
	Name          string         `json:"name,omitempty"`
	Type          string         `json:"type,omitempty"`
	Status        string         `json:"status,omitempty"`
	StatusReason  string         `json:"status_reason,omitempty"`
	StatusMessage string         `json:"status_message,omitempty"`
	Project       string         `json:"project,omitempty"`
	Comment       string         `json:"comment,omitempty"`
	Tags          []string       `json:"tags,omitempty"`
	SystemTags    []string       `json:"system_tags,omitempty"`
	Script        *Script        `json:"script,omitempty"`
	Execution     *Execution     `json:"execution,omitempty"`
	Container     *Container     `json:"container,omitempty"`
	Runtime       map[string]any `json:"runtime,omitempty"`
	LastWorker    string         `json:"last_worker,omitempty"`
	LastUpdate    string         `json:"last_update,omitempty"`
	Started       string         `json:"started,omitempty"`
	Created       string         `json:"created,omitempty"`
	StatusChanged string         `json:"status_changed,omitempty"`
	EnqueueStatus string         `json:"enqueue_status,omitempty"`
}

// Queue is a queue document as queues.get_all / get_by_id return it.
type Queue struct {
	ID      string       `json:"id"`
	Name    string       `json:"name"`
	Tags    []string     `json:"tags,omitempty"`
	Entries []QueueEntry `json:"entries,omitempty"`
	Created string       `json:"created,omitempty"`
	Company string       `json:"company,omitempty"`
	User    string       `json:"user,omitempty"`
	SysTags []string     `json:"system_tags,omitempty"`
}

// QueueEntry is one entry of a queue: a task id and when it was added.
type QueueEntry struct {
	Task  string `json:"task"`
	Added string `json:"added,omitempty"`
}

// Event is one element of an events.add_batch body. The agent sends only
// type "log" events (reference 3.5).
type Event struct {
	Type      string `json:"type"`
	Level     string `json:"level,omitempty"`
	Task      string `json:"task"`
	Worker    string `json:"worker,omitempty"`
	Msg       string `json:"msg"`
	Timestamp int64  `json:"timestamp"` // epoch milliseconds
}

// MachineStats is workers.status_report's machine_stats. Units follow the
// reference (section 6): percentages, MiB, MiB/s, degrees Celsius.
type MachineStats struct {
	CPUUsage       []float64 `json:"cpu_usage,omitempty"`
	CPUTemperature []float64 `json:"cpu_temperature,omitempty"`
	MemoryUsed     float64   `json:"memory_used,omitempty"`
	MemoryFree     float64   `json:"memory_free,omitempty"`
	DiskFreeHome   float64   `json:"disk_free_home,omitempty"`
	NetworkTx      float64   `json:"network_tx,omitempty"`
	NetworkRx      float64   `json:"network_rx,omitempty"`
	DiskRead       float64   `json:"disk_read,omitempty"`
	DiskWrite      float64   `json:"disk_write,omitempty"`
	GPUUsage       []float64 `json:"gpu_usage,omitempty"`
	GPUTemperature []float64 `json:"gpu_temperature,omitempty"`
	GPUMemoryUsed  []float64 `json:"gpu_memory_used,omitempty"`
	GPUMemoryFree  []float64 `json:"gpu_memory_free,omitempty"`
}

// Worker is one element of workers.get_all. User, Company and Task are
// {id, name} objects; Queue (the queue of the running task) and each of
// Queues are {id, name, num_tasks, next_task} objects.
type Worker struct {
	ID               string          `json:"id"`
	User             json.RawMessage `json:"user,omitempty"`
	Company          json.RawMessage `json:"company,omitempty"`
	IP               string          `json:"ip,omitempty"`
	RegisterTime     string          `json:"register_time,omitempty"`
	LastActivityTime string          `json:"last_activity_time,omitempty"`
	LastReportTime   string          `json:"last_report_time,omitempty"`
	Task             json.RawMessage `json:"task,omitempty"`
	Queue            json.RawMessage `json:"queue,omitempty"`
	Queues           json.RawMessage `json:"queues,omitempty"`
	Tags             []string        `json:"tags,omitempty"`
}

// Project is one element of projects.get_all.
type Project struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	BaseName    string   `json:"basename,omitempty"`
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	SystemTags  []string `json:"system_tags,omitempty"`
}
