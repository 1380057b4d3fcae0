// Package cli is the clearml-agent command line: the kingpin application, the
// global flags (--config-file, --debug, --version) and one file per subcommand
// (init_cmd.go, config_cmd.go, daemon.go, execute.go).
//
// The subcommands are listed in app.go (commands); each file has a
// registration function that declares its flags and registers its action with
// Globals.Handle. Shared state is only Globals. The daemon's signal contract
// is agent/worker's Lifecycle; this package only connects os/signal to it.
//
// It must not: hold business logic (the worker loop, task execution, config
// parsing live in their packages), call os.Exit (Main returns the status), read
// os.Environ directly (use Globals.Env/Getenv so tests stay hermetic).
package cli
