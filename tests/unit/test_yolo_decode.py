"""YOLO heads decoded on the device: layouts, units, thresholds, per-class NMS and boxes
mapped back through letterboxing, each checked against a plain reference decoder written
here box by box (the textbook greedy NMS), not against the code under test."""

from __future__ import annotations

import bundle_factory as bf
import numpy as np
import pytest
from PIL import Image

from edge_runtime.bundle.manifest import parse_manifest
from edge_runtime.daemon.config import parse_config
from edge_runtime.errors import BundleError, ConfigError, ModelError
from edge_runtime.inference.nms import nms
from edge_runtime.inference.outputs import resolve_layout, yolo_anchors
from edge_runtime.inference.postprocess import yolo_detections
from edge_runtime.inference.preprocess import resize
from edge_runtime.inference.types import DetectionSettings, Quantization, TensorSpec
from edge_runtime.inference.yolo import YoloHead, decode
from tests.support.yolo_reference import iou, reference_decode

SIZE = 320
CLASSES = 6


def reference(rows: np.ndarray, fmt: str, units: str, settings: DetectionSettings) -> list:
    return reference_decode(
        rows,
        fmt,
        score_threshold=settings.score_threshold,
        iou_threshold=settings.iou_threshold,
        max_detections=settings.max_detections,
        pixels_of=(SIZE, SIZE) if units == "pixels" else None,
    )


# ---- realistic heads: clusters of boxes around a few objects --------------------------------


def head_rows(rng: np.random.Generator, fmt: str, units: str, n: int = 600) -> np.ndarray:
    """Candidates as rows (float): most score low, some cluster around six objects."""
    extra = 1 if fmt == "yolov5" else 0
    rows = np.zeros((n, 4 + extra + CLASSES), dtype=np.float32)
    centres = rng.uniform(0.2, 0.8, size=(6, 2))
    sizes = rng.uniform(0.1, 0.4, size=(6, 2))
    obj = rng.integers(0, 6, size=n)
    rows[:, 0:2] = centres[obj] + rng.normal(0, 0.02, size=(n, 2))
    rows[:, 2:4] = sizes[obj] * rng.uniform(0.8, 1.2, size=(n, 2))
    scores = rng.uniform(0, 0.3, size=(n, CLASSES))
    hot = rng.random(n) < 0.3
    scores[hot, obj[hot] % CLASSES] = rng.uniform(0.3, 0.99, size=hot.sum())
    rows[:, 4 + extra :] = scores
    if extra:
        rows[:, 4] = np.where(hot, rng.uniform(0.6, 1.0, size=n), rng.uniform(0, 0.5, size=n))
    if units == "pixels":
        rows[:, :4] *= SIZE
    return rows


def as_tensor(rows: np.ndarray, fmt: str) -> np.ndarray:
    return (rows.T if fmt == "yolov8" else rows)[None, ...].copy()


def quantize(values: np.ndarray) -> tuple[np.ndarray, Quantization]:
    scale = float(values.max()) / 255
    q = np.clip(np.round(values / scale) - 128, -128, 127).astype(np.int8)
    return q, Quantization(scale, -128)


SETTINGS = DetectionSettings(score_threshold=0.3, iou_threshold=0.5, max_detections=100)


@pytest.mark.parametrize("fmt", ["yolov5", "yolov8"])
@pytest.mark.parametrize("units", ["normalized", "pixels"])
def test_float_heads_match_the_reference_decoder(fmt: str, units: str) -> None:
    rng = np.random.default_rng(7)
    rows = head_rows(rng, fmt, units)
    head = YoloHead(fmt, units, SIZE, SIZE)
    got = decode(as_tensor(rows, fmt), Quantization(), head, SETTINGS)
    want = reference(rows, fmt, units, SETTINGS)
    assert len(want) > 6  # several classes, suppression had work to do
    assert got.classes.tolist() == [c for c, _, _ in want]
    np.testing.assert_allclose(got.scores, [s for _, s, _ in want], rtol=1e-6)
    np.testing.assert_allclose(got.boxes, np.array([w[2] for w in want]), atol=1e-5)
    assert got.class_count == CLASSES


@pytest.mark.parametrize("fmt", ["yolov5", "yolov8"])
def test_int8_heads_match_the_reference_on_their_dequantised_values(fmt: str) -> None:
    rng = np.random.default_rng(11)
    rows = head_rows(rng, fmt, "normalized")
    q, quant = quantize(as_tensor(rows, fmt))
    got = decode(q, quant, YoloHead(fmt, "normalized", SIZE, SIZE), SETTINGS)
    real = quant.scale * (q.astype(np.float32) - quant.zero_point)
    table = real[0].T if fmt == "yolov8" else real[0]
    want = reference(table, fmt, "normalized", SETTINGS)
    assert [c for c, _, _ in want] == got.classes.tolist()
    np.testing.assert_allclose(got.scores, [s for _, s, _ in want], rtol=1e-5)
    np.testing.assert_allclose(got.boxes, np.array([w[2] for w in want]), atol=1e-5)


def test_nms_is_per_class_and_follows_chains_like_greedy_nms() -> None:
    # A suppresses B; B would have suppressed C, but B is gone, so C stays. D overlaps A
    # entirely but is another class, so it stays too.
    boxes = np.array(
        [
            [0.0, 0.0, 0.4, 0.4],  # A
            [0.0, 0.1, 0.4, 0.5],  # B: IoU(A, B) 0.6
            [0.0, 0.2, 0.4, 0.6],  # C: IoU(B, C) 0.6, IoU(A, C) 0.33
            [0.0, 0.0, 0.4, 0.4],  # D
        ]
    )
    kept = nms(
        boxes,
        np.array([0.9, 0.8, 0.7, 0.6]),
        np.array([1, 1, 1, 2]),
        iou_threshold=0.5,
        max_detections=10,
    )
    assert kept.tolist() == [0, 2, 3]
    assert nms(boxes, np.zeros(4), np.zeros(4), iou_threshold=0.5, max_detections=1).size == 1


def test_threshold_and_max_detections_apply() -> None:
    rows = head_rows(np.random.default_rng(3), "yolov8", "normalized")
    head = YoloHead("yolov8", "normalized", SIZE, SIZE)
    few = decode(as_tensor(rows, "yolov8"), Quantization(), head, DetectionSettings(0.3, 0.5, 2))
    assert few.scores.size == 2
    none = decode(as_tensor(rows, "yolov8"), Quantization(), head, DetectionSettings(1.0, 0.5, 9))
    assert none.scores.size == 0 and none.boxes.shape == (0, 4)


def test_nan_scores_are_no_detections() -> None:
    rows = head_rows(np.random.default_rng(5), "yolov8", "normalized")
    rows[:, 4:] = np.nan
    head = YoloHead("yolov8", "normalized", SIZE, SIZE)
    assert decode(as_tensor(rows, "yolov8"), Quantization(), head, SETTINGS).scores.size == 0


def test_end_to_end_exports_are_read_without_another_nms() -> None:
    table = np.array(
        [
            [10, 20, 110, 220, 0.9, 2],
            [12, 22, 108, 218, 0.8, 2],  # NMS is the model's business: both stay
            [0, 0, 5, 5, 0.1, 0],
        ],
        dtype=np.float32,
    )
    head = YoloHead("yolo-end2end", "pixels", 240, 320)
    got = decode(table[None], Quantization(), head, DetectionSettings(0.25, 0.45, 10))
    assert got.classes.tolist() == [2, 2] and got.class_count is None
    np.testing.assert_allclose(got.boxes[0], [20 / 240, 10 / 320, 220 / 240, 110 / 320])


def test_boxes_are_mapped_back_through_letterboxing() -> None:
    # a 640x320 photo letterboxed into 320x320: the image fills rows 80..240 of the input
    _, placement = resize(Image.new("RGB", (640, 320)), SIZE, SIZE, "letterbox")
    rows = np.zeros((1, 4 + 2), dtype=np.float32)
    rows[0, :4] = [160, 160, 320, 160]  # centre x, centre y, w, h in input pixels
    rows[0, 4] = 0.9
    head = YoloHead("yolov8", "pixels", SIZE, SIZE)
    found = yolo_detections(
        decode(rows.T[None], Quantization(), head, SETTINGS),
        labels=("person", "car"),
        placement=placement,
    )
    assert [(d.index, d.label) for d in found] == [(0, "person")]
    assert found[0].box == pytest.approx((0.0, 0.0, 1.0, 1.0), abs=1e-6)
    rows[0, :4] = [80, 160, 160, 80]  # the left half, middle band
    found = yolo_detections(
        decode(rows.T[None], Quantization(), head, SETTINGS), placement=placement
    )
    assert found[0].box == pytest.approx((0.25, 0.0, 0.75, 0.5), abs=1e-6)


def test_a_tensor_of_another_layout_is_refused() -> None:
    head = YoloHead("yolov8", "normalized", SIZE, SIZE)
    with pytest.raises(ModelError, match="3-D tensor"):
        decode(np.zeros((1, 2, 3, 4), np.float32), Quantization(), head, SETTINGS)
    with pytest.raises(ModelError, match="at least 5 values per box"):
        decode(np.zeros((1, 4, 100), np.float32), Quantization(), head, SETTINGS)


# ---- where the layout comes from ---------------------------------------------------------


def _spec(shape: tuple[int, ...]) -> TensorSpec:
    return TensorSpec("out", 0, shape, "int8", Quantization(0.01, -128))


def test_manifest_names_the_layout_and_box_units() -> None:
    outputs = {"kind": "detection", "format": "yolov5", "box_units": "pixels", "tensors": []}
    layout = resolve_layout([_spec((1, 100, 9))], manifest_outputs=outputs)
    assert (layout.kind, layout.format, layout.box_units) == ("detection", "yolov5", "pixels")
    with pytest.raises(ModelError, match="one output tensor"):
        resolve_layout([_spec((1, 100, 9))] * 2, manifest_outputs=outputs)


def test_a_bare_tflite_is_recognised_only_by_its_exact_head_shape() -> None:
    anchors = yolo_anchors(640, 640)
    assert anchors == 8400
    v8 = resolve_layout([_spec((1, 84, anchors))], input_shape=(1, 640, 640, 3))
    assert (v8.kind, v8.format, v8.box_units) == ("detection", "yolov8", "normalized")
    v5 = resolve_layout([_spec((1, 3 * anchors, 85))], input_shape=(1, 640, 640, 3))
    assert v5.format == "yolov5"
    other = resolve_layout([_spec((1, 84, anchors - 1))], input_shape=(1, 640, 640, 3))
    assert other.kind == "raw"


def _yolo_manifest(**outputs: object) -> dict:
    m = bf.filled_manifest()
    t = dict(m["outputs"]["tensors"][0], shape=[1, 84, 8400])
    m["outputs"] = {"kind": "detection", "tensors": [t], **outputs}
    return m


def test_manifest_schema_takes_format_and_box_units_and_old_manifests_still_parse() -> None:
    parsed = parse_manifest(_yolo_manifest(format="yolov8", box_units="pixels"))
    assert (parsed.outputs.format, parsed.outputs.box_units) == ("yolov8", "pixels")
    old = parse_manifest(bf.filled_manifest())
    assert old.outputs.format is None and old.outputs.box_units is None
    with pytest.raises(BundleError, match="outputs.format must be one of"):
        parse_manifest(_yolo_manifest(format="yolov9"))
    with pytest.raises(BundleError, match="outputs.box_units must be one of"):
        parse_manifest(_yolo_manifest(format="yolov8", box_units="inches"))
    with pytest.raises(BundleError, match="outputs.format is for detection"):
        m = bf.filled_manifest()
        m["outputs"]["format"] = "yolov8"
        parse_manifest(m)


def test_daemon_model_config_takes_the_detection_keys() -> None:
    model = {"path": "/m.tflite", "score_threshold": 0.5, "iou_threshold": 0.6}
    config = parse_config({"device_id": "pi-01", "state_dir": "/tmp/s", "model": model})
    assert config.model.detection == DetectionSettings(0.5, 0.6, 100)
    model = {"path": "/m.tflite", "score_threshold": 2, "max_detections": 0}
    with pytest.raises(ConfigError, match="model.score_threshold") as info:
        parse_config({"device_id": "pi-01", "state_dir": "/tmp/s", "model": model})
    assert "model.max_detections" in str(info.value)


@pytest.mark.parametrize("seed", range(12))
def test_nms_equals_greedy_nms_on_crowded_random_boxes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 150
    corner = rng.uniform(0, 0.6, size=(n, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.05, 0.4, size=(n, 2))], axis=1)
    scores = np.round(rng.uniform(0, 1, size=n), 2)  # ties on purpose
    classes = rng.integers(0, 3, size=n)
    got = nms(boxes, scores, classes, iou_threshold=0.4, max_detections=n)
    order = sorted(range(n), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(classes[k] != classes[i] or iou(boxes[k], boxes[i]) <= 0.4 for k in kept):
            kept.append(i)
    assert got.tolist() == kept


def test_the_decoding_benchmark_runs_on_its_realistic_head() -> None:
    from benchmarks.yolo_decode import int8_head, measure, realistic_head

    q, quant = int8_head(realistic_head())
    _, _, found = measure(q, quant, "normalized", runs=2)
    assert 10 <= found <= 100  # several objects survive; NMS left one box or so each


def test_the_converter_report_names_the_layout_and_the_float_reference() -> None:
    from converter.report import format_report

    report = {
        "source": {"path": "m.onnx", "format": "onnx", "float_reference": "onnxruntime"},
        "detection_format": {"format": "yolov8", "box_units": "pixels"},
    }
    text = format_report(report)
    assert "detection  yolov8, box units pixels" in text
    assert "reference  the source model, run by onnxruntime" in text
