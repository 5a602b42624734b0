"""The collector service: MQTT (v5 shared subscription) → validation → InfluxDB, with an
acknowledgement only after InfluxDB stored the message (at-least-once, and idempotent
points make it effectively exactly-once for data).

Flow of one message, and the part that does each step::

    broker ──PUBLISH (QoS 1)──▶ paho network thread ──Inbox──▶ worker thread
                                mqtt_input.MqttInput           delivery.Delivery
        worker: contract.validate → known meter? → line protocol        (or a dead letter)
                validation.Validator
                batch of N lines or T ms ──POST /write──▶ InfluxDB ──204──▶ PUBACK each, in order
                output.InfluxOutput (retries, split on 400)                 MqttInput.ack
                (the same /write carries the batch's rollup markers, see .rollups)
                then the on_stored hooks: receipts

The parts, one job each, split the way Telegraf's ``mqtt_consumer`` splits the same work
(input, delivery tracking, output):

* :mod:`.mqtt_input`: the persistent MQTT v5 session, the ``$share/`` subscription, manual
  acknowledgement on the connection that delivered a message, TCP keep-alive, and the
  bounded inbox that back-pressures paho.
* :mod:`.validation`: what one delivery becomes (line protocol, or a dead letter).
* :mod:`.delivery`: batching, then store → acknowledge → count → ``on_stored`` hooks, on
  the worker thread; nothing is acknowledged before InfluxDB accepted it.
* :mod:`.output`: the InfluxDB write with retries (capped exponential back-off) and the
  split that turns a refused message into a dead letter with InfluxDB's message.
* :mod:`.metrics`: counters, the latency histogram and ``GET /metrics``.

:class:`Collector` reads the configuration, builds the parts and wires them together, and
owns the lifecycle: the threads are paho's network thread, the worker
(``tingbao-collector``), the rollups (``tingbao-rollups``, :mod:`.rollups`) and the metrics
server (``tingbao-metrics``). ``stop(flush=True)`` stores and acknowledges what was
received first; ``stop(flush=False)`` (a simulated crash) acknowledges nothing more, and
the broker re-delivers those messages to the next session.

Counters (``Collector.counters()`` and ``GET /metrics``): :mod:`.metrics` lists them; the
inbox adds ``queued``, ``queued_bytes``, ``inbox_capacity``, ``backpressure_s``, the session
``connected`` and ``subscribed``, the rollups their own.

The names the tests and tools use from this module stay here: ``Inbound``, ``_Inbox``,
``Entry``, ``SUBSCRIPTION``, ``LATENCY_EDGES_MS``, ``_percentile``, ``message_lines``
(the converter a new :class:`Collector` uses) and ``Collector._store`` (the store step a
new :class:`Collector` hands to its delivery).
"""

from __future__ import annotations

import json
import logging
import threading

from .deadletter import RAW_LIMIT_FILE, RAW_LIMIT_INFLUX, DeadLetterFile, safe_tag
from .delivery import MAX_BATCH_BYTES, Delivery
from .delivery import Aborted as _Aborted
from .influx import InfluxClient
from .lineprotocol import message_lines
from .metrics import LATENCY_EDGES_MS, Metrics, MetricsServer
from .metrics import Every as _Every
from .metrics import percentile as _percentile
from .mqtt_input import INBOX_MAX_BYTES, SUBSCRIPTION, Inbound, MqttInput
from .mqtt_input import Inbox as _Inbox
from .mqtt_input import tcp_keepalive as _tcp_keepalive
from .output import InfluxOutput
from .receipts import Receipts
from .registry import RegistryWatcher
from .rollups import Rollups, RollupThread
from .settings import (
    CollectorSettings,
    Config,
    InfluxSettings,
    MqttSettings,
    RollupSettings,
)
from .validation import Entry, Validator

__all__ = [
    "Collector", "Config", "MqttSettings", "InfluxSettings", "CollectorSettings",
    "RollupSettings",
    # the parts' names, kept importable from here for tests and tools
    "Entry", "Inbound", "SUBSCRIPTION", "LATENCY_EDGES_MS", "INBOX_MAX_BYTES",
    "MAX_BATCH_BYTES", "message_lines", "_Inbox", "_Every", "_percentile", "_tcp_keepalive",
    "_Aborted",
]

log = logging.getLogger("tingbao.collector")


# ------------------------------------------------------------------------------ collector
class Collector:
    """Subscribes, validates, stores, acknowledges. ``start()``/``stop()`` for embedding and
    tests, ``run()`` blocks until ``request_stop()`` (e.g. from a SIGTERM handler)."""

    def __init__(self, config: Config):
        self.config = config
        c, m, influx = config.collector, config.mqtt, config.influx
        self.batch_size = max(1, int(c.batch_size))
        self.batch_s = max(0.001, c.batch_s)
        self.registry: RegistryWatcher | None = None
        if c.site is not None:  # the registry's meters are the known ones, reloaded on edits
            self.registry = RegistryWatcher(c.site, on_change=self._registry_changed,
                                            poll_s=c.registry_poll_s)
            self.known_meters = self.registry.current.meter_ids
        else:
            self.known_meters = frozenset(c.known_meters)
        self.collector_tag = safe_tag(m.client_id)
        self.writer = InfluxClient(influx.url, influx.db, influx.username, influx.password,
                                   influx.timeout_s)
        self.deadletter_file = DeadLetterFile(c.deadletter_file) if c.deadletter_file else None
        self.rollups: Rollups | None = None
        if config.rollups.enabled:
            r = config.rollups
            if not r.username:
                log.info("rollups read with the [influx] account, which then needs READ on "
                         "%r as well", influx.db)
            reader = InfluxClient(influx.url, influx.db, r.username or influx.username,
                                  r.password if r.username else influx.password,
                                  influx.timeout_s)
            self.rollups = Rollups(reader, self.writer, source_rp=influx.retention,
                                   target_rp=r.retention, settle_s=r.settle_s,
                                   writer_id=m.client_id)
        self.metrics = Metrics()
        self._stop = threading.Event()  # stop requested
        self._abort = threading.Event()  # give up the batch in hand, do not acknowledge it
        self._stopped = False
        self._stop_lock = threading.Lock()
        self._inbox = _Inbox(max(2 * m.receive_maximum, 2 * self.batch_size, 1000),
                             INBOX_MAX_BYTES)
        self.input = MqttInput(self._inbox, self.metrics, self._stop, host=m.host, port=m.port,
                               client_id=m.client_id, group=m.group, username=m.username,
                               password=m.password, ca_file=m.ca_file,
                               receive_maximum=m.receive_maximum,
                               session_expiry_s=m.session_expiry_s, keepalive_s=m.keepalive_s)
        self.ready = self.input.ready  # connected and subscribed
        # what a dead letter keeps of the raw payload in memory until it is stored;
        # message_lines is looked up here, so a test may replace service.message_lines
        self.validator = Validator(self.metrics, known_meters=self.known_meters,
                                   accept_any_meter=c.accept_any_meter,
                                   collector_tag=self.collector_tag,
                                   keep_raw=RAW_LIMIT_FILE if self.deadletter_file
                                   else RAW_LIMIT_INFLUX,
                                   convert=message_lines)
        self.output = InfluxOutput(self.writer, self.metrics, self._abort,
                                   dead_letter=self.validator.dead_letter,
                                   retention=influx.retention, retry_cap_s=c.retry_cap_s,
                                   rollups=self.rollups)
        self.delivery = Delivery(self._inbox, self.metrics, self._stop, self._abort,
                                 validate=self.validator.entry, store=self._store,
                                 ack=self.input.ack, reconnect=self.input.drop_connection,
                                 batch_size=self.batch_size, batch_s=self.batch_s,
                                 deadletter_file=self.deadletter_file)
        if self.registry is not None:
            self.validator.known_from = f"the site registry {self.registry.path}"
        self._worker = threading.Thread(target=self.delivery.run, name="tingbao-collector",
                                        daemon=True)
        self._rollup_thread = (RollupThread(self.rollups,
                                            catchup_minutes=config.rollups.catchup_minutes)
                               if self.rollups else None)
        self._metrics_server = MetricsServer(c.metrics_port, self.counters)
        # receipts: after a batch is stored and acknowledged, tell each meter what is stored
        self.receipts = Receipts(self.input.publish, self.metrics, m.client_id)
        self.delivery.on_stored.append(self.receipts)

    # ---------------------------------------------------------------------------- wiring
    def _store(self, batch: list[Entry]) -> None:
        """The delivery's store step: the InfluxDB output (a test replaces it to simulate a
        bug while storing)."""
        self.output.store(batch)

    def _touch_rollups(self, batch: list[Entry]) -> None:
        """The minutes a stored batch reached are due for a rollup, in memory only (kept for
        tools; the collector marks them durably in the batch's own write, see
        :mod:`.output`)."""
        for e in batch:
            for series, start_ns, _end_ns in e.spans:
                self.rollups.touch(series, start_ns)

    def _registry_changed(self, new, old) -> None:
        """The registry file was edited and the edit accepted: its meters are known from now
        on (a rebinding, atomic for the worker thread that reads it)."""
        self.known_meters = new.meter_ids
        self.validator.known_meters = new.meter_ids

    def reload_registry(self) -> None:
        """Read the site registry again now (safe from a SIGHUP handler); a broken edit is
        refused with its errors and the registry in force stays."""
        if self.registry is not None:
            self.registry.request_reload()

    # compatibility: what used to be attributes of the single Collector class
    @property
    def _client(self):
        return self.input.client

    @property
    def _counts(self) -> dict[str, float]:
        return self.metrics.counts

    @property
    def _http(self):
        return self._metrics_server.httpd

    @property
    def subscription(self) -> str:
        return self.input.subscription

    # ------------------------------------------------------------------------- lifecycle
    def start(self) -> Collector:
        """Connect (asynchronously; reconnects by itself) and start the worker, rollups and
        the metrics server. Returns at once; ``ready`` is set once subscribed."""
        if self.config.collector.metrics_port:
            self._metrics_server.start()
        self.input.start()
        self._worker.start()
        if self._rollup_thread:
            self._rollup_thread.start()
        if self.registry is not None:
            self.registry.start()
        log.info("collector %r started: batches of %d lines or %g ms, %s",
                 self.config.mqtt.client_id, self.batch_size, self.batch_s * 1000,
                 "any meter accepted" if self.config.collector.accept_any_meter
                 else f"{len(self.known_meters)} known meters"
                 + (f" from {self.registry.path}" if self.registry else ""))
        return self

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> None:
        """Start and block until :meth:`request_stop` (or :meth:`stop`), then shut down."""
        self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()

    def stop(self, flush: bool = True, timeout: float | None = None) -> None:
        """Stop: with ``flush`` the messages already received are stored and acknowledged
        first (for at most ``stop_timeout_s``); without it (a simulated crash) nothing more
        is acknowledged and the broker re-delivers those messages to the next session."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        timeout = self.config.collector.stop_timeout_s if timeout is None else timeout
        self.delivery.flush_on_stop = flush
        if not flush:
            self._abort.set()
        self._stop.set()
        timer = threading.Timer(timeout, self._abort.set)
        timer.daemon = True
        timer.start()
        try:
            if self._worker.is_alive():
                self._worker.join(timeout + self.config.influx.timeout_s + 1.0)
            if self._rollup_thread and self._rollup_thread.is_alive():
                self._rollup_thread.stop(final=flush)
            self.input.stop()
            if self.registry is not None:
                self.registry.stop()
        finally:
            timer.cancel()
            self._metrics_server.close()
        log.info("collector stopped: %s", json.dumps(self.counters()))

    # --------------------------------------------------------------------------- metrics
    def counters(self) -> dict:
        """A snapshot of the counters (what ``GET /metrics`` serves)."""
        out = self.metrics.snapshot()
        out.update(self._inbox.stats())
        out["connected"] = self.input.connected
        out["subscribed"] = self.ready.is_set()
        if self.registry is not None:
            out["registry"] = {"path": str(self.registry.path),
                               "digest": self.registry.current.digest,
                               "meters": len(self.known_meters),
                               "reloads": self.registry.reloads,
                               "refused": self.registry.refused,
                               "last_error": self.registry.last_error}
        if self.rollups:
            out["rollups"] = {"written": self.rollups.written, "pending": self.rollups.pending,
                              "errors": self.rollups.errors, "dropped": self.rollups.dropped,
                              "markers_written": self.rollups.markers_written,
                              "markers_deleted": self.rollups.markers_deleted,
                              "orphans": self.rollups.orphans, "scans": self.rollups.scans,
                              "last_error": self.rollups.last_error}
        return out

    def is_alive(self) -> bool:
        """True while the worker thread runs (it only ends at :meth:`stop`)."""
        return self._worker.is_alive()

    @property
    def metrics_url(self) -> str | None:
        return self._metrics_server.url
