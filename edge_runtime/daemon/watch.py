"""The watched folder: drop an image in, get a prediction; the file then moves to
``done/`` (with ``NAME.json`` beside it) or ``failed/`` (with the error)."""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edge_runtime.daemon.pipeline import Job
from edge_runtime.daemon.requests import Request, RequestError
from edge_runtime.daemon.supervisor import Heartbeats, unsupervised

log = logging.getLogger(__name__)

SETTLE_SECONDS = 0.3  # a file younger than this may still be being written
#: Longest one scan may take (reading the files it submits included) before the worker
#: counts as stuck.
SCAN_BOUND = 120.0


class WatchFolder:
    def __init__(
        self,
        folder: Path,
        *,
        interval: float,
        max_bytes: int,
        submit: Callable[[Job], bool],
        heartbeats: Heartbeats = unsupervised,
    ) -> None:
        self.folder = folder
        self.interval = interval
        self.max_bytes = max_bytes
        self._submit = submit
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = heartbeats("watch", SCAN_BOUND)
        self._thread = threading.Thread(
            target=self._beat.guard(self._run), name="watch", daemon=True
        )
        for sub in ("done", "failed"):
            (folder / sub).mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat.beat()
            try:
                self.scan()
            except OSError as exc:
                log.warning("cannot scan %s: %s", self.folder, exc)
            self._beat.idle()

    def scan(self) -> int:
        """Submit settled new files; returns how many were submitted."""
        submitted = 0
        now = time.time()
        for entry in sorted(os.scandir(self.folder), key=lambda e: e.name):
            if not entry.is_file() or entry.name.startswith("."):
                continue
            with self._lock:
                if entry.name in self._pending:
                    continue
            stat = entry.stat()
            if now - stat.st_mtime < SETTLE_SECONDS:
                continue
            path = Path(entry.path)
            request_id = f"file:{entry.name}"
            error: RequestError | None = None
            data = b""
            if stat.st_size > self.max_bytes:
                error = RequestError(
                    "too_large",
                    f"file is {stat.st_size} bytes; the limit is {self.max_bytes}",
                    request_id,
                )
            else:
                data = path.read_bytes()
            job = Job(
                Request(request_id, data, "file") if error is None else None,
                error,
                functools.partial(self._finish, path),
            )
            with self._lock:
                self._pending.add(entry.name)
            if not self._submit(job):
                with self._lock:
                    self._pending.discard(entry.name)
                break  # queue full: try again next scan
            submitted += 1
        return submitted

    def _finish(self, path: Path, ok: bool, doc: dict[str, Any]) -> None:
        target = self.folder / ("done" if ok else "failed") / path.name
        try:
            os.replace(path, target)
            target.with_name(target.name + ".json").write_text(
                json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            log.warning("cannot move %s: %s", path, exc)
        with self._lock:
            self._pending.discard(path.name)
