// Command clearml-emulator serves the in-memory ClearML API of package
// internal/emulator on a loopback address, for demos and manual tests. Its
// flags are here; serve.go checks them and serves.
package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kingpin/v2"
)

func main() {
	app := kingpin.New("clearml-emulator", "In-memory ClearML API server for tests and demos.")
	listen := app.Flag("listen", "Address to listen on.").Default("127.0.0.1:8008").String()
	access := app.Flag("access-key", "Accepted access key (random when unset).").Envar("CLEARML_EMULATOR_ACCESS_KEY").String()
	secret := app.Flag("secret-key", "Accepted secret key (random when unset).").Envar("CLEARML_EMULATOR_SECRET_KEY").String()
	snapshot := app.Flag("snapshot", "JSON file to load state from and save it to.").String()
	queues := app.Flag("queue", "Queue to create at start (repeatable).").Strings()
	remote := app.Flag("allow-remote", "Allow a non-loopback --listen address.").Bool()
	verbose := app.Flag("verbose", "Log failed calls.").Bool()
	kingpin.MustParse(app.Parse(os.Args[1:]))

	if err := run(*listen, *access, *secret, *snapshot, *queues, *remote, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "clearml-emulator:", err)
		os.Exit(1)
	}
}
