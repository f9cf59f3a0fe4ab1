"""Live [[sources]] in the daemon as a real process against a real mosquitto: an MJPEG
stream over HTTP faster than the model is read newest-frame-first (the rest counted as
dropped) while MQTT requests are still answered; an RTSP stream (FFmpeg pushing to a
small relay on 127.0.0.1) streams, is lost when its server stops while requests are
still answered, and resumes when it returns."""

from __future__ import annotations

import json

import pytest
from support.client import TestClient
from support.daemon import ROOT, DaemonProcess, daemon_config
from support.images import digits
from support.mosquitto import Mosquitto
from support.rtsp import Pusher, RtspRelay
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


def test_rtsp_stream_is_lost_when_its_server_stops_and_resumes_when_it_returns(tmp_path):
    relay = RtspRelay()
    pusher = Pusher(relay.url, [1, 2, 3])
    try:
        with Mosquitto(tmp_path) as broker:
            config = with_sources(
                daemon_config(tmp_path, broker.port, telemetry=1.0),
                SourceConfig("door", relay.url, fps=5.0),
            )
            client = TestClient(broker.port)
            client.subscribe(f"{T}/sources/#")
            client.subscribe(f"{T}/telemetry")
            client.subscribe(f"{T}/predictions")
            preds = f"{T}/sources/door/predictions"

            def state(_: object = None) -> str:
                seen = client.on(f"{T}/sources/door/state")
                return seen[-1].json()["state"] if seen else ""  # type: ignore[index]

            with DaemonProcess(config) as daemon:
                assert daemon.wait_log("daemon ready", 30), daemon.log()
                client.wait_for(lambda r: len(client.on(preds)) >= 3, 20)
                assert state() == "streaming", daemon.log()
                relay.stop()
                pusher.stop()
                client.wait_for(lambda r: state() == "lost", 15)
                assert state() == "lost", daemon.log()
                before = len(client.on(preds))
                for i, (img, _) in enumerate(digits(4)):
                    client.publish(f"{T}/infer", img, correlation=f"r{i}".encode())
                client.wait_for(lambda r: len(client.on(f"{T}/predictions")) >= 4, 10)
                assert len(client.on(f"{T}/predictions")) == 4  # answered while lost
                relay = RtspRelay(relay.port)
                pusher = Pusher(relay.url, [4, 5])
                client.wait_for(lambda r: len(client.on(preds)) >= before + 3, 40)
                assert len(client.on(preds)) >= before + 3, daemon.log()
                client.wait_for(
                    lambda r: any(
                        m.json().get("sources", {}).get("door", {}).get("reconnects", 0) >= 1
                        for m in client.on(f"{T}/telemetry")
                    ),
                    5,
                )
                assert daemon.terminate() == 0
            client.close()
    finally:
        pusher.stop()
        relay.stop()
    states = [m.json()["state"] for m in client.on(f"{T}/sources/door/state")]
    assert states.index("lost") < len(states) - 1 - states[::-1].index("streaming")
    tele = [m.json()["sources"]["door"] for m in client.on(f"{T}/telemetry")]
    assert tele[-1]["reconnects"] >= 1 and tele[-1]["errors"] >= 1
    late = [m.json()["top"][0]["index"] for m in client.on(preds)[before:]]
    assert set(late) & {4, 5}, late  # the new stream's digits
