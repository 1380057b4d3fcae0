// Package repo fetches a task's git repository into a working directory, the
// way the Python clearml-agent does in helper/repo.py (reference section 3.2).
//
// It owns: choosing credentials for a URL (scoped to agent.git_host), the
// https<->ssh URL rewriting (force_git_ssh_protocol, translate_ssh), cloning
// and fetching with go-git, the vcs cache (<cache>/<name>.<md5(url)> guarded by
// a file lock), checking out the revision (version_num, tag, origin/<branch>,
// origin/master, origin/main), submodules (best effort) and script.diff (a git
// diff applied with the real `git apply`, or a literal script handed back to
// the caller).
//
// SSH URLs authenticate with the ssh-agent at SSH_AUTH_SOCK, else the first
// unencrypted ~/.ssh/id_ed25519, id_ecdsa or id_rsa (HOME and SSH_AUTH_SOCK
// are read at call time). Host keys are always checked against known_hosts
// ($SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts);
// an unknown or changed key is an error that says how to fix known_hosts.
//
// It must not: talk to the ClearML server, create the virtual environment,
// write the entry script of a literal-script task (the caller does, from
// Result.Script), or ever print a password (URLs in logs and errors have it
// stripped).
package repo
