"""1-minute rollups of the ``levels`` points, kept indefinitely and energy-correct.

For every meter, channel and minute (UTC) the point ``levels_1m`` (retention policy
``forever`` by default) holds::

    ea          = SUM(ea)            A-weighted sound exposure, Pa²·s (energy adds)
    coverage    = SUM(coverage)      seconds of valid audio
    duration_s  = SUM(duration_s)    seconds of intervals received
    lafmax, lcpeak, lzpeak, lasmax = MAX(...)      dB
    lafmin      = MIN(lafmin)        dB
    n           = COUNT(seq)         intervals in the minute
    laeq        = 10·lg(SUM(ea) / (SUM(coverage)·p0²)),  p0 = 20 µPa

An interval belongs to the minute of its start (what ``GROUP BY time(1m)`` does).

Why not continuous queries: InfluxQL cannot take ``LOG10`` of an aggregate (``laeq`` would
need a second pass), and a CQ only recomputes recent intervals, so data that arrives late
(an edge outbox emptying after a network outage) would never reach the rollup. Instead the
collector marks the minutes each stored batch touched and recomputes a marked minute from the
stored 1 s points (one ``SELECT … GROUP BY time(1m)`` per series and run of minutes, or one
per 20 meters when many series were touched) once the minute is over by the collector's clock and
has been quiet for a settling delay. A live minute is so computed once, shortly after it
ends, not again with every second that arrives (at 10,000 series those scans would cost
InfluxDB more than the writes), and again whenever late data touches it. Re-writing a
rollup point overwrites it, so recomputing is idempotent, late data is folded in, and
several collectors sharing the load converge (the last one to touch a minute recomputes it
after its own write). Reading needs an account with READ on the database
(``tingbao_reader``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Iterable

from . import schema
from .influx import InfluxClient, InfluxError
from .lineprotocol import line
from .schema import where_tags

log = logging.getLogger("tingbao.collector.rollups")

P0 = 20e-6
"""Reference sound pressure, Pa."""
MINUTE_NS = schema.MINUTE_NS
MEASUREMENT = schema.LEVELS_1M
SOURCE = schema.LEVELS
TAGS = schema.SERIES_TAGS
AGGREGATES = schema.ROLLUP_AGGREGATES
STATEMENTS_PER_QUERY = 25
SERIES_PER_STATEMENT_LIMIT = 20
"""Above this many touched series in a run of minutes, a statement covers whole meters."""
METERS_PER_STATEMENT = 20
"""Meters (all their channels) per statement of a large recomputation; each such statement is
a query of its own, followed by a pause (see ``Rollups.pace``)."""


@dataclasses.dataclass(frozen=True, order=True)
class SeriesKey:
    """The tags of one ``levels`` series."""

    enterprise: str
    site: str
    meter: str
    channel: str

    def tags(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def minute_of(time_ns: int) -> int:
    """Start of the UTC minute holding ``time_ns``, ns."""
    return time_ns - time_ns % MINUTE_NS


def laeq(ea: float | None, coverage: float | None) -> float | None:
    """LAeq in dB from exposure (Pa²·s) and covered time (s); None when undefined (no
    exposure, no coverage, or zero energy)."""
    if ea is None or coverage is None or coverage <= 0 or ea <= 0:
        return None
    # in logarithms: coverage · p0² underflows to 0 for a (forged but valid) denormal coverage
    return 10.0 * (math.log10(ea) - math.log10(coverage)) - 20.0 * math.log10(P0)


def rollup_point(key: SeriesKey, minute_ns: int, agg: dict) -> str:
    """The ``levels_1m`` line of one minute from its aggregates (keys as in
    :data:`AGGREGATES` plus ``n``)."""
    fields: dict[str, object] = {}
    for name, _ in AGGREGATES:
        v = agg.get(name)
        fields[name] = None if v is None else float(v)
    fields["n"] = int(agg.get("n") or 0)
    fields["laeq"] = laeq(fields["ea"], fields["coverage"])
    return line(MEASUREMENT, key.tags(), fields, minute_ns)


def _select(source: str) -> str:
    return schema.rollup_select(source)


def _where(pairs) -> str:
    """``"tag" = 'value' AND …`` of (tag, value) pairs."""
    return where_tags(pairs)


def _group_by() -> str:
    return schema.rollup_group_by()


class Rollups:
    """Recomputes and writes ``levels_1m`` points.

    Args:
        reader: client with READ on the database (queries the 1 s points).
        writer: client with WRITE (writes the rollups).
        source_rp: retention policy of the ``levels`` points (None: the default one).
        target_rp: retention policy of the rollups (``forever``; None: the default one).
        settle_s: a touched minute is recomputed once it is over and was not touched for
            this long, seconds.
        max_pending: bound on remembered dirty minutes (the oldest are dropped beyond it).
        clock_ns: the wall clock, UTC ns (for tests).
        pace: after each query of a large recomputation, rest this many times as long as
            the query took, so that InfluxDB keeps time for the live writes (a fleet's
            minute closes for every series at once).
    """

    def __init__(self, reader: InfluxClient, writer: InfluxClient, *,
                 source_rp: str | None = None, target_rp: str | None = schema.RP_FOREVER,
                 settle_s: float = 1.0, max_pending: int = 200_000, clock_ns=time.time_ns,
                 pace: float = 1.0):
        self.reader = reader
        self.writer = writer
        self.source = schema.source(SOURCE, source_rp)
        self.target_rp = target_rp
        self.settle_s = settle_s
        self.max_pending = max_pending
        self.clock_ns = clock_ns
        self.pace = pace
        self._dirty: dict[tuple[SeriesKey, int], float] = {}
        self._lock = threading.Lock()
        self.written = 0
        self.errors = 0
        self.dropped = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------------- marking
    def touch(self, key: SeriesKey, time_ns: int) -> None:
        """Mark the minute holding ``time_ns`` of series ``key`` for recomputation."""
        now = time.monotonic()
        with self._lock:
            self._dirty.pop((key, minute_of(time_ns)), None)  # re-insert: newest last
            self._dirty[(key, minute_of(time_ns))] = now
            while len(self._dirty) > self.max_pending:
                self._dirty.pop(next(iter(self._dirty)))
                self.dropped += 1

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._dirty)

    def _take(self, force: bool) -> list[tuple[SeriesKey, int]]:
        """The dirty minutes that are due: quiet for ``settle_s`` and over by ``settle_s``
        (all of them with ``force``)."""
        limit = time.monotonic() - (0.0 if force else self.settle_s)
        open_from = (math.inf if force
                     else self.clock_ns() - int(self.settle_s * 1e9) - MINUTE_NS)
        with self._lock:
            due = [k for k, t in self._dirty.items() if t <= limit and k[1] <= open_from]
            for k in due:
                del self._dirty[k]
        return due

    def _give_back(self, keys: Iterable[tuple[SeriesKey, int]]) -> None:
        with self._lock:
            for k in keys:
                self._dirty.setdefault(k, 0.0)

    # ---------------------------------------------------------------------- computing
    def run_due(self, force: bool = False) -> int:
        """Recompute the minutes that settled (all of them with ``force``); returns the
        number of rollup points written. On an InfluxDB error the minutes stay marked and
        the error is raised."""
        due = self._take(force)
        if not due:
            return 0
        try:
            return self._recompute(due)
        except InfluxError as e:
            self._give_back(due)
            self.errors += 1
            self.last_error = str(e)
            raise

    def _recompute(self, keys: list[tuple[SeriesKey, int]]) -> int:
        """One statement per series and run of minutes when few series were touched (up to
        25 statements a query); when many were (a fleet's live minute: thousands of tiny
        statements would cost InfluxDB far more than a scan), one statement per 20 meters
        with all their channels, each its own query followed by a pause."""
        small, large = [], []
        for first, last, series in _runs(keys):
            span = f"time >= {first} AND time < {last + MINUTE_NS}"
            if len(series) > SERIES_PER_STATEMENT_LIMIT:
                meters = sorted({(k.enterprise, k.site, k.meter) for k in series})
                for i in range(0, len(meters), METERS_PER_STATEMENT):
                    cond = " OR ".join(f"({_where(zip(TAGS, m, strict=False))})"
                                       for m in meters[i:i + METERS_PER_STATEMENT])
                    large.append(f"{_select(self.source)} WHERE ({cond}) AND {span} "
                                 f"{_group_by()}")
                continue
            for key in sorted(series):
                small.append(f"{_select(self.source)} WHERE {_where(key.tags().items())} AND "
                             f"{span} {_group_by()}")
        written = 0
        for i in range(0, len(small), STATEMENTS_PER_QUERY):
            written += self._query_and_write("; ".join(small[i:i + STATEMENTS_PER_QUERY]))
        for n, statement in enumerate(large):
            t0 = time.monotonic()
            written += self._query_and_write(statement)
            if self.pace > 0 and n + 1 < len(large):
                time.sleep(min(self.pace * (time.monotonic() - t0), 5.0))
        return written

    def recompute_range(self, start_ns: int, end_ns: int) -> int:
        """Recompute every series' minutes in [start_ns, end_ns) (catch-up after a start,
        backfill); returns the number of rollup points written."""
        written = 0
        t = minute_of(start_ns)
        while t < end_ns:
            stop = min(t + 60 * MINUTE_NS, end_ns)
            written += self._query_and_write(
                f"{_select(self.source)} WHERE time >= {t} AND time < {stop} {_group_by()}")
            t = stop
        return written

    def _query_and_write(self, q: str) -> int:
        lines = []
        for series in self.reader.query(q, epoch="ns"):
            try:
                key = SeriesKey(**{t: series.tags[t] for t in TAGS})
            except KeyError:
                continue
            for row in series.rows:
                lines.append(rollup_point(key, int(row["time"]), row))
        if lines:
            self.writer.write(lines, rp=self.target_rp)
        self.written += len(lines)
        return len(lines)


def _runs(keys: Iterable[tuple[SeriesKey, int]]):
    """(first minute, last minute, series touched) of each run of consecutive minutes."""
    by_minute: dict[int, set[SeriesKey]] = {}
    for key, minute in keys:
        by_minute.setdefault(minute, set()).add(key)
    run: list[int] = []
    for minute in sorted(by_minute):
        if run and minute != run[-1] + MINUTE_NS:
            yield run[0], run[-1], set().union(*(by_minute[m] for m in run))
            run = []
        run.append(minute)
    if run:
        yield run[0], run[-1], set().union(*(by_minute[m] for m in run))


class RollupThread(threading.Thread):
    """Runs :meth:`Rollups.run_due` every ``interval`` seconds, backing off on errors;
    :meth:`stop` makes a last forced pass. First it recomputes the last ``catchup_minutes``
    of every series: a previous run may have stopped before it rolled up what it stored."""

    def __init__(self, rollups: Rollups, interval: float = 0.5, max_backoff: float = 30.0,
                 catchup_minutes: int = 0):
        super().__init__(name="tingbao-rollups", daemon=True)
        self.rollups = rollups
        self.interval = interval
        self.max_backoff = max_backoff
        self.catchup_minutes = catchup_minutes
        self._stop_event = threading.Event()

    def _catch_up(self) -> None:
        if self.catchup_minutes <= 0:
            return
        now = time.time_ns()
        try:
            n = self.rollups.recompute_range(now - self.catchup_minutes * MINUTE_NS,
                                             now + MINUTE_NS)
            log.info("rollups: recomputed %d minute point(s) of the last %d minutes", n,
                     self.catchup_minutes)
        except Exception as e:  # the collector works without it
            log.warning("rollups: catch-up at start failed: %s", e)

    def run(self) -> None:
        self._catch_up()
        delay = self.interval
        while not self._stop_event.wait(delay):
            try:
                self.rollups.run_due()
                delay = self.interval
            except InfluxError as e:
                log.warning("rollup failed (will retry): %s", e)
                delay = min(max(delay * 2, 1.0), self.max_backoff)
            except Exception:  # never let the thread die
                log.exception("rollup failed")
                delay = self.max_backoff

    def stop(self, final: bool = True, timeout: float = 10.0) -> None:
        self._stop_event.set()
        self.join(timeout)
        if final:
            try:
                self.rollups.run_due(force=True)
            except Exception as e:  # best effort at shutdown
                log.warning("last rollup pass failed: %s", e)
