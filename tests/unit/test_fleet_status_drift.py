"""edge-fleet status: drift figures from telemetry and the open drift alerts."""

from __future__ import annotations

import json

from converter.fleet.status import collect, drift_cell, table


def telemetry(alert: str | None) -> bytes:
    return json.dumps(
        {
            "inference": {"fps": 3.0},
            "monitoring": {
                "window": 500,
                "served": 1500,
                "psi": {"top1": 0.05, "score": 0.9, "input": 0.02},
                "bound": {"top1": 0.4, "score": 0.38, "input": 0.38},
                "alert": alert is not None,
                "alert_metric": alert,
            },
        }
    ).encode()


def alert(kind: str, metric: str) -> bytes:
    return json.dumps({"kind": kind, "metric": metric, "value": 1.0, "threshold": 0.4}).encode()


def test_drift_figures_and_open_alerts_per_device():
    heard = [
        ("edge/a/telemetry", telemetry(None)),
        ("edge/b/telemetry", telemetry("score")),
        ("edge/c/telemetry", telemetry(None)),
        ("edge/c/model/alerts", alert("drift", "input")),
        ("edge/b/model/alerts", alert("drift_cleared", "score")),
        ("edge/d/status", b"online"),
    ]
    devices = collect(heard, "edge")
    assert devices["a"]["alerts"] == [] and devices["a"]["drift"]["psi"]["score"] == 0.9
    assert devices["b"]["alerts"] == []  # cleared after the telemetry that showed it open
    assert devices["c"]["alerts"] == ["input"]
    assert devices["d"]["drift"] is None
    lines = table(devices)
    assert "drift" in lines[0]
    assert "ok score 0.90/0.38" in lines[1]
    assert "ALERT input 0.02/0.38" in lines[3]
    assert lines[4].split()[-2:] == ["-", "-"]  # no drift figures, no update


def test_drift_cell_before_the_first_window():
    empty = {"psi": {"top1": None}, "bound": {"top1": None}}
    assert drift_cell(empty, []) == "no window yet"
    assert drift_cell(None, []) == "-"
    assert drift_cell(None, ["top1"]) == "ALERT top1"
