#!/bin/bash
# First boot of a Pi flashed by flash.sh: cloud-init's runcmd runs this from the boot
# partition (/boot/firmware/edge-runtime/). It installs the runtime offline from the
# shipped wheels with this device's files, then deletes the credentials from the FAT
# partition, which anyone holding the card could read. On failure the files stay, so it
# can be run again by hand; the log is /var/log/edge-runtime-firstboot.log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec >>/var/log/edge-runtime-firstboot.log 2>&1
echo "edge-runtime first boot: $(date -u +%FT%TZ)"
bash "$here/install.sh" --wheel-dir "$here/wheels" --device-dir "$here/device"
rm -rf "$here/device"
echo "edge-runtime first boot: done"
