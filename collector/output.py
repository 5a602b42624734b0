"""The InfluxDB output: stores a batch of entries, retrying until the database accepts it
and splitting it around the points it refuses.

::

    store(batch) ──POST /write (all lines)──▶ InfluxDB ──204──▶ return (the caller acknowledges)
                     │ down, 5xx, timeout, 401/403/404: wait, retry (0.1 s, doubling, capped)
                     │ 400 (a refused point): halves, each written or split again, until the
                     │     refused message is alone ──▶ its dead letter (InfluxDB's message)

* **Retries**: a transient InfluxDB error (down, 5xx, timeout) or a configuration error
  (401/403/404) keeps the batch and retries it with exponential back-off (capped at
  ``retry_cap_s``); :meth:`InfluxOutput.store` does not return meanwhile, so nothing is
  acknowledged and the messages wait in the broker. The collector stopping without a flush
  (or running out of stop time) ends the wait with :class:`~.delivery.Aborted`.
* **Data errors** (HTTP 400): the batch is split in halves until the refused message is
  found; it becomes a dead letter (stage ``store``) with InfluxDB's message, and every other
  message of the batch is stored. A refused dead letter (cannot happen with the lines
  :mod:`.deadletter` makes) is logged and dropped rather than retried forever.
* **Rollup markers**: with ``rollups`` (a :class:`~.rollups.Rollups`), every write also
  carries the ``rollups_due`` markers of the minutes its levels records touched
  (:meth:`.rollups.Rollups.mark`), so the minutes owed a rollup are stored in the same
  request as the data, before the acknowledgement; a split part carries its own.
* Writes are idempotent: a point is (measurement, tags, time), so writing a part twice, or a
  re-delivered message again, overwrites the same points.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .delivery import Aborted
from .influx import ConfigError, DataError, InfluxClient, TransientError
from .metrics import Every, Metrics

if TYPE_CHECKING:
    from .mqtt_input import Inbound
    from .rollups import Rollups
    from .validation import Entry

log = logging.getLogger("tingbao.collector.output")


class InfluxOutput:
    """Writes batches through ``client`` (to retention policy ``retention``, or the
    database's default). ``dead_letter(inbound, stage, reason)`` makes the dead letter of a
    refused message (:meth:`.validation.Validator.dead_letter`). Counts ``retries``,
    ``splits`` and ``dead_letter_failed`` into ``metrics``; a failed write becomes
    ``metrics.last_error``. ``abort`` set: give up the batch in hand. ``rollups``: write the
    batch's rollup markers with its data (see the module docstring)."""

    def __init__(self, client: InfluxClient, metrics: Metrics, abort: threading.Event, *,
                 dead_letter: Callable[[Inbound, str, str], Entry],
                 retention: str | None = None, retry_cap_s: float = 10.0,
                 rollups: Rollups | None = None):
        self.client = client
        self.rollups = rollups
        self.metrics = metrics
        self.retention = retention
        self.retry_cap_s = retry_cap_s
        self._abort = abort
        self._dead_letter = dead_letter
        self._warn = Every(10.0)

    def store(self, batch: list[Entry]) -> None:
        """Write all entries; on a data error split the batch and turn each refused message
        into a dead letter carrying InfluxDB's message (the entry is changed in place).
        Returns once everything is stored; raises :class:`Aborted` if the collector gives
        up first."""
        counts = self.metrics.counts
        parts = [batch]
        while parts:
            part = parts.pop(0)
            lines = [ln for e in part for ln in e.lines]
            marks = (self.rollups.mark(s for e in part for s in e.spans)
                     if self.rollups is not None else None)
            ok = False
            try:
                self.write(lines + marks.lines if marks is not None else lines)
                ok = True
            except DataError as e:
                if len(part) > 1:
                    counts["splits"] += 1
                    half = len(part) // 2
                    parts[0:0] = [part[:half], part[half:]]
                    continue
                entry = part[0]
                if entry.dead is None:
                    dead = self._dead_letter(entry.inbound, "store",
                                             f"InfluxDB refused the point: {e.message}")
                    entry.lines, entry.dead, entry.spans = dead.lines, dead.dead, []
                    parts.insert(0, [entry])
                else:  # cannot happen with valid dead-letter lines; never loop on it
                    counts["dead_letter_failed"] += 1
                    log.error("InfluxDB refused a dead letter (%s); it is only logged: %s",
                              e.message, entry.dead.to_json())
                    entry.lines = []
            finally:
                if marks is not None:
                    self.rollups.stored(marks, ok)

    def write(self, lines: list[str]) -> None:
        """One write, retried with exponential back-off on transient and configuration
        errors until it succeeds or the collector aborts; a data error is raised."""
        if not lines:
            return
        delay = 0.1
        while True:
            if self._abort.is_set():
                raise Aborted
            try:
                self.client.write(lines, rp=self.retention)
                return
            except (TransientError, ConfigError) as e:
                self.metrics.counts["retries"] += 1
                self.metrics.last_error = str(e)
                if self._warn("write"):
                    log.warning("InfluxDB write of %d line(s) failed, retrying in %.1f s "
                                "(messages wait in the broker): %s", len(lines), delay, e)
                if self._abort.wait(delay):
                    raise Aborted from None
                delay = min(delay * 2, self.retry_cap_s)
