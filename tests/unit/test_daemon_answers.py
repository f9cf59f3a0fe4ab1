"""The daemon's answer path in-process: what it sends, and what it keeps alive while
the broker has not yet acknowledged an answer."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from edge_runtime.daemon.app import Daemon
from edge_runtime.daemon.config import parse_config
from edge_runtime.daemon.pipeline import Job
from edge_runtime.daemon.requests import Request
from edge_runtime.inference.engine import Engine

MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "digits_int8.tflite"


def test_an_answer_awaiting_the_broker_keeps_no_request_image_alive(tmp_path):
    """Answers are held in memory until the broker acknowledges them; the requests
    behind them (camera frames of hundreds of kB) must not be held with them."""
    config = parse_config(
        {
            "device_id": "pi-test",
            "state_dir": str(tmp_path / "state"),
            "model": {"path": str(MODEL)},
            "mqtt": {"host": "127.0.0.1", "port": 1},
        }
    )
    engine = Engine.load(MODEL)
    daemon = Daemon(config, engine)
    sent: list[tuple[str, bytes]] = []

    def publish(topic, payload, qos, correlation):  # a broker that takes, never acknowledges
        sent.append((topic, payload))
        return len(sent)

    daemon.publisher._publish = publish
    acknowledged = []
    request = Request("r1", b"\xff\xd8" + bytes(300_000), response_topic="cam/1/answers")
    job = Job(request, None, lambda ok, doc: acknowledged.append(doc["id"]))
    alive = weakref.ref(request)
    daemon._store_answers([(job, {"top": []}, None)])
    del job, request
    gc.collect()
    try:
        assert [t for t, _ in sent] == ["edge/pi-test/predictions", "cam/1/answers"]
        assert daemon.publisher.pending() == 2 and acknowledged == []
        assert alive() is None, "the request (and its image) lives on with the held answer"
        daemon.publisher.on_published(1)
        daemon.publisher.on_published(2)
        daemon.publisher._drain_acks()
        assert acknowledged == ["r1"]
    finally:
        daemon.outbox.close()
        engine.close()
