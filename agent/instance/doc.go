// Package instance keeps two agents on one host from being the same worker,
// and manages the running agents of a state directory.
//
// It owns: the per-worker-id singleton (a pid file plus a flock held for the
// life of the process, in a state directory, never /tmp), slot numbers for
// agents that share a host, listing and stopping running agents (--stop),
// re-executing the agent in the background (--detached), and the default
// state directory. The worker id itself comes from agent/workerid.
//
// It must not: talk to the ClearML server, parse command-line flags or
// clearml.conf (callers pass the values), or kill anything it did not find
// through a live lock in the state directory or a process group record
// whose leader (or, with the leader gone, every member) matches it.
//
// Files in the state directory, per worker id (escaped for a file name):
//
//	<id>.lock   flock held by the running agent; the kernel drops it on exit or crash
//	<id>.pid    JSON {pid, worker_id, slot, started, log_file}, written atomically
//	<id>.log    stdout/stderr of an agent started with --detached
//	<id>.groups JSON {worker_id, groups: [{task_id, pgid, start, role, ended}]}:
//	            the process groups of the running tasks, written atomically,
//	            removed when empty (Groups, EndLeftovers, EndOrphans)
//	.lock       short-lived lock serialising start-up, listing and clean-up
package instance
