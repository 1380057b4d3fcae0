// Package cli is the clearml-agent command line: the kingpin application, the
// global flags (--config-file, --debug, --version) and one file per subcommand
// (config_cmd.go, init_cmd.go; daemon, execute, list are added the same way).
//
// A subcommand file appends a registration function to `commands` from init()
// and registers its action with Globals.Handle. Shared state is only Globals.
//
// It must not: hold business logic (the worker loop, task execution, config
// parsing live in their packages), call os.Exit (Main returns the status), read
// os.Environ directly (use Globals.Env/Getenv so tests stay hermetic).
package cli
