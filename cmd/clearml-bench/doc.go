// Command clearml-bench runs the benchmark harness of package internal/bench
// against an agent command line and prints the figures table. scripts/bench.sh
// builds it and clearml-agent and runs it.
//
// The agent command comes from $AGENT_CMD (default internal/bench's
// DefaultAgentCmd): {agent} is replaced by -agent, {conf} by the clearml.conf
// the harness writes, e.g.
//
//	AGENT_CMD='clearml-agent --config-file {conf} daemon --queue bench --foreground' clearml-bench
package main
