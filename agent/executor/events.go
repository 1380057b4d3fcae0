package executor

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/process"
	"github.com/gpufleet/clearml-agent-go/agent/task"
)

// The file descriptors of the child's ends of the two pipes.
const (
	EventsFD   = 3
	LifelineFD = 4
)

// event is one line on the events pipe.
type event struct {
	Kind   string `json:"kind"` // "loaded", "started", "outcome"
	TaskID string `json:"task_id,omitempty"`
	Name   string `json:"name,omitempty"`
	PID    int    `json:"pid,omitempty"`

	// outcome
	Status     string `json:"status,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Code       int    `json:"code,omitempty"`
	Signal     int    `json:"signal,omitempty"`
	NotStarted bool   `json:"not_started,omitempty"`
	StartErr   string `json:"start_err,omitempty"`
	Terminated bool   `json:"terminated,omitempty"`
	Error      string `json:"error,omitempty"` // the run could not happen at all
}

func (e event) outcome() (task.Outcome, error) {
	out := task.Outcome{TaskID: e.TaskID, Status: e.Status, Reason: e.Reason, Exit: process.ExitResult{
		Code: e.Code, Signal: syscall.Signal(e.Signal), NotStarted: e.NotStarted, Terminated: e.Terminated}}
	if e.StartErr != "" {
		out.Exit.StartErr = errors.New(e.StartErr)
	}
	if e.Error != "" {
		return out, errors.New(e.Error)
	}
	return out, nil
}

// Reporter is the child's end of the events pipe. A nil *Reporter reports
// nothing, so `execute` run by hand uses the same code.
type Reporter struct {
	mu sync.Mutex
	w  io.WriteCloser
}

// OpenReporter takes over fd as the events pipe; the descriptor is closed on
// exec so that the task's processes do not inherit it.
func OpenReporter(fd int) (*Reporter, error) {
	f, err := inherited(fd, "events")
	if err != nil {
		return nil, err
	}
	return &Reporter{w: f}, nil
}

func inherited(fd int, what string) (*os.File, error) {
	if err := syscall.Fstat(fd, &syscall.Stat_t{}); err != nil {
		return nil, fmt.Errorf("%s fd %d: %w; it is for the daemon's children only, leave it out when running execute by hand", what, fd, err)
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), what), nil
}

func (r *Reporter) send(e event) {
	if r == nil {
		return
	}
	b, _ := json.Marshal(e)
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.w.Write(append(b, '\n'))
}

// Loaded reports that the task document was read.
func (r *Reporter) Loaded(t *api.Task) { r.send(event{Kind: "loaded", TaskID: t.ID, Name: t.Name}) }

// Started reports the task's process (the leader of its process group).
func (r *Reporter) Started(pid int) { r.send(event{Kind: "started", PID: pid}) }

// Outcome reports how the run ended; err is the error of task.Runner.Run.
func (r *Reporter) Outcome(out task.Outcome, err error) {
	e := event{Kind: "outcome", TaskID: out.TaskID, Status: out.Status, Reason: out.Reason, Code: out.Exit.Code,
		Signal: int(out.Exit.Signal), NotStarted: out.Exit.NotStarted, Terminated: out.Exit.Terminated}
	if out.Exit.StartErr != nil {
		e.StartErr = out.Exit.StartErr.Error()
	}
	if err != nil {
		e.Error = err.Error()
	}
	r.send(e)
}

// Close closes the pipe.
func (r *Reporter) Close() error {
	if r == nil {
		return nil
	}
	return r.w.Close()
}

// Lifeline watches the lifeline pipe on fd and calls gone once the daemon
// that holds its other end has exited (end of file), so the child aborts its
// task instead of leaving it running without a supervisor.
func Lifeline(fd int, gone func()) error {
	f, err := inherited(fd, "lifeline")
	if err != nil {
		return err
	}
	go func() {
		defer f.Close()
		_, _ = io.Copy(io.Discard, bufio.NewReader(f))
		gone()
	}()
	return nil
}
