// Package demo is the README's main job: it starts the ClearML API emulator
// on loopback, writes clearml.conf with `clearml-agent init --non-interactive`,
// prints `clearml-agent config`, starts one `clearml-agent daemon`, enqueues a
// sample task from a local git repository that prints its progress, follows
// the task's log as the server receives it, and prints the final status.
//
// It drives the real binaries as a user would; it must not reach into their
// packages (only the emulator runs in-process).
package demo
