#!/bin/bash
# Install (or remove) the edge-runtime daemon on a Raspberry Pi, or into a root folder.
#
#   install.sh [--wheel-dir DIR [--online]] [--device-dir DIR] [--root DIR] [--dry-run]
#              [--extra litert|tflite] [--no-start]
#   install.sh --uninstall [--purge] [--root DIR] [--dry-run]
#
# Idempotent: a second run upgrades the venv and leaves config, trust file and
# credentials that are already in /etc/edge-runtime untouched.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
APP=edge-runtime
ROOT=/
WHEEL_DIR=
DEVICE_DIR=
ONLINE=no
DRY_RUN=no
UNINSTALL=no
PURGE=no
START=yes
EXTRA=

usage() {
    cat <<'EOF'
usage: install.sh [options]
  --wheel-dir DIR   install from the wheels in DIR, offline (the project wheel and its
                    dependencies, built for this device); default: the package index
  --online          with --wheel-dir: fetch missing dependencies from the package index
  --device-dir DIR  this device's files: config.toml, trust.json, ca.crt, device.crt,
                    device.key, mqtt-password (copied to /etc/edge-runtime unless present)
  --extra NAME      backend extra (litert or tflite); default: chosen from the architecture
  --root DIR        install into the root folder DIR instead of /
  --no-start        install and enable, but do not start the service
  --dry-run         print every action, change nothing
  --uninstall       stop and remove the service, venv and udev rules (keeps config/state)
  --purge           with --uninstall: also remove config, state and the system user
EOF
}

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
    case $1 in
        --wheel-dir) WHEEL_DIR=${2:?--wheel-dir needs a folder}; shift 2 ;;
        --device-dir) DEVICE_DIR=${2:?--device-dir needs a folder}; shift 2 ;;
        --root) ROOT=${2:?--root needs a folder}; shift 2 ;;
        --extra) EXTRA=${2:?--extra needs litert or tflite}; shift 2 ;;
        --online) ONLINE=yes; shift ;;
        --dry-run) DRY_RUN=yes; shift ;;
        --uninstall) UNINSTALL=yes; shift ;;
        --purge) PURGE=yes; shift ;;
        --no-start) START=no; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[ -d "$ROOT" ] || die "root folder $ROOT does not exist"
ROOT=$(cd "$ROOT" && pwd)
[ "$ROOT" = / ] && R= || R=$ROOT    # R prefixes host paths; "" for the running system
[ -z "$WHEEL_DIR" ] || [ -d "$WHEEL_DIR" ] || die "wheel folder $WHEEL_DIR does not exist"
[ -z "$DEVICE_DIR" ] || [ -d "$DEVICE_DIR" ] || die "device folder $DEVICE_DIR does not exist"
case $EXTRA in ""|litert|tflite) ;; *) die "--extra must be litert or tflite, not $EXTRA" ;; esac
if [ "$DRY_RUN" = no ] && [ "$(id -u)" -ne 0 ]; then
    die "must run as root (or use --dry-run)"
fi

OPT=/opt/$APP
VENV=$OPT/venv
ETC=/etc/$APP
STATE=/var/lib/$APP
UNIT=/etc/systemd/system/$APP.service
UDEV_RULES=/etc/udev/rules.d/71-$APP-coral.rules

# run CMD...: the one place that changes anything; --dry-run only prints.
run() {
    echo "+ $*"
    if [ "$DRY_RUN" = no ]; then "$@"; fi
}

# in_target CMD...: a command inside the target system (chroot when --root is given).
in_target() {
    if [ -z "$R" ]; then
        "$@"
    else
        chroot "$ROOT" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/root LANG=C.UTF-8 "$@"
    fi
}

# chroot_chown OWNER GROUP PATH: numeric chown from the target's own user database.
chroot_chown() {
    local uid gid
    uid=$(awk -F: -v n="$1" '$1 == n { print $3 }' "$ROOT/etc/passwd")
    gid=$(awk -F: -v n="$2" '$1 == n { print $3 }' "$ROOT/etc/group")
    chown "${uid:-0}:${gid:-0}" "$R$3"
}

systemd_running() { [ -z "$R" ] && [ -d /run/systemd/system ]; }

user_exists() { grep -q "^$APP:" "$ROOT/etc/passwd" 2>/dev/null; }
group_exists() { grep -q "^$1:" "$ROOT/etc/group" 2>/dev/null; }

# ---------------------------------------------------------------- uninstall
if [ "$UNINSTALL" = yes ]; then
    if systemd_running; then
        run systemctl disable --now "$APP.service" || true
    elif [ -e "$R$UNIT" ] && [ -n "$R" ]; then
        run systemctl --root="$ROOT" disable "$APP.service" || true
    fi
    run rm -f "$R$UNIT" "$R$UDEV_RULES"
    systemd_running && run systemctl daemon-reload
    run rm -rf "$R$OPT"
    if [ "$PURGE" = yes ]; then
        run rm -rf "$R$ETC" "$R$STATE"
        if user_exists; then run userdel --root "$ROOT" "$APP"; fi
    else
        say "kept $ETC and $STATE (use --purge to remove them and the $APP user)"
    fi
    say "uninstalled"
    exit 0
fi

# ---------------------------------------------------------------- platform
if [ -n "$R" ] && [ -x "$ROOT/usr/bin/dpkg" ]; then
    ARCH=$(in_target dpkg --print-architecture)
elif command -v dpkg >/dev/null 2>&1 && [ -z "$R" ]; then
    ARCH=$(dpkg --print-architecture)
else
    ARCH=$(uname -m)
fi
# A 64-bit kernel may run a 32-bit userland (armhf): the userland decides.
case $ARCH in
    arm64|aarch64|amd64|x86_64) DEFAULT_EXTRA=litert ;;
    armhf|armel|armv7l|armv6l) DEFAULT_EXTRA=tflite ;;
    *) die "unsupported architecture $ARCH (supported: arm64, amd64, armhf, armel)" ;;
esac
EXTRA=${EXTRA:-$DEFAULT_EXTRA}

in_target sh -c 'command -v python3' >/dev/null 2>&1 || die "python3 not found in $ROOT (apt-get install python3 python3-venv)"
PYVER=$(in_target python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case $PYVER in
    3.[0-8]) die "Python $PYVER is too old: edge-runtime needs Python 3.9 or later" ;;
esac
in_target python3 -c 'import venv, ensurepip' >/dev/null 2>&1 \
    || die "python3-venv is missing in $ROOT (apt-get install python3-venv)"
say "architecture $ARCH, Python $PYVER, backend extra [$EXTRA], root $ROOT"

# ---------------------------------------------------------------- user and groups
for group in plugdev apex; do
    if ! group_exists "$group"; then run groupadd --root "$ROOT" --system "$group"; fi
done
if user_exists; then
    say "system user $APP exists"
else
    run useradd --root "$ROOT" --system --user-group --home-dir "$STATE" --no-create-home \
        --shell /usr/sbin/nologin --groups plugdev,apex --comment "edge-runtime daemon" "$APP"
fi

# ---------------------------------------------------------------- venv and package
if [ -x "$R$VENV/bin/python" ]; then
    say "venv $VENV exists"
else
    run mkdir -p "$R$OPT"
    run in_target python3 -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input install --no-compile --upgrade)
CONSTRAINTS=()
[ "$EXTRA" = tflite ] && CONSTRAINTS=("numpy<2")
if [ -n "$WHEEL_DIR" ]; then
    wheel=$(find "$WHEEL_DIR" -maxdepth 1 -name 'edge_runtime-*.whl' | sort -V | tail -n 1)
    [ -n "$wheel" ] || die "no edge_runtime-*.whl in $WHEEL_DIR"
    # pip runs inside the target, so the wheels must be visible there.
    if [ -n "$R" ]; then
        target_wheels=/var/tmp/$APP-wheels
        run rm -rf "$R$target_wheels"
        run cp -r "$WHEEL_DIR" "$R$target_wheels"
    else
        target_wheels=$(cd "$WHEEL_DIR" && pwd)
    fi
    index=(--no-index)
    [ "$ONLINE" = yes ] && index=()
    run in_target "${PIP[@]}" "${index[@]}" --find-links "$target_wheels" \
        "$target_wheels/$(basename "$wheel")[$EXTRA]" "${CONSTRAINTS[@]}"
    if [ -n "$R" ]; then run rm -rf "$R$target_wheels"; fi
else
    run in_target "${PIP[@]}" "${APP}[$EXTRA]" "${CONSTRAINTS[@]}"
fi

# ---------------------------------------------------------------- config, trust, credentials
run install -d -m 0750 "$R$ETC"
run chroot_chown root "$APP" "$ETC"

# install_once SRC NAME: copy SRC to /etc/edge-runtime/NAME unless it already exists.
install_once() {
    if [ -e "$R$ETC/$2" ]; then
        say "kept existing $ETC/$2"
    else
        run install -m 0640 "$1" "$R$ETC/$2"
        run chroot_chown root "$APP" "$ETC/$2"
    fi
}

if [ -n "$DEVICE_DIR" ]; then
    for file in "$DEVICE_DIR"/*; do
        [ -f "$file" ] || continue
        install_once "$file" "$(basename "$file")"
    done
elif [ -f "$SCRIPT_DIR/config.example.toml" ]; then
    install_once "$SCRIPT_DIR/config.example.toml" config.toml
fi
[ -e "$R$ETC/config.toml" ] || [ "$DRY_RUN" = yes ] \
    || say "warning: no $ETC/config.toml yet; write one before starting the service"

# ---------------------------------------------------------------- udev rules
rules=$(cat <<'EOF'
# Coral USB accelerator: before its firmware is loaded (Global Unichip) and after (Google).
SUBSYSTEM=="usb", ATTRS{idVendor}=="1a6e", ATTRS{idProduct}=="089a", MODE="0664", GROUP="plugdev"
SUBSYSTEM=="usb", ATTRS{idVendor}=="18d1", ATTRS{idProduct}=="9302", MODE="0664", GROUP="plugdev"
# Coral PCIe / M.2 card (gasket/apex driver): /dev/apex_0
SUBSYSTEM=="apex", MODE="0660", GROUP="apex"
EOF
)
if [ -f "$R$UDEV_RULES" ] && [ "$(cat "$R$UDEV_RULES")" = "$rules" ]; then
    say "udev rules up to date"
else
    run install -d "$R/etc/udev/rules.d"
    echo "+ write $UDEV_RULES"
    [ "$DRY_RUN" = yes ] || printf '%s\n' "$rules" > "$R$UDEV_RULES"
    if systemd_running && command -v udevadm >/dev/null 2>&1; then
        run udevadm control --reload-rules
        run udevadm trigger --subsystem-match=usb --subsystem-match=apex
    fi
fi

# ---------------------------------------------------------------- service
run install -m 0644 "$SCRIPT_DIR/$APP.service" "$R$UNIT"
if systemd_running; then
    run systemctl daemon-reload
    run systemctl enable "$APP.service"
    if [ "$START" = yes ]; then
        run systemctl restart "$APP.service"
    fi
    say "installed; follow it with: journalctl -u $APP -f"
else
    if command -v systemctl >/dev/null 2>&1; then
        run systemctl --root="$ROOT" enable "$APP.service"
    fi
    say "systemd is not running here (chroot or image): enabled, not started"
fi
