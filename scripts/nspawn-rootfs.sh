#!/usr/bin/env bash
# nspawn-rootfs.sh: build (or reuse) a cached Debian bookworm minbase rootfs that boots
# systemd as PID 1 under systemd-nspawn. Used by integration tests (internal/nspawn).
#
# Output: the rootfs path on stdout (everything else goes to stderr).
# Cache:  ${CLEARML_TEST_CACHE:-/var/cache/clearml-agent-go-test}/rootfs-bookworm
#         A stamp file (.clearml-rootfs-ok) inside marks a complete build; a build
#         goes to a temporary directory first and is renamed into place at the end,
#         so an interrupted run never leaves a half-built rootfs behind.
# Mirror: the first URIs: line of /etc/apt/sources.list.d/debian.sources, else the
#         first "deb" line of /etc/apt/sources.list, else deb.debian.org.
#         Override with NSPAWN_MIRROR=URL.
# Needs root (debootstrap, apt-get).
set -euo pipefail

cache="${CLEARML_TEST_CACHE:-/var/cache/clearml-agent-go-test}"
dest="$cache/rootfs-bookworm"
stamp=".clearml-rootfs-ok"
suite=bookworm
include="systemd,systemd-sysv,dbus,python3,python3-venv,git,ca-certificates"

log() { printf 'nspawn-rootfs: %s\n' "$*" >&2; }

if [[ -f "$dest/$stamp" ]]; then
	printf '%s\n' "$dest"
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	log "must run as root to build $dest (debootstrap); rerun with sudo"
	exit 1
fi

need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
if ((${#need[@]})); then
	log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2 ||
		{ DEBIAN_FRONTEND=noninteractive apt-get update >&2 &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2; }
fi

mirror="${NSPAWN_MIRROR:-}"
if [[ -z $mirror && -r /etc/apt/sources.list.d/debian.sources ]]; then
	mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [[ -z $mirror && -r /etc/apt/sources.list ]]; then
	mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

mkdir -p "$cache"
# Serialise concurrent builds (two test packages may ask at once).
exec 9>"$cache/.rootfs-bookworm.lock"
flock 9
if [[ -f "$dest/$stamp" ]]; then
	printf '%s\n' "$dest"
	exit 0
fi

tmp=$(mktemp -d "$cache/.rootfs-bookworm.XXXXXX")
cleanup() { rm -rf --one-file-system "$tmp"; }
trap cleanup EXIT

log "debootstrap $suite from $mirror into $tmp (takes a few minutes)"
debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror" >&2

# Container hygiene: a fixed hostname, no getty on the pipe console, empty machine-id
# so each boot gets a fresh one, and no apt caches.
printf 'clearml-test\n' >"$tmp/etc/hostname"
: >"$tmp/etc/machine-id"
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp/$stamp"

rm -rf --one-file-system "$dest"
mv "$tmp" "$dest"
trap - EXIT
log "ready: $dest"
printf '%s\n' "$dest"
