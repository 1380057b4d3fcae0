#!/bin/sh
# install.sh: install a clearml-agent-go release tarball (built by scripts/release.sh).
#
#   install.sh [--prefix DIR] --sha256 HEX SOURCE
#
# SOURCE is an http(s):// or file:// URL (fetched with curl, else wget, else python3) or a local path to
# clearml-agent-go_<version>_linux_<arch>.tar.gz. HEX is its sha256 (the first field of the .sha256 file next
# to it); it is mandatory and the tarball is refused when it does not match. The binaries go to DIR/bin
# (default /usr/local/bin), each one atomically (copied to DIR/bin/.NAME.tmp.PID, then renamed), and only
# after the checksum and the tarball's layout were checked: a failed run leaves nothing behind.
# Exit status: 0 installed, 1 failed (one line on stderr says what and how to fix it), 2 bad arguments.
# POSIX sh: cloud-init runs it with /bin/sh (dash on Debian/Ubuntu).
set -u

prog=install.sh
usage_line="usage: $prog [--prefix DIR] --sha256 HEX SOURCE"

die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}

usage() {
	printf '%s: %s; %s\n' "$prog" "$*" "$usage_line" >&2
	exit 2
}

# oneline FILE: the last non-empty line of FILE, trimmed (tools' error output, kept on one line).
oneline() {
	sed -e 's/[[:space:]]*$//' -e '/^$/d' "$1" 2>/dev/null | tail -n 1
}

prefix=/usr/local
sha=
source=
while [ $# -gt 0 ]; do
	case $1 in
	--prefix) [ $# -ge 2 ] || usage "--prefix needs a directory"; prefix=$2; shift 2 ;;
	--prefix=*) prefix=${1#--prefix=}; shift ;;
	--sha256) [ $# -ge 2 ] || usage "--sha256 needs the tarball's sha256 (64 hex digits)"; sha=$2; shift 2 ;;
	--sha256=*) sha=${1#--sha256=}; shift ;;
	-h | --help)
		printf '%s\n' "$usage_line" \
			"Installs bin/clearml-agent, bin/agent-provision (and bin/clearml-agent-static) of a release tarball" \
			"into DIR/bin (default DIR: /usr/local) after checking its sha256." \
			"SOURCE: an http(s):// or file:// URL, or a local path."
		exit 0 ;;
	--) shift; break ;;
	-*) usage "unknown option $1" ;;
	*)
		[ -z "$source" ] || usage "more than one SOURCE ($source and $1)"
		source=$1; shift ;;
	esac
done
if [ $# -gt 0 ]; then
	[ -z "$source" ] && [ $# -eq 1 ] || usage "more than one SOURCE"
	source=$1
fi
[ -n "$source" ] || usage "missing SOURCE (the URL or path of clearml-agent-go_<version>_linux_<arch>.tar.gz)"
[ -n "$sha" ] || usage "missing --sha256 HEX: pass the tarball's sha256 (the first field of its .sha256 file)"
sha=$(printf '%s' "$sha" | tr 'A-F' 'a-f')
case $sha in
*[!0-9a-f]*) usage "--sha256 $sha is not a sha256: want 64 hex digits (the first field of the .sha256 file)" ;;
esac
[ ${#sha} -eq 64 ] || usage "--sha256 $sha is not a sha256: want 64 hex digits, got ${#sha}"
[ -n "$prefix" ] || usage "--prefix is empty; give a directory, e.g. --prefix /usr/local"
case $prefix in
/*) ;;
*) prefix=$(pwd)/$prefix ;;
esac
prefix=$(printf '%s' "$prefix" | sed -e 's://*:/:g' -e 's:/$::')
[ -n "$prefix" ] || prefix=/
bindir=${prefix%/}/bin

# The tools, before anything is written.
command -v tar >/dev/null 2>&1 || die "tar is not installed; install tar (and gzip) and run again"
command -v gzip >/dev/null 2>&1 || die "gzip is not installed; install gzip and run again"
if command -v sha256sum >/dev/null 2>&1; then
	hasher=sha256sum
elif command -v openssl >/dev/null 2>&1; then
	hasher=openssl
elif command -v shasum >/dev/null 2>&1; then
	hasher=shasum
else
	die "no sha256 tool: install coreutils (sha256sum) or openssl and run again"
fi

sha256_of() {
	case $hasher in
	sha256sum) sha256sum <"$1" | cut -d' ' -f1 ;;
	openssl) openssl dgst -sha256 <"$1" | awk '{print $NF}' ;;
	shasum) shasum -a 256 <"$1" | cut -d' ' -f1 ;;
	esac
}

# Everything this run creates, removed on any failure or signal: the temp dir, the staged binaries, and
# DIR/bin and the directories above it that this run created (only while still empty).
tmp=
made_top=
ok=0
cleanup() {
	if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
	[ "$ok" = 1 ] && return
	for name in clearml-agent agent-provision clearml-agent-static; do rm -f "$bindir/.$name.tmp.$$"; done
	if [ -n "$made_top" ]; then
		d=$bindir
		while rmdir "$d" 2>/dev/null && [ "$d" != "$made_top" ]; do d=${d%/*}; done
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# DIR/bin; the topmost directory this run creates is noted (removed again if the run fails).
d=$bindir
while [ -n "$d" ] && [ ! -e "$d" ]; do
	made_top=$d
	d=${d%/*}
done
if ! msg=$(mkdir -p "$bindir" 2>&1); then
	die "cannot create $bindir ($(printf '%s' "$msg" | tail -n 1)); pass --prefix a directory you can write, or run as root"
fi
[ -d "$bindir" ] || die "$bindir is not a directory; pass --prefix a directory whose bin/ is a directory"

# The temp dir next to the binaries (same file system: no /tmp size limit, cheap copies).
tmp=$(mktemp -d "$prefix/.clearml-agent-go-install.XXXXXX" 2>/dev/null) || {
	tmp=
	die "cannot write to $prefix; pass --prefix a directory you can write, or run as root"
}
if ! : >"$bindir/.clearml-agent-go-probe.$$" 2>/dev/null; then
	die "cannot write to $bindir; pass --prefix a directory you can write, or run as root"
fi
rm -f "$bindir/.clearml-agent-go-probe.$$"

# Fetch.
tarball=$tmp/release.tar.gz
err=$tmp/fetch.err
case $source in
file://*)
	path=${source#file://}
	case $path in
	localhost/*) path=${path#localhost} ;;
	esac
	[ -f "$path" ] || die "cannot read $source: no such file $path; check the URL"
	cp "$path" "$tarball" 2>"$err" || die "cannot read $source: $(oneline "$err"); check the URL and its permissions"
	;;
http://* | https://*)
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --retry 2 --connect-timeout 20 -o "$tarball" "$source" 2>"$err" ||
			die "cannot download $source: $(oneline "$err"); check the URL and the network"
	elif command -v wget >/dev/null 2>&1; then
		wget -nv -O "$tarball" "$source" 2>"$err" ||
			die "cannot download $source: $(oneline "$err"); check the URL and the network"
	elif command -v python3 >/dev/null 2>&1; then
		python3 - "$source" "$tarball" 2>"$err" <<'EOF' || die "cannot download $source: $(oneline "$err"); check the URL and the network"
import shutil, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], "wb") as f:
        shutil.copyfileobj(r, f)
except Exception as e:
    sys.exit(" ".join(str(e).split()) or type(e).__name__)
EOF
	else
		die "cannot download $source: none of curl, wget, python3 is installed; install curl or pass a local path"
	fi
	;;
*://*) die "cannot fetch $source: only http://, https:// and file:// URLs or local paths are supported" ;;
*)
	[ -f "$source" ] || die "cannot read $source: no such file; check the path"
	cp "$source" "$tarball" 2>"$err" || die "cannot read $source: $(oneline "$err"); check its permissions"
	;;
esac

# Verify before looking inside.
got=$(sha256_of "$tarball")
[ "$got" = "$sha" ] || die "checksum mismatch for $source: expected $sha, got $got; check the URL and the --sha256 value"

# Extract and check the layout: one top directory with bin/clearml-agent and bin/agent-provision.
mkdir "$tmp/x" || die "cannot write to $tmp; check the free space under $prefix"
if ! tar -xzf "$tarball" -C "$tmp/x" 2>"$err"; then
	if gzip -t "$tarball" 2>/dev/null; then
		die "$source is not a valid tar archive ($(oneline "$err")); check the URL points at a clearml-agent-go_<version>_linux_<arch>.tar.gz"
	fi
	die "$source is not a gzipped tarball; check the URL points at a clearml-agent-go_<version>_linux_<arch>.tar.gz"
fi
set -- "$tmp/x"/*
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	die "$source has the wrong layout: want one top directory clearml-agent-go_<version>_linux_<arch>/; check it is a clearml-agent-go release tarball"
fi
top=$1
topname=${top##*/}
for name in clearml-agent agent-provision; do
	[ -f "$top/bin/$name" ] || die "$source has the wrong layout: no $topname/bin/$name; check it is a clearml-agent-go release tarball"
done
version=
if [ -f "$top/VERSION" ]; then
	version=$(sed -n '1{s/[[:space:]]*$//;p;}' "$top/VERSION")
fi
if [ -z "$version" ]; then
	version=${topname#clearml-agent-go_}
	version=${version%_linux_*}
fi

# The tarball's architecture (from its name) against this machine's.
arch=
case $topname in
*_linux_*) arch=${topname##*_linux_} ;;
esac
case $(uname -m 2>/dev/null) in
x86_64 | amd64) here=amd64 ;;
aarch64 | arm64) here=arm64 ;;
*) here= ;;
esac
if [ -n "$arch" ] && [ -n "$here" ] && [ "$arch" != "$here" ]; then
	die "$source is built for linux/$arch but this machine is linux/$here; install the clearml-agent-go_${version}_linux_${here}.tar.gz release"
fi

# Stage every binary next to its final name, then rename them all: a failed copy (disk full) installs none.
names="clearml-agent agent-provision"
[ -f "$top/bin/clearml-agent-static" ] && names="$names clearml-agent-static"
for name in $names; do
	t=$bindir/.$name.tmp.$$
	{ cp "$top/bin/$name" "$t" && chmod 0755 "$t"; } 2>"$err" ||
		die "cannot write $t ($(oneline "$err")); check the free space and permissions of $bindir"
done
for name in $names; do
	t=$bindir/.$name.tmp.$$
	if [ -f "$bindir/$name" ] && cmp -s "$t" "$bindir/$name" 2>/dev/null; then
		rm -f "$t"
		echo "$bindir/$name: unchanged"
		continue
	fi
	mv -f "$t" "$bindir/$name" 2>"$err" || die "cannot install $bindir/$name ($(oneline "$err")); check the permissions of $bindir"
	echo "$bindir/$name: installed"
done
ok=1
echo "installed clearml-agent-go $version into $bindir"
