package executor

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// InstallSSH copies the read-only copy of the host's ~/.ssh that docker mode
// mounts at from into home/.ssh inside the container, with the modes ssh
// insists on (the directory 0700, files 0600), so keys and known_hosts work
// while the host's own directory is never writable from the task. Sockets,
// links and other special files are skipped.
func InstallSSH(from, home string) error {
	dst := filepath.Join(home, ".ssh")
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("ssh keys: creating %s: %w", dst, err)
	}
	if err := os.Chmod(dst, 0o700); err != nil {
		return fmt.Errorf("ssh keys: %w", err)
	}
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("ssh keys: reading %s: %w", p, err)
		}
		rel, _ := filepath.Rel(from, p)
		target := filepath.Join(dst, rel)
		switch {
		case rel == ".":
			return nil
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case !d.Type().IsRegular():
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("ssh keys: %w", err)
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("ssh keys: %w", err)
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return fmt.Errorf("ssh keys: copying %s: %w", rel, err)
		}
		return out.Close()
	})
}

// CopySSHDir prepares the host side: a private copy of dir (the agent user's
// ~/.ssh) in a new directory under parent, for docker mode to mount read-only.
// It returns "" when dir does not exist.
func CopySSHDir(dir, parent string) (string, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", nil
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", fmt.Errorf("ssh keys: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "ssh-")
	if err != nil {
		return "", fmt.Errorf("ssh keys: %w", err)
	}
	if err := InstallSSH(dir, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return filepath.Join(tmp, ".ssh"), nil
}
