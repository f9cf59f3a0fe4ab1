"""tools/broker_limits.py, the measurement behind the README's table of broker settings,
run against a real mosquitto (which limits none of them here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration
TOOL = Path(__file__).resolve().parents[2] / "tools" / "broker_limits.py"


def test_broker_limits_reports_retained_delivery_session_expiry_and_queue(tmp_path: Path) -> None:
    with Mosquitto(tmp_path) as broker:
        done = subprocess.run(
            [sys.executable, str(TOOL), "--port", str(broker.port), "--retained", "1100"]
            + ["--queue", "50"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["retained"] == {"retained": 1100, "delivered_to_one_subscription": 1100}
    session = report["session"]
    assert session["granted_expiry_s"] == session["asked_expiry_s"] == 7 * 24 * 3600
    assert session["session_present"] and session["delivered"] == 1
    queue = report["queue"]
    assert (queue["delivered"], queue["first"], queue["last"]) == (50, 0, 49)
