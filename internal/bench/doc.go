// Package bench is the benchmark harness of clearml-agent (issue 3 §8): it
// serves internal/emulator over HTTP on 127.0.0.1, starts an agent command line
// taken from a template (so the same run can time the Python agent, which
// accepts the same flags), and prints a table of figures: start to
// workers.register and READY=1, idle RSS and idle request rate, get_next_task
// to the task's first log line with a warm cache, 1,000,000-line log relay
// (lines/s, order, peak RSS) and abort latency; and, against a Docker engine
// with the test images, the same first-line time in docker mode (python and
// bash tasks) beside venv mode and the engine's bare container floor.
//
// It owns: the request-recording middleware around the emulator handler, a
// NOTIFY_SOCKET listener, /proc sampling of the agent's memory, and the
// figures table.
//
// It must not: assert timings (it reports them), change emulator or agent
// behaviour, or reach anything but 127.0.0.1, its own temporary directory
// and the Docker engine of the docker phase (there it only creates the
// containers it labels, and removes them).
package bench
