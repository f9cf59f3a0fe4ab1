"""The HTTP APIs through clients written elsewhere: tritonclient (KServe v2 / Open
Inference Protocol, JSON and binary tensors) and requests (TensorFlow Serving REST,
/v1/predict); each error code of the contract."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from edge_runtime.inference.engine import Engine
from tests.serving.conftest import DIGITS, serving
from tests.support.images import digits

NAME = "digits_int8"

pytestmark = [pytest.mark.integration, pytest.mark.backend]


@pytest.fixture(scope="module")
def expected():
    """The digits, and what the model itself says of each, in this process."""
    images = digits(6)
    engine = Engine.load(DIGITS, threads=1)
    try:
        preds = [engine.predict(img, top_k=10) for img, _ in images]
        tensors = [engine.prepare(img).tensor for img, _ in images]
    finally:
        engine.close()
    return images, preds, tensors


def base(server) -> str:
    return f"http://127.0.0.1:{server.port}"


def test_kserve_v2_health_metadata_and_infer_with_tritonclient(tmp_path, expected):
    images, preds, tensors = expected
    with serving(tmp_path) as server:
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            assert client.is_server_live() and client.is_server_ready()
            assert client.is_model_ready(NAME)
            assert not client.is_model_ready("another")
            meta = client.get_model_metadata(NAME)
            assert meta["inputs"] == [
                {"name": meta["inputs"][0]["name"], "datatype": "INT8", "shape": [1, 8, 8, 1]}
            ]
            (out,) = meta["outputs"]
            assert out["datatype"] == "FP32" and out["shape"] == [1, 10]
            assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
            # images as a BYTES tensor, binary data both ways
            for (img, _), pred in zip(images, preds):
                inp = triton.InferInput("image", [1], "BYTES")
                inp.set_data_from_numpy(np.array([img], dtype=object), binary_data=True)
                result = client.infer(NAME, [inp])
                scores = result.as_numpy(out["name"])
                assert scores.shape == (1, 10)
                assert int(np.argmax(scores[0])) == pred.top[0].index
                assert scores[0][pred.top[0].index] == pytest.approx(pred.top[0].score, abs=1e-5)
            # the model's own input tensor, as JSON, answer as JSON
            inp = triton.InferInput(meta["inputs"][0]["name"], [1, 8, 8, 1], "INT8")
            inp.set_data_from_numpy(tensors[0], binary_data=False)
            want = triton.InferRequestedOutput(out["name"], binary_data=False)
            result = client.infer(NAME, [inp], outputs=[want], request_id="r-1")
            assert result.get_response()["id"] == "r-1"
            assert int(np.argmax(result.as_numpy(out["name"])[0])) == preds[0].top[0].index
            # and as binary data
            inp.set_data_from_numpy(tensors[1], binary_data=True)
            result = client.infer(NAME, [inp])
            assert int(np.argmax(result.as_numpy(out["name"])[0])) == preds[1].top[0].index
            # errors reach the client as errors
            with pytest.raises(InferenceServerException, match="model_not_found"):
                client.infer("another", [inp])
            bad = triton.InferInput("image", [1], "BYTES")
            bad.set_data_from_numpy(np.array([b"not an image"], dtype=object), binary_data=True)
            with pytest.raises(InferenceServerException, match="not_an_image"):
                client.infer(NAME, [bad])
        finally:
            client.close()


def test_tf_serving_rest_status_metadata_and_predict(tmp_path, expected):
    images, preds, tensors = expected
    with serving(tmp_path) as server:
        url = f"{base(server)}/v1/models/{NAME}"
        status = requests.get(url, timeout=5).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        meta = requests.get(f"{url}/metadata", timeout=5).json()
        signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
        (inp,) = signature["inputs"].values()
        assert inp["dtype"] == "DT_INT8"
        assert [d["size"] for d in inp["tensor_shape"]["dim"]] == ["1", "8", "8", "1"]
        (out,) = signature["outputs"].values()
        assert out["dtype"] == "DT_FLOAT"
        instances = [{"b64": base64.b64encode(img).decode()} for img, _ in images]
        answer = requests.post(f"{url}:predict", json={"instances": instances}, timeout=10)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == len(images)
        for scores, pred in zip(predictions, preds):
            assert len(scores) == 10
            assert int(np.argmax(scores)) == pred.top[0].index
        # tensors, with and without the batch dimension, and named after the input
        rows = [tensors[0][0].tolist(), tensors[1].tolist(), {inp["name"]: tensors[2][0].tolist()}]
        answer = requests.post(f"{url}:predict", json={"instances": rows}, timeout=10)
        assert answer.status_code == 200, answer.text
        got = [int(np.argmax(s)) for s in answer.json()["predictions"]]
        assert got == [p.top[0].index for p in preds[:3]]


def test_v1_predict_answers_like_predict_json(tmp_path, expected):
    images, preds, _ = expected
    with serving(tmp_path) as server:
        img = images[0][0]
        answer = requests.post(
            f"{base(server)}/v1/predict", data=img, headers={"X-Request-Id": "abc"}, timeout=5
        )
        assert answer.status_code == 200
        doc = answer.json()
        assert doc["id"] == "abc"
        assert doc["top"][0]["index"] == preds[0].top[0].index
        assert set(doc) >= {"model", "top", "latency_ms"}
        assert requests.get(f"{base(server)}/metrics", timeout=5).text.startswith("edge_runtime")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1/predict", b"not an image", 400, "not_an_image"),
        ("POST", "/v1/predict", b"", 400, "not_an_image"),
        ("POST", f"/v1/models/{NAME}:predict", b"{nope", 400, "bad_json"),
        (
            "POST",
            f"/v1/models/{NAME}:predict",
            b'{"instances": [{"b64": "!!"}]}',
            400,
            "bad_base64",
        ),
        ("POST", f"/v1/models/{NAME}:predict", b'{"instances": [[1, 2]]}', 400, "bad_tensor"),
        ("POST", f"/v2/models/{NAME}/infer", b'{"inputs": []}', 400, "bad_json"),
        ("GET", "/v1/models/another", b"", 404, "model_not_found"),
        ("GET", "/v2/models/another/ready", b"", 404, "model_not_found"),
        ("POST", "/v1/models/another:predict", b"{}", 404, "model_not_found"),
        ("GET", "/nowhere", b"", 404, "not_found"),
        ("GET", "/v1/predict", b"", 405, "method_not_allowed"),
    ],
)
def test_error_codes(server, method, path, body, status, code):
    answer = requests.request(method, f"{base(server)}{path}", data=body, timeout=5)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == code and answer.json()["detail"]


def _tensor(datatype: str, shape: list[int], **fields: object) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, **fields}]}


@pytest.mark.parametrize(
    ("doc", "tail", "header", "code", "detail"),
    [
        # the shape's element count overflows int64 (np.prod gave 0: an empty tensor)
        (_tensor("INT8", [2**40, 2**40], data=[]), b"", None, "bad_tensor", "over 2**63"),
        (_tensor("BYTES", [2**40, 2**40], data=[]), b"", None, "bad_tensor", "elements"),
        # no elements, but more than an array may span
        (_tensor("INT8", [0, 2**62], data=[]), b"", None, "bad_tensor", "shape"),
        # a JSON true is not a size
        (
            _tensor("INT8", [1, 8, 8, 1], parameters={"binary_data_size": True}),
            bytes(64),
            "header",
            "bad_tensor",
            "binary_data_size",
        ),
        # a Latin-1 superscript digit passes str.isdigit()
        (_tensor("INT8", [1], data=[1]), b"", "\u00b9", "bad_json", "Inference-Header"),
    ],
    ids=["int64-overflow", "bytes-overflow", "too-big-to-span", "size-true", "header-length"],
)
def test_kserve_sizes_out_of_range_are_the_client_s_error(server, doc, tail, header, code, detail):
    head = json.dumps(doc).encode()
    headers = {"Inference-Header-Content-Length": str(len(head)) if header == "header" else header}
    answer = requests.post(
        f"{base(server)}/v2/models/{NAME}/infer",
        data=head + tail,
        headers={k: v for k, v in headers.items() if v is not None},
        timeout=5,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == code and detail in answer.json()["detail"], answer.text


def test_413_for_an_image_over_requests_max_payload_bytes(tmp_path):
    with serving(tmp_path) as server:
        server.routes.service.max_image_bytes = 1000
        answer = requests.post(f"{base(server)}/v1/predict", data=b"x" * 2000, timeout=5)
        assert answer.status_code == 413 and answer.json()["error"] == "too_large"


def test_model_name_from_config_percent_encoded_in_paths(tmp_path):
    with serving(tmp_path, model_name="line 3/cam") as server:
        url = f"{base(server)}/v1/models/line%203%2Fcam"
        assert requests.get(url, timeout=5).status_code == 200
        assert requests.get(f"{base(server)}/v2/models/line%203%2Fcam/ready", timeout=5).ok
        assert requests.get(f"{base(server)}/v1/models/{NAME}", timeout=5).status_code == 404


def test_json_beyond_one_request_s_worth_is_refused_before_it_is_parsed(tmp_path):
    with serving(tmp_path, max_body_bytes=64 * 2**20) as server:
        server.routes.service.max_image_bytes = 1024
        # 10 MiB of numbers: the body cap allows it, parsing it would take ~100 MiB
        body = b'{"instances": [[' + b"0," * (5 * 2**20) + b"0]]}"
        for path in (f"/v1/models/{NAME}:predict", f"/v2/models/{NAME}/infer"):
            answer = requests.post(f"{base(server)}{path}", data=body, timeout=30)
            assert answer.status_code == 413, answer.text
            assert answer.json()["error"] == "too_large"
    with serving(tmp_path) as server:  # the default 10 MiB images: counted by values
        body = b'{"instances": [[' + b"0," * (2**20) + b"0]]}"
        answer = requests.post(f"{base(server)}/v1/models/{NAME}:predict", data=body, timeout=30)
        assert answer.status_code == 413 and "values" in answer.json()["detail"]
