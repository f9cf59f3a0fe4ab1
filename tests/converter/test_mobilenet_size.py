"""A MobileNetV2-sized conversion (random weights, no download): it finishes, and its
wall time and peak memory are printed for the README (``pytest -s`` shows them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from convert_helpers import EDGE_CONVERT, KERAS_NUMPY2, ROOT

pytestmark = [pytest.mark.converter, pytest.mark.slow, KERAS_NUMPY2]

#: Runs one command as the only child of a fresh process, so RUSAGE_CHILDREN is its peak.
_MEASURE = """
import json, resource, subprocess, sys, time
start = time.monotonic()
done = subprocess.run(json.loads(sys.argv[1]), stdout=sys.stdout, stderr=subprocess.PIPE, text=True)
sys.stderr.write(done.stderr)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": time.monotonic() - start, "peak_rss_kib": peak}), file=sys.stderr)
sys.exit(done.returncode)
"""

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "cat", "hubble_deep_field")


def test_mobilenet_v2_224_converts_and_reports_time_and_memory(tmp_path):
    import tensorflow as tf
    from PIL import Image
    from skimage import data

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    path = tmp_path / "mobilenet_v2.keras"
    model.save(path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PHOTOS:
        Image.fromarray(getattr(data, name)()).convert("RGB").save(
            photos / f"{name}.jpg", quality=90
        )

    out = tmp_path / "mobilenet.edgebundle"
    command = [
        str(EDGE_CONVERT),
        str(path),
        "--calibration",
        str(photos),
        "--out",
        str(out),
        "--name",
        "mobilenet-v2",
        "--version",
        "0.1.0",
        "--resize",
        "crop",
        "--edgetpu",
        "--json",
    ]
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(command)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stderr.strip().splitlines()[-1])
    seconds, peak_mib = measured["seconds"], measured["peak_rss_kib"] / 1024
    report = json.loads(done.stdout)
    assert report["size_bytes"]["int8"] < report["size_bytes"]["float"] / 3
    assert report["calibration"]["samples"] == len(PHOTOS)
    assert report["validation"]["top1_agreement"] >= 0.5  # random weights: near-flat scores
    assert report["edgetpu"]["fully_mapped"], report["edgetpu"]["cpu_fallback"][:3]
    assert out.stat().st_size < 6_000_000
    print(
        f"\nMobileNetV2 224x224 (3.5 M params) -> int8 bundle: {seconds:.1f} s wall, "
        f"peak RSS {peak_mib:.0f} MiB, "
        f"float {report['size_bytes']['float'] / 1e6:.1f} MB "
        f"-> int8 {report['size_bytes']['int8'] / 1e6:.1f} MB"
    )
