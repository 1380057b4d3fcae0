#!/usr/bin/env bash
# Installs the Debian packages and Go modules the build, the demo and the tests need. Idempotent and quiet when
# everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(git python3 python3-venv python3-pip python3-pip-whl python3-wheel python3-poetry systemd-container debootstrap busybox-static openssh-server openssh-client cloud-init packer dash openssl e2fsprogs
  docker.io # docker.io: dockerd for scripts/test-dockerd.sh; the tests never use the system's Docker socket
  podman runc) # podman: its Docker API socket for internal/podmantest (the test starts the service itself, as root)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2; exit 1; fi
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "Go is not installed: install Go 1.26 (https://go.dev/dl) and put it on PATH" >&2; exit 1; }
go mod download
