#!/usr/bin/env bash
# The test command: sets up what is missing, then runs the suite under both backends.
#   1. host venv (.venv: ai-edge-litert + TensorFlow): every test
#   2. device venv (.venv-tflite: tflite-runtime, numpy<2): unit tests and every test
#      marked `backend` (those that exercise the interpreter end to end)
# Extra arguments go to both pytest runs (e.g. -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh

echo "== tests with ai-edge-litert (.venv)"
.venv/bin/python -m pytest tests "$@"

echo "== tests with tflite-runtime (.venv-tflite)"
EDGE_RUNTIME_BACKEND=tflite .venv-tflite/bin/python -m pytest tests \
    -m "backend or not (integration or slow or converter)" \
    --ignore=tests/converter --ignore=tests/deploy "$@"
