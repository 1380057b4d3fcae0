#!/usr/bin/env bash
# Benchmarks of issue 3 §8: builds clearml-agent and clearml-bench into bin/, then runs the harness, which
# serves the emulator on 127.0.0.1, starts the agent command from $AGENT_CMD and prints a figures table.
# Time the Python agent with the same run:
#   AGENT_CMD='clearml-agent --config-file {conf} daemon --queue bench --foreground' scripts/bench.sh
# Extra arguments go to clearml-bench (see bin/clearml-bench -h), e.g. scripts/bench.sh -lines 100000 -keep
# The docker phase needs an engine with the test images (sudo scripts/test-dockerd.sh start && sudo
# scripts/docker-images.sh); without one it adds a SKIPPED row. Only it: scripts/bench.sh -phases docker
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"
export PATH="$PATH:/usr/local/go/bin"
mkdir -p bin
go build -o bin/clearml-agent ./cmd/clearml-agent
# The static agent that docker mode bind-mounts into task containers: the agent finds it beside itself.
CGO_ENABLED=0 go build -o bin/clearml-agent-static ./cmd/clearml-agent
go build -o bin/clearml-bench ./cmd/clearml-bench
exec bin/clearml-bench -agent "$PWD/bin/clearml-agent" "$@"
