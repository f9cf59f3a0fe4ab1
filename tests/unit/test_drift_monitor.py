"""The daemon's drift monitor over windows: alert after ``alert_after`` windows over the
bound, cleared after as many back under, a new reference when the model changes, and the
figures in telemetry and Prometheus."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_runtime.daemon.config import MonitoringConfig
from edge_runtime.telemetry.drift import Histograms, Observation
from edge_runtime.telemetry.monitor import DriftMonitor
from edge_runtime.telemetry.prometheus import render

GREY = np.full((1, 8, 8, 1), 0, dtype=np.int8)  # brightness 0.5
DARK = np.full((1, 8, 8, 1), -128, dtype=np.int8)


def reference() -> dict:
    h = Histograms(4, detection=False)
    for i in range(400):
        h.add(Observation(i % 4, 0.95, None, 0.5, 0.0))
    return h.to_reference("test")


@dataclass(frozen=True)
class Identity:
    name: str
    version: str
    sha256: str


@dataclass
class Source:
    manifest: dict = field(default_factory=dict)


@dataclass
class FakeEngine:
    identity: Identity
    source: Source


@dataclass
class Prepared:
    tensor: np.ndarray


def engine(sha: str, ref: dict | None) -> FakeEngine:
    manifest = {"metrics": {"monitoring": {"reference": ref}}} if ref else {}
    return FakeEngine(Identity("m", "1.0.0", sha), Source(manifest))


def feed(monitor: DriftMonitor, n: int, tensor: np.ndarray, start: int = 0) -> None:
    for i in range(start, start + n):
        monitor.observe(Prepared(tensor), {"top": [{"index": i % 4, "score": 0.95}]})


def test_alert_after_two_windows_over_and_cleared_after_two_under():
    sent: list[dict] = []
    current = [engine("a", reference())]
    monitor = DriftMonitor(
        MonitoringConfig(window=50, alert_after=2), engine=lambda: current[0], alert=sent.append
    )
    feed(monitor, 200, GREY)
    assert sent == [] and monitor.windows == 4 and monitor.windows_over == 0
    feed(monitor, 50, DARK)
    assert sent == []  # one window over is not yet an alert
    feed(monitor, 50, DARK)
    assert [a["kind"] for a in sent] == ["drift"] and sent[0]["metric"] == "input"
    assert sent[0]["window"] == 50 and sent[0]["model"] == {"name": "m", "version": "1.0.0"}
    snap = monitor.snapshot()
    assert snap["alert"] is True and snap["psi"]["input"] > snap["bound"]["input"]
    text = render({"monitoring": snap}, "pi")
    assert 'edge_runtime_drift_psi{device="pi",metric="input"}' in text
    assert 'edge_runtime_drift_alert{device="pi"} 1' in text
    feed(monitor, 50, GREY)
    assert len(sent) == 1
    feed(monitor, 50, GREY)
    assert [a["kind"] for a in sent] == ["drift", "drift_cleared"]
    assert monitor.snapshot()["alert"] is False


def test_a_new_model_starts_over_and_a_model_without_reference_is_not_watched():
    sent: list[dict] = []
    current = [engine("a", reference())]
    monitor = DriftMonitor(
        MonitoringConfig(window=50, alert_after=1), engine=lambda: current[0], alert=sent.append
    )
    feed(monitor, 30, DARK)
    current[0] = engine("b", None)
    feed(monitor, 100, DARK)
    assert sent == [] and monitor.snapshot()["reference"] is False
    feed(monitor, 30, DARK)
    current[0] = engine("c", reference())
    feed(monitor, 50, GREY)  # a window of model c alone: the dark requests before are gone
    assert sent == [] and monitor.windows == 1


def test_off_when_disabled():
    sent: list[dict] = []
    monitor = DriftMonitor(
        MonitoringConfig(enabled=False, window=50),
        engine=lambda: engine("a", reference()),
        alert=sent.append,
    )
    feed(monitor, 200, DARK)
    assert sent == [] and monitor.served == 0
