"""The daemon's container image (deploy_scripts/container): built by build.sh from a
debootstrap root without any image registry, run with podman against a real mosquitto on
this machine, answering an image over MQTT, healthy by ``edge-runtime health``, and
draining on SIGTERM (``podman stop``) to a clean ``offline``; the arm64 image built and run
under qemu-user-static.

Runs where podman can run containers as root (here: podman with runc from apt, explicit
ulimits; crun refuses this machine's hybrid cgroups), with debootstrap and qemu-user-static;
skipped elsewhere, saying what is missing. The debootstrap roots and the wheels are cached
in EDGE_TEST_CACHE, else $XDG_CACHE_HOME/edge-runtime-test, else
/var/cache/edge-runtime-test (as the Pi root of test_pi_root.py); podman keeps the layers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import DEPLOY, ROOT, missing
from support.client import TestClient
from support.daemon import daemon_config
from support.mosquitto import Mosquitto

CONTAINER = DEPLOY / "container"
BUILD = CONTAINER / "build.sh"
VERSION = "0.1.0"
IMAGE = "localhost/edge-runtime-test"
UID = 10001
ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
BUNDLE = ROOT / "tests" / "fixtures" / "models" / "digits_v1.edgebundle"
DIGIT = ROOT / "tests" / "fixtures" / "images" / "digit_3.png"
DEVICE = "ctr-01"
T = f"edge/{DEVICE}"


def _why_not() -> str:
    if os.geteuid() != 0:
        return "needs root (debootstrap, podman's image store)"
    gone = missing("podman", "runc", "debootstrap", "qemu-aarch64-static")
    if gone:
        return f"needs {', '.join(gone)} (tools/setup.sh installs them)"
    info = subprocess.run(
        ["podman", "--runtime", "runc", "info"], capture_output=True, text=True, check=False
    )
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip()[-300:]}"
    return ""


WHY_NOT = _why_not()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.container,
    pytest.mark.timeout(2400),
    pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT or "podman runs"),
]


def cache_dir() -> Path:
    if os.environ.get("EDGE_TEST_CACHE"):
        return Path(os.environ["EDGE_TEST_CACHE"]) / "container"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "edge-runtime-test" / "container"
    return Path("/var/cache/edge-runtime-test/container")


def podman_run(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "--runtime", "runc", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def podman(*args: object, timeout: float = 120, check: bool = True) -> str:
    done = podman_run(*args, timeout=timeout)
    if check:
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def logs(name: str) -> str:
    """The container's log: what the daemon wrote to standard output and error."""
    done = podman_run("logs", name)
    return done.stdout + done.stderr


def build(*args: str) -> list[str]:
    """build.sh's lines (one per image), timed."""
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(BUILD), "--cache", str(cache_dir()), "--name", IMAGE, *args],
        capture_output=True,
        text=True,
        timeout=2000,
        check=False,
        env={**os.environ, "PYTHON": sys.executable, "PODMAN_RUNTIME": "runc"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"\nbuild.sh {' '.join(args)}: {time.monotonic() - started:.0f} s\n{done.stdout}")
    return done.stdout.splitlines()


@pytest.fixture(scope="module")
def amd64_image() -> str:
    lines = build("--arch", "amd64", "--broker")
    tag = f"{IMAGE}:{VERSION}-amd64"
    assert any(line.startswith(f"built {tag} (linux/amd64): ") for line in lines), lines
    assert any(line.startswith(f"built {IMAGE}-mosquitto:{VERSION}-amd64") for line in lines)
    return tag


def test_the_image_is_small_non_root_with_entrypoint_and_health_check(amd64_image):
    (info,) = json.loads(podman("image", "inspect", amd64_image))
    config = info["Config"]
    assert config["User"] == "edge-runtime"
    assert config["Entrypoint"] == ["edge-runtime"]
    assert config["Cmd"] == ["run", "--config", "/etc/edge-runtime/config.toml"]
    assert "/var/lib/edge-runtime" in config["Volumes"]
    assert config["StopSignal"] in ("SIGTERM", "15")
    check = info["Healthcheck"]["Test"]
    assert check[0] == "CMD" and check[1:3] == ["edge-runtime", "health"]
    assert info["Architecture"] == "amd64"
    # 404 MB as measured, PyAV's FFmpeg libraries (the video extra) about 104 MB of it
    assert info["Size"] < 450_000_000, info["Size"]
    # no compilers, no TensorFlow; the litert backend is there
    listing = podman(
        "run", "--rm", *ULIMITS, "--network", "none", "--entrypoint", "sh", amd64_image, "-c",
        "id -u; ls /usr/bin; ls /opt/edge-runtime/venv/lib/python3.11/site-packages",
    )  # fmt: skip
    names = set(listing.split())
    assert listing.split()[0] == str(UID)
    assert not {"gcc", "cc", "g++", "make"} & names
    assert "ai_edge_litert" in names and "edge_runtime" in names
    assert not {n for n in names if n.startswith(("tensorflow", "pip"))}


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"edge-runtime-test-{os.getpid()}"
    podman("rm", "-f", "-i", name, check=False)
    yield name
    podman("rm", "-f", "-i", name, check=False)


def _device_files(tmp_path: Path, port: int) -> tuple[Path, Path]:
    """The config folder (mounted read-only) and the state folder (owned by the image's
    user), as an operator would lay them out."""
    conf = tmp_path / "etc"
    conf.mkdir()
    shutil.copy(BUNDLE, conf / BUNDLE.name)
    daemon_config(
        conf,
        port,
        device_id=DEVICE,
        model=Path("/etc/edge-runtime") / BUNDLE.name,
        state_dir="/var/lib/edge-runtime",
    )
    for path in (conf, *conf.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, UID, UID)
    return conf, state


def test_the_daemon_in_its_container_answers_over_mqtt_and_drains_on_sigterm(
    amd64_image, container_name, tmp_path
):
    with Mosquitto(tmp_path) as broker:
        conf, state = _device_files(tmp_path, broker.port)
        client = TestClient(broker.port)
        for topic in ("status", "predictions", "errors"):
            client.subscribe(f"{T}/{topic}")
        try:
            podman(
                "run", "-d", "--name", container_name, "--network", "host", *ULIMITS,
                "--read-only", "--tmpfs", "/tmp",  # as compose.yaml and the DaemonSet run it
                "-v", f"{conf}:/etc/edge-runtime:ro", "-v", f"{state}:/var/lib/edge-runtime",
                amd64_image,
            )  # fmt: skip
            got = client.wait_for(lambda r: any(m.payload == b"online" for m in r), 60)
            assert any(m.payload == b"online" for m in got), logs(container_name)
            client.publish(f"{T}/infer", DIGIT.read_bytes(), correlation=b"ctr-1")
            got = client.wait_for(lambda r: any(m.topic.endswith("predictions") for m in r), 30)
            answers = [m.json() for m in got if m.topic.endswith("predictions")]
            assert answers, (got, logs(container_name))
            assert answers[0]["top"][0]["label"] == "three"  # type: ignore[index]
            assert answers[0]["device_id"] == DEVICE  # type: ignore[index]

            # healthy by the image's own health check once the daemon fed its watchdog
            deadline = time.monotonic() + 30
            while podman_run("healthcheck", "run", container_name).returncode != 0:
                assert time.monotonic() < deadline, logs(container_name)
                time.sleep(1)
            # in the container's /dev/shm (memory), written by the non-root user
            where = podman(
                "exec", container_name, "python3", "-c",
                "from pathlib import Path; from edge_runtime.daemon.liveness import liveness_path;"
                " print(liveness_path(Path('/var/lib/edge-runtime')))",
            ).strip()  # fmt: skip
            assert where.startswith("/dev/shm/edge-runtime-liveness-"), where
            owner = podman("exec", container_name, "stat", "-c", "%u", where).strip()
            assert owner == str(UID), owner
            assert not list(state.glob("liveness*"))  # nothing rewritten in the state folder

            podman("stop", "-t", "30", container_name, timeout=60)
            exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", container_name)
            log = logs(container_name)
            assert exit_code.strip() == "0", log  # not killed: 137
            assert "daemon stopped (queue drained" in log  # logs reach the container's log
            got = client.wait_for(lambda r: r[-1].payload == b"offline", 10)
            status = [m.payload for m in got if m.topic == f"{T}/status"]
            assert status[-1] == b"offline", status
            assert not list(state.glob("liveness*"))
            assert "Traceback" not in log, log
        finally:
            client.close()


def test_the_arm64_image_runs_under_qemu(tmp_path):
    lines = build("--arch", "arm64")
    tag = f"{IMAGE}:{VERSION}-arm64"
    assert any(line.startswith(f"built {tag} (linux/arm64): ") for line in lines), lines
    (info,) = json.loads(podman("image", "inspect", tag))
    assert info["Architecture"] == "arm64"
    run = ["run", "--rm", *ULIMITS, "--network", "none", "--platform", "linux/arm64"]
    assert podman(*run, tag, "--version", timeout=300).strip() == f"edge-runtime {VERSION}"
    machine = podman(*run, "--entrypoint", "uname", tag, "-m", timeout=120)
    assert machine.strip() == "aarch64"


def test_the_broker_image_serves_mqtt(amd64_image, tmp_path):
    """The mosquitto image beside the daemon's (compose.yaml), on a free local port."""
    from support.mosquitto import free_port, wait_port

    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n")
    conf.chmod(0o644)
    name = f"edge-mosquitto-test-{os.getpid()}"
    image = f"{IMAGE}-mosquitto:{VERSION}-amd64"
    try:
        podman(
            "run", "-d", "--name", name, "--network", "host", *ULIMITS,
            "-v", f"{conf}:/etc/mosquitto/mosquitto.conf:ro", image,
        )  # fmt: skip
        wait_port(port, 20)
        client = TestClient(port)
        client.subscribe("check/#")
        client.publish("check/one", b"hello")
        got = client.wait_for(lambda r: bool(r), 10)
        client.close()
        assert [m.payload for m in got] == [b"hello"]
        assert podman("exec", name, "id", "-un").strip() == "mosquitto"
    finally:
        podman("rm", "-f", "-i", name, check=False)


def _pod_from_daemonset(tmp_path: Path, port: int, image: str) -> tuple[Path, Path, Path]:
    """The DaemonSet's ConfigMap and pod template as files ``podman kube play`` takes, with
    what this machine lacks replaced: the node's name (podman has no ``spec.nodeName``),
    the trust Secret (a host folder holding the bundle), the hardware (no Coral, no camera),
    the broker (the test's, plain MQTT), the image (the test's tag). podman 4.3 fails to
    remove a finished run-once init container under runc: run it as an "always" one."""
    yaml = pytest.importorskip("yaml", reason="pip install pyyaml (in the dev extra)")
    config_map, daemonset = yaml.safe_load_all(
        (CONTAINER / "kubernetes/edge-runtime.yaml").read_text()
    )
    config = config_map["data"]["config.toml"]
    for old, new in (
        ('host = "mqtt.example.com"', 'host = "127.0.0.1"'),
        ("port = 8883", f"port = {port}"),
        ('tls_ca = "/etc/edge-runtime/trust/ca.crt"\n', ""),
        ("/var/lib/edge-runtime/initial.edgebundle", f"/etc/edge-runtime/trust/{BUNDLE.name}"),
    ):  # fmt: skip
        assert old in config
        config = config.replace(old, new)
    config_map["data"]["config.toml"] = config
    spec = daemonset["spec"]["template"]["spec"]
    del spec["nodeSelector"]
    (prepare,) = spec["initContainers"]
    prepare["env"] = [{"name": "NODE_NAME", "value": DEVICE}]
    trust = tmp_path / "trust"
    trust.mkdir()
    shutil.copy(BUNDLE, trust / BUNDLE.name)
    state = tmp_path / "node-state"  # made by the pod (DirectoryOrCreate), owned by its init
    hardware = {"usb", "video"}
    for container in spec["initContainers"] + spec["containers"]:
        container["image"] = image
        container["volumeMounts"] = [
            m for m in container["volumeMounts"] if m["name"] not in hardware
        ]
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] not in hardware]
    for volume in spec["volumes"]:
        if volume["name"] == "trust":
            del volume["secret"]
            volume["hostPath"] = {"path": str(trust), "type": "Directory"}
        if volume["name"] == "state":
            volume["hostPath"]["path"] = str(state)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"edge-kube-test-{os.getpid()}",
            "labels": daemonset["spec"]["template"]["metadata"]["labels"],
            "annotations": {"io.podman.annotations.init.container.type": "always"},
        },
        "spec": spec,
    }
    (tmp_path / "configmap.yaml").write_text(yaml.safe_dump(config_map))
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    return tmp_path / "configmap.yaml", tmp_path / "pod.yaml", state


def test_the_daemonset_pod_runs_under_podman_kube_play(amd64_image, tmp_path, monkeypatch):
    # kube play takes no --ulimit or --runtime: a containers.conf for this test's podman
    conf = tmp_path / "containers.conf"
    limits = '"nofile=4096:4096", "nproc=4096:4096"'
    conf.write_text(f'[containers]\ndefault_ulimits = [{limits}]\n[engine]\nruntime = "runc"\n')
    monkeypatch.setenv("CONTAINERS_CONF", str(conf))
    with Mosquitto(tmp_path) as broker:
        config_map, pod, state = _pod_from_daemonset(tmp_path, broker.port, amd64_image)
        name = f"edge-kube-test-{os.getpid()}"
        client = TestClient(broker.port)
        for topic in ("status", "predictions"):
            client.subscribe(f"{T}/{topic}")
        try:
            podman("kube", "play", "--configmap", config_map, pod, timeout=180)
            container = f"{name}-edge-runtime"
            got = client.wait_for(lambda r: any(m.payload == b"online" for m in r), 60)
            assert any(m.payload == b"online" for m in got), logs(container)
            client.publish(f"{T}/infer", DIGIT.read_bytes())
            got = client.wait_for(lambda r: any(m.topic.endswith("predictions") for m in r), 30)
            answers = [m.json() for m in got if m.topic.endswith("predictions")]
            assert answers and answers[0]["top"][0]["label"] == "three", logs(container)  # type: ignore[index]
            assert state.stat().st_uid == UID  # the init container's chown
            # the probe's command, in the running pod
            probe = ["edge-runtime", "health", "--config", "/etc/edge-runtime/config.toml"]
            deadline = time.monotonic() + 30
            while podman_run("exec", container, *probe).returncode != 0:
                assert time.monotonic() < deadline, logs(container)
                time.sleep(1)
            podman("pod", "stop", "-t", "30", name, timeout=60)
            got = client.wait_for(lambda r: r[-1].payload == b"offline", 10)
            assert [m.payload for m in got if m.topic == f"{T}/status"][-1] == b"offline"
            assert "daemon stopped (queue drained" in logs(container)
        finally:
            client.close()
            podman("pod", "rm", "-f", "-i", name, check=False, timeout=60)
