"""KServe v2 requests whose claims (element counts, shapes) would cost the server work
out of proportion: refused after work bounded by what the server accepts, not by what
the request claims. Work is counted in lines of Python run in ``edge_runtime/serving``
(no clocks)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import edge_runtime.serving
from edge_runtime.serving.http import HttpRequest, HttpResponse
from tests.serving.conftest import serving

pytestmark = [pytest.mark.integration, pytest.mark.backend]

NAME = "digits_int8"
SERVING = str(Path(edge_runtime.serving.__file__).parent)
#: Lines of Python in edge_runtime/serving a refused request may take (a few hundred do).
BUDGET = 20_000


class _OverBudget(BaseException):
    """Raised in the traced code once it has run ``BUDGET`` lines (not an ``Exception``:
    the routes turn those into 500 answers)."""


def _lines_run(call: Callable[[], HttpResponse]) -> tuple[HttpResponse | None, int]:
    """``call()``'s answer (None once over ``BUDGET``) and the lines it ran in
    edge_runtime/serving, in this thread."""
    lines = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
            if lines > BUDGET:
                raise _OverBudget
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename.startswith(SERVING) else None

    previous = sys.gettrace()  # a coverage tracer's, say: put back after
    sys.settrace(tracer)
    try:
        return call(), lines
    except _OverBudget:
        return None, lines
    finally:
        sys.settrace(previous)


@pytest.fixture(scope="module")
def routes(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("limits")) as server:
        yield server.routes


def _infer(shape: list[int], binary: bytes) -> HttpRequest:
    doc = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": shape,
                "parameters": {"binary_data_size": len(binary)},
            }
        ]
    }
    head = json.dumps(doc).encode()
    headers = {"inference-header-content-length": str(len(head))}
    return HttpRequest("POST", f"/v2/models/{NAME}/infer", headers, head + binary)


#: 16 MiB of zero-length BYTES elements: 4 Mi of them
EMPTY_ELEMENTS = bytes(16 * 2**20)


@pytest.mark.parametrize(
    ("shape", "detail"),
    [([1], "elements"), ([2**22], "at most"), ([2**31, 2**31], "at most")],
    ids=["more-than-declared", "declared-over-the-limit", "declared-huge"],
)
def test_bytes_elements_are_parsed_no_further_than_the_shape_or_the_limit(routes, shape, detail):
    answer, lines = _lines_run(lambda: routes.handle(_infer(shape, EMPTY_ELEMENTS)))
    assert answer is not None, f"over {BUDGET} lines of Python for one refused request"
    assert answer.status == 400, answer.body[:300]
    assert detail in json.loads(answer.body)["detail"], answer.body[:300]


def test_bytes_elements_within_the_shape_are_still_read(routes):
    # two elements of a shape of [2]: parsed, then refused as images that do not decode
    binary = b"".join(len(b).to_bytes(4, "little") + b for b in (b"ab", b""))
    answer, _ = _lines_run(lambda: routes.handle(_infer([2], binary)))
    assert answer is not None and answer.status == 400, answer
    assert json.loads(answer.body)["error"] != "bad_tensor", answer.body[:300]


@pytest.mark.parametrize("datatype", ["BYTES", "INT8"])
def test_a_shape_of_more_elements_than_any_body_holds_is_the_client_s_error(routes, datatype):
    # 2**18600 elements: more digits than int() may print; its exact product would take
    # time quadratic in the shape's length
    doc = {"inputs": [{"name": "x", "datatype": datatype, "shape": [2**62] * 300, "data": []}]}
    answer = routes.handle(
        HttpRequest("POST", f"/v2/models/{NAME}/infer", {}, json.dumps(doc).encode())
    )
    assert answer.status == 400, answer.body[:300]
    assert json.loads(answer.body)["error"] == "bad_tensor", answer.body[:300]


def test_the_bytes_element_limit_counts_every_input_of_the_request(routes):
    """The limit is per request: many BYTES inputs of 64 elements each (as many as the
    JSON check lets through) are refused before their elements are walked."""
    tensor = {
        "name": "x",
        "datatype": "BYTES",
        "shape": [64],
        "parameters": {"binary_data_size": 256},
    }
    doc = {"inputs": [tensor] * 1000}
    head = json.dumps(doc).encode()
    headers = {"inference-header-content-length": str(len(head))}
    request = HttpRequest("POST", f"/v2/models/{NAME}/infer", headers, head + bytes(256 * 1000))
    answer, _ = _lines_run(lambda: routes.handle(request))
    assert answer is not None, f"over {BUDGET} lines of Python for one refused request"
    assert answer.status == 400, answer.body[:300]
    assert "at most 64" in json.loads(answer.body)["detail"], answer.body[:300]
