"""Live [[sources]] in the daemon as a real process against a real mosquitto: an MJPEG
stream over HTTP faster than the model is read newest-frame-first (the rest counted as
dropped) while MQTT requests are still answered."""

from __future__ import annotations

import json

import pytest
from support.client import TestClient
from support.daemon import ROOT, DaemonProcess, daemon_config
from support.images import digits
from support.mosquitto import Mosquitto
from support.streams import MjpegServer
from support.video import digit_frames

from edge_runtime.daemon.config import SourceConfig

pytest.importorskip("av")
pytestmark = pytest.mark.integration

DEV = "pi-test"
T = f"edge/{DEV}"
#: about 45 ms an invoke: some 20 frames a second at most
SLOW = ROOT / "tests" / "fixtures" / "models" / "slow_int8.tflite"


def with_sources(config, *sources: SourceConfig):
    with config.open("a") as f:
        for s in sources:
            f.write("\n[[sources]]\n")
            for key in ("name", "url", "fps", "publish"):
                f.write(f"{key} = {json.dumps(getattr(s, key))}\n")
    return config


def test_mjpeg_faster_than_the_model_drops_frames_and_requests_are_still_answered(tmp_path):
    with (
        Mosquitto(tmp_path) as broker,
        MjpegServer([img for img, _ in digit_frames([1, 2, 3, 4])], fps=80) as stream,
    ):
        config = with_sources(
            daemon_config(tmp_path, broker.port, model=SLOW, telemetry=1.0),
            SourceConfig("cam", stream.url, fps=0.0),
        )
        client = TestClient(broker.port)
        client.subscribe(f"{T}/sources/#")
        client.subscribe(f"{T}/telemetry")
        client.subscribe(f"{T}/predictions")
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            client.wait_for(lambda r: len(client.on(f"{T}/sources/cam/predictions")) >= 10, 20)
            for i, (img, _) in enumerate(digits(8)):
                client.publish(f"{T}/infer", img, correlation=f"r{i}".encode())
            client.wait_for(lambda r: len(client.on(f"{T}/predictions")) >= 8, 20)

            def counted(_: object) -> bool:
                tele = [m.json() for m in client.on(f"{T}/telemetry")]
                return any(t.get("sources", {}).get("cam", {}).get("dropped", 0) > 20 for t in tele)

            client.wait_for(counted, 15)
            assert daemon.terminate() == 0
            log = daemon.log()
        client.close()
    assert len(client.on(f"{T}/predictions")) == 8, log  # requests are not starved
    cam = [
        t["sources"]["cam"]
        for t in (m.json() for m in client.on(f"{T}/telemetry"))
        if "sources" in t
    ]
    assert cam and cam[-1]["dropped"] > 20, cam
    busy = [c for c in cam if c["state"] == "streaming" and c["fps_processed"] > 0]
    assert busy and all(c["fps_in"] > c["fps_processed"] for c in busy), cam
    docs = [m.json() for m in client.on(f"{T}/sources/cam/predictions")]
    indexes = [d["frame_index"] for d in docs]
    assert indexes == sorted(indexes) and indexes[-1] - indexes[0] > len(indexes), indexes
