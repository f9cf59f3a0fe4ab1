#!/bin/bash
# Collect the wheels a device needs for an offline install (install.sh --wheel-dir,
# flash.sh --wheel-dir): the project wheel and its dependencies, built for the device's
# architecture and Python, downloaded on the operator's machine.
#
#   fetch-wheels.sh OUT_DIR --project-wheel edge_runtime-X.whl [--arch aarch64|armv7l]
#                   [--python 3.11] [--glibc 2.36] [--index-url URL]... [--extra NAME]...
#
# aarch64 and x86_64 (a container image) get the [litert] extra, and each --extra named;
# armv7l gets [tflite] with numpy<2 (tflite-runtime has no 32-bit ARM wheels on the default
# index: add --index-url with piwheels' simple index).
# PYTHON selects the interpreter that runs pip (default python3).
set -euo pipefail

die() { echo "fetch-wheels.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: fetch-wheels.sh OUT_DIR --project-wheel FILE [--arch aarch64|armv7l] [--python X.Y]"
OUT=$1; shift
ARCH=aarch64
PYVER=3.11
GLIBC=2.36
WHEEL=
INDEXES=()
EXTRAS=()
while [ $# -gt 0 ]; do
    case $1 in
        --arch) ARCH=${2:?}; shift 2 ;;
        --python) PYVER=${2:?}; shift 2 ;;
        --glibc) GLIBC=${2:?}; shift 2 ;;
        --project-wheel) WHEEL=${2:?}; shift 2 ;;
        --index-url) INDEXES+=(--extra-index-url "${2:?}"); shift 2 ;;
        --extra) EXTRAS+=("${2:?}"); shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
[ -f "$WHEEL" ] || die "--project-wheel must be the edge_runtime wheel (python -m pip wheel --no-deps .)"
[[ $PYVER =~ ^3\.[0-9]+$ ]] || die "--python must look like 3.11"
[[ $GLIBC =~ ^2\.[0-9]+$ ]] || die "--glibc must look like 2.36"
case $ARCH in
    aarch64 | x86_64) spec=litert; constraints=() ;;
    armv7l) spec=tflite; constraints=("numpy<2") ;;
    *) die "--arch must be aarch64, x86_64 or armv7l" ;;
esac
for extra in ${EXTRAS[@]+"${EXTRAS[@]}"}; do spec="$spec,$extra"; done
# Every manylinux tag the device's glibc runs (Debian 12 "bookworm": 2.36, 13: 2.41).
platforms=("linux_$ARCH" "manylinux2014_$ARCH")
for minor in $(seq 17 "${GLIBC#2.}"); do platforms+=("manylinux_2_${minor}_$ARCH"); done
mkdir -p "$OUT"
cp "$WHEEL" "$OUT/"
plat_args=()
for p in "${platforms[@]}"; do plat_args+=(--platform "$p"); done
abi=cp${PYVER/./}
"${PYTHON:-python3}" -m pip download --disable-pip-version-check --no-input --only-binary=:all: \
    "${plat_args[@]}" --python-version "$PYVER" --implementation cp --abi "$abi" --abi abi3 --abi none \
    ${INDEXES[@]+"${INDEXES[@]}"} --dest "$OUT" "$OUT/$(basename "$WHEEL")[$spec]" ${constraints[@]+"${constraints[@]}"}
echo "fetch-wheels.sh: $(find "$OUT" -name '*.whl' | wc -l) wheels in $OUT"
