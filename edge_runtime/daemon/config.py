"""The daemon's TOML config: strict, typed, every problem reported at once.

``parse_config`` is pure (a dict in, a frozen ``Config`` out); ``load_config`` is the
thin shell that reads the file and the password secret. Unknown keys, wrong types and
out-of-range values are all collected and raised together as one ``ConfigError`` whose
message has one line per problem, each naming the key and what is allowed.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge_runtime.errors import ConfigError
from edge_runtime.inference.types import DetectionSettings
from edge_runtime.sources.redact import without_password
from edge_runtime.update.health import HealthPolicy

try:  # Python 3.11+
    import tomllib
except ImportError:  # pragma: no cover - Python 3.9/3.10
    import tomli as tomllib  # type: ignore[no-redef]

#: Environment variable that may hold the MQTT password (wins over ``password_file``).
PASSWORD_ENV = "EDGE_RUNTIME_MQTT_PASSWORD"

DEVICE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# device_id: the device's host name (an RFC 1123 label, lower case) and a topic level; the
# same rule as deploy_scripts/flash.sh and broker/add-device.sh.
HOST_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


def legacy_device_id(device_id: str) -> bool:
    """True for an id that earlier versions took but that is not a host name (upper case,
    '_', '.', a leading or trailing '-'): a device flashed with one keeps running, with a
    warning, while flash.sh and add-device.sh refuse such ids for new devices."""
    return HOST_ID.match(device_id) is None


PREFIX = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
ABSOLUTE_PATH = re.compile(r"^/(?!.*(^|/)\.\.(/|$)).*$")  # no ".." component
LOG_LEVELS = ("debug", "info", "warning", "error")
DELEGATES = ("auto", "cpu", "edgetpu")
PROTOCOLS = ("5", "3.1.1")
#: ``threads`` and ``preprocess_workers``: chosen at start from a calibration on the model
#: (``edge_runtime.daemon.tuning``); None in the parsed config.
AUTO = "auto"


@dataclass(frozen=True)
class ModelConfig:
    path: Path
    delegate: str = "auto"
    threads: int | None = None  # None: "auto", chosen at start (and after a model swap)
    labels: Path | None = None
    top_k: int = 5
    score_threshold: float = 0.25  # detections scoring below it are left out
    iou_threshold: float = 0.45  # YOLO NMS: overlap with a better box of its class
    max_detections: int = 100

    @property
    def detection(self) -> DetectionSettings:
        """What counts as a detection, for ``Engine.load(detection=...)``."""
        return DetectionSettings(self.score_threshold, self.iou_threshold, self.max_detections)


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "5"
    prefix: str = "edge"
    client_id: str | None = None
    keepalive: int = 30
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    session_expiry: int = 7 * 24 * 3600
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0


@dataclass(frozen=True)
class RequestsConfig:
    max_payload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    queue_size: int = 64
    queue_wait: float = 2.0
    watch_dir: Path | None = None
    watch_interval: float = 1.0
    preprocess_workers: int | None = None  # None: "auto", chosen at start
    queue_bytes: int = 16 * 1024 * 1024  # image bytes waiting or in work, at most


@dataclass(frozen=True)
class TelemetryConfig:
    interval: float = 10.0
    qos: int = 0
    latency_window: int = 1000


@dataclass(frozen=True)
class OutboxConfig:
    max_bytes: int = 64 * 1024 * 1024
    #: seconds a message sent from memory may go unacknowledged before it is stored
    spill_after: float = 1.0


@dataclass(frozen=True)
class UpdateConfig:
    trust: Path | None = None  # updates are refused without a trust file
    device_class: str | None = None  # checked against a bundle's "compatible"
    max_bundle_bytes: int = 256 * 1024 * 1024
    download_timeout: float = 60.0  # seconds without progress before a download fails
    download_ca: Path | None = None  # CAs for https downloads (default: the system's)
    file_roots: tuple[Path, ...] = ()  # folders file:// bundles may come from (none: refused)
    validation_timeout: float = 120.0
    retry_interval: float = 300.0  # first wait before a passing failure is tried again; 0: never
    max_invoke_ms: float | None = None  # latency bound a candidate must meet in validation
    keep: int = 2  # versions kept besides the active one
    # probation of an applied model (see edge_runtime.update.health)
    probation_requests: int = 50
    probation_seconds: float = 600.0
    health_max_error_rate: float = 0.1
    health_max_latency_ms: float | None = None
    health_latency_factor: float = 4.0
    crash_loop_starts: int = 3

    def health_policy(self) -> HealthPolicy:
        return HealthPolicy(
            requests=self.probation_requests,
            seconds=self.probation_seconds,
            max_error_rate=self.health_max_error_rate,
            max_latency_ms=self.health_max_latency_ms,
            latency_factor=self.health_latency_factor,
            crash_starts=self.crash_loop_starts,
        )


@dataclass(frozen=True)
class PrometheusConfig:
    enabled: bool = False
    port: int = 9108


@dataclass(frozen=True)
class HttpConfig:
    """``[http]``: the HTTP serving endpoints (``edge_runtime.serving``)."""

    enabled: bool = False
    listen: str = "127.0.0.1:8501"  # host:port; anything but loopback requires token_file
    token_file: Path | None = None  # clients send "Authorization: Bearer <token>"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    model_name: str | None = None  # the name in /v1/models/<name>; default: the model's
    workers: int = 4  # connections served at once
    backlog: int = 16  # accepted connections waiting for a worker; beyond it: 429
    max_body_bytes: int = 16 * 1024 * 1024  # larger bodies are refused unread (413)
    request_timeout: float = 10.0  # s a client has to send one whole request
    idle_timeout: float = 5.0  # s a connection may stay silent (keep-alive included)
    queue_wait: float = 0.5  # s a request waits for room in the pipeline before 429
    answer_timeout: float = 30.0  # s a request waits for its answer before 503

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def loopback(self) -> bool:
        """The listen address is this machine's loopback (no token needed): a literal
        loopback address, or ``localhost`` while it resolves to loopback addresses only
        (the hosts file may map it elsewhere). Other names are not resolved: not loopback."""
        host = self.host
        if host == "localhost":
            try:
                found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            except OSError:
                return False
            return bool(found) and all(_is_loopback(str(a[4][0])) for a in found)
        return _is_loopback(host)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


LISTEN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) as its host and port; ``("", 0)`` when invalid."""
    match = LISTEN.match(listen)
    if match is None:
        return "", 0
    return match.group(1).strip("[]"), int(match.group(2))


@dataclass(frozen=True)
class MonitoringConfig:
    """``[monitoring]``: drift of the model's inputs and outputs against the reference
    its bundle carries (``edge_runtime.telemetry.drift``)."""

    enabled: bool = True  # on when the bundle has a reference
    window: int = 500  # requests per comparison
    psi_alert: float = 0.25  # PSI that counts as drift (plus what chance reaches)
    alert_after: int = 2  # consecutive windows over (or back under) before an alert
    significance: float = 0.001  # chance of a window over the bound without drift


#: ``[[sources]]``: a source's name (a topic level) and the URL forms it may take.
SOURCE_NAME = re.compile(r"^[a-z0-9_-]{1,32}\Z")
SOURCE_URL = re.compile(r"^(rtsps?://|https?://|file:///|v4l2:///dev/|picamera2:[0-9]{1,2}\Z)")
PUBLISH_MODES = ("every", "changes")
#: Most ``[[sources]]`` one daemon reads.
MAX_SOURCES = 16


@dataclass(frozen=True)
class SourceConfig:
    """One ``[[sources]]`` table: a camera or stream the daemon reads itself
    (``edge_runtime.sources``)."""

    name: str
    url: str
    fps: float = 5.0  # frames taken per second; 0: as fast as the model allows
    publish: str = "every"  # every | changes
    min_score: float = 0.5
    heartbeat: float = 60.0  # changes mode: republish at least this often (s)
    snapshot: bool = False  # retained JPEG of the frame behind each published change
    loop: bool = False  # file:// only


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = False
    discovery_prefix: str = "homeassistant"


@dataclass(frozen=True)
class Config:
    device_id: str
    state_dir: Path
    model: ModelConfig
    mqtt: MqttConfig = MqttConfig()
    requests: RequestsConfig = RequestsConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    outbox: OutboxConfig = OutboxConfig()
    update: UpdateConfig = UpdateConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    http: HttpConfig = HttpConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    home_assistant: HomeAssistantConfig = HomeAssistantConfig()
    groups: tuple[str, ...] = ()
    log_level: str = "info"
    shutdown_timeout: float = 10.0
    sources: tuple[SourceConfig, ...] = ()

    @property
    def client_id(self) -> str:
        """The MQTT client id: ``[mqtt] client_id``, else the device id, which is what a
        broker that binds client ids to identities expects (the shipped broker set-up:
        the username, or the client certificate's CN, is the device id)."""
        return self.mqtt.client_id or self.device_id


_MISSING = object()
#: Device ids whose topics would overlap the fleet's own (group notices, bundle chunks).
RESERVED_IDS = frozenset({"groups", "bundles"})


class _Table:
    """Reads one TOML table, recording every problem instead of stopping at the first."""

    def __init__(self, data: Any, name: str, problems: list[str]) -> None:
        self.name = name
        self.problems = problems
        self.seen: set[str] = set()
        if not isinstance(data, dict):
            problems.append(f"{name}: expected a table, found {type(data).__name__}")
            data = {}
        self.data: dict[str, Any] = data

    def key(self, key: str) -> str:
        return f"{self.name}.{key}" if self.name else key

    def _get(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key, _MISSING)

    def table(self, key: str) -> _Table:
        value = self._get(key)
        return _Table({} if value is _MISSING else value, self.key(key), self.problems)

    def text(
        self,
        key: str,
        default: Any,
        *,
        pattern: re.Pattern[str] | None = None,
        choices: tuple[str, ...] | None = None,
        required: bool = False,
        hint: str = "",
        shown: Callable[[str], str] = str,
    ) -> Any:
        """``shown``: the value as a message about a mismatch of ``pattern`` shows it."""
        value = self._get(key)
        if value is _MISSING:
            if required:
                self.problems.append(f"{self.key(key)}: missing; expected a string{hint}")
            return default
        if choices is not None and not isinstance(value, str):
            value = str(value)  # e.g. protocol = 5
        if not isinstance(value, str) or not value:
            self.problems.append(f"{self.key(key)}: expected a non-empty string, found {value!r}")
            return default
        if choices is not None and value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            self.problems.append(f"{self.key(key)}: {value!r} is not allowed; use one of {allowed}")
            return default
        if pattern is not None and not pattern.match(value):
            self.problems.append(f"{self.key(key)}: {shown(value)!r} is not valid{hint}")
            return default
        return value

    def path(self, key: str, default: Path | None = None, *, required: bool = False) -> Any:
        value = self.text(key, _MISSING, required=required, hint=" (a file or folder path)")
        return default if value is _MISSING else Path(value)

    def number(
        self,
        key: str,
        default: Any,
        lo: float,
        hi: float,
        *,
        integer: bool = True,
        optional: bool = False,
    ) -> Any:
        value = self._get(key)
        if value is _MISSING:
            return default
        kind = "a whole number" if integer else "a number"
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            self.problems.append(
                f"{self.key(key)}: expected {kind} from {lo:g} to {hi:g}, found {value!r}"
            )
            return default
        if not lo <= value <= hi:
            self.problems.append(
                f"{self.key(key)}: {value!r} is out of range; allowed {lo:g} to {hi:g}"
            )
            return default
        return int(value) if integer else float(value)

    def count_or_auto(self, key: str, hi: int) -> int | None:
        """A whole number from 1 to ``hi``, or "auto" (None; also when absent)."""
        value = self.data.get(key, _MISSING)
        if value == AUTO:
            self.seen.add(key)
            return None
        if isinstance(value, int) or value is _MISSING:
            count: int | None = self.number(key, None, 1, hi)  # a bool too: number refuses it
            return count
        self.seen.add(key)
        self.problems.append(
            f'{self.key(key)}: expected "auto" or a whole number from 1 to {hi}, found {value!r}'
        )
        return None

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.problems.append(f"{self.key(key)}: expected true or false, found {value!r}")
            return default
        return value

    def strings(
        self, key: str, pattern: re.Pattern[str], what: str = "names ([A-Za-z0-9_.-])"
    ) -> tuple[str, ...]:
        value = self._get(key)
        if value is _MISSING:
            return ()
        if not isinstance(value, list) or not all(
            isinstance(v, str) and pattern.match(v) for v in value
        ):
            self.problems.append(f"{self.key(key)}: expected a list of {what}, found {value!r}")
            return ()
        return tuple(value)

    def finish(self) -> None:
        for key in sorted(set(self.data) - self.seen):
            known = ", ".join(sorted(self.seen))
            self.problems.append(f"{self.key(key)}: unknown key; known keys here: {known}")


def _section(root: _Table, key: str, build: Callable[[_Table], Any]) -> Any:
    table = root.table(key)
    value = build(table)
    table.finish()
    return value


def _model(t: _Table) -> ModelConfig:
    return ModelConfig(
        path=t.path("path", Path("."), required=True),
        delegate=t.text("delegate", "auto", choices=DELEGATES),
        threads=t.count_or_auto("threads", 64),
        labels=t.path("labels"),
        top_k=t.number("top_k", 5, 1, 1000),
        score_threshold=t.number("score_threshold", 0.25, 0.0, 1.0, integer=False),
        iou_threshold=t.number("iou_threshold", 0.45, 0.0, 1.0, integer=False),
        max_detections=t.number("max_detections", 100, 1, 10000),
    )


def _mqtt(t: _Table) -> MqttConfig:
    d = MqttConfig()
    cfg = MqttConfig(
        host=t.text("host", d.host),
        port=t.number("port", d.port, 1, 65535),
        protocol=t.text("protocol", d.protocol, choices=PROTOCOLS),
        prefix=t.text(
            "prefix", d.prefix, pattern=PREFIX, hint=" (topic levels of [A-Za-z0-9_.-] joined by /)"
        ),
        client_id=t.text("client_id", None, pattern=DEVICE_ID, hint=" (1-64 of [A-Za-z0-9_.-])"),
        keepalive=t.number("keepalive", d.keepalive, 5, 3600),
        tls_ca=t.path("tls_ca"),
        tls_cert=t.path("tls_cert"),
        tls_key=t.path("tls_key"),
        username=t.text("username", None),
        password=t.text("password", None),
        password_file=t.path("password_file"),
        session_expiry=t.number("session_expiry", d.session_expiry, 0, 2**32 - 1),
        reconnect_min=t.number("reconnect_min", d.reconnect_min, 0.05, 60, integer=False),
        reconnect_max=t.number("reconnect_max", d.reconnect_max, 0.1, 3600, integer=False),
    )
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        t.problems.append(
            f"{t.name}.tls_cert, {t.name}.tls_key: "
            "give both (client certificate and its key) or neither"
        )
    if (cfg.tls_cert is not None) and cfg.tls_ca is None:
        t.problems.append(f"{t.name}.tls_ca: required when a client certificate is given")
    if cfg.password is not None and cfg.password_file is not None:
        t.problems.append(f"{t.name}.password, {t.name}.password_file: give one, not both")
    if cfg.reconnect_min > cfg.reconnect_max:
        t.problems.append(
            f"{t.name}.reconnect_min: must not exceed reconnect_max ({cfg.reconnect_max:g})"
        )
    return cfg


def _requests(t: _Table) -> RequestsConfig:
    d = RequestsConfig()
    return RequestsConfig(
        max_payload_bytes=t.number(
            "max_payload_bytes", d.max_payload_bytes, 1024, 256 * 1024 * 1024
        ),
        max_pixels=t.number("max_pixels", d.max_pixels, 1, 400_000_000),
        queue_size=t.number("queue_size", d.queue_size, 1, 100_000),
        queue_wait=t.number("queue_wait", d.queue_wait, 0, 30, integer=False),
        watch_dir=t.path("watch_dir"),
        watch_interval=t.number("watch_interval", d.watch_interval, 0.05, 3600, integer=False),
        preprocess_workers=t.count_or_auto("preprocess_workers", 16),
        queue_bytes=t.number("queue_bytes", d.queue_bytes, 1024 * 1024, 16 * 1024**3),
    )


def _telemetry(t: _Table) -> TelemetryConfig:
    d = TelemetryConfig()
    return TelemetryConfig(
        interval=t.number("interval", d.interval, 0.2, 86400, integer=False),
        qos=t.number("qos", d.qos, 0, 1),
        latency_window=t.number("latency_window", d.latency_window, 1, 1_000_000),
    )


def _folders(t: _Table, key: str) -> tuple[Path, ...]:
    """A list of absolute folder paths (not resolved against the config's folder: these
    bound what a notice may make the device read)."""
    return tuple(Path(v) for v in t.strings(key, ABSOLUTE_PATH, "absolute folder paths"))


def _update(t: _Table) -> UpdateConfig:
    d = UpdateConfig()
    max_invoke = t.number("max_invoke_ms", 0.0, 0.0, 600_000, integer=False)
    cfg = UpdateConfig(
        trust=t.path("trust"),
        device_class=t.text("device_class", None, pattern=DEVICE_ID, hint=" ([A-Za-z0-9_.-])"),
        max_bundle_bytes=t.number("max_bundle_bytes", d.max_bundle_bytes, 1024, 16 * 1024**3),
        download_timeout=t.number("download_timeout", d.download_timeout, 1, 3600, integer=False),
        download_ca=t.path("download_ca"),
        file_roots=_folders(t, "file_roots"),
        validation_timeout=t.number(
            "validation_timeout", d.validation_timeout, 5, 3600, integer=False
        ),
        retry_interval=t.number("retry_interval", d.retry_interval, 0, 86400, integer=False),
        max_invoke_ms=max_invoke or None,
        keep=t.number("keep", d.keep, 1, 100),
        probation_requests=t.number("probation_requests", d.probation_requests, 1, 1_000_000),
        probation_seconds=t.number(
            "probation_seconds", d.probation_seconds, 1, 7 * 86400, integer=False
        ),
        health_max_error_rate=t.number(
            "health_max_error_rate", d.health_max_error_rate, 0, 1, integer=False
        ),
        health_max_latency_ms=t.number("health_max_latency_ms", 0.0, 0.0, 600_000, integer=False)
        or None,
        health_latency_factor=t.number(
            "health_latency_factor", d.health_latency_factor, 0, 1000, integer=False
        ),
        crash_loop_starts=t.number("crash_loop_starts", d.crash_loop_starts, 1, 100),
    )
    if 0 < cfg.health_latency_factor < 1:
        t.problems.append(
            f"{t.name}.health_latency_factor: {cfg.health_latency_factor:g} would require the new "
            "model to be faster than the old; give 0 (off) or 1..1000"
        )
    return cfg


def _http(t: _Table) -> HttpConfig:
    d = HttpConfig()
    cfg = HttpConfig(
        enabled=t.flag("enabled", d.enabled),
        listen=t.text("listen", d.listen, pattern=LISTEN, hint=" (host:port, IPv6 in brackets)"),
        token_file=t.path("token_file"),
        tls_cert=t.path("tls_cert"),
        tls_key=t.path("tls_key"),
        model_name=t.text("model_name", None),
        workers=t.number("workers", d.workers, 1, 64),
        backlog=t.number("backlog", d.backlog, 1, 1024),
        max_body_bytes=t.number("max_body_bytes", d.max_body_bytes, 1024, 256 * 1024 * 1024),
        request_timeout=t.number("request_timeout", d.request_timeout, 0.5, 300, integer=False),
        idle_timeout=t.number("idle_timeout", d.idle_timeout, 0.5, 300, integer=False),
        queue_wait=t.number("queue_wait", d.queue_wait, 0, 30, integer=False),
        answer_timeout=t.number("answer_timeout", d.answer_timeout, 1, 600, integer=False),
    )
    if not 1 <= cfg.port <= 65535 and LISTEN.match(cfg.listen):
        t.problems.append(f"{t.name}.listen: port {cfg.port} is out of range; allowed 1 to 65535")
    if cfg.enabled and not cfg.loopback and cfg.token_file is None:
        t.problems.append(
            f"{t.name}.token_file: required to listen on {cfg.listen!r} (not loopback); "
            "give a file holding the bearer token clients must send, or listen on 127.0.0.1"
        )
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        t.problems.append(
            f"{t.name}.tls_cert, {t.name}.tls_key: give both (certificate and its key) or neither"
        )
    return cfg


def _source(t: _Table) -> SourceConfig:
    d = SourceConfig("", "")
    cfg = SourceConfig(
        name=t.text("name", "", pattern=SOURCE_NAME, required=True, hint=" (1-32 of a-z 0-9 _ -)"),
        url=t.text(
            "url",
            "",
            pattern=SOURCE_URL,
            required=True,
            hint=" (rtsp://, rtsps://, http(s)://, file:///path, v4l2:///dev/videoN, picamera2:N)",
            shown=without_password,  # the message ends in the service's log
        ),
        fps=t.number("fps", d.fps, 0, 240, integer=False),
        publish=t.text("publish", d.publish, choices=PUBLISH_MODES),
        min_score=t.number("min_score", d.min_score, 0, 1, integer=False),
        heartbeat=t.number("heartbeat", d.heartbeat, 1, 86400, integer=False),
        snapshot=t.flag("snapshot", d.snapshot),
        loop=t.flag("loop", d.loop),
    )
    if cfg.loop and not cfg.url.startswith("file://"):
        t.problems.append(f"{t.name}.loop: only a file:// source can loop")
    return cfg


def _sources(root: _Table) -> tuple[SourceConfig, ...]:
    value = root._get("sources")
    if value is _MISSING:
        return ()
    if not isinstance(value, list) or len(value) > MAX_SOURCES:
        root.problems.append(
            f"sources: expected up to {MAX_SOURCES} [[sources]] tables, found {value!r:.80}"
        )
        return ()
    out: list[SourceConfig] = []
    for i, item in enumerate(value):
        table = _Table(item, f"sources[{i}]", root.problems)
        out.append(_source(table))
        table.finish()
    names = [s.name for s in out if s.name]
    for name in sorted({n for n in names if names.count(n) > 1}):
        root.problems.append(f"sources: the name {name!r} is used more than once")
    return tuple(out)


def parse_config(data: Mapping[str, Any]) -> Config:
    """Validate a parsed TOML document.

    Raises:
        ConfigError: one line per problem found.
    """
    problems: list[str] = []
    root = _Table(dict(data), "", problems)
    device_id = root.text(
        "device_id",
        "device",
        pattern=DEVICE_ID,
        required=True,
        hint=" (1-63 of a-z 0-9 and '-', not starting or ending with '-')",
    )
    if set(device_id) == {"."}:  # a topic level of dots only: edge/../infer
        problems.append(
            f"device_id: expected 1-63 of a-z 0-9 and '-', not starting or ending with '-'; "
            f"got {device_id!r}"
        )
    if device_id in RESERVED_IDS:
        problems.append(
            f"device_id: {device_id!r} is reserved (its topics are the fleet's "
            f"<prefix>/{device_id}/...); choose another"
        )
    state_dir = root.path("state_dir", Path("."), required=True)
    groups = root.strings("groups", DEVICE_ID)
    log_level = root.text("log_level", "info", choices=LOG_LEVELS)
    shutdown_timeout = root.number("shutdown_timeout", 10.0, 0.5, 600, integer=False)
    model = _section(root, "model", _model)
    mqtt = _section(root, "mqtt", _mqtt)
    requests = _section(root, "requests", _requests)
    telemetry = _section(root, "telemetry", _telemetry)
    outbox = _section(
        root,
        "outbox",
        lambda t: OutboxConfig(
            max_bytes=t.number("max_bytes", OutboxConfig().max_bytes, 64 * 1024, 64 * 1024**3),
            spill_after=t.number(
                "spill_after", OutboxConfig().spill_after, 0.05, 3600, integer=False
            ),
        ),
    )
    update = _section(root, "update", _update)
    prometheus = _section(
        root,
        "prometheus",
        lambda t: PrometheusConfig(
            enabled=t.flag("enabled", False), port=t.number("port", 9108, 1, 65535)
        ),
    )
    http = _section(root, "http", _http)
    monitoring = _section(
        root,
        "monitoring",
        lambda t: MonitoringConfig(
            enabled=t.flag("enabled", True),
            window=t.number("window", 500, 50, 100_000),
            psi_alert=t.number("psi_alert", 0.25, 0.01, 10.0, integer=False),
            alert_after=t.number("alert_after", 2, 1, 100),
            significance=t.number("significance", 0.001, 1e-9, 0.1, integer=False),
        ),
    )
    home_assistant = _section(
        root,
        "home_assistant",
        lambda t: HomeAssistantConfig(
            enabled=t.flag("enabled", False),
            discovery_prefix=t.text("discovery_prefix", "homeassistant", pattern=PREFIX),
        ),
    )
    sources = _sources(root)
    root.finish()
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(problems))
    return Config(
        device_id=device_id,
        state_dir=state_dir,
        model=model,
        mqtt=mqtt,
        requests=requests,
        telemetry=telemetry,
        outbox=outbox,
        update=update,
        prometheus=prometheus,
        http=http,
        monitoring=monitoring,
        home_assistant=home_assistant,
        groups=groups,
        log_level=log_level,
        shutdown_timeout=shutdown_timeout,
        sources=sources,
    )


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file; resolve relative paths against its folder and
    the MQTT password from ``EDGE_RUNTIME_MQTT_PASSWORD`` or ``mqtt.password_file``.

    Raises:
        ConfigError: unreadable file, bad TOML, or any invalid value.
    """
    env = os.environ if environ is None else environ
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    config = parse_config(data)
    return _resolve(config, Path(path).resolve().parent, env)


def _resolve(config: Config, base: Path, env: Mapping[str, str]) -> Config:
    from dataclasses import replace

    def rel(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p)

    mqtt = config.mqtt
    password = env.get(PASSWORD_ENV) or mqtt.password
    if password is None and mqtt.password_file is not None:
        file = rel(mqtt.password_file)
        try:
            password = Path(str(file)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"mqtt.password_file: cannot read {file}: {exc.strerror or exc}"
            ) from exc
    mqtt = replace(
        mqtt,
        tls_ca=rel(mqtt.tls_ca),
        tls_cert=rel(mqtt.tls_cert),
        tls_key=rel(mqtt.tls_key),
        password=password,
    )
    return replace(
        config,
        state_dir=rel(config.state_dir) or config.state_dir,
        model=replace(
            config.model,
            path=rel(config.model.path) or config.model.path,
            labels=rel(config.model.labels),
        ),
        mqtt=mqtt,
        requests=replace(config.requests, watch_dir=rel(config.requests.watch_dir)),
        update=replace(config.update, trust=rel(config.update.trust)),
        http=replace(
            config.http,
            token_file=rel(config.http.token_file),
            tls_cert=rel(config.http.tls_cert),
            tls_key=rel(config.http.tls_key),
        ),
    )
