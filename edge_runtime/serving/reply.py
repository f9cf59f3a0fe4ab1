"""Answers for HTTP requests: handed straight back to the waiting HTTP worker instead of
being published on MQTT."""

from __future__ import annotations

import threading
from typing import Any

from edge_runtime.daemon.pipeline import Answer, deliver_directly
from edge_runtime.daemon.requests import RequestError


class HttpReply:
    """A ``Job.done`` that an HTTP worker waits on: ``deliver`` sets the answer."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: RequestError | None = None

    def deliver(self, result: dict[str, Any] | None, error: RequestError | None) -> None:
        self.result, self.error = result, error
        self._event.set()

    def __call__(self, ok: bool, doc: dict[str, Any]) -> None:
        """The ``Job.done`` form (an answer that went through the publisher)."""
        if not self._event.is_set():
            self.deliver(doc if ok else None, None if ok else _error_of(doc))

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


def _error_of(doc: dict[str, Any]) -> RequestError:
    return RequestError(
        str(doc.get("error", "internal_error")), str(doc.get("detail", "")), str(doc.get("id", ""))
    )


def direct_answers(store: Answer) -> Answer:
    """The pipeline's ``answer``: answers to HTTP requests go back to their workers at
    once; all others to ``store`` (the MQTT side), in order."""
    return deliver_directly(HttpReply, store)
