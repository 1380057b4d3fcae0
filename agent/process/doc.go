// Package process runs one command as a supervised process group and turns
// its output into an ordered stream of lines.
//
// It owns: starting the child in its own process group (Setpgid), reading
// stdout and stderr line by line (carriage-return progress bars, backspace
// stripping, invalid UTF-8 replacement, long-line chunking, the partial last
// line at EOF), signalling the whole group (SIGTERM, grace, SIGKILL; ESRCH
// means "already gone"), killing stragglers left in the group once the leader
// exits, optionally delivering a long-incomplete line (PartialLineAfter), and
// mapping the exit to a typed ExitResult.
//
// It must not: talk to the ClearML server, decide what an exit code means for
// the task status (agent/task does that), or buffer output without bound. The
// line sink is called from a single goroutine in order; a slow sink slows the
// child down (back-pressure) instead of growing memory.
//
// Linux only: it uses process groups and waitid(2).
package process
