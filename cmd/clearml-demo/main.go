// Command clearml-demo runs the README's local demo: the API emulator, one
// clearml-agent daemon and a sample task (see internal/demo).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"

	"github.com/gpufleet/clearml-agent-go/internal/demo"
)

func main() {
	app := kingpin.New("clearml-demo", "Local demo: emulator + clearml-agent + a sample task.")
	agent := app.Flag("agent", "Path of the clearml-agent binary.").Default("bin/clearml-agent").String()
	work := app.Flag("workdir", "Scratch directory for the demo.").Default("out/demo").String()
	kingpin.MustParse(app.Parse(os.Args[1:]))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo.Run(ctx, demo.Options{AgentBin: *agent, WorkDir: *work, Out: os.Stdout}); err != nil {
		fmt.Fprintln(os.Stderr, "clearml-demo: error:", err)
		os.Exit(1)
	}
}
