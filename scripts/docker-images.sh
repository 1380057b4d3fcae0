#!/usr/bin/env bash
# docker-images.sh: build (or reuse) the offline images the docker-mode tests run. No registry is needed.
#
#   localhost/clearml-test-busybox:1  busybox-static with every applet, /bin/sh, /etc/passwd whose root has
#                                     home /root; HOME=/root. For the static clearml-agent binary.
#   localhost/clearml-test-python:1   Debian bookworm minbase (debootstrap) with python3, python3-venv,
#                                     python3-pip, git, ca-certificates, openssh-client; HOME=/root.
#
# Engine: $DOCKER_HOST, else the test engine of scripts/test-dockerd.sh (unix:///run/clearml-test-docker.sock);
#         never the system's default socket.
# Cache:  ${CLEARML_DOCKER_TEST_CACHE:-/var/cache/clearml-agent-test}/{busybox,python}-<tag>.tar, the image
#         root filesystems. An image already in the engine is left as it is; a cached tarball is imported in
#         seconds; only the first run on a machine runs debootstrap (1-2 minutes, the Debian mirror of
#         /etc/apt/sources.list.d/debian.sources, override with DOCKER_IMAGES_MIRROR=URL).
# Runs are serialised with flock, so parallel test packages can all call it. Building needs root.
# Change the recipe of an image, bump its tag (and the names in internal/dockertest).
set -euo pipefail

busybox_image=localhost/clearml-test-busybox:1
python_image=localhost/clearml-test-python:1
python_pkgs=python3,python3-venv,python3-pip,git,ca-certificates,openssh-client
suite=bookworm
cache=${CLEARML_DOCKER_TEST_CACHE:-/var/cache/clearml-agent-test}
path_env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

export DOCKER_HOST=${DOCKER_HOST:-unix:///run/clearml-test-docker.sock}
unset DOCKER_CONTEXT

say() { printf 'docker-images: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

have() { docker image inspect "$1" >/dev/null 2>&1; }

# tarball names the cached root filesystem of an image: localhost/clearml-test-python:1 -> python-1.tar.
tarball() {
	local name=${1##*/clearml-test-}
	printf '%s/%s.tar\n' "$cache" "${name/:/-}"
}

import() { # image tarball cmd
	local t0=$SECONDS
	docker import --change "ENV HOME=/root" --change "ENV $path_env" --change "CMD [\"$3\"]" \
		--message "clearml-agent-go test image (scripts/docker-images.sh)" "$2" "$1" >/dev/null
	say "imported $1 from $2 in $((SECONDS - t0)) s"
}

build_busybox() { # dest.tar
	local bb=/bin/busybox root applet
	[[ -x $bb ]] || die "$bb not found; apt-get install -y busybox-static"
	root=$(mktemp -d "$cache/.busybox.XXXXXX")
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,dev,proc,sys}
	chmod 0700 "$root/root"
	chmod 1777 "$root/tmp"
	cp "$bb" "$root/bin/busybox"
	while read -r applet; do
		[[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
	done < <("$bb" --list-full)
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
	tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$1.part" .
	rm -rf --one-file-system "$root"
	mv "$1.part" "$1"
}

build_python() { # dest.tar
	local mirror=${DOCKER_IMAGES_MIRROR:-} root
	command -v debootstrap >/dev/null || die "debootstrap not found; apt-get install -y debootstrap"
	if [[ -z $mirror && -r /etc/apt/sources.list.d/debian.sources ]]; then
		mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
	fi
	if [[ -z $mirror && -r /etc/apt/sources.list ]]; then
		mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
	fi
	mirror=${mirror:-http://deb.debian.org/debian}
	root=$(mktemp -d "$cache/.python.XXXXXX")
	# shellcheck disable=SC2064 # expand $root now
	trap "rm -rf --one-file-system '$root' '$1.part'" EXIT
	say "debootstrap $suite ($python_pkgs) from $mirror (1-2 minutes, once per machine)"
	if ! debootstrap --variant=minbase --include="$python_pkgs" "$suite" "$root" "$mirror" >"$root.log" 2>&1; then
		tail -n 30 "$root.log" >&2
		die "debootstrap failed (full log: $root.log)"
	fi
	rm -f "$root.log"
	# Smaller image (vfs copies it for every container): no package caches, lists, documentation or
	# translations. The engine provides /etc/hosts, resolv.conf and
	# hostname, and /dev.
	rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
		"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
	find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} + # message catalogues, 40 MB
	tar -C "$root" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf "$1.part" .
	mv "$1.part" "$1"
	rm -rf --one-file-system "$root"
	trap - EXIT
}

ensure() { # image build-function cmd
	local tar t0=$SECONDS
	if have "$1"; then
		return 0
	fi
	tar=$(tarball "$1")
	if [[ ! -s $tar ]]; then
		"$2" "$tar"
		say "built $tar in $((SECONDS - t0)) s ($(du -h "$tar" | cut -f1))"
	fi
	import "$1" "$tar" "$3"
}

command -v docker >/dev/null || die "docker CLI not found; apt-get install -y docker.io"
timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
	die "no Docker engine answers on $DOCKER_HOST; start the test engine: sudo scripts/test-dockerd.sh start"
if have "$busybox_image" && have "$python_image"; then
	say "ready: $busybox_image $python_image (already in the engine at $DOCKER_HOST)"
	exit 0
fi
[[ $(id -u) -eq 0 ]] || die "$busybox_image or $python_image is missing from $DOCKER_HOST; building them needs root: sudo $0"
mkdir -p "$cache"
exec 9>"$cache/.images.lock"
flock -w 900 9 || die "another docker-images.sh has held $cache/.images.lock for 15 minutes"
ensure "$busybox_image" build_busybox /bin/sh
ensure "$python_image" build_python /bin/bash
say "ready: $busybox_image $python_image in $DOCKER_HOST"
