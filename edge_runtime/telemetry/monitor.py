"""The daemon's drift monitor: the statistics of ``drift`` over consecutive windows of
served requests, compared with the active model's reference; ``drift`` and
``drift_cleared`` alerts after ``alert_after`` windows over (or back under) the bound.

``observe`` runs on the inference worker for every answered request and costs a few
microseconds (a mean and a standard deviation over at most 4,096 input values, five
counter increments); a window's comparison (a few small histograms) runs once per
``window`` requests. A model swap starts a new window against the new model's reference.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Callable

from edge_runtime.daemon.config import MonitoringConfig
from edge_runtime.telemetry.collect import utc_now
from edge_runtime.telemetry.drift import (
    METRICS,
    Comparison,
    Histograms,
    Reference,
    compare,
    observation,
)

log = logging.getLogger(__name__)


def reference_of(manifest: Mapping[str, Any] | None) -> Reference | None:
    """The reference a bundle's manifest carries: ``monitoring.reference``, or
    ``metrics.monitoring.reference`` (where ``edge-convert`` writes it, so that runtimes
    that refuse unknown top-level manifest keys still take the bundle)."""
    if not manifest:
        return None
    top = manifest.get("monitoring")
    metrics = manifest.get("metrics")
    for holder in (top, metrics.get("monitoring") if isinstance(metrics, Mapping) else None):
        if isinstance(holder, Mapping) and holder.get("reference") is not None:
            return Reference.parse(holder["reference"])
    return None


class DriftMonitor:
    def __init__(
        self,
        config: MonitoringConfig,
        *,
        engine: Callable[[], Any],
        alert: Callable[[dict[str, Any]], None],
    ) -> None:
        """``engine()``: the engine now serving (its identity and manifest);
        ``alert(doc)``: publish one alert on ``model/alerts``."""
        self.config = config
        self._engine = engine
        self._alert = alert
        self._lock = threading.Lock()
        self._sha: str | None = None
        self._model: dict[str, Any] = {}
        self._reference: Reference | None = None
        self._window: Histograms | None = None
        self._last: Comparison | None = None
        self.served = 0
        self.windows = 0  # windows compared with the reference
        self.windows_over = 0  # of which over the bound (alerted or not)
        self._over = 0
        self._under = 0
        self._open: str | None = None

    def observe(self, prepared: Any, answer: Mapping[str, Any]) -> None:
        """One answered request (``prepared``: its input, as the engine prepared it)."""
        if not self.config.enabled:
            return
        try:
            alerts = self._observe(prepared, answer)
        except Exception:  # noqa: BLE001 - monitoring must never fail a request
            log.exception("drift monitoring failed on one request")
            return
        for doc in alerts:
            self._alert(doc)

    def _observe(self, prepared: Any, answer: Mapping[str, Any]) -> list[dict[str, Any]]:
        engine = self._engine()
        identity = engine.identity
        with self._lock:
            if identity.sha256 != self._sha:
                self._start(engine)
            reference, window = self._reference, self._window
            if reference is None or window is None:
                return []
        obs = observation(answer, prepared.tensor)
        with self._lock:
            if window is not self._window:  # swapped meanwhile
                return []
            window.add(obs)
            self.served += 1
            if window.n < self.config.window:
                return []
            result = compare(
                reference,
                window,
                psi_alert=self.config.psi_alert,
                significance=self.config.significance,
            )
            self._window = Histograms(reference.classes, reference.detection)
            self._last = result
            self.windows += 1
            self.windows_over += bool(result.over)
            return self._judge(result)

    def _start(self, engine: Any) -> None:
        identity = engine.identity
        self._sha = identity.sha256
        self._model = {"name": identity.name, "version": identity.version}
        self._reference = reference_of(engine.source.manifest)
        ref = self._reference
        self._window = None if ref is None else Histograms(ref.classes, ref.detection)
        self._last, self._over, self._under, self._open = None, 0, 0, None
        if ref is None:
            log.info(
                "model %s carries no monitoring reference: drift is not watched", identity.name
            )

    def _judge(self, result: Comparison) -> list[dict[str, Any]]:
        if result.over:
            self._over, self._under = self._over + 1, 0
        else:
            self._over, self._under = 0, self._under + 1
        after = self.config.alert_after
        if self._open is None and self._over >= after:
            self._open = result.worst()
            log.warning(
                "drift: %s PSI %.3f over %.3f for %d windows",
                self._open,
                result.psi[self._open],
                result.bound[self._open],
                self._over,
            )
            return [self._doc("drift", self._open, result)]
        if self._open is not None and self._under >= after:
            metric, self._open = self._open, None
            log.warning(
                "drift cleared: %s back under its bound for %d windows", metric, self._under
            )
            return [self._doc("drift_cleared", metric, result)]
        return []

    def _doc(self, kind: str, metric: str, result: Comparison) -> dict[str, Any]:
        return {
            "kind": kind,
            "metric": metric,
            "value": round(result.psi.get(metric, 0.0), 4),
            "threshold": round(result.bound.get(metric, 0.0), 4),
            "window": result.window,
            "psi": {m: round(v, 4) for m, v in result.psi.items()},
            "psi_alert": self.config.psi_alert,
            "model": dict(self._model),
            "ts": utc_now(),
        }

    def snapshot(self) -> dict[str, Any]:
        """Telemetry's ``monitoring``: the window size, requests watched, the last
        window's PSI and bound per metric (null before the first), the open alert."""
        with self._lock:
            last = self._last
            return {
                "window": self.config.window,
                "served": self.served,
                "windows": self.windows,
                "windows_over": self.windows_over,
                "reference": self._reference is not None,
                "psi": {
                    m: None if last is None or m not in last.psi else round(last.psi[m], 4)
                    for m in METRICS
                },
                "bound": {
                    m: None if last is None or m not in last.bound else round(last.bound[m], 4)
                    for m in METRICS
                },
                "alert": self._open is not None,
                "alert_metric": self._open,
            }
