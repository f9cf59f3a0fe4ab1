#!/bin/sh
# Build (once) a Debian arm64 root that stands in for a Raspberry Pi, run under qemu user
# emulation, and cache it as a tarball. Prints the path of the tarball.
#
#   pi_root.sh CACHE_DIR
#
# Needs root, debootstrap, and qemu-aarch64-static (qemu 10 from bookworm-backports:
# Debian 12's qemu 7.2 crashes ai-edge-litert when it builds its interpreter).
set -eu

cache=${1:?usage: pi_root.sh CACHE_DIR}
suite=bookworm
tarball="$cache/debian-$suite-arm64-minbase.tar"
here=$(cd "$(dirname "$0")" && pwd)
qemu=$(command -v qemu-aarch64-static || true)

[ -n "$qemu" ] || { echo "pi_root.sh: qemu-aarch64-static is missing (apt-get install -t bookworm-backports qemu-user-static)" >&2; exit 2; }

# binfmt_misc with the F flag: the kernel opens the emulator when it is registered, so it
# also runs inside a chroot that has no copy of it.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/edge-qemu-aarch64 ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    printf '%s' ':edge-qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$qemu"':F' \
        > /proc/sys/fs/binfmt_misc/register
fi

if [ -s "$tarball" ]; then
    echo "$tarball"
    exit 0
fi

# the Debian mirror this machine's apt already uses (or DEBIAN_MIRROR)
mirror=$(sh "$here/../../tools/debian_mirror.sh" "$suite")
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
debootstrap --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,systemd,udev \
    "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}
# The host's CA certificates (a proxy may sign the package index's certificate).
cp /etc/ssl/certs/ca-certificates.crt "$work/root/usr/local/share/ca-certificates/host-ca-bundle.crt"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$work/root" update-ca-certificates >/dev/null 2>&1 || true
rm -rf "$work/root/var/cache/apt/archives/"*.deb
tar -C "$work/root" -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$tarball"
