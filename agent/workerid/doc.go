// Package workerid decides which worker this agent is on the ClearML server:
// agent.worker_id / CLEARML_WORKER_ID as given, else the worker name (or the
// host name) with a suffix from the GPU assignment or the host slot, as the
// Python agent names its workers.
//
// It must not: touch the file system, talk to the server, or parse flags or
// clearml.conf (callers pass the values in Options).
package workerid
