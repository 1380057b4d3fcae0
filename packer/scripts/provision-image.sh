#!/bin/sh
# provision-image.sh: turn a Debian 12 machine (a Packer build VM, or a rootfs entered with chroot) into an
# image with clearml-agent-go installed and its agents provisioned for first boot. Run as root:
#
#   AGENT_TARBALL=... AGENT_SHA256=... API_HOST=... sh provision-image.sh
#   chroot ROOTFS /usr/bin/env AGENT_TARBALL=... AGENT_SHA256=... API_HOST=... /bin/sh /path/provision-image.sh
#
# Steps: (1) apt-get install python3 python3-venv git ca-certificates [docker.io], only when one is missing
# (no network needed when all are present); (2) install.sh --prefix AGENT_PREFIX --sha256 AGENT_SHA256
# AGENT_TARBALL; (3) agent-provision --root / --no-start --first-boot-creds ... (config and units written
# and enabled, nothing started, no credentials); (4) with PREBUILD_CACHES=true, docker pull of DOCKER_IMAGE
# and PREPULL_IMAGES; (5) apt caches and lists, cloud-init state and the machine id removed, so the image
# boots as a fresh instance. At that first boot, user-data rendered by
# `agent-provision cloud-init --prebuilt-image ...` writes /etc/clearml-agent/credentials and runs
# `agent-provision first-boot --creds-file /etc/clearml-agent/credentials`, which starts the agents.
# Needs no running systemd: units are enabled offline.
#
# Environment (the Packer template sets each one from the variable of the same meaning):
#   AGENT_TARBALL    required: path (or http(s)/file URL) of clearml-agent-go_<version>_linux_<arch>.tar.gz
#   AGENT_SHA256     required: its sha256, 64 hex digits
#   API_HOST         required: ClearML API server URL (http:// or https://)
#   INSTALLER        the release installer install.sh (default: install.sh next to this script)
#   WEB_HOST, FILES_HOST   ClearML web and files server URLs (default: derived from API_HOST)
#   QUEUE            queue(s) of the agents, comma-separated (default: agent-provision's, "default")
#   GPUS             agent-provision --gpus (default: agent-provision's)
#   CPU_AGENTS       number of CPU-only agents (default 0)
#   SERVICES_AGENT   true: add a services-mode agent (default false)
#   DOCKER_MODE      true: agents run tasks in containers, --docker (default false)
#   DOCKER_IMAGE     default task image, --docker-image (implies DOCKER_MODE)
#   INSTALL_DOCKER   true: install docker.io (default false)
#   PREBUILD_CACHES  true: pre-pull DOCKER_IMAGE and PREPULL_IMAGES (default false; needs a Docker engine)
#   PREPULL_IMAGES   more images to pre-pull, separated by spaces or commas
#   AGENT_PREFIX     install prefix of the binaries (default /usr/local)
# Credentials are never baked in: CLEARML_API_ACCESS_KEY, CLEARML_API_SECRET_KEY, CLEARML_AGENT_GIT_USER and
# CLEARML_AGENT_GIT_PASS are dropped from the environment before agent-provision runs.
#
# Exit status: 0 done; 1 failed (one line on stderr names the input or step and the fix). Bad input is
# reported before anything is changed.
set -eu

prog=provision-image.sh

die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}

say() {
	printf '%s: %s\n' "$prog" "$*"
}

# ---- inputs: all checked before anything changes ---------------------------------------------------------

AGENT_TARBALL=${AGENT_TARBALL:-}
AGENT_SHA256=${AGENT_SHA256:-}
API_HOST=${API_HOST:-}
WEB_HOST=${WEB_HOST:-}
FILES_HOST=${FILES_HOST:-}
QUEUE=${QUEUE:-}
GPUS=${GPUS:-}
CPU_AGENTS=${CPU_AGENTS:-0}
DOCKER_IMAGE=${DOCKER_IMAGE:-}
PREPULL_IMAGES=${PREPULL_IMAGES:-}
AGENT_PREFIX=${AGENT_PREFIX:-/usr/local}

missing=
for name in AGENT_TARBALL AGENT_SHA256 API_HOST; do
	eval "value=\${$name}"
	# shellcheck disable=SC2154 # value is set by eval
	[ -n "$value" ] || missing="$missing${missing:+, }$name"
done
if [ -n "$missing" ]; then
	die "missing environment: $missing; set AGENT_TARBALL (release tarball path), AGENT_SHA256 (its sha256) and API_HOST (ClearML API URL), e.g. the packer variables agent_tarball, agent_sha256, api_host"
fi

# bool NAME: the value of $NAME as true/false (empty: false); anything else is bad input.
bool() {
	eval "v=\${$1:-}"
	# shellcheck disable=SC2154 # v is set by eval
	case $v in
	true | True | TRUE | 1 | yes) echo true ;;
	false | False | FALSE | 0 | no | '') echo false ;;
	*) die "$1=$v: want true or false" ;;
	esac
}
# Called outside $(...) first so a bad value exits the script, not just a subshell.
for name in SERVICES_AGENT DOCKER_MODE INSTALL_DOCKER PREBUILD_CACHES; do bool "$name" >/dev/null; done
SERVICES_AGENT=$(bool SERVICES_AGENT)
DOCKER_MODE=$(bool DOCKER_MODE)
INSTALL_DOCKER=$(bool INSTALL_DOCKER)
PREBUILD_CACHES=$(bool PREBUILD_CACHES)

AGENT_SHA256=$(printf '%s' "$AGENT_SHA256" | tr 'A-F' 'a-f')
case $AGENT_SHA256 in
*[!0-9a-f]*) die "AGENT_SHA256=$AGENT_SHA256 is not a sha256: want 64 hex digits (the first field of the tarball's .sha256 file)" ;;
esac
[ ${#AGENT_SHA256} -eq 64 ] ||
	die "AGENT_SHA256=$AGENT_SHA256 is not a sha256: want 64 hex digits, got ${#AGENT_SHA256} (the first field of the tarball's .sha256 file)"

case $API_HOST in
http://?* | https://?*) ;;
*) die "API_HOST=$API_HOST: want an http:// or https:// URL, e.g. https://api.clear.ml" ;;
esac
for name in WEB_HOST FILES_HOST; do
	eval "value=\${$name}"
	case $value in
	'' | http://?* | https://?*) ;;
	*) die "$name=$value: want an http:// or https:// URL, or leave it empty" ;;
	esac
done

case $CPU_AGENTS in
'' | *[!0-9]*) die "CPU_AGENTS=$CPU_AGENTS: want a whole number (0 for none)" ;;
esac

if [ -z "$GPUS" ] && [ "$CPU_AGENTS" -eq 0 ] && [ "$SERVICES_AGENT" = false ]; then
	die "nothing to provision: set GPUS (e.g. 0,1), CPU_AGENTS (e.g. 2) or SERVICES_AGENT=true (packer: gpus, cpu_agents, services_agent)"
fi

case $AGENT_PREFIX in
/*) ;;
*) die "AGENT_PREFIX=$AGENT_PREFIX: want an absolute path, e.g. /usr/local" ;;
esac

case $AGENT_TARBALL in
http://* | https://* | file://*) ;;
*) [ -f "$AGENT_TARBALL" ] || die "AGENT_TARBALL=$AGENT_TARBALL: no such file; give the path of the release tarball (scripts/release.sh prints it)" ;;
esac

if [ -z "${INSTALLER:-}" ]; then
	INSTALLER=$(dirname "$0")/install.sh
	[ -f "$INSTALLER" ] || die "INSTALLER is not set and there is no install.sh next to $0; set INSTALLER to the release installer (templates/install.sh)"
fi
[ -f "$INSTALLER" ] || die "INSTALLER=$INSTALLER: no such file; set it to the release installer (templates/install.sh)"

images=
if [ "$PREBUILD_CACHES" = true ]; then
	for img in $DOCKER_IMAGE $(printf '%s' "$PREPULL_IMAGES" | tr ',' ' '); do
		case " $images " in
		*" $img "*) ;;
		*) images="$images${images:+ }$img" ;;
		esac
	done
fi

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and writes /etc and $AGENT_PREFIX); run it with sudo, or inside chroot as root"

# ---- 1. packages -------------------------------------------------------------------------------------------

installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

packages="python3 python3-venv git ca-certificates"
[ "$INSTALL_DOCKER" = true ] && packages="$packages docker.io"
need=
for p in $packages; do
	installed "$p" || need="$need${need:+ }$p"
done
if [ -n "$need" ]; then
	say "installing $need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q || die "apt-get update failed; check the network and /etc/apt/sources.list*"
	# shellcheck disable=SC2086 # a list of package names
	apt-get install -y -q --no-install-recommends $need || die "apt-get install $need failed; see the apt output above"
else
	say "packages present: $packages"
fi

# ---- 2. the agent ------------------------------------------------------------------------------------------

# On failure install.sh says why in one line and leaves nothing installed.
sh "$INSTALLER" --prefix "$AGENT_PREFIX" --sha256 "$AGENT_SHA256" "$AGENT_TARBALL" || exit 1

# ---- 3. config and units, for a first boot that brings the credentials ----------------------------------------

unset CLEARML_API_ACCESS_KEY CLEARML_API_SECRET_KEY CLEARML_AGENT_GIT_USER CLEARML_AGENT_GIT_PASS \
	AGENT_PROVISION_CREDENTIALS_FILE

set -- --root / --no-start --first-boot-creds --prefix "$AGENT_PREFIX" --api-host "$API_HOST"
[ -z "$WEB_HOST" ] || set -- "$@" --web-host "$WEB_HOST"
[ -z "$FILES_HOST" ] || set -- "$@" --files-host "$FILES_HOST"
[ -z "$QUEUE" ] || set -- "$@" --queue "$QUEUE"
[ -z "$GPUS" ] || set -- "$@" --gpus "$GPUS"
[ "$CPU_AGENTS" -eq 0 ] || set -- "$@" --cpu-agents "$CPU_AGENTS"
[ "$SERVICES_AGENT" = false ] || set -- "$@" --services-agent
[ "$DOCKER_MODE" = false ] || set -- "$@" --docker
[ -z "$DOCKER_IMAGE" ] || set -- "$@" --docker-image "$DOCKER_IMAGE"
say "agent-provision $*"
# On failure agent-provision says why in one line (naming the flag, i.e. the variable).
"$AGENT_PREFIX/bin/agent-provision" "$@" || exit 1

# ---- 4. caches ---------------------------------------------------------------------------------------------

if [ "$PREBUILD_CACHES" = true ]; then
	if [ -z "$images" ]; then
		say "prebuild_caches: no image to pre-pull (set DOCKER_IMAGE or PREPULL_IMAGES)"
	elif ! command -v docker >/dev/null 2>&1; then
		die "PREBUILD_CACHES=true but docker is not installed; set INSTALL_DOCKER=true (packer: install_docker = true) or turn prebuild_caches off"
	else
		if ! docker info >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
			systemctl start docker.service >/dev/null 2>&1 || true
		fi
		docker info >/dev/null 2>&1 ||
			die "PREBUILD_CACHES=true but the Docker engine is not running (no systemd here to start docker.service?); pre-pull on a booted build VM, or turn prebuild_caches off"
		for img in $images; do
			say "pre-pulling $img"
			docker pull -q "$img" || die "docker pull $img failed; check the image name and the network"
		done
	fi
fi

# ---- 5. a fresh instance at first boot ---------------------------------------------------------------------

apt-get clean
rm -rf /var/lib/apt/lists/*
if command -v cloud-init >/dev/null 2>&1; then
	cloud-init clean --logs || die "cloud-init clean --logs failed; the image would not run its user-data at first boot"
fi
# systemd makes a new machine id at first boot (and with it new DHCP client ids).
if [ -f /etc/machine-id ]; then
	: >/etc/machine-id
fi
rm -f /var/lib/dbus/machine-id

say "image ready: agents of $API_HOST provisioned, nothing started; at first boot give user-data from \`agent-provision cloud-init --prebuilt-image ...\` (it runs agent-provision first-boot --creds-file /etc/clearml-agent/credentials)"
