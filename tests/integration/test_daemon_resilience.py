"""Nothing lost: broker restarts and daemon restarts during a stream, SIGTERM drain,
systemd notifications, and bad configs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections import defaultdict

import pytest
from support.client import TestClient
from support.daemon import DaemonProcess, command, daemon_config, write_config
from support.images import digits
from support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

DEV = "pi-test"
T = f"edge/{DEV}"


def request(i: int, img: bytes) -> bytes:
    import base64

    return json.dumps({"id": f"r{i:04d}", "image_b64": base64.b64encode(img).decode()}).encode()


def check_exactly_answered(
    observer: TestClient, expected: set[str], log: str = "", *, poison: int = 0
) -> None:
    """Every request answered; any duplicate (QoS 1) carries the same id and the same answer.
    ``log`` (the daemon's) is shown when the check fails. ``poison``: how many may be
    answered with the error ``poison`` (in flight when the process was killed)."""
    by_id: dict[str, list[dict]] = defaultdict(list)
    for m in observer.on(f"{T}/predictions") + observer.on(f"{T}/errors"):
        doc = m.json()
        by_id[doc["id"]].append(doc)  # type: ignore[index]
    assert set(by_id) == expected, (
        f"missing {sorted(expected - set(by_id))[:10]}, extra {sorted(set(by_id) - expected)[:10]}"
    )
    poisoned = {i for i, docs in by_id.items() if any(d.get("error") == "poison" for d in docs)}
    assert len(poisoned) <= poison, (sorted(poisoned), log[-6000:])
    for i, docs in by_id.items():
        assert len({json.dumps(d.get("top")) for d in docs}) == 1
        assert i in poisoned or all("error" not in d for d in docs), (docs, log[-6000:])
    dups = sum(len(v) - 1 for v in by_id.values())
    print(f"{len(expected)} requests, {dups} duplicate answers")
    assert dups <= len(expected) // 5, f"{dups} duplicates"


def wait_all(observer: TestClient, expected: set[str], timeout: float) -> None:
    def done(received: list) -> bool:
        ids = set()
        for m in received:
            if m.topic in (f"{T}/predictions", f"{T}/errors"):
                ids.add(json.loads(m.payload)["id"])
        return expected <= ids

    observer.wait_for(done, timeout)


def test_broker_restarted_twice_during_1000_requests(tmp_path):
    images = [img for img, _ in digits(50)]
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port, requests={"queue_size": 256})
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            observer = TestClient(broker.port, client_id="observer", persistent=True)
            observer.subscribe(f"{T}/predictions")
            observer.subscribe(f"{T}/errors")
            sender = TestClient(broker.port, client_id="sender", persistent=True)
            expected = set()
            for chunk in range(4):
                assert sender.wait_connected(20) and observer.wait_connected(20)
                for i in range(chunk * 250, (chunk + 1) * 250):
                    sender.publish(f"{T}/infer", request(i, images[i % len(images)]), wait=False)
                    expected.add(f"r{i:04d}")
                sender.client.publish(f"{T}/noop", b"", qos=1).wait_for_publish(20)
                if chunk in (0, 2):  # cut the broker mid-stream, twice
                    time.sleep(0.2)
                    broker.stop()
                    time.sleep(1.5)
                    broker.start()
            wait_all(observer, expected, 120)
            check_exactly_answered(observer, expected, daemon.log())
            assert "MQTT disconnected" in daemon.log()
            sender.close()
            observer.close()
            assert daemon.terminate() == 0


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_daemon_restarted_during_a_stream(tmp_path, how):
    images = [img for img, _ in digits(50)]
    with Mosquitto(tmp_path) as broker:
        # the queue holds what a broker resending a session's messages after the restart
        # may push at once; the test is about nothing being lost, not about refusals
        config = daemon_config(tmp_path, broker.port, requests={"queue_size": 256})
        observer = TestClient(broker.port, client_id="observer", persistent=True)
        observer.subscribe(f"{T}/predictions")
        observer.subscribe(f"{T}/errors")
        sender = TestClient(broker.port)
        daemon = DaemonProcess(config)
        try:
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            expected = {f"r{i:04d}" for i in range(400)}
            for i in range(400):  # sent faster than a 1-thread daemon answers them
                sender.publish(f"{T}/infer", request(i, images[i % len(images)]), wait=False)
            observer.wait_for(lambda r: len(r) >= 30, 20)
            if how == "sigterm":
                assert daemon.terminate(30) == 0, daemon.log()
            else:
                daemon.kill()
            first_log = daemon.log()
            answered_first = {m.json()["id"] for m in observer.received}
            assert len(answered_first) < len(expected), "the stream ended before the restart"
            daemon = DaemonProcess(config)  # same state dir, same session
            wait_all(observer, expected, 90)
            # a request being served when SIGKILL came looks like one that ended the
            # process: answered poison (one preprocessing worker and the inference worker)
            check_exactly_answered(
                observer,
                expected,
                first_log + "\n-- restarted --\n" + daemon.log(),
                poison=2 if how == "sigkill" else 0,
            )
            assert daemon.terminate(30) == 0, first_log + daemon.log()
        finally:
            daemon.kill()
            sender.close()
            observer.close()


def test_sigterm_answers_everything_in_flight_and_exits_0(tmp_path):
    images = [img for img, _ in digits(20)]
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port, requests={"queue_size": 1000})
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("daemon ready", 30)
            observer = TestClient(broker.port)
            observer.subscribe(f"{T}/predictions")
            sender = TestClient(broker.port)
            for i in range(200):
                sender.publish(f"{T}/infer", request(i, images[i % 20]), wait=False)
            sender.client.publish(f"{T}/noop", b"", qos=1).wait_for_publish(20)
            observer.wait_for(lambda r: len(r) >= 1, 10)
            start = time.monotonic()
            assert daemon.terminate(30) == 0
            assert time.monotonic() - start < 20
            log = daemon.log()
            assert "queue drained" in log, log
            answered = {m.json()["id"] for m in observer.on(f"{T}/predictions")}
            # whatever the daemon took from the broker was answered before it exited
            taken = len(answered)
            assert taken >= 1
            assert "0 messages kept in the outbox" in log
            sender.close()
            observer.close()


def _outbox_rows_ever(state_dir) -> int:
    """How many rows the outbox ever took (its AUTOINCREMENT counter)."""
    import sqlite3

    db = sqlite3.connect(f"file:{state_dir / 'outbox.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    finally:
        db.close()
    return int(row[0]) if row else 0


def test_a_connected_daemon_writes_no_answer_to_its_state_folder(tmp_path):
    """While the broker acknowledges promptly, answers and telemetry go out from memory:
    the outbox takes no row, and the SD card is not written once per answer."""
    images = [img for img, _ in digits(20)]
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port, telemetry=0.3)
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            observer = TestClient(broker.port)
            observer.subscribe(f"{T}/predictions")
            observer.subscribe(f"{T}/telemetry")
            sender = TestClient(broker.port)
            before = _outbox_rows_ever(tmp_path / "state")
            for i in range(150):
                sender.publish(f"{T}/infer", request(i, images[i % 20]), wait=False)

            def count(topic):
                return lambda r: sum(m.topic == f"{T}/{topic}" for m in r)

            observer.wait_for(lambda r: count("predictions")(r) >= 150, 60)
            observer.wait_for(lambda r: count("telemetry")(r) >= 3, 10)
            assert len(observer.on(f"{T}/predictions")) >= 150
            assert len(observer.on(f"{T}/telemetry")) >= 3
            assert _outbox_rows_ever(tmp_path / "state") == before
            assert daemon.terminate(30) == 0
            assert "0 messages kept in the outbox" in daemon.log()
            sender.close()
            observer.close()


def test_a_broker_that_stops_acknowledging_for_a_while_loses_nothing(tmp_path):
    """The broker frozen (SIGSTOP) mid-stream: what the daemon sent meanwhile goes
    unacknowledged past ``spill_after`` and is kept in the outbox; once the broker
    thaws, every request is answered and the outbox empties."""
    images = [img for img, _ in digits(20)]
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(
            tmp_path,
            broker.port,
            telemetry=0.5,
            requests={"queue_size": 256},
            outbox={"spill_after": 0.3},
        )
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            observer = TestClient(broker.port, client_id="observer", persistent=True)
            observer.subscribe(f"{T}/predictions")
            observer.subscribe(f"{T}/errors")
            observer.subscribe(f"{T}/telemetry")
            sender = TestClient(broker.port)
            expected = {f"r{i:04d}" for i in range(600)}
            for i in range(600):
                sender.publish(f"{T}/infer", request(i, images[i % 20]), wait=False)
            observer.wait_for(lambda r: sum(m.topic == f"{T}/predictions" for m in r) >= 10, 20)
            assert broker._proc is not None
            os.kill(broker._proc.pid, signal.SIGSTOP)
            try:
                time.sleep(2.0)
            finally:
                os.kill(broker._proc.pid, signal.SIGCONT)
            wait_all(observer, expected, 60)
            check_exactly_answered(observer, expected, daemon.log())
            assert _outbox_rows_ever(tmp_path / "state") > 0, daemon.log()
            assert "unacknowledged by the broker after 0.3 s" in daemon.log()
            # telemetry tells the operator the broker was slow
            seen = len(observer.on(f"{T}/telemetry"))
            observer.wait_for(lambda r: sum(m.topic == f"{T}/telemetry" for m in r) > seen, 5)
            assert observer.on(f"{T}/telemetry")[-1].json()["outbox"]["spilled"] > 0
            assert daemon.terminate(30) == 0
            assert "0 messages kept in the outbox" in daemon.log()
            sender.close()
            observer.close()


def test_sd_notify_ready_and_watchdog(tmp_path):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(1.0)
    try:
        with Mosquitto(tmp_path) as broker:
            config = daemon_config(tmp_path, broker.port)
            env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
            with DaemonProcess(config, env=env) as daemon:
                seen: list[str] = []
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not (
                    any("READY=1" in s for s in seen) and sum("WATCHDOG=1" in s for s in seen) >= 2
                ):
                    with contextlib.suppress(socket.timeout):
                        seen.append(sock.recv(4096).decode())
                assert any("READY=1" in s for s in seen), (seen, daemon.log())
                assert sum("WATCHDOG=1" in s for s in seen) >= 2, seen
                assert any("STATUS=" in s for s in seen)
                assert daemon.terminate() == 0
                rest = []
                try:
                    while True:
                        rest.append(sock.recv(4096).decode())
                except socket.timeout:
                    pass
                assert any("STOPPING=1" in s for s in rest), rest
    finally:
        sock.close()


def test_sd_notify_abstract_socket(tmp_path):
    name = f"edge-runtime-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(1.0)
    try:
        with (
            Mosquitto(tmp_path) as broker,
            DaemonProcess(
                daemon_config(tmp_path, broker.port), env={"NOTIFY_SOCKET": "@" + name}
            ) as daemon,
        ):
            seen: list[str] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any("READY=1" in s for s in seen):
                with contextlib.suppress(socket.timeout):
                    seen.append(sock.recv(4096).decode())
            assert any("READY=1" in s for s in seen), daemon.log()
            assert daemon.terminate() == 0
    finally:
        sock.close()


def test_bad_config_gives_one_line_per_problem(tmp_path):
    config = write_config(
        tmp_path / "bad.toml",
        {
            "model": {"path": "m.tflite", "delegate": "gpu", "threads": 0},
            "mqtt": {"port": 70000, "protocol": "4", "colour": "blue"},
            "telemetry": {"interval": -1},
        },
        {"device_id": "pi 01", "state_dir": str(tmp_path / "s"), "surprise": 1},
    )
    done = subprocess.run(
        [*command(), "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    for fragment in (
        "model.delegate",
        "model.threads",
        "mqtt.port",
        "mqtt.protocol",
        "mqtt.colour",
        "telemetry.interval",
        "device_id",
        "surprise",
    ):
        hits = [line for line in lines[1:] if line.startswith(fragment + ":")]
        assert len(hits) == 1, (fragment, lines)
    assert any("'auto', 'cpu', 'edgetpu'" in line for line in lines)
    assert any("1 to 65535" in line for line in lines)
    assert len(lines) == 9  # a header and one line per problem


def test_sighup_reloads_live_settings(tmp_path):
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port, telemetry=30.0)
        with DaemonProcess(config) as daemon:
            client = TestClient(broker.port)
            client.subscribe(f"{T}/telemetry")
            assert daemon.wait_log("daemon ready", 30)
            client.wait_for(lambda r: len(r) >= 1, 10)
            daemon_config(tmp_path, broker.port, telemetry=0.5, device_id="pi-renamed")
            daemon.signal(signal.SIGHUP)
            client.wait_for(lambda r: len(r) >= 4, 10)
            assert len(client.on(f"{T}/telemetry")) >= 4, daemon.log()
            log = daemon.log()
            assert "device_id" in log and "need a restart" in log
            client.close()
            assert daemon.terminate() == 0


def test_full_queue_refuses_with_an_error_and_counts_it(tmp_path):
    images = [img for img, _ in digits(10)]
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(
            tmp_path, broker.port, telemetry=0.5, requests={"queue_size": 1, "queue_wait": 0.0}
        )
        with DaemonProcess(config) as daemon:
            client = TestClient(broker.port)
            for topic in ("predictions", "errors", "telemetry"):
                client.subscribe(f"{T}/{topic}")
            assert daemon.wait_log("daemon ready", 30)
            for i in range(300):  # QoS 0: no flow control, so the queue overflows
                client.publish(f"{T}/infer", request(i, images[i % 10]), qos=0, wait=False)
            expected = {f"r{i:04d}" for i in range(300)}
            wait_all(client, expected, 30)
            refused = [m.json() for m in client.on(f"{T}/errors")]
            assert refused, "nothing was refused; the test did not fill the queue"
            assert all(d["error"] == "queue_full" for d in refused)
            answered = {m.json()["id"] for m in client.on(f"{T}/predictions")}
            assert answered | {d["id"] for d in refused} == expected
            client.wait_for(
                lambda r: any(
                    m.topic.endswith("telemetry") and json.loads(m.payload)["queue"]["dropped"] > 0
                    for m in r
                ),
                5,
            )
            dropped = max(m.json()["queue"]["dropped"] for m in client.on(f"{T}/telemetry"))
            assert dropped == len(refused)
            client.close()
            assert daemon.terminate() == 0


def test_a_qos0_flood_on_a_stuck_pipeline_is_refused_at_once_and_counted(tmp_path):
    """The pipeline never frees room (its inference hangs), so the queue is full whatever
    the timing: each request beyond the few the pipeline holds is answered queue_full,
    none goes unanswered, and the refusals do not wait one queue_wait each behind the
    request worker (which held the MQTT thread, and so every answer, for minutes)."""
    images = [img for img, _ in digits(10)]
    count, held = 120, 5  # the pipeline holds its queue (1), one per stage and _ready (2)
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(
            tmp_path,
            broker.port,
            telemetry=0.5,
            requests={"queue_size": 1, "queue_wait": 2.0, "preprocess_workers": 1},
        )
        daemon = DaemonProcess(config, env={"EDGE_RUNTIME_FAULT": "hang:inference:1"})
        client = TestClient(broker.port)
        try:
            for topic in ("predictions", "errors", "telemetry"):
                client.subscribe(f"{T}/{topic}")
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            for i in range(count):
                client.publish(f"{T}/infer", request(i, images[i % 10]), qos=0, wait=False)
            expected = {f"r{i:04d}" for i in range(held, count)}
            # a refusal waits queue_wait (2 s) at most; 30 s leaves room for a slow machine,
            # where one after the other (the defect) they took about 4 minutes
            wait_all(client, expected, 30)
            errors = {m.json()["id"]: m.json()["error"] for m in client.on(f"{T}/errors")}
            unanswered = expected - set(errors)
            assert not unanswered, (sorted(unanswered)[:10], len(unanswered), daemon.log()[-3000:])
            assert set(errors.values()) == {"queue_full"}
            # the pipeline holds the first requests (it takes them in order), no others
            assert {f"r{i:04d}" for i in range(count)} - set(errors) <= {
                f"r{i:04d}" for i in range(held)
            }
            assert not client.on(f"{T}/predictions")
            client.wait_for(
                lambda r: any(
                    m.topic.endswith("telemetry")
                    and json.loads(m.payload)["queue"]["dropped"] == len(errors)
                    for m in r
                ),
                5,
            )
            dropped = max(m.json()["queue"]["dropped"] for m in client.on(f"{T}/telemetry"))
            assert dropped == len(errors)
        finally:
            client.close()
            daemon.kill()  # its inference worker hangs for good: no clean stop to wait for


def test_offline_start_outbox_then_delivery_when_the_broker_comes(tmp_path):
    watch = tmp_path / "inbox"
    watch.mkdir()
    broker = Mosquitto(tmp_path)  # configured, not started
    config = daemon_config(
        tmp_path,
        broker.port,
        telemetry=0.5,
        requests={"watch_dir": str(watch), "watch_interval": 0.1},
    )
    # The subscriber's session exists before the daemon's first connection, so nothing
    # the daemon sends on reconnecting can slip past it.
    broker.start()
    client = TestClient(broker.port, persistent=True)
    client.subscribe(f"{T}/#")
    broker.stop()
    daemon = DaemonProcess(config)
    try:
        assert daemon.wait_log("daemon ready", 30), daemon.log()
        assert "broker unreachable" in daemon.log()
        img, _ = digits(1)[0]
        (watch / "offline.png").write_bytes(img)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (watch / "done" / "offline.png").exists():
            time.sleep(0.1)
        assert (watch / "done" / "offline.png").exists(), daemon.log()
        time.sleep(1.0)  # telemetry piles up in the outbox meanwhile
        broker.start()
        # the prediction made offline arrives once the daemon reconnects
        client.wait_for(lambda r: any(m.topic.endswith("predictions") for m in r), 20)
        preds = [m.json()["id"] for m in client.on(f"{T}/predictions")]
        assert preds == ["file:offline.png"], daemon.log()
        client.wait_for(lambda r: len([m for m in r if m.topic.endswith("telemetry")]) >= 2, 10)
        tele = [m.json()["ts"] for m in client.on(f"{T}/telemetry")]
        assert tele == sorted(tele)  # published in order
        assert daemon.terminate() == 0
        status = client.wait_for(
            lambda r: (
                client.on(f"{T}/status")[-1:] != []
                and client.on(f"{T}/status")[-1].payload == b"offline"
            ),
            5,
        )
        assert [m.payload for m in status if m.topic.endswith("status")][-1] == b"offline"
    finally:
        client.close()
        daemon.kill()
        broker.stop()


def test_missing_model_is_one_clear_line(tmp_path):
    config = daemon_config(tmp_path, 1883, model=tmp_path / "missing.tflite")
    done = subprocess.run(
        [*command(), "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.tflite" in lines[0], done.stderr
