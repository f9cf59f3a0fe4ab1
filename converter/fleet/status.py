"""``edge-fleet status --host H [--json]``: every device the broker knows, from the
retained ``status`` and ``model/state`` topics and the telemetry and drift alerts heard
meanwhile (``drift``: the last window's PSI and bound per metric from telemetry's
``monitoring``; ``alerts``: the drift alerts open, from telemetry and ``model/alerts``)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from converter.fleet.broker import Session, add_broker_arguments


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="devices: online, model, temperature, fps, last update")
    add_broker_arguments(p)
    p.add_argument("--wait", type=float, default=2.0, help="seconds to listen (default 2)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)


def collect(heard: list[tuple[str, bytes]], prefix: str) -> dict[str, dict[str, Any]]:
    """Fold messages into one record per device (pure; later messages win)."""
    devices: dict[str, dict[str, Any]] = {}
    for topic, payload in heard:
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != prefix or parts[1] == "groups" or not payload:
            continue
        record = devices.setdefault(
            parts[1],
            {
                "device": parts[1],
                "status": None,
                "model": None,
                "last_update": None,
                "temperature_c": None,
                "fps": None,
                "drift": None,
                "alerts": [],
            },
        )
        leaf = "/".join(parts[2:])
        try:
            if leaf == "status":
                record["status"] = payload.decode("utf-8", "replace")
            elif leaf == "model/state":
                state = json.loads(payload)
                record["model"] = state.get("active")
                record["last_update"] = state.get("last_update")
            elif leaf == "telemetry":
                t = json.loads(payload)
                record["temperature_c"] = t.get("temperature_c")
                record["fps"] = (t.get("inference") or {}).get("fps")
                record["model"] = record["model"] or t.get("model")
                mon = t.get("monitoring")
                if isinstance(mon, dict):
                    record["drift"] = {k: mon.get(k) for k in ("psi", "bound", "window", "served")}
                    metric = mon.get("alert_metric")
                    record["alerts"] = [metric] if mon.get("alert") and metric else []
            elif leaf == "model/alerts":
                alert = json.loads(payload)
                metric = alert.get("metric")
                if alert.get("kind") == "drift" and metric not in record["alerts"]:
                    record["alerts"] = [*record["alerts"], metric]
                elif alert.get("kind") == "drift_cleared":
                    record["alerts"] = [m for m in record["alerts"] if m != metric]
        except (ValueError, AttributeError):
            continue
    return dict(sorted(devices.items()))


def table(devices: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"{'device':20s} {'status':8s} {'model':24s} {'temp':>6s} {'fps':>7s}  "
        f"{'drift':28s}  last update"
    ]
    for d in devices.values():
        model = d["model"] or {}
        name = f"{model.get('name', '?')} {model.get('version') or ''}".strip() if model else "?"
        temp = "-" if d["temperature_c"] is None else f"{d['temperature_c']:.1f}"
        fps = "-" if d["fps"] is None else f"{d['fps']:.1f}"
        upd = d["last_update"] or {}
        last = (
            f"{upd.get('version')} {upd.get('result')}"
            + (f" ({upd['reason']})" if upd.get("reason") else "")
            + f" {upd.get('ts', '')}"
            + (f", next try {upd['next_try']}" if upd.get("next_try") else "")
            if upd
            else "-"
        )
        lines.append(
            f"{d['device']:20s} {d['status'] or '?':8s} {name:24s} {temp:>6s} {fps:>7s}  "
            f"{drift_cell(d['drift'], d['alerts']):28s}  {last}"
        )
    return lines


def drift_cell(drift: dict[str, Any] | None, alerts: list[str]) -> str:
    """``ALERT input 2.50>0.88`` for each open alert, else the worst metric's PSI and
    bound (``ok top1 0.05/0.38``), ``-`` without monitoring."""
    psi = (drift or {}).get("psi") or {}
    bound = (drift or {}).get("bound") or {}

    def figures(m: str) -> str:
        value, limit = psi.get(m), bound.get(m)
        return "" if value is None or limit is None else f" {value:.2f}/{limit:.2f}"

    if alerts:
        return "ALERT " + ", ".join(f"{m}{figures(m)}" for m in alerts)
    known = [m for m in psi if psi.get(m) is not None and bound.get(m)]
    if not known:
        return "-" if drift is None else "no window yet"
    worst = max(known, key=lambda m: psi[m] / bound[m])
    return f"ok {worst}{figures(worst)}"


def run(args: argparse.Namespace) -> int:
    p = args.prefix
    session = Session(
        args,
        [f"{p}/+/status", f"{p}/+/model/state", f"{p}/+/telemetry", f"{p}/+/model/alerts"],
    )
    try:
        time.sleep(max(0.2, args.wait))
        devices = collect(list(session.heard), p)
    finally:
        session.close()
    if args.json:
        print(json.dumps(list(devices.values())))
    else:
        print("\n".join(table(devices)) if devices else "no devices heard")
    return 0
