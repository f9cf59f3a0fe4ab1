"""The HTTP APIs' way into the daemon: the active model's description and the bounded
pipeline the MQTT requests go through.

Each image or tensor becomes one pipeline job; a full queue is a 429, a stopping daemon
a 503, and the pipeline's error codes come back as they are (``not_an_image``, ...).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import numpy as np

from edge_runtime.daemon.pipeline import Job, Pipeline
from edge_runtime.daemon.requests import Request
from edge_runtime.serving.http import HttpError
from edge_runtime.serving.reply import HttpReply

#: Most images or tensors one HTTP request may carry.
MAX_INSTANCES = 64
#: JSON beyond one image's or tensor's worth that a request may carry (ids, names).
JSON_SLACK = 64 * 1024
#: Input tensors one JSON request may carry (their values are bounded before parsing).
TENSORS_PER_JSON = 4
#: The tensors a detection model's answer is given as (TFLite detection post-processing).
DETECTION_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")


@dataclass(frozen=True)
class Tensor:
    """A named tensor's declaration: dtype as numpy names it, shape (-1: any)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


class ModelService:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        model_name: str | None = None,
        queue_wait: float = 0.5,
        answer_timeout: float = 30.0,
        max_image_bytes: int = 10 * 1024 * 1024,
        refused: Callable[[], None] = lambda: None,
    ) -> None:
        """``refused`` counts a request turned away because the queue was full."""
        self._pipeline = pipeline
        self._model_name = model_name
        self.queue_wait = queue_wait
        self.answer_timeout = answer_timeout
        self.max_image_bytes = max_image_bytes
        self._refused = refused
        self.stopping = threading.Event()

    # -- the model --------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        return self._pipeline.engine  # swapped by updates: read it each time

    @property
    def name(self) -> str:
        return self._model_name or str(self.engine.identity.name)

    @property
    def version(self) -> str:
        return str(self.engine.identity.version or "1")

    def ready(self) -> bool:
        return not self.stopping.is_set()

    def check(self, name: str, version: str | None = None) -> None:
        """``name`` (percent-encoded, from a path) is the served model.

        Raises:
            HttpError: model_not_found (404), not_ready (503).
        """
        if unquote(name) != self.name:
            raise HttpError("model_not_found", f"no model {unquote(name)!r}; serving {self.name!r}")
        if version is not None and unquote(version) != self.version:
            raise HttpError(
                "model_not_found",
                f"no version {unquote(version)!r} of {self.name!r}; serving {self.version!r}",
            )
        if not self.ready():
            raise HttpError("shutting_down", "the daemon is stopping")

    def input(self) -> Tensor:
        spec = self.engine.inputs[0]
        return Tensor(spec.name, spec.dtype, tuple(spec.shape))

    def outputs(self) -> list[Tensor]:
        """What an answer's tensors are, dequantised (float32)."""
        layout = self.engine.layout
        if layout.kind == "detection":
            shapes = [(1, -1, 4), (1, -1), (1, -1), (1,)]
            return [Tensor(n, "float32", s) for n, s in zip(DETECTION_OUTPUTS, shapes)]
        return [Tensor(t.name, "float32", tuple(t.shape)) for t in layout.tensors]

    def check_json(self, body: bytes | memoryview) -> None:
        """A JSON body may be parsed: at most one image's worth of base64 or one input
        tensor's worth of numbers (32 bytes each), plus 64 KiB, and at most
        ``TENSORS_PER_JSON`` input tensors' worth of values (counted by commas, before
        parsing). Parsed, a JSON array takes 10 to 30 times its size in memory, so an
        endpoint that takes JSON bounds it by what a request can sensibly hold, not by
        the body cap alone.

        Raises:
            HttpError: too_large.
        """
        size = len(body)
        elements = int(np.prod([max(d, 1) for d in self.input().shape]))
        limit = max(4 * self.max_image_bytes // 3, 32 * elements) + JSON_SLACK
        values = bytes(body).count(b",")
        if values > TENSORS_PER_JSON * elements + JSON_SLACK // 16:
            raise HttpError(
                "too_large",
                f"the JSON holds about {values} values; this model's requests take at most "
                f"{TENSORS_PER_JSON} input tensors of {elements} (send more in separate "
                "requests, or use the KServe binary tensor data extension)",
            )
        if size > limit:
            raise HttpError(
                "too_large",
                f"the JSON is {size} bytes; this model's requests take at most {limit} "
                "(one image or input tensor; send several in separate requests, or the "
                "KServe binary tensor data extension)",
            )

    def classes(self) -> int | None:
        layout = self.engine.layout
        if layout.kind != "classification":
            return None
        return int(np.prod(layout.tensors[0].shape))

    # -- serving ------------------------------------------------------------------------
    def predict_images(
        self, images: Sequence[bytes], request_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The ``predict --json`` answer of each image (top-k as configured).

        Raises:
            HttpError: too_large, queue_full, not_ready, the pipeline's codes.
        """
        for image in images:
            if len(image) > self.max_image_bytes:
                raise HttpError(
                    "too_large",
                    f"image is {len(image)} bytes; the limit is {self.max_image_bytes} "
                    "(requests.max_payload_bytes)",
                )
        ids = _ids(request_id, len(images))
        answers = self._run([Request(rid, image, "http") for rid, image in zip(ids, images)])
        return [{"id": rid, **answer} for rid, answer in zip(ids, answers)]

    def scores_of_images(self, images: Sequence[bytes]) -> list[list[np.ndarray]]:
        """Each image's output tensors, dequantised (``outputs()`` order)."""
        for image in images:
            if len(image) > self.max_image_bytes:
                raise HttpError(
                    "too_large",
                    f"image is {len(image)} bytes; the limit is {self.max_image_bytes}",
                )
        ids = _ids(None, len(images))
        k = self.classes()
        answers = self._run([Request(i, img, "http", top_k=k) for i, img in zip(ids, images)])
        return [self._tensors(a) for a in answers]

    def scores_of_tensors(self, tensors: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
        """Each input tensor's output tensors (``tensors`` as ``input_tensor`` made them)."""
        ids = _ids(None, len(tensors))
        k = self.classes()
        requests = [
            Request(i, np.ascontiguousarray(t).tobytes(), "http", tensor=True, top_k=k)
            for i, t in zip(ids, tensors)
        ]
        return [self._tensors(a) for a in self._run(requests)]

    def input_tensor(self, values: Any, what: str = "the input") -> np.ndarray:
        """``values`` (nested lists or an array) as the model's input tensor, batch of 1;
        the batch dimension may be left out.

        Raises:
            HttpError: bad_tensor (shape, type or range).
        """
        spec = self.input()
        try:
            given = np.asarray(values)
        except (ValueError, TypeError) as exc:
            raise HttpError("bad_tensor", f"{what} is not a tensor: {exc}") from exc
        if given.shape == spec.shape[1:]:
            given = given.reshape(spec.shape)
        if given.shape != spec.shape:
            raise HttpError(
                "bad_tensor",
                f"{what} has shape {list(given.shape)}; the model takes {list(spec.shape)}",
            )
        return to_dtype(given, np.dtype(spec.dtype), what)

    def _run(self, requests: list[Request]) -> list[dict[str, Any]]:
        if not requests:
            raise HttpError("bad_request", "no instances given")
        if len(requests) > MAX_INSTANCES:
            raise HttpError(
                "bad_request", f"{len(requests)} instances; at most {MAX_INSTANCES} per request"
            )
        if not self.ready():
            raise HttpError("shutting_down", "the daemon is stopping")
        replies = []
        for request in requests:
            reply = HttpReply()
            if not self._pipeline.submit(Job(request, None, reply), wait=self.queue_wait):
                if self.stopping.is_set():
                    raise HttpError("shutting_down", "the daemon is stopping")
                self._refused()
                raise HttpError("queue_full", "the request queue is full; try again later")
            replies.append(reply)
        deadline = time.monotonic() + self.answer_timeout
        answers = []
        for reply in replies:
            if not reply.wait(max(0.0, deadline - time.monotonic())):
                raise HttpError("timeout", f"no answer within {self.answer_timeout:g} s")
            if reply.error is not None:
                raise HttpError(reply.error.code, reply.error.detail)
            assert reply.result is not None
            answers.append(reply.result)
        return answers

    def _tensors(self, answer: dict[str, Any]) -> list[np.ndarray]:
        kind = self.engine.layout.kind
        if kind == "classification":
            spec = self.outputs()[0]
            flat = np.zeros(int(np.prod(spec.shape)), dtype=np.float32)
            for item in answer["top"]:
                flat[int(item["index"])] = float(item["score"])
            return [flat.reshape(spec.shape)]
        if kind == "detection":
            found = answer["detections"]
            n = len(found)
            boxes = np.array([d["box"] for d in found], dtype=np.float32).reshape(1, n, 4)
            classes = np.array([d["index"] for d in found], dtype=np.float32).reshape(1, n)
            scores = np.array([d["score"] for d in found], dtype=np.float32).reshape(1, n)
            return [boxes, classes, scores, np.array([n], dtype=np.float32)]
        return [
            np.array(out["values"], dtype=np.float32).reshape(
                out["shape"] if not out["truncated"] else (-1,)
            )
            for out in answer["outputs"]
        ]


def to_dtype(values: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """``values`` in ``dtype``; integers must be whole numbers within its range.

    Raises:
        HttpError: bad_tensor.
    """
    if values.dtype.kind not in "biuf":
        raise HttpError("bad_tensor", f"{what} holds {values.dtype.name} values, not numbers")
    if dtype.kind in "iu":
        if values.dtype.kind == "f" and not np.all(
            np.isfinite(values) & (values == np.round(values))
        ):
            raise HttpError("bad_tensor", f"{what}: the model takes whole numbers ({dtype.name})")
        info = np.iinfo(dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise HttpError(
                "bad_tensor", f"{what}: values must lie in {info.min}..{info.max} ({dtype.name})"
            )
    elif values.size and not np.all(np.isfinite(values)):
        raise HttpError("bad_tensor", f"{what}: values must be finite")
    return values.astype(dtype)


def _ids(request_id: str | None, n: int) -> list[str]:
    base = request_id or "http-" + uuid.uuid4().hex[:16]
    return [base] if n == 1 else [f"{base}/{i}" for i in range(n)]
