package systemd

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/gpufleet/clearml-agent-go/internal/oneline"
)

// EnableOffline enables target and units inside an image root with
// `systemctl --root=ROOT enable TARGET UNIT...`, which needs no running
// systemd: it reads the [Install] sections in the image and creates the
// .wants/ links there. It is idempotent. systemctl must be installed on the
// build host; without it the error says so (docs/provision.md: why this is
// not re-implemented).
func EnableOffline(ctx context.Context, root, target string, units []string) error {
	if root == "" {
		return errors.New("enable offline: empty image root; pass the directory that holds etc/systemd/system")
	}
	systemctl, err := exec.LookPath("systemctl")
	if err != nil {
		return fmt.Errorf("enable units under %s: systemctl not found (%v); image builds need systemd's systemctl on the build host (e.g. apt-get install systemd; it does not have to be running)", root, err)
	}
	args := []string{"--root=" + root, "enable"}
	if target != "" {
		args = append(args, target)
	}
	args = append(args, units...)
	out, err := exec.CommandContext(ctx, systemctl, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("enable units under %s: systemctl %s: %v: %s", root, strings.Join(args, " "), err, oneline.Squash(lastLines(string(out), 3), 400))
	}
	return nil
}

// lastLines keeps systemctl's last n lines: the error comes after the
// "Created symlink" lines.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
