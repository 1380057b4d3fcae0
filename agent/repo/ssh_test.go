package repo

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gpufleet/clearml-agent-go/internal/testenv"
)

// sshdPath is where Debian's openssh-server puts the daemon; sshd must be
// started with an absolute path (it re-executes itself).
const sshdPath = "/usr/sbin/sshd"

// lockedBuffer collects a child's stderr while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// sshServer is a real OpenSSH daemon on 127.0.0.1 that lets the current user
// (root in CI) in with one ed25519 key.
type sshServer struct {
	port      int
	userKey   string // private key file of the authorized user
	knownHost string // known_hosts line for [127.0.0.1]:port
	wrongHost string // known_hosts line for [127.0.0.1]:port with another key
	otherKey  string // private key file sshd does not accept
	log       *lockedBuffer
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSSHD generates the host and user keys, writes a minimal sshd_config
// and runs sshd in the foreground until the test ends.
func startSSHD(t *testing.T) *sshServer {
	t.Helper()
	testenv.Need(t, sshdPath)
	testenv.Need(t, "ssh-keygen")
	testenv.Need(t, "git-upload-pack")
	if os.Geteuid() == 0 {
		// Privilege separation directory; the Debian service normally makes it.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_ed25519")
	userKey := filepath.Join(dir, "user_ed25519")
	run(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "host", "-f", hostKey)
	run(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "user", "-f", userKey)
	authorized := filepath.Join(dir, "authorized_keys")
	writeFile(t, authorized, readFile(t, userKey+".pub"))
	otherKey := filepath.Join(dir, "other_ed25519")
	run(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "other", "-f", otherKey)
	hostPub := strings.Fields(readFile(t, hostKey+".pub"))
	otherPub := strings.Fields(readFile(t, otherKey+".pub"))

	port := freePort(t)
	cfg := filepath.Join(dir, "sshd_config")
	base := strings.Join([]string{
		"ListenAddress 127.0.0.1:" + strconv.Itoa(port),
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + authorized,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"StrictModes no",
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"PermitRootLogin prohibit-password",
		"LogLevel VERBOSE",
		"",
	}, "\n")
	// OpenSSH >= 9.8 penalises sources whose connections end without
	// authenticating (the unknown-host case does exactly that); older
	// versions reject the keyword, so keep it only when sshd -t accepts it.
	writeFile(t, cfg, base+"PerSourcePenalties no\n")
	if err := exec.Command(sshdPath, "-t", "-f", cfg).Run(); err != nil {
		writeFile(t, cfg, base)
		run(t, nil, sshdPath, "-t", "-f", cfg)
	}

	log := &lockedBuffer{}
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		testenv.Missing(t, "starting %s: %v; sshd cannot run here", sshdPath, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sshd log:\n%s", log.String())
		}
	})

	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			testenv.Missing(t, "sshd exited before accepting connections; sshd cannot run here:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not accept connections on %s: %v\n%s", addr, err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &sshServer{
		port:      port,
		userKey:   userKey,
		knownHost: "[127.0.0.1]:" + strconv.Itoa(port) + " " + hostPub[0] + " " + hostPub[1] + "\n",
		wrongHost: "[127.0.0.1]:" + strconv.Itoa(port) + " " + otherPub[0] + " " + otherPub[1] + "\n",
		otherKey:  otherKey,
		log:       log,
	}
}

// noKnownHosts makes sshHome leave known_hosts out.
const noKnownHosts = "\x00none"

// sshHome makes a HOME whose .ssh holds known_hosts (unless noKnownHosts)
// and key (a private key file, "" for none) as id_ed25519. It points HOME at it and clears SSH_AUTH_SOCK and
// SSH_KNOWN_HOSTS so only this HOME is used.
func (s *sshServer) sshHome(t *testing.T, knownHosts string, key string) {
	t.Helper()
	home := t.TempDir()
	dotSSH := filepath.Join(home, ".ssh")
	if err := os.MkdirAll(dotSSH, 0o700); err != nil {
		t.Fatal(err)
	}
	if knownHosts != noKnownHosts {
		writeFile(t, filepath.Join(dotSSH, "known_hosts"), knownHosts)
	}
	if key != "" {
		dst := filepath.Join(dotSSH, "id_ed25519")
		writeFile(t, dst, readFile(t, key))
		if err := os.Chmod(dst, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("SSH_KNOWN_HOSTS", "")
}

// startAgent runs ssh-agent on a fresh socket holding the user's key and
// points SSH_AUTH_SOCK at it.
func (s *sshServer) startAgent(t *testing.T) {
	t.Helper()
	testenv.Need(t, "ssh-agent")
	testenv.Need(t, "ssh-add")
	// Unix socket paths are limited to ~108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	log := &lockedBuffer{}
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ssh-agent: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("ssh-agent exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent did not create %s:\n%s", sock, log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	run(t, []string{"SSH_AUTH_SOCK=" + sock}, "ssh-add", "-q", s.userKey)
	t.Setenv("SSH_AUTH_SOCK", sock)
}

// TestPrepareSSH clones over a real sshd with real host key checking. It sets
// HOME and SSH_AUTH_SOCK, so it cannot run in parallel.
func TestPrepareSSH(t *testing.T) {
	s := startSSHD(t)
	f := newFixture(t)
	url := "ssh://root@127.0.0.1:" + strconv.Itoa(s.port) + f.origin
	if u := os.Getenv("USER"); os.Geteuid() != 0 && u != "" {
		url = "ssh://" + u + "@127.0.0.1:" + strconv.Itoa(s.port) + f.origin
	}

	check := func(t *testing.T, spec Spec, wantCommit, wantBranch, wantTrain string) {
		t.Helper()
		dest := filepath.Join(t.TempDir(), "code")
		var logs []string
		res, err := Prepare(t.Context(), spec, dest, func(l string) { logs = append(logs, l) })
		if err != nil {
			t.Fatalf("Prepare(%s): %v\nlogs: %q", spec.URL, err, logs)
		}
		want := Result{Dir: dest, Commit: wantCommit, Branch: wantBranch, URL: url}
		if diff := cmp.Diff(want, res); diff != "" {
			t.Errorf("Result mismatch (-want +got):\n%s\nlogs: %q", diff, logs)
		}
		if got := gitCLI(t, dest, "rev-parse", "HEAD"); got != wantCommit {
			t.Errorf("git rev-parse HEAD = %s, want %s", got, wantCommit)
		}
		if got := readFile(t, filepath.Join(dest, "train.py")); got != wantTrain {
			t.Errorf("train.py = %q", got)
		}
	}

	const v1, v2 = "print('v1')\n", "print('v2')\n"
	t.Run("key file in HOME", func(t *testing.T) {
		s.sshHome(t, s.knownHost, s.userKey)
		check(t, Spec{URL: url}, f.c2, "main", v2)
	})
	t.Run("key file, branch", func(t *testing.T) {
		s.sshHome(t, s.knownHost, s.userKey)
		check(t, Spec{URL: url, Branch: "feature"}, f.c3, "feature", v2)
	})
	t.Run("SSH_AUTH_SOCK", func(t *testing.T) {
		s.sshHome(t, s.knownHost, "")
		s.startAgent(t)
		check(t, Spec{URL: url}, f.c2, "main", v2)
	})
	t.Run("force_git_ssh_protocol", func(t *testing.T) {
		s.sshHome(t, s.knownHost, s.userKey)
		user := strings.TrimPrefix(url, "ssh://")
		user = user[:strings.Index(user, "@")]
		spec := Spec{URL: "https://127.0.0.1" + f.origin, ForceSSH: true, SSHUser: user, SSHPort: s.port,
			Creds: Creds{User: "u", Pass: "secret-pass"}}
		check(t, spec, f.c2, "main", v2)
	})
	t.Run("vcs cache", func(t *testing.T) {
		s.sshHome(t, s.knownHost, s.userKey)
		cache := t.TempDir()
		check(t, Spec{URL: url, CacheDir: cache}, f.c2, "main", v2)
		check(t, Spec{URL: url, CacheDir: cache, Commit: f.c1}, f.c1, "", v1)
	})

	// Failures last: they close connections before authenticating.
	port := strconv.Itoa(s.port)
	hostPort := "127.0.0.1:" + port
	failures := []struct {
		name       string
		knownHosts string
		key        string
		want       []string
	}{
		{"unknown host key", "", s.userKey, []string{hostPort, "not in known_hosts", "ssh-keyscan -p " + port + " 127.0.0.1 >> ~/.ssh/known_hosts"}},
		{"no known_hosts file", noKnownHosts, s.userKey, []string{hostPort, "no known_hosts file", "ssh-keyscan -p " + port}},
		{"changed host key", s.wrongHost, s.userKey, []string{hostPort, "changed", "known_hosts:1", `ssh-keygen -R "[127.0.0.1]:` + port + `"`}},
		{"key refused", s.knownHost, s.otherKey, []string{hostPort, "refused key", "id_ed25519", "public key"}},
		{"no key", s.knownHost, "", []string{url, "no SSH credentials", "id_ed25519", "SSH_AUTH_SOCK is not set"}},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			s.sshHome(t, tc.knownHosts, tc.key)
			dest := filepath.Join(t.TempDir(), "code")
			_, err := Prepare(t.Context(), Spec{URL: url}, dest, nil)
			if err == nil {
				t.Fatal("Prepare succeeded, want an error")
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if strings.Contains(msg, "\n") {
				t.Errorf("error has several lines: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if _, serr := os.Stat(dest); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("dest %s left behind after failure", dest)
			}
		})
	}
}
