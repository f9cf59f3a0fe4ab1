"""Optional Prometheus metrics on localhost: the latest telemetry in the text format.

``render`` is pure (a telemetry message in, exposition text out); ``MetricsServer``
serves it on 127.0.0.1 only, from its own thread.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

log = logging.getLogger(__name__)


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(doc: dict[str, Any], device_id: str) -> str:
    """The Prometheus text exposition of one telemetry message (unknown values left out)."""
    dev = f'device="{_escape(device_id)}"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: Any, labels: str = "") -> None:
        if value is None:
            return
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name}{{{dev}{labels}}} {float(value):g}")

    inf = doc.get("inference", {})
    metric(
        "edge_runtime_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        doc.get("uptime_s"),
    )
    metric(
        "edge_runtime_cpu_percent", "gauge", "Process CPU use in percent.", doc.get("cpu_percent")
    )
    mem = doc.get("memory", {})
    metric(
        "edge_runtime_memory_rss_bytes", "gauge", "Process resident memory.", mem.get("rss_bytes")
    )
    metric(
        "edge_runtime_memory_system_percent",
        "gauge",
        "System memory in use.",
        mem.get("system_percent"),
    )
    metric(
        "edge_runtime_temperature_celsius", "gauge", "SoC temperature.", doc.get("temperature_c")
    )
    metric(
        "edge_runtime_disk_free_bytes",
        "gauge",
        "Free space in the state folder.",
        doc.get("disk_free_bytes"),
    )
    metric("edge_runtime_inference_total", "counter", "Predictions made.", inf.get("count"))
    metric(
        "edge_runtime_inference_errors_total",
        "counter",
        "Requests answered with an error.",
        inf.get("errors"),
    )
    metric("edge_runtime_inference_fps", "gauge", "Predictions per second.", inf.get("fps"))
    latency = inf.get("latency_ms", {})
    values = [(q, latency.get(f"p{q}")) for q in (50, 90, 99)]
    if any(v is not None for _, v in values):
        lines.append("# HELP edge_runtime_latency_ms Request latency over the recent window.")
        lines.append("# TYPE edge_runtime_latency_ms summary")
        for q, v in values:
            if v is not None:
                lines.append(
                    f'edge_runtime_latency_ms{{{dev},quantile="{q / 100:g}"}} {float(v):g}'
                )
    queue = doc.get("queue", {})
    metric(
        "edge_runtime_queue_depth", "gauge", "Requests waiting or in progress.", queue.get("depth")
    )
    metric(
        "edge_runtime_queue_dropped_total",
        "counter",
        "Requests refused (queue full).",
        queue.get("dropped"),
    )
    workers = doc.get("workers", {})
    unhealthy = workers.get("unhealthy") if isinstance(workers, dict) else None
    metric(
        "edge_runtime_workers_unhealthy",
        "gauge",
        "Workers dead or stuck past their bound (0: all well; see the telemetry's workers).",
        len(unhealthy) if isinstance(unhealthy, dict) else None,
    )
    _labelled(
        lines,
        dev,
        "edge_runtime_errors_total",
        "counter",
        "Requests answered with an error, by error code.",
        "code",
        doc.get("errors_by_code"),
    )
    throttled = doc.get("throttled")
    if isinstance(throttled, dict):
        flags = {k: int(bool(v)) for k, v in throttled.items() if k != "raw"}
        _labelled(
            lines,
            dev,
            "edge_runtime_throttled",
            "gauge",
            "Raspberry Pi firmware throttling flags (vcgencmd get_throttled), 1 when set.",
            "flag",
            flags,
        )
    outbox = doc.get("outbox") or {}
    metric(
        "edge_runtime_outbox_messages",
        "gauge",
        "Messages waiting in the outbox for the broker.",
        outbox.get("messages"),
    )
    metric("edge_runtime_outbox_bytes", "gauge", "Bytes of the outbox.", outbox.get("bytes"))
    if "update" in doc:
        last = doc.get("update") or {}
        result = str(last.get("result") or "none")
        labels = f',result="{_escape(result)}",version="{_escape(last.get("version") or "")}"'
        metric(
            "edge_runtime_update_last",
            "gauge",
            "The last model update's outcome (applied, rejected, rolled_back; none yet).",
            1,
            labels,
        )
    _drift(doc.get("monitoring"), dev, lines, metric)
    tuning = doc.get("tuning") or {}
    metric(
        "edge_runtime_interpreter_threads",
        "gauge",
        "Interpreter threads the model runs with (chosen at start under threads = auto).",
        tuning.get("threads"),
    )
    metric(
        "edge_runtime_preprocess_workers",
        "gauge",
        "Threads preprocessing requests (chosen at start under preprocess_workers = auto).",
        tuning.get("preprocess_workers"),
    )
    model = doc.get("model", {})
    info = (
        "".join(
            f',{key}="{_escape(model.get(key) or "")}"' for key in ("name", "version", "sha256")
        )
        + f',delegate="{_escape(doc.get("delegate", ""))}"'
    )
    metric("edge_runtime_model_info", "gauge", "The active model and delegate.", 1, info)
    return "\n".join(lines) + "\n"


def _labelled(
    lines: list[str],
    dev: str,
    name: str,
    kind: str,
    help_text: str,
    label: str,
    values: Any,
) -> None:
    """One metric with a line per ``label`` value (none when ``values`` is empty)."""
    if not isinstance(values, dict) or not values:
        return
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for key, value in sorted(values.items()):
        lines.append(f'{name}{{{dev},{label}="{_escape(key)}"}} {float(value):g}')


def _drift(mon: Any, dev: str, lines: list[str], metric: Callable[..., None]) -> None:
    """Telemetry's ``monitoring`` (drift): PSI and bound per metric, the open alert."""
    if not isinstance(mon, dict):
        return
    metric(
        "edge_runtime_drift_served_total",
        "counter",
        "Requests watched for drift.",
        mon.get("served"),
    )
    metric(
        "edge_runtime_drift_window", "gauge", "Requests per drift comparison.", mon.get("window")
    )
    for name, help_text in (
        ("psi", "Population stability index of the last window, per metric."),
        ("bound", "PSI over which a window counts as drifted (size-aware), per metric."),
    ):
        values = mon.get(name) or {}
        known = [(m, v) for m, v in sorted(values.items()) if v is not None]
        if not known:
            continue
        lines.append(f"# HELP edge_runtime_drift_{name} {help_text}")
        lines.append(f"# TYPE edge_runtime_drift_{name} gauge")
        for m, v in known:
            lines.append(f'edge_runtime_drift_{name}{{{dev},metric="{_escape(m)}"}} {float(v):g}')
    if "alert" in mon:
        metric(
            "edge_runtime_drift_alert",
            "gauge",
            "1 while a drift alert is open.",
            1 if mon.get("alert") else 0,
        )


class MetricsServer:
    """``GET /metrics`` on 127.0.0.1:port."""

    def __init__(self, port: int, text: Callable[[], str], host: str = "127.0.0.1") -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = text().encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("metrics: " + fmt, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
