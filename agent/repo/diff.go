package repo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// applyDiff applies script.diff in dir with the real `git apply`, as the
// Python agent does: files named in "--- a/<path>" are created first when
// missing, then the diff plus a newline is piped to
// `git apply --unidiff-zero --whitespace=nowarn`.
func applyDiff(ctx context.Context, dir, diff string) error {
	for _, line := range strings.Split(diff, "\n") {
		p, ok := strings.CutPrefix(line, "--- a/")
		if !ok {
			continue
		}
		p = strings.TrimRight(p, "\r")
		if i := strings.IndexByte(p, '\t'); i >= 0 {
			p = p[:i]
		}
		if !filepath.IsLocal(p) {
			return fmt.Errorf("failed applying git diff: path %q leaves the repository", p)
		}
		full := filepath.Join(dir, p)
		if _, err := os.Lstat(full); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("failed applying git diff: %v", err)
		}
		f, err := os.OpenFile(full, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("failed applying git diff: %v", err)
		}
		f.Close()
	}
	cmd := exec.CommandContext(ctx, "git", "apply", "--unidiff-zero", "--whitespace=nowarn", "-")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(diff + "\n")
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := err.Error()
		for _, l := range strings.Split(stderr.String(), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				msg = l
				break
			}
		}
		return fmt.Errorf("failed applying git diff: %s", msg)
	}
	return nil
}
