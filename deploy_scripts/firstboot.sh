#!/bin/bash
# First boot of a Pi flashed by flash.sh: cloud-init's runcmd runs this from the boot
# partition (/boot/firmware/edge-runtime/). It installs the runtime offline from the
# shipped wheels with this device's files, which flash.sh put on the root file system
# (/var/lib/edge-runtime-firstboot/device, root only), never on the FAT boot partition
# that every local user can read and that keeps deleted files' bytes. Once install.sh has
# copied them to /etc/edge-runtime, the staged copies are overwritten where they lie and
# deleted. On failure they stay (root only) so that it can be run again by hand; the log
# is /var/log/edge-runtime-firstboot.log.
#
#   firstboot.sh [--root DIR]     (DIR: the root of the system to set up; default /)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ROOT=/
while [ $# -gt 0 ]; do
    case $1 in
        --root) [ $# -ge 2 ] || { echo "firstboot.sh: --root needs a folder" >&2; exit 1; }
            ROOT=$2; shift 2 ;;
        *) echo "firstboot.sh: unknown argument: $1" >&2; exit 1 ;;
    esac
done
[ -d "$ROOT" ] || { echo "firstboot.sh: root folder $ROOT does not exist" >&2; exit 1; }
ROOT=$(cd "$ROOT" && pwd)
[ "$ROOT" = / ] && R= || R=$ROOT    # R prefixes paths; "" for the running system
stage=$R/var/lib/edge-runtime-firstboot

mkdir -p "$R/var/log"
exec >>"$R/var/log/edge-runtime-firstboot.log" 2>&1
echo "edge-runtime first boot: $(date -u +%FT%TZ)"
if [ ! -d "$stage/device" ]; then
    echo "edge-runtime first boot: no $stage/device (already installed, or not flashed by flash.sh)"
    exit 1
fi
root_args=()
[ -z "$R" ] || root_args=(--root "$ROOT")
bash "$here/install.sh" "${root_args[@]}" --wheel-dir "$here/wheels" --device-dir "$stage/device"
# The credentials are in /etc/edge-runtime now: no second copy outlives the install.
find "$stage" -type f -exec shred --zero --remove {} +
rm -rf "$stage"
sync
echo "edge-runtime first boot: done"
