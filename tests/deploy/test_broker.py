"""The shipped broker setup: mosquitto runs with broker/mosquitto.conf and the ACL, CA and
certificates made by make-ca.sh and add-device.sh; MQTT 5 clients show the ACLs."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_helpers import BROKER, DEPLOY, Client, ShippedBroker, missing, script

from edge_runtime.daemon.config import parse_config

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing("mosquitto", "mosquitto_passwd", "openssl")),
        reason="needs mosquitto and openssl",
    ),
]

NOT_AUTHORIZED = 135
ACCEPTED = (0, 16)  # success, "no matching subscribers"
QUIET = 0.7  # seconds to wait for a message that must not arrive


@pytest.fixture(scope="module")
def fleet():  # type: ignore[no-untyped-def]
    # Not under pytest's 0700 temp folder: mosquitto started as root drops to its own user
    # before it reads the password and ACL files, as on a real broker host.
    top = Path(tempfile.mkdtemp(prefix="edge-broker-"))
    top.chmod(0o755)
    try:
        yield from _fleet(top / "broker")
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _fleet(d: Path):  # type: ignore[no-untyped-def]
    script(BROKER / "make-ca.sh", d, "--host", "localhost", "--ip", "127.0.0.1")
    script(BROKER / "add-device.sh", "pi-a", "--dir", d, "--group", "line-1", "--group", "all")
    script(BROKER / "add-device.sh", "pi-b", "--dir", d, "--group", "line-2")
    # A test-only user with every right, to send what the roles may or may not receive.
    with (d / "acl").open("a") as acl:
        acl.write(f"\n# tests only\nuser {PROBE[0]}\ntopic readwrite #\n")
    subprocess.run(["mosquitto_passwd", "-b", str(d / "passwd"), *PROBE], check=True)
    with ShippedBroker(d) as broker:
        yield d, broker


def device(fleet, name: str, listener: str = "certificate", **session) -> Client:  # type: ignore[no-untyped-def]
    """``name``'s credentials on the certificate or the password listener; ``session``:
    the Client's client_id and session_expiry."""
    d, broker = fleet
    files = d / "devices" / name
    if listener == "password":
        password = files.joinpath("mqtt-password").read_text()
        return Client(
            broker.password_port, files / "ca.crt", username=name, password=password, **session
        )
    return Client(
        broker.cert_port,
        files / "ca.crt",
        cert=files / "device.crt",
        key=files / "device.key",
        **session,
    )


def operator(fleet) -> Client:  # type: ignore[no-untyped-def]
    d, broker = fleet
    return Client(broker.cert_port, d / "ca.crt", cert=d / "operator.crt", key=d / "operator.key")


PROBE = ("probe", "probe-password")
GROUPS = {"pi-a": ("line-1", "all"), "pi-b": ("line-2",), "operator": ()}
# The ACL's patterns give the operator a device's rights for the id "operator" too (a
# reserved id, no device has it): those are not probed.
DEVICES = ("pi-a", "pi-b")
TABLE_HEADER = "| role | may publish to | may subscribe to |"


@dataclass(frozen=True)
class Rights:
    """One role's row of the README's ACL table: topic filters with <id> and <group>."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def of(self, name: str) -> Rights:
        """The filters for the client ``name`` (its id and groups filled in)."""
        return Rights(_fill(self.publish, name), _fill(self.subscribe, name))


def _fill(filters: tuple[str, ...], name: str) -> tuple[str, ...]:
    out: list[str] = []
    for f in filters:
        f = f.replace("<id>", name)
        out += [f.replace("<group>", g) for g in GROUPS[name]] if "<group>" in f else [f]
    return tuple(out)


def acl_table() -> dict[str, Rights]:
    """The per-role table of deploy_scripts/README.md: {"device": ..., "operator": ...}."""
    lines = (DEPLOY / "README.md").read_text().splitlines()
    start = lines.index(TABLE_HEADER) + 2
    roles = {}
    for line in itertools.takewhile(lambda s: s.startswith("|"), lines[start:]):
        role, publish, subscribe = (cell.strip() for cell in line.strip("|").split("|"))
        name = "device" if role.startswith("device") else role.strip("`")
        roles[name] = Rights(
            tuple(re.findall(r"`([^`]+)`", publish)), tuple(re.findall(r"`([^`]+)`", subscribe))
        )
    assert set(roles) == {"device", "operator"}, roles
    return roles


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching of a concrete topic."""
    return covers(topic_filter, topic)


def covers(allowed: str, wanted: str) -> bool:
    """Whether every topic that ``wanted`` (a filter) matches is matched by ``allowed``."""
    a, w = allowed.split("/"), wanted.split("/")
    for i, level in enumerate(a):
        if level == "#":
            return True
        if i >= len(w) or w[i] == "#" or (level != "+" and (w[i] == "+" or w[i] != level)):
            return False
    return len(a) == len(w)


def examples(topic_filter: str) -> list[str]:
    """Concrete topics a filter matches: '+' as each device and group, '#' as two levels."""
    names = [*DEVICES, *itertools.chain(*GROUPS.values())]
    choices = [
        names if lv == "+" else ["x/0"] if lv == "#" else [lv] for lv in topic_filter.split("/")
    ]
    return ["/".join(levels) for levels in itertools.product(*choices)]


def probes(table: dict[str, Rights]) -> tuple[list[str], list[str]]:
    """Topics to publish and filters to subscribe to: every one the table names, for
    every client, and broader ones."""
    filters: set[str] = {"#", "edge/#", "edge/+/infer", "edge/pi-b/#", "edge/bundles/+/+"}
    for rights, name in itertools.product(table.values(), DEVICES):
        mine = rights.of(name)
        filters.update(mine.publish, mine.subscribe)
    topics = sorted({t for f in filters for t in examples(f)})
    return topics, sorted(filters)


def login(fleet, name: str) -> Client:  # type: ignore[no-untyped-def]
    return operator(fleet) if name == "operator" else device(fleet, name)


def prober(fleet) -> Client:  # type: ignore[no-untyped-def]
    d, broker = fleet
    return Client(broker.password_port, d / "ca.crt", username=PROBE[0], password=PROBE[1])


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_each_role_may_publish_and_subscribe_exactly_as_the_readme_table_says(
    fleet: tuple[Path, ShippedBroker], name: str
) -> None:
    """Every topic the table names (for every client, and broader filters): published by
    ``name`` (PUBACK 135 where the table does not allow it), subscribed to by ``name``
    (SUBACK granted where it allows it) and then sent by a test-only user with every
    right: ``name`` must receive exactly the topics its subscribe column covers.
    mosquitto 2.0's acl_file grants every subscription and filters at delivery, so a
    refused read shows as a message never delivered, or as SUBACK 135 on brokers that
    check subscriptions."""
    table = acl_table()
    rights = table["operator" if name == "operator" else "device"].of(name)
    topics, filters = probes(table)
    wrong: list[str] = []
    client, probe = login(fleet, name), prober(fleet)
    try:
        for topic in topics:
            code = client.publish(topic, b"own")
            allowed = any(matches(f, topic) for f in rights.publish)
            if code not in ((*ACCEPTED,) if allowed else (NOT_AUTHORIZED,)):
                wrong.append(f"publish {topic}: {code}, expected {'ok' if allowed else 135}")
        for topic_filter in filters:
            code = client.subscribe_code(topic_filter)
            if any(covers(f, topic_filter) for f in rights.subscribe) and code != 1:
                wrong.append(f"subscribe {topic_filter}: {code}, expected 1")
            elif code not in (1, NOT_AUTHORIZED):
                wrong.append(f"subscribe {topic_filter}: {code}")
        marker = f"probe-{time.monotonic_ns()}".encode()
        for topic in topics:
            assert probe.publish(topic, marker) in ACCEPTED
        readable = {t for t in topics if any(matches(f, t) for f in rights.subscribe)}
        for topic in sorted(readable):
            client.wait_for(topic, marker)
        time.sleep(QUIET)
        delivered = {t for t, payload in client.messages if payload == marker}
        wrong += [f"read {t}: delivered, not in the table" for t in sorted(delivered - readable)]
    finally:
        client.close()
        probe.close()
    assert not wrong, "\n".join(wrong)


def test_the_table_names_every_outbound_topic_of_the_daemon() -> None:
    from edge_runtime.daemon.topics import Topics

    t = Topics("edge", "pi-a")
    device = acl_table()["device"].of("pi-a")
    outbound = [t.status, t.predictions, t.errors, t.telemetry, t.model_events, t.model_state]
    inbound = [t.infer, t.model_update, t.model_rollback, t.group_update("line-1")]
    assert all(any(matches(f, topic) for f in device.publish) for topic in outbound)
    assert all(any(covers(f, topic) for f in device.subscribe) for topic in inbound)
    assert "edge/bundles/#" in device.subscribe


def test_make_ca_again_brings_an_older_broker_folder_to_the_current_rules(
    tmp_path: Path,
) -> None:
    """A folder made before devices lost write access to their update topics and before
    client ids were bound: re-running make-ca.sh takes the ACL's rules and mosquitto.conf
    from the current templates, keeps every device's block, CA, keys and passwords."""
    d = tmp_path / "broker"
    script(BROKER / "make-ca.sh", d, "--host", "localhost")
    script(BROKER / "add-device.sh", "pi-a", "--dir", d, "--group", "line-1")
    kept = {f: (d / f).read_bytes() for f in ("ca.crt", "ca.key", "passwd", "operator.password")}
    device_block = "# device pi-a\nuser pi-a\ntopic read edge/groups/line-1/model/update\n"
    older = "# an older template\npattern write edge/%u/#\npattern read edge/%u/infer\n"
    (d / "acl").write_text(older + device_block + "\n")
    (d / "operators.passwd").unlink()
    (d / "mosquitto.conf").write_text("listener 8883\n")
    script(BROKER / "make-ca.sh", d, "--host", "localhost")
    acl = (d / "acl").read_text()
    assert acl.startswith((BROKER / "acl").read_text()) and "pattern write edge/%u/#" not in acl
    assert acl.count(device_block) == 1
    assert "use_username_as_clientid true" in (d / "mosquitto.conf").read_text()
    assert "operator:" in (d / "operators.passwd").read_text()
    assert kept == {f: (d / f).read_bytes() for f in kept}


def test_add_device_writes_a_config_the_daemon_accepts(fleet) -> None:  # type: ignore[no-untyped-def]
    d, _ = fleet
    files = d / "devices" / "pi-a"
    assert {p.name for p in files.iterdir()} == {
        "config.toml",
        "ca.crt",
        "device.crt",
        "device.key",
        "mqtt-password",
    }
    assert files.joinpath("device.key").stat().st_mode & 0o077 == 0
    config = parse_config(tomllib.loads(files.joinpath("config.toml").read_text()))
    assert config.device_id == "pi-a" and config.groups == ("line-1", "all")
    assert config.mqtt.port == 8883 and str(config.mqtt.tls_cert) == "device.crt"
    subject = subprocess.run(
        ["openssl", "x509", "-in", str(files / "device.crt"), "-noout", "-subject"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CN = pi-a" in subject or "CN=pi-a" in subject


def test_device_cannot_read_another_devices_requests(fleet) -> None:  # type: ignore[no-untyped-def]
    a, op = device(fleet, "pi-a"), operator(fleet)
    try:
        a.subscribe("edge/pi-b/infer", "edge/pi-a/infer", "edge/pi-b/#")
        assert op.publish("edge/pi-b/infer", b"for b") in ACCEPTED
        assert op.publish("edge/pi-a/infer", b"for a") in ACCEPTED
        a.wait_for("edge/pi-a/infer", b"for a")
        time.sleep(QUIET)
        assert "edge/pi-b/infer" not in a.topics()
    finally:
        a.close()
        op.close()


def test_device_cannot_publish_as_another_device(fleet) -> None:  # type: ignore[no-untyped-def]
    a, op = device(fleet, "pi-a"), operator(fleet)
    try:
        op.subscribe("edge/#")
        assert a.publish("edge/pi-b/predictions", b"forged") == NOT_AUTHORIZED
        assert a.publish("edge/pi-b/status", b"offline") == NOT_AUTHORIZED
        assert a.publish("edge/pi-a/predictions", b"mine") in ACCEPTED
        assert a.publish("edge/pi-a/status", b"online") in ACCEPTED
        op.wait_for("edge/pi-a/predictions", b"mine")
        time.sleep(QUIET)
        assert "edge/pi-b/predictions" not in op.topics() and "edge/pi-b/status" not in op.topics()
    finally:
        a.close()
        op.close()


def test_device_cannot_send_model_updates(fleet) -> None:  # type: ignore[no-untyped-def]
    a = device(fleet, "pi-a")
    try:
        assert a.publish("edge/groups/line-1/model/update", b"{}") == NOT_AUTHORIZED
        assert a.publish("edge/pi-b/model/update", b"{}") == NOT_AUTHORIZED
        assert a.publish("edge/pi-b/infer", b"x") == NOT_AUTHORIZED
    finally:
        a.close()


def test_device_cannot_send_itself_notices_or_rollback_orders(fleet) -> None:  # type: ignore[no-untyped-def]
    """With one device's credentials nobody can push a (retained) notice or a rollback
    order to that device: only the operator writes them."""
    a, op = device(fleet, "pi-a"), operator(fleet)
    try:
        a.subscribe("edge/pi-a/model/update", "edge/pi-a/model/rollback")
        assert a.publish("edge/pi-a/model/update", b"{}", retain=True) == NOT_AUTHORIZED
        assert a.publish("edge/pi-a/model/rollback", b"{}") == NOT_AUTHORIZED
        assert a.publish("edge/groups/all/model/update", b"{}", retain=True) == NOT_AUTHORIZED
        assert op.publish("edge/pi-a/model/rollback", b"from operator") in ACCEPTED
        a.wait_for("edge/pi-a/model/rollback", b"from operator")
        time.sleep(QUIET)
        assert a.payloads("edge/pi-a/model/update") == []
        assert a.payloads("edge/pi-a/model/rollback") == [b"from operator"]
    finally:
        a.close()
        op.close()


@pytest.mark.parametrize("listener", ["certificate", "password"])
def test_a_device_cannot_take_over_another_devices_session(fleet, listener: str) -> None:  # type: ignore[no-untyped-def]
    """pi-a's credentials with pi-b's client id (the daemon's default, and the former
    default edge-runtime-<id>) neither knock pi-b off nor resume pi-b's persistent
    session: a request queued for pi-b while it is offline still reaches pi-b."""
    claims = ("pi-b", "edge-runtime-pi-b")
    persistent = {"session_expiry": 3600}
    op = operator(fleet)
    b = device(fleet, "pi-b", listener, client_id="pi-b", **persistent)
    try:
        b.subscribe("edge/pi-b/infer")
        for claim in claims:
            a = device(fleet, "pi-a", listener, client_id=claim, **persistent)
            a.close()
        assert op.publish("edge/pi-b/infer", b"while online") in ACCEPTED
        b.wait_for("edge/pi-b/infer", b"while online")
        assert b.disconnects == [], "pi-b was disconnected"
        b.close()  # offline; its session (and subscription) stays on the broker
        assert op.publish("edge/pi-b/infer", b"queued for pi-b") in ACCEPTED
        for claim in claims:
            a = device(fleet, "pi-a", listener, client_id=claim, **persistent)
            time.sleep(QUIET)
            a.close()
            assert a.payloads("edge/pi-b/infer") == []
        b = device(fleet, "pi-b", listener, client_id="pi-b", **persistent)
        b.wait_for("edge/pi-b/infer", b"queued for pi-b")
    finally:
        b.close()
        op.close()


def test_the_broker_binds_the_client_id_to_the_username(fleet) -> None:  # type: ignore[no-untyped-def]
    """The broker ignores the client id a device sends: its session is its username's."""
    first = device(fleet, "pi-a", client_id="anything", session_expiry=3600)
    try:
        first.subscribe("edge/pi-a/infer")
    finally:
        first.close()
    op = operator(fleet)
    second = device(fleet, "pi-a", client_id="pi-a", session_expiry=3600)
    try:
        assert op.publish("edge/pi-a/infer", b"to the session of pi-a") in ACCEPTED
        second.wait_for("edge/pi-a/infer", b"to the session of pi-a")
    finally:
        second.close()
        op.close()


def test_operator_tools_run_side_by_side_on_the_operator_listener(fleet) -> None:  # type: ignore[no-untyped-def]
    d, broker = fleet
    password = (d / "operator.password").read_text()
    ops = [
        Client(broker.operator_port, d / "ca.crt", username="operator", password=password)
        for _ in range(2)
    ]
    try:
        for op in ops:
            op.subscribe("edge/pi-a/status")
        assert ops[0].publish("edge/pi-a/infer", b"x") in ACCEPTED
        assert ops[1].publish("edge/pi-a/infer", b"y") in ACCEPTED
        assert [op.disconnects for op in ops] == [[], []]
    finally:
        for op in ops:
            op.close()
    for name in ("pi-a", "pi-b"):
        files = d / "devices" / name
        pw = files.joinpath("mqtt-password").read_text()
        c = Client(broker.operator_port, d / "ca.crt", username=name, password=pw)
        try:
            assert c.connect_code is not None and not c.connected, "a device on 8885"
        finally:
            c.close()


def test_bundle_chunks_are_written_by_the_operator_and_read_by_devices(fleet) -> None:  # type: ignore[no-untyped-def]
    a, op = device(fleet, "pi-a"), operator(fleet)
    chunk = "edge/bundles/0123456789abcdef/0"
    try:
        assert a.publish(chunk, b"forged chunk") == NOT_AUTHORIZED
        assert op.publish(chunk, b"chunk", retain=True) in ACCEPTED
        a.subscribe("edge/bundles/0123456789abcdef/+")
        a.wait_for(chunk, b"chunk")
        assert op.publish(chunk, b"", retain=True) in ACCEPTED
    finally:
        a.close()
        op.close()


def test_operator_publishes_updates_to_devices_and_their_groups_only(fleet) -> None:  # type: ignore[no-untyped-def]
    a, b, op = device(fleet, "pi-a"), device(fleet, "pi-b"), operator(fleet)
    try:
        for c in (a, b):
            c.subscribe(
                "edge/groups/line-1/model/update",
                "edge/groups/line-2/model/update",
                "edge/pi-a/model/update",
                "edge/pi-b/model/update",
            )
        assert op.publish("edge/groups/line-1/model/update", b"g1") in ACCEPTED
        assert op.publish("edge/groups/line-2/model/update", b"g2") in ACCEPTED
        assert op.publish("edge/pi-b/model/update", b"u-b") in ACCEPTED
        assert op.publish("edge/pi-a/model/update", b"u-a") in ACCEPTED
        a.wait_for("edge/groups/line-1/model/update", b"g1")
        a.wait_for("edge/pi-a/model/update", b"u-a")
        b.wait_for("edge/groups/line-2/model/update", b"g2")
        b.wait_for("edge/pi-b/model/update", b"u-b")
        time.sleep(QUIET)
        assert sorted(a.topics()) == ["edge/groups/line-1/model/update", "edge/pi-a/model/update"]
        assert sorted(b.topics()) == ["edge/groups/line-2/model/update", "edge/pi-b/model/update"]
    finally:
        for c in (a, b, op):
            c.close()


def test_password_listener_applies_the_same_acl(fleet) -> None:  # type: ignore[no-untyped-def]
    d, broker = fleet
    files = d / "devices" / "pi-b"
    password = files.joinpath("mqtt-password").read_text()
    b = Client(broker.password_port, d / "ca.crt", username="pi-b", password=password)
    try:
        assert b.connected
        assert b.publish("edge/pi-b/telemetry", b"{}") in ACCEPTED
        assert b.publish("edge/pi-a/telemetry", b"{}") == NOT_AUTHORIZED
    finally:
        b.close()
    wrong = Client(broker.password_port, d / "ca.crt", username="pi-b", password="not-the-password")
    try:
        assert wrong.connect_code is not None and not wrong.connected
    finally:
        wrong.close()


def test_certificate_listener_refuses_a_client_without_certificate(fleet) -> None:  # type: ignore[no-untyped-def]
    d, broker = fleet
    password = (d / "devices" / "pi-a" / "mqtt-password").read_text()
    with pytest.raises((OSError, TimeoutError)):
        c = Client(broker.cert_port, d / "ca.crt", username="pi-a", password=password, timeout=5)
        try:
            assert not c.connected
            raise OSError("refused")
        finally:
            c.close()


def device_etc(fleet: tuple[Path, ShippedBroker], name: str, tmp_path: Path, model: Path) -> Path:
    """``name``'s folder as add-device.sh made it, its config.toml pointed at the test's
    broker, state folder and ``model`` (trust.json only where the folder has one)."""
    d, broker = fleet
    etc = tmp_path / "etc"
    shutil.copytree(d / "devices" / name, etc)
    text = etc.joinpath("config.toml").read_text()
    text = (
        text.replace('host = "localhost"', 'host = "127.0.0.1"')
        .replace("port = 8883", f"port = {broker.cert_port}")
        .replace('state_dir = "/var/lib/edge-runtime"', f'state_dir = "{tmp_path / "state"}"')
        .replace('path = "/var/lib/edge-runtime/models/current"', f'path = "{model}"')
        .replace("interval = 10", "interval = 1")
    )
    if not etc.joinpath("trust.json").exists():
        text = text.replace('trust = "trust.json"\n', "")
    etc.joinpath("config.toml").write_text(text)
    return etc / "config.toml"


def active(op: Client, name: str) -> str | None:
    """The active version in ``name``'s last model/state that ``op`` heard."""
    states = op.payloads(f"edge/{name}/model/state")
    return json.loads(states[-1])["active"]["version"] if states else None


def test_an_update_over_mqtt_reaches_the_daemon_through_the_acl(
    fleet: tuple[Path, ShippedBroker], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's edge-fleet publish --mqtt to a group, on the shipped broker's
    operator listener (while another operator client watches): the device reads its
    group's notice and the bundle's chunks, and its events and state pass the ACL, up to
    ``applied``."""
    from support.daemon import DaemonProcess

    from edge_runtime.trust.keys import generate_signing_key
    from edge_runtime.trust.trustfile import make_trust, save_trust
    from tests.integration.test_update_mqtt import fleet_tool, make_bundle

    d, broker = fleet
    key = generate_signing_key()
    devices = d / "devices"
    save_trust(devices / "pi-b" / "trust.json", make_trust([key.public_raw], 1))
    v1, v2 = (make_bundle(tmp_path, v, key) for v in ("1.0.0", "2.0.0"))
    op = operator(fleet)
    daemon = DaemonProcess(device_etc(fleet, "pi-b", tmp_path, v1))
    monkeypatch.setenv("EDGE_FLEET_MQTT_PASSWORD", (d / "operator.password").read_text())
    login = ("--port", broker.operator_port, "--tls-ca", d / "ca.crt", "--username", "operator")
    try:
        op.subscribe("edge/pi-b/#")
        op.wait_for("edge/pi-b/status", b"online", timeout=30)
        args = ("publish", v2, *login, "--group", "line-2", "--mqtt")
        done = fleet_tool(*args, "--wait", 45)
        assert done.returncode == 0 and "pi-b: applied" in done.stdout, done.stdout + done.stderr
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and active(op, "pi-b") != "2.0.0":
            time.sleep(0.1)
        assert active(op, "pi-b") == "2.0.0" and op.disconnects == []
        assert fleet_tool(*args, "--withdraw").returncode == 0
    finally:
        (devices / "pi-b" / "trust.json").unlink()
        daemon.kill()
        op.close()
        print(daemon.log()[-2000:])


def test_daemon_with_add_device_config_serves_requests_through_the_acl(
    fleet: tuple[Path, ShippedBroker], tmp_path: Path
) -> None:
    """The real daemon, configured by add-device.sh's config.toml and credentials, on the
    shipped broker: its status, predictions and MQTT 5 responses pass the ACL."""
    from support.daemon import MODEL, DaemonProcess

    op = operator(fleet)
    daemon = DaemonProcess(device_etc(fleet, "pi-a", tmp_path, MODEL))
    try:
        op.subscribe("edge/pi-a/#")
        op.wait_for("edge/pi-a/status", b"online", timeout=30)
        image = (
            Path(__file__).resolve().parents[1] / "fixtures" / "images" / "digit_3.png"
        ).read_bytes()
        assert (
            op.publish("edge/pi-a/infer", image, response_topic="edge/pi-a/responses/operator")
            in ACCEPTED
        )
        op.wait_for("edge/pi-a/predictions", timeout=60)
        op.wait_for("edge/pi-a/responses/operator", timeout=30)
        prediction = json.loads(op.payloads("edge/pi-a/predictions")[0])
        assert prediction["device_id"] == "pi-a" and prediction["top"][0]["index"] == 3
        op.wait_for("edge/pi-a/telemetry", timeout=30)
        assert daemon.terminate() == 0
        op.wait_for("edge/pi-a/status", b"offline", timeout=30)
    finally:
        daemon.kill()
        op.close()
        print(daemon.log()[-2000:])
