#!/usr/bin/env bash
# The check that needs a real NVIDIA GPU (CI has none): builds the agent and the gpu-tagged check binary here;
# with --run it runs them (on the GPU machine): the agent with --gpus 0 against the in-process emulator, tasks
# that must see exactly GPU 0, status reports that must carry NVML GPU fields, and `agent-provision gpus`; then
# busy-GPU gating against a real CUDA process holding GPU memory (agent/gpu TestBusyRealCUDA) and the doctor's
# gpus check.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"
if [ "${1:-}" != --run ]; then
  go build -o bin/ ./cmd/clearml-agent ./cmd/agent-provision
  go test -c -tags gpu -o bin/gpucheck.test ./internal/gpucheck
  go test -c -tags gpu -o bin/gpubusy.test ./agent/gpu
  exit 0
fi
bin/agent-provision gpus
CLEARML_AGENT_BIN="$PWD/bin/clearml-agent" bin/gpucheck.test -test.v -test.timeout 4m
bin/gpubusy.test -test.v -test.run 'TestBusyRealCUDA' -test.timeout 2m
# The server rows fail without a clearml.conf; the gpus row is what matters.
bin/clearml-agent doctor --gpus 0 2>&1 | grep -E '^(CHECK|gpus)' || true
