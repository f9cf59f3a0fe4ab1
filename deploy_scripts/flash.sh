#!/bin/bash
# Write a Raspberry Pi OS image to an SD card (or an image file) and put on its FAT boot
# partition everything the first boot needs: cloud-init user-data (hostname, user with
# SSH key, first-boot command), network-config (Wi-Fi), and the edge-runtime folder
# (installer, wheels, unit). The device's own files (config, trust file, broker CA, its
# certificate, key and MQTT password) go to the ext4 root partition, root only, in
# /var/lib/edge-runtime-firstboot/device, where the first boot installs them from.
#
#   flash.sh --image RPIOS.img[.xz] --target /dev/sdX|OUT.img --device-id ID
#            --device-dir DIR --wheel-dir DIR --ssh-key KEY.pub [--user NAME]
#            [--wifi-ssid SSID --wifi-psk PSK --wifi-country CC] [--no-write] [--yes]
#
# Supports Raspberry Pi OS images based on Debian 13 "trixie" (2025-10-01 and later),
# which configure their first boot with cloud-init from the boot partition, as Raspberry
# Pi Imager 2 does. Bookworm images (firstrun.sh via cmdline.txt) are not supported.
# No mounting: partitions are found with sfdisk, written with mtools and debugfs.
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
        --no-write|--yes|-h|--help) ;;
        *) [ $# -ge 2 ] || die "$1 needs a value" ;;
    esac
    case $1 in
        --image) IMAGE=$2; shift 2 ;;
        --target) TARGET=$2; shift 2 ;;
        --device-id) DEVICE_ID=$2; shift 2 ;;
        --device-dir) DEVICE_DIR=$2; shift 2 ;;
        --wheel-dir) WHEEL_DIR=$2; shift 2 ;;
        --ssh-key) SSH_KEY=$2; shift 2 ;;
        --user) USER_NAME=$2; shift 2 ;;
        --wifi-ssid) WIFI_SSID=$2; shift 2 ;;
        --wifi-psk) WIFI_PSK=$2; shift 2 ;;
        --wifi-country) WIFI_COUNTRY=$2; shift 2 ;;
        --no-write) WRITE=no; shift ;;
        --yes) YES=yes; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done

# Every check of the inputs comes before the first byte written to the target.
[ -n "$TARGET" ] || die "--target is required (an SD card device such as /dev/sdb, or an image file)"
[ -n "$DEVICE_ID" ] || die "--device-id is required (the device's host name, such as pi-01)"
# The device id rule, the same in broker/add-device.sh and the daemon config: a host name
# label (RFC 1123, lower case only) that is also an MQTT topic level and a certificate CN.
[[ $DEVICE_ID =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] \
    || die "device id '$DEVICE_ID' must be 1-63 of a-z 0-9 and '-', not starting or ending with '-' (it is the host name)"
case $DEVICE_ID in groups|bundles|operator) die "device id '$DEVICE_ID' is reserved" ;; esac
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
for tool in sfdisk mcopy mmd mtype mdir minfo mshowfat od dd debugfs; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install fdisk mtools coreutils e2fsprogs)"
done

# ---------------------------------------------------------------- target safety
# A /dev path must be a block device that is there now: never create a file in /dev.
case $TARGET in
    /dev/*)
        [ -e "$TARGET" ] || die "refusing $TARGET: no such block device (card not inserted?)"
        [ -b "$TARGET" ] || die "refusing $TARGET: not a block device"
        ;;
esac

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
if [ -b "$TARGET" ] && [ "$(lsblk -ndo TYPE "$TARGET" 2>/dev/null)" = part ]; then
    die "refusing $TARGET: it is a partition; give the whole card (/dev/$(lsblk -ndo PKNAME "$TARGET"))"
fi
if [ ! -b "$TARGET" ]; then
    [ -d "$(dirname -- "$TARGET")" ] || die "refusing $TARGET: folder $(dirname -- "$TARGET") does not exist"
fi
if [ "$WRITE" = no ]; then
    [ -e "$TARGET" ] || die "--no-write: $TARGET does not exist (flash the image first)"
else
    [ -n "$IMAGE" ] || die "--image is required (or --no-write to re-provision a flashed card)"
    { [ -f "$IMAGE" ] && [ -r "$IMAGE" ]; } || die "--image must be a readable Raspberry Pi OS .img or .img.xz file"
fi

work=$(mktemp -d)
pending=    # the temporary image file that replaces an image-file target at the end
trap 'rm -rf "$work"; if [ -n "$pending" ]; then rm -f -- "$pending"; fi' EXIT

# ---------------------------------------------------------------- image layout
# read_table FILE WHAT: the partition table of FILE; sets BOOT_OFFSET and BOOT_END (the
# first FAT partition: MBR type b, c or e, or GPT basic data) and ROOT_OFFSET (the first
# Linux partition: MBR type 83 or the GPT Linux file system type), in bytes.
read_table() {
    local file=$1 what=$2 dump sector parts
    dump=$(sfdisk --dump "$file" 2>/dev/null) || die "$what has no partition table: not a Raspberry Pi OS image"
    sector=$(echo "$dump" | sed -n 's/^sector-size: *//p')
    sector=${sector:-512}
    parts=$(echo "$dump" | awk -F'[,:]' '
        /start=/ {
            st = ""; sz = ""; ty = ""
            for (i = 2; i <= NF; i++) {
                split($i, kv, "=")
                gsub(/ /, "", kv[1]); gsub(/ /, "", kv[2])
                if (kv[1] == "start") st = kv[2]
                if (kv[1] == "size") sz = kv[2]
                if (kv[1] == "type") ty = tolower(kv[2])
            }
            if (ty == "b" || ty == "c" || ty == "e" || ty == "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7") {
                if (!fat) { print "fat", st, sz; fat = 1 }
            } else if (ty == "83" || ty == "0fc63daf-8483-4772-8e79-3d69d8477de4") {
                if (!linux) { print "linux", st, sz; linux = 1 }
            }
        }')
    BOOT_OFFSET=$(echo "$parts" | awk -v s="$sector" '$1 == "fat" { print $2 * s }')
    BOOT_END=$(echo "$parts" | awk -v s="$sector" '$1 == "fat" { print ($2 + $3) * s }')
    ROOT_OFFSET=$(echo "$parts" | awk -v s="$sector" '$1 == "linux" { print $2 * s }')
    [ -n "$BOOT_OFFSET" ] || die "$what has no FAT boot partition: not a Raspberry Pi OS image"
    [ -n "$ROOT_OFFSET" ] || die "$what has no Linux root partition: not a Raspberry Pi OS image"
}

# check_file_systems FILE WHAT: the boot partition is FAT with cmdline.txt, the root ext4.
check_file_systems() {
    local file=$1 what=$2 magic incompat stats
    mtype -i "$file@@$BOOT_OFFSET" ::/cmdline.txt >/dev/null 2>&1 \
        || die "the FAT partition of $what has no cmdline.txt: not a Raspberry Pi OS image"
    # ext2/3/4 superblock: 1024 bytes into the partition, magic 0xEF53 at byte 56 of it.
    magic=$(od -An -tx1 -j $((ROOT_OFFSET + 1080)) -N 2 "$file" 2>/dev/null | tr -d ' \n')
    [ "$magic" = 53ef ] || die "the root partition of $what is not ext4: not a Raspberry Pi OS image"
    # s_feature_incompat (byte 96): needs_recovery (0x4) and inline_data (0x8000) stop
    # debugfs from writing the device's files safely, or from scrubbing them later.
    incompat=$(od -An -tu4 --endian=little -j $((ROOT_OFFSET + 1024 + 96)) -N 4 "$file" | tr -d ' ')
    [ $((incompat & 0x4)) = 0 ] || die "the root file system of $what needs journal recovery (run e2fsck on it first)"
    [ $((incompat & 0x8000)) = 0 ] || die "the root file system of $what stores small files inline (inline_data): not supported"
    # -c: superblock and group descriptors only (the head of an .xz image has no more).
    stats=$(debugfs -c -R stats "$file?offset=$ROOT_OFFSET" 2>/dev/null || true)
    [[ $stats == *"Block size:"* ]] \
        || die "debugfs cannot read the root file system of $what (e2fsprogs older than the image's?)"
}

# xz_head N: the first N bytes of the decompressed image, as a sparse file in $work.
xz_head() {
    rm -f "$work/head.img"
    { xz -dc -- "$IMAGE" 2>/dev/null || true; } | head -c "$1" \
        | dd of="$work/head.img" bs=1M iflag=fullblock conv=sparse status=none
    echo "$work/head.img"
}

# The device's files, on the root file system: root only, never on the FAT partition.
STAGE=/var/lib/edge-runtime-firstboot
for file in "$DEVICE_DIR"/*; do
    [ -f "$file" ] || continue
    [[ $(basename -- "$file") =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
        || die "$file: device file names are A-Z a-z 0-9 . _ - (as add-device.sh writes them)"
done

# root_has PATH: whether the root file system of FILE (the image or the card) has PATH.
root_has() {
    local out
    out=$(debugfs -R "stat $2" "$1?offset=$ROOT_OFFSET" 2>/dev/null || true)
    [[ $out == Inode:* ]]
}

if [ "$WRITE" = no ]; then
    read_table "$TARGET" "$TARGET"
    check_file_systems "$TARGET" "$TARGET"
    # A card that has booted holds that device's installed credentials in its root file
    # system: only writing the image again replaces them.
    ! root_has "$TARGET" /etc/edge-runtime \
        || die "refusing --no-write: $TARGET has booted as a device (its /etc/edge-runtime holds that device's credentials); write the image again"
else
    case $IMAGE in
        *.xz)
            command -v xz >/dev/null || die "xz is missing (apt-get install xz-utils)"
            say "checking $IMAGE"
            xz -t -- "$IMAGE" 2>/dev/null || die "$IMAGE is not a complete xz file (download it again)"
            IMAGE_SIZE=$(xz --robot --list -- "$IMAGE" | awk '$1 == "totals" { print $5 }')
            head_img=$(xz_head 1048576)
            read_table "$head_img" "$IMAGE"
            need=$((ROOT_OFFSET + 65536))
            [ "$BOOT_END" -le "$need" ] || need=$BOOT_END
            head_img=$(xz_head "$need")
            check_file_systems "$head_img" "$IMAGE"
            ;;
        *)
            IMAGE_SIZE=$(stat -Lc %s -- "$IMAGE")
            read_table "$IMAGE" "$IMAGE"
            check_file_systems "$IMAGE" "$IMAGE"
            ;;
    esac
    if [ -b "$TARGET" ]; then
        card_size=$(blockdev --getsize64 "$TARGET")
        [ "$IMAGE_SIZE" -le "$card_size" ] \
            || die "refusing $TARGET: the image ($IMAGE_SIZE bytes) is larger than the card ($card_size bytes)"
    fi
fi

# ---------------------------------------------------------------- write the image
DEST=$TARGET
if [ "$WRITE" = yes ]; then
    if [ -b "$TARGET" ] && [ "$YES" = no ]; then
        read -r -p "flash.sh: erase $TARGET ($(lsblk -ndo SIZE,MODEL "$TARGET" | xargs))? type yes: " answer
        [ "$answer" = yes ] || die "not confirmed"
    fi
    say "writing $IMAGE to $TARGET"
    if [ ! -b "$TARGET" ]; then
        # An image file target is replaced whole, at the end, once everything is in place.
        pending=$(mktemp "$(dirname -- "$TARGET")/.$(basename -- "$TARGET").XXXXXX")
        if [ -e "$TARGET" ]; then chmod --reference="$TARGET" -- "$pending"; fi
        DEST=$pending
    fi
    # A device keeps what lies past the image.
    case $IMAGE in
        *.xz) xz -dc -- "$IMAGE" | dd of="$DEST" bs=4M conv=fsync,notrunc iflag=fullblock status=none ;;
        *) dd if="$IMAGE" of="$DEST" bs=4M conv=fsync,notrunc status=none ;;
    esac
    if [ -b "$DEST" ]; then
        blockdev --rereadpt "$DEST" 2>/dev/null || partx -u "$DEST" 2>/dev/null || true
    fi
    mtype -i "$DEST@@$BOOT_OFFSET" ::/cmdline.txt >/dev/null 2>&1 \
        || die "the image written to $TARGET does not read back: no cmdline.txt on its FAT partition"
fi
IMG="$DEST@@$BOOT_OFFSET"
say "boot partition at byte $BOOT_OFFSET"

# ---------------------------------------------------------------- compose the files
mkdir -p "$work/device" "$work/edge-runtime/wheels"

# yaml_quote TEXT: a YAML single-quoted scalar.
yaml_quote() { printf "'%s'" "${1//\'/\'\'}"; }

{
    echo "#cloud-config"
    echo "# Written by edge-runtime flash.sh for device $DEVICE_ID."
    echo "hostname: $(yaml_quote "$DEVICE_ID")"
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
printf 'instance-id: edge-%s-%s\nlocal-hostname: %s\n' "$DEVICE_ID" "$(date -u +%Y%m%dT%H%M%SZ)" "$DEVICE_ID" \
    > "$work/meta-data"

cp "$SCRIPT_DIR/install.sh" "$SCRIPT_DIR/firstboot.sh" "$SCRIPT_DIR/edge-runtime.service" "$work/edge-runtime/"
for file in "$DEVICE_DIR"/*; do
    if [ -f "$file" ]; then cp "$file" "$work/device/"; fi
done
cp "$WHEEL_DIR"/*.whl "$work/edge-runtime/wheels/"

# cmdline.txt: the Wi-Fi country for the kernel's regulatory domain, as Imager does.
mtype -i "$IMG" ::/cmdline.txt | tr -d '\r' | head -n 1 > "$work/cmdline.txt"
if [ -n "$WIFI_COUNTRY" ]; then
    sed -i -e 's/ *cfg80211.ieee80211_regdom=[A-Z]*//g' -e "s/\$/ cfg80211.ieee80211_regdom=$WIFI_COUNTRY/" "$work/cmdline.txt"
fi

# ---------------------------------------------------------------- scrub what they replace
# mtools deletes a file by freeing its clusters, which keep their bytes: the files of a
# previous device (its credentials, its Wi-Fi password) are overwritten in place first.
# fat_value LABEL: a number from minfo's description of the boot sector.
fat_value() {
    echo "$fat_info" | sed -n "s/^$1[:=] *\([0-9]*\).*/\1/p" | head -n 1
}
fat_info=$(minfo -i "$IMG" 2>/dev/null) || die "cannot read the FAT boot sector of $TARGET"
sector_bytes=$(fat_value "sector size")
cluster_sectors=$(fat_value "cluster size")
reserved=$(fat_value "reserved (boot) sectors")
fats=$(fat_value "fats")
root_slots=$(fat_value "max available root directory slots")
fat_sectors=$(fat_value "sectors per fat")
[ "${fat_sectors:-0}" != 0 ] || fat_sectors=$(fat_value "Big fatlen")
for value in "$sector_bytes" "$cluster_sectors" "$reserved" "$fats" "$root_slots" "$fat_sectors"; do
    [ -n "$value" ] || die "cannot read the FAT geometry of $TARGET"
done
CLUSTER_BYTES=$((cluster_sectors * sector_bytes))
DATA_OFFSET=$((BOOT_OFFSET + (reserved + fats * fat_sectors + (root_slots * 32 + sector_bytes - 1) / sector_bytes) * sector_bytes))

# scrub_fat PATH: zeros over every cluster of the file ::PATH, or of every file under it.
scrub_fat() {
    local files file range first last
    files=$(mdir -/ -b -i "$IMG" "::$1" 2>/dev/null || mdir -b -i "$IMG" "::$1" 2>/dev/null || true)
    while IFS= read -r file; do
        case $file in ""|*/) continue ;; esac
        for range in $(mshowfat -i "$IMG" "$file" | grep -o '<[0-9-]*>' | tr -d '<>'); do
            first=${range%-*}
            last=${range#*-}
            dd if=/dev/zero of="$DEST" bs="$CLUSTER_BYTES" count=$((last - first + 1)) \
                seek=$((DATA_OFFSET + (first - 2) * CLUSTER_BYTES)) oflag=seek_bytes \
                conv=notrunc,fsync status=none
        done
    done <<< "$files"
}
for old in /edge-runtime /user-data /network-config /meta-data; do
    scrub_fat "$old"
done

# The same for the files a previous flash staged on the root file system: zeros over
# their blocks (from debugfs), then deleted.
ROOTFS="$DEST?offset=$ROOT_OFFSET"
block_bytes=$(debugfs -R stats "$ROOTFS" 2>/dev/null | sed -n 's/^Block size: *//p')
[ -n "$block_bytes" ] || die "cannot read the root file system of $TARGET"
if root_has "$DEST" "$STAGE/device"; then
    for name in $(debugfs -R "ls -p $STAGE/device" "$ROOTFS" 2>/dev/null \
        | awk -F/ '$3 ~ /^100/ { print $6 }'); do
        for block in $(debugfs -R "blocks $STAGE/device/$name" "$ROOTFS" 2>/dev/null); do
            dd if=/dev/zero of="$DEST" bs="$block_bytes" count=1 oflag=seek_bytes \
                seek=$((ROOT_OFFSET + block * block_bytes)) conv=notrunc,fsync status=none
        done
        debugfs -w -R "rm $STAGE/device/$name" "$ROOTFS" >/dev/null 2>&1
    done
fi

# ---------------------------------------------------------------- write them
mdeltree -i "$IMG" ::/edge-runtime >/dev/null 2>&1 || true
mcopy -i "$IMG" -o -s "$work/edge-runtime" ::/
mcopy -i "$IMG" -o "$work/user-data" "$work/network-config" "$work/meta-data" "$work/cmdline.txt" ::/
{
    for dir in /var /var/lib "$STAGE" "$STAGE/device"; do
        root_has "$DEST" "$dir" || echo "mkdir $dir"
    done
    echo "sif $STAGE mode 040700"
    echo "sif $STAGE/device mode 040700"
    echo "cd $STAGE/device"
    for file in "$work/device"/*; do
        name=$(basename "$file")
        echo "write $file $name"
        echo "sif $name mode 0100600"
        echo "sif $name uid 0"
        echo "sif $name gid 0"
    done
} > "$work/debugfs.cmd"
debugfs -w -f "$work/debugfs.cmd" "$ROOTFS" >/dev/null 2>&1 || die "debugfs could not write the root file system of $TARGET"

# Nothing of ours may go unnoticed: read back what was written.
mtype -i "$IMG" ::/edge-runtime/install.sh | cmp -s - "$SCRIPT_DIR/install.sh" \
    || die "read-back of edge-runtime/install.sh from the boot partition differs"
for file in "$work/device"/*; do
    debugfs -R "cat $STAGE/device/$(basename "$file")" "$ROOTFS" 2>/dev/null | cmp -s - "$file" \
        || die "read-back of $STAGE/device/$(basename "$file") from the root file system differs"
done
sync
if [ -n "$pending" ]; then
    mv -f -- "$pending" "$TARGET"
    pending=
fi
say "done: $TARGET boots as $DEVICE_ID (user $USER_NAME, SSH key only${WIFI_SSID:+, Wi-Fi $WIFI_SSID}) and installs edge-runtime on first boot"
