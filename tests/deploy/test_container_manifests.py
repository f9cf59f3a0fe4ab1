"""The compose file and the Kubernetes manifest of deploy_scripts/container, checked
without a cluster or a compose tool: the fields Kubernetes and the compose specification
require, every reference resolving (volumes, ConfigMap, selector), the images and health
check as build.sh and the Containerfile make them, and the ConfigMap's config accepted by
the daemon's own config parser. (podman 4.3 here has no DaemonSet in ``kube play``;
test_container.py runs the DaemonSet's pod template with it.)"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import DEPLOY

from edge_runtime.daemon.config import load_config

yaml = pytest.importorskip("yaml", reason="pip install pyyaml (in the dev extra)")

CONTAINER = DEPLOY / "container"
VERSION = importlib.metadata.version("edge-runtime")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
HEALTH = ["edge-runtime", "health", "--config", "/etc/edge-runtime/config.toml"]
VOLUME_SOURCES = {"configMap", "secret", "hostPath", "emptyDir", "persistentVolumeClaim"}
COMPOSE_SERVICE_KEYS = {
    "image", "command", "entrypoint", "network_mode", "depends_on", "restart", "stop_signal",
    "stop_grace_period", "read_only", "tmpfs", "volumes", "healthcheck", "devices",
    "group_add", "user", "environment", "init",
}  # fmt: skip


def containerfile_uid() -> int:
    text = (CONTAINER / "Containerfile").read_text()
    return int(re.search(r"useradd [^\n]*--uid (\d+)", text).group(1))  # type: ignore[union-attr]


def containerfile_health() -> list[str]:
    text = (CONTAINER / "Containerfile").read_text()
    line = re.search(r"CMD (\[.*\])\s*$", text.split("HEALTHCHECK", 1)[1], re.M)
    return yaml.safe_load(line.group(1))  # type: ignore[union-attr,no-any-return]


def compose_volume(volume: str) -> list[str]:
    """SOURCE, TARGET[, MODE] of a compose volume, ${VAR:-default} read with VAR unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", volume).split(":")


def manifests() -> list[dict[str, Any]]:
    text = (CONTAINER / "kubernetes" / "edge-runtime.yaml").read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in manifests() if d["kind"] == kind]
    return doc


def test_every_manifest_has_the_fields_kubernetes_requires():
    docs = manifests()
    assert [d["kind"] for d in docs] == ["ConfigMap", "DaemonSet"]
    for doc in docs:
        assert doc["apiVersion"] == {"ConfigMap": "v1", "DaemonSet": "apps/v1"}[doc["kind"]]
        assert DNS_LABEL.match(doc["metadata"]["name"])
        assert set(doc) <= {"apiVersion", "kind", "metadata", "spec", "data"}


def test_the_daemonset_selects_its_pods_and_every_reference_resolves():
    ds = by_kind("DaemonSet")
    spec = ds["spec"]
    template = spec["template"]
    labels = template["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()  # else the API refuses it
    pod = template["spec"]
    assert pod["nodeSelector"]["edge-runtime/device-class"]  # one DaemonSet per device class
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert len(volumes) == len(pod["volumes"])
    for volume in volumes.values():
        assert len(set(volume) & VOLUME_SOURCES) == 1, volume
    containers = pod["initContainers"] + pod["containers"]
    for container in containers:
        assert DNS_LABEL.match(container["name"])
        assert container["image"] == f"localhost/edge-runtime:{VERSION}"  # build.sh's tag
        assert container["imagePullPolicy"] == "Never"  # no registry
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes, mount
            assert mount["mountPath"].startswith("/")
    config_map = by_kind("ConfigMap")["metadata"]["name"]
    assert volumes["config-template"]["configMap"]["name"] == config_map
    assert volumes["trust"]["secret"]["secretName"]
    assert volumes["usb"]["hostPath"]["path"] == "/dev/bus/usb"
    assert volumes["state"]["hostPath"]["type"] == "DirectoryOrCreate"


def test_the_daemon_runs_as_the_image_user_with_the_image_health_check():
    pod = by_kind("DaemonSet")["spec"]["template"]["spec"]
    (daemon,) = pod["containers"]
    assert pod["securityContext"]["runAsUser"] == containerfile_uid()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert daemon["args"] == ["run", "--config", "/etc/edge-runtime/config.toml"]
    assert containerfile_health() == HEALTH
    for probe in ("startupProbe", "livenessProbe"):
        assert daemon[probe]["exec"]["command"] == HEALTH
    # the kubelet waits for the drain (shutdown_timeout) before it kills
    shutdown = re.search(
        r"^shutdown_timeout = (\S+)", by_kind("ConfigMap")["data"]["config.toml"], re.M
    )
    assert pod["terminationGracePeriodSeconds"] > float(shutdown.group(1))  # type: ignore[union-attr]


def test_the_config_map_is_a_valid_daemon_config_once_the_node_name_is_in(tmp_path: Path):
    ds = by_kind("DaemonSet")
    (prepare,) = ds["spec"]["template"]["spec"]["initContainers"]
    script = prepare["command"][-1]
    assert "s/@NODE_NAME@/$NODE_NAME/" in script
    assert prepare["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    text = by_kind("ConfigMap")["data"]["config.toml"]
    assert 'device_id = "@NODE_NAME@"' in text
    (tmp_path / "config.toml").write_text(text.replace("@NODE_NAME@", "pi-07"))
    config = load_config(tmp_path / "config.toml")
    assert config.device_id == "pi-07"
    assert str(config.state_dir) == "/var/lib/edge-runtime"
    daemon = ds["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"] for m in daemon["volumeMounts"]}
    assert str(config.update.trust).startswith("/etc/edge-runtime/trust/")
    assert {"/etc/edge-runtime", "/etc/edge-runtime/trust", "/var/lib/edge-runtime"} <= mounts


def test_the_compose_file_runs_the_built_images_with_mounts_and_health_check():
    compose = yaml.safe_load((CONTAINER / "compose.yaml").read_text())
    assert set(compose) <= {"name", "services", "volumes", "networks", "configs", "secrets"}
    services = compose["services"]
    assert set(services) == {"broker", "daemon"}
    for service in services.values():
        assert set(service) <= COMPOSE_SERVICE_KEYS, set(service) - COMPOSE_SERVICE_KEYS
        assert service["network_mode"] == "host"  # the daemon's broker is 127.0.0.1
        for volume in service.get("volumes", []):
            source, target, *mode = compose_volume(volume)
            assert target.startswith("/") and mode in ([], ["ro"])
            if not source.startswith(("/", ".")):
                assert source in compose["volumes"], volume  # a named volume, declared
    daemon, broker = services["daemon"], services["broker"]
    assert daemon["image"] == f"localhost/edge-runtime:{VERSION}"
    assert broker["image"] == f"localhost/edge-runtime-mosquitto:{VERSION}"
    assert daemon["depends_on"] == ["broker"]
    assert daemon["healthcheck"]["test"] == ["CMD", *containerfile_health()]
    assert daemon["stop_signal"] == "SIGTERM"
    assert int(daemon["stop_grace_period"].rstrip("s")) > 10  # > shutdown_timeout's default
    mounts = {compose_volume(v)[1] for v in daemon["volumes"]}
    assert mounts == {"/etc/edge-runtime", "/var/lib/edge-runtime"}
    assert (CONTAINER / "mosquitto.conf").is_file()  # the broker's default config
