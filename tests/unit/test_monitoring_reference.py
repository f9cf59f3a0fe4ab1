"""edge-convert's monitoring reference, computed the way the daemon observes requests:
for the committed SSD detector (its detections and input) and the digits classifier."""

from __future__ import annotations

from converter.bundle_builder import output_kind
from converter.calibration import float_spec
from converter.monitoring import reference
from converter.runner import ModelRunner
from edge_runtime.inference.engine import Engine
from edge_runtime.inference.serialize import prediction_to_dict
from edge_runtime.telemetry.drift import Histograms, Reference, observation
from tests.conftest import IMAGES, MODELS


def test_detector_reference_matches_what_the_daemon_observes():
    model = (MODELS / "detect_int8.tflite").read_bytes()
    runner = ModelRunner(model)
    kind, roles = output_kind(model)[:2]  # (a YOLO layout may follow)
    spec = float_spec(runner.input_shape, 0.0, 255.0)
    sample = IMAGES / "squares.png"
    doc = reference(runner, [sample] * 3, spec, kind=kind, roles=roles, source="x")
    ref = Reference.parse(doc)
    assert ref is not None and ref.detection and ref.images == 3
    # the daemon's view of the same image, through the engine and the answer it sends
    engine = Engine.load(MODELS / "detect_int8.tflite", threads=1)
    try:
        prepared = engine.prepare(sample.read_bytes())
        answer = prediction_to_dict(engine.infer(prepared))
    finally:
        engine.close()
    daemon = Histograms(ref.classes, detection=True)
    daemon.add(observation(answer, prepared.tensor))
    for name, counts in daemon.parts().items():
        assert tuple(c / 1.0 for c in counts) == ref.shares[name], name
    assert answer["detections"], "the sample shows squares"


def test_classifier_reference_top1_shares_sum_to_one():
    model = (MODELS / "digits_int8.tflite").read_bytes()
    runner = ModelRunner(model)
    kind, roles = output_kind(model)[:2]  # (a YOLO layout may follow)
    spec = float_spec(runner.input_shape, 0.0, 255.0)
    samples = sorted(IMAGES.glob("digit_*.png"))
    ref = Reference.parse(reference(runner, samples, spec, kind=kind, roles=roles, source="digits"))
    assert ref is not None and not ref.detection and ref.classes == 10
    assert abs(sum(ref.shares["top1"]) - 1) < 1e-5 and ref.images == 10


def test_raw_output_models_get_no_reference():
    model = (MODELS / "digits_int8.tflite").read_bytes()
    runner = ModelRunner(model)
    spec = float_spec(runner.input_shape, 0.0, 255.0)
    assert reference(runner, [], spec, kind="raw", roles={}, source="x") is None
