package process

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExitResult is how a supervised process ended. It implements error so that a
// non-successful result can be returned as one; use Err to get nil on success.
type ExitResult struct {
	// Code is the exit status. When the process was killed by a signal it is
	// the negative signal number (as Python's Popen.returncode, which the
	// reference agent reports: "a signal gives a negative N"). It is -1 when
	// the process never started.
	Code int
	// Signal is the signal that killed the process, 0 when it exited.
	Signal syscall.Signal
	// NotStarted is true when the command could not be started; StartErr says why.
	NotStarted bool
	StartErr   error
	// Terminated is true when Terminate (or the Start context) asked the
	// process group to stop before it exited on its own.
	Terminated bool
}

// Success reports whether the process started and exited with status 0.
func (r ExitResult) Success() bool {
	return !r.NotStarted && r.Signal == 0 && r.Code == 0
}

// Err returns nil on success and the result itself otherwise.
func (r ExitResult) Err() error {
	if r.Success() {
		return nil
	}
	return r
}

// Error implements error.
func (r ExitResult) Error() string { return r.String() }

// Unwrap returns the start error, if any.
func (r ExitResult) Unwrap() error { return r.StartErr }

// String describes the result in one line, e.g. "exit code 3" or
// "killed by signal SIGKILL (code -9), after terminate".
func (r ExitResult) String() string {
	var s string
	switch {
	case r.NotStarted:
		s = fmt.Sprintf("never started: %v", r.StartErr)
	case r.Signal != 0:
		s = fmt.Sprintf("killed by signal %s (code %d)", signalName(r.Signal), r.Code)
	default:
		s = fmt.Sprintf("exit code %d", r.Code)
	}
	if r.Terminated {
		s += ", after terminate"
	}
	return s
}

func signalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(sig))
}

func resultFromWaitStatus(ws syscall.WaitStatus) ExitResult {
	if ws.Signaled() {
		return ExitResult{Code: -int(ws.Signal()), Signal: ws.Signal()}
	}
	return ExitResult{Code: ws.ExitStatus()}
}
