"""Run ``edge-runtime run --config`` as a real process with a temp state dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tests" / "fixtures" / "models" / "digits_int8.tflite"


def command() -> list[str]:
    script = Path(sys.executable).parent / "edge-runtime"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "edge_runtime.cli.main"]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    path: Path, sections: dict[str, dict[str, object]], top: dict[str, object]
) -> Path:
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, table in sections.items():
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def daemon_config(
    folder: Path,
    port: int,
    *,
    device_id: str = "pi-test",
    model: Path = MODEL,
    mqtt: dict[str, object] | None = None,
    telemetry: float = 30.0,
    requests: dict[str, object] | None = None,
    **top: object,
) -> Path:
    """A config for the daemon under test; ``mqtt``/``requests`` entries override defaults;
    other keyword arguments are top-level keys, or whole sections when given a dict."""
    sections = {k: v for k, v in top.items() if isinstance(v, dict)}
    top = {k: v for k, v in top.items() if not isinstance(v, dict)}
    return write_config(
        folder / "config.toml",
        {
            "model": {"path": str(model), "threads": 1},
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "keepalive": 10,
                "reconnect_min": 0.2,
                "reconnect_max": 1.0,
                **(mqtt or {}),
            },
            "requests": {"queue_size": 64, **(requests or {})},
            "telemetry": {"interval": telemetry},
            **sections,
        },
        {
            "device_id": device_id,
            "state_dir": str(folder / "state"),
            "log_level": "info",
            "shutdown_timeout": 15.0,
            **top,
        },
    )


class DaemonProcess:
    """``edge-runtime run --config FILE`` in a subprocess; stderr goes to a log file.
    ``wrap``: a command that execs the daemon's (``taskset -c 0``), so the pid stays it."""

    def __init__(
        self, config: Path, *, env: dict[str, str] | None = None, wrap: Sequence[str] = ()
    ) -> None:
        self.config = config
        self.log_file = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = open(self.log_file, "wb")  # noqa: SIM115 - closed when the process ends
        self.proc = subprocess.Popen(
            [*wrap, *command(), "run", "--config", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()

    def wait_log(self, fragment: str, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if fragment in self.log():
                return True
            if not self.alive():
                return False
            time.sleep(0.1)
        return False

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
