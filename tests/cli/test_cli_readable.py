"""What ``inspect``, ``predict`` and ``bench`` print for a person: short summaries, tables
with a header row, labels or a word on their absence, and timings explained."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from edge_runtime.trust.keys import generate_signing_key, short_id
from edge_runtime.trust.signing import sign_bundle
from tests.conftest import IMAGES, MODELS

pytestmark = pytest.mark.backend

BUNDLE = MODELS / "digits_v1.edgebundle"
DETECT = MODELS / "detect_int8.tflite"


def _ok(done) -> str:  # type: ignore[no-untyped-def]
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return str(done.stdout)


def _field(out: str, key: str) -> str:
    """The value on the summary line that starts with ``key``."""
    (line,) = [line for line in out.splitlines() if line.startswith(f"  {key} ")]
    return line[len(key) + 2 :].strip()


def test_inspect_summarises_a_bundle_in_a_screenful(edge_runtime_cli) -> None:
    out = _ok(edge_runtime_cli("inspect", BUNDLE))
    assert len(out.splitlines()) <= 15
    assert "{" not in out and "metrics" not in out and 'sha256": ' not in out
    assert _field(out, "model").startswith("digits 1.0.0")
    assert _field(out, "input").startswith("int8 [1, 8, 8, 1] scale 0.00392157 zero point -128")
    assert "mean 0 std 255" in _field(out, "input")
    assert _field(out, "outputs").startswith("classification: int8 [1, 10]")
    assert _field(out, "labels").startswith("10 from bundle")
    accuracy = _field(out, "accuracy")
    assert "int8 top-1 0.9722" in accuracy and "float 0.9722" in accuracy and "360" in accuracy
    assert "unsigned" in _field(out, "signatures")
    assert "bundle 30,720 bytes" in _field(out, "size") and "14,872" in _field(out, "size")
    assert "inspect --json" in out.splitlines()[-1]


def test_inspect_names_the_keys_that_signed_a_bundle(edge_runtime_cli, tmp_path: Path) -> None:
    bundle = shutil.copy(BUNDLE, tmp_path / "signed.edgebundle")
    key = generate_signing_key()
    sign_bundle(bundle, key)
    out = _ok(edge_runtime_cli("inspect", bundle))
    signatures = _field(out, "signatures")
    assert signatures.startswith(f"1 by key(s) {short_id(key.keyid)}")
    assert "not checked here" in signatures and "edge-runtime verify" in signatures
    report = json.loads(_ok(edge_runtime_cli("inspect", "--json", bundle)))
    assert report["signatures"] == [key.keyid]


def test_inspect_a_detection_model(edge_runtime_cli) -> None:
    out = _ok(edge_runtime_cli("inspect", DETECT))
    assert _field(out, "outputs").startswith("detection: ")
    assert {"boxes", "classes", "scores", "count"} <= set(
        re.findall(r"\w+", _field(out, "outputs"))
    )
    assert _field(out, "labels").startswith("none") and "--labels" in _field(out, "labels")
    assert _field(out, "signatures").startswith("none")
    assert "TFLite_Detection_PostProcess x1" in _field(out, "ops")
    assert _field(out, "Edge TPU") == "not compiled for it"


def test_inspect_json_keeps_everything(edge_runtime_cli) -> None:
    report = json.loads(_ok(edge_runtime_cli("inspect", "--json", BUNDLE)))
    assert report["manifest"]["metrics"]["validation"]["int8_top1"] == pytest.approx(0.972222)
    assert report["signatures"] == [] and report["file_bytes"] == BUNDLE.stat().st_size
    assert report["output_kind"] == "classification" and report["outputs"][0]["role"] is None
    detect = json.loads(_ok(edge_runtime_cli("inspect", "--json", DETECT)))
    assert detect["signatures"] is None and detect["output_kind"] == "detection"
    assert sorted(t["role"] for t in detect["outputs"]) == ["boxes", "classes", "count", "scores"]


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if re.match(r"^\s+\d\.\d{4}\s", line)]


def test_predict_detections_have_a_header_with_the_box_order(edge_runtime_cli) -> None:
    out = _ok(edge_runtime_cli("predict", "--model", DETECT, IMAGES / "squares.png"))
    heading, header = out.splitlines()[:2]
    assert header.split()[:3] == ["score", "class", "box"]
    assert "[ymin, xmin, ymax, xmax], 0..1 of the image" in header
    assert "no labels" in header and "--labels" in header
    rows = _rows(out)
    assert len(rows) == 2
    for row in rows:  # score, class, then the four coordinates: no empty label column
        assert len(row) == 6 and row[2].startswith("[") and row[5].endswith("]")


def test_predict_detections_with_labels_name_them(edge_runtime_cli, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("square\n")
    out = _ok(
        edge_runtime_cli("predict", "--model", DETECT, "--labels", labels, IMAGES / "squares.png")
    )
    header = out.splitlines()[1]
    assert header.split()[:4] == ["score", "class", "label", "box"] and "no labels" not in header
    assert [row[2] for row in _rows(out)] == ["square", "square"]


def test_predict_unlabelled_classes_say_so_instead_of_an_empty_column(edge_runtime_cli) -> None:
    out = _ok(
        edge_runtime_cli(
            "predict",
            "--model",
            MODELS / "digits_int8.tflite",
            "--top-k",
            2,
            IMAGES / "digit_3.png",
            IMAGES / "digit_4.png",
        )
    )
    lines = out.splitlines()
    assert lines[1].split()[:2] == ["score", "class"] and "--labels" in lines[1]
    assert all(line == line.rstrip() for line in lines)
    assert [row[1] for row in _rows(out)] == ["3", "0", "4", "0"]
    assert all(len(row) == 2 for row in _rows(out))


def test_predict_says_the_first_image_paid_the_one_time_set_up(edge_runtime_cli) -> None:
    out = _ok(
        edge_runtime_cli(
            "predict",
            "--model",
            BUNDLE,
            "--top-k",
            1,
            IMAGES / "digit_3.png",
            IMAGES / "digit_4.png",
        )
    )
    headings = [line for line in out.splitlines() if line.startswith(str(IMAGES))]
    assert "first image: includes one-time set-up" in headings[0]
    assert "first image" not in headings[1]
    assert out.splitlines()[1].split() == ["score", "class", "label"]
    assert [row[2] for row in _rows(out)] == ["three", "four"]


def _bench(edge_runtime_cli, *extra: str) -> str:  # type: ignore[no-untyped-def]
    return _ok(
        edge_runtime_cli(
            "bench",
            "--model",
            MODELS / "digits_int8.tflite",
            "--runs",
            20,
            "--warmup",
            2,
            "--image",
            IMAGES / "digit_3.png",
            *extra,
        )
    )


def test_bench_shows_three_significant_digits_and_the_first_call(edge_runtime_cli) -> None:
    out = _bench(edge_runtime_cli)
    header, row = out.splitlines()[:2]
    assert header.split()[2:5] == ["p50", "ms", "p90"]
    for value in row.split()[3:6]:  # p50 p90 p99
        digits = value.replace(".", "").lstrip("0")
        assert len(digits) >= 3, row
    assert re.search(r"first call: invoke [\d.]+ ms, preprocess [\d.]+ ms", out)
    assert "one-time set-up" in out.splitlines()[-1] and "predict" in out.splitlines()[-1]


def test_bench_json_reports_the_first_call_apart(edge_runtime_cli) -> None:
    out = _bench(edge_runtime_cli, "--json")
    row = json.loads(out)
    assert row["first_invoke_ms"] > 0 and row["first_preprocess_ms"] > 0
    assert row["preprocess_ms_p50"] > 0


@pytest.mark.parametrize("option", ["--runs", "--warmup", "--json", "--image", "--threads"])
def test_bench_options_have_help(edge_runtime_cli, option: str) -> None:
    out = _ok(edge_runtime_cli("bench", "--help"))
    blocks = re.findall(r"^  (-.*?)(?=^  -|\Z)", out, flags=re.MULTILINE | re.DOTALL)
    (block,) = [b for b in blocks if b.split()[0] == option]
    words = block.split()[1:]
    help_words = [w for w in words if not w.isupper()]  # leave out the metavar
    assert len(help_words) >= 3, block
