package repo

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/gofrs/flock"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gpufleet/clearml-agent-go/internal/fscopy"
	"github.com/gpufleet/clearml-agent-go/internal/secret"
)

// Creds are git credentials (agent.git_user / agent.git_pass). When Host is
// set (agent.git_host) they are only sent to that host.
type Creds struct {
	User, Pass string
	Host       string
}

// Spec says which code to fetch: the task's script.repository, branch, tag,
// version_num and diff, plus the agent's git settings.
type Spec struct {
	URL    string
	Branch string
	Tag    string
	Commit string // script.version_num
	Diff   string // script.diff: a git diff, or a literal script

	Creds Creds

	ForceSSH     bool   // agent.force_git_ssh_protocol
	SSHUser      string // agent.force_git_ssh_user, default "git"
	SSHPort      int    // agent.force_git_ssh_port, 0 = default
	TranslateSSH bool   // agent.translate_ssh

	CacheDir string // agent.vcs_cache.path; "" disables the cache

	// Timeout bounds each network operation (the clone, the fetch into the
	// vcs cache, each submodule update): agent.git_timeout_sec. A server
	// that stops answering fails the task with a TimeoutError instead of
	// hanging it. 0 = no limit.
	Timeout time.Duration
}

// TimeoutError is a git network operation that did not finish within
// Spec.Timeout.
type TimeoutError struct {
	Op    string // "cloning", "fetching"
	URL   string // password stripped
	Limit time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s %s did not finish within %s (agent.git_timeout_sec); check that the git server answers, or raise agent.git_timeout_sec for a repository that large", e.Op, e.URL, e.Limit)
}

// limited runs op under spec.Timeout; a deadline it ran into (not the
// caller's) comes back as a *TimeoutError.
func limited(ctx context.Context, limit time.Duration, what, shown string, op func(context.Context) error) error {
	if limit <= 0 {
		return op(ctx)
	}
	octx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := op(octx)
	if err != nil && ctx.Err() == nil && errors.Is(octx.Err(), context.DeadlineExceeded) {
		return &TimeoutError{Op: what, URL: shown, Limit: limit}
	}
	return err
}

// Result describes the prepared working copy.
type Result struct {
	Dir    string // the repository root (dest), "" when the task has no repository
	Commit string // HEAD sha after checkout
	Branch string // the local branch checked out, "" when HEAD is detached
	URL    string // the URL cloned, password stripped
	// Script is script.diff when it is not a git diff: a literal script that
	// the caller writes as the entry file.
	Script string
}

// lockWait bounds the wait for the vcs cache lock (Python: 300 s).
var lockWait = 5 * time.Minute

// IsGitDiff reports whether script.diff holds a git diff (as opposed to a
// literal script).
func IsGitDiff(diff string) bool {
	d := strings.ToLower(diff)
	return strings.HasPrefix(d, "diff ") || strings.HasPrefix(d, "submodule ")
}

// Prepare fetches spec.URL into dest (replacing whatever is there), checks
// out the requested revision, updates submodules and applies script.diff.
// log receives human progress lines for the task log; it may be nil.
func Prepare(ctx context.Context, spec Spec, dest string, log func(string)) (Result, error) {
	if log == nil {
		log = func(string) {}
	}
	if strings.TrimSpace(spec.URL) == "" {
		if IsGitDiff(spec.Diff) {
			return Result{}, errors.New("script.diff holds a git diff but script.repository is empty; set the repository or clear the diff")
		}
		return Result{Script: spec.Diff}, nil
	}
	if dest == "" {
		return Result{}, fmt.Errorf("repository %s: empty destination directory", StripPassword(spec.URL))
	}
	ep, creds := rewrite(spec)
	cloneURL := ep.String()
	shown := StripPassword(cloneURL)
	if shown != StripPassword(spec.URL) {
		log(fmt.Sprintf("repository URL %s rewritten to %s", StripPassword(spec.URL), shown))
	}
	var auth transport.AuthMethod
	authDesc := ""
	if ep.isSSH() {
		if auth, authDesc = sshAuth(ep); auth == nil {
			return Result{}, fmt.Errorf("repository %s: no SSH credentials: %s; add a key without passphrase there, start ssh-agent and ssh-add the key, or use an https URL with agent.git_user/git_pass", shown, authDesc)
		}
	} else {
		auth = authFor(ep, creds)
	}
	failed := func(err error) error { return cloneError(err, ep, shown, authDesc) }
	hide := []string{creds.Pass, spec.Creds.Pass}
	if u, _ := parseEndpoint(spec.URL); u.isHTTP() {
		hide = append(hide, u.pass, u.user) // a user name in an http URL is often a token
	}
	redact := func(err error) error { return redactErr(err, hide...) }

	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return Result{}, fmt.Errorf("repository %s: %w", shown, err)
	}
	work, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".tmp-")
	if err != nil {
		return Result{}, fmt.Errorf("repository %s: %w", shown, err)
	}
	defer os.RemoveAll(work)

	var r *git.Repository
	if spec.CacheDir != "" {
		r, err = fromCache(ctx, spec, ep, cloneURL, shown, auth, work, log, failed)
	} else {
		log(fmt.Sprintf("cloning %s", shown))
		r, err = clone(ctx, spec.Timeout, cloneURL, shown, auth, work)
		if err != nil {
			err = failed(err)
		}
	}
	if err != nil {
		return Result{}, redact(err)
	}

	rev, err := checkout(r, spec, shown)
	if err != nil {
		return Result{}, err
	}
	log(fmt.Sprintf("checked out %s", rev))
	updateSubmodules(ctx, spec.Timeout, r, ep, creds, log)

	head, err := r.Head()
	if err != nil {
		return Result{}, fmt.Errorf("repository %s: reading HEAD after checkout: %w", shown, err)
	}
	res := Result{Dir: dest, Commit: head.Hash().String(), URL: shown}
	if head.Name().IsBranch() {
		res.Branch = head.Name().Short()
	}

	if strings.TrimSpace(spec.Diff) != "" {
		if IsGitDiff(spec.Diff) {
			if err := applyDiff(ctx, work, spec.Diff); err != nil {
				return Result{}, err
			}
			log("applied uncommitted changes (script.diff)")
		} else {
			res.Script = spec.Diff
		}
	}

	if err := os.RemoveAll(dest); err != nil {
		return Result{}, fmt.Errorf("repository %s: removing old %s: %w", shown, dest, err)
	}
	if err := os.Rename(work, dest); err != nil {
		return Result{}, fmt.Errorf("repository %s: %w", shown, err)
	}
	return res, nil
}

// authFor picks the transport credentials for the endpoint.
func authFor(ep endpoint, creds Creds) transport.AuthMethod {
	switch {
	case ep.isHTTP() && (creds.User != "" || creds.Pass != ""):
		return &githttp.BasicAuth{Username: creds.User, Password: creds.Pass}
	case ep.isSSH():
		a, _ := sshAuth(ep)
		if a != nil {
			return a
		}
	}
	return nil
}

// sshKeyNames are the key files tried in ~/.ssh, in order.
var sshKeyNames = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// sshAuth picks the ssh-agent at SSH_AUTH_SOCK, else the first readable
// unencrypted key in ~/.ssh. It reads HOME and SSH_AUTH_SOCK at call time.
// The string describes the choice for error messages, or, when no method was
// found, what was tried.
func sshAuth(ep endpoint) (transport.AuthMethod, string) {
	user := sshUser(ep)
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock != "" {
		if a, err := gitssh.NewSSHAgentAuth(user); err == nil {
			return a, "the keys of the ssh-agent at SSH_AUTH_SOCK=" + sock
		}
	}
	dir := "~/.ssh"
	if home, err := os.UserHomeDir(); err == nil {
		dir = filepath.Join(home, ".ssh")
		for _, n := range sshKeyNames {
			f := filepath.Join(dir, n)
			if a, err := gitssh.NewPublicKeysFromFile(user, f, ""); err == nil {
				return a, "key " + f
			}
		}
	}
	tried := fmt.Sprintf("no unencrypted key %s/{%s}", dir, strings.Join(sshKeyNames, ","))
	if sock == "" {
		return nil, tried + " and SSH_AUTH_SOCK is not set"
	}
	return nil, tried + " and no ssh-agent answers at SSH_AUTH_SOCK=" + sock
}

// sshUser is the login name for an ssh endpoint; "git" when the URL has none.
func sshUser(ep endpoint) string {
	if ep.user == "" {
		return "git"
	}
	return ep.user
}

// sshCloneError turns the ssh failures a user can fix into one-line errors
// that name the fix. It returns nil for other errors.
func sshCloneError(err error, ep endpoint, shown, authDesc string) error {
	if !ep.isSSH() {
		return nil
	}
	hostPort, keyscan, known := ep.host, "ssh-keyscan "+ep.host, ep.host
	if ep.port != "" && ep.port != "22" {
		hostPort = ep.host + ":" + ep.port
		keyscan = "ssh-keyscan -p " + ep.port + " " + ep.host
		known = "[" + ep.host + "]:" + ep.port
	}
	var keyErr *knownhosts.KeyError
	switch {
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		return fmt.Errorf("repository %s: the host key of %s is not in known_hosts (~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts or $SSH_KNOWN_HOSTS); check its fingerprint and add it, e.g. %s >> ~/.ssh/known_hosts", shown, hostPort, keyscan)
	case errors.As(err, &keyErr):
		w := keyErr.Want[0]
		return fmt.Errorf("repository %s: the host key of %s changed: it does not match %s:%d (a re-installed server, or someone intercepting the connection); if the change is expected run: ssh-keygen -R %q -f %s, then add the new key with %s", shown, hostPort, w.Filename, w.Line, known, w.Filename, keyscan)
	case strings.Contains(err.Error(), "unable to find any valid known_hosts file"):
		return fmt.Errorf("repository %s: no known_hosts file (~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts or $SSH_KNOWN_HOSTS) to check the host key of %s; check its fingerprint and add it, e.g. %s >> ~/.ssh/known_hosts", shown, hostPort, keyscan)
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("repository %s: the SSH server %s refused %s for user %q (%v); add the matching public key to the git account (or as a deploy key), or use an https URL with agent.git_user/git_pass", shown, hostPort, authDesc, sshUser(ep), err)
	}
	return nil
}

func redactErr(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := secret.MaskURLs(err.Error())
	changed := msg != err.Error()
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "***")
			changed = true
		}
	}
	if !changed {
		return err
	}
	return errors.New(msg)
}

func fetchSpecs() []config.RefSpec {
	return []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*"}
}

func clone(ctx context.Context, limit time.Duration, url, shown string, auth transport.AuthMethod, dir string) (*git.Repository, error) {
	var r *git.Repository
	err := limited(ctx, limit, "cloning", shown, func(ctx context.Context) error {
		var err error
		r, err = git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{
			URL:        url,
			Auth:       auth,
			Tags:       git.AllTags,
			NoCheckout: true,
		})
		return err
	})
	return r, err
}

func cloneError(err error, ep endpoint, shown, authDesc string) error {
	if e := sshCloneError(err, ep, shown, authDesc); e != nil {
		return e
	}
	var te *TimeoutError
	switch {
	case errors.As(err, &te):
		return err
	case errors.Is(err, transport.ErrRepositoryNotFound),
		errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed):
		return fmt.Errorf("repository %s not found or access denied (%v); check agent.git_user/git_pass (CLEARML_AGENT_GIT_USER/CLEARML_AGENT_GIT_PASS), agent.git_host, and that the code was pushed", shown, err)
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return fmt.Errorf("repository %s is empty; push the code before running the task", shown)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("cloning %s: %w", shown, err)
	}
	return fmt.Errorf("failed cloning repository %s: %v; check the URL and network access", shown, err)
}

// fromCache refreshes the vcs cache entry for the URL and copies it into work.
func fromCache(ctx context.Context, spec Spec, ep endpoint, cloneURL, shown string, auth transport.AuthMethod, work string, log func(string), failed func(error) error) (*git.Repository, error) {
	cacheDir := spec.CacheDir
	sum := md5.Sum([]byte(StripPassword(cloneURL)))
	entry := filepath.Join(cacheDir, repoName(ep)+"."+hex.EncodeToString(sum[:]))
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("vcs cache %s: %w; fix agent.vcs_cache.path or its permissions", cacheDir, err)
	}
	lock := flock.New(entry + ".lock")
	lctx, cancel := context.WithTimeout(ctx, lockWait)
	locked, err := lock.TryLockContext(lctx, 50*time.Millisecond)
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil || !locked {
		log(fmt.Sprintf("vcs cache %s is busy after %s; cloning %s without the cache", entry, lockWait, shown))
		r, err := clone(ctx, spec.Timeout, cloneURL, shown, auth, work)
		if err != nil {
			return nil, failed(err)
		}
		return r, nil
	}
	defer lock.Unlock()

	cached, err := git.PlainOpen(entry)
	if err == nil {
		log(fmt.Sprintf("using vcs cache %s; fetching %s", entry, shown))
		err = limited(ctx, spec.Timeout, "fetching", shown, func(ctx context.Context) error {
			return cached.FetchContext(ctx, &git.FetchOptions{
				RemoteName: "origin", Auth: auth, Tags: git.AllTags, Force: true, RefSpecs: fetchSpecs(),
			})
		})
		if errors.Is(err, git.NoErrAlreadyUpToDate) {
			err = nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var te *TimeoutError
			if errors.As(err, &te) {
				return nil, err // a server that hangs would hang the clone too
			}
			if errors.Is(err, transport.ErrRepositoryNotFound) || errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) {
				return nil, failed(err)
			}
			log(fmt.Sprintf("fetching into vcs cache failed (%v); cloning again", err))
		}
	}
	if err != nil {
		log(fmt.Sprintf("cloning %s into vcs cache", shown))
		tmp, terr := os.MkdirTemp(cacheDir, ".clone-")
		if terr != nil {
			return nil, fmt.Errorf("vcs cache %s: %w", cacheDir, terr)
		}
		if _, cerr := clone(ctx, spec.Timeout, cloneURL, shown, auth, tmp); cerr != nil {
			os.RemoveAll(tmp)
			return nil, failed(cerr)
		}
		if err := os.RemoveAll(entry); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("vcs cache: removing stale %s: %w", entry, err)
		}
		if err := os.Rename(tmp, entry); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("vcs cache: %w", err)
		}
	}
	if err := fscopy.Tree(entry, work); err != nil {
		return nil, fmt.Errorf("copying vcs cache %s: %w", entry, err)
	}
	now := time.Now()
	os.Chtimes(entry, now, now) // last use, for agent/diskguard's LRU eviction; failure only affects the order
	return git.PlainOpen(work)
}

// checkout resolves the revision in the Python agent's order and checks it
// out with force. It returns a description of what was checked out.
func checkout(r *git.Repository, spec Spec, shown string) (string, error) {
	wt, err := r.Worktree()
	if err != nil {
		return "", fmt.Errorf("repository %s: %w", shown, err)
	}
	detached := func(h plumbing.Hash) error {
		return wt.Checkout(&git.CheckoutOptions{Hash: h, Force: true})
	}
	onBranch := func(name string, h plumbing.Hash) error {
		ref := plumbing.NewBranchReferenceName(name)
		if err := r.Storer.SetReference(plumbing.NewHashReference(ref, h)); err != nil {
			return err
		}
		return wt.Checkout(&git.CheckoutOptions{Branch: ref, Force: true})
	}
	fail := func(what string, err error) (string, error) {
		return "", fmt.Errorf("repository %s: checking out %s: %w", shown, what, err)
	}

	if c := strings.TrimSpace(spec.Commit); c != "" {
		h, err := r.ResolveRevision(plumbing.Revision(c))
		if err != nil {
			return "", fmt.Errorf("commit %s not found in %s; push it to the remote, or clear version_num to run the branch head", c, shown)
		}
		if err := detached(*h); err != nil {
			return fail("commit "+c, err)
		}
		return "commit " + h.String(), nil
	}
	if t := strings.TrimSpace(spec.Tag); t != "" {
		h, err := r.ResolveRevision(plumbing.Revision("refs/tags/" + t))
		if err != nil {
			return "", fmt.Errorf("tag %s not found in %s; push it (git push --tags) or clear script.tag", t, shown)
		}
		if err := detached(*h); err != nil {
			return fail("tag "+t, err)
		}
		return fmt.Sprintf("tag %s (%s)", t, h), nil
	}
	branches := []string{"master", "main"}
	if b := strings.TrimPrefix(strings.TrimSpace(spec.Branch), "origin/"); b != "" {
		branches = []string{b}
	} else if head, err := r.Reference(plumbing.HEAD, false); err == nil && head.Type() == plumbing.SymbolicReference {
		branches = append(branches, head.Target().Short())
	}
	for _, b := range branches {
		ref, err := r.Reference(plumbing.NewRemoteReferenceName("origin", b), true)
		if err != nil {
			continue
		}
		if err := onBranch(b, ref.Hash()); err != nil {
			return fail("branch "+b, err)
		}
		return fmt.Sprintf("branch %s (%s)", b, ref.Hash()), nil
	}
	if len(branches) == 1 {
		return "", fmt.Errorf("branch %s not found in %s; push it or fix script.branch", branches[0], shown)
	}
	return "", fmt.Errorf("repository %s has no master or main branch; set script.branch, script.tag or version_num", shown)
}

// updateSubmodules is best effort, like `git submodule update --recursive`
// with errors ignored in the Python agent. Credentials only go to submodules
// on the host they are scoped to (relative URLs share the parent's host).
func updateSubmodules(ctx context.Context, limit time.Duration, r *git.Repository, parent endpoint, creds Creds, log func(string)) {
	if creds.Host == "" {
		creds.Host = parent.host // unscoped credentials: the parent's host only
	}
	wt, err := r.Worktree()
	if err != nil {
		return
	}
	subs, err := wt.Submodules()
	if err != nil || len(subs) == 0 {
		return
	}
	done := 0
	for _, sub := range subs {
		name := sub.Config().Name
		raw := sub.Config().URL
		var auth transport.AuthMethod
		if strings.HasPrefix(raw, "./") || strings.HasPrefix(raw, "../") {
			auth = authFor(parent, creds)
		} else if sep, ok := parseEndpoint(raw); ok {
			if !sep.isHTTP() || hostMatches(sep, creds.Host) {
				auth = authFor(sep, creds)
			}
		}
		err := limited(ctx, limit, "updating submodule", StripPassword(raw), func(ctx context.Context) error {
			return sub.UpdateContext(ctx, &git.SubmoduleUpdateOptions{
				Init:              true,
				Auth:              auth,
				RecurseSubmodules: git.DefaultSubmoduleRecursionDepth,
			})
		})
		if err != nil {
			log(fmt.Sprintf("warning: updating submodule %s (%s) failed (ignored): %v", name, StripPassword(raw), redactErr(err, creds.Pass)))
			continue
		}
		done++
	}
	log(fmt.Sprintf("updated %d of %d submodule(s)", done, len(subs)))
}
