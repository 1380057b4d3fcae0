#!/usr/bin/env bash
# Builds the release tarball that templates/install.sh installs:
#
#   scripts/release.sh [--version V] [--out DIR]
#
# DIR (default out/release) gets clearml-agent-go_<V>_linux_<goarch>.tar.gz holding
# clearml-agent-go_<V>_linux_<goarch>/{bin/clearml-agent (cgo: NVML), bin/clearml-agent-static (CGO_ENABLED=0),
# bin/agent-provision, VERSION}, <tarball>.sha256 in sha256sum format, and install.sh (a copy of
# templates/install.sh: served next to the tarball, it is where the notebook cell looks for it). V defaults to
# `git describe --tags --always --dirty`; goarch is `go env GOARCH` (set GOARCH, and CC for the cgo build, to
# cross-build). The tarball is reproducible: -trimpath builds, entries sorted, owner 0:0, every mtime the
# commit's time (or $SOURCE_DATE_EPOCH), gzip without a name or time stamp. The last line of stdout is the
# tarball's path.
set -euo pipefail

die() { echo "release.sh: $*" >&2; exit 1; }
usage() { echo "release.sh: $*; usage: scripts/release.sh [--version V] [--out DIR]" >&2; exit 2; }

version= out=
while [ $# -gt 0 ]; do
  case $1 in
    --version) [ $# -ge 2 ] || usage "--version needs a value"; version=$2; shift 2 ;;
    --version=*) version=${1#--version=}; shift ;;
    --out) [ $# -ge 2 ] || usage "--out needs a directory"; out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    -h|--help) echo "usage: scripts/release.sh [--version V] [--out DIR]"; exit 0 ;;
    *) usage "unknown argument $1" ;;
  esac
done
valid_version() {
  [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] ||
    usage "--version '$1' must be letters, digits and . _ + - (it goes into the file name)"
}
if [ -n "$version" ]; then valid_version "$version"; fi
if [ -n "$out" ]; then
  mkdir -p "$out" 2>/dev/null || die "cannot create --out $out; pass a directory you can write"
  out=$(cd "$out" && pwd)
fi
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"
command -v go >/dev/null || die "Go is not installed: install Go 1.26 (https://go.dev/dl) and put it on PATH"
if [ -z "$out" ]; then
  out=$PWD/out/release
  mkdir -p "$out"
fi
if [ -z "$version" ]; then
  version=$(git describe --tags --always --dirty 2>/dev/null) ||
    die "cannot tell the version (git describe failed: not a git checkout?); pass --version V"
fi
valid_version "$version"
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  mtime=$SOURCE_DATE_EPOCH
else
  mtime=$(git log -1 --format=%ct 2>/dev/null) ||
    die "cannot tell the commit time (git log failed: not a git checkout?); set SOURCE_DATE_EPOCH"
fi
goarch=$(go env GOARCH)
[ "$(go env CGO_ENABLED)" = 1 ] ||
  die "bin/clearml-agent needs cgo (NVML) but cgo is off: install a C compiler (apt-get install gcc) and unset CGO_ENABLED"
name=clearml-agent-go_${version}_linux_${goarch}
tarball=$out/$name.tar.gz

stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/$name
mkdir -p "$root/bin"
ldflags="-s -w -X github.com/gpufleet/clearml-agent-go/agent/cli.Version=$version"
echo "== building $name" >&2
GOOS=linux go build -trimpath -ldflags "$ldflags" -o "$root/bin/clearml-agent" ./cmd/clearml-agent
GOOS=linux go build -trimpath -ldflags "$ldflags" -o "$root/bin/agent-provision" ./cmd/agent-provision
GOOS=linux CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$root/bin/clearml-agent-static" ./cmd/clearml-agent
echo "$version" >"$root/VERSION"
chmod 0755 "$root" "$root/bin" "$root"/bin/*
chmod 0644 "$root/VERSION"

tar --sort=name --format=gnu --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
  -C "$stage" -cf - "$name" | gzip -n -9 >"$stage/out.tar.gz"
sum=$(sha256sum "$stage/out.tar.gz" | cut -d' ' -f1)
echo "$sum  $name.tar.gz" >"$stage/out.sha256"
cp templates/install.sh "$stage/install.sh"
chmod 0755 "$stage/install.sh"
mv -f "$stage/out.tar.gz" "$tarball"
mv -f "$stage/out.sha256" "$tarball.sha256"
mv -f "$stage/install.sh" "$out/install.sh"
echo "sha256 $sum" >&2
echo "$tarball"
