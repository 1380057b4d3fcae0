#!/usr/bin/env bash
# nspawn-rootfs-cloudinit.sh: build (or reuse) a cached copy of the bookworm rootfs of
# nspawn-rootfs.sh with cloud-init installed and set up for a NoCloud seed, the way a
# cloud image boots. Used by the boot-to-task integration tests (cloud-init, Packer image
# path, notebook).
#
# Output: the rootfs path on stdout (everything else goes to stderr).
# Cache:  ${CLEARML_TEST_CACHE:-/var/cache/clearml-agent-go-test}/rootfs-bookworm-cloudinit,
#         marked complete by .clearml-rootfs-ok; built in a temporary directory and renamed
#         into place, so an interrupted run never leaves a half-built rootfs behind.
# Needs root (chroot, apt-get inside the rootfs, the Debian mirror the base rootfs uses).
set -euo pipefail

cache="${CLEARML_TEST_CACHE:-/var/cache/clearml-agent-go-test}"
dest="$cache/rootfs-bookworm-cloudinit"
stamp=".clearml-rootfs-ok"
here=$(cd "$(dirname "$0")" && pwd)

log() { printf 'nspawn-rootfs-cloudinit: %s\n' "$*" >&2; }

if [[ -f "$dest/$stamp" ]]; then
	printf '%s\n' "$dest"
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	log "must run as root to build $dest (chroot, apt-get); rerun with sudo"
	exit 1
fi
base=$(bash "$here/nspawn-rootfs.sh" | tail -n1)

mkdir -p "$cache"
exec 9>"$cache/.rootfs-bookworm-cloudinit.lock"
flock 9
if [[ -f "$dest/$stamp" ]]; then
	printf '%s\n' "$dest"
	exit 0
fi

tmp=$(mktemp -d "$cache/.rootfs-bookworm-cloudinit.XXXXXX")
mounted=()
cleanup() {
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
	rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

log "copying $base"
cp -a --reflink=auto "$base/." "$tmp/"
rm -f "$tmp/$stamp"
for fs in proc sys dev; do
	mount --rbind "/$fs" "$tmp/$fs"
	mounted+=("$tmp/$fs")
done
cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
log "installing cloud-init and curl into the rootfs"
# policy-rc.d: no service starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod 755 "$tmp/usr/sbin/policy-rc.d"
chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	cloud-init curl ca-certificates sudo >&2
rm -f "$tmp/usr/sbin/policy-rc.d"
for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}"; done
mounted=()

# Only the NoCloud seed (and None): no probing of cloud metadata services, and the
# container's network is the host's, so cloud-init must not configure it.
mkdir -p "$tmp/etc/cloud/cloud.cfg.d"
cat >"$tmp/etc/cloud/cloud.cfg.d/99-clearml-test.cfg" <<'CFG'
datasource_list: [ NoCloud, None ]
network: {config: disabled}
CFG
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/* "$tmp/var/lib/cloud"
: >"$tmp/etc/machine-id"
date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp/$stamp"

rm -rf --one-file-system "$dest"
mv "$tmp" "$dest"
trap - EXIT
log "ready: $dest"
printf '%s\n' "$dest"
