// Command clearml-agent runs ClearML tasks from queues; see agent/cli.
package main

import (
	"os"

	"github.com/gpufleet/clearml-agent-go/agent/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Environ()))
}
