package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/alecthomas/kingpin/v2"

	"github.com/gpufleet/clearml-agent-go/agent/identity"
	"github.com/gpufleet/clearml-agent-go/agent/task"
)

func init() { commands = append(commands, registerExecute) }

func registerExecute(app *kingpin.Application, g *Globals) {
	cmd := app.Command("execute", "Run one task now, without a queue; its output is printed and sent to the server. "+
		"The exit status is the task's. SIGTERM or Ctrl-C aborts the task (SIGTERM to it, the grace period, SIGKILL) and marks it stopped.")
	id := cmd.Flag("id", "The task id.").Required().String()
	clone := cmd.Flag("clone", "Clone the task and run the clone.").Bool()
	gpus := cmd.Flag("gpus", "GPUs for the task (CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES).").String()
	cpuOnly := cmd.Flag("cpu-only", "Run the task without GPUs.").Envar("CLEARML_CPU_ONLY").Bool()
	logLevel := cmd.Flag("log-level", "Log level of the agent and of the task (CLEARML_LOG_LEVEL).").Default("INFO").String()
	g.Handle(cmd, func(ctx context.Context) error {
		cfg, err := g.LoadConfig()
		if err != nil {
			return err
		}
		log := newLogger(g, *logLevel)
		a := cfg.Agent()
		wid := identity.WorkerID(identity.IDOptions{WorkerID: a.WorkerID, WorkerName: a.WorkerName, Getenv: g.Getenv, Mode: identity.Execute})
		client, err := newClient(g, cfg, nil, log)
		if err != nil {
			return err
		}
		if _, err := client.Login(ctx); err != nil {
			return err
		}
		stateDir := filepath.Join(os.TempDir(), fmt.Sprintf("clearml-agent-execute-%d", os.Getpid()))
		defer os.RemoveAll(stateDir)
		s := taskSettings(g, cfg, wid, stateDir, gpuEnv(*gpus, *cpuOnly || a.CPUOnly), g.Stdout, log)
		s.LogLevel = *logLevel
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		out, err := task.NewRunner(client, s).Run(ctx, *id, task.Options{Clone: *clone})
		if err != nil {
			return err
		}
		fmt.Fprintf(g.Stderr, "task %s: %s (%s)\n", out.TaskID, orDash(out.Status), out.Reason)
		switch {
		case out.Exit.Code > 0:
			return &ExitError{Code: out.Exit.Code}
		case out.Status == "failed" || out.Exit.Code < 0:
			return &ExitError{Code: 1}
		}
		return nil
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
