// Package doctor checks that this machine can run ClearML tasks before the
// agent takes any: `clearml-agent doctor` prints the results as a table, and
// the daemon runs the local ones as its preflight (it stays not READY, with
// the first failure in STATUS=, until they pass).
//
// A Check is a name and a function returning a Result (ok, warn, fail or
// skip, a one-line detail and, for warn and fail, the fix). Run runs checks
// one by one, each under its own timeout; Report renders the table, the JSON
// form, and Err, the one line of the first failure. The constructors
// (ServerChecks, PythonChecks, DockerChecks, GPUCheck, DiskCheck,
// GitHostCheck) take an options struct whose function fields replace the
// real dependency (the API client, the engine, NVML, statfs, the dialer), so
// every failure can be produced in a test; nil means the real thing.
//
// It owns the checks and their wording. It must not read clearml.conf or the
// command line (agent/cli maps them onto the options), start tasks, or change
// anything on the machine: the only thing it writes is a trial venv in a
// temporary directory, removed at once.
package doctor
