#!/bin/sh
# Let this machine run arm64 programs (an arm64 root under debootstrap, an arm64 container)
# through qemu-aarch64-static and binfmt_misc. Needs root. Does nothing when an aarch64
# handler is already registered (e.g. by qemu-user-static's binfmt-support hook).
#
# The F flag: the kernel opens the emulator when it is registered, so it also runs inside a
# chroot or a container that has no copy of it.
set -eu

qemu=$(command -v qemu-aarch64-static || true)
[ -n "$qemu" ] || {
    echo "binfmt.sh: qemu-aarch64-static is missing (apt-get install qemu-user-static; on Debian 12 from bookworm-backports)" >&2
    exit 2
}
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
for name in edge-qemu-aarch64 qemu-aarch64; do
    [ ! -e "/proc/sys/fs/binfmt_misc/$name" ] || exit 0
done
printf '%s' ':edge-qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$qemu"':F' \
    >/proc/sys/fs/binfmt_misc/register
