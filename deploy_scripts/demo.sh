#!/usr/bin/env bash
# The whole story on one machine, in a few minutes:
#   a broker on 127.0.0.1, signing keys and a trust file, a float model converted to a
#   signed int8 bundle, the daemon serving it, requests and their predictions over MQTT,
#   telemetry, and a signed update published to the device.
# Everything lives in a temporary folder (kept with --keep) and is stopped on exit.
#   ./deploy_scripts/demo.sh [--keep] [--no-setup]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

KEEP=0
SETUP=1
for arg in "$@"; do
    case "$arg" in
        --keep) KEEP=1 ;;
        --no-setup) SETUP=0 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "demo.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

step() { printf '\n== %s\n' "$*"; }

if [ "$SETUP" -eq 1 ]; then
    bash tools/setup.sh  # one line when nothing changed
fi
BIN=$ROOT/.venv/bin
PY=$BIN/python
for tool in mosquitto mosquitto_pub mosquitto_sub; do
    command -v "$tool" >/dev/null || { echo "demo.sh: $tool is missing; run tools/setup.sh" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/edge-demo.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$KEEP" -eq 1 ]; then echo "demo files kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
DEVICE=demo-pi
PREFIX=edge

PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "Broker: mosquitto on 127.0.0.1:$PORT"
cat > "$WORK/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
EOF
mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 50); do
    "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
    sleep 0.1
done
sub() { mosquitto_sub -h 127.0.0.1 -p "$PORT" "$@"; }
pub() { mosquitto_pub -h 127.0.0.1 -p "$PORT" "$@"; }

step "Keys: an Ed25519 signing key and the trust file devices hold"
"$BIN/edge-fleet" keygen --out "$WORK/keys"
"$BIN/edge-fleet" trust init --key "$WORK/keys/signing.pub" --out "$WORK/trust.json"

step "Data: calibration images from scikit-learn's digits"
"$PY" - "$WORK/calibration" "$WORK/requests" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

digits = load_digits()
calibration, requests = Path(sys.argv[1]), Path(sys.argv[2])
calibration.mkdir()
requests.mkdir()
pixels = (digits.images * (255 / 16)).round().astype(np.uint8)
for i in range(150):  # the first 150 for calibration
    Image.fromarray(pixels[i], mode="L").save(calibration / f"{i:04d}.png")
for n, i in enumerate(range(1700, 1710)):  # ten others as requests, named after their digit
    Image.fromarray(pixels[i], mode="L").save(requests / f"{n}-digit-{digits.target[i]}.png")
print(f"{len(list(calibration.iterdir()))} calibration images, 10 request images")
EOF

FLOAT=$ROOT/tests/fixtures/models/digits_float.tflite
convert() {  # convert VERSION OUT [extra edge-convert flags]
    local version=$1 out=$2
    shift 2
    "$BIN/edge-convert" "$FLOAT" --calibration "$WORK/calibration" \
        --validation "$ROOT/tests/fixtures/models/digits_test.npz" \
        --labels "$ROOT/tests/fixtures/models/digits_labels.txt" \
        --name digits --version "$version" --mean 0 --std 255 \
        --sign-key "$WORK/keys/signing.key" --out "$out" "$@"
}
step "Convert: float digits CNN -> full-integer int8, accuracy gate 1 point, signed bundle v1.0.0"
convert 1.0.0 "$WORK/digits-1.0.0.edgebundle"

step "Verify the bundle as a device would"
"$BIN/edge-runtime" verify "$WORK/digits-1.0.0.edgebundle" --trust "$WORK/trust.json"

step "Daemon: edge-runtime run (device $DEVICE)"
cat > "$WORK/config.toml" <<EOF
device_id = "$DEVICE"
state_dir = "$WORK/state"
groups = ["demo"]

[model]
path = "$WORK/digits-1.0.0.edgebundle"
delegate = "auto"
threads = 1

[mqtt]
host = "127.0.0.1"
port = $PORT
prefix = "$PREFIX"

[telemetry]
interval = 2

[update]
trust = "$WORK/trust.json"
file_roots = ["$WORK"]    # the demo publishes file:// URLs of bundles in its own folder
probation_requests = 10   # a new model is on probation for its first 10 requests
EOF
"$BIN/edge-runtime" run --config "$WORK/config.toml" --check
"$BIN/edge-runtime" run --config "$WORK/config.toml" > "$WORK/daemon.log" 2>&1 &
DAEMON=$!
PIDS+=("$DAEMON")
status=$(sub -t "$PREFIX/$DEVICE/status" -C 1 -W 30 || true)
echo "status: ${status:-no answer}"
[ "$status" = online ] || { echo "demo.sh: the daemon did not come online; its log:" >&2; cat "$WORK/daemon.log" >&2; exit 1; }

show() {  # show KIND FILE: one readable line per message (deploy_scripts/demo_show.py)
    "$PY" "$ROOT/deploy_scripts/demo_show.py" "$@"
}
send_requests() {  # send_requests TAG: publishes the ten digits as JSON requests, prints answers
    local tag=$1 answers=$WORK/answers-$1.jsonl
    sub -t "$PREFIX/$DEVICE/predictions" -C 10 -W 30 > "$answers" &
    local listener=$!
    sleep 1  # let mosquitto_sub subscribe first
    for image in "$WORK"/requests/*.png; do
        local name
        name=$(basename "$image" .png)
        printf '{"id": "%s-%s", "image_b64": "%s"}' "$tag" "$name" "$(base64 -w0 "$image")" \
            | pub -t "$PREFIX/$DEVICE/infer" -q 1 -s
    done
    wait "$listener" || true
    show predictions "$answers"
    echo "  $(wc -l < "$answers") of 10 answered"
}

step "Requests: ten digit images published to $PREFIX/$DEVICE/infer"
send_requests v1

step "A bad request gets an error, and the daemon keeps serving"
sub -t "$PREFIX/$DEVICE/errors" -C 1 -W 10 > "$WORK/error.json" &
listener=$!
sleep 1
printf 'this is not an image' | pub -t "$PREFIX/$DEVICE/infer" -q 1 -s
wait "$listener" || true
show error "$WORK/error.json"

step "Telemetry from $PREFIX/$DEVICE/telemetry"
sub -t "$PREFIX/$DEVICE/telemetry" -C 1 -W 10 > "$WORK/telemetry.json"
show telemetry "$WORK/telemetry.json"

step "Update: convert and sign v1.1.0 (uint8 input), publish it to group demo while requests stream"
convert 1.1.0 "$WORK/digits-1.1.0.edgebundle" --input-type uint8 > "$WORK/convert-1.1.0.log"
grep -E '^(size|accuracy|bundle) ' "$WORK/convert-1.1.0.log"
sub -t "$PREFIX/$DEVICE/predictions" -C 40 -W 60 > "$WORK/during-swap.jsonl" &
stream=$!
sleep 1
(  # a stream of requests runs across the swap
    for n in $(seq 40); do
        printf '{"id": "swap-%02d", "image_b64": "%s"}' "$n" "$(base64 -w0 "$WORK/requests/0-"*.png)" \
            | pub -t "$PREFIX/$DEVICE/infer" -q 1 -s
        sleep 0.05
    done
) &
sender=$!
"$BIN/edge-fleet" publish "$WORK/digits-1.1.0.edgebundle" --host 127.0.0.1 --port "$PORT" \
    --group demo --trust "$WORK/trust.json" --wait 60
wait "$sender"
wait "$stream" || true
echo "  requests sent during the swap: 40, answered: $(wc -l < "$WORK/during-swap.jsonl")," \
    "by version: $(grep -o '"version":"[0-9.]*"' "$WORK/during-swap.jsonl" | cut -d'"' -f4 | sort | uniq -c \
        | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }')"
sub -t "$PREFIX/$DEVICE/model/state" -C 1 -W 5 > "$WORK/state-after-swap.json"
show state "$WORK/state-after-swap.json"

step "Requests after the swap"
send_requests v1.1
sleep 1  # the gate gives its verdict within half a second of the last request it needs
sub -t "$PREFIX/$DEVICE/model/state" -C 1 -W 5 > "$WORK/state.json"
show probation "$WORK/state.json"

step "Fleet status"
"$BIN/edge-fleet" status --host 127.0.0.1 --port "$PORT" --wait 2.5

step "Stop: SIGTERM drains in-flight requests; the broker keeps the retained status"
kill -TERM "$DAEMON"
wait "$DAEMON" && echo "  daemon exited 0"
echo "  status now: $(sub -t "$PREFIX/$DEVICE/status" -C 1 -W 5 || true)"
step "Camera: a clip of the scanned digits played as a file:// source, changes published"
if "$PY" -c "import av" 2>/dev/null; then
    "$PY" - "$WORK/requests" "$WORK/camera.mp4" <<'EOF'
import sys
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

images = [Image.open(p).convert("RGB").resize((64, 64), Image.Resampling.NEAREST)
          for p in sorted(Path(sys.argv[1]).glob("*.png"))]
with av.open(sys.argv[2], "w") as out:  # H.264, 10 fps, each digit for half a second
    stream = out.add_stream("libx264", rate=10, options={"qp": "0", "preset": "ultrafast"})
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    stream.time_base = Fraction(1, 10)
    for n in range(len(images) * 5):
        frame = av.VideoFrame.from_image(images[n // 5])
        frame.pts = n
        out.mux(stream.encode(frame))
    out.mux(stream.encode())
print(f"  {len(images)} digits, {len(images) * 5} frames at 10 fps")
EOF
    { cat "$WORK/config.toml"; cat <<EOF; } > "$WORK/camera.toml"

[[sources]]
name = "desk"
url = "file://$WORK/camera.mp4"
fps = 0.0
publish = "changes"
snapshot = true
EOF
    CAM=$PREFIX/$DEVICE/sources/desk
    # mosquitto_sub itself (not the sub function's subshell), so that kill reaches it
    mosquitto_sub -h 127.0.0.1 -p "$PORT" -t "$CAM/predictions" -W 60 > "$WORK/changes.jsonl" &
    changes=$!
    sub -t "$CAM/state" -C 3 -W 30 > "$WORK/camera-states.jsonl" &
    states=$!
    PIDS+=("$changes" "$states")
    sleep 1
    "$BIN/edge-runtime" run --config "$WORK/camera.toml" > "$WORK/camera.log" 2>&1 &
    DAEMON=$!
    PIDS+=("$DAEMON")
    wait "$states" || true
    sleep 0.5
    kill "$changes" 2>/dev/null || true
    wait "$changes" 2>/dev/null || true
    show states "$WORK/camera-states.jsonl"
    show changes "$WORK/changes.jsonl"
    sub -t "$CAM/snapshot" -C 1 -W 5 > "$WORK/snapshot.jpg" || true
    show snapshot "$WORK/snapshot.jpg"
    kill -TERM "$DAEMON"
    wait "$DAEMON" && echo "  daemon exited 0"
else
    echo "  PyAV is not installed (pip install 'edge-runtime[video]'): no camera"
fi

step "Done"
