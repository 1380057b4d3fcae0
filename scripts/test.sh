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
echo "== go test -race (unit)"
go test -race -count=1 -timeout 15m ./...
if [ "$(id -u)" = 0 ]; then
  echo "== go test -race (integration: real systemd in nspawn, ...)"
  go test -race -count=1 -timeout 20m -tags integration -run "^TestIntegration" ./...
else
  echo "== integration tests skipped: they need root"
  [ "${CI:-}" != true ] || { echo "CI must run as root"; exit 1; }
fi
