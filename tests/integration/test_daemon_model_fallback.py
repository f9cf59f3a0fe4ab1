"""A model to serve whenever one exists: ``models/current`` pointing nowhere or at junk
falls back, loudly (log, ``model/state``, an event), to the newest stored version that
loads, else ``model.path``; the daemon exits only when nothing loads."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import pytest
from support.client import TestClient
from support.daemon import MODEL, DaemonProcess, command, daemon_config
from support.images import digits
from support.mosquitto import Mosquitto

from tests.conftest import MODELS

pytestmark = pytest.mark.integration

DEV = "pi-test"
T = f"edge/{DEV}"
BUNDLE = MODELS / "digits_v1.edgebundle"  # digits 1.0.0


def models_folder(tmp_path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "state" / "models"
    folder.mkdir(parents=True)
    return folder


def serve_and_check(tmp_path, expect_active: dict, why: str) -> str:  # type: ignore[no-untyped-def]
    """Start the daemon on ``config``: it serves a request; model/state names
    ``expect_active`` and the fallback; model/events carries it. Returns the log."""
    img, _ = digits(1)[0]
    with Mosquitto(tmp_path) as broker:
        config = daemon_config(tmp_path, broker.port)
        client = TestClient(broker.port, persistent=True, client_id="watcher")
        client.subscribe(f"{T}/#")
        with DaemonProcess(config) as daemon:
            assert daemon.wait_log("daemon ready", 30), daemon.log()
            payload = json.dumps({"id": "q1", "image_b64": base64.b64encode(img).decode()})
            client.publish(f"{T}/infer", payload.encode())
            client.wait_for(lambda r: any(m.topic == f"{T}/predictions" for m in r), 15)
            client.wait_for(lambda r: any(m.topic == f"{T}/model/events" for m in r), 10)
            preds = [m.json() for m in client.on(f"{T}/predictions")]
            assert preds and "top" in preds[0], daemon.log()
            state = client.on(f"{T}/model/state")[-1].json()
            assert {k: state["active"][k] for k in expect_active} == expect_active, state
            assert state["last_update"]["result"] == "rolled_back"
            assert state["last_update"]["reason"] == "unusable"
            events = [m.json() for m in client.on(f"{T}/model/events")]
            assert any(e["reason"] == "unusable" and why in e["detail"] for e in events), events
            log = daemon.log()
            assert "falling back: models/current" in log and why in log, log
            client.close()
            assert daemon.terminate() == 0, daemon.log()
            return log


def test_a_dangling_current_falls_back_to_model_path_and_says_so(tmp_path):
    folder = models_folder(tmp_path)
    os.symlink("digits-9.9.9.edgebundle", folder / "current")  # removed by hand, say
    log = serve_and_check(tmp_path, {"name": "digits_int8"}, "digits-9.9.9.edgebundle")
    assert f"serving model.path ({MODEL})" in log


def test_a_junk_current_falls_back_to_the_newest_stored_version_that_loads(tmp_path):
    folder = models_folder(tmp_path)
    shutil.copyfile(BUNDLE, folder / "digits-1.0.0.edgebundle")
    (folder / "digits-1.1.0.edgebundle").write_bytes(b"\x00" * 4096)  # a torn write
    os.symlink("digits-1.1.0.edgebundle", folder / "current")
    log = serve_and_check(
        tmp_path, {"name": "digits", "version": "1.0.0"}, "digits-1.1.0.edgebundle"
    )
    assert "serving stored version digits-1.0.0.edgebundle" in log


def test_no_model_anywhere_is_one_line_naming_each_and_exit_1(tmp_path):
    folder = models_folder(tmp_path)
    (folder / "digits-1.1.0.edgebundle").write_bytes(b"junk")
    os.symlink("digits-1.1.0.edgebundle", folder / "current")
    config = daemon_config(tmp_path, 1883, model=tmp_path / "missing.tflite")
    done = subprocess.run(
        [*command(), "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "no model can be served" in last
    assert "models/current" in last and "missing.tflite" in last, done.stderr
