"""Which API answers which path: a table of (method, path pattern, handler)."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

from edge_runtime.serving import kserve, predict, tfserving
from edge_runtime.serving.http import (
    HttpError,
    HttpRequest,
    HttpResponse,
    error_response,
)
from edge_runtime.serving.model import ModelService

log = logging.getLogger(__name__)

PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
#: handler(request, *path groups)
Handler = Callable[..., HttpResponse]
_NAME = r"([^/]+)"
_VERSION = r"(?:/versions/([^/]+))?"


class Routes:
    def __init__(self, service: ModelService, metrics: Callable[[], str]) -> None:
        """``metrics``: the Prometheus exposition text, as ``/metrics`` serves it."""
        s = service
        self.service = service
        self._table: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"/metrics"), lambda r: _metrics(metrics)),
            ("POST", re.compile(r"/v1/predict"), lambda r: predict.predict(s, r)),
            ("GET", re.compile(rf"/v1/models/{_NAME}"), lambda r, n: tfserving.status(s, n)),
            (
                "GET",
                re.compile(rf"/v1/models/{_NAME}/metadata"),
                lambda r, n: tfserving.metadata(s, n),
            ),
            (
                "POST",
                re.compile(r"/v1/models/([^/]+):predict"),
                lambda r, n: tfserving.predict(s, n, r),
            ),
            ("GET", re.compile(r"/v2/health/live"), lambda r: kserve.live()),
            ("GET", re.compile(r"/v2/health/ready"), lambda r: kserve.ready(s)),
            ("GET", re.compile(r"/v2"), lambda r: kserve.server_metadata()),
            (
                "GET",
                re.compile(rf"/v2/models/{_NAME}{_VERSION}"),
                lambda r, n, v: kserve.model_metadata(s, n, v),
            ),
            (
                "GET",
                re.compile(rf"/v2/models/{_NAME}{_VERSION}/ready"),
                lambda r, n, v: kserve.model_ready(s, n, v),
            ),
            (
                "POST",
                re.compile(rf"/v2/models/{_NAME}{_VERSION}/infer"),
                lambda r, n, v: kserve.infer(s, n, v, r),
            ),
        ]

    def handle(self, request: HttpRequest) -> HttpResponse:
        """The response to ``request``; never raises. An unexpected failure is a 500
        naming the id it is logged under, not the exception (paths, internals)."""
        try:
            return self._dispatch(request)
        except HttpError as exc:
            return error_response(exc)
        except Exception:  # noqa: BLE001 - one request must not end a worker
            ref = "http-" + uuid.uuid4().hex[:16]
            log.exception("HTTP %s %s failed (request %s)", request.method, request.path, ref)
            return error_response(
                HttpError(
                    "internal_error",
                    "the request could not be handled; the daemon's log has the details "
                    f"under request {ref}",
                )
            )

    def _dispatch(self, request: HttpRequest) -> HttpResponse:
        allowed = []
        for method, pattern, handler in self._table:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if method == request.method:
                return handler(request, *match.groups())
            allowed.append(method)
        if allowed:
            raise HttpError(
                "method_not_allowed", f"{request.path} takes {', '.join(sorted(set(allowed)))}"
            )
        raise HttpError("not_found", f"no endpoint {request.path}")


def _metrics(metrics: Callable[[], str]) -> HttpResponse:
    return HttpResponse(200, metrics().encode("utf-8"), content_type=PROMETHEUS)
