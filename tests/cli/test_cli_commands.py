"""`edge-runtime predict`, `inspect` and `bench` on the committed models, run as users run them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.cli.cli_models import edgetpu_like, fallback_bundle
from tests.conftest import IMAGES, MODELS

pytestmark = pytest.mark.backend

DIGIT_IMAGES = [IMAGES / f"digit_{d}.png" for d in range(10)]
RECORD = json.loads((MODELS / "models.json").read_text())["models"]
LABELS = (MODELS / "digits_labels.txt").read_text().split()


def _json_lines(done) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("name", ["digits_float", "digits_int8", "digits_uint8", "digits_labeled"])
def test_predict_names_every_digit(edge_runtime_cli, name: str) -> None:
    info = RECORD[name]
    done = edge_runtime_cli(
        "predict",
        "--model",
        MODELS / info["file"],
        "--mean",
        info["mean"],
        "--std",
        info["std"],
        "--top-k",
        3,
        "--json",
        *DIGIT_IMAGES,
    )
    results = _json_lines(done)
    assert [r["top"][0]["index"] for r in results] == list(range(10))
    for result in results:
        assert len(result["top"]) == 3
        scores = [t["score"] for t in result["top"]]
        assert scores == sorted(scores, reverse=True) and 0.5 < scores[0] <= 1.0
        assert set(result) == {"image", "model", "top", "latency_ms"}
        assert set(result["model"]) == {"name", "version", "sha256"}
        assert set(result["latency_ms"]) == {"preprocess", "invoke", "postprocess"}
    if name == "digits_labeled":  # labels embedded in the .tflite
        assert [r["top"][0]["label"] for r in results] == LABELS
    else:
        assert results[0]["top"][0]["label"] is None


def test_labels_flag_wins_over_embedded_labels(edge_runtime_cli, tmp_path: Path) -> None:
    labels = tmp_path / "upper.txt"
    labels.write_text("\n".join(label.upper() for label in LABELS))
    done = edge_runtime_cli(
        "predict",
        "--model",
        MODELS / "digits_labeled.tflite",
        "--labels",
        labels,
        "--json",
        IMAGES / "digit_4.png",
    )
    assert _json_lines(done)[0]["top"][0]["label"] == "FOUR"


def test_bundle_carries_its_labels_and_identity(edge_runtime_cli) -> None:
    done = edge_runtime_cli(
        "predict", "--model", MODELS / "digits_v1.edgebundle", "--json", *DIGIT_IMAGES
    )
    results = _json_lines(done)
    assert [r["top"][0]["label"] for r in results] == LABELS
    assert results[0]["model"]["name"] == "digits" and results[0]["model"]["version"] == "1.0.0"


def test_text_output_is_readable(edge_runtime_cli) -> None:
    done = edge_runtime_cli(
        "predict", "--model", MODELS / "digits_labeled.tflite", IMAGES / "digit_8.png"
    )
    assert done.returncode == 0, done.stderr
    first, header, best = done.stdout.splitlines()[:3]
    assert first.startswith(str(IMAGES / "digit_8.png")) and "invoke" in first
    assert header.split() == ["score", "class", "label"]
    assert best.split()[-1] == "eight"


def _inspect(edge_runtime_cli, model: Path) -> dict:  # type: ignore[no-untyped-def, type-arg]
    done = edge_runtime_cli("inspect", "--json", model)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _iou(a: list[float], b: list[float]) -> float:
    ymin, xmin = max(a[0], b[0]), max(a[1], b[1])
    ymax, xmax = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ymax - ymin) * max(0.0, xmax - xmin)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def test_detection_model_finds_the_squares(edge_runtime_cli) -> None:
    info = RECORD["detect_int8"]
    done = edge_runtime_cli(
        "predict", "--model", MODELS / info["file"], "--json", IMAGES / "squares.png"
    )
    (result,) = _json_lines(done)
    assert "top" not in result
    boxes = [d["box"] for d in result["detections"]]
    assert len(boxes) == len(info["sample_truth_boxes"])
    for truth in info["sample_truth_boxes"]:
        assert max(_iou(truth, box) for box in boxes) > 0.5, (truth, boxes)
    for det in result["detections"]:
        assert 0.3 <= det["score"] <= 1.0 and all(0.0 <= v <= 1.0 for v in det["box"])


def test_letterbox_maps_boxes_back_onto_the_image(edge_runtime_cli) -> None:
    info = RECORD["detect_int8"]
    done = edge_runtime_cli(
        "predict",
        "--model",
        MODELS / info["file"],
        "--resize",
        "letterbox",
        "--json",
        IMAGES / "squares.png",
    )
    boxes = [d["box"] for d in _json_lines(done)[0]["detections"]]
    for truth in info["sample_truth_boxes"]:  # the sample is square: letterbox changes nothing
        assert max(_iou(truth, box) for box in boxes) > 0.5


def test_auto_falls_back_to_the_bundled_cpu_model_with_one_warning(
    edge_runtime_cli, tmp_path: Path
) -> None:
    bundle = fallback_bundle(tmp_path)
    done = edge_runtime_cli(
        "predict", "--model", bundle, "--json", IMAGES / "squares.png", IMAGES / "squares.png"
    )
    results = _json_lines(done)
    assert len(results) == 2 and len(results[0]["detections"]) == 2
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert (
        len(warnings) == 1
        and "Edge TPU not available" in warnings[0]
        and "libedgetpu" in warnings[0]
    )


def test_cpu_delegate_uses_the_bundled_cpu_model_silently(edge_runtime_cli, tmp_path: Path) -> None:
    bundle = fallback_bundle(tmp_path)
    done = edge_runtime_cli(
        "predict", "--delegate", "cpu", "--model", bundle, "--json", IMAGES / "squares.png"
    )
    assert len(_json_lines(done)[0]["detections"]) == 2
    assert done.stderr.strip() == ""


def test_inspect_json_reports_tensors_ops_and_labels(edge_runtime_cli) -> None:
    report = _inspect(edge_runtime_cli, MODELS / "digits_labeled.tflite")
    (inp,) = report["inputs"]
    assert inp["shape"] == [1, 8, 8, 1] and inp["dtype"] == "int8"
    assert inp["scale"] == pytest.approx(1 / 255) and inp["zero_point"] == -128
    assert report["outputs"][0]["shape"] == [1, 10]
    assert "FULLY_CONNECTED" in report["ops"] or "CONV_2D" in report["ops"]
    assert report["labels"] == LABELS and "embedded" in report["labels_source"]
    assert report["edgetpu_compiled"] is False and report["manifest"] is None


def test_inspect_recognises_an_edgetpu_model_and_a_bundle(edge_runtime_cli, tmp_path: Path) -> None:
    compiled = _inspect(edge_runtime_cli, edgetpu_like(tmp_path))
    assert compiled["edgetpu_compiled"] is True and compiled["ops"]["edgetpu-custom-op"] == 1
    bundle = _inspect(edge_runtime_cli, MODELS / "digits_v1.edgebundle")
    assert bundle["manifest"]["name"] == "digits" and bundle["manifest"]["version"] == "1.0.0"
    assert bundle["labels"] == LABELS and bundle["edgetpu_compiled"] is False


def test_inspect_text(edge_runtime_cli) -> None:
    done = edge_runtime_cli("inspect", MODELS / "detect_int8.tflite")
    assert done.returncode == 0, done.stderr
    assert "Edge TPU    not compiled for it" in done.stdout
    assert "TFLite_Detection_PostProcess" in done.stdout


def test_bench_reports_percentiles_throughput_and_rss(edge_runtime_cli) -> None:
    done = edge_runtime_cli(
        "bench",
        "--model",
        MODELS / "digits_int8.tflite",
        "--runs",
        30,
        "--warmup",
        3,
        "--threads",
        "1,2",
        "--json",
    )
    results = _json_lines(done)
    assert [r["threads"] for r in results] == [1, 2]
    for r in results:
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert r["runs"] == 30 and r["throughput_per_s"] > 0
        assert 10 * 2**20 < r["peak_rss_bytes"] < 4 * 2**30
        assert r["delegate"] == "cpu" and r["backend"]


def test_bench_compares_another_python(edge_runtime_cli) -> None:
    done = edge_runtime_cli(
        "bench",
        "--model",
        MODELS / "digits_int8.tflite",
        "--runs",
        10,
        "--warmup",
        1,
        "--compare-python",
        sys.executable,
        "--json",
    )
    results = _json_lines(done)
    assert len(results) == 2 and all(r["python"] for r in results)
