package nspawn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options says what to boot.
type Options struct {
	// Rootfs is the root directory to boot; empty means the cached Debian
	// bookworm rootfs from scripts/nspawn-rootfs.sh (built on first use).
	Rootfs string
	// Binds are host:container paths (or one path for both) passed as
	// systemd-nspawn --bind=.
	Binds []string
	// Ephemeral boots a throwaway overlay (or, where overlayfs is refused, a
	// `cp -a --reflink=auto` copy) of Rootfs under /var/tmp, discarded on
	// cleanup, so the cached rootfs is never modified. Leave it false only
	// for a Rootfs the test owns. An empty Rootfs is always booted ephemeral.
	Ephemeral bool
	// Prepare, when set, runs on the host with the root directory that is
	// about to boot (the ephemeral one when Ephemeral), before systemd
	// starts: the place to drop a cloud-init seed or binaries into it.
	Prepare func(root string) error
	// BootTimeout bounds the wait for `systemctl is-system-running`
	// (default 2 minutes); boots that run cloud-init's runcmd need longer.
	BootTimeout time.Duration
}

// Machine is a booted container.
type Machine struct {
	t        testing.TB
	opts     Options
	args     []string
	root     string
	pid1     int
	cmd      *exec.Cmd
	exited   chan struct{}
	logPath  string
	started  time.Time
	bootTime time.Duration
	stopOnce sync.Once
}

// execEnv is the environment commands run with inside the container.
var execEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LANG=C.UTF-8",
	"TERM=dumb",
}

// Available reports why containers cannot be booted here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("nspawn: needs root (systemd-nspawn, nsenter, mount); run the integration tests with sudo")
	}
	for _, bin := range []string{"systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("nspawn: %s not found in PATH; apt-get install -y systemd-container util-linux", bin)
		}
	}
	return nil
}

// SkipUnlessRoot skips t when Available fails, or fails it when CI=true so
// that a CI runner missing a prerequisite cannot pass by skipping.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: missing prerequisites fail instead of skip)", err)
		}
		t.Skip(err)
	}
}

// Rootfs returns the cached bookworm rootfs, running
// scripts/nspawn-rootfs.sh (found by walking up to go.mod) to build it the
// first time; the build takes minutes and needs network access to the
// Debian mirror.
func Rootfs(t testing.TB) string {
	t.Helper()
	return rootfsFrom(t, "nspawn-rootfs.sh")
}

// RootfsCloudInit returns the cached bookworm rootfs with cloud-init
// installed and configured for a NoCloud seed only (no network
// configuration), built by scripts/nspawn-rootfs-cloudinit.sh on top of
// Rootfs the first time. Write the seed into
// var/lib/cloud/seed/nocloud/{user-data,meta-data} from Options.Prepare.
func RootfsCloudInit(t testing.TB) string {
	t.Helper()
	return rootfsFrom(t, "nspawn-rootfs-cloudinit.sh")
}

func rootfsFrom(t testing.TB, name string) string {
	t.Helper()
	script, err := findScript(name)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), "bash", script)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nspawn: %s: %v\n%s", script, err, tail(stderr.String(), 40))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

func findScript(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "scripts", name), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("nspawn: no go.mod above %s; run the test from inside the module", dir)
		}
	}
}

// Boot starts a container, waits until `systemctl is-system-running` says
// running or degraded, and registers cleanup (poweroff, wait, kill, remove
// the ephemeral root). It fails t if the container does not come up.
func Boot(t testing.TB, o Options) *Machine {
	t.Helper()
	SkipUnlessRoot(t)
	if o.Rootfs == "" {
		o.Rootfs = Rootfs(t)
		o.Ephemeral = true
	}
	work, err := os.MkdirTemp("/var/tmp", "clearml-nspawn-")
	if err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })

	root := o.Rootfs
	if o.Ephemeral {
		root = ephemeralRoot(t, o.Rootfs, work)
	}
	if o.Prepare != nil {
		if err := o.Prepare(root); err != nil {
			t.Fatalf("nspawn: prepare %s: %v", root, err)
		}
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 2 * time.Minute
	}
	m := &Machine{t: t, opts: o, root: root, logPath: filepath.Join(work, "boot.log")}
	m.args = []string{"-D", root, "--register=no", "--keep-unit", "-b", "--console=pipe",
		"--machine=" + filepath.Base(work)}
	for _, b := range o.Binds {
		m.args = append(m.args, "--bind="+b)
	}
	t.Cleanup(m.shutdown)
	m.start(t)
	return m
}

// start launches systemd-nspawn on m.root and waits for the boot.
func (m *Machine) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	m.exited = make(chan struct{})
	m.pid1 = 0
	// Not CommandContext: t.Context is cancelled before cleanups run, and
	// the cleanup wants to power the container off cleanly first.
	m.cmd = exec.Command("systemd-nspawn", m.args...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		close(m.exited)
		t.Fatalf("nspawn: start systemd-nspawn %s: %v", strings.Join(m.args, " "), err)
	}
	cmd, exited := m.cmd, m.exited
	go func() {
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	if err := m.waitBoot(t.Context(), m.opts.BootTimeout); err != nil {
		t.Fatalf("nspawn: boot %s: %v\nboot log:\n%s", m.root, err, m.BootLog(60))
	}
	m.bootTime = time.Since(m.started)
}

// Reboot runs `systemctl reboot` inside, waits for the container to go down
// (systemd-nspawn exits on a reboot request) and boots the same root again,
// so whatever the first boot wrote is still there.
func (m *Machine) Reboot(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	m.Exec(ctx, "systemctl", "reboot", "--no-block")
	cancel()
	select {
	case <-m.exited:
	case <-time.After(90 * time.Second):
		t.Fatalf("nspawn: container did not go down within 90s of systemctl reboot\n%s", m.BootLog(40))
	}
	m.start(t)
}

// EphemeralRoot returns a throwaway overlay (or copy) of lower for a test
// that runs something in it without booting it (Process), removed on
// cleanup.
func EphemeralRoot(t testing.TB, lower string) string {
	t.Helper()
	SkipUnlessRoot(t)
	work, err := os.MkdirTemp("/var/tmp", "clearml-nspawn-")
	if err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	return ephemeralRoot(t, lower, work)
}

func ephemeralRoot(t testing.TB, lower, work string) string {
	t.Helper()
	merged := filepath.Join(work, "root")
	upper, wdir := filepath.Join(work, "upper"), filepath.Join(work, "ovl-work")
	for _, d := range []string{merged, upper, wdir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("nspawn: %v", err)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + wdir
	if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err == nil {
		t.Cleanup(func() {
			if err := syscall.Unmount(merged, 0); err != nil {
				syscall.Unmount(merged, syscall.MNT_DETACH)
			}
		})
		return merged
	} else {
		t.Logf("nspawn: overlayfs refused (%v); copying %s instead", err, lower)
	}
	if out, err := exec.CommandContext(t.Context(), "cp", "-a", "--reflink=auto", lower+"/.", merged).CombinedOutput(); err != nil {
		t.Fatalf("nspawn: copy %s: %v\n%s", lower, err, out)
	}
	return merged
}

func (m *Machine) waitBoot(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for m.pid1 == 0 {
		if pid := childNamed(m.cmd.Process.Pid, "systemd"); pid != 0 {
			m.pid1 = pid
			break
		}
		if err := m.sleep(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("no systemd child of systemd-nspawn (pid %d): %w", m.cmd.Process.Pid, err)
		}
	}
	last := ""
	for {
		out, _ := m.Exec(ctx, "systemctl", "is-system-running")
		last = strings.TrimSpace(out)
		if last == "running" || last == "degraded" {
			return nil
		}
		if err := m.sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("systemctl is-system-running = %q: %w", last, err)
		}
	}
}

func (m *Machine) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-m.exited:
		return fmt.Errorf("systemd-nspawn exited (%v)", m.cmd.ProcessState)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// childNamed returns the pid of a child of parent whose comm is name, or 0.
func childNamed(parent int, name string) int {
	for _, p := range processes() {
		if p.ppid == parent && p.comm == name {
			return p.pid
		}
	}
	return 0
}

type proc struct {
	pid, ppid int
	comm      string
}

// processes lists every process in /proc with its parent and comm.
func processes() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces and parens.
		s := string(stat)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out = append(out, proc{pid: pid, ppid: ppid, comm: s[open+1 : close]})
	}
	return out
}

// Exec runs args inside the container (all namespaces of its PID 1, a clean
// PATH/HOME environment) and returns stdout and stderr combined. The error
// names the command and carries the output's tail.
func (m *Machine) Exec(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"-t", strconv.Itoa(m.pid1), "-a", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.Env = execEnv
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in container: %s: %w: %s", strings.Join(args, " "), err, tail(string(out), 20))
	}
	return string(out), nil
}

// Root is the host path of the container's root directory; files written
// there appear inside the running container.
func (m *Machine) Root() string { return m.root }

// PID1 is the host pid of the container's systemd.
func (m *Machine) PID1() int { return m.pid1 }

// Started is when systemd-nspawn was last started (Boot or Reboot).
func (m *Machine) Started() time.Time { return m.started }

// BootTime is how long it took from starting systemd-nspawn until
// `systemctl is-system-running` reported running or degraded.
func (m *Machine) BootTime() time.Duration { return m.bootTime }

// Journal returns the container journal of unit (last 200 lines), or the
// error text when journalctl fails.
func (m *Machine) Journal(unit string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := m.Exec(ctx, "journalctl", "-u", unit, "-n", "200", "--no-pager", "-o", "short-precise")
	if err != nil {
		return err.Error()
	}
	return out
}

// BootLog returns the last n lines of systemd-nspawn's console output.
func (m *Machine) BootLog(n int) string {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), n)
}

// Process starts args inside root as a plain process tree, without booting
// systemd: `systemd-nspawn --as-pid2` (a stub init as PID 1, /proc, /sys and
// /dev set up, the host's network), the way a notebook VM or a Colab
// runtime runs a program. env is added to a clean PATH/HOME environment;
// stdout and stderr go to out. The caller waits for the returned command;
// a cleanup kills what is left of it. Signals for the program are best sent
// to its host pid (ChildPID).
func Process(t testing.TB, root string, env []string, out io.Writer, args ...string) *exec.Cmd {
	t.Helper()
	SkipUnlessRoot(t)
	nargs := []string{"-D", root, "--register=no", "--keep-unit", "--as-pid2", "--console=pipe", "--quiet",
		"--machine=clearml-proc-" + strconv.Itoa(os.Getpid())}
	for _, e := range append(append([]string{}, execEnv...), env...) {
		nargs = append(nargs, "--setenv="+e)
	}
	nargs = append(nargs, "--")
	cmd := exec.Command("systemd-nspawn", append(nargs, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("nspawn: start systemd-nspawn %s: %v", strings.Join(nargs, " "), err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
	})
	return cmd
}

// FindProcess returns the host pid of the first process below ancestor
// whose command line contains substr, or 0.
func FindProcess(ancestor int, substr string) int {
	ps := processes()
	parent := map[int]int{}
	for _, p := range ps {
		parent[p.pid] = p.ppid
	}
	for _, p := range ps {
		cl, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/cmdline")
		if err != nil || !strings.Contains(strings.ReplaceAll(string(cl), "\x00", " "), substr) {
			continue
		}
		for a := parent[p.pid]; a > 1; a = parent[a] {
			if a == ancestor {
				return p.pid
			}
		}
	}
	return 0
}

func (m *Machine) shutdown() {
	m.stopOnce.Do(func() {
		if m.t.Failed() {
			m.t.Logf("nspawn: boot log tail:\n%s", m.BootLog(40))
		}
		if m.pid1 != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			m.Exec(ctx, "systemctl", "poweroff", "--no-block")
			cancel()
		}
		select {
		case <-m.exited:
			return
		case <-time.After(30 * time.Second):
			m.t.Logf("nspawn: container did not power off in 30s; killing systemd-nspawn (pid %d)", m.cmd.Process.Pid)
		}
		syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL) // the whole session (setsid)
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
			m.t.Errorf("nspawn: systemd-nspawn (pid %d) still running after SIGKILL", m.cmd.Process.Pid)
		}
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
