// Command agent-provision writes clearml.conf and one systemd unit per GPU
// agent and manages them through systemd (apply, status, remove), prepares
// image roots (--root, first-boot), lists GPUs (gpus) and supervises the
// agents itself where systemd is not PID 1 (run). Its flags are in flags.go;
// everything else is package provision (provision.Run).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gpufleet/clearml-agent-go/provision"
)

func main() {
	os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs agent-provision on this machine and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return mainWith(ctx, args, stdout, stderr, provision.HostDeps())
}

// mainWith parses the flags and runs the command with deps: 0, 1 when it
// failed, 2 for bad flags (or the --help/--version status).
func mainWith(ctx context.Context, args []string, stdout, stderr io.Writer, deps provision.Deps) int {
	c, exit, err := parse(args, stdout, stderr)
	if exit >= 0 { // --help, --version
		return exit
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent-provision: %v; see agent-provision --help\n", err)
		return 2
	}
	err = provision.Run(ctx, c, deps)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "agent-provision: %v\n", err)
	if errors.As(err, new(provision.UsageError)) {
		return 2
	}
	return 1
}
