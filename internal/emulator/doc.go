// Package emulator is an in-memory ClearML API server: the one test double of
// this project. Tests and the demo point the real client (agent/api) at it
// over HTTP and then assert on server state through the helper methods
// (Task, TaskLog, Workers, Requests).
//
// It owns: the wire envelope, auth.login and JWT checks, the task status
// machine (reference section 9), queues, workers with TTL, log events, a
// minimal projects service, request counters, outage simulation and an
// optional JSON snapshot on disk.
//
// Its answers follow clearml-server's API schema as written down in
// internal/apischema: the emulator reports the schema revision that served a
// call as actual_version, answers 404 below an endpoint's first revision,
// and takes the task fields tasks.create and tasks.edit define there.
//
// It must not: import other agent/* packages except agent/api's wire types,
// talk to the network beyond serving its own handler, or grow features the
// real open-source clearml-server does not have (runtime properties, cluster
// reports and vaults are left out on purpose, so clients see the same
// "endpoint not found" answer they get from the real open-source server).
//
// Error codes and messages mirror clearml-server's apiserver/apierrors
// (see errors.go for the table and the choices made).
package emulator
