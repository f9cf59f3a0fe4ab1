"""Choosing the interpreter threads again from the requests actually served.

The calibration at start times the decoding of a 1920x1080 photo; the requests a device
gets may be thumbnails or 12-megapixel photos. ``LiveRetune`` collects the preprocessing
time of the first ``SAMPLES`` requests after each calibration and, once, compares their
median with the calibrated figure: when it differs by more than ``CHANGE`` the choice is
made again (``tuning.choose``, the invoke times as calibrated, the workers as running).
The owner asks ``due()`` from its own loop and applies a different thread count through
the pipeline's swap, as for a new model.

The median is of wall times measured while the daemon serves, so under load it includes
waiting for a core: it errs towards fewer threads, the choice that suits a busy machine.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import replace

from edge_runtime.daemon.tuning import RUNNING_WORKERS, Tuning, choose

#: Requests whose preprocessing is collected before the choice is made again.
SAMPLES = 200
#: Relative difference between the live median and the calibrated figure that counts.
CHANGE = 0.3


class LiveRetune:
    """Collects preprocessing times (``observe``, from the inference worker: cheap, never
    raises) for one calibrated ``Tuning`` at a time (``reset``)."""

    def __init__(self, tuning: Tuning, *, samples: int = SAMPLES) -> None:
        self._samples = samples
        self._lock = threading.Lock()
        self._times: list[float] = []
        self._tuning: Tuning | None = None
        self._calibrated = 0.0  # the followed tuning's preprocessing ms
        self.reset(tuning)

    def reset(self, tuning: Tuning) -> None:
        """Collect for ``tuning`` (a new model's or a re-chosen one: nothing more then).
        Only a calibration that chose the threads, from more than one thread count, is
        followed."""
        with self._lock:
            self._times = []
            self._tuning = None
            if len(tuning.invoke_ms) > 1 and tuning.preprocess_ms:
                self._tuning, self._calibrated = tuning, tuning.preprocess_ms

    def observe(self, preprocess_ms: float) -> None:
        """One served request's preprocessing time (0 for an input given as a tensor,
        which is left out)."""
        if preprocess_ms <= 0 or self._tuning is None:
            return
        with self._lock:
            if len(self._times) < self._samples:
                self._times.append(preprocess_ms)

    def due(self) -> Tuning | None:
        """Once enough requests were seen: the tuning chosen again from their median,
        when it differs by more than ``CHANGE`` from the calibrated figure (the thread
        count may be the same), else None. At most once per ``reset``."""
        with self._lock:
            tuning = self._tuning
            if tuning is None or len(self._times) < self._samples:
                return None
            self._tuning = None
            live, calibrated = statistics.median(self._times), self._calibrated
        if abs(live - calibrated) <= CHANGE * calibrated:
            return None
        again = choose(
            tuning.cores,
            live,
            dict(tuning.invoke_ms),
            workers=tuning.preprocess_workers,
            workers_given=RUNNING_WORKERS,
        )
        return replace(
            again,
            reason=f"{again.reason}; re-chosen from {self._samples} requests' preprocessing "
            f"(median {live:.2f} ms, calibrated {calibrated:.2f} ms)",
        )
