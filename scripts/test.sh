#!/usr/bin/env bash
# The whole test suite: formatting, vet, unit tests with -race, then the integration tests that need root,
# real systemd (booted with systemd-nspawn) and other real components. Installs its own prerequisites.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"
export PATH="$PATH:/usr/local/go/bin"

scripts/install-deps.sh

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then echo "gofmt would change: $bad"; exit 1; fi
echo "== go vet"
go vet ./...
go vet -tags integration ./...
go vet -tags gpu ./...  # the GPU tests (internal/gpucheck) run only on GPU hosts; CI at least compiles them
if [ "$(id -u)" = 0 ]; then
  # A private dockerd (scripts/test-dockerd.sh) and the offline test images (scripts/docker-images.sh) for the
  # docker-mode tests (internal/dockertest). Every run holds a shared lock on $docker_users; the run that ends
  # last (its exclusive lock succeeds) stops the daemon, so concurrent runs do not pull it from under each other.
  echo "== docker engine for the tests"
  docker_users=/run/clearml-test-dockerd.users
  exec 8>>"$docker_users"
  flock -s 8
  stop_docker() {
    if flock -n -x 8; then scripts/test-dockerd.sh stop 8>&-; else echo "== test dockerd left running: another test run uses it"; fi
  }
  trap stop_docker EXIT
  scripts/test-dockerd.sh start 8>&-
  DOCKER_HOST=$(scripts/test-dockerd.sh host)
  export DOCKER_HOST
  scripts/docker-images.sh 8>&-
fi
echo "== go test -race (unit)"
go test -race -count=1 -timeout 15m ./...
echo "== go test -fuzz (each parser of user input, briefly: no panics, one-line errors)"
# A count, not a duration: with a duration Go 1.26's fuzz coordinator can report a spurious "context deadline
# exceeded" failure, without any failing input, when the time runs out (go.dev/issue/75804, fixed in 1.27).
for target in ./agent/config:FuzzParse ./agent/gpu:FuzzParseAssignment ./agent/docker:FuzzParseArgs \
              ./agent/docker:FuzzEnvFile ./agent/process:FuzzSplitter ./agent/gpu:FuzzParseBusyPolicy \
              ./provision:FuzzParseCredentials ./cloudinit:FuzzQuote; do
  go test -run '^$' -fuzz "^${target#*:}\$" -fuzztime "${FUZZTIME:-30000x}" "${target%%:*}"
done
if [ "$(id -u)" = 0 ]; then
  echo "== go test -race (integration: real systemd in nspawn, ...)"
  go test -race -count=1 -timeout 20m -tags integration -run "^TestIntegration" ./...
else
  echo "== integration tests skipped: they need root"
  [ "${CI:-}" != true ] || { echo "CI must run as root"; exit 1; }
fi
