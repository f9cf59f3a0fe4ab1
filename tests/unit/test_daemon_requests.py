"""Parsing infer payloads: ids, size cap first, JSON and base64 errors; topics."""

from __future__ import annotations

import base64
import json

import pytest

from edge_runtime.daemon.requests import RequestError, parse_request, payload_id
from edge_runtime.daemon.topics import Topics
from edge_runtime.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\nrest"


def test_raw_bytes_get_a_stable_id_from_the_payload():
    a = parse_request(PNG, max_bytes=1024)
    b = parse_request(PNG, max_bytes=1024)
    assert a.id == b.id == payload_id(PNG) and a.id.startswith("sha256:")
    assert a.image == PNG
    assert parse_request(PNG + b"x", max_bytes=1024).id != a.id


def test_correlation_data_is_the_id_when_json_names_none():
    req = parse_request(PNG, max_bytes=1024, correlation_data=b"abc", response_topic="r/1")
    assert req.id == "abc" and req.response_topic == "r/1" and req.correlation_data == b"abc"
    assert parse_request(PNG, max_bytes=1024, correlation_data=b"\x00\xff").id == "hex:00ff"


def test_json_request_id_wins():
    body = json.dumps({"id": "job-7", "image_b64": base64.b64encode(PNG).decode()}).encode()
    req = parse_request(body, max_bytes=1024, correlation_data=b"corr")
    assert req.id == "job-7" and req.image == PNG


def test_size_cap_is_checked_first():
    with pytest.raises(RequestError) as info:
        parse_request(b"{" + b"x" * 5000, max_bytes=1024, correlation_data=b"c1")
    assert info.value.code == "too_large" and info.value.request_id == "c1"
    assert "1024" in info.value.detail


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"id": "x", "image_b64": ', "bad_json"),
        (b'{"id": "x"}', "bad_json"),
        (b'["not", "an", "object"]', "bad_json"),
        (b'{"id": "x", "image_b64": "!!!"}', "bad_base64"),
        (b'{"id": "x", "image_b64": "QUJ"}', "bad_base64"),
        (b'{"id": {"nested": 1}, "image_b64": "QUJD"}', "bad_json"),
    ],
)
def test_bad_json_requests(payload, code):
    with pytest.raises(RequestError) as info:
        parse_request(payload, max_bytes=1024)
    assert info.value.code == code
    assert info.value.request_id  # an error reply always has an id


@pytest.mark.parametrize(
    "payload", [b"[" * 1000 + b"]" * 1000, b'{"a":' * 50_000], ids=["arrays", "objects"]
)
def test_json_nested_past_the_stack_is_bad_json_with_where_the_answer_goes(payload):
    with pytest.raises(RequestError) as info:
        parse_request(payload, max_bytes=1 << 20, correlation_data=b"c1", response_topic="r/1")
    assert info.value.code == "bad_json" and info.value.request_id == "c1"
    assert info.value.response_topic == "r/1" and info.value.correlation_data == b"c1"


def test_bad_base64_keeps_the_json_id():
    with pytest.raises(RequestError) as info:
        parse_request(b'{"id": "mine", "image_b64": "***"}', max_bytes=1024)
    assert info.value.request_id == "mine"


def test_topics():
    t = Topics("edge", "pi-01")
    assert (t.infer, t.predictions, t.errors, t.telemetry, t.status) == (
        "edge/pi-01/infer",
        "edge/pi-01/predictions",
        "edge/pi-01/errors",
        "edge/pi-01/telemetry",
        "edge/pi-01/status",
    )
    assert Topics("site/a", "d").infer == "site/a/d/infer"
    for prefix, device in (
        ("edge/#", "d"),
        ("edge", "a/b"),
        ("", "d"),
        ("edge/", "d"),
        ("edge", "+"),
    ):
        with pytest.raises(ConfigError):
            Topics(prefix, device)


# -- JSON requests: the image decoded from the payload in place ---------------------------
IMAGE = bytes(range(256)) * 1200  # 300 kB, a camera JPEG's size


def _json(doc: dict[str, object]) -> bytes:
    return json.dumps(doc).encode()


def test_json_request_with_an_id_or_correlation_data_is_not_hashed(monkeypatch):
    import edge_runtime.daemon.requests as requests

    def no_hash(payload: bytes) -> str:
        raise AssertionError("the payload was hashed")

    monkeypatch.setattr(requests, "payload_id", no_hash)
    b64 = base64.b64encode(IMAGE).decode()
    assert parse_request(_json({"id": "a", "image_b64": b64}), max_bytes=1 << 20).id == "a"
    request = parse_request(_json({"image_b64": b64}), max_bytes=1 << 20, correlation_data=b"c")
    assert request.id == "c" and request.image == IMAGE


def test_json_image_is_decoded_without_copies_of_the_text():
    import tracemalloc

    payload = _json({"id": "a", "image_b64": base64.b64encode(IMAGE).decode()})
    tracemalloc.start()
    try:
        request = parse_request(payload, max_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert request.image == IMAGE
    assert peak < 1.25 * len(IMAGE)  # the decoded image, and no more than small change


@pytest.mark.parametrize("escape", [False, True], ids=["as-is", "escaped"])
def test_a_placeholder_named_in_the_document_is_not_taken_for_an_image(escape):
    from edge_runtime.b64json import TOKEN

    first = f"\\u{ord(TOKEN[0]):04x}" if escape else TOKEN[0]
    b64 = base64.b64encode(IMAGE[:3000]).decode()
    payload = f'{{"id": "a", "image_b64": "{first}{TOKEN[1:]}0", "x": "{b64}"}}'.encode()
    for lean in (True, False):
        with pytest.raises(RequestError) as info:
            parse_request(payload, max_bytes=1 << 20, lean=lean)
        assert info.value.code == "bad_base64" and info.value.request_id == "a"


def test_lean_parse_leaves_keys_and_short_strings_as_they_are():
    from edge_runtime.b64json import MIN_BLOB, lean_loads

    key = base64.b64encode(bytes(MIN_BLOB)).decode()
    image = base64.b64encode(IMAGE[:3000]).decode()
    found = lean_loads(_json({key: "QUJD", "image_b64": image, "id": "QUJD"}))
    assert found is not None
    doc, images = found
    assert doc[key] == "QUJD" and doc["id"] == "QUJD"
    assert images[doc["image_b64"]] == IMAGE[:3000] and len(images) == 1
