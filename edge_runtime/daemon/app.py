"""Assembly of the daemon: engine, outbox, transport, pipeline, telemetry, signals.

SIGTERM/SIGINT: stop taking requests, finish the queued ones, flush the outbox for up to
``shutdown_timeout`` seconds, publish ``offline``, exit 0. Requests that arrive while
stopping are not acknowledged, so the broker delivers them again to the next run.
SIGHUP: reload the config; the log level, telemetry interval/QoS and latency window
change live, anything else is reported as needing a restart.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import threading
import time
from collections import OrderedDict
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edge_runtime.daemon.calibrate import calibrate
from edge_runtime.daemon.config import Config, legacy_device_id, load_config
from edge_runtime.daemon.cores import usable_cores
from edge_runtime.daemon.heap import limit_arenas
from edge_runtime.daemon.intake import Intake
from edge_runtime.daemon.liveness import LivenessFile, liveness_path
from edge_runtime.daemon.notify import Notifier
from edge_runtime.daemon.outbox import ANSWER, TELEMETRY, Outbox, Outgoing
from edge_runtime.daemon.pipeline import Answered, Job, Pipeline
from edge_runtime.daemon.poison import Ledger
from edge_runtime.daemon.publisher import Publisher
from edge_runtime.daemon.requests import (
    RequestError,
    correlation_id,
    parse_request,
    payload_id,
)
from edge_runtime.daemon.retune import LiveRetune
from edge_runtime.daemon.startmodel import Fallback, candidates, load_first
from edge_runtime.daemon.supervisor import Fault, Health, Supervisor
from edge_runtime.daemon.topics import Topics
from edge_runtime.daemon.tuning import Tuning, default_tuning
from edge_runtime.daemon.watch import WatchFolder
from edge_runtime.errors import ConfigError, EdgeError
from edge_runtime.serving.reply import direct_answers
from edge_runtime.serving.server import HttpServer, build_server
from edge_runtime.sources.manager import DaemonEmitter, Sources, route_frames
from edge_runtime.telemetry.collect import Collector, utc_now
from edge_runtime.telemetry.homeassistant import discovery_messages
from edge_runtime.telemetry.monitor import DriftMonitor
from edge_runtime.telemetry.prometheus import MetricsServer, render
from edge_runtime.telemetry.stats import Tally
from edge_runtime.transport.mqtt import Message, MqttOptions, MqttTransport
from edge_runtime.update.health import Probation, note_clean_stop
from edge_runtime.update.service import Identity, UpdateService, recover_crash_loop

if TYPE_CHECKING:
    from edge_runtime.inference.engine import Engine
    from edge_runtime.inference.source import ModelSource

log = logging.getLogger(__name__)

#: Settings SIGHUP can apply without a restart.
LIVE_KEYS = ("log_level", "telemetry")
#: Most unacknowledged requests the broker may push at once (MQTT 5 receive maximum):
#: enough to keep the pipeline busy across a network round trip, few enough that a burst
#: of large images does not inflate memory.
RECEIVE_MAXIMUM = 8
#: Seconds a model swap waits for an inference to overlap each of its GIL-bound steps;
#: an idle pipeline has none, and then nothing to pause either.
SWAP_WAIT = 0.05
#: Ids of recently answered requests, to recognise QoS 1 redeliveries (DUP flag).
RECENT_IDS = 10_000
#: Exit status when a worker died: systemd's ``Restart=on-failure`` starts the daemon
#: again (EX_SOFTWARE).
EXIT_WORKER_DIED = 70
#: Seconds a daemon whose worker died spends stopping before it exits.
FAILED_STOP = 2.0
#: Longest one round of telemetry may take (collecting, handing over) before the
#: telemetry worker counts as stuck.
TELEMETRY_BOUND = 60.0


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=False).encode("utf-8")


class Daemon:
    def __init__(
        self,
        config: Config,
        engine: Any,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        crash_loop: Probation | None = None,
        fallback: Fallback | None = None,
        tuning: Tuning | None = None,
    ) -> None:
        """``fallback``: ``models/current`` could not be served at start (reported on
        ``model/state`` and ``model/events`` once running). ``tuning``: the threads and
        workers ``load_tuned`` chose for ``engine`` (else the config's numbers, 1 thread
        and a worker per core, at most 2, where it says "auto")."""
        self.config = config
        self.fallback = fallback
        self.tuning = tuning or default_tuning(
            usable_cores(),
            "not calibrated",
            threads=config.model.threads,
            workers=config.requests.preprocess_workers,
        )
        self.retune = LiveRetune(self.tuning)
        self._swap_lock = threading.Lock()  # the engine served and its tuning change together
        self.config_path = config_path
        self.engine = engine
        self.notifier = notifier or Notifier()
        fault = Fault.from_env(os.environ)
        self.supervisor = Supervisor(fault)
        heartbeats = self.supervisor.heartbeat
        self.topics = Topics(config.mqtt.prefix, config.device_id)
        self.tally = Tally(config.telemetry.latency_window)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        # one slot for each preprocessing worker, one for the inference worker
        self.ledger = Ledger.open(
            config.state_dir,
            self.tuning.preprocess_workers + 1,
            crash_on=fault.target if fault is not None and fault.kind == "crash" else None,
        )
        self.outbox = Outbox(config.state_dir / "outbox.sqlite3", max_bytes=config.outbox.max_bytes)
        self.publisher = Publisher(
            self.outbox,
            self._publish,
            spill_after=config.outbox.spill_after,
            heartbeats=heartbeats,
        )
        self.update_topics = {self.topics.model_update} | {
            self.topics.group_update(g) for g in config.groups
        }
        self.transport = MqttTransport(
            self._mqtt_options(config),
            subscriptions=[(self.topics.infer, 1), (self.topics.model_rollback, 1)]
            + [(t, 1) for t in sorted(self.update_topics)],
            on_message=self._receive,
            on_connection=self._on_connection,
            on_published=self.publisher.on_published,
            heartbeats=heartbeats,
        )
        self.monitor = DriftMonitor(
            config.monitoring,
            engine=lambda: self.pipeline.engine,
            alert=lambda doc: self._publish_update("model/alerts", doc, False),
        )
        self.pipeline = Pipeline(
            engine,
            queue_size=config.requests.queue_size,
            max_pixels=config.requests.max_pixels,
            top_k=config.model.top_k,
            # HTTP answers and frames of [[sources]] skip the MQTT answer path
            answer=route_frames(direct_answers(self._store_answers)),
            tally=self.tally,
            heartbeats=heartbeats,
            served=lambda version, ok, ms: self.updates.record(version, ok, ms),
            workers=self.tuning.preprocess_workers,
            max_bytes=config.requests.queue_bytes,
            ledger=self.ledger,
            observe=self.monitor.observe,
            costs=self.retune.observe,
        )
        self.sources = Sources(
            config.sources,
            engine=lambda: self.pipeline.engine,
            submit=self.pipeline.submit,  # no wait: a frame that finds no room is dropped
            emitter=DaemonEmitter(
                self.topics.source,
                config.device_id,
                self.publisher.send,
                self._publish_retained,
            ),
            heartbeats=heartbeats,
        )
        self.collector = Collector(
            state_dir=config.state_dir,
            tally=self.tally.snapshot,
            queue=self._queue_stats,
            model={
                "name": engine.identity.name,
                "version": engine.identity.version,
                "sha256": engine.identity.sha256,
            },
            delegate=str(engine.delegate),
        )
        u = config.update
        self.updates = UpdateService(
            state_dir=config.state_dir,
            trust=u.trust,
            device_class=u.device_class,
            active=Identity(engine.identity.name, engine.identity.version, engine.identity.sha256),
            active_path=Path(engine.source.path),
            swap=self._swap_model,
            publish=self._publish_update,
            max_bundle_bytes=u.max_bundle_bytes,
            download_timeout=u.download_timeout,
            validation_timeout=u.validation_timeout,
            retry_interval=u.retry_interval,
            max_invoke_ms=u.max_invoke_ms,
            keep=u.keep,
            health=u.health_policy(),
            crash_loop=crash_loop,
            heartbeats=heartbeats,
            prefix=config.mqtt.prefix,
            subscribe=self.transport.subscribe,
            unsubscribe=self.transport.unsubscribe,
            connected=lambda: self.transport.connected,
            download_ca=u.download_ca,
            file_roots=u.file_roots,
            device_id=config.device_id,
        )
        self._chunk_topics = f"{config.mqtt.prefix}/bundles/"
        self.watch: WatchFolder | None = None
        if config.requests.watch_dir is not None:
            self.watch = WatchFolder(
                config.requests.watch_dir,
                interval=config.requests.watch_interval,
                max_bytes=config.requests.max_payload_bytes,
                submit=self.pipeline.submit,
                heartbeats=heartbeats,
            )
        self._stop = threading.Event()
        self._hup = threading.Event()
        self._telemetry_wake = threading.Event()
        self._telemetry_thread: threading.Thread | None = None
        self._latest_telemetry: dict[str, Any] = {}
        self.metrics: MetricsServer | None = None
        if config.prometheus.enabled:
            try:
                self.metrics = MetricsServer(
                    config.prometheus.port,
                    lambda: render(self._latest_telemetry, self.config.device_id),
                )
            except OSError as exc:
                raise ConfigError(
                    f"prometheus.port: cannot listen on 127.0.0.1:{config.prometheus.port}: "
                    f"{exc.strerror or exc}"
                ) from exc
        self.http: HttpServer | None = None
        if config.http.enabled:
            self.http = build_server(
                config,
                self.pipeline,
                metrics=lambda: render(self._latest_telemetry, self.config.device_id),
                refused=self.tally.refuse,
                heartbeats=heartbeats,
            )
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._answered_lock = threading.Lock()
        # what the MQTT thread receives is handled here (parsing and storing included)
        self.intake = Intake(
            self._on_message,
            self._message_failed,
            self._refuse_message,
            size=RECEIVE_MAXIMUM,
            max_bytes=config.requests.queue_bytes,
            # a submit's wait and the storing of a refusal
            bound=self._hold_wait() + 30.0,
            heartbeats=heartbeats,
        )
        self._telemetry_beat = heartbeats("telemetry", TELEMETRY_BOUND)
        self._health = Health(())
        self._exit_code = 0

    @staticmethod
    def _mqtt_options(config: Config) -> MqttOptions:
        m = config.mqtt
        return MqttOptions(
            host=m.host,
            port=m.port,
            client_id=config.client_id,
            protocol=m.protocol,
            keepalive=m.keepalive,
            username=m.username,
            password=m.password,
            tls_ca=m.tls_ca,
            tls_cert=m.tls_cert,
            tls_key=m.tls_key,
            will_topic=Topics(m.prefix, config.device_id).status,
            session_expiry=m.session_expiry,
            reconnect_min=m.reconnect_min,
            reconnect_max=m.reconnect_max,
            # requests are acknowledged once answered, so this bounds what the broker
            # pushes at once; a quarter of the queue leaves room for the redeliveries of
            # requests taken before a reconnect (still queued here, answered twice)
            receive_maximum=max(1, min(RECEIVE_MAXIMUM, config.requests.queue_size // 4)),
        )

    # -- transport side -----------------------------------------------------------------
    def _publish(
        self, topic: str, payload: bytes, qos: int, correlation: bytes | None
    ) -> int | None:
        return self.transport.publish(topic, payload, qos=qos, correlation_data=correlation)

    def _publish_retained(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.transport.publish(topic, payload, qos=qos, retain=retain)

    def _on_connection(self, up: bool) -> None:
        self.publisher.on_connection(up)
        self.sources.on_connection(up)
        if up:
            self.updates.publish_state()
        if up and self.config.home_assistant.enabled:
            for topic, payload in discovery_messages(
                discovery_prefix=self.config.home_assistant.discovery_prefix,
                device_id=self.config.device_id,
                telemetry_topic=self.topics.telemetry,
                status_topic=self.topics.status,
                model=self.engine.identity.name,
            ):
                self.transport.publish(topic, payload, qos=1, retain=True)
        self.notifier.status(
            "connected to the broker" if up else "broker unreachable; answers go to the outbox"
        )

    def _receive(self, msg: Message) -> None:
        """The MQTT thread's callback: hand the message over, nothing more. A request
        that finds the request worker behind goes to the refusal worker (queue_full) at
        once; other messages wait for the request worker (the broker is slowed down; it
        is never behind by more than ``queue_wait``). A message no worker takes for a
        third of the keepalive is left unacknowledged (a stuck worker, which the
        supervisor names), so the broker delivers it again."""
        if self._stop.is_set():
            return  # not acknowledged: the broker delivers it again to the next run
        wait = self.config.mqtt.keepalive / 3
        if not self.intake.put(msg, wait, refusable=msg.topic == self.topics.infer):
            self.tally.refuse()
            log.error(
                "the request worker took no message for %.1f s; message on %s left unacknowledged",
                wait,
                msg.topic,
            )

    def _hold_wait(self) -> float:
        """How long a request waits for room in the pipeline before it is refused:
        short enough to keep the connection alive behind it."""
        return min(self.config.requests.queue_wait, self.config.mqtt.keepalive / 3)

    def _message_failed(self, msg: Message, exc: Exception) -> None:
        """Handling ``msg`` raised ``exc``: a request gets an error answer (and is then
        acknowledged), anything else is acknowledged and logged."""
        log.error("could not handle a message on %s: %s: %s", msg.topic, type(exc).__name__, exc)
        log.debug("the failure", exc_info=exc)
        receipt = replace(msg, payload=b"")
        if msg.topic != self.topics.infer:
            self.transport.ack(receipt)
            return
        error = RequestError(
            "internal_error",
            f"the daemon could not handle this request: {type(exc).__name__}",
            correlation_id(msg.correlation_data) or payload_id(msg.payload),
            response_topic=msg.response_topic,
            correlation_data=msg.correlation_data,
        )
        self._store_answers(
            [(Job(None, error, lambda ok, doc: self.transport.ack(receipt)), None, error)]
        )

    def _on_message(self, msg: Message, arrived: float) -> None:
        """Handle one received message (on the request worker); ``arrived``: when the
        MQTT thread handed it over (``time.monotonic()``)."""
        if msg.topic == self.topics.model_rollback:
            self.transport.ack(msg)
            self.updates.request_rollback(msg.payload)  # a signed order, checked in turn
            return
        if msg.topic in self.update_topics:
            self.transport.ack(msg)  # notices are retained: a lost one comes back
            self.updates.submit(msg.payload)
            return
        if msg.topic.startswith(self._chunk_topics):
            self.updates.chunk(msg.topic, msg.payload)
            self.transport.ack(msg)  # chunks are retained too
            return
        if msg.topic != self.topics.infer:
            self.transport.ack(msg)
            return
        error: RequestError | None = None
        request = None
        try:
            request = parse_request(
                msg.payload,
                max_bytes=self.config.requests.max_payload_bytes,
                correlation_data=msg.correlation_data,
                response_topic=msg.response_topic,
            )
        except RequestError as exc:  # it keeps where the answer goes
            error = exc
        if msg.duplicate and request is not None and self._was_answered(request.id):
            # a redelivery of a request whose answer is already in the outbox
            self.transport.ack(msg)
            return
        receipt = replace(msg, payload=b"")  # what the ack needs; the payload can go
        job = Job(request, error, lambda ok, doc: self.transport.ack(receipt))
        if self._stop.is_set():
            return  # not acknowledged: the broker redelivers it to the next run
        # a short bounded wait, counted from the message's arrival, holds this worker
        # before refusing: bursts after a reconnect are absorbed, a stalled pipeline is
        # not, and messages queued behind a wait do not wait once more each
        wait = arrived + self._hold_wait() - time.monotonic()
        if not self.pipeline.submit(job, wait=max(wait, 0.0)):
            if self._stop.is_set():
                return
            rid = request.id if request is not None else (error.request_id if error else "")
            self._refuse(msg, rid, job.done)

    def _refuse_message(self, msg: Message, arrived: float) -> None:
        """Answer queue_full to a request the request worker had no room for (on the
        refusal worker): only its id is read."""
        try:
            rid = parse_request(
                msg.payload,
                max_bytes=self.config.requests.max_payload_bytes,
                correlation_data=msg.correlation_data,
                response_topic=msg.response_topic,
            ).id
        except RequestError as exc:
            rid = exc.request_id
        if msg.duplicate and self._was_answered(rid):
            self.transport.ack(msg)
            return
        receipt = replace(msg, payload=b"")
        self._refuse(msg, rid, lambda ok, doc: self.transport.ack(receipt))

    def _refuse(self, msg: Message, rid: str, done: Callable[[bool, dict[str, Any]], None]) -> None:
        """Answer queue_full to the request ``rid`` received in ``msg``; counted."""
        self.tally.refuse()
        log.warning(
            "refused request (generation %d, dup %s): the queue is full (%d)",
            msg.generation,
            msg.duplicate,
            self.pipeline.depth(),
        )
        refusal = RequestError(
            "queue_full",
            f"the request queue is full ({self.config.requests.queue_size}); try again later",
            rid,
            response_topic=msg.response_topic,
            correlation_data=msg.correlation_data,
        )
        self._store_answers([(Job(None, refusal, done), None, refusal)])

    # -- model updates ------------------------------------------------------------------
    def _report_fallback(self, fallback: Fallback) -> None:
        detail = (
            f"{fallback.wanted} cannot be served ({fallback.why}); "
            f"serving {fallback.serving.label} instead"
        )
        self.notifier.status(f"model fallback: {detail}")
        event = {"version": None, "stage": "rolled_back", "progress": None, "reason": "unusable"}
        self._publish_update("model/events", {**event, "detail": detail}, False)

    def _publish_update(self, leaf: str, doc: dict[str, Any], retain: bool) -> None:
        topic = self.topics._t(leaf)
        if retain:  # the state: sent now, and again at every connect
            self.transport.publish(topic, _dumps(doc), qos=1, retain=True)
        else:  # events: in order, kept in the outbox while the broker is away
            self.publisher.send([Outgoing(ANSWER, topic, _dumps(doc), 1)])

    def _swap_model(self, path: Path) -> Identity:
        """Load ``path``, run it once on zeros, and hand it to the pipeline."""
        started = time.perf_counter()
        engine, tuning = load_tuned(
            self.config,
            path,
            # the running pipeline's workers stay; the threads suit the new model
            workers=self.tuning.preprocess_workers,
            # its GIL-bound steps overlap a running invoke instead of pausing requests
            before_native=lambda: self.pipeline.when_invoking(SWAP_WAIT),
        )
        with self._swap_lock:
            self.pipeline.swap(engine)
            self.engine = engine
            self.tuning = tuning
            self.retune.reset(tuning)
        identity = engine.identity
        self.collector.model = {
            "name": identity.name,
            "version": identity.version,
            "sha256": identity.sha256,
        }
        log.warning(
            "model %s %s active (loaded and warmed up in %.0f ms)",
            identity.name,
            identity.version,
            (time.perf_counter() - started) * 1000,
        )
        return Identity(identity.name, identity.version, identity.sha256)

    def retune_if_due(self) -> None:
        """Once the first requests after a calibration were served: the threads chosen
        again from their preprocessing cost (``LiveRetune``), and the engine rebuilt at
        the new count and swapped in as a new model is. Runs in the supervisor's loop."""
        with self._swap_lock:
            served, tuning = self.engine, self.retune.due()
        if tuning is None:
            return
        engine = served
        if tuning.threads != self.tuning.threads:
            try:
                engine = _build(
                    self.config,
                    served.source,
                    tuning.threads,
                    lambda: self.pipeline.when_invoking(SWAP_WAIT),
                )
            except Exception as exc:  # noqa: BLE001 - the engine served stays; keep serving
                log.warning("could not load the model at %d threads: %s", tuning.threads, exc)
                return
        with self._swap_lock:
            if self.engine is not served:  # a new model came meanwhile, with its own tuning
                if engine is not served:
                    engine.close()
                return
            log.info(
                "model %s %s runs with %s",
                engine.identity.name,
                engine.identity.version,
                tuning.summary(),
            )
            if engine is not served:
                self.pipeline.swap(engine)
                self.engine = engine
            self.tuning = tuning

    # -- answers ------------------------------------------------------------------------
    def _store_answers(self, batch: list[Answered]) -> None:
        """Send answers, and acknowledge their requests once the broker acknowledged the
        answers or the outbox stored them: an acknowledged request always has its answer
        at the broker or on disk."""
        messages: list[Outgoing] = []
        # only the callbacks are kept: a request's image must not live on until the
        # broker acknowledges the answer
        finished: list[tuple[Callable[[bool, dict[str, Any]], None], bool, dict[str, Any]]] = []
        for job, result, error in batch:
            doc, topic, response_topic, correlation = self._answer_doc(job, result, error)
            payload = _dumps(doc)
            messages.append(Outgoing(ANSWER, topic, payload, 1, correlation))
            if response_topic and response_topic != topic:
                messages.append(Outgoing(ANSWER, response_topic, payload, 1, correlation))
            finished.append((job.done, error is None, doc))
        with self._answered_lock:
            for _, _, doc in finished:
                self._answered[doc["id"]] = None
            while len(self._answered) > RECENT_IDS:
                self._answered.popitem(last=False)

        def acknowledge() -> None:
            for done, ok, doc in finished:
                done(ok, doc)

        self.publisher.send(messages, acknowledge)

    def _answer_doc(
        self, job: Job, result: dict[str, Any] | None, error: RequestError | None
    ) -> tuple[dict[str, Any], str, str | None, bytes | None]:
        """The answer's document, its topic, and the request's response topic and
        correlation data (MQTT 5), if any."""
        request = job.request
        if error is not None:
            doc: dict[str, Any] = {
                "id": error.request_id,
                "error": error.code,
                "detail": error.detail,
                "device_id": self.config.device_id,
                "ts": utc_now(),
            }
            response_topic = error.response_topic or (request.response_topic if request else None)
            correlation = error.correlation_data or (request.correlation_data if request else None)
            return doc, self.topics.errors, response_topic, correlation
        assert request is not None and result is not None
        doc = {"id": request.id, "device_id": self.config.device_id, "ts": utc_now(), **result}
        return doc, self.topics.predictions, request.response_topic, request.correlation_data

    def _was_answered(self, request_id: str) -> bool:
        with self._answered_lock:
            return request_id in self._answered

    def _queue_stats(self) -> dict[str, int]:
        return {"depth": self.pipeline.depth(), "dropped": self.tally.snapshot().refused}

    # -- loops --------------------------------------------------------------------------
    def _telemetry_loop(self) -> None:
        beat = self._telemetry_beat
        while not self._stop.is_set():
            beat.beat()
            try:
                doc = self.collector.collect()
                doc["workers"] = self.supervisor.check().to_json()
                doc["monitoring"] = self.monitor.snapshot()
                doc["update"] = self.updates.last_update  # the last outcome, or None
                doc["errors_by_code"] = dict(self.tally.snapshot().by_code)
                doc["tuning"] = self.tuning.to_json()
                if self.sources.workers:
                    doc["sources"] = self.sources.telemetry()
                doc["outbox"] = {
                    "messages": len(self.outbox),
                    "bytes": self.outbox.size_bytes,
                    "dropped_telemetry": self.outbox.dropped_telemetry,
                    "spilled": self.publisher.spilled,
                    # the state folder is full: messages wait in memory, and those that
                    # fit neither there nor on disk are refused (their requests redelivered)
                    "disk_full": self.outbox.disk_full,
                    "in_memory": self.publisher.in_memory(),
                    "not_kept": self.publisher.not_kept,
                }
                self._latest_telemetry = doc
                self.publisher.send(
                    [
                        Outgoing(
                            TELEMETRY,
                            self.topics.telemetry,
                            _dumps(doc),
                            self.config.telemetry.qos,
                        )
                    ]
                )
            except Exception:  # noqa: BLE001 - telemetry must not stop the daemon
                log.exception("telemetry failed")
            beat.idle()
            self._telemetry_wake.wait(self.config.telemetry.interval)
            self._telemetry_wake.clear()

    def reload(self) -> list[str]:
        """Apply a re-read config where safe; returns the keys that need a restart."""
        if self.config_path is None:
            return []
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: config not reloaded, keeping the running one: %s", exc)
            return []
        pending = [
            f.name
            for f in fields(Config)
            if f.name not in LIVE_KEYS and getattr(new, f.name) != getattr(self.config, f.name)
        ]

        self.config = replace(self.config, log_level=new.log_level, telemetry=new.telemetry)
        logging.getLogger().setLevel(new.log_level.upper())
        self.tally.resize(new.telemetry.latency_window)
        self._telemetry_wake.set()
        if pending:
            log.warning("SIGHUP: changes to %s need a restart; not applied", ", ".join(pending))
        log.warning(
            "SIGHUP: config reloaded (log level %s, telemetry every %gs)",
            new.log_level,
            new.telemetry.interval,
        )
        return pending

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def request_reload(self, *_: Any) -> None:
        self._hup.set()

    def run(self) -> int:
        self.pipeline.start()
        self.publisher.start()
        self.intake.start()
        if self.fallback is not None:  # in model/state from its first publication on
            self.updates.note_start_fallback()
        self.transport.start()
        if self.watch is not None:
            self.watch.start()
        if self.metrics is not None:
            self.metrics.start()
        if self.http is not None:
            self.http.start()
        self.transport.wait_connected(min(5.0, self.config.mqtt.keepalive))
        self.updates.start()
        self.sources.start()
        if self.fallback is not None:
            self._report_fallback(self.fallback)
        self._telemetry_thread = threading.Thread(
            target=self._telemetry_beat.guard(self._telemetry_loop), name="telemetry", daemon=True
        )
        self._telemetry_thread.start()
        state = "connected" if self.transport.connected else "broker unreachable, using the outbox"
        # What start-up built lives as long as the process: out of the collector's sight,
        # a full collection no longer walks it (several ms that landed on some request)
        gc.collect()
        gc.freeze()
        self.notifier.ready(
            f"serving {self.engine.identity.name} {self.engine.identity.version}; {state}"
        )
        log.warning(
            "edge-runtime daemon ready: device %s, model %s, %s",
            self.config.device_id,
            self.engine.identity.name,
            state,
        )
        # the supervisor's round: at least twice per watchdog ping
        tick = min(0.5, self.notifier.watchdog_every / 2)
        while not self._stop.wait(tick):
            if self._hup.is_set():
                self._hup.clear()
                self.reload()
            self._supervise()
            self.retune_if_due()
        self.shutdown(FAILED_STOP if self._exit_code else None)
        return self._exit_code

    def _supervise(self) -> None:
        """Read every worker's heartbeat: feed the watchdog only while all are well; say
        which is not (log, ``STATUS=``; telemetry reads the same); stop the daemon, to
        exit non-zero, when one died."""
        health = self.supervisor.check()
        before, self._health = self._health, health
        if health.ok:
            self.notifier.watchdog()
            if not before.ok:
                log.warning("every worker is well again")
                self.notifier.status(f"serving {self.engine.identity.name}; workers well again")
            return
        if health.summary() != before.summary():
            self.notifier.status(f"unhealthy: {health.summary()}")
        if {w.name for w in health.unhealthy} != {w.name for w in before.unhealthy}:
            log.error("%s; the watchdog is no longer fed", health.summary())
        if health.dead:
            log.critical(
                "stopping, to exit with status %d so that systemd starts the daemon again: %s",
                EXIT_WORKER_DIED,
                "; ".join(f"worker {w.name} died ({w.detail})" for w in health.dead),
            )
            self._exit_code = EXIT_WORKER_DIED
            self._stop.set()

    def shutdown(self, timeout: float | None = None) -> int:
        """Stop within ``timeout`` s (``shutdown_timeout`` when None)."""
        self.notifier.stopping()
        bound = self.config.shutdown_timeout
        deadline = time.monotonic() + (bound if timeout is None else min(timeout, bound))
        if self.watch is not None:
            self.watch.stop()
        if self.metrics is not None:
            self.metrics.stop()
        if self.http is not None:  # requests being answered finish first
            self.http.stop(max(0.5, deadline - time.monotonic() - 1.0))
        self.updates.stop()
        self.sources.stop(max(0.5, min(3.0, deadline - time.monotonic() - 2.0)))
        self.intake.stop(max(0.1, deadline - time.monotonic()))
        drained = self.pipeline.stop(max(0.5, deadline - time.monotonic() - 1.0))
        self._telemetry_wake.set()
        # give the publisher the rest of the bound to have everything acknowledged
        self.publisher.settle(deadline, lambda: self.transport.connected)
        if self._telemetry_thread is not None:
            self._telemetry_thread.join(5)
        self.publisher.stop()  # stores what is still unacknowledged
        left = len(self.outbox)
        self.transport.stop()
        self.outbox.close()
        self.engine.close()
        self.notifier.close()
        if not self._exit_code:  # a dead worker counts as a crash of the model it served
            note_clean_stop(self.config.state_dir)
        log.warning(
            "edge-runtime daemon stopped (%s; %d messages kept in the outbox)",
            "queue drained" if drained else "queue NOT drained",
            left,
        )
        return 0


def load_engine(
    config: Config, path: Path, *, before_native: Callable[[], object] | None = None
) -> Engine:
    """Load the model at ``path`` as the daemon serves it (``[model]``'s delegate,
    threads, labels and detection settings; under ``threads = "auto"`` the interpreter's
    default, see ``load_tuned``): an image model, run once.

    Raises:
        EdgeError: it cannot be loaded, is no image model, or does not run.
    """
    from edge_runtime.inference.source import load_source

    source = load_source(Path(path), labels_path=config.model.labels)
    return _build(config, source, config.model.threads, before_native)


def load_tuned(
    config: Config,
    path: Path,
    *,
    workers: int | None = None,
    before_native: Callable[[], object] | None = None,
) -> tuple[Engine, Tuning]:
    """``load_engine``, at the thread count a short calibration on the model chooses
    where ``[model] threads`` is "auto", and the preprocessing workers to run with
    (``workers``, else ``[requests] preprocess_workers``, else chosen); the choice is
    logged. See ``edge_runtime.daemon.tuning``.

    Raises:
        EdgeError: it cannot be loaded, is no image model, or does not run.
    """
    from edge_runtime.inference.source import load_source

    source = load_source(Path(path), labels_path=config.model.labels)
    configured = config.requests.preprocess_workers
    engine, tuning = calibrate(
        lambda threads: _build(config, source, threads, before_native),
        cores=usable_cores(),
        threads=config.model.threads,
        workers=workers if workers is not None else configured,
        running_workers=workers is not None and configured is None,
    )
    log.info(
        "model %s %s runs with %s", engine.identity.name, engine.identity.version, tuning.summary()
    )
    return engine, tuning


def _build(
    config: Config,
    source: ModelSource,
    threads: int | None,
    before_native: Callable[[], object] | None,
) -> Engine:
    """The engine for ``source`` at ``threads``, checked to be an image model and run once."""
    from edge_runtime.inference.engine import Engine

    engine = Engine.from_source(
        source,
        delegate=config.model.delegate,
        threads=threads,
        detection=config.model.detection,
        before_native=before_native,
    )
    try:
        engine.input_spec  # noqa: B018 - the daemon serves image models only; fail early
        engine.warm_up()  # the first request is served at the model's usual speed
    except EdgeError:
        engine.close()
        raise
    return engine


def run_daemon(config: Config, *, config_path: Path | None = None, debug: bool = False) -> int:
    """Load the model, start everything, serve until SIGTERM; returns the exit code.

    Raises:
        EdgeError: the model cannot be loaded or the state folder cannot be used.
    """
    logging.getLogger().setLevel(logging.DEBUG if debug else config.log_level.upper())
    limit_arenas()  # before the model's and the workers' threads allocate
    if legacy_device_id(config.device_id):
        log.warning(
            "device_id %r is not a host name (1-63 of a-z 0-9 and '-'): this device keeps "
            "running under it, but flash.sh and add-device.sh refuse such ids for new devices",
            config.device_id,
        )
    notifier = Notifier(liveness=LivenessFile(liveness_path(config.state_dir)))
    notifier.status("loading the model")
    try:
        crash_loop = recover_crash_loop(
            config.state_dir, config.update.health_policy(), config.update.keep
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot use state_dir {config.state_dir}: {exc.strerror or exc}"
        ) from exc
    (engine, tuning), chosen, fallback = load_first(
        candidates(config.state_dir, config.model.path), lambda path: load_tuned(config, path)
    )
    if chosen.path != config.model.path and fallback is None:
        log.warning("serving the model installed by an update: %s", chosen.path.resolve())
    try:
        daemon = Daemon(
            config,
            engine,
            config_path=config_path,
            notifier=notifier,
            crash_loop=crash_loop,
            fallback=fallback,
            tuning=tuning,
        )
    except OSError as exc:
        engine.close()
        raise ConfigError(
            f"cannot use state_dir {config.state_dir}: {exc.strerror or exc}"
        ) from exc
    except EdgeError:
        engine.close()
        raise
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)
    signal.signal(signal.SIGHUP, daemon.request_reload)
    return daemon.run()
