"""Delivery tracking: every message is stored before it is acknowledged, never the other way
round (at-least-once; idempotent points make it effectively exactly-once for data).

The worker thread runs :meth:`Delivery.run`::

    Inbox ──get──▶ validate (Entry) ──▶ batch: batch_size messages, batch_ms after its first
                                        message, or MAX_BATCH_BYTES of line protocol
          ──▶ store(batch)      the InfluxDB output: retries, splits out refused points
          ──▶ dead-letter file  (when configured; after the store, before the acknowledgement)
          ──▶ ack(batch)        PUBACK each, in order, on the connection that delivered it
          ──▶ metrics           written, rejected, latencies
          ──▶ on_stored hooks   what else happens once a batch is stored (receipts; the
                                rollups' markers ride in the batch's own write)

:class:`Delivery` knows neither MQTT nor InfluxDB: it is given ``validate``, ``store``,
``ack`` and ``reconnect`` as callables (see ``service.Collector``), which is what keeps the
order of these steps in one place.

* **Acknowledgement only after the write**: ``ack`` is called only once ``store`` returned,
  i.e. InfluxDB accepted every line of the batch (refused messages are stored as dead
  letters). While InfluxDB is down ``store`` does not return, nothing is acknowledged, and
  the MQTT Receive Maximum plus the bounded inbox hold everything else in the broker.
* **Stale acknowledgements**: a delivery carries the connection (generation) that brought
  it; ``ack`` skips those of an earlier connection (``stale_unacked``, see
  ``MqttInput.ack``): the broker delivers them again and the rewrite overwrites the points.
* **Worker errors**: an unexpected exception drops the batch in hand unacknowledged
  (``internal_errors``) and drops the connection, so the broker delivers those messages
  again on the next one.
* **Stop**: with ``flush_on_stop`` what is in the inbox is stored and acknowledged before
  :meth:`Delivery.run` returns; with ``abort`` set (stop without flush, or the stop time is
  up) the batch in hand is given up unacknowledged (``store`` raises :class:`Aborted`).

**The hook point**, :attr:`Delivery.on_stored`: callables ``hook(batch)`` run on the worker
thread after a batch is stored, acknowledged and counted, in the order they were added.
``batch`` is the list of :class:`~.validation.Entry`, dead letters included (``entry.dead``
is set for those); ``entry.spans`` lists the levels records the entry stored as
``(SeriesKey, interval start ns, interval end ns)``, one per channel, and
``entry.inbound`` the delivery (topic, receive time). A batch abandoned on abort or by a
worker error never reaches the hooks; a batch re-delivered after a reconnect reaches them
again (stored twice, same points). Receipts use it (:mod:`.receipts`: per meter, the seqs
now stored, published to that meter's agent, which deletes them from its outbox only then;
``entry.seq`` is the seq of a levels or bands message). A hook must be
quick (hand slow work to a thread of its own); one that raises is logged and counted in
``internal_errors``, and the other hooks still run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .metrics import Every, Metrics

if TYPE_CHECKING:
    from .deadletter import DeadLetterFile
    from .mqtt_input import Inbound, Inbox
    from .validation import Entry

log = logging.getLogger("tingbao.collector.delivery")

MAX_BATCH_BYTES = 8 * 1024 * 1024
"""A batch is also written once its line protocol reaches this size (InfluxDB's default
max-body-size is 25 MB)."""


class Aborted(Exception):
    """A write was given up because the collector is stopping."""


class Delivery:
    """Batches deliveries from ``inbox``, stores each batch, then acknowledges it.

    ``validate(inbound) -> Entry`` never raises; ``store(batch)`` returns once InfluxDB
    accepted the whole batch (turning refused messages into dead letters in place) or raises
    :class:`Aborted`; ``ack(inbounds)`` acknowledges on the delivering connection;
    ``reconnect()`` drops the connection after a worker error. ``stop`` ends :meth:`run`,
    ``abort`` gives up the batch in hand."""

    def __init__(self, inbox: Inbox, metrics: Metrics, stop: threading.Event,
                 abort: threading.Event, *,
                 validate: Callable[[Inbound], Entry],
                 store: Callable[[list[Entry]], None],
                 ack: Callable[[list[Inbound]], None],
                 reconnect: Callable[[], None],
                 batch_size: int = 500, batch_s: float = 0.2,
                 max_batch_bytes: int = MAX_BATCH_BYTES,
                 deadletter_file: DeadLetterFile | None = None):
        self.inbox = inbox
        self.metrics = metrics
        self.batch_size = max(1, int(batch_size))
        self.batch_s = max(0.001, batch_s)
        self.max_batch_bytes = max_batch_bytes
        self.deadletter_file = deadletter_file
        self.on_stored: list[Callable[[list[Entry]], None]] = []
        """Hooks run after a batch is stored and acknowledged (see the module docstring)."""
        self.flush_on_stop = True
        self._stop = stop
        self._abort = abort
        self._validate = validate
        self._store = store
        self._ack = ack
        self._reconnect = reconnect
        self._warn = Every(10.0)

    # ----------------------------------------------------------------------------- worker
    def run(self) -> None:
        """The worker thread: batch, store, acknowledge until ``stop`` is set; then flush
        what was received (``flush_on_stop``) unless ``abort`` is set."""
        batch: list[Entry] = []
        batch_bytes = 0
        deadline = 0.0
        full = self._full
        while not self._stop.is_set():
            try:
                timeout = max(0.0, deadline - time.monotonic()) if batch else 0.2
                item = self.inbox.get(min(timeout, 0.2))
                while item is not None:
                    if not batch:
                        deadline = time.monotonic() + self.batch_s
                    entry = self._entry(item)
                    batch.append(entry)
                    batch_bytes += sum(len(ln) for ln in entry.lines)
                    if full(batch, batch_bytes):
                        break
                    item = self.inbox.get(0)
                if batch and (full(batch, batch_bytes) or time.monotonic() >= deadline):
                    self.flush(batch)
                    batch, batch_bytes = [], 0
            except Exception:  # a bug must not stop the service
                self.metrics.counts["internal_errors"] += 1
                log.exception("collector worker error: %d message(s) not acknowledged; "
                              "reconnecting so that the broker delivers them again",
                              len(batch))
                batch, batch_bytes = [], 0
                self._reconnect()
                time.sleep(0.5)
        if self.flush_on_stop and not self._abort.is_set():
            while (item := self.inbox.get(0)) is not None:
                batch.append(self._entry(item))
            for i in range(0, len(batch), self.batch_size):
                if self._abort.is_set():
                    break
                self.flush(batch[i:i + self.batch_size])

    def _full(self, batch: list[Entry], batch_bytes: int) -> bool:
        return len(batch) >= self.batch_size or batch_bytes >= self.max_batch_bytes

    def _entry(self, item: Inbound) -> Entry:
        self.metrics.counts["received"] += 1
        return self._validate(item)

    # ------------------------------------------------------------------------------ flush
    def flush(self, batch: list[Entry]) -> None:
        """Store a batch (retrying, splitting around refused points), acknowledge it, count
        it, and run the :attr:`on_stored` hooks."""
        if not batch:
            return
        t0 = time.monotonic()
        try:
            self._store(batch)
        except Aborted:
            log.info("stopping: %d message(s) not acknowledged, the broker keeps them",
                     len(batch))
            return
        self.metrics.record_write(time.monotonic() - t0)
        if self._abort.is_set():
            return
        letters = [e.dead for e in batch if e.dead is not None]
        if letters and self.deadletter_file is not None:
            try:
                self.deadletter_file.append(letters)
            except OSError as e:
                self.metrics.counts["deadletter_file_errors"] += 1
                if self._warn("dlfile"):
                    log.error("cannot append to dead-letter file %s: %s",
                              self.deadletter_file.path, e)
        self._ack([e.inbound for e in batch])
        self.metrics.record_stored(batch, letters)
        if letters and self._warn("dead"):
            d = letters[-1]
            log.warning("%d message(s) dead-lettered so far; latest from %r (%s): %s",
                        self.metrics.counts["rejected"], d.topic[:120], d.stage,
                        d.reason[:300])
        self.metrics.record_batch(time.monotonic() - batch[0].inbound.arrived)
        for hook in self.on_stored:
            try:
                hook(batch)
            except Exception:  # the batch is stored and acknowledged whatever a hook does
                self.metrics.counts["internal_errors"] += 1
                log.exception("on_stored hook %r failed on a batch of %d message(s)", hook,
                              len(batch))
