"""Telemetry maths and the collector's message shape; sd_notify; backoff."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from edge_runtime.daemon.notify import Notifier, socket_address
from edge_runtime.telemetry.collect import Collector, temperature_c
from edge_runtime.telemetry.stats import Tally, decode_throttled, latency_summary, percentile, rate
from edge_runtime.transport.backoff import backoff_delay


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 90) == 90
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1], 101)
    assert latency_summary([]) == {"p50": None, "p90": None, "p99": None}
    assert latency_summary([3.0, 1.0, 2.0]) == {"p50": 2.0, "p90": 3.0, "p99": 3.0}


def test_rate():
    assert rate(150, 100, 10.0) == 5.0
    assert rate(5, 5, 0.0) == 0.0
    assert rate(3, 10, 1.0) == 0.0  # a reset counter never gives a negative rate


def test_decode_throttled():
    flags = decode_throttled("throttled=0x50005\n")
    assert flags is not None
    assert flags["raw"] == "0x50005"
    assert flags["under_voltage"] and flags["throttled"] and not flags["freq_capped"]
    assert flags["under_voltage_occurred"] and flags["throttled_occurred"]
    assert not flags["soft_temp_limit_occurred"]
    assert decode_throttled("throttled=0x0")["under_voltage"] is False  # type: ignore[index]
    assert decode_throttled("garbage") is None


def test_tally_window():
    tally = Tally(window=3)
    for ms in (1.0, 2.0, 3.0, 4.0):
        tally.inferred(ms)
    tally.failed()
    tally.refuse()
    snap = tally.snapshot()
    assert snap.count == 4 and snap.errors == 2 and snap.refused == 1
    assert snap.latencies == (2.0, 3.0, 4.0)
    tally.resize(2)
    assert tally.snapshot().latencies == (3.0, 4.0)


def test_temperature_from_sysfs_when_psutil_has_none(tmp_path, monkeypatch):
    import psutil

    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {}, raising=False)
    zone = tmp_path / "temp"
    zone.write_text("48312\n")
    assert temperature_c(zone) == 48.3
    zone.write_text("junk")
    assert temperature_c(zone) is None
    assert temperature_c(tmp_path / "missing") is None


def test_collector_message_has_every_contract_field(tmp_path):
    tally = Tally(100)
    collector = Collector(
        state_dir=tmp_path,
        tally=tally.snapshot,
        queue=lambda: {"depth": 2, "dropped": 1},
        model={"name": "m", "version": "1.0.0", "sha256": "ab"},
        delegate="cpu",
    )
    for ms in (1.0, 2.0, 10.0):
        tally.inferred(ms)
    doc = collector.collect()
    assert set(doc) == {
        "ts",
        "uptime_s",
        "cpu_percent",
        "memory",
        "temperature_c",
        "throttled",
        "disk_free_bytes",
        "inference",
        "queue",
        "model",
        "delegate",
    }
    assert doc["inference"]["count"] == 3 and doc["inference"]["fps"] > 0
    assert doc["inference"]["latency_ms"] == {"p50": 2.0, "p90": 10.0, "p99": 10.0}
    assert doc["queue"] == {"depth": 2, "dropped": 1}
    assert doc["memory"]["rss_bytes"] > 0 and doc["disk_free_bytes"] > 0
    assert doc["ts"].endswith("Z")


def test_backoff_grows_caps_and_jitters():
    rng = random.Random(1)
    delays = [backoff_delay(n, minimum=0.5, maximum=8.0, rng=rng) for n in range(10)]
    assert all(0.25 <= d < 8.0 for d in delays)
    assert delays[0] < 0.5 and delays[-1] >= 4.0
    assert len({round(backoff_delay(5, minimum=1, maximum=10, rng=rng), 6) for _ in range(20)}) > 1
    with pytest.raises(ValueError):
        backoff_delay(-1, minimum=1, maximum=2)


def test_notify_abstract_address():
    assert socket_address("@name") == "\0name"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"


def test_notify_sends_datagrams(tmp_path: Path):
    path = tmp_path / "n.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    try:
        notifier = Notifier(
            {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"}, watchdog_every=5
        )
        assert notifier.watchdog_every == 2.0  # twice per watchdog period
        notifier.ready("serving")
        assert server.recv(100) == b"READY=1\nSTATUS=serving"
        notifier.watchdog()
        notifier.watchdog()  # rate-limited: only one ping
        assert server.recv(100) == b"WATCHDOG=1"
        notifier.status("x")
        assert server.recv(100) == b"STATUS=x"
        notifier.close()
    finally:
        server.close()


def test_notify_without_socket_is_a_no_op():
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False
