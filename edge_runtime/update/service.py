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
An applied model is then on probation (see ``health``): it is rolled back by itself
(``rolled_back``, reason ``health`` or ``crash_loop``) when it fails, and reported
``healthy`` when it passes.
A notice for the version already active is ignored, so a retained notice that comes back
at every reconnect does nothing; so is a notice for a bundle refused for good or rolled
back before (remembered across restarts in ``refused-updates.json``). A notice that
failed for a passing reason (a download cut short, a device too busy to validate) is tried
again by itself after ``retry_interval`` seconds, doubling up to an hour, until it is
applied, fails for good or a newer notice takes its place. What is remembered of notices
is ``memory``'s; the published state is saved by ``modelstate``; an operator's rollback
is a signed order (``rollback``, ``trust.orders``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.bundle.canonical import canonical_bytes
from edge_runtime.bundle.manifest import NAME_RE
from edge_runtime.bundle.semver import SemVer, as_semver
from edge_runtime.daemon.supervisor import Heartbeats, unsupervised
from edge_runtime.errors import (
    BundleError,
    ConfigError,
    EdgeError,
    IntegrityError,
    RollbackError,
    SizeLimitError,
    UpdateError,
)
from edge_runtime.telemetry.collect import utc_after, utc_now
from edge_runtime.transport.backoff import backoff_delay
from edge_runtime.trust.state import highest_seen_for, record_seen
from edge_runtime.update.chunks import ChunkAssembly, ChunkPlan, chunk_topic, parse_plan
from edge_runtime.update.download_errors import DownloadTimeout
from edge_runtime.update.fetch import fetch
from edge_runtime.update.health import (
    HealthGate,
    HealthPolicy,
    Probation,
    clear_probation,
    load_probation,
    note_start,
    save_probation,
)
from edge_runtime.update.memory import FINAL_REASONS, RefusedBundles, SessionMemory
from edge_runtime.update.modelstate import (
    SavedState,
    Source,
    load_model_state,
    save_model_state,
    source_from,
)
from edge_runtime.update.store import ModelStore, private_folder
from edge_runtime.update.validate import validate_in_child

log = logging.getLogger(__name__)

#: Largest notice accepted (a manifest with its signatures is a few KB).
MAX_NOTICE_BYTES = 256 * 1024
#: Reasons worth another try, after ``retry_interval`` or when the notice comes again (a
#: reconnect, a restart); what was received so far is kept and the transfer resumes.
TRANSIENT_REASONS = frozenset({"timeout", "truncated", "download", "busy"})
#: Longest wait between automatic retries (unless ``retry_interval`` is longer).
RETRY_CAP = 3600.0
#: How often the update thread looks at the health gate while a model is on probation.
PROBATION_TICK = 0.5
#: Longest the update worker may spend on one notice (a slow download of a large bundle
#: and its validation) before it counts as stuck.
UPDATE_BOUND = 3600.0


class BadNotice(UpdateError):
    """A notice that cannot be read; ``version`` is its manifest's, when it has one."""

    reason = "bad_notice"

    def __init__(self, message: str, version: str | None = None) -> None:
        super().__init__(message)
        self.version = version


@dataclass(frozen=True)
class Notice:
    name: str
    version: str
    manifest: dict[str, Any]
    url: str | None  # None: the bundle comes in chunks over MQTT
    size: int
    sha256: str
    chunks: ChunkPlan | None = None


@dataclass(frozen=True)
class RollbackRequest:
    """A ``model/rollback`` message waiting for the update thread."""

    payload: bytes


@dataclass(frozen=True)
class Retry:
    """A notice that failed for a passing reason, to be handled again at ``due``
    (``time.monotonic``); ``attempt`` counts the retries scheduled for it so far."""

    sha256: str
    payload: bytes
    attempt: int
    due: float


def next_retry(
    previous: Retry | None, sha256: str, payload: bytes, interval: float, now: float
) -> Retry:
    """The retry after a passing failure: ``interval`` seconds, doubling with each failed
    retry of the same bundle up to ``RETRY_CAP`` (with jitter, so that a fleet is not back
    in lockstep); a different bundle starts over."""
    attempt = previous.attempt + 1 if previous is not None and previous.sha256 == sha256 else 0
    delay = backoff_delay(attempt, minimum=interval, maximum=max(interval, RETRY_CAP))
    return Retry(sha256, payload, attempt, now + delay)


def notice_key(payload: bytes) -> str:
    """What a notice is remembered by: the sha256 of its bytes."""
    return hashlib.sha256(payload).hexdigest()


def parse_notice(payload: bytes) -> Notice:
    """Raises BadNotice with what is wrong."""
    if len(payload) > MAX_NOTICE_BYTES:
        raise BadNotice(f"notice of {len(payload)} bytes; at most {MAX_NOTICE_BYTES}")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nested past the stack
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
    name, version = str(manifest.get("name", "")), manifest["version"]
    if "chunks" in doc:
        try:
            plan = parse_plan(doc["chunks"], size)
        except UpdateError as exc:
            raise BadNotice(str(exc), version) from exc
        return Notice(name, version, manifest, None, size, sha256.lower(), plan)
    if not isinstance(url, str) or not url:
        raise BadNotice('notice has neither a "url" nor "chunks" (the bundle over MQTT)')
    return Notice(name, version, manifest, url, size, sha256.lower())


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
        health: HealthPolicy | None = None,
        crash_loop: Probation | None = None,
        heartbeats: Heartbeats = unsupervised,
        prefix: str = "edge",
        subscribe: Callable[[str], None] | None = None,
        unsubscribe: Callable[[str], None] | None = None,
        connected: Callable[[], bool] = lambda: True,
        download_ca: Path | None = None,
        retry_interval: float = 300.0,
        file_roots: tuple[Path, ...] = (),
        device_id: str = "",
    ) -> None:
        """``crash_loop``: the record of a model the start-up rolled back (see
        ``recover_crash_loop``), reported once the service runs. ``retry_interval``: the
        first wait before a notice that failed for a passing reason is handled again (0:
        only when the notice comes again)."""
        self.state_dir = state_dir
        self.trust = trust
        self.device_class = device_class
        self.active = active
        self.active_path = active_path
        self.previous: Identity | None = None
        self.last_update: dict[str, Any] | None = None
        self.source: Source | None = None  # where the active version came from
        self.previous_source: Source | None = None
        self._swap = swap
        self._publish = publish
        self.max_bundle_bytes = max_bundle_bytes
        self.download_timeout = download_timeout
        self.validation_timeout = validation_timeout
        self.max_invoke_ms = max_invoke_ms
        self.store = ModelStore(state_dir, keep=keep)
        self.work = state_dir / "update"
        self.downloads = state_dir / "downloads"
        self.download_ca = download_ca
        self.file_roots = file_roots
        self.device_id = device_id  # what a rollback order must name
        self.prefix = prefix
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._connected = connected
        self._chunks: queue.Queue[tuple[int, bytes]] = queue.Queue(maxsize=8)
        self._receiving: str | None = None  # chunk topic folder being received
        self._queue: queue.Queue[object] = queue.Queue(maxsize=8)
        self._beat = heartbeats("updates", UPDATE_BOUND)
        self._thread = threading.Thread(target=self._run, name="updates", daemon=True)
        # model/state is published from the MQTT thread (each connect) and from the
        # start-up and update threads: one at a time, so the broker keeps the latest
        self._state_lock = threading.Lock()
        self._answered = SessionMemory()  # notices this process answered
        self.retry_interval = retry_interval
        self.retry: Retry | None = None  # the notice to handle again, if any
        self.gate = HealthGate(health or HealthPolicy())
        self.refused = RefusedBundles(state_dir / "refused-updates.json")
        self._crash_loop = crash_loop
        self._saved: SavedState | None = None
        self._restore(load_model_state(state_dir))
        if crash_loop is not None:  # before any notice is looked at
            self.refused.add(crash_loop.sha256, "crash_loop")
        record = load_probation(state_dir)
        if record is not None and record.version == active.version:
            self.gate.begin(record.version)  # probation goes on after a restart

    def _restore(self, saved: SavedState | None) -> None:
        """Take over the state saved by the previous process (see ``modelstate``)."""
        if saved is None:
            return
        last = saved.published.get("last_update")
        self.last_update = last if isinstance(last, dict) else None
        sources = saved.sources
        if saved.published.get("active") == _ident(self.active):
            previous = saved.published.get("previous")
            if isinstance(previous, dict):
                self.previous = Identity(
                    str(previous.get("name")), previous.get("version"), str(previous.get("sha256"))
                )
            self.source = source_from(sources.get("active"))
            self.previous_source = source_from(sources.get("previous"))
        elif self._crash_loop is not None:  # the start-up rolled the saved active back
            crashed = source_from(sources.get("active"))
            if crashed is not None and crashed.sha256 == self._crash_loop.sha256:
                self.refused.add_notice(crashed.notice, "crash_loop")
            self.source = source_from(sources.get("previous"))

    def note_start_fallback(self) -> None:
        """Before the service starts: ``models/current`` could not be served and the
        daemon chose another model, which ``model/state`` reports from its first
        publication on (``rolled_back`` for the reason ``unusable``)."""
        self.last_update = {
            "version": None,
            "result": "rolled_back",
            "reason": "unusable",
            "ts": utc_now(),
        }

    def start(self) -> None:
        if self._crash_loop is not None:
            self._report_crash_loop(self._crash_loop)
        else:
            self.publish_state()
        self._thread.start()

    def chunk(self, topic: str, payload: bytes) -> None:
        """Called from the MQTT thread with a message on ``<prefix>/bundles/...``: hand
        a chunk of the bundle being received to the update thread (waiting briefly for
        room, which slows the broker down instead of dropping it)."""
        folder, _, index = topic.rpartition("/")
        if folder != self._receiving or not index.isdigit() or not payload:
            return  # another bundle's chunk, or a cleared retained chunk
        with contextlib.suppress(queue.Full):
            self._chunks.put((int(index), payload), timeout=2.0)

    def record(self, version: str | None, ok: bool, service_ms: float | None) -> None:
        """The pipeline's report of one request the model served (or failed)."""
        self.gate.record(version, ok, service_ms)

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(5)

    def submit(self, payload: bytes) -> None:
        """Called from the MQTT thread: queue the notice, never block. An empty payload
        (a withdrawn retained notice) is no notice."""
        if payload:
            self._put(payload)

    def request_rollback(self, payload: bytes) -> None:
        """Called from the MQTT thread with a ``model/rollback`` message: a signed order,
        checked and carried out in turn (see ``order``). An empty payload (a cleared
        retained message) is no order."""
        if payload:
            self._put(RollbackRequest(payload))

    def _put(self, payload: object) -> None:
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            log.warning("update notice dropped: %d notices are waiting already", 8)

    # -- worker ------------------------------------------------------------------------
    def _run(self) -> None:
        self._beat.attach()
        while True:
            self._beat.idle()
            try:
                payload = self._queue.get(timeout=self._wait())
            except queue.Empty:
                payload = ()
            self._beat.beat()
            if payload is None:
                return
            try:
                if isinstance(payload, RollbackRequest):
                    self.order(payload.payload)
                elif isinstance(payload, bytes):
                    self.handle(payload)
                retry = self.retry
                if retry is not None and time.monotonic() >= retry.due:
                    log.info("trying a failed update again (retry %d)", retry.attempt + 1)
                    self.handle(retry.payload)
                self.check_health()
            except Exception:  # noqa: BLE001 - an update must never stop the daemon
                log.exception("update failed unexpectedly")

    def _wait(self) -> float | None:
        """How long the worker may sleep: until the next probation tick or retry."""
        waits = [PROBATION_TICK] if self.gate.active else []
        if self.retry is not None:
            waits.append(max(0.0, self.retry.due - time.monotonic()))
        return min(waits) if waits else None

    def check_health(self) -> None:
        """End probation when the gate has a verdict: ``healthy``, or roll back."""
        verdict = self.gate.verdict()
        if verdict is None:
            return
        self.gate.end()
        version = self.active.version
        if verdict.passed:
            clear_probation(self.state_dir)
            log.warning("model %s passed probation: %s", version, verdict.detail)
            if self.last_update is not None and self.last_update.get("version") == version:
                self.last_update["health"] = "passed"
            self.publish_state()
            self._event(version, "healthy", 1.0, None, verdict.detail)
            return
        log.error("model %s failed the health gate: %s", version, verdict.detail)
        self.rollback("health", verdict.detail)

    def handle(self, payload: bytes) -> None:
        """Answer one notice: exactly one outcome event (``applied`` or ``rejected``) per
        distinct notice, whatever goes wrong; a notice answered before is not handled
        again (see ``memory``), except after a passing failure."""
        key = notice_key(payload)
        if self.refused.has_notice(key):
            log.info("update notice %s ignored: it was refused or rolled back before", key[:16])
            return
        if key in self._answered:
            log.info("update notice %s ignored: answered before", key[:16])
            return
        self._answered.add(key)
        version: str | None = None
        try:
            notice = parse_notice(payload)
            version = notice.version
            if notice.version == self.active.version and notice.name == self.active.name:
                return  # already running it (a retained notice seen again)
            refused = self.refused.reason(notice.sha256)
            if refused is not None:  # another notice for a bundle refused for good
                self.refused.add_notice(key, refused)
                self._event(
                    notice.version,
                    "rejected",
                    None,
                    refused,
                    f"this bundle was refused before ({refused}); it is not fetched again",
                )
                return
            self._check_version(notice)
            self._attempt(notice, payload, key)
        except BadNotice as exc:
            self._reject(exc.version, exc)
        except RollbackError as exc:  # decided on the notice: nothing fetched, state kept
            self.refused.add_notice(key, exc.reason)
            log.warning("update %s rejected (%s): %s", version, exc.reason, exc)
            self._event(version, "rejected", None, exc.reason, f"{exc}; not fetched")
        except Exception as exc:  # noqa: BLE001 - every notice gets its outcome
            log.exception("update %s failed unexpectedly", version or "?")
            self._reject(
                version,
                UpdateError(f"the update failed unexpectedly ({type(exc).__name__})"),
                reason="internal_error",
            )

    def _check_version(self, notice: Notice) -> None:
        """Refuse before any download a notice whose version could never be installed:
        not above the installed one or the highest seen (what verification would say
        after the download; the notice's manifest is checked against the bundle's then).

        Raises:
            BadNotice: the version is not semver.
            RollbackError: not above.
        """
        try:
            announced = SemVer.parse(notice.version)
        except BundleError as exc:
            raise BadNotice(f"notice version: {exc}", notice.version) from exc
        if not NAME_RE.match(notice.name):
            raise BadNotice(f"notice model name {notice.name[:80]!r} is not valid", notice.version)
        try:
            seen = highest_seen_for(self.state_dir, notice.name)
        except RollbackError:
            return  # an unreadable record: verification refuses with the full reason
        known = [v for v in (self.active.version, seen) if v is not None]
        floor = max(as_semver(v) for v in known) if known else None
        if floor is not None and announced <= floor:
            raise RollbackError(
                f"the notice's version {announced} is not above the installed or highest "
                f"seen {floor}; refused (a new update needs a higher version)"
            )

    def _attempt(self, notice: Notice, payload: bytes, key: str) -> None:
        """Download, verify, validate and activate; report the outcome."""
        retry, self.retry = self.retry, None  # this notice's outcome decides what comes next
        if retry is not None and retry.sha256 != notice.sha256:
            log.info("a newer notice takes the place of the update waiting to be retried")
            retry = None
        keep = False
        try:
            self._apply(notice, key)
        except UpdateError as exc:
            keep = exc.reason in TRANSIENT_REASONS
            detail = next_try = None
            if keep:  # tried again later or when the notice comes again; transfers resume
                self._answered.discard(key)
                detail = f"{exc}; tried again when its notice comes back"
                if self.retry_interval > 0:
                    self.retry = next_retry(
                        retry, notice.sha256, payload, self.retry_interval, time.monotonic()
                    )
                    wait = self.retry.due - time.monotonic()
                    detail, next_try = f"{exc}; tried again in {wait:.0f} s", utc_after(wait)
            # a final reason comes from the bundle's own bytes (their sha256 matched)
            final = exc.reason in FINAL_REASONS
            self._reject(
                notice.version,
                exc,
                detail=detail,
                next_try=next_try,
                remember=(notice.sha256, key) if final else None,
            )
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
            if not keep:
                for leftover in self.downloads.glob(f"{notice.sha256}.*"):
                    leftover.unlink(missing_ok=True)

    def _apply(self, notice: Notice, key: str) -> None:
        if self.trust is None:
            raise UpdateError("this device has no trust file ([update] trust); updates are refused")
        private_folder(self.work)
        private_folder(self.downloads)
        for stale in self.downloads.iterdir():  # partial transfers of other bundles
            if not stale.name.startswith(notice.sha256):
                stale.unlink(missing_ok=True)
        self._event(notice.version, "downloading", 0.0)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            share = done / total
            if share - last[0] >= 0.25 or done == total:
                last[0] = share
                self._event(notice.version, "downloading", round(share, 3))

        if notice.chunks is not None:
            incoming = self._receive_chunks(notice, notice.chunks, progress)
        else:
            assert notice.url is not None
            incoming = fetch(
                notice.url,
                self.downloads / f"{notice.sha256}.part",
                size=notice.size,
                sha256=notice.sha256,
                max_bytes=self.max_bundle_bytes,
                timeout=self.download_timeout,
                progress=progress,
                ca_file=self.download_ca,
                file_roots=self.file_roots,
            )
        self._event(notice.version, "verifying", None)
        # imported here: the signature library (about 9 MiB resident) is loaded once a
        # device gets its first update, not by every daemon that only serves requests
        from edge_runtime.trust.check import check_bundle_file

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
        self.gate.end()  # a model still on probation is replaced: its probation ends
        # written before the switch: a crash from here on counts against the new model
        save_probation(
            self.state_dir,
            Probation(stored.name, manifest.name, str(manifest.version), notice.sha256, 0, True),
        )
        self.store.activate(stored)
        try:
            identity = self._swap(self.store.current)
        except EdgeError:
            clear_probation(self.state_dir)
            if before.active is not None:
                self.store.rollback()
            else:  # nothing stored before: after a restart, the config's model again
                self.store.deactivate()
            raise
        record_seen(self.state_dir, manifest.name, str(manifest.version))
        self.previous, self.active = self.active, identity
        self.previous_source, self.source = self.source, Source(notice.sha256, key)
        self.gate.begin(identity.version)
        self._finish(notice.version, "applied", None, None, health="probation")

    def _receive_chunks(
        self, notice: Notice, plan: ChunkPlan, progress: Callable[[int, int], None]
    ) -> Path:
        """Collect the bundle's retained chunks from the broker into the downloads folder.

        Waiting stops after ``download_timeout`` seconds without a new chunk while
        connected (time offline does not count); halfway through a silence the chunk
        topics are subscribed again, so the broker sends the retained chunks again.
        """
        if notice.size > self.max_bundle_bytes:
            raise SizeLimitError(
                f"the bundle is {notice.size} bytes; this device takes at most "
                f"{self.max_bundle_bytes}"
            )
        if self._subscribe is None or self._unsubscribe is None:
            raise UpdateError("this daemon cannot receive bundles over MQTT")
        assembly = ChunkAssembly(self.downloads, notice.sha256, notice.size, plan)
        if assembly.kept:
            log.info("resuming: %d of %d chunks kept from before", assembly.kept, plan.count)
            progress(assembly.received_bytes, notice.size)
        folder = chunk_topic(self.prefix, notice.sha256)
        self._receiving = folder
        while not self._chunks.empty():  # leftovers of an earlier transfer
            self._chunks.get_nowait()
        self._subscribe(folder + "/+")
        try:
            silent, resubscribed = 0.0, False
            while not assembly.complete:
                try:
                    index, data = self._chunks.get(timeout=0.25)
                except queue.Empty:
                    assembly.flush()
                    if not self._connected():
                        silent = 0.0  # offline: the broker will send them again
                        continue
                    silent += 0.25
                    if silent >= self.download_timeout / 2 and not resubscribed:
                        resubscribed = True
                        self._unsubscribe(folder + "/+")
                        self._subscribe(folder + "/+")
                    if silent >= self.download_timeout:
                        assembly.flush()
                        raise DownloadTimeout(
                            f"no chunk of the bundle over MQTT for {self.download_timeout:g} s "
                            f"({len(assembly.have)} of {plan.count} received, "
                            f"{assembly.rejected} damaged)"
                        ) from None
                    continue
                if assembly.add(index, data):
                    silent, resubscribed = 0.0, False
                    progress(assembly.received_bytes, notice.size)
        finally:
            self._receiving = None
            self._unsubscribe(folder + "/+")
        return assembly.finish()

    def _adopt_running_bundle(self) -> None:
        """Before the first update, store the bundle the config named, so that there is a
        version to roll back to. (A bare ``.tflite`` carries no version and is not kept.)"""
        path = self.active_path
        if self.store.versions().active is not None or path is None or self.active.version is None:
            return
        if path.suffix == ".edgebundle" and path.is_file():
            self.store.activate(self.store.add(path, self.active.name, self.active.version))

    def rollback(self, reason: str, why: str | None = None) -> None:
        """Make the previous stored version active again and report ``rolled_back``.
        The bundle left is not taken again from its retained notice."""
        failed = self.active.version
        record = load_probation(self.state_dir)
        self.gate.end()
        try:
            self.store.rollback()
            identity = self._swap(self.store.current)
        except EdgeError as exc:
            self._reject(failed, exc, reason="rollback_failed")
            return
        finally:
            clear_probation(self.state_dir)
        if record is not None and record.version == failed:
            self.refused.add(record.sha256, "rolled_back")
        if self.source is not None:  # its notice, coming back, is not taken again
            self.refused.add(self.source.sha256, "rolled_back")
            self.refused.add_notice(self.source.notice, "rolled_back")
        self.previous, self.active = self.active, identity
        self.previous_source, self.source = self.source, self.previous_source
        detail = f"now serving {identity.version}" + (f"; {why}" if why else "")
        self._finish(failed, "rolled_back", reason, detail)

    def order(self, payload: bytes) -> None:
        """Carry out a signed rollback order, or refuse it with an event (the state and
        ``last_update`` stay as they are: nothing happened)."""
        from edge_runtime.trust.orders import OrderRefused
        from edge_runtime.update.rollback import UsedNonces, accept_order

        previous = self.previous.version if self.previous is not None else None
        try:
            order = accept_order(
                payload,
                trust=self.trust,
                device_id=self.device_id,
                previous=previous,
                nonces=UsedNonces(self.state_dir),
            )
        except OrderRefused as exc:
            log.warning("rollback order refused (%s): %s", exc.reason, exc)
            self._event(self.active.version, "rejected", None, exc.reason, str(exc))
            return
        log.warning("carrying out the rollback order %s", order.nonce[:8])
        self.rollback("operator", f"signed order {order.nonce[:8]}")

    def _report_crash_loop(self, record: Probation) -> None:
        self.previous = Identity(record.name, record.version, "")
        self._finish(
            record.version,
            "rolled_back",
            "crash_loop",
            f"{record.crashes} starts on {record.version} ended without a clean stop; "
            f"now serving {self.active.version}",
        )

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

    def _reject(
        self,
        version: str | None,
        exc: EdgeError,
        reason: str | None = None,
        detail: str | None = None,
        next_try: str | None = None,
        remember: tuple[str, str] | None = None,
    ) -> None:
        """Report a refused update; ``next_try``: when it is tried again by itself (UTC);
        ``remember``: the bundle sha256 and notice key of a final refusal, kept."""
        code = str(reason or getattr(exc, "reason", "update_failed"))
        detail = detail or str(exc)
        log.warning("update %s rejected (%s): %s", version or "?", code, detail)
        if remember is not None:
            self.refused.add(remember[0], code)
            self.refused.add_notice(remember[1], code)
        self._finish(version, "rejected", code, detail, next_try=next_try)

    def _finish(
        self,
        version: str | None,
        result: str,
        reason: str | None,
        detail: str | None,
        health: str | None = None,
        next_try: str | None = None,
    ) -> None:
        self.last_update = {"version": version, "result": result, "reason": reason, "ts": utc_now()}
        if health is not None:
            self.last_update["health"] = health
        if next_try is not None:
            self.last_update["next_try"] = next_try
        # the state first: whoever sees the final event finds the state that goes with it
        self.publish_state()
        self._event(version, result, 1.0 if result == "applied" else None, reason, detail)

    def publish_state(self) -> None:
        """Publish ``model/state`` (retained), saving it first when it changed. Calls from
        several threads are taken one at a time, each reading the state when its turn
        comes: a connect's republication read before a start-up rollback and sent after
        it left the broker holding the state from before the rollback."""
        with self._state_lock:
            published = {
                "active": _ident(self.active),
                "previous": _ident(self.previous),
                "last_update": self.last_update,
            }
            sources = {
                name: source.to_json()
                for name, source in (("active", self.source), ("previous", self.previous_source))
                if source is not None
            }
            state = SavedState(published, sources)
            if state != self._saved:
                save_model_state(self.state_dir, state)
                self._saved = SavedState(json.loads(json.dumps(published)), sources)
            self._publish("model/state", published, True)


def _ident(i: Identity | None) -> dict[str, Any] | None:
    return None if i is None else {"name": i.name, "version": i.version, "sha256": i.sha256}


def recover_crash_loop(state_dir: Path, policy: HealthPolicy, keep: int = 2) -> Probation | None:
    """At process start, before the model is loaded: when the model on probation has
    ended ``policy.crash_starts`` processes without a clean stop, make the previous
    version active again. Returns the record of the model left (reported later), or None."""
    store = ModelStore(state_dir, keep=keep)
    record = note_start(state_dir, store.versions().active)
    if record is None or record.crashes < policy.crash_starts:
        return None
    log.error(
        "model %s %s: %d starts ended without a clean stop; rolling back",
        record.name,
        record.version,
        record.crashes,
    )
    try:
        store.rollback()
    except UpdateError as exc:
        log.error("cannot roll back: %s", exc)
        return None
    finally:
        clear_probation(state_dir)
    return record


def build_notice(
    bundle: Path, url: str | None, *, chunks: ChunkPlan | None = None
) -> dict[str, Any]:
    """The notice that announces ``bundle``, served at ``url`` or sent in ``chunks``."""
    import hashlib

    from edge_runtime.bundle.reader import scan_bundle
    from edge_runtime.bundle.signatures import signatures_json

    meta = scan_bundle(bundle)
    data = Path(bundle).read_bytes()
    return {
        "manifest": json.loads(meta.manifest_bytes),
        "signatures": signatures_json(meta.signatures),
        "bundle": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        **({"url": url} if url is not None else {}),
        **({"chunks": chunks.to_json()} if chunks is not None else {}),
    }
