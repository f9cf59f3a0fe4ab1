"""Interpreter threads and preprocessing workers, chosen from measured costs.

The pipeline's model (``edge_runtime.daemon.pipeline``): with ``c`` cores, a request
costs ``D`` ms of preprocessing on one core (the workers decode different requests in
parallel, one core each) and ``I_k`` ms of inference at ``k`` interpreter threads, during
which ``k`` cores are busy. Requests per ms are then bounded three ways:

- the cores: ``c / (D + k * I_k)``;
- the inference worker, which every request passes alone: ``1 / I_k``;
- the ``w`` preprocessing workers: ``w / D``.

``choose`` takes the thread count whose bound is highest, the fewer threads when two are
within ``TIE`` of each other (they leave cores to the rest of the machine, and a busy
machine slows a many-threaded invoke most), and the fewest workers that do not bound it
(at most one per core). Pure: figures in, a ``Tuning`` out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Relative difference in throughput below which the fewer threads are preferred.
TIE = 0.03
#: Most interpreter threads tried (more rarely pay on the 4-core boards this serves).
MAX_THREADS = 4
#: Most preprocessing workers (the config's bound).
MAX_WORKERS = 16
#: Smallest cost used in the model, so that a near-free step divides nothing by zero.
_EPSILON_MS = 1e-6
#: The reason's words for workers given to ``choose`` ({}: their count): the config's,
#: and the running pipeline's (chosen by an earlier calibration, kept as they run).
FIXED_WORKERS = "workers fixed at {}"
RUNNING_WORKERS = "the {} running workers kept"


@dataclass(frozen=True)
class Tuning:
    """What the daemon runs with, and the figures it was chosen from."""

    cores: int
    threads: int
    preprocess_workers: int
    invoke_ms: tuple[tuple[int, float], ...] = ()  # (threads, ms per request) measured
    preprocess_ms: float | None = None  # one representative request
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """The ``tuning`` object of telemetry."""
        return {
            "cores": self.cores,
            "threads": self.threads,
            "preprocess_workers": self.preprocess_workers,
            "invoke_ms": {str(k): round(ms, 3) for k, ms in self.invoke_ms},
            "preprocess_ms": None if self.preprocess_ms is None else round(self.preprocess_ms, 3),
            "reason": self.reason,
        }

    def summary(self) -> str:
        """One line for the log."""
        invoke = ", ".join(f"{k}: {ms:.2f}" for k, ms in self.invoke_ms) or "-"
        prep = "-" if self.preprocess_ms is None else f"{self.preprocess_ms:.2f}"
        return (
            f"{self.threads} interpreter thread(s), {self.preprocess_workers} preprocessing "
            f"worker(s) on {self.cores} core(s) (invoke ms by threads {{{invoke}}}, "
            f"preprocess {prep} ms): {self.reason}"
        )


def thread_choices(cores: int) -> range:
    """The thread counts calibration tries: 1 up to the cores, at most ``MAX_THREADS``."""
    return range(1, max(1, min(cores, MAX_THREADS)) + 1)


def workers_for(cores: int, preprocess_ms: float, rate_per_s: float) -> int:
    """The fewest workers that preprocess ``rate_per_s`` requests a second, 1 to the cores."""
    needed = math.ceil(max(preprocess_ms, 0.0) * rate_per_s / 1000 - 1e-9)
    return max(1, min(needed, cores, MAX_WORKERS))


def choose(
    cores: int,
    preprocess_ms: float,
    invoke_ms: Mapping[int, float],
    *,
    workers: int | None = None,
    workers_given: str = FIXED_WORKERS,
) -> Tuning:
    """The thread count (one of ``invoke_ms``'s keys) and worker count (``workers`` when
    given, else chosen) that serve the most by the model above; ``workers_given`` words
    the reason for given workers (``{}``: their count)."""
    if not invoke_ms:
        raise ValueError("choose needs the invoke time at one thread count at least")
    options = {k: _option(cores, preprocess_ms, ms, k, workers) for k, ms in invoke_ms.items()}
    best = max(rate for _, rate, _ in options.values())
    threads = min(k for k, (_, rate, _) in options.items() if rate >= best * (1 - TIE))
    chosen, rate, limit = options[threads]
    reason = f"{limit}-bound at about {rate:.0f} requests/s"
    others = [f"{k}: {r:.0f}/s" for k, (_, r, _) in sorted(options.items()) if k != threads]
    if others:
        reason += f" (other thread counts: {', '.join(others)})"
    if workers is not None:
        reason += "; " + workers_given.format(workers)
    return Tuning(
        cores=cores,
        threads=threads,
        preprocess_workers=chosen,
        invoke_ms=tuple(sorted(invoke_ms.items())),
        preprocess_ms=preprocess_ms,
        reason=reason,
    )


def _option(
    cores: int, preprocess_ms: float, invoke_ms: float, threads: int, workers: int | None
) -> tuple[int, float, str]:
    """At ``threads``: the workers (``workers``, else the fewest that keep up), the
    requests per second the model allows, and what bounds them ("cores", "inference"
    or "preprocessing")."""
    d = max(preprocess_ms, _EPSILON_MS)
    i = max(invoke_ms, _EPSILON_MS)
    cpu = cores / (d + threads * i)
    w = workers if workers is not None else workers_for(cores, d, 1000 * min(cpu, 1 / i))
    bounds = {"cores": cpu, "inference": 1 / i, "preprocessing": w / d}
    limit = min(bounds, key=lambda name: bounds[name])
    return w, 1000 * bounds[limit], limit


def default_tuning(
    cores: int, reason: str, *, threads: int | None = None, workers: int | None = None
) -> Tuning:
    """Without figures: 1 thread (or ``threads``) and a worker per core, at most 2 (or
    ``workers``)."""
    return Tuning(
        cores=cores,
        threads=threads or 1,
        preprocess_workers=workers or min(2, cores),
        reason=reason,
    )
