#!/bin/sh
# Build (once) a small Debian root file system for the container image and cache it as a
# tarball; prints the tarball's path. Nothing is pulled from an image registry: the packages
# come from the Debian archive this machine's apt already uses (tools/debian_mirror.sh, or
# DEBIAN_MIRROR).
#
#   rootfs.sh ARCH CACHE_DIR [KIND]     ARCH: amd64 | arm64
#
# KIND python (default): minbase plus python3 and python3-venv, the daemon's base;
# mosquitto: minbase plus mosquitto, the broker beside it (compose.yaml). No compilers; the
# apt lists, documentation, man pages and locales are left out.
# Needs root and debootstrap; arm64 on another machine also qemu-aarch64-static (registered
# with binfmt_misc here when it is not yet).
set -eu

arch=${1:?usage: rootfs.sh ARCH CACHE_DIR [KIND]}
cache=${2:?usage: rootfs.sh ARCH CACHE_DIR [KIND]}
kind=${3:-python}
suite=bookworm
here=$(cd "$(dirname "$0")" && pwd)
tarball="$cache/rootfs-$suite-$kind-$arch.tar"

case $arch in
    amd64 | arm64) ;;
    *) echo "rootfs.sh: ARCH must be amd64 or arm64, not $arch" >&2; exit 2 ;;
esac
case $kind in
    python) packages=python3,python3-venv ;;
    mosquitto) packages=mosquitto ;;
    *) echo "rootfs.sh: KIND must be python or mosquitto, not $kind" >&2; exit 2 ;;
esac
if [ "$arch" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
    sh "$here/binfmt.sh" >&2
fi
if [ -s "$tarball" ]; then
    echo "$tarball"
    exit 0
fi

mirror=$(sh "$here/../../tools/debian_mirror.sh" "$suite")
mkdir -p "$cache"
work=$(mktemp -d "$cache/rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
debootstrap --arch="$arch" --variant=minbase --include="$packages" \
    "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}
# Later apt installs (an image built on top of this one) keep leaving the docs out.
cat >"$root/etc/dpkg/dpkg.cfg.d/01-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF
find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root/usr/share/man/"* "$root/usr/share/info/"* "$root/usr/share/locale/"* \
    "$root/usr/share/lintian" "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin \
    "$root/var/cache/apt/archives/"*.deb "$root/var/cache/debconf/"*-old \
    "$root/var/log/"*.log "$root/var/log/apt/"* "$root/etc/machine-id"
# The build machine's resolver and host name are not part of the image.
: >"$root/etc/resolv.conf"
echo localhost >"$root/etc/hostname"
tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$tarball"
