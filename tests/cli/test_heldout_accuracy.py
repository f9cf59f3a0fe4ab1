"""The committed digits models, run by the runtime, score what the converter measured.

``models.json`` records each model's top-1 accuracy on the 360 held-out digits as
``tools/make_test_models.py`` measured it at conversion. The runtime must reproduce it
under whichever interpreter backend this venv has: each digit goes in as a PNG file's
bytes, through the same decode and preprocessing a request takes.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from edge_runtime.inference.engine import Engine, InputOverrides
from tests.conftest import MODELS

pytestmark = pytest.mark.backend

RECORD = json.loads((MODELS / "models.json").read_text())["models"]
DIGIT_MODELS = sorted(
    name for name, info in RECORD.items() if info.get("heldout") == "digits_test.npz"
)


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def heldout() -> tuple[list[bytes], np.ndarray]:
    data = np.load(MODELS / "digits_test.npz")
    return [_png(x) for x in data["x"]], data["y"]


def test_every_digits_model_is_covered() -> None:
    assert set(DIGIT_MODELS) == {"digits_float", "digits_int8", "digits_uint8", "digits_labeled"}


@pytest.mark.parametrize("name", DIGIT_MODELS)
def test_heldout_accuracy_matches_the_converter(
    name: str, heldout: tuple[list[bytes], np.ndarray]
) -> None:
    info = RECORD[name]
    images, truth = heldout
    engine = Engine.load(
        MODELS / info["file"],
        delegate="cpu",
        overrides=InputOverrides(mean=info["mean"], std=info["std"]),
    )
    try:
        predicted = np.array([engine.predict(image, top_k=1).top[0].index for image in images])
    finally:
        engine.close()
    accuracy = float(np.mean(predicted == truth))
    assert len(images) == 360
    assert round(accuracy, 6) == pytest.approx(info["heldout_top1"], abs=1e-6), (
        f"{name}: runtime {accuracy:.6f} vs converter {info['heldout_top1']}"
    )
