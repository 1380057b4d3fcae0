package provision

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gpufleet/clearml-agent-go/agent/config"
	"github.com/gpufleet/clearml-agent-go/provision/supervise"
	"github.com/gpufleet/clearml-agent-go/unitgen"
)

// supervise is `agent-provision run`: it writes clearml.conf (only that),
// finds the clearml-agent binary and supervises the planned agents in the
// foreground with the watchdog their units would get (package supervise).
func (r *runner) supervise(ctx context.Context) error {
	if r.Inputs.Root != "" {
		return errors.New("run: --root is for image builds; drop it to run the agents here")
	}
	if r.d.SystemdRunning() {
		fmt.Fprintln(r.Stdout, "note: systemd is PID 1 here; `agent-provision` (apply) would manage the agents as units instead")
	}
	r.Inputs.Supervised = true
	p, err := r.plan()
	if err != nil {
		return err
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(r.Stderr, "warning: %s\n", w)
	}
	// Only clearml.conf is written in supervisor mode, owned by whoever runs it.
	conf := p.ConfigFile()
	if conf.Action != FileKeep {
		if err := os.MkdirAll(filepath.Dir(conf.Path), 0o755); err != nil {
			return fmt.Errorf("run: %v", err)
		}
		if err := config.WriteFileAtomic(conf.Path, conf.New, conf.Mode, -1, -1); err != nil {
			return err
		}
		fmt.Fprintf(r.Stdout, "wrote %s\n", conf.Path)
	}
	binary := filepath.Join(p.Inputs.Prefix, "bin/clearml-agent")
	if _, err := os.Stat(binary); err != nil {
		found, lerr := exec.LookPath("clearml-agent")
		if lerr != nil {
			return fmt.Errorf("run: no clearml-agent at %s or in PATH; install it or pass --prefix", binary)
		}
		binary = found
	}
	stateRoot := r.StateDir
	if stateRoot == "" {
		home, _ := os.UserHomeDir()
		stateRoot = filepath.Join(home, ".clearml-agent", "agents")
	}
	// The same watchdog the unit would get (WatchdogSec=).
	var watchdog time.Duration
	switch {
	case r.Inputs.WatchdogSec == 0:
		watchdog = unitgen.DefaultWatchdogSec * time.Second
	case r.Inputs.WatchdogSec > 0:
		watchdog = time.Duration(r.Inputs.WatchdogSec) * time.Second
	}
	var children []supervise.Child
	for _, a := range p.Agents {
		argv, extra := p.Command(a, binary, stateRoot)
		children = append(children, supervise.Child{Name: a.Spec.Instance, Argv: argv, Env: append(os.Environ(), extra...), Watchdog: watchdog})
		fmt.Fprintf(r.Stdout, "%s: %s\n", a.Spec.Instance, strings.Join(argv, " "))
	}
	sigs, stop := r.d.Signals()
	defer stop()
	fmt.Fprintf(r.Stdout, "supervising %d agent(s) without systemd; Ctrl-C drains, twice aborts tasks, three times kills\n", len(children))
	return supervise.Run(ctx, supervise.Options{Children: children, Out: r.Stdout}, sigs)
}
