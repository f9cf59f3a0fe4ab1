"""Model updates over MQTT with a real mosquitto and the daemon as a real process:
a signed v2 announced to a group is applied on two devices while requests stream in;
every kind of bad update is refused with its reason and leaves v1 serving."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.bundle.writer import write_bundle
from edge_runtime.trust.keys import SigningKey, generate_signing_key, write_key_pair
from edge_runtime.trust.signing import sign_bundle
from edge_runtime.trust.trustfile import make_trust, save_trust
from edge_runtime.update.service import build_notice
from edge_runtime.update.validate import CRASH_HOOK, HANG_HOOK
from tests.conftest import IMAGES, MODELS
from tests.support.client import TestClient
from tests.support.daemon import DaemonProcess, daemon_config
from tests.support.http import FileServer
from tests.support.mosquitto import Mosquitto
from tests.unit.bundle_factory import real_clock_times

pytestmark = pytest.mark.integration
DIGIT = (IMAGES / "digit_3.png").read_bytes()


def fleet_tool(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "edge-fleet"),
            args[0],
            "--host",
            "127.0.0.1",
            *map(str, args[1:]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rollback_tool(fleet: dict[str, Any], device: str, *extra: object) -> Any:
    """``edge-fleet rollback`` for ``device``, the order signed with the fleet's key."""
    port = fleet["broker"].port
    return fleet_tool(
        "rollback", "--port", port, "--device", device, "--key", fleet["key_file"], *extra
    )


def make_bundle(
    folder: Path,
    version: str,
    key: SigningKey | None,
    _files: dict[str, bytes] | None = None,
    **changes: Any,
) -> Path:
    """The committed digits bundle as another version, signed by ``key``; ``_files``
    replace members, ``changes`` manifest fields."""
    with tarfile.open(MODELS / "digits_v1.edgebundle") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    files.update(_files or {})
    manifest = json.loads(files.pop("manifest.json"))
    files.pop("signatures.json")
    manifest.pop("files")
    manifest.update({"version": version, **real_clock_times(), **changes})
    path = write_bundle(
        folder / f"digits-{version}-{time.monotonic_ns()}.edgebundle", manifest, files
    )
    if key is not None:
        sign_bundle(path, key)
    return path


def forge(path: Path) -> Path:
    """The bundle with one byte of its signature changed (the key id still trusted)."""
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            if info.name == "signatures.json":
                doc = json.loads(data)
                sig = doc["signatures"][0]["sig"]
                doc["signatures"][0]["sig"] = ("B" if sig[0] == "A" else "A") + sig[1:]
                data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("fleet")
    key = generate_signing_key()
    key_file, _ = write_key_pair(root / "keys", "operator", key)
    trust = root / "trust.json"
    save_trust(trust, make_trust([key.public_raw], 1))
    with Mosquitto(root) as broker:
        yield {
            "root": root,
            "key": key,
            "key_file": key_file,
            "trust": trust,
            "broker": broker,
            "v1": make_bundle(root, "1.0.0", key),
        }


def device_folder(
    fleet: dict[str, Any], device: str, folder_name: str | None = None, **config: Any
) -> tuple[Path, Path]:
    """A folder for ``device`` and its config: the v1 model, the fleet's trust file, the
    fleet's folder as the one ``file://`` root, and ``config``'s ``[update]`` settings
    (``groups`` goes to ``[device]``)."""
    folder = fleet["root"] / (folder_name or device)
    folder.mkdir()
    groups = config.pop("groups", None)
    path = daemon_config(
        folder,
        fleet["broker"].port,
        device_id=device,
        model=fleet["v1"],
        **({"groups": groups} if groups else {}),
        update={"trust": str(fleet["trust"]), "file_roots": [str(fleet["root"])], **config},
    )
    return folder, path


def start_device(fleet: dict[str, Any], name: str, **update: Any) -> DaemonProcess:
    settings = {"groups": ["line-3"], "device_class": "rpi4", "download_timeout": 2.0}
    _, config = device_folder(
        fleet, name, f"{name}-{time.monotonic_ns()}", **{**settings, **update}
    )
    daemon = DaemonProcess(config)
    assert daemon.wait_log("daemon ready", 30), daemon.log()
    return daemon


def events(client: TestClient, device: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in client.on(f"edge/{device}/model/events")]


def wait_result(
    client: TestClient, device: str, version: str, timeout: float = 60
) -> dict[str, Any]:
    def done(_: object) -> bool:
        return any(
            e["version"] == version and e["stage"] in ("applied", "rejected")
            for e in events(client, device)
        )

    client.wait_for(done, timeout)
    final = [
        e
        for e in events(client, device)
        if e["version"] == version and e["stage"] in ("applied", "rejected")
    ]
    assert final, f"no result for {version}: {events(client, device)}"
    return final[-1]


def ask(client: TestClient, device: str, rid: str, timeout: float = 20) -> dict[str, Any]:
    import base64

    client.publish(
        f"edge/{device}/infer",
        json.dumps({"id": rid, "image_b64": base64.b64encode(DIGIT).decode()}).encode(),
    )
    topic = f"edge/{device}/predictions"
    got = client.wait_for(
        lambda ms: any(m.topic == topic and json.loads(m.payload)["id"] == rid for m in ms), timeout
    )
    return next(
        json.loads(m.payload)
        for m in got
        if m.topic == topic and json.loads(m.payload)["id"] == rid
    )


def test_group_update_applies_on_two_devices_while_requests_stream(fleet: dict[str, Any]) -> None:
    devices = ["line3-a", "line3-b"]
    daemons = [start_device(fleet, d) for d in devices]
    client = TestClient(fleet["broker"].port)
    try:
        for d in devices:
            client.subscribe(f"edge/{d}/#")
        v2 = make_bundle(fleet["root"], "2.0.0", fleet["key"])
        import base64

        payload = base64.b64encode(DIGIT).decode()
        sent: list[tuple[str, str]] = []
        for i in range(80):
            for d in devices:
                rid = f"s{i}-{d}"
                client.publish(
                    f"edge/{d}/infer",
                    json.dumps({"id": rid, "image_b64": payload}).encode(),
                    wait=False,
                )
                sent.append((d, rid))
            if i == 20:
                notice = build_notice(v2, v2.as_uri())
                client.client.publish(
                    "edge/groups/line-3/model/update", json.dumps(notice), qos=1, retain=True
                )
            time.sleep(0.03)
        for d in devices:
            assert wait_result(client, d, "2.0.0")["stage"] == "applied", events(client, d)

        def all_answered(_: object) -> bool:
            ids = {
                json.loads(m.payload)["id"]
                for d in devices
                for m in client.on(f"edge/{d}/predictions")
            }
            return all(rid in ids for _, rid in sent)

        client.wait_for(all_answered, 60)
        for d in devices:
            answers = [json.loads(m.payload) for m in client.on(f"edge/{d}/predictions")]
            ids = [a["id"] for a in answers]
            mine = [rid for dev, rid in sent if dev == d]
            assert sorted(set(ids)) == sorted(mine), "a request sent across the swap was lost"
            versions = {a["model"]["version"] for a in answers}
            assert versions <= {"1.0.0", "2.0.0"} and "2.0.0" in versions
            assert all(a["top"][0]["index"] == 3 for a in answers)
            after = ask(client, d, f"after-{d}")
            assert after["model"]["version"] == "2.0.0"
            state = json.loads(client.on(f"edge/{d}/model/state")[-1].payload)
            assert state["active"]["version"] == "2.0.0"
            assert state["previous"]["version"] == "1.0.0"
            assert state["last_update"]["result"] == "applied"
            stages = [e["stage"] for e in events(client, d) if e["version"] == "2.0.0"]
            for stage in ("downloading", "verifying", "validating", "activating", "applied"):
                assert stage in stages
        # the fleet's view: both devices on 2.0.0
        status = fleet_tool("status", "--port", fleet["broker"].port, "--json", "--wait", "1")
        assert status.returncode == 0, status.stderr
        seen = {d["device"]: d for d in json.loads(status.stdout)}
        for d in devices:
            assert seen[d]["status"] == "online" and seen[d]["model"]["version"] == "2.0.0"
            assert seen[d]["last_update"]["result"] == "applied"
        # the operator takes device b back to 1.0.0
        back = rollback_tool(fleet, devices[1])
        assert back.returncode == 0 and "rolled_back" in back.stdout, back.stdout + back.stderr
        assert ask(client, devices[1], "rolled-back")["model"]["version"] == "1.0.0"
        state = json.loads(client.on(f"edge/{devices[1]}/model/state")[-1].payload)
        assert state["active"]["version"] == "1.0.0" and state["previous"]["version"] == "2.0.0"
        assert (state["last_update"]["result"], state["last_update"]["reason"]) == (
            "rolled_back",
            "operator",
        )
        # a restart keeps serving the installed version
        daemons[0].terminate()
        daemons[0] = DaemonProcess(daemons[0].config)
        assert daemons[0].wait_log("daemon ready", 30)
        assert ask(client, devices[0], "restarted")["model"]["version"] == "2.0.0"
    finally:
        client.client.publish("edge/groups/line-3/model/update", b"", qos=1, retain=True)
        client.close()
        for daemon in daemons:
            daemon.kill()


def test_each_bad_update_is_rejected_and_v1_keeps_serving(fleet: dict[str, Any]) -> None:
    root, key = fleet["root"], fleet["key"]
    device = "refuser"
    daemon = start_device(fleet, device, max_bundle_bytes=40_000)
    client = TestClient(fleet["broker"].port)
    server = FileServer(root)
    try:
        client.subscribe(f"edge/{device}/#")
        good = make_bundle(root, "3.0.0", key)

        def notice_for(path: Path, **changes: Any) -> dict[str, Any]:
            return {**build_notice(path, path.as_uri()), **changes}

        forged = forge(make_bundle(root, "3.1.0", key))
        stranger = generate_signing_key()
        untrusted = make_bundle(root, "3.2.0", stranger)
        tampered = make_bundle(root, "3.3.0", key)
        tampered_notice = notice_for(tampered)
        data = bytearray(tampered.read_bytes())
        data[2000] ^= 0xFF
        tampered.write_bytes(bytes(data))
        cases = [
            ("3.2.0", notice_for(untrusted), "signature"),
            ("0.9.0", notice_for(make_bundle(root, "0.9.0", key)), "rollback"),
            (
                "3.4.0",
                notice_for(
                    make_bundle(
                        root,
                        "3.4.0",
                        key,
                        expires="2020-01-01T00:00:00Z",
                        created="2019-01-01T00:00:00Z",
                    )
                ),
                "expired",
            ),
            (
                "3.5.0",
                notice_for(make_bundle(root, "3.5.0", key, compatible=["rpi-zero"])),
                "incompatible",
            ),
            ("3.3.0", tampered_notice, "integrity"),
            (
                "3.6.0",
                {
                    **notice_for(b := make_bundle(root, "3.6.0", key)),
                    "url": f"http://127.0.0.1:{server.port}/{b.name}?truncate",
                },
                "truncated",
            ),
            (
                "3.7.0",
                {
                    **notice_for(b := make_bundle(root, "3.7.0", key)),
                    "url": f"http://127.0.0.1:{server.silent_port}/{b.name}",
                },
                "timeout",
            ),
            (
                "3.8.0",
                {
                    **notice_for(make_bundle(root, "3.8.0", key)),
                    "bundle": {"size": 50_000, "sha256": "0" * 64},
                },
                "size",
            ),
        ]
        cases.insert(0, ("3.1.0", notice_for(forged), "signature"))
        for version, notice, reason in cases:
            client.publish(f"edge/{device}/model/update", json.dumps(notice).encode())
            result = wait_result(client, device, version, timeout=30)
            assert (result["stage"], result["reason"]) == ("rejected", reason), result
            assert ask(client, device, f"after-{version}")["model"]["version"] == "1.0.0"
        client.publish(f"edge/{device}/model/update", b"{not json")
        client.wait_for(
            lambda _: any(e["reason"] == "bad_notice" for e in events(client, device)), 10
        )
        # and a good one still goes through afterwards, over HTTP
        client.publish(
            f"edge/{device}/model/update",
            json.dumps(
                {**build_notice(good, ""), "url": f"http://127.0.0.1:{server.port}/{good.name}"}
            ).encode(),
        )
        assert wait_result(client, device, "3.0.0")["stage"] == "applied"
        assert daemon.alive()
    finally:
        server.close()
        client.close()
        daemon.kill()


def test_a_model_that_crashes_in_validation_is_rejected_without_a_restart(
    fleet: dict[str, Any],
) -> None:
    device = "crashy"
    folder, config = device_folder(fleet, device)
    daemon = DaemonProcess(config, env={CRASH_HOOK: "1"})
    client = TestClient(fleet["broker"].port)
    try:
        assert daemon.wait_log("daemon ready", 30), daemon.log()
        pid = daemon.proc.pid
        client.subscribe(f"edge/{device}/#")
        v = make_bundle(fleet["root"], "4.0.0", fleet["key"])
        client.publish(
            f"edge/{device}/model/update", json.dumps(build_notice(v, v.as_uri())).encode()
        )
        result = wait_result(client, device, "4.0.0")
        assert (result["stage"], result["reason"]) == ("rejected", "validation")
        assert "crashed" in result["detail"] and "SIGABRT" in result["detail"]
        assert daemon.alive() and daemon.proc.pid == pid
        assert ask(client, device, "still-v1")["model"]["version"] == "1.0.0"
        nothing = rollback_tool(fleet, device)
        assert nothing.returncode == 1 and "no previous" in nothing.stdout, nothing.stdout
        assert ask(client, device, "still-v1-again")["model"]["version"] == "1.0.0"
        assert os.path.exists(folder / "state")
    finally:
        client.close()
        daemon.kill()


@contextlib.contextmanager
def starved_device(
    fleet: dict[str, Any], device: str, **update: Any
) -> Iterator[tuple[Path, DaemonProcess, TestClient]]:
    """A running device whose validation child sleeps (a 5 s timeout) while the flag file
    it yields exists: a child starved of CPU, as on a device busy serving requests."""
    folder, config = device_folder(fleet, device, validation_timeout=5.0, **update)
    starved = folder / "starved"
    starved.touch()
    daemon = DaemonProcess(config, env={HANG_HOOK: f"sleep:{starved}"})
    client = TestClient(fleet["broker"].port)
    try:
        assert daemon.wait_log("daemon ready", 30), daemon.log()
        client.subscribe(f"edge/{device}/#")
        yield starved, daemon, client
    finally:
        client.close()
        daemon.kill()


def applied(client: TestClient, device: str) -> None:
    client.wait_for(lambda _: any(e["stage"] == "applied" for e in events(client, device)), 60)


def test_a_device_too_busy_to_validate_takes_the_update_when_it_comes_again(
    fleet: dict[str, Any],
) -> None:
    """A starved validation child is a busy device, not a broken model: the bundle is not
    marked refused, and the same notice coming again (as a retained one does after a
    reconnect) is applied."""
    v = make_bundle(fleet["root"], "4.1.0", fleet["key"])
    notice = json.dumps(build_notice(v, v.as_uri())).encode()
    with starved_device(fleet, "busy") as (starved, _, client):
        client.publish("edge/busy/model/update", notice)
        result = wait_result(client, "busy", "4.1.0")
        assert (result["stage"], result["reason"]) == ("rejected", "busy"), result
        assert "device was busy" in result["detail"]
        assert ask(client, "busy", "busy-v1")["model"]["version"] == "1.0.0"
        starved.unlink()
        client.publish("edge/busy/model/update", notice)
        applied(client, "busy")
        assert ask(client, "busy", "busy-v4")["model"]["version"] == "4.1.0"


def test_a_device_too_busy_to_validate_tries_the_update_again_by_itself(
    fleet: dict[str, Any],
) -> None:
    """With ``retry_interval`` set, a busy device does not wait for the notice to come
    again: it tries the same bundle again after the interval (twice here, the wait
    doubling), applies it once it has the CPU, and stops retrying."""
    device = "busy-retry"
    v = make_bundle(fleet["root"], "4.2.0", fleet["key"])
    with starved_device(fleet, device, retry_interval=1.0) as (starved, daemon, client):
        client.publish(
            f"edge/{device}/model/update", json.dumps(build_notice(v, v.as_uri())).encode()
        )

        def busy() -> list[dict[str, Any]]:
            return [e for e in events(client, device) if e.get("reason") == "busy"]

        client.wait_for(lambda _: len(busy()) >= 2, 60)
        assert "tried again in" in busy()[0]["detail"], busy()
        states = [json.loads(m.payload) for m in client.on(f"edge/{device}/model/state")]
        waiting = [st["last_update"] for st in states if (st["last_update"] or {}).get("next_try")]
        assert waiting and waiting[0]["reason"] == "busy", states
        shown = fleet_tool("status", "--port", fleet["broker"].port, "--wait", "1").stdout
        assert "(busy)" in shown and "next try 20" in shown, shown
        assert ask(client, device, "busy-retry-v1")["model"]["version"] == "1.0.0"
        starved.unlink()
        applied(client, device)
        assert ask(client, device, "busy-retry-v4")["model"]["version"] == "4.2.0"
        tries = len([e for e in events(client, device) if e["stage"] == "validating"])
        time.sleep(3)  # longer than any retry wait here: nothing is tried once applied
        assert len([e for e in events(client, device) if e["stage"] == "validating"]) == tries
        assert "retry 1" in daemon.log() and "retry 2" in daemon.log()


@pytest.mark.parametrize("stage", ["downloading", "validating", "activating"])
def test_sigkill_at_each_stage_leaves_a_consistent_model(fleet: dict[str, Any], stage: str) -> None:
    device = f"killed-{stage}"
    folder, config = device_folder(fleet, device, download_timeout=5.0)
    server = FileServer(fleet["root"], trickle=0.1)
    client = TestClient(fleet["broker"].port)
    daemon = DaemonProcess(config)
    try:
        assert daemon.wait_log("daemon ready", 30), daemon.log()
        client.subscribe(f"edge/{device}/#")
        v2 = make_bundle(fleet["root"], "5.0.0", fleet["key"])
        notice = {**build_notice(v2, ""), "url": f"http://127.0.0.1:{server.port}/{v2.name}"}
        client.client.publish(f"edge/{device}/model/update", json.dumps(notice), qos=1, retain=True)
        client.wait_for(lambda _: any(e["stage"] == stage for e in events(client, device)), 30)
        assert any(e["stage"] == stage for e in events(client, device)), events(client, device)
        daemon.kill()  # SIGKILL, at that stage (or just after it)
        models = folder / "state" / "models"
        current = models / "current"
        if current.is_symlink():  # whatever is active is a whole, stored bundle
            assert current.resolve().is_file()
        restarted = DaemonProcess(config)
        try:
            assert restarted.wait_log("daemon ready", 30), restarted.log()
            version = ask(client, device, f"after-kill-{stage}")["model"]["version"]
            assert version in ("1.0.0", "5.0.0")
            # the retained notice comes back, and the update completes
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if ask(client, device, f"v-{time.monotonic_ns()}")["model"]["version"] == "5.0.0":
                    break
                time.sleep(0.5)
            assert ask(client, device, "final")["model"]["version"] == "5.0.0"
            leftovers = [
                p.name
                for p in models.iterdir()
                if p.name.startswith(".") or p.name.endswith(".part")
            ]
            assert leftovers == []
            assert not (folder / "state" / "update").exists()
        finally:
            restarted.kill()
    finally:
        client.client.publish(f"edge/{device}/model/update", b"", qos=1, retain=True)
        client.close()
        server.close()
        daemon.kill()
