"""Property tests of the HTTP APIs' parsers: whatever a client sends to the TensorFlow
Serving or KServe v2 endpoints, or as headers, the answer is a response with a 2xx or
4xx status (never a 500: an exception the parsers did not expect), and header blocks are
read or refused with ``BadHeaders``."""

from __future__ import annotations

import io
import json
import os
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.serving.connection import BadHeaders, read_headers
from edge_runtime.serving.http import HttpRequest
from tests.serving.conftest import serving

pytestmark = [pytest.mark.integration, pytest.mark.backend]

settings.register_profile(
    "serving-ci",
    max_examples=150,
    deadline=timedelta(seconds=5),
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "serving-deep",
    max_examples=3000,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
PROFILE = "serving-deep" if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else "serving-ci"

NAME = "digits_int8"
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=40,
)
datatypes = st.sampled_from(["BYTES", "INT8", "UINT8", "FP32", "FP16", "BOOL", "INT64", "X"])
tensor_docs = st.fixed_dictionaries(
    {
        "name": st.text(max_size=8) | st.integers(),
        "datatype": datatypes | st.integers(),
        "shape": st.lists(st.integers(min_value=-2, max_value=70), max_size=5) | json_values,
        "data": json_values,
    },
    optional={
        "parameters": st.fixed_dictionaries(
            {"binary_data_size": st.integers(min_value=-5, max_value=300) | json_values}
        )
    },
)
kserve_docs = st.fixed_dictionaries(
    {"inputs": st.lists(tensor_docs, max_size=3) | json_values},
    optional={
        "outputs": st.lists(st.dictionaries(st.sampled_from(["name", "parameters"]), json_values)),
        "parameters": st.dictionaries(st.sampled_from(["binary_data_output"]), json_values),
        "id": json_values,
    },
)
tf_docs = st.fixed_dictionaries({"instances": json_values}) | json_values
ALLOWED = {200, 400, 404, 405, 411, 413, 429, 503}


@pytest.fixture(scope="module")
def routes(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("fuzz")) as server:
        yield server.routes


@settings.get_profile(PROFILE)
@given(doc=tf_docs, raw=st.booleans(), junk=st.binary(max_size=40))
def test_tf_serving_predict_answers_every_body_with_a_client_status(routes, doc, raw, junk):
    body = junk if raw else json.dumps(doc).encode()
    answer = routes.handle(HttpRequest("POST", f"/v1/models/{NAME}:predict", {}, body))
    assert answer.status in ALLOWED, answer.body[:300]


@settings.get_profile(PROFILE)
@given(
    doc=kserve_docs,
    tail=st.binary(max_size=300),
    header=st.none() | st.integers(min_value=-3, max_value=2000).map(str) | st.text(max_size=5),
)
def test_kserve_infer_answers_every_body_with_a_client_status(routes, doc, tail, header):
    head = json.dumps(doc).encode()
    headers = {} if header is None else {"inference-header-content-length": header}
    answer = routes.handle(HttpRequest("POST", f"/v2/models/{NAME}/infer", headers, head + tail))
    assert answer.status in ALLOWED, answer.body[:300]


@settings.get_profile(PROFILE)
@given(block=st.binary(max_size=400), lines=st.lists(st.text(max_size=30), max_size=8))
def test_header_blocks_are_read_or_refused(block, lines):
    for data in (block, ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace")):
        try:
            fields, lengths = read_headers(io.BufferedReader(io.BytesIO(data)))
        except BadHeaders as exc:
            assert exc.status in (400, 431)
        else:
            assert all(name == name.lower() for name in fields) and lengths >= 0


@settings.get_profile(PROFILE)
@given(
    values=st.lists(
        st.integers(min_value=-300, max_value=300) | st.floats(allow_nan=True),
        min_size=60,
        max_size=68,
    ),
    datatype=datatypes,
    binary=st.booleans(),
)
def test_kserve_tensors_near_the_model_s_input(routes, values, datatype, binary):
    """Tensors of about the input's size: valid ones are answered, the others refused."""
    doc = {"inputs": [{"name": "x", "datatype": datatype, "shape": [1, 8, 8, 1]}]}
    tail = b""
    if binary:
        tail = b"".join(
            int(v).to_bytes(1, "little", signed=True)
            if isinstance(v, int) and -128 <= v <= 127
            else b"\0"
            for v in values
        )
        doc["inputs"][0]["parameters"] = {"binary_data_size": len(tail)}
    else:
        doc["inputs"][0]["data"] = values
    head = json.dumps(doc).encode()
    headers = {"inference-header-content-length": str(len(head))} if binary else {}
    answer = routes.handle(HttpRequest("POST", f"/v2/models/{NAME}/infer", headers, head + tail))
    assert answer.status in (200, 400), answer.body[:300]
    valid = datatype == "INT8" and len(values) == 64
    in_range = all(isinstance(v, int) and -128 <= v <= 127 for v in values)
    if valid and (binary or in_range):
        assert answer.status == 200, answer.body[:300]


def _png(seed: int) -> str:
    """A noisy 48x48 PNG as base64: long enough for the lean parse."""
    import base64

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


PNGS = [_png(0), _png(1)]


@st.composite
def tf_image_bodies(draw: st.DrawFn) -> bytes:
    """TensorFlow Serving bodies of images as base64, some hostile: extra keys beside
    ``b64``, the input's name around it, placeholders of the lean parse, duplicate keys,
    damaged base64, tensors mixed in."""
    from edge_runtime.b64json import TOKEN

    text = st.sampled_from(
        [PNGS[0], PNGS[1], PNGS[0][:-3], PNGS[1] + "=", "!" + PNGS[0], TOKEN + "0", TOKEN + "1"]
    ).map(lambda t: f'"{t}"')
    instance = st.one_of(
        text.map(lambda t: f'{{"b64": {t}}}'),
        text.map(lambda t: f'{{"b64": {t}}}'),
        text.map(lambda t: f'{{"b64": {t}, "x": 1}}'),
        text.map(lambda t: f'{{"b64": "QUJD", "b64": {t}}}'),
        text.map(lambda t: f'{{"b64": {t}, "b64": "QUJD"}}'),
        text.map(lambda t: f'{{"serving_default_input:0": {{"b64": {t}}}}}'),
        text,
        st.just(json.dumps([[[0]] * 8] * 8)),
    )
    items = draw(st.lists(instance, min_size=0, max_size=3))
    return f'{{"instances": [{", ".join(items)}]}}'.encode()


@settings.get_profile(PROFILE)
@given(body=tf_image_bodies())
def test_tf_serving_images_decoded_in_place_answer_as_the_full_parse(routes, body):
    """The lean parse (images decoded from the body in place) gives the answer, or the
    error, that the full parse gives."""
    from unittest import mock

    from edge_runtime.serving import tfserving

    request = HttpRequest("POST", f"/v1/models/{NAME}:predict", {}, body)
    lean = routes.handle(request)
    with mock.patch.object(tfserving, "lean_loads", lambda body: None):
        full = routes.handle(request)
    assert (lean.status, lean.body) == (full.status, full.body)
