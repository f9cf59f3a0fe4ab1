"""Prometheus text rendering and Home Assistant discovery messages (pure)."""

from __future__ import annotations

import json

from edge_runtime.telemetry.homeassistant import SENSORS, discovery_messages
from edge_runtime.telemetry.prometheus import render

DOC = {
    "uptime_s": 12.5,
    "cpu_percent": 3.0,
    "memory": {"rss_bytes": 1000, "system_percent": 40.0},
    "temperature_c": None,
    "disk_free_bytes": 5,
    "inference": {
        "count": 7,
        "errors": 1,
        "fps": 2.5,
        "latency_ms": {"p50": 1.5, "p90": 2.0, "p99": None},
    },
    "queue": {"depth": 0, "dropped": 1},
    "model": {"name": "digits", "version": None, "sha256": "ab"},
    "delegate": "cpu",
}


def test_render_prometheus_text():
    text = render(DOC, 'pi-"01"')
    assert 'edge_runtime_inference_total{device="pi-\\"01\\""} 7' in text
    assert "edge_runtime_temperature_celsius" not in text  # unknown values are left out
    assert 'edge_runtime_latency_ms{device="pi-\\"01\\"",quantile="0.5"} 1.5' in text
    assert 'quantile="0.99"' not in text
    assert 'name="digits",version="",sha256="ab",delegate="cpu"} 1' in text
    assert "# TYPE edge_runtime_queue_dropped_total counter" in text
    assert text.endswith("\n")
    assert render({}, "d").startswith("# HELP edge_runtime_model_info")


def test_unhealthy_workers_are_counted():
    assert "edge_runtime_workers_unhealthy" not in render(DOC, "d")  # an older daemon
    well = render({**DOC, "workers": {"count": 9, "unhealthy": {}}}, "d")
    assert 'edge_runtime_workers_unhealthy{device="d"} 0' in well
    stuck = {"answers": "stuck: one step running for 12 s, bound 10 s"}
    text = render({**DOC, "workers": {"count": 9, "unhealthy": stuck}}, "d")
    assert 'edge_runtime_workers_unhealthy{device="d"} 1' in text


def test_each_metric_is_declared_once():
    """A second HELP/TYPE block for one name makes Prometheus refuse the whole scrape."""
    doc = {**DOC, "workers": {"count": 9, "unhealthy": {}}, "outbox": {"messages": 1}}
    declared = [
        line.split()[2] for line in render(doc, "d").splitlines() if line.startswith("# TYPE")
    ]
    assert len(declared) == len(set(declared)), sorted(declared)


def test_home_assistant_discovery():
    msgs = discovery_messages(
        discovery_prefix="homeassistant",
        device_id="pi-01",
        telemetry_topic="edge/pi-01/telemetry",
        status_topic="edge/pi-01/status",
        model="digits",
    )
    assert len(msgs) == len(SENSORS)
    topics = [t for t, _ in msgs]
    assert "homeassistant/sensor/pi-01/temperature/config" in topics
    configs = [json.loads(p) for _, p in msgs]
    assert len({c["unique_id"] for c in configs}) == len(configs)
    temp = configs[topics.index("homeassistant/sensor/pi-01/temperature/config")]
    assert temp["state_topic"] == "edge/pi-01/telemetry"
    assert temp["value_template"] == "{{ value_json.temperature_c }}"
    assert temp["availability_topic"] == "edge/pi-01/status"
    assert temp["device"]["identifiers"] == ["edge-runtime-pi-01"]


def test_the_tuning_is_exported_when_telemetry_has_it():
    assert "edge_runtime_interpreter_threads" not in render(DOC, "d")  # an older daemon
    text = render({**DOC, "tuning": {"threads": 1, "preprocess_workers": 2}}, "d")
    assert 'edge_runtime_interpreter_threads{device="d"} 1' in text
    assert 'edge_runtime_preprocess_workers{device="d"} 2' in text
