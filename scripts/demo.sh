#!/usr/bin/env bash
# The README's main job: build the binaries, then run a local demo on the embedded ClearML API emulator:
# init + config, one agent daemon, a sample task from a local git repository, its log and final status.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"
export PATH="$PATH:/usr/local/go/bin"
scripts/install-deps.sh
mkdir -p bin
go build -o bin/ ./cmd/clearml-agent ./cmd/agent-provision ./cmd/clearml-emulator ./cmd/clearml-demo
exec bin/clearml-demo --agent bin/clearml-agent --workdir out/demo "$@"
