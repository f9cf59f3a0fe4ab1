#!/bin/bash
# Write a Raspberry Pi OS image to an SD card (or an image file) and put on its FAT boot
# partition everything the first boot needs: cloud-init user-data (hostname, user with
# SSH key, first-boot command), network-config (Wi-Fi), and the device's edge-runtime
# folder (installer, wheels, config, trust file, broker CA and its own credentials).
#
#   flash.sh --image RPIOS.img[.xz] --target /dev/sdX|OUT.img --device-id ID
#            --device-dir DIR --wheel-dir DIR --ssh-key KEY.pub [--user NAME]
#            [--wifi-ssid SSID --wifi-psk PSK --wifi-country CC] [--no-write] [--yes]
#
# Supports Raspberry Pi OS images based on Debian 13 "trixie" (2025-10-01 and later),
# which configure their first boot with cloud-init from the boot partition, as Raspberry
# Pi Imager 2 does. Bookworm images (firstrun.sh via cmdline.txt) are not supported.
# No mounting: the boot partition is found with sfdisk and written with mtools.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
export MTOOLS_SKIP_CHECK=1
IMAGE=
TARGET=
DEVICE_ID=
DEVICE_DIR=
WHEEL_DIR=
SSH_KEY=
USER_NAME=edge
WIFI_SSID=
WIFI_PSK=
WIFI_COUNTRY=
WRITE=yes
YES=no

die() { echo "flash.sh: $*" >&2; exit 1; }
say() { echo "flash.sh: $*"; }

while [ $# -gt 0 ]; do
    case $1 in
        --image) IMAGE=${2:?}; shift 2 ;;
        --target) TARGET=${2:?}; shift 2 ;;
        --device-id) DEVICE_ID=${2:?}; shift 2 ;;
        --device-dir) DEVICE_DIR=${2:?}; shift 2 ;;
        --wheel-dir) WHEEL_DIR=${2:?}; shift 2 ;;
        --ssh-key) SSH_KEY=${2:?}; shift 2 ;;
        --user) USER_NAME=${2:?}; shift 2 ;;
        --wifi-ssid) WIFI_SSID=${2:?}; shift 2 ;;
        --wifi-psk) WIFI_PSK=${2:?}; shift 2 ;;
        --wifi-country) WIFI_COUNTRY=${2:?}; shift 2 ;;
        --no-write) WRITE=no; shift ;;
        --yes) YES=yes; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done

[ -n "$TARGET" ] || die "--target is required (an SD card device such as /dev/sdb, or an image file)"
[ -n "$DEVICE_ID" ] || die "--device-id is required"
[[ $DEVICE_ID =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "device id '$DEVICE_ID' must be 1-64 of A-Z a-z 0-9 _ . -"
[ -d "$DEVICE_DIR" ] || die "--device-dir must be a folder (from broker/add-device.sh)"
[ -f "$DEVICE_DIR/config.toml" ] || die "$DEVICE_DIR has no config.toml"
[ -d "$WHEEL_DIR" ] || die "--wheel-dir must be a folder with the runtime wheel(s)"
compgen -G "$WHEEL_DIR/edge_runtime-*.whl" >/dev/null || die "no edge_runtime-*.whl in $WHEEL_DIR"
[ -f "$SSH_KEY" ] || die "--ssh-key must be an SSH public key file"
grep -qE '^(ssh-|ecdsa-|sk-)' "$SSH_KEY" || die "$SSH_KEY does not look like an SSH public key"
[[ $USER_NAME =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "user name '$USER_NAME' is not a valid Linux user name"
if [ -n "$WIFI_SSID" ]; then
    [ -n "$WIFI_PSK" ] || die "--wifi-psk is required with --wifi-ssid"
    [[ $WIFI_COUNTRY =~ ^[A-Z]{2}$ ]] || die "--wifi-country must be a two-letter country code (GB, DE, US...)"
fi
for tool in sfdisk mcopy mmd mtype mdir; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install fdisk mtools)"
done
# Host name: the device id, lower case, with '_' and '.' as '-'.
HOSTNAME_=$(echo "$DEVICE_ID" | tr 'A-Z_.' 'a-z--')

# ---------------------------------------------------------------- target safety
# refuse_mounted PATH: stop if PATH (a disk, a partition of it, or an image file behind a
# loop device) is mounted, is swap, or is the disk holding /.
refuse_mounted() {
    local target=$1 disk root_src root_disk
    if [ -b "$target" ]; then
        disk=$(lsblk -ndo PKNAME "$target" 2>/dev/null || true)
        disk=/dev/${disk:-$(basename "$target")}
        if lsblk -nrpo MOUNTPOINT "$disk" 2>/dev/null | grep -q .; then
            die "refusing $target: $disk or one of its partitions is mounted ($(lsblk -nrpo NAME,MOUNTPOINT "$disk" | awk 'NF == 2' | tr '\n' ' '))"
        fi
        root_src=$(findmnt -nvo SOURCE / || true)
        if [ -b "$root_src" ]; then
            root_disk=$(lsblk -ndo PKNAME "$root_src" 2>/dev/null || true)
            root_disk=/dev/${root_disk:-$(basename "$root_src")}
            [ "$(readlink -f "$root_disk")" != "$(readlink -f "$disk")" ] \
                || die "refusing $target: it is the system disk (holds /)"
        fi
    fi
    if findmnt -rn --source "$target" >/dev/null 2>&1 || findmnt -rn --mountpoint "$target" >/dev/null 2>&1; then
        die "refusing $target: it is mounted ($(findmnt -rn -o SOURCE,TARGET --source "$target" 2>/dev/null || findmnt -rn -o SOURCE,TARGET --mountpoint "$target"))"
    fi
    if [ -f "$target" ] && command -v losetup >/dev/null; then
        local loop
        for loop in $(losetup -nO NAME -j "$target" 2>/dev/null); do
            if lsblk -nrpo MOUNTPOINT "$loop" 2>/dev/null | grep -q .; then
                die "refusing $target: it is mounted through $loop"
            fi
        done
    fi
    if [ -e "$target" ] && [ ! -b "$target" ] && [ ! -f "$target" ]; then
        die "refusing $target: not a block device or an image file"
    fi
}
refuse_mounted "$TARGET"
if [ "$WRITE" = yes ]; then
    [ -f "$IMAGE" ] || die "--image must be a Raspberry Pi OS .img or .img.xz file"
fi

# ---------------------------------------------------------------- write the image
if [ "$WRITE" = yes ]; then
    if [ -b "$TARGET" ] && [ "$YES" = no ]; then
        read -r -p "flash.sh: erase $TARGET ($(lsblk -ndo SIZE,MODEL "$TARGET" | xargs))? type yes: " answer
        [ "$answer" = yes ] || die "not confirmed"
    fi
    say "writing $IMAGE to $TARGET"
    # An image file target is replaced whole; a device keeps what lies past the image.
    if [ ! -b "$TARGET" ]; then : > "$TARGET"; fi
    case $IMAGE in
        *.xz) xz -dc -- "$IMAGE" | dd of="$TARGET" bs=4M conv=fsync,notrunc iflag=fullblock status=none ;;
        *) dd if="$IMAGE" of="$TARGET" bs=4M conv=fsync,notrunc status=none ;;
    esac
    if [ -b "$TARGET" ]; then
        blockdev --rereadpt "$TARGET" 2>/dev/null || partx -u "$TARGET" 2>/dev/null || true
    fi
fi

# ---------------------------------------------------------------- find the boot partition
dump=$(sfdisk --dump "$TARGET" 2>/dev/null) || die "$TARGET has no partition table sfdisk can read"
sector=$(echo "$dump" | sed -n 's/^sector-size: *//p')
sector=${sector:-512}
# The first FAT partition: MBR types b, c, e (FAT32/FAT16 LBA), or the GPT basic data type.
start=$(echo "$dump" | awk -F'[,:]' '
    /start=/ {
        st = ""; ty = ""
        for (i = 2; i <= NF; i++) {
            split($i, kv, "=")
            gsub(/ /, "", kv[1]); gsub(/ /, "", kv[2])
            if (kv[1] == "start") st = kv[2]
            if (kv[1] == "type") ty = tolower(kv[2])
        }
        if (ty == "b" || ty == "c" || ty == "e" || ty == "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7") { print st; exit }
    }')
[ -n "$start" ] || die "no FAT boot partition in $TARGET"
IMG="$TARGET@@$((start * sector))"
mtype -i "$IMG" ::/cmdline.txt >/dev/null 2>&1 || die "the FAT partition of $TARGET has no cmdline.txt: not a Raspberry Pi OS image"
say "boot partition at byte $((start * sector))"

# ---------------------------------------------------------------- compose the files
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/edge-runtime/device" "$work/edge-runtime/wheels"

# yaml_quote TEXT: a YAML single-quoted scalar.
yaml_quote() { printf "'%s'" "${1//\'/\'\'}"; }

{
    echo "#cloud-config"
    echo "# Written by edge-runtime flash.sh for device $DEVICE_ID."
    echo "hostname: $(yaml_quote "$HOSTNAME_")"
    echo "manage_etc_hosts: true"
    echo "ssh_pwauth: false"
    echo "users:"
    echo "  - name: $(yaml_quote "$USER_NAME")"
    echo "    groups: [adm, sudo, plugdev, video]"
    echo "    shell: /bin/bash"
    echo "    sudo: 'ALL=(ALL) NOPASSWD:ALL'"
    echo "    lock_passwd: true"
    echo "    ssh_authorized_keys:"
    while IFS= read -r key; do
        [ -n "$key" ] && echo "      - $(yaml_quote "$key")"
    done < "$SSH_KEY"
    echo "runcmd:"
    echo "  - [systemctl, enable, --now, ssh]"
    echo "  - [bash, /boot/firmware/edge-runtime/firstboot.sh]"
} > "$work/user-data"

{
    echo "network:"
    echo "  version: 2"
    if [ -n "$WIFI_SSID" ]; then
        echo "  wifis:"
        echo "    wlan0:"
        echo "      dhcp4: true"
        echo "      optional: true"
        echo "      regulatory-domain: $(yaml_quote "$WIFI_COUNTRY")"
        echo "      access-points:"
        echo "        $(yaml_quote "$WIFI_SSID"):"
        echo "          password: $(yaml_quote "$WIFI_PSK")"
    fi
    echo "  ethernets:"
    echo "    eth0:"
    echo "      dhcp4: true"
    echo "      optional: true"
} > "$work/network-config"

# A new instance id makes cloud-init run again on a re-flashed card.
printf 'instance-id: edge-%s-%s\nlocal-hostname: %s\n' "$HOSTNAME_" "$(date -u +%Y%m%dT%H%M%SZ)" "$HOSTNAME_" \
    > "$work/meta-data"

cp "$SCRIPT_DIR/install.sh" "$SCRIPT_DIR/firstboot.sh" "$SCRIPT_DIR/edge-runtime.service" "$work/edge-runtime/"
for file in "$DEVICE_DIR"/*; do
    [ -f "$file" ] && cp "$file" "$work/edge-runtime/device/"
done
cp "$WHEEL_DIR"/*.whl "$work/edge-runtime/wheels/"

# cmdline.txt: the Wi-Fi country for the kernel's regulatory domain, as Imager does.
mtype -i "$IMG" ::/cmdline.txt | tr -d '\r' | head -n 1 > "$work/cmdline.txt"
if [ -n "$WIFI_COUNTRY" ]; then
    sed -i -e 's/ *cfg80211.ieee80211_regdom=[A-Z]*//g' -e "s/\$/ cfg80211.ieee80211_regdom=$WIFI_COUNTRY/" "$work/cmdline.txt"
fi

# ---------------------------------------------------------------- write them
mdeltree -i "$IMG" ::/edge-runtime >/dev/null 2>&1 || true
mcopy -i "$IMG" -o -s "$work/edge-runtime" ::/
mcopy -i "$IMG" -o "$work/user-data" "$work/network-config" "$work/meta-data" "$work/cmdline.txt" ::/
# Nothing of ours may go unnoticed: read back what was written.
mtype -i "$IMG" ::/edge-runtime/device/config.toml | cmp -s - "$DEVICE_DIR/config.toml" \
    || die "read-back of config.toml from the boot partition differs"
sync
say "done: $TARGET boots as $HOSTNAME_ (user $USER_NAME, SSH key only${WIFI_SSID:+, Wi-Fi $WIFI_SSID}) and installs edge-runtime on first boot"
