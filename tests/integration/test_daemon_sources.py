"""[[sources]] in the daemon as a real process against a real mosquitto: an H.264 clip
played as a file:// source gives the model's labels in order; changes mode publishes the
first result and each change, with a retained JPEG snapshot; sources that cannot be read
(an RTSP server that is not there, picamera2 and v4l2 without their libraries) go lost
with one clear line while the good ones stream."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from support.client import TestClient
from support.daemon import MODEL, DaemonProcess, daemon_config
from support.mosquitto import Mosquitto, free_port
from support.video import digit_frames, png, write_clip

from edge_runtime.inference.engine import Engine

pytest.importorskip("av")
pytestmark = pytest.mark.integration

DEV = "pi-test"
S = f"edge/{DEV}/sources"
LABELS = [3, 7, 1, 0, 5, 9]


def sources_toml(tables: list[dict[str, object]]) -> str:
    out = []
    for table in tables:
        out.append("\n[[sources]]")
        out += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


def collapse(values: list[int]) -> list[int]:
    out: list[int] = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


def states(client: TestClient, name: str) -> list[dict]:
    return [m.json() for m in client.on(f"{S}/{name}/state")]  # type: ignore[misc]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One daemon reading a clip twice (every, and changes with snapshots) beside three
    sources that cannot be read; what it published, once both clips ended."""
    tmp = tmp_path_factory.mktemp("sources")
    frames = digit_frames(LABELS)
    engine = Engine.load(MODEL, threads=1)
    try:
        want = [engine.predict(png(img)).top[0].index for img, _ in frames]
    finally:
        engine.close()
    assert want == LABELS  # the model reads these digits right
    clip = write_clip(tmp / "clip.mp4", [img for img, _ in frames], hold=8, fps=8)
    with Mosquitto(tmp) as broker:
        config = daemon_config(tmp, broker.port, telemetry=1.0)
        dead = free_port()
        with config.open("a") as f:
            f.write(
                sources_toml(
                    [
                        {"name": "clip", "url": f"file://{clip}", "fps": 0.0},
                        {
                            "name": "gate",
                            "url": f"file://{clip}",
                            "fps": 0.0,
                            "publish": "changes",
                            "min_score": 0.3,
                            "snapshot": True,
                        },
                        {"name": "bad", "url": f"rtsp://127.0.0.1:{dead}/nothing"},
                        {"name": "pi", "url": "picamera2:0"},
                        {"name": "usb", "url": "v4l2:///dev/video7"},
                    ]
                )
            )
        client = TestClient(broker.port)
        client.subscribe(f"{S}/#")
        client.subscribe(f"edge/{DEV}/telemetry")
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("daemon ready", 30), daemon.log()

            def ended(_: object) -> bool:
                return all(
                    any(s["state"] == "ended" for s in states(client, n)) for n in ("clip", "gate")
                )

            client.wait_for(ended, 40)
            client.wait_for(lambda r: len(r) > 0 and False, 1.5)  # a telemetry round after
            late = TestClient(broker.port)
            late.subscribe(f"{S}/#")
            late.wait_for(lambda r: any(m.topic.endswith("/snapshot") for m in r), 5)
            assert daemon.terminate() == 0
            log = daemon.log()
        client.wait_for(lambda r: False, 0.5)
        late.close()
        client.close()
        yield client, late, log


def test_file_clip_gives_the_labels_in_order(run):
    client, _, log = run
    docs = [m.json() for m in client.on(f"{S}/clip/predictions")]
    assert docs, log
    assert collapse([d["top"][0]["index"] for d in docs]) == LABELS, log
    indexes = [d["frame_index"] for d in docs]
    assert indexes == sorted(set(indexes)) and indexes[0] >= 1
    for d in docs:
        assert d["source"] == "clip" and d["device_id"] == DEV
        assert d["frame_ts"].endswith("Z") and d["ts"].endswith("Z")
        assert d["latency_ms"]["capture_to_publish"] >= d["latency_ms"]["invoke"]
    seq = [s["state"] for s in states(client, "clip")]
    assert seq[:2] == ["connecting", "streaming"] and "ended" in seq and seq[-1] == "stopped"


def test_changes_mode_publishes_each_change_and_a_retained_snapshot(run):
    client, late, log = run
    docs = [m.json() for m in client.on(f"{S}/gate/predictions")]
    assert [d["top"][0]["index"] for d in docs] == LABELS, log  # first, then each change
    snaps = [m for m in late.on(f"{S}/gate/snapshot")]
    assert snaps and snaps[-1].retain
    img = Image.open(io.BytesIO(snaps[-1].payload))
    assert img.format == "JPEG" and max(img.size) >= 64


def test_unreadable_sources_go_lost_with_one_line_and_the_good_ones_stream(run):
    client, _, log = run
    bad = states(client, "bad")
    assert any(s["state"] == "lost" and s["detail"] for s in bad), bad
    pi = [s for s in states(client, "pi") if s["state"] == "lost"]
    assert pi and "picamera2 is not installed" in pi[0]["detail"], pi
    usb = [s for s in states(client, "usb") if s["state"] == "lost"]
    assert usb and "video4linux2" in usb[0]["detail"], usb
    assert all("\n" not in s["detail"] for s in bad + pi + usb)
    assert "Traceback" not in log
    tele = [m.json() for m in client.on(f"edge/{DEV}/telemetry")]
    srcs = [t["sources"] for t in tele if "sources" in t]
    assert srcs, log
    last = srcs[-1]
    assert set(last) == {"clip", "gate", "bad", "pi", "usb"}
    assert last["bad"]["errors"] >= 1 and last["clip"]["errors"] == 0
    assert set(last["clip"]) == {
        "state",
        "fps_in",
        "fps_processed",
        "dropped",
        "errors",
        "reconnects",
        "decoder",
        "latency_ms",
    }
    assert last["clip"]["latency_ms"]["p50"] is not None
    assert last["clip"]["decoder"].startswith(("h264 (software, threaded)", "h264 (hardware)"))
