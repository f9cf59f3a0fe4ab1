"""The daemon's MQTT client id: by default the device id, which is what a broker that binds
client ids to identities expects (deploy_scripts/broker: the username, or the client
certificate's CN, is the device id); ``[mqtt] client_id`` still overrides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime.daemon.app import Daemon
from edge_runtime.daemon.config import parse_config
from edge_runtime.inference.engine import Engine

MODEL = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "digits_int8.tflite"


@pytest.mark.parametrize(
    ("mqtt", "expected"),
    [
        ({}, "pi-07"),
        ({"username": "pi-07"}, "pi-07"),
        ({"client_id": "edge-runtime-pi-07"}, "edge-runtime-pi-07"),  # the former default
    ],
)
def test_client_id(tmp_path: Path, mqtt: dict[str, str], expected: str) -> None:
    config = parse_config(
        {
            "device_id": "pi-07",
            "state_dir": str(tmp_path / "state"),
            "model": {"path": str(MODEL)},
            "mqtt": {"host": "127.0.0.1", "port": 1, **mqtt},
        }
    )
    assert config.client_id == expected
    engine = Engine.load(MODEL)
    daemon = Daemon(config, engine)
    try:
        assert daemon.transport.options.client_id == expected
    finally:
        daemon.outbox.close()
        engine.close()
