package instance

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a fake agent: with IDENTITY_HELPER set it runs
// one of the modes below instead of the tests.
const (
	envHelper = "IDENTITY_HELPER"
	envDir    = "IDENTITY_HELPER_DIR"
	envID     = "IDENTITY_HELPER_ID"
	envExitOn = "IDENTITY_HELPER_EXIT_ON" // trap: exit after this many SIGTERMs (0 = never)
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envHelper); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

func helper(mode string) int {
	dir, id := os.Getenv(envDir), os.Getenv(envID)
	switch mode {
	case "hold": // hold the id until stdin closes
		inst, err := Lock(dir, id)
		if err != nil {
			fmt.Println("error:", err)
			return 3
		}
		fmt.Println("locked", inst.Slot)
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = inst.Close()
		return 0
	case "trap": // hold the id, report each SIGTERM, exit only after EXIT_ON of them
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGTERM)
		inst, err := Lock(dir, id)
		if err != nil {
			fmt.Println("error:", err)
			return 3
		}
		exitOn, _ := strconv.Atoi(os.Getenv(envExitOn))
		fmt.Println("locked", inst.Slot)
		for n := 1; ; n++ {
			<-sigs
			fmt.Println("SIGTERM", n)
			if n == exitOn {
				_ = inst.Close()
				return 0
			}
		}
	case "detached": // what `daemon --detached` runs in the background
		if !IsDetachedChild() {
			fmt.Println("error: not marked as detached")
			return 4
		}
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		inst, err := Lock(DefaultStateDir(), id)
		if err != nil {
			fmt.Println("error:", err)
			return 3
		}
		fmt.Printf("agent %s running in the background, args %q, log %s\n", inst.WorkerID, os.Args[1:], inst.LogFile)
		<-sigs
		_ = inst.Close()
		return 0
	case "fail":
		fmt.Fprintln(os.Stderr, "boom: clearml.conf: api.host is not set")
		return 2
	}
	return 99
}

// helperProc is a running fake agent.
type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan error
}

func startHelper(t *testing.T, mode, dir, id string, extraEnv ...string) *helperProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"="+mode, envDir+"="+dir, envID+"="+id)
	cmd.Env = append(cmd.Env, extraEnv...)
	if os.Getenv("GORACE") == "" {
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0") // -race helpers otherwise linger 1s at exit
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperProc{cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
		h.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = stdin.Close()
	})
	return h
}

// next returns the helper's next output line.
func (h *helperProc) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			t.Fatalf("helper pid %d exited without more output", h.cmd.Process.Pid)
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("helper pid %d printed nothing for 30s", h.cmd.Process.Pid)
	}
	return ""
}

func (h *helperProc) wantLocked(t *testing.T) {
	t.Helper()
	if l := h.next(t); !strings.HasPrefix(l, "locked") {
		t.Fatalf("helper: got %q, want it to lock", l)
	}
}

func (h *helperProc) wait(t *testing.T) error {
	t.Helper()
	for range h.lines { // drain
	}
	select {
	case err := <-h.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("helper pid %d did not exit", h.cmd.Process.Pid)
	}
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }
