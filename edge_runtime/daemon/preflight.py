"""``run --check``: what ``run`` needs, checked without starting anything.

The config parses (``load_config``) and, beyond that: a model ``run`` would serve loads
as an image model (``models/current``, the stored versions, ``model.path``: the same
choice as at start), ``state_dir`` is a writable folder or can be made one, the trust
file parses, the TLS files load. Each problem is one line naming the setting.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path

from edge_runtime.daemon.config import Config
from edge_runtime.daemon.startmodel import candidates, load_first
from edge_runtime.errors import ConfigError, EdgeError


def check_run(config: Config, load_model: Callable[[Path], object]) -> list[str]:
    """Notes for a config ``run`` can start with (a model fallback, say).

    ``load_model(path)`` loads and checks one model, raising EdgeError or OSError.

    Raises:
        ConfigError: one line per problem.
    """
    problems = state_dir_problems(config.state_dir)
    notes: list[str] = []
    try:
        _, chosen, fallback = load_first(
            candidates(config.state_dir, config.model.path), load_model
        )
    except (EdgeError, OSError) as exc:
        problems.append(f"model.path: {_text(exc)}")
    else:
        if fallback is not None:
            notes.append(
                f"{fallback.wanted} cannot be served ({fallback.why}); run serves {chosen.label}"
            )
    if config.update.trust is not None:
        problems += _trust_problems(config.update.trust)
    m = config.mqtt
    if m.tls_ca is not None:
        problems += _tls_problems("mqtt.tls_ca", m.tls_ca, m.tls_cert, m.tls_key)
    if config.update.download_ca is not None:
        problems += _tls_problems("update.download_ca", config.update.download_ca, None, None)
    from edge_runtime.serving.server import config_problems  # [http]: token, TLS files

    problems += config_problems(config.http)
    if problems:
        raise ConfigError("the config is valid, but run would fail:\n" + "\n".join(problems))
    return notes


def state_dir_problems(path: Path) -> list[str]:
    """``state_dir`` must be a folder this user can write, or be creatable as one."""
    if path.exists() and not path.is_dir():
        return [f"state_dir: {path} exists and is not a folder"]
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return [f"state_dir: {probe} is not a folder, so {path} cannot be made"]
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == path else f"cannot be made ({probe} is not writable)"
        return [f"state_dir: {path} {what} by this user"]
    return []


def _trust_problems(path: Path) -> list[str]:
    from edge_runtime.trust.trustfile import load_trust

    try:
        load_trust(path)
    except EdgeError as exc:
        return [f"update.trust: {exc}"]
    return []


def _tls_problems(key: str, ca: Path, cert: Path | None, private: Path | None) -> list[str]:
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError, ValueError) as exc:
        return [f"{key}: cannot load {ca}: {_text(exc)}"]
    if cert is None:
        return []
    try:
        context.load_cert_chain(str(cert), None if private is None else str(private))
    except (OSError, ssl.SSLError, ValueError) as exc:
        return [f"mqtt.tls_cert, mqtt.tls_key: cannot load {cert} with {private}: {_text(exc)}"]
    return []


def _text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)
