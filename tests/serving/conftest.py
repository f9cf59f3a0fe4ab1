"""An HTTP server in this process over a real pipeline and the digits model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from edge_runtime.daemon.config import HttpConfig, ModelConfig, parse_config
from edge_runtime.daemon.pipeline import Pipeline
from edge_runtime.inference.engine import Engine
from edge_runtime.serving.reply import direct_answers
from edge_runtime.serving.server import HttpServer, build_server
from edge_runtime.telemetry.stats import Tally
from tests.conftest import MODELS

DIGITS = MODELS / "digits_int8.tflite"


@contextlib.contextmanager
def serving(
    tmp_path: Path,
    *,
    model: Path = DIGITS,
    queue_size: int = 16,
    metrics: Callable[[], str] = lambda: "edge_runtime_up 1\n",
    **http: object,
) -> Iterator[HttpServer]:
    """A started server on a free loopback port (``http``: [http] keys; ``metrics``: what
    ``/metrics`` answers)."""
    config = parse_config(
        {
            "device_id": "pi-test",
            "state_dir": str(tmp_path),
            "model": {"path": str(model)},
            "requests": {"queue_size": queue_size},
            "http": {"enabled": True, "listen": "127.0.0.1:1", **http},
        }
    )
    config = replace(config, http=replace(config.http, listen="127.0.0.1:0"))
    engine = Engine.load(model, threads=1)
    engine.warm_up()
    pipe = Pipeline(
        engine,
        queue_size=queue_size,
        max_pixels=config.requests.max_pixels,
        top_k=5,
        answer=direct_answers(lambda batch: None),
        tally=Tally(100),
        workers=1,
    )
    pipe.start()
    server = build_server(config, pipe, metrics=metrics, refused=lambda: None)
    server.start()
    try:
        yield server
    finally:
        server.stop(5)
        pipe.stop(5)
        engine.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    with serving(tmp_path) as s:
        yield s


__all__ = ["DIGITS", "HttpConfig", "ModelConfig", "serving"]
