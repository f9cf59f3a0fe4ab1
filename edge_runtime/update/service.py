"""The update service: from a notice on the broker to a new active model, or a refusal.

A notice (JSON on ``<prefix>/<id>/model/update`` or ``<prefix>/groups/<g>/model/update``)
carries the signed manifest, its signatures, the bundle's size and sha256 and a ``url``.
One worker thread handles notices in turn:

    downloading -> verifying -> validating -> activating -> applied
                                                    any failure -> rejected (reason)

Each stage is an event on ``model/events``; ``model/state`` (retained) tells the active
and previous versions and the last result. Verification is the trust module's (signature
threshold, hashes, expiry, compatibility, version above any seen). Validation runs the
bundle's golden vectors in a child process. Activation stores the bundle beside the
others, switches ``models/current`` atomically and hands the new engine to the pipeline.
A notice for the version already active is ignored, so a retained notice that comes back
at every reconnect does nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.bundle.canonical import canonical_bytes
from edge_runtime.errors import BundleError, ConfigError, EdgeError, IntegrityError, UpdateError
from edge_runtime.telemetry.collect import utc_now
from edge_runtime.trust.check import check_bundle_file
from edge_runtime.trust.state import record_seen
from edge_runtime.update.fetch import fetch
from edge_runtime.update.store import ModelStore
from edge_runtime.update.validate import validate_in_child

log = logging.getLogger(__name__)

#: The queue item that asks for a rollback.
ROLLBACK = object()
#: Largest notice accepted (a manifest with its signatures is a few KB).
MAX_NOTICE_BYTES = 256 * 1024


class BadNotice(UpdateError):
    reason = "bad_notice"


@dataclass(frozen=True)
class Notice:
    name: str
    version: str
    manifest: dict[str, Any]
    url: str
    size: int
    sha256: str


def parse_notice(payload: bytes) -> Notice:
    """Raises BadNotice with what is wrong."""
    if len(payload) > MAX_NOTICE_BYTES:
        raise BadNotice(f"notice of {len(payload)} bytes; at most {MAX_NOTICE_BYTES}")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadNotice(f"notice is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadNotice("notice must be a JSON object")
    manifest, bundle, url = doc.get("manifest"), doc.get("bundle"), doc.get("url")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("version"), str):
        raise BadNotice("notice has no manifest with a version")
    if not isinstance(bundle, dict):
        raise BadNotice('notice has no "bundle": {"size", "sha256"}')
    size, sha256 = bundle.get("size"), bundle.get("sha256")
    if not isinstance(size, int) or size <= 0 or not isinstance(sha256, str) or len(sha256) != 64:
        raise BadNotice('notice "bundle" needs a positive "size" and a 64-hex "sha256"')
    if not isinstance(url, str) or not url:
        raise BadNotice('notice has no "url" (MQTT-only transfer is not supported here)')
    return Notice(str(manifest.get("name", "")), manifest["version"], manifest, url, size, sha256)


@dataclass(frozen=True)
class Identity:
    name: str
    version: str | None
    sha256: str


class UpdateService:
    """Handles notices on its own thread; ``swap`` loads a model path into the pipeline and
    returns its identity (raising EdgeError when the model cannot be loaded)."""

    def __init__(
        self,
        *,
        state_dir: Path,
        trust: Path | None,
        device_class: str | None,
        active: Identity,
        active_path: Path | None = None,
        swap: Callable[[Path], Identity],
        publish: Callable[[str, dict[str, Any], bool], None],
        max_bundle_bytes: int,
        download_timeout: float,
        validation_timeout: float,
        max_invoke_ms: float | None,
        keep: int,
    ) -> None:
        self.state_dir = state_dir
        self.trust = trust
        self.device_class = device_class
        self.active = active
        self.active_path = active_path
        self.previous: Identity | None = None
        self.last_update: dict[str, Any] | None = None
        self._swap = swap
        self._publish = publish
        self.max_bundle_bytes = max_bundle_bytes
        self.download_timeout = download_timeout
        self.validation_timeout = validation_timeout
        self.max_invoke_ms = max_invoke_ms
        self.store = ModelStore(state_dir, keep=keep)
        self.work = state_dir / "update"
        self._queue: queue.Queue[object] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, name="updates", daemon=True)
        self._handled: set[str] = set()

    def start(self) -> None:
        self._thread.start()
        self.publish_state()

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(5)

    def submit(self, payload: bytes) -> None:
        """Called from the MQTT thread: queue the notice, never block. An empty payload
        (a withdrawn retained notice) is no notice."""
        if payload:
            self._put(payload)

    def request_rollback(self) -> None:
        """An operator's ``model/rollback``: back to the previous version, in turn."""
        self._put(ROLLBACK)

    def _put(self, payload: object) -> None:
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            log.warning("update notice dropped: %d notices are waiting already", 8)

    # -- worker ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            try:
                if payload is ROLLBACK:
                    self.rollback("operator")
                elif isinstance(payload, bytes):
                    self.handle(payload)
            except Exception:  # noqa: BLE001 - an update must never stop the daemon
                log.exception("update failed unexpectedly")

    def handle(self, payload: bytes) -> None:
        try:
            notice = parse_notice(payload)
        except BadNotice as exc:
            self._reject(None, exc)
            return
        if notice.version == self.active.version and notice.name == self.active.name:
            return  # already running it (a retained notice seen again)
        if notice.sha256 in self._handled:
            return
        self._handled.add(notice.sha256)
        try:
            self._apply(notice)
        except UpdateError as exc:
            self._reject(notice.version, exc)
        except (BundleError, ConfigError) as exc:
            self._reject(
                notice.version,
                exc,
                reason="integrity" if isinstance(exc, BundleError) else "config",
            )
        except EdgeError as exc:
            self._reject(notice.version, exc, reason="activation")
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    def _apply(self, notice: Notice) -> None:
        if self.trust is None:
            raise UpdateError("this device has no trust file ([update] trust); updates are refused")
        self.work.mkdir(parents=True, exist_ok=True)
        incoming = self.work / "incoming.edgebundle"
        self._event(notice.version, "downloading", 0.0)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            share = done / total
            if share - last[0] >= 0.25 or done == total:
                last[0] = share
                self._event(notice.version, "downloading", round(share, 3))

        fetch(
            notice.url,
            incoming,
            size=notice.size,
            sha256=notice.sha256,
            max_bytes=self.max_bundle_bytes,
            timeout=self.download_timeout,
            progress=progress,
        )
        self._event(notice.version, "verifying", None)
        result = check_bundle_file(
            incoming,
            self.trust,
            self.state_dir,
            self.device_class,
            installed_version=self.active.version,
        )
        if canonical_bytes(notice.manifest) != result.bundle.manifest_bytes:
            raise IntegrityError("the bundle's manifest is not the one the notice announced")
        self._event(notice.version, "validating", None)
        validate_in_child(
            incoming, timeout=self.validation_timeout, max_invoke_ms=self.max_invoke_ms
        )
        self._event(notice.version, "activating", None)
        manifest = result.bundle.manifest
        self._adopt_running_bundle()
        stored = self.store.add(incoming, manifest.name, str(manifest.version))
        before = self.store.versions()
        self.store.activate(stored)
        try:
            identity = self._swap(self.store.current)
        except EdgeError:
            if before.active is not None:
                self.store.rollback()
            else:  # nothing stored before: after a restart, the config's model again
                self.store.deactivate()
            raise
        record_seen(self.state_dir, manifest.name, str(manifest.version))
        self.previous, self.active = self.active, identity
        self._finish(notice.version, "applied", None, None)

    def _adopt_running_bundle(self) -> None:
        """Before the first update, store the bundle the config named, so that there is a
        version to roll back to. (A bare ``.tflite`` carries no version and is not kept.)"""
        path = self.active_path
        if self.store.versions().active is not None or path is None or self.active.version is None:
            return
        if path.suffix == ".edgebundle" and path.is_file():
            self.store.activate(self.store.add(path, self.active.name, self.active.version))

    def rollback(self, reason: str) -> None:
        """Make the previous stored version active again and report ``rolled_back``."""
        failed = self.active.version
        try:
            self.store.rollback()
            identity = self._swap(self.store.current)
        except EdgeError as exc:
            self._reject(failed, exc, reason="rollback_failed")
            return
        self.previous, self.active = self.active, identity
        self._finish(failed, "rolled_back", reason, f"now serving {identity.version}")

    # -- reporting ---------------------------------------------------------------------
    def _event(
        self,
        version: str | None,
        stage: str,
        progress: float | None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        doc: dict[str, Any] = {
            "version": version,
            "stage": stage,
            "progress": progress,
            "reason": reason,
        }
        if detail:
            doc["detail"] = detail
        self._publish("model/events", doc, False)

    def _reject(self, version: str | None, exc: EdgeError, reason: str | None = None) -> None:
        code = reason or getattr(exc, "reason", "update_failed")
        log.warning("update %s rejected (%s): %s", version or "?", code, exc)
        self._finish(version, "rejected", code, str(exc))

    def _finish(
        self, version: str | None, result: str, reason: str | None, detail: str | None
    ) -> None:
        self._event(version, result, 1.0 if result == "applied" else None, reason, detail)
        self.last_update = {"version": version, "result": result, "reason": reason, "ts": utc_now()}
        self.publish_state()

    def publish_state(self) -> None:
        def ident(i: Identity | None) -> dict[str, Any] | None:
            return None if i is None else {"name": i.name, "version": i.version, "sha256": i.sha256}

        self._publish(
            "model/state",
            {
                "active": ident(self.active),
                "previous": ident(self.previous),
                "last_update": self.last_update,
            },
            True,
        )


def build_notice(bundle: Path, url: str) -> dict[str, Any]:
    """The notice that announces ``bundle`` (to be served at ``url``)."""
    import hashlib

    from edge_runtime.bundle.reader import scan_bundle
    from edge_runtime.bundle.signatures import signatures_json

    meta = scan_bundle(bundle)
    data = Path(bundle).read_bytes()
    return {
        "manifest": json.loads(meta.manifest_bytes),
        "signatures": signatures_json(meta.signatures),
        "bundle": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "url": url,
    }
