#!/usr/bin/env bash
# Sets up a development machine: system packages and the two test venvs.
#   .venv         host venv: ai-edge-litert (numpy 2), TensorFlow, the quantizer, test tools
#   .venv-tflite  device venv: tflite-runtime with numpy<2 (never beside TensorFlow)
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    mosquitto mosquitto-clients openssl          # broker tests, CA scripts
    shellcheck systemd                           # script lint, systemd-analyze verify
    mtools fdisk dosfstools e2fsprogs xz-utils util-linux   # flash.sh on synthetic images
    debootstrap                                  # the arm64 root that stands in for a Pi
)
# qemu 10 from bookworm-backports: Debian 12's qemu 7.2 crashes ai-edge-litert's interpreter.
BACKPORT_PACKAGES=(qemu-user-static)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
apt_install() { DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
missing_bp=()
for pkg in "${BACKPORT_PACKAGES[@]}"; do installed "$pkg" || missing_bp+=("$pkg"); done
if [ "${#missing[@]}" -gt 0 ] || [ "${#missing_bp[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]} ${missing_bp[*]}"
    codename=$(sed -n "s/^VERSION_CODENAME=//p" /etc/os-release)
    if [ "${#missing_bp[@]}" -gt 0 ] && [ "$codename" = bookworm ] \
        && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" \
            | "${SUDO[@]}" tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    "${SUDO[@]}" apt-get update -qq
    [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
    if [ "${#missing_bp[@]}" -gt 0 ]; then
        if [ "$codename" = bookworm ]; then
            apt_install -t bookworm-backports "${missing_bp[@]}"
        else
            apt_install "${missing_bp[@]}"
        fi
    fi
fi

PYTHON=${PYTHON:-python3}
make_venv() {
    local dir=$1; shift
    if [ ! -x "$dir/bin/python" ]; then
        echo "setup: creating $dir"
        "$PYTHON" -m venv "$dir"
        "$dir/bin/pip" install -q --upgrade pip
    fi
    "$dir/bin/pip" install -q "$@"
}

make_venv .venv -e ".[litert,converter,dev]"
make_venv .venv-tflite -e ".[tflite,dev]"
echo "setup: done (.venv with ai-edge-litert and TensorFlow, .venv-tflite with tflite-runtime)"
