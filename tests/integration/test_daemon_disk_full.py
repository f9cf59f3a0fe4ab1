"""A full state folder is a mode, not an end: the daemon as a process with its state
folder and watched folder on a real 2 MiB tmpfs, a real mosquitto that goes away while
images fill the disk and comes back."""

from __future__ import annotations

import base64
import errno
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from support.client import TestClient
from support.daemon import DaemonProcess, daemon_config
from support.images import digits
from support.mosquitto import Mosquitto
from support.smalldisk import fill, free_bytes, small_disk

pytestmark = pytest.mark.integration

DEV = "pi-test"
T = f"edge/{DEV}"


def _drop_until_full(watch: Path, images: list[bytes]) -> list[str]:
    """Images into ``watch``, a few at a time (their answers fill the outbox meanwhile),
    until the disk refuses one; returns the names written."""
    names = []
    for i in range(5000):
        if i % 10 == 0:
            time.sleep(0.2)
        name = f"img{i:05d}.png"
        try:
            (watch / f".{name}").write_bytes(images[i % len(images)])
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            (watch / f".{name}").unlink(missing_ok=True)
            return names
        (watch / f".{name}").rename(watch / name)  # whole files only
        names.append(name)
    raise AssertionError("the disk never filled up")


def _wait(cond, timeout: float, what: str, log=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s\n{log()[-5000:]}")


def _answers(observer: TestClient) -> list[bytes]:
    return [m.payload for m in observer.on(f"{T}/predictions") + observer.on(f"{T}/errors")]


def _answered(observer: TestClient) -> set[str]:
    return {json.loads(p)["id"] for p in _answers(observer)}


def _outbox_rows(state: Path) -> int:
    db = sqlite3.connect(f"file:{state / 'outbox.sqlite3'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


def test_a_full_state_folder_keeps_serving_and_resumes_storing_without_a_restart(tmp_path):
    images = [img for img, _ in digits(20)]
    with small_disk(tmp_path / "small", 2 << 20) as small, Mosquitto(tmp_path) as broker:
        watch = small / "watch"
        watch.mkdir()
        config = daemon_config(
            tmp_path,
            broker.port,
            telemetry=1.0,
            state_dir=str(small / "state"),
            requests={"queue_size": 64, "watch_dir": str(watch), "watch_interval": 0.1},
        )
        observer = TestClient(broker.port, client_id="observer", persistent=True)
        for leaf in ("predictions", "errors", "telemetry"):
            observer.subscribe(f"{T}/{leaf}")
        sender = TestClient(broker.port, client_id="sender", persistent=True)
        daemon = DaemonProcess(config)
        try:
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            _wait(lambda: observer.on(f"{T}/telemetry"), 10, "no telemetry", daemon.log)
            # the broker goes away; images fill the disk; their answers fill the outbox
            broker.stop()
            files = _drop_until_full(watch, images)
            # their answers wait in memory (the files stay until the broker has them)
            assert daemon.wait_log("messages wait in memory", 30), daemon.log()
            time.sleep(1.0)
            stored = _outbox_rows(small / "state")
            assert stored > 0
            # the broker returns: stored answers go out, then what waited in memory,
            # and every request sent now is answered although the disk is still full
            broker.start()
            assert sender.wait_connected(20) and observer.wait_connected(20)
            asked = {f"q{i}" for i in range(10)}
            for i in range(10):
                img = base64.b64encode(images[i]).decode()
                sender.publish(f"{T}/infer", json.dumps({"id": f"q{i}", "image_b64": img}).encode())
            expected = asked | {f"file:{name}" for name in files}
            _wait(
                lambda: expected <= _answered(observer),
                60,
                f"unanswered: {sorted(expected - _answered(observer))[:10]}",
                daemon.log,
            )
            _wait(
                lambda: any(m.json()["outbox"]["disk_full"] for m in observer.on(f"{T}/telemetry")),
                10,
                "telemetry never said disk_full",
                daemon.log,
            )
            log = daemon.log()
            assert "state folder is full" in log and "cannot rollback" not in log
            full = [m.json()["outbox"] for m in observer.on(f"{T}/telemetry")]
            full = [o for o in full if o["disk_full"]]
            assert all(o["not_kept"] == 0 for o in full), full
            # the acknowledged rows are deleted although the disk is still full
            _wait(lambda: _outbox_rows(small / "state") == 0, 10, "acked rows left", daemon.log)
            assert free_bytes(small) < 256 * 1024
            print(
                f"{len(files)} images filled the disk ({stored} answers stored before); "
                f"{len(asked)} requests answered while full; telemetry while full: {full[-1]}"
            )
            # space returns: storing resumes by itself, no restart
            for name in files:
                (watch / "done" / name).unlink()
            _wait(
                lambda: not observer.on(f"{T}/telemetry")[-1].json()["outbox"]["disk_full"],
                15,
                "disk_full stayed on after space returned",
                daemon.log,
            )
            assert free_bytes(small) > 256 * 1024
            broker.stop()
            later = [f"late{i}.png" for i in range(3)]
            for name in later:
                (watch / name).write_bytes(images[0])
            _wait(lambda: _outbox_rows(small / "state") >= 3, 20, "nothing stored", daemon.log)
            broker.start()
            expected |= {f"file:{name}" for name in later}
            _wait(lambda: expected <= _answered(observer), 30, "late answers", daemon.log)
            # a restart publishes nothing again
            assert daemon.terminate() == 0, daemon.log()
            first_log = daemon.log()
            daemon = DaemonProcess(config)
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            time.sleep(3)
            twice = [p for p, n in Counter(_answers(observer)).items() if n > 1]
            assert twice == [], (twice[:3], first_log[-3000:] + daemon.log()[-3000:])
            assert _answered(observer) == expected
            assert daemon.terminate() == 0, daemon.log()
        finally:
            daemon.kill()
            sender.close()
            observer.close()


def test_a_start_on_a_full_disk_serves_and_publishes_nothing_twice(tmp_path):
    """The disk filled while the daemon was stopped (cleanly: its outbox log gone):
    opening the outbox needs room, which the reserve left by the last run gives; the
    daemon starts, publishes what it had stored and answers requests from memory."""
    images = [img for img, _ in digits(20)]
    with small_disk(tmp_path / "small", 2 << 20) as small, Mosquitto(tmp_path) as broker:
        watch = small / "watch"
        watch.mkdir()
        config = daemon_config(
            tmp_path,
            broker.port,
            telemetry=1.0,
            state_dir=str(small / "state"),
            requests={"queue_size": 64, "watch_dir": str(watch), "watch_interval": 0.1},
        )
        observer = TestClient(broker.port, client_id="observer", persistent=True)
        for leaf in ("predictions", "errors"):
            observer.subscribe(f"{T}/{leaf}")
        sender = TestClient(broker.port, client_id="sender", persistent=True)
        daemon = DaemonProcess(config)
        try:
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            broker.stop()
            files = [f"img{i:05d}.png" for i in range(20)]
            for i, name in enumerate(files):
                (watch / name).write_bytes(images[i])
            _wait(lambda: _outbox_rows(small / "state") >= 20, 20, "not stored", daemon.log)
            assert daemon.terminate() == 0, daemon.log()
            first_log = daemon.log()
            fill(small / "filler")
            daemon = DaemonProcess(config)
            assert daemon.wait_log("daemon ready", 30), first_log + daemon.log()
            broker.start()
            assert sender.wait_connected(20) and observer.wait_connected(20)
            asked = {f"q{i}" for i in range(5)}
            for i in range(5):
                img = base64.b64encode(images[i]).decode()
                sender.publish(f"{T}/infer", json.dumps({"id": f"q{i}", "image_b64": img}).encode())
            expected = asked | {f"file:{name}" for name in files}
            _wait(
                lambda: expected <= _answered(observer),
                60,
                f"unanswered: {sorted(expected - _answered(observer))[:10]}",
                lambda: first_log + daemon.log(),
            )
            time.sleep(2)
            answers = _answers(observer)
            assert len(answers) == len(expected), Counter(json.loads(p)["id"] for p in answers)
            assert "state folder is full" in daemon.log()
            assert daemon.terminate() == 0, daemon.log()
        finally:
            daemon.kill()
            sender.close()
            observer.close()
