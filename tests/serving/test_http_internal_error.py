"""A request whose handling fails unexpectedly: a 500 that tells the client where to look,
not what failed (the exception stays in the daemon's log, under the id the answer names)."""

from __future__ import annotations

import logging
import re

import pytest
import requests

from tests.serving.conftest import serving

pytestmark = [pytest.mark.integration, pytest.mark.backend]

SECRET = "/var/lib/edge-runtime/secret-state.db is locked"


def _failing_metrics() -> str:
    raise RuntimeError(SECRET)


def test_a_500_names_no_exception_and_points_to_the_log(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="edge_runtime.serving")
    with serving(tmp_path, metrics=_failing_metrics) as server:
        answer = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
    assert answer.status_code == 500, answer.text
    doc = answer.json()
    assert doc["error"] == "internal_error"
    assert SECRET not in doc["detail"] and "RuntimeError" not in doc["detail"], doc
    assert "log" in doc["detail"], doc
    (failed,) = [r for r in caplog.records if r.exc_info and SECRET in str(r.exc_info[1])]
    found = re.search(r"http-[0-9a-f]{16}", doc["detail"])
    assert found and found.group() in failed.getMessage(), (doc, failed.getMessage())
