#!/bin/bash
# Build the edge-runtime daemon's container image (linux/amd64 and linux/arm64) with podman,
# without pulling anything from an image registry:
#   1. a Debian root file system made here with debootstrap (rootfs.sh), imported as base;
#   2. the project's wheel (python -m build) and its dependencies' wheels for the image's
#      architecture (fetch-wheels.sh: this machine's pip and its pip configuration);
#   3. podman build --network none: a venv with the [litert] extra (and [video] when the
#      package has it) on the base; non-root user, `edge-runtime` entrypoint, health check.
# With --broker, also a mosquitto image from a debootstrap root (for compose.yaml).
#
#   build.sh [--arch amd64|arm64]... [--broker] [--cache DIR] [--name IMAGE] [--save DIR]
#
# Default: both architectures, cache in .cache/container of the checkout (the debootstrap
# roots and the wheels are made once and kept there; podman keeps the image layers).
# Tags: IMAGE:VERSION-ARCH, and IMAGE:VERSION for this machine's architecture (default
# IMAGE localhost/edge-runtime). --save writes each image as a docker-archive tarball that
# `podman load` / `docker load` take on a device. Prints one line per image with its size.
# IMAGE:VERSION-ARCH-install is the build stage (the venv with pip), kept as the cache.
# Needs root, podman with runc (crun or podman's default runtime also do where they run),
# debootstrap, python3 with `build`; arm64 on another machine also qemu-user-static.
# PODMAN_RUNTIME, PODMAN_ULIMITS (default "nofile=4096:4096 nproc=4096:4096") override.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "build.sh: $*" >&2; exit 1; }

archs=()
broker=0
cache="$repo/.cache/container"
name=localhost/edge-runtime
save=
while [ $# -gt 0 ]; do
    case $1 in
        --arch) archs+=("${2:?--arch needs amd64 or arm64}"); shift 2 ;;
        --broker) broker=1; shift ;;
        --cache) cache=${2:?--cache needs a folder}; shift 2 ;;
        --name) name=${2:?--name needs an image name}; shift 2 ;;
        --save) save=${2:?--save needs a folder}; shift 2 ;;
        -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
[ "${#archs[@]}" -gt 0 ] || archs=(amd64 arm64)
for arch in "${archs[@]}"; do
    case $arch in amd64 | arm64) ;; *) die "--arch must be amd64 or arm64, not $arch" ;; esac
done
command -v podman >/dev/null || die "podman is missing (apt-get install podman runc)"
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, and podman's image store)"
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
PYTHON=${PYTHON:-python3}

runtime=${PODMAN_RUNTIME:-}
if [ -z "$runtime" ] && command -v runc >/dev/null; then runtime=runc; fi
podman=(podman ${runtime:+--runtime "$runtime"})
read -r -a ulimits <<<"${PODMAN_ULIMITS:-nofile=4096:4096 nproc=4096:4096}"
ulimit_args=()
for u in "${ulimits[@]}"; do ulimit_args+=(--ulimit "$u"); done
case $(uname -m) in x86_64) native=amd64 ;; aarch64) native=arm64 ;; *) native= ;; esac

work=$(mktemp -d "$cache/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
log="$work/build.log"
quiet() { "$@" >>"$log" 2>&1 || { echo "build.sh: $* failed; the last lines:" >&2; tail -n 40 "$log" >&2; exit 1; }; }

# The project wheel: from an sdist, as `python -m build` makes it; the commit's time as the
# files' time, so that an unchanged tree gives the same bytes and the image layer is kept.
epoch=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 315532800)
SOURCE_DATE_EPOCH=$epoch quiet "$PYTHON" -m build --outdir "$work/dist" "$repo"
wheel=$(find "$work/dist" -name 'edge_runtime-*.whl' | head -n 1)
[ -n "$wheel" ] || die "python -m build made no edge_runtime wheel"
version=$(basename "$wheel" | cut -d- -f2)
metadata=$("$PYTHON" -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]).decode())' \
    "$wheel" "edge_runtime-$version.dist-info/METADATA")
extras=()
if grep -qx 'Provides-Extra: video' <<<"$metadata"; then extras=(--extra video); fi

# A base image per debootstrap root, imported again only when the tarball changed.
base_image() { # ARCH KIND -> image name
    local arch=$1 kind=$2 tarball stamp want
    tarball=$(sh "$here/rootfs.sh" "$arch" "$cache" "$kind")
    want=$(stat -c '%s %Y' "$tarball")
    stamp="$tarball.imported"
    local image="localhost/edge-runtime-base:bookworm-$kind-$arch"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "${podman[@]}" image exists "$image"; then
        quiet "${podman[@]}" import --arch "$arch" --os linux "$tarball" "$image"
        echo "$want" >"$stamp"
    fi
    echo "$image"
}

# The dependencies' wheels for ARCH, downloaded again only when the requirements changed.
deps_dir() { # ARCH -> folder
    local arch=$1 pyarch key dir
    case $arch in amd64) pyarch=x86_64 ;; arm64) pyarch=aarch64 ;; esac
    key=$( { grep '^Requires-Dist:' <<<"$metadata"; echo "$arch ${extras[*]-}"; } | sha256sum | cut -c1-16)
    dir="$cache/wheels-$arch-$key"
    if [ ! -d "$dir" ]; then
        rm -rf "$work/wheels-$arch"
        PYTHON=$PYTHON quiet bash "$repo/deploy_scripts/fetch-wheels.sh" "$work/wheels-$arch" \
            --project-wheel "$wheel" --arch "$pyarch" ${extras[@]+"${extras[@]}"}
        rm -f "$work/wheels-$arch"/edge_runtime-*.whl
        rm -rf "$cache"/wheels-"$arch"-*
        mv "$work/wheels-$arch" "$dir"
    fi
    echo "$dir"
}

image_id() { "${podman[@]}" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
# The image a tag named before this build, once nothing names it any more, goes (with the
# cached layers only it used), so that repeated builds do not fill the disk.
drop_replaced() { # OLD_ID TAG
    if [ -n "$1" ] && [ "$1" != "$(image_id "$2")" ]; then
        "${podman[@]}" rmi "$1" >/dev/null 2>&1 || true
    fi
}

report() { # IMAGE ARCH
    local size
    size=$("${podman[@]}" image inspect --format '{{.Size}}' "$1")
    echo "built $1 (linux/$2): $((size / 1000000)) MB"
    if [ -n "$save" ]; then
        mkdir -p "$save"
        local file
        file="$save/$(basename "${1%%:*}")-${1##*:}.tar"
        quiet "${podman[@]}" save --format docker-archive -o "$file" "$1"
        echo "saved $file ($(($(stat -c %s "$file") / 1000000)) MB)"
    fi
}

for arch in "${archs[@]}"; do
    base=$(base_image "$arch" python)
    ctx="$work/context-$arch"
    mkdir -p "$ctx/project"
    cp -l -r "$(deps_dir "$arch")" "$ctx/deps"
    cp "$wheel" "$ctx/project/"
    tag="$name:$version-$arch"
    build_args=(--network none --pull=never --format docker "${ulimit_args[@]}"
        --platform "linux/$arch" --build-arg "BASE=$base" --build-arg "VERSION=$version"
        -f "$here/Containerfile")
    # The install stage under a tag of its own, so that the layers of its last build stay
    # cached and those of the one before go (a changed project leaves no unnamed layers).
    old=$(image_id "$tag-install")
    quiet "${podman[@]}" build "${build_args[@]}" --target install -t "$tag-install" "$ctx"
    drop_replaced "$old" "$tag-install"
    old=$(image_id "$tag")
    quiet "${podman[@]}" build "${build_args[@]}" -t "$tag" "$ctx"
    [ "$arch" != "$native" ] || quiet "${podman[@]}" tag "$tag" "$name:$version"
    drop_replaced "$old" "$tag"
    report "$tag" "$arch"
    if [ "$broker" = 1 ]; then
        btag="${name}-mosquitto:$version-$arch"
        old=$(image_id "$btag")
        quiet "${podman[@]}" build --network none --pull=never --format docker \
            "${ulimit_args[@]}" --platform "linux/$arch" \
            --build-arg "BASE=$(base_image "$arch" mosquitto)" -t "$btag" \
            -f "$here/Containerfile.mosquitto" "$here"
        [ "$arch" != "$native" ] || quiet "${podman[@]}" tag "$btag" "${name}-mosquitto:$version"
        drop_replaced "$old" "$btag"
        report "$btag" "$arch"
    fi
done
