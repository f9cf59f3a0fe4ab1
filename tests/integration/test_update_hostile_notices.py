"""Notices written by someone who may publish on the broker but holds no signing key, sent
to the daemon as a real process through a real mosquitto: what a notice can make the
device read, block on or forget. Each test names the attack it stops."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.update.service import build_notice
from tests.integration.test_update_mqtt import (
    ask,
    events,
    fleet,  # noqa: F401 - the module's broker, keys and v1
    make_bundle,
    start_device,
    wait_result,
)
from tests.support.client import TestClient
from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.integration


def send(client: TestClient, device: str, notice: dict[str, Any]) -> None:
    client.publish(f"edge/{device}/model/update", json.dumps(notice).encode())


@contextlib.contextmanager
def device_running(
    fleet: dict[str, Any],  # noqa: F811
    device: str,
    **update: Any,
) -> Iterator[tuple[DaemonProcess, TestClient]]:
    daemon = start_device(fleet, device, **update)
    client = TestClient(fleet["broker"].port)
    try:
        client.subscribe(f"edge/{device}/#")
        yield daemon, client
    finally:
        client.close()
        daemon.kill()


def leftovers(daemon_config: Path) -> list[Path]:
    downloads = daemon_config.parent / "state" / "downloads"
    return sorted(downloads.iterdir()) if downloads.exists() else []


def test_file_urls_cannot_copy_local_files_leak_their_size_or_block_the_worker(
    fleet: dict[str, Any],  # noqa: F811
) -> None:
    root, key = fleet["root"], fleet["key"]
    device = "file-thief"
    daemon = start_device(fleet, device, download_timeout=3.0)
    client = TestClient(fleet["broker"].port)
    secret_dir = root.parent / f"{root.name}-secret"
    secret_dir.mkdir()
    fifo = root / f"fifo-{time.monotonic_ns()}"
    try:
        client.subscribe(f"edge/{device}/#")
        # a file outside the allowed folder, of an odd size (as /etc/shadow would be)
        secret = secret_dir / "shadow"
        secret.write_bytes(b"root:$6$secret-hash:19000:0:99999:7:::\n" * 111)
        secret_size = str(secret.stat().st_size)
        inside = root / f"odd-{time.monotonic_ns()}"
        inside.write_bytes(b"x" * 4321)
        link = root / f"link-{time.monotonic_ns()}"
        link.symlink_to(secret)
        os.mkfifo(fifo)
        cases = [
            ("7.0.1", secret.as_uri(), "url"),  # outside the roots
            ("7.0.2", f"file://{root}/../{secret_dir.name}/shadow", "url"),
            ("7.0.3", link.as_uri(), "url"),  # a link out of the root
            ("7.0.4", inside.as_uri(), "integrity"),  # inside, not the announced size
            ("7.0.5", fifo.as_uri(), "url"),  # a FIFO nobody writes to
        ]
        for version, url, reason in cases:
            bundle = make_bundle(root, version, key)
            send(client, device, build_notice(bundle, url))
            result = wait_result(client, device, version, timeout=30)
            assert (result["stage"], result["reason"]) == ("rejected", reason), result
            assert secret_size not in result["detail"] and "4321" not in result["detail"], result
            assert leftovers(daemon.config) == [], leftovers(daemon.config)
        # the worker is not blocked: a genuine notice afterwards is applied
        good = make_bundle(root, "7.1.0", key)
        send(client, device, build_notice(good, good.as_uri()))
        assert wait_result(client, device, "7.1.0", timeout=30)["stage"] == "applied"
        state = daemon.config.parent / "state"
        for folder in (state / "models", state / "downloads"):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
        stored = [p for p in (state / "models").iterdir() if p.suffix == ".edgebundle"]
        assert stored and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in stored)
    finally:
        with_writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK) if fifo.exists() else None
        if with_writer is not None:  # releases a worker blocked on it (the defect)
            os.close(with_writer)
        client.close()
        daemon.kill()


def test_a_bad_notice_for_a_bundle_does_not_silence_the_genuine_one(
    fleet: dict[str, Any],  # noqa: F811
) -> None:
    root, key = fleet["root"], fleet["key"]
    device = "silenced"
    with device_running(fleet, device) as (_, client):
        bundle = make_bundle(root, "8.0.0", key)
        other = root / f"same-size-{time.monotonic_ns()}"
        other.write_bytes(b"\0" * bundle.stat().st_size)
        bad = build_notice(bundle, other.as_uri())  # the genuine sha256 and size
        send(client, device, bad)
        result = wait_result(client, device, "8.0.0", timeout=30)
        assert (result["stage"], result["reason"]) == ("rejected", "integrity"), result
        send(client, device, bad)  # the same notice again: answered already
        send(client, device, build_notice(bundle, bundle.as_uri()))
        client.wait_for(
            lambda _: any(
                e["version"] == "8.0.0" and e["stage"] == "applied" for e in events(client, device)
            ),
            30,
        )
        finals = [
            (e["stage"], e["reason"])
            for e in events(client, device)
            if e["version"] == "8.0.0" and e["stage"] in ("applied", "rejected")
        ]
        assert finals == [("rejected", "integrity"), ("applied", None)], finals
        assert ask(client, device, "after-8")["model"]["version"] == "8.0.0"


def test_a_chunk_plan_that_does_not_fit_the_bundle_is_refused_with_a_reason(
    fleet: dict[str, Any],  # noqa: F811
) -> None:
    root, key = fleet["root"], fleet["key"]
    device = "bad-plan"
    with device_running(fleet, device) as (daemon, client):
        bundle = make_bundle(root, "9.0.0", key)
        notice = {**build_notice(bundle, None), "chunks": {"size": 1024, "sha256": ["a" * 64]}}
        send(client, device, notice)
        result = wait_result(client, device, "9.0.0", timeout=30)
        assert (result["stage"], result["reason"]) == ("rejected", "bad_notice"), result
        assert "chunks" in result["detail"], result
        assert "failed unexpectedly" not in daemon.log()
        assert ask(client, device, "after-9")["model"]["version"] == "1.0.0"
