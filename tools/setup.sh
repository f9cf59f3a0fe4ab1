#!/usr/bin/env bash
# Sets up a development machine: system packages and the two test venvs.
#   .venv         host venv: ai-edge-litert (numpy 2), TensorFlow, the quantizer, test tools,
#                 CPU PyTorch, litert-torch, onnx and onnxruntime (ONNX/PyTorch models)
#   .venv-tflite  device venv: tflite-runtime with numpy<2 (never beside TensorFlow)
# Idempotent: a second run only checks what is there and prints one line.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    mosquitto mosquitto-clients openssl          # broker tests, CA scripts
    shellcheck systemd                           # script lint, systemd-analyze verify
    mtools fdisk dosfstools e2fsprogs xz-utils util-linux   # flash.sh on synthetic images
    debootstrap                                  # the arm64 root that stands in for a Pi
    podman runc catatonit                        # the container image (crun refuses hybrid cgroups)
)
# qemu 10 from bookworm-backports: Debian 12's qemu 7.2 crashes ai-edge-litert's interpreter.
BACKPORT_PACKAGES=(qemu-user-static)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
# What set-up did, said in one line at the end; the tools' own output goes to a log.
done_steps=()
fail() { echo "setup: $1 failed; the last lines of $2:" >&2; tail -n 30 "$2" >&2; exit 1; }
APT_LOG=$(mktemp "${TMPDIR:-/tmp}/edge-runtime-setup-apt.XXXXXX")
trap 'rm -f "$APT_LOG"' EXIT
apt_quiet() { DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" "$@" >>"$APT_LOG" 2>&1 || fail "$*" "$APT_LOG"; }
apt_install() { apt_quiet apt-get install -y -qq --no-install-recommends "$@"; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
missing_bp=()
for pkg in "${BACKPORT_PACKAGES[@]}"; do installed "$pkg" || missing_bp+=("$pkg"); done
if [ "${#missing[@]}" -gt 0 ] || [ "${#missing_bp[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]} ${missing_bp[*]}"
    codename=$(sed -n "s/^VERSION_CODENAME=//p" /etc/os-release)
    if [ "${#missing_bp[@]}" -gt 0 ] && [ "$codename" = bookworm ] \
        && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        # the mirror this machine already uses for bookworm (or DEBIAN_MIRROR)
        mirror=$(sh tools/debian_mirror.sh bookworm)
        echo "deb $mirror bookworm-backports main" \
            | "${SUDO[@]}" tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
        done_steps+=("added bookworm-backports from $mirror to the apt sources")
    fi
    apt_quiet apt-get update -qq
    [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
    if [ "${#missing_bp[@]}" -gt 0 ]; then
        if [ "$codename" = bookworm ]; then
            apt_install -t bookworm-backports "${missing_bp[@]}"
        else
            apt_install "${missing_bp[@]}"
        fi
    fi
    done_steps+=("installed ${missing[*]} ${missing_bp[*]}")
fi

PYTHON=${PYTHON:-python3}
# A venv is brought up to date only when pyproject.toml or the requested extras changed
# since the last install into it (a hash kept in the venv), so a second run reinstalls
# nothing and prints one line.
make_venv() {
    local dir=$1; shift
    local stamp="$dir/.edge-runtime-installed" log="$dir/setup.log" want
    want=$({ cat pyproject.toml; echo "$*"; } | sha256sum | cut -d' ' -f1)
    if [ ! -x "$dir/bin/python" ]; then
        echo "setup: creating $dir (log: $log)"
        "$PYTHON" -m venv "$dir"
        "$dir/bin/python" -m pip install -q --upgrade pip >"$log" 2>&1 || fail "upgrading pip in $dir" "$log"
        done_steps+=("created $dir")
    elif [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$dir/bin/python" -c "import importlib.metadata as m; m.version('edge-runtime')" 2>/dev/null; then
        return 0
    else
        echo "setup: updating $dir (pyproject.toml changed; log: $log)"
        done_steps+=("reinstalled the project into $dir")
    fi
    "$dir/bin/python" -m pip install -q "$@" >>"$log" 2>&1 || fail "pip install into $dir" "$log"
    echo "$want" >"$stamp"
}

make_venv .venv -e ".[litert,converter,dev,onnx,torch,dev-torch,video]"
make_venv .venv-tflite -e ".[tflite,dev,video]"  # PyAV needs no numpy 2: sources tests run here too
if [ "${#done_steps[@]}" -eq 0 ]; then
    echo "setup: up to date (system packages, .venv with ai-edge-litert, TensorFlow and CPU PyTorch, .venv-tflite with tflite-runtime)"
else
    summary=$(printf '%s; ' "${done_steps[@]}")
    echo "setup: done: ${summary%; }"
fi
