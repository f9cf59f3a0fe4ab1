"""A daemon that never goes deaf and never hangs unnoticed: hostile payloads, workers that
die or stall (injected with ``EDGE_RUNTIME_FAULT``), requests that crash the process."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time

import pytest
from support.client import TestClient
from support.daemon import DaemonProcess, daemon_config
from support.images import digits
from support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

DEV = "pi-test"
T = f"edge/{DEV}"


def request(rid: str, img: bytes) -> bytes:
    return json.dumps({"id": rid, "image_b64": base64.b64encode(img).decode()}).encode()


def answers(client: TestClient) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for m in client.on(f"{T}/predictions") + client.on(f"{T}/errors"):
        doc = m.json()
        out[doc["id"]] = doc  # type: ignore[index]
    return out


def wait_answered(client: TestClient, ids: set[str], timeout: float) -> dict[str, dict]:
    client.wait_for(lambda r: ids <= set(answers(client)), timeout)
    return answers(client)


@pytest.mark.parametrize(
    "payload",
    [b"[" * 1000 + b"]" * 1000, b'{"a":' * 50_000],
    ids=["nested-arrays", "nested-objects"],
)
def test_deeply_nested_json_gets_bad_json_and_the_daemon_keeps_answering(tmp_path, payload):
    img, _ = digits(1)[0]
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port)
        with DaemonProcess(config) as daemon:
            client = TestClient(broker.port)
            client.subscribe(f"{T}/predictions")
            client.subscribe(f"{T}/errors")
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            client.publish(f"{T}/infer", payload, correlation=b"nested")
            got = wait_answered(client, {"nested"}, 15)
            assert got.get("nested", {}).get("error") == "bad_json", (got, daemon.log())
            client.publish(f"{T}/infer", request("good-1", img))
            got = wait_answered(client, {"good-1"}, 15)
            assert "top" in got.get("good-1", {}), (got, daemon.log())
            client.close()
            assert daemon.terminate() == 0, daemon.log()
            assert "Traceback" not in daemon.log()


class NotifySocket:
    """The unix datagram socket systemd would listen on: what the daemon sends, with
    the monotonic time each message arrived."""

    def __init__(self, path) -> None:  # type: ignore[no-untyped-def]
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.seen: list[tuple[float, str]] = []

    def read_until(self, predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.seen):
                return True
            with contextlib.suppress(socket.timeout):
                self.seen.append((time.monotonic(), self.sock.recv(4096).decode()))
        return bool(predicate(self.seen))

    def since(self, t: float) -> list[str]:
        return [m for at, m in self.seen if at >= t]

    def close(self) -> None:
        self.sock.close()


def pings(messages: list[str]) -> int:
    return sum("WATCHDOG=1" in m for m in messages)


def test_a_worker_killed_by_a_fault_ends_the_process_non_zero_within_the_watchdog_period(
    tmp_path,
):
    images = [img for img, _ in digits(2)]
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "2000000",
        "EDGE_RUNTIME_FAULT": "die:inference:2",  # the worker's second request
    }
    try:
        with Mosquitto(tmp_path) as broker:
            config = daemon_config(tmp_path, broker.port)
            with DaemonProcess(config, env=env) as daemon:
                client = TestClient(broker.port)
                client.subscribe(f"{T}/predictions")
                client.subscribe(f"{T}/errors")
                assert notify.read_until(lambda s: pings([m for _, m in s]) >= 2, 30), (
                    notify.seen,
                    daemon.log(),
                )
                client.publish(f"{T}/infer", request("first", images[0]))
                assert "top" in wait_answered(client, {"first"}, 15).get("first", {})
                killed_at = time.monotonic()
                client.publish(f"{T}/infer", request("second", images[1]))
                # the supervisor names the dead worker, stops feeding the watchdog and
                # the process ends, non-zero, so that systemd starts it again
                assert notify.read_until(
                    lambda s: any("inference" in m and "STATUS=" in m for _, m in s), 2.0
                ), (notify.seen, daemon.log())
                named_at = next(at for at, m in notify.seen if "inference" in m)
                assert named_at - killed_at < 2.0  # within the watchdog period
                rc = daemon.proc.wait(15)
                assert rc == 70, daemon.log()
                exited = time.monotonic() - named_at
                assert exited < 5.0, exited  # it stops within FAILED_STOP (2 s)
                notify.read_until(lambda s: False, 0.5)
                assert pings(notify.since(named_at)) == 0, notify.seen
                log = daemon.log()
                assert "worker inference died" in log and "WorkerKilled" in log, log
                client.close()
    finally:
        notify.close()


def test_the_watchdog_is_not_fed_while_a_worker_is_stuck(tmp_path):
    images = [img for img, _ in digits(2)]
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "2000000",
        "EDGE_RUNTIME_FAULT": "hang:answers:2",  # storing the second batch never ends
    }
    try:
        with Mosquitto(tmp_path) as broker:
            config = daemon_config(tmp_path, broker.port, telemetry=1.0)
            with DaemonProcess(config, env=env) as daemon:
                client = TestClient(broker.port)
                for topic in ("predictions", "errors", "telemetry"):
                    client.subscribe(f"{T}/{topic}")
                assert notify.read_until(lambda s: pings([m for _, m in s]) >= 2, 30), (
                    notify.seen,
                    daemon.log(),
                )
                client.publish(f"{T}/infer", request("first", images[0]))
                assert "top" in wait_answered(client, {"first"}, 15).get("first", {})
                hung_at = time.monotonic()
                client.publish(f"{T}/infer", request("second", images[1]))
                # the answer worker's bound is 10 s: past it, the status names it and
                # the pings stop (systemd's watchdog would restart the daemon)
                assert notify.read_until(
                    lambda s: any("answers stuck" in m for at, m in s if at > hung_at), 20
                ), (notify.seen, daemon.log())
                stuck_at = next(at for at, m in notify.seen if "answers stuck" in m)
                assert 9.0 < stuck_at - hung_at < 16.0
                notify.read_until(lambda s: False, 3.0)
                assert pings(notify.since(stuck_at)) == 0, notify.seen
                assert pings(notify.since(hung_at)) >= 2  # fed while the step was in bound
                assert daemon.alive()
                # telemetry names it too
                client.wait_for(
                    lambda r: any(
                        m.topic.endswith("telemetry")
                        and "answers" in m.json()["workers"]["unhealthy"]
                        for m in r
                    ),
                    5,
                )
                unhealthy = [m.json()["workers"]["unhealthy"] for m in client.on(f"{T}/telemetry")]
                assert any("answers" in u for u in unhealthy), unhealthy
                assert "worker answers stuck" in daemon.log()
                client.close()
    finally:
        notify.close()


def test_a_request_that_ended_the_process_is_answered_poison_on_its_next_delivery(tmp_path):
    images = [img for img, _ in digits(3)]
    env = {"EDGE_RUNTIME_FAULT": "crash:boom"}  # serving "boom" kills the process
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port)
        client = TestClient(broker.port)
        client.subscribe(f"{T}/predictions")
        client.subscribe(f"{T}/errors")
        daemon = DaemonProcess(config, env=env)
        try:
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            client.publish(f"{T}/infer", request("before", images[0]))
            assert "top" in wait_answered(client, {"before"}, 15).get("before", {})
            client.publish(f"{T}/infer", request("boom", images[1]))
            assert daemon.proc.wait(15) != 0  # killed while serving it, never answered
            first_log = daemon.log()
            assert "boom" not in answers(client)
            # systemd starts it again: the broker delivers "boom" again (the session
            # persists), and it is refused instead of ending this process too
            daemon = DaemonProcess(config, env=env)
            got = wait_answered(client, {"boom"}, 30)
            assert got["boom"].get("error") == "poison", (got, first_log, daemon.log())
            client.publish(f"{T}/infer", request("after", images[2]))
            assert "top" in wait_answered(client, {"after"}, 15).get("after", {}), daemon.log()
            assert daemon.alive()
            assert "while serving request 'boom'" in daemon.log()
            assert daemon.terminate() == 0, daemon.log()
            # acknowledged: a third run is not given it again
            daemon = DaemonProcess(config)
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            time.sleep(1.0)
            assert sum(m.json()["id"] == "boom" for m in client.on(f"{T}/errors")) == 1
            assert daemon.terminate() == 0, daemon.log()
        finally:
            daemon.kill()
            client.close()
