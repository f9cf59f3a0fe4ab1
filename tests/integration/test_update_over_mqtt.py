"""The bundle itself over MQTT, for devices that reach only the broker, with a real
mosquitto and the daemon as a real process: published by ``edge-fleet publish --mqtt``
and applied; a transfer that survives a broker restart, and one that survives a restart
of the daemon, each resuming with the chunks still missing."""

from __future__ import annotations

import hashlib
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.update.chunks import MAX_CHUNKS, ChunkPlan, chunk_topic, split
from edge_runtime.update.service import build_notice
from tests.conftest import MODELS
from tests.integration.test_update_mqtt import (
    events,
    fleet,  # noqa: F401 - the module's broker, keys and v1
    fleet_tool,
    make_bundle,
    start_device,
    wait_result,
)
from tests.integration.test_update_probation import state, stream, wait_stage
from tests.support.client import TestClient
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.integration
CHUNK = 1024


def chunked(bundle: Path) -> tuple[dict[str, Any], list[bytes], str]:
    """The notice, the chunks and their topic folder, for ``bundle`` in 1 KB chunks."""
    data = bundle.read_bytes()
    plan, pieces = split(data, CHUNK)
    return (
        build_notice(bundle, None, chunks=plan),
        pieces,
        chunk_topic("edge", hashlib.sha256(data).hexdigest()),
    )


def send(client: TestClient, folder: str, pieces: list[bytes], indexes: range) -> None:
    for i in indexes:
        client.client.publish(f"{folder}/{i}", pieces[i], qos=1, retain=True)
    client.client.publish("test/flush", b"", qos=1).wait_for_publish(10)


def wait_progress(client: TestClient, device: str, version: str, share: float) -> None:
    def reached(_: object) -> bool:
        return any(
            e["version"] == version
            and e["stage"] == "downloading"
            and (e["progress"] or 0) >= share
            for e in events(client, device)
        )

    client.wait_for(reached, 30)


def clear(client: TestClient, topic: str, folder: str, count: int) -> None:
    client.client.publish(topic, b"", qos=1, retain=True)
    for i in range(count):
        client.client.publish(f"{folder}/{i}", b"", qos=1, retain=True)
    client.client.publish("test/flush", b"", qos=1).wait_for_publish(10)


def test_edge_fleet_publish_sends_the_bundle_through_the_broker(fleet: dict[str, Any]) -> None:  # noqa: F811
    device = "mqtt-only-1"
    daemon = start_device(fleet, device)
    client = TestClient(fleet["broker"].port)
    v2 = make_bundle(fleet["root"], "2.0.0", fleet["key"])
    port = fleet["broker"].port
    try:
        client.subscribe(f"edge/{device}/#")
        done = fleet_tool(
            "publish",
            v2,
            "--port",
            port,
            "--device",
            device,
            "--mqtt",
            "--chunk-size",
            4096,
            "--wait",
            60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "chunks on edge/bundles/" in done.stdout and "applied" in done.stdout
        assert {a["model"]["version"] for a in stream(client, device, "r", 3)} == {"2.0.0"}
        stages = [e["stage"] for e in events(client, device) if e["version"] == "2.0.0"]
        assert stages[0] == "downloading" and "applied" in stages
        assert not list((Path(daemon.config.parent) / "state" / "downloads").glob("*.part"))
        gone = fleet_tool("publish", v2, "--port", port, "--device", device, "--mqtt", "--withdraw")
        assert gone.returncode == 0 and "and its chunks" in gone.stdout, gone.stderr
        late = TestClient(port)  # a newcomer finds neither the notice nor any chunk
        late.subscribe("edge/bundles/#")
        late.subscribe(f"edge/{device}/model/update")
        assert late.wait_for(lambda r: len(r) > 0, 1.0) == []
        late.close()
    finally:
        client.close()
        daemon.kill()


def big_bundle(fleet: dict[str, Any], version: str) -> Path:  # noqa: F811
    """A signed bundle of more than 1,250 KiB (its model padded after the flatbuffer,
    which the interpreter ignores): more than 1,000 chunks of 1 KiB."""
    with tarfile.open(MODELS / "digits_v1.edgebundle") as tar:
        model = tar.extractfile("model.tflite").read()  # type: ignore[union-attr]
    padded = model + bytes(range(256)) * 5000
    path = make_bundle(fleet["root"], version, fleet["key"], {"model.tflite": padded})
    assert path.stat().st_size > 1250 * CHUNK
    return path


def retained_chunks(port: int, folder: str) -> set[str]:
    """The chunk topics the broker retains under ``folder``, with a payload."""
    census = TestClient(port)
    try:
        census.subscribe(folder + "/+")
        got = census.wait_for(lambda r: False, 1.5)
    finally:
        census.close()
    return {m.topic for m in got if m.payload}


def test_a_bundle_that_needed_over_1000_chunks_goes_in_at_most_1000(fleet: dict[str, Any]) -> None:  # noqa: F811
    """A broker may deliver at most 1,000 retained messages to one subscription (ejabberd):
    a bundle of more than 1,000 chunks at --chunk-size is sent in larger chunks, applied,
    and --withdraw (here with another --chunk-size) leaves no chunk behind."""
    device = "mqtt-only-big"
    daemon = start_device(fleet, device, download_timeout=30.0)
    client = TestClient(fleet["broker"].port)
    v2 = big_bundle(fleet, "2.0.0")
    port = fleet["broker"].port
    folder = chunk_topic("edge", hashlib.sha256(v2.read_bytes()).hexdigest())
    try:
        client.subscribe(f"edge/{device}/#")
        args = ("publish", v2, "--port", port, "--device", device, "--mqtt")
        done = fleet_tool(*args, "--chunk-size", CHUNK, "--wait", 45)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "applied" in done.stdout
        sent = int(done.stdout.split(" chunks on ")[0].rsplit("(", 1)[1])
        assert len(retained_chunks(port, folder)) == sent <= MAX_CHUNKS == 1000
        assert {a["model"]["version"] for a in stream(client, device, "r", 2)} == {"2.0.0"}
        gone = fleet_tool(*args, "--withdraw")
        assert gone.returncode == 0 and "and its chunks" in gone.stdout, gone.stderr
        assert retained_chunks(port, folder) == set()
    finally:
        client.close()
        daemon.kill()


def test_a_device_refuses_a_plan_of_more_chunks_than_a_broker_delivers(
    fleet: dict[str, Any],  # noqa: F811
) -> None:
    """A notice whose plan has more than 1,000 chunks (as edge-fleet made them before) is
    refused at once, saying why, rather than waited on until a timeout."""
    device = "mqtt-only-cap"
    daemon = start_device(fleet, device)
    client = TestClient(fleet["broker"].port)
    v2 = big_bundle(fleet, "2.1.0")
    data = v2.read_bytes()
    hashes = tuple(
        hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)
    )
    notice = build_notice(v2, None, chunks=ChunkPlan(CHUNK, hashes))
    topic = f"edge/{device}/model/update"
    try:
        client.subscribe(f"edge/{device}/#")
        client.client.publish(topic, json.dumps(notice), qos=1, retain=True).wait_for_publish(10)
        result = wait_result(client, device, "2.1.0", 30)
        assert result["stage"] == "rejected" and result["reason"] == "bad_notice", result
        assert f"{len(hashes)} chunks; at most 1000" in result["detail"], result
    finally:
        client.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)
        client.close()
        daemon.kill()


def first_half(
    fleet: dict[str, Any],  # noqa: F811
    client: TestClient,
    device: str,
) -> tuple[list[bytes], str, str]:
    """Announce a v2 in 1 KB chunks to ``device``, send half of them and wait until the
    device has stored some; returns the chunks, their folder and the notice's topic."""
    notice, pieces, folder = chunked(make_bundle(fleet["root"], "2.0.0", fleet["key"]))
    topic = f"edge/{device}/model/update"
    client.subscribe(f"edge/{device}/#")
    client.client.publish(topic, json.dumps(notice), qos=1, retain=True).wait_for_publish(10)
    send(client, folder, pieces, range(len(pieces) // 2))
    wait_progress(client, device, "2.0.0", 0.25)
    return pieces, folder, topic


def test_the_transfer_survives_a_broker_restart(fleet: dict[str, Any]) -> None:  # noqa: F811
    device = "mqtt-only-2"
    broker = fleet["broker"]
    daemon = start_device(fleet, device, download_timeout=30.0)
    client = TestClient(broker.port, client_id="operator-2", persistent=True)
    pieces, folder, topic = first_half(fleet, client, device)
    half = len(pieces) // 2
    try:
        broker.restart()  # retained chunks and the notice persist; the daemon reconnects
        assert client.wait_connected(20)
        send(client, folder, pieces, range(half, len(pieces)))
        assert wait_stage(client, device, "2.0.0", "applied")
        assert "MQTT disconnected" in daemon.log()
        assert {a["model"]["version"] for a in stream(client, device, "r", 3)} == {"2.0.0"}
        assert state(client, device)["active"]["version"] == "2.0.0"
    finally:
        clear(client, topic, folder, len(pieces))
        client.close()
        daemon.kill()


def test_the_transfer_survives_a_daemon_restart(fleet: dict[str, Any]) -> None:  # noqa: F811
    device = "mqtt-only-3"
    daemon = start_device(fleet, device, download_timeout=30.0)
    client = TestClient(fleet["broker"].port)
    pieces, folder, topic = first_half(fleet, client, device)
    half = len(pieces) // 2
    try:
        time.sleep(1.0)  # idle: what arrived is made durable
        daemon.kill()
        daemon = DaemonProcess(daemon.config)
        assert daemon.wait_log("daemon ready", 30), daemon.log()
        assert daemon.wait_log("chunks kept from before", 20), daemon.log()
        send(client, folder, pieces, range(half, len(pieces)))
        assert wait_stage(client, device, "2.0.0", "applied")
        log = daemon.log()
        kept = int(log.split("resuming: ")[1].split(" of ")[0])
        assert kept >= half // 2, log
        assert {a["model"]["version"] for a in stream(client, device, "r", 3)} == {"2.0.0"}
    finally:
        clear(client, topic, folder, len(pieces))
        client.close()
        daemon.kill()
