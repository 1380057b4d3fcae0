// Package testenv lets tests that need a program from the machine (git,
// python3, bash, sshd) say so in one way: outside CI a missing program skips
// the test; in CI (CI=true) it fails it, because scripts/install-deps.sh
// installs them there and a silent skip would hide a broken test run.
//
// It must not: install anything, or be imported by non-test code.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
)

// Need skips t (or fails it when CI=true) unless every tool is found: a bare
// name in PATH, a path as it is.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		Tool(t, tool)
	}
}

// Tool is Need for one tool, returning its path.
func Tool(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		Missing(t, "%s not found (%v); install it (scripts/install-deps.sh installs it in CI)", tool, err)
	}
	return p
}

// Missing skips t with the message outside CI and fails it when CI=true.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
		return
	}
	t.Skipf(format, args...)
}

// Recorder is a testing.TB for tests of helpers that call Missing: Skipf and
// Fatalf record the message and end the calling goroutine, as the real ones
// do (run the helper in its own goroutine). Other methods go to the embedded
// TB.
type Recorder struct {
	testing.TB
	mu               sync.Mutex
	Msg              string
	DidSkip, DidFail bool
}

// Skipf records a skip and ends the goroutine.
func (r *Recorder) Skipf(format string, args ...any) {
	r.mu.Lock()
	r.DidSkip, r.Msg = true, fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

// Fatalf records a failure and ends the goroutine.
func (r *Recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.DidFail, r.Msg = true, fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

// Run calls fn with r in a new goroutine and waits for it to end.
func (r *Recorder) Run(fn func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
}

// Buffer is a bytes.Buffer that a process's output goroutine may write while
// a test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
