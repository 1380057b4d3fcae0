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
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/api"
	"github.com/gpufleet/clearml-agent-go/agent/process"
	"github.com/gpufleet/clearml-agent-go/agent/task"
)

// The file descriptors of the child's ends of the two pipes.
const (
	EventsFD   = 3
	LifelineFD = 4
)

// event is one line on the events pipe. A reader ignores kinds and fields
// it does not know, so either side may be the newer one.
type event struct {
	Kind   string `json:"kind"` // "loaded", "started", "phase", "aborting", "outcome"
	TaskID string `json:"task_id,omitempty"`
	Name   string `json:"name,omitempty"`
	PID    int    `json:"pid,omitempty"`

	// phase: one setup phase ended (task.Phase*), after Seconds.
	Phase   string  `json:"phase,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`

	// outcome
	Status     string `json:"status,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Code       int    `json:"code,omitempty"`
	Signal     int    `json:"signal,omitempty"`
	NotStarted bool   `json:"not_started,omitempty"`
	StartErr   string `json:"start_err,omitempty"`
	Terminated bool   `json:"terminated,omitempty"`
	Error      string `json:"error,omitempty"` // the run could not happen at all
	// What became of the task's log lines (task.LogCounts).
	LogShipped uint64 `json:"log_shipped,omitempty"`
	LogSpooled uint64 `json:"log_spooled,omitempty"`
	LogDropped uint64 `json:"log_dropped,omitempty"`
}

func (e event) outcome() (task.Outcome, error) {
	out := task.Outcome{TaskID: e.TaskID, Status: e.Status, Reason: e.Reason, Exit: process.ExitResult{
		Code: e.Code, Signal: syscall.Signal(e.Signal), NotStarted: e.NotStarted, Terminated: e.Terminated},
		Log: task.LogCounts{Shipped: e.LogShipped, Spooled: e.LogSpooled, Dropped: e.LogDropped}}
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

// Phase reports that a setup phase (task.PhaseClone, ...) took d.
func (r *Reporter) Phase(phase string, d time.Duration) {
	r.send(event{Kind: "phase", Phase: phase, Seconds: d.Seconds()})
}

// Aborting acknowledges an abort the daemon asked for on the lifeline: the
// child aborts the task itself, so the daemon sends no SIGTERM.
func (r *Reporter) Aborting() { r.send(event{Kind: "aborting"}) }

// Outcome reports how the run ended; err is the error of task.Runner.Run.
func (r *Reporter) Outcome(out task.Outcome, err error) {
	e := event{Kind: "outcome", TaskID: out.TaskID, Status: out.Status, Reason: out.Reason, Code: out.Exit.Code,
		Signal: int(out.Exit.Signal), NotStarted: out.Exit.NotStarted, Terminated: out.Exit.Terminated,
		LogShipped: out.Log.Shipped, LogSpooled: out.Log.Spooled, LogDropped: out.Log.Dropped}
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

// lifelineMsg is one line the daemon writes on the lifeline. A child that
// predates them reads and ignores every line, so the daemon sends SIGTERM
// when no "aborting" event acknowledges one.
type lifelineMsg struct {
	Kind   string `json:"kind"` // "abort"
	Reason string `json:"reason,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Lifeline watches the lifeline pipe on fd and calls gone once the daemon
// that holds its other end has exited (end of file), so the child aborts its
// task instead of leaving it running without a supervisor. An abort line the
// daemon writes (an abort with a reason, task.AbortCause) goes to abort,
// when set.
func Lifeline(fd int, gone func(), abort func(*task.AbortCause)) error {
	f, err := inherited(fd, "lifeline")
	if err != nil {
		return err
	}
	go func() {
		defer f.Close()
		readLifeline(f, abort)
		gone()
	}()
	return nil
}

// readLifeline reads the daemon's lines until end of file.
func readLifeline(r io.Reader, abort func(*task.AbortCause)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		var m lifelineMsg
		if json.Unmarshal(sc.Bytes(), &m) != nil || m.Kind != "abort" || abort == nil {
			continue
		}
		abort(&task.AbortCause{Reason: m.Reason, Note: m.Note})
	}
	// A line too long for the scanner: keep reading to the end anyway.
	_, _ = io.Copy(io.Discard, r)
}

// writeAbort asks the child on its lifeline to abort its task with cause.
func writeAbort(w io.Writer, cause *task.AbortCause) error {
	b, _ := json.Marshal(lifelineMsg{Kind: "abort", Reason: cause.Reason, Note: cause.Note})
	_, err := w.Write(append(b, '\n'))
	return err
}
