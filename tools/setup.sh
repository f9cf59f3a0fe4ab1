#!/usr/bin/env bash
# Sets up a development machine: system packages and the two test venvs.
#   .venv         host venv: ai-edge-litert (numpy 2), TensorFlow, the quantizer, test tools
#   .venv-tflite  device venv: tflite-runtime with numpy<2 (never beside TensorFlow)
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(mosquitto mosquitto-clients openssl shellcheck mtools fdisk dosfstools e2fsprogs xz-utils)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
