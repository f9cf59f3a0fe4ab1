"""The liveness file the daemon refreshes with each watchdog ping, and
``edge-runtime health`` that reads it (a container's health check)."""

from __future__ import annotations

import os
from pathlib import Path

from edge_runtime.cli.main import main
from edge_runtime.daemon.liveness import (
    Beat,
    LivenessFile,
    check_liveness,
    liveness_path,
    now_beat,
)
from edge_runtime.daemon.notify import Notifier

BOOT = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def test_a_fresh_beat_of_this_boot_is_healthy_a_stale_or_foreign_one_is_not(tmp_path):
    path = tmp_path / "liveness"
    path.write_bytes(Beat(BOOT, 1000.0).line())
    assert check_liveness(path, 10, Beat(BOOT, 1004.5)).healthy
    stale = check_liveness(path, 10, Beat(BOOT, 1030.0))
    assert not stale.healthy and "30.0 s ago (bound 10 s)" in stale.detail
    # a file left by an earlier boot, whatever its clock says
    assert not check_liveness(path, 10, Beat("another-boot", 1001.0)).healthy
    # a clock before the beat: not this process's file
    assert not check_liveness(path, 10, Beat(BOOT, 999.0)).healthy


def test_a_missing_or_garbled_file_is_unhealthy(tmp_path):
    missing = check_liveness(tmp_path / "liveness", 10)
    assert not missing.healthy and "starting or stopped" in missing.detail
    (tmp_path / "liveness").write_text("not a beat\n")
    garbled = check_liveness(tmp_path / "liveness", 10)
    assert not garbled.healthy and "no heartbeat" in garbled.detail


def test_the_file_is_rewritten_in_place_and_removed_at_the_stop(tmp_path):
    path = tmp_path / "liveness"
    file = LivenessFile(path)
    file.touch()
    first = path.read_bytes()
    inode = os.stat(path).st_ino
    file.touch()
    assert os.stat(path).st_ino == inode and len(path.read_bytes()) == len(first)
    assert check_liveness(path, 10).healthy
    file.remove()
    assert not path.exists()
    file.remove()  # twice is harmless


def test_a_liveness_file_that_cannot_be_written_does_not_stop_the_daemon(tmp_path, caplog):
    file = LivenessFile(tmp_path / "no-such-folder" / "liveness")
    file.touch()
    file.touch()
    assert caplog.text.count("cannot write the liveness file") == 1


def test_each_watchdog_ping_refreshes_the_file_also_without_systemd(tmp_path):
    path = tmp_path / "liveness"
    notifier = Notifier({}, watchdog_every=0.0, liveness=LivenessFile(path))
    assert not notifier.enabled  # no NOTIFY_SOCKET
    assert not path.exists()  # nothing until the first ping: not ready yet
    notifier.ready("serving")
    assert not path.exists()
    notifier.watchdog()
    before = Beat.parse(path.read_text())
    notifier.watchdog()
    after = Beat.parse(path.read_text())
    assert before is not None and after is not None and after.monotonic >= before.monotonic
    assert after.boot == now_beat().boot
    notifier.close()
    assert not path.exists()


def _config(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        'device_id = "pi-01"\nstate_dir = "state"\n\n[model]\npath = "model.tflite"\n'
    )
    return config, liveness_path(state)  # where the daemon of this config writes it


def test_health_command_exits_0_while_the_file_is_fresh_and_1_with_a_line_else(tmp_path, capsys):
    config, liveness = _config(tmp_path)
    assert main(["health", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("unhealthy: no liveness file") and err.count("\n") == 1
    LivenessFile(liveness).touch()
    assert main(["health", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("healthy: every worker well")
    now = now_beat()
    liveness.write_bytes(Beat(now.boot, now.monotonic - 60).line())
    assert main(["health", "--config", str(config), "--max-age", "30"]) == 1
    assert "bound 30 s" in capsys.readouterr().err


def filesystem(path: Path) -> str:
    """The type of the file system ``path`` is on (/proc/self/mountinfo)."""
    best, kind = "", ""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4]
        fstype = fields[fields.index("-") + 1]
        if (str(path) + "/").startswith(point.rstrip("/") + "/") and len(point) >= len(best):
            best, kind = point, fstype
    return kind


def test_the_file_is_kept_in_memory_apart_from_the_state_folder(tmp_path):
    """Rewritten every second, the file must not be on the SD card: each rewrite after the
    kernel wrote the page out is one more page written."""
    state = tmp_path / "state"
    path = liveness_path(state, {})
    assert state not in path.parents
    assert filesystem(path.parent) == "tmpfs", path  # /dev/shm on a machine without systemd
    assert liveness_path(state, {}) == path  # the daemon and the health check agree
    assert liveness_path(tmp_path / "other", {}) != path  # another daemon, another file
    # under systemd, its RuntimeDirectory=
    run = tmp_path / "run"
    given = liveness_path(state, {"RUNTIME_DIRECTORY": f"{run}:{tmp_path}/more"})
    assert given.parent == run and given.name == path.name.removeprefix("edge-runtime-")


def test_a_beat_read_back_at_once_is_never_after_the_reader_clock():
    beat = Beat(BOOT, 1000.0009)  # written as 1000.000, not rounded up to 1000.001
    back = Beat.parse(beat.line().decode())
    assert back is not None and back.age(beat) is not None
