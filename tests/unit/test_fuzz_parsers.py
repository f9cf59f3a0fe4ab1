"""Property tests of every parser that takes bytes from outside the device: requests,
update notices, chunk plans, trust files, manifests, configs and TFLite flatbuffers as
``inspect`` reads them. Whatever the input, each either returns its value or raises an
``EdgeError`` (the project's own, clean refusal), never another exception, and within a
bounded time (the profile's deadline per example).

The example budget is fixed by a settings profile: ``ci`` (the default; derandomized, so
a run is repeatable) keeps the whole file well under two minutes; ``HYPOTHESIS_PROFILE=
deep`` tries many more inputs when hunting.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.errors import EdgeError

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "fixtures" / "models"

settings.register_profile(
    "ci",
    max_examples=150,
    deadline=timedelta(seconds=2),
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "deep", max_examples=5000, deadline=timedelta(seconds=2), suppress_health_check=[]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def refuses_cleanly(parse: Callable[[], Any]) -> None:
    """``parse()`` returns, or raises an EdgeError; anything else fails the test."""
    with contextlib.suppress(EdgeError):
        parse()


# -- values a hostile or broken sender could put in a JSON document ---------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=25,
)


def objects_with(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects holding some of ``keys`` (each with its own values, or any value)
    and a few other keys: deep enough to get past a parser's first checks."""
    fixed = {k: st.one_of(v, json_values) for k, v in keys.items()}
    return st.fixed_dictionaries({}, optional=fixed).flatmap(
        lambda d: st.dictionaries(st.text(max_size=8), json_values, max_size=2).map(
            lambda extra: {**extra, **d}
        )
    )


def as_bytes(doc: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return doc.map(lambda d: json.dumps(d, allow_nan=True).encode())


nested = st.integers(min_value=1, max_value=60_000).flatmap(
    lambda n: st.sampled_from([b"[" * n + b"]" * n, b'{"a":' * n + b"1" + b"}" * n, b"[" * n])
)
hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


def payloads(structured: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Raw bytes, deep nesting, and JSON documents shaped like the real thing."""
    return st.one_of(st.binary(max_size=300), nested, as_bytes(json_values), as_bytes(structured))


# -- requests --------------------------------------------------------------------------
request_docs = objects_with(
    {
        "id": st.one_of(st.text(max_size=300), st.integers()),
        "image_b64": st.one_of(st.text(max_size=50), st.binary(max_size=30).map(bytes.hex)),
    }
)


@given(
    payloads(request_docs),
    st.one_of(st.none(), st.binary(max_size=40)),
    st.one_of(st.none(), st.text(max_size=40)),
)
def test_requests(payload, correlation, response_topic):
    from edge_runtime.daemon.requests import parse_request

    refuses_cleanly(
        lambda: parse_request(
            payload,
            max_bytes=200_000,
            correlation_data=correlation,
            response_topic=response_topic,
        )
    )


# -- requests: the lean parse (image decoded in place) against the full parse -------------
@st.composite
def image_texts(draw: st.DrawFn) -> str:
    """An image as base64 text, as it stands between the quotes of a JSON document: long
    enough for the lean parse, often damaged (escapes, whitespace, bad characters,
    padding, cut short)."""
    from edge_runtime.b64json import MIN_BLOB

    text = base64.b64encode(draw(st.binary(min_size=MIN_BLOB * 3 // 4, max_size=1200))).decode()
    at = draw(st.integers(min_value=0, max_value=len(text)))
    damage = draw(
        st.sampled_from(
            [
                "",
                "",
                "",
                "\\/",
                "\\u0041",
                " ",
                "\n",
                "\\n",
                "\x01",
                "!",
                "-",
                "\u00e9",
                "=",
                "==",
                "===",
            ]
            + ["cut", "pad"]
            + [""] * 8
        )
    )
    if damage == "cut":
        return text[:at]
    if damage == "pad":
        return text.rstrip("=") + "=" * draw(st.integers(min_value=0, max_value=3))
    return text[:at] + damage + text[at:]


def placeholders() -> st.SearchStrategy[str]:
    """The lean parse's own placeholders, as they are or spelt with an escape."""
    from edge_runtime.b64json import TOKEN

    return st.tuples(st.sampled_from([TOKEN[0], f"\\u{ord(TOKEN[0]):04x}"]), st.integers(0, 1)).map(
        lambda p: f"{p[0]}{TOKEN[1:]}{p[1]}"
    )


def json_texts(images: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """JSON text (valid or not) of request documents: an object whose members are
    mostly ``id`` and ``image_b64``, sometimes again, in other spellings, nested, or
    around other values; whitespace anywhere."""
    space = st.sampled_from(["", "", " ", "\n", "\t ", "\r\n"])
    key = st.sampled_from(
        ["id", "image_b64", "image_b64", "x", "image_b64 ", "image\\u005fb64", "IMAGE_B64"]
    )
    image = images.map(lambda t: f'"{t}"')
    scalar = st.one_of(
        st.text(max_size=300),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False),
    ).map(json.dumps)

    def members(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        member = st.tuples(space, key, space, space, values)
        return st.lists(member, max_size=3).map(
            lambda ms: ",".join(f'{a}"{k}"{b}:{c}{v}' for a, k, b, c, v in ms)
        )

    def grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            members(inner).map(lambda m: "{" + m + "}"),
            st.lists(inner, max_size=3).map(lambda vs: "[" + ",".join(vs) + "]"),
        )

    value = st.recursive(st.one_of(image, image, scalar), grow, max_leaves=4)
    ident = st.one_of(
        st.text(max_size=300),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
    )
    return st.one_of(
        st.tuples(
            space,
            st.one_of(st.just(""), ident.map(lambda i: f'"id": {json.dumps(i)},')),
            space,
            st.one_of(image, image, image, placeholders().map(lambda t: f'"{t}"')),
            members(value),
            space,
        ).map(
            lambda p: f'{p[0]}{{{p[1]}{p[2]}"image_b64":{p[3]}{"," + p[4] if p[4] else ""}{p[5]}}}'
        ),
        value,
    )


@given(
    json_texts(image_texts()),
    st.sampled_from(["", " ", "\n", "}", ",", "x", "\u00e9"]),
    st.one_of(st.none(), st.binary(max_size=10)),
)
@pytest.mark.parametrize("decoder", ["as installed", "binascii"])
def test_requests_lean_parse_is_the_full_parse(decoder, text, tail, correlation):
    """Whatever the document, the lean parse gives the request, or the error (code,
    detail, id and where it goes), that the full parse gives; with pybase64 (when
    installed) and with binascii."""
    from edge_runtime.daemon.requests import RequestError, parse_request

    payload = (text + tail).encode("utf-8", "surrogatepass")

    def outcome(lean: bool) -> tuple[Any, ...]:
        try:
            r = parse_request(
                payload,
                max_bytes=1 << 20,
                correlation_data=correlation,
                response_topic="r",
                lean=lean,
            )
        except RequestError as exc:
            return (
                "error",
                exc.code,
                exc.detail,
                exc.request_id,
                exc.response_topic,
                exc.correlation_data,
            )
        return ("request", r)

    with _decoder(decoder):
        assert outcome(True) == outcome(False)


def _decoder(name: str) -> contextlib.AbstractContextManager[object]:
    from edge_runtime import b64json

    if name == "binascii":
        return mock.patch.object(b64json, "fast_decoder", None)
    return contextlib.nullcontext()


@given(
    st.text(alphabet="AQgw/+9z=", max_size=40).map(str.encode)
    | st.binary(max_size=20)
    | st.binary(max_size=30).map(base64.b64encode)
)
@pytest.mark.parametrize("decoder", ["as installed", "binascii"])
def test_strict_base64_decodes_as_b64decode(decoder, text):
    """What the in-place decoder returns, ``b64decode(validate=True)`` returns too."""
    from edge_runtime.b64json import b64decode_strict

    with _decoder(decoder):
        try:
            decoded = b64decode_strict(memoryview(text))
        except (binascii.Error, ValueError):
            return
    assert decoded == base64.b64decode(text, validate=True)


# -- update notices and the chunk plans inside them -------------------------------------
chunk_plans = objects_with(
    {
        "size": st.integers(min_value=-10, max_value=1 << 24),
        "sha256": st.lists(hex64, max_size=5),
    }
)
notice_docs = objects_with(
    {
        "manifest": objects_with({"version": st.text(max_size=12), "name": st.text(max_size=12)}),
        "bundle": objects_with(
            {"size": st.integers(min_value=-10, max_value=1 << 40), "sha256": hex64}
        ),
        "url": st.text(max_size=30),
        "chunks": chunk_plans,
    }
)


@given(payloads(notice_docs))
def test_update_notices(payload):
    from edge_runtime.update.service import parse_notice

    refuses_cleanly(lambda: parse_notice(payload))


@given(st.one_of(json_values, chunk_plans), st.integers(min_value=-10, max_value=1 << 40))
def test_chunk_plans(doc, bundle_size):
    from edge_runtime.update.chunks import parse_plan

    refuses_cleanly(lambda: parse_plan(doc, bundle_size))


# -- trust files ---------------------------------------------------------------------------
trust_docs = objects_with(
    {
        "version": st.integers(min_value=-3, max_value=1 << 70),
        "threshold": st.integers(min_value=-3, max_value=10),
        "keys": st.dictionaries(st.text(max_size=12), st.text(max_size=50), max_size=3),
        "expires": st.text(max_size=25),
        "signed": json_values,
        "signatures": st.lists(
            objects_with({"keyid": st.text(max_size=12), "sig": st.text(max_size=20)}),
            max_size=3,
        ),
    }
)


@given(payloads(trust_docs))
def test_trust_files(payload):
    from edge_runtime.trust.trustfile import read_trust_bytes

    refuses_cleanly(lambda: read_trust_bytes(payload, "fuzz"))


# -- manifests ------------------------------------------------------------------------------
manifest_docs = objects_with(
    {
        "name": st.text(max_size=12),
        "version": st.text(max_size=12),
        "files": st.dictionaries(
            st.text(max_size=12),
            objects_with({"sha256": hex64, "size": st.integers(min_value=-5, max_value=1 << 40)}),
            max_size=3,
        ),
        "input": objects_with(
            {
                "shape": st.lists(st.integers(min_value=-2, max_value=5000), max_size=5),
                "dtype": st.sampled_from(["uint8", "int8", "float32", "x"]),
                "scale": st.floats(),
                "zero_point": st.integers(),
                "mean": st.lists(st.floats(), max_size=4),
                "std": st.lists(st.floats(), max_size=4),
            }
        ),
        "outputs": objects_with(
            {
                "kind": st.sampled_from(["classification", "detection", "x"]),
                "tensors": st.lists(
                    objects_with(
                        {
                            "name": st.text(max_size=8),
                            "role": st.text(max_size=8),
                            "shape": st.lists(st.integers(), max_size=4),
                        }
                    ),
                    max_size=4,
                ),
            }
        ),
        "compatible": st.lists(st.text(max_size=8), max_size=3),
    }
)


@given(payloads(manifest_docs))
def test_manifests(payload):
    from edge_runtime.bundle.manifest import parse_manifest, parse_manifest_bytes

    refuses_cleanly(lambda: parse_manifest_bytes(payload))
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return
    refuses_cleanly(lambda: parse_manifest(doc))


# -- configs ------------------------------------------------------------------------------
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
)
config_docs = objects_with(
    {
        "device_id": st.text(max_size=20),
        "state_dir": st.text(max_size=20),
        "log_level": st.sampled_from(["info", "debug", "nope"]),
        "shutdown_timeout": toml_scalars,
        "model": objects_with({"path": st.text(max_size=10), "threads": toml_scalars}),
        "mqtt": objects_with(
            {
                "host": st.text(max_size=10),
                "port": toml_scalars,
                "keepalive": toml_scalars,
                "protocol": st.sampled_from(["5", "3.1.1", "4"]),
                "prefix": st.text(max_size=10),
            }
        ),
        "requests": objects_with({"queue_size": toml_scalars, "watch_dir": st.text(max_size=8)}),
        "telemetry": objects_with({"interval": toml_scalars, "qos": toml_scalars}),
        "outbox": objects_with({"max_bytes": toml_scalars, "spill_after": toml_scalars}),
        "update": objects_with({"trust": st.text(max_size=8), "keep": toml_scalars}),
    }
)


@given(st.one_of(json_values, config_docs))
def test_config_documents(doc):
    from edge_runtime.daemon.config import parse_config

    if isinstance(doc, dict):
        refuses_cleanly(lambda: parse_config(doc))


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_config_files(data):
    from edge_runtime.daemon.config import load_config

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_bytes(data)
        refuses_cleanly(lambda: load_config(path, environ={}))


# -- TFLite flatbuffers, as ``inspect`` reads them -----------------------------------------
SEED_MODELS = [(MODELS / f"{name}.tflite").read_bytes() for name in ("digits_int8", "detect_int8")]


@st.composite
def damaged_models(draw: st.DrawFn) -> bytes:
    """A real model with bytes overwritten, cut short, or random bytes behind 'TFL3'."""
    how = draw(st.sampled_from(["flip", "cut", "random"]))
    if how == "random":
        return draw(st.binary(max_size=4)) + b"TFL3" + draw(st.binary(max_size=400))
    data = bytearray(draw(st.sampled_from(SEED_MODELS)))
    if how == "cut":
        return bytes(data[: draw(st.integers(min_value=0, max_value=len(data)))])
    # the tables, vtables and offsets live in the first and last few kB
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        at = draw(
            st.one_of(
                st.integers(min_value=0, max_value=min(len(data) - 1, 4096)),
                st.integers(min_value=max(0, len(data) - 8192), max_value=len(data) - 1),
            )
        )
        data[at] = draw(st.integers(min_value=0, max_value=255))
    return bytes(data)


@given(damaged_models())
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_tflite_flatbuffers_as_inspect_reads_them(data):
    from edge_runtime.cli.inspect import describe
    from edge_runtime.inference.modelfile import read_model

    refuses_cleanly(lambda: read_model(data))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(data)
        refuses_cleanly(lambda: describe(path))


@pytest.mark.parametrize("seed", range(len(SEED_MODELS)))
def test_the_seed_models_are_read(seed):
    """The mutations start from models that parse: a refusal is the mutation's doing."""
    from edge_runtime.inference.modelfile import read_model

    assert read_model(SEED_MODELS[seed]).inputs
