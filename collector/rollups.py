"""1-minute rollups of the ``levels`` points, kept indefinitely and energy-correct.

For every meter, channel and minute (UTC) the point ``levels_1m`` (retention policy
``forever`` by default) holds::

    ea          = SUM(ea)            A-weighted sound exposure, Pa²·s (energy adds)
    coverage    = SUM(coverage)      seconds of valid audio
    duration_s  = SUM(duration_s)    seconds of intervals received
    lafmax, lcpeak, lzpeak, lasmax = MAX(...)      dB
    lafmin      = MIN(lafmin)        dB
    n           = COUNT(seq)         intervals in the minute
    imp_<T>     = SUM(imp_<T>)       impulse counts, integers, for every threshold T stored
                                     (``SUM(/^imp_/)``, schema.ROLLUP_SUMMED_PREFIXES)
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
(``tingbao_reader``); deleting markers needs WRITE (the collector's writer account).

**Durable bookkeeping** (the guarantee): a minute owed a rollup is written down in InfluxDB
*before* the batch that touched it is acknowledged, whatever the minute's age, so a
collector killed at any point leaves nothing stale for good::

    batch ──POST /write: data lines + one rollups_due marker per (series, minute) not yet
            marked by this collector──▶ 204 ──▶ PUBACK
    rollup pass (quiet, settled minutes) ──SELECT levels … GROUP BY time(1m)──▶ write levels_1m
    clean (when idle, else every ``clean_s``) ──▶ DELETE FROM rollups_due WHERE writer = me
            AND time in a run of finished minutes
    at start and every ``scan_s`` ──SELECT rollups_due (any age)──▶ own markers (same client
            id: a previous run of this collector) and orphans (another collector's markers
            older than ``orphan_s``) are recomputed and deleted

A marker is ``rollups_due,enterprise,site,meter,channel,writer=<client id> at=<ns>`` at the
minute's start, in the data's retention policy (:data:`schema.ROLLUPS_DUE`); one ``/write``
holds the data and its markers, so both are stored before the acknowledgement (one per
series and minute per collector: ~170 points/s at 10,000 records/s, not one per record).

Race handling (a marker must not be deleted unless a rollup query that started after the
marked data was stored has been written):

* *own markers* are exact. The worker registers a batch's minutes as in flight before its
  ``/write`` (:meth:`Rollups.mark`) and as stored after it (:meth:`Rollups.stored`); a pass
  takes only minutes whose last write completed ``settle_s`` before, and a minute's marker
  may go only if no write touched it since the pass took it (else it stays, and the next
  pass redoes it). Deletes are deferred and batched (:meth:`Rollups.clean`): an InfluxDB 1.x
  ``DELETE`` costs about the same for one minute as for many, and one statement per series
  would stall the live writes. While every marker of this writer is known (an untruncated
  scan at start, no bookkeeping dropped since) one statement per run of finished minutes
  that holds no owed minute (``writer`` and time only), else one per 100 series. While a
  delete is under way, a write that touches its minutes waits for it, so a marker written
  meanwhile is never the one deleted.
* *orphans* (another client id's markers, taken over only once their ``at`` is older than
  ``orphan_s``, far beyond any write's time-out; a collector re-writes a marker it still
  holds at half that age, so a live collector's markers are not taken over while it keeps
  touching the minute; their markers are deleted right after the pass that recomputed
  them): between that pass's rollup query and its delete (milliseconds) that collector, if
  still alive, could store late data for the same minute; it then still has the minute
  in memory and recomputes it itself, so a stale minute needs two faults (that collector
  also dies before its own pass) inside that window.

Peers may recompute the same minute twice, which is harmless (idempotent overwrites).
``catchup_minutes`` (the recomputation of the last minutes of every series at start) stays as
a safety net for data stored without markers (by an older collector, or written directly).
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Iterable

from . import schema
from .influx import InfluxClient, InfluxError
from .lineprotocol import line
from .schema import where_any, where_tags

log = logging.getLogger("tingbao.collector.rollups")

P0 = 20e-6
"""Reference sound pressure, Pa."""
MINUTE_NS = schema.MINUTE_NS
MEASUREMENT = schema.LEVELS_1M
SOURCE = schema.LEVELS
TAGS = schema.SERIES_TAGS
AGGREGATES = schema.ROLLUP_AGGREGATES
SUMMED_PREFIXES = schema.ROLLUP_SUMMED_PREFIXES
STATEMENTS_PER_QUERY = 25
SERIES_PER_STATEMENT_LIMIT = 20
"""Above this many touched series in a run of minutes, a statement covers whole meters."""
METERS_PER_STATEMENT = 20
"""Meters (all their channels) per statement of a large recomputation; each such statement is
a query of its own, followed by a pause (see ``Rollups.pace``)."""
MARKERS = schema.ROLLUPS_DUE
WRITER = schema.MARKER_WRITER
AT = schema.MARKER_AT
SERIES_PER_DELETE = 100
"""Series conditions per ``DELETE`` statement of markers (when not a whole minute)."""


@dataclasses.dataclass(frozen=True, order=True)
class SeriesKey:
    """The tags of one ``levels`` series."""

    enterprise: str
    site: str
    meter: str
    channel: str

    def tags(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Marks:
    """The bookkeeping of one write (:meth:`Rollups.mark`): the (series, minute) keys it
    touches, those this collector had not marked yet, and their marker lines (to append to
    the write's data lines)."""

    keys: list[tuple[SeriesKey, int]]
    new: list[tuple[SeriesKey, int]]
    lines: list[str]
    at: int = 0


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
    :data:`AGGREGATES` plus ``n``, and ``sum_<field>`` for the fields of
    :data:`schema.ROLLUP_SUMMED_PREFIXES`, written as integer ``<field>``)."""
    fields: dict[str, object] = {}
    for name, _ in AGGREGATES:
        v = agg.get(name)
        fields[name] = None if v is None else float(v)
    for col, v in agg.items():
        name = col[4:]
        if v is not None and col.startswith("sum_") and name.startswith(SUMMED_PREFIXES):
            fields[name] = int(v)
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
        max_pending: bound on remembered dirty minutes (the oldest are dropped beyond it;
            their markers stay in InfluxDB and the next scan brings them back).
        clock_ns: the wall clock, UTC ns (for tests).
        writer_id: the ``writer`` tag of this collector's markers (its MQTT client id: a
            restarted collector finishes its own markers at once).
        orphan_s: another writer's marker is taken over once its ``at`` is this old, s.
        clean_s: while minutes are owed, the markers of finished ones are deleted at most
            this often, s (at once when none is owed).
        pace: after each query of a large recomputation, rest this many times as long as
            the query took, so that InfluxDB keeps time for the live writes (a fleet's
            minute closes for every series at once).
    """

    def __init__(self, reader: InfluxClient, writer: InfluxClient, *,
                 source_rp: str | None = None, target_rp: str | None = schema.RP_FOREVER,
                 settle_s: float = 1.0, max_pending: int = 200_000, clock_ns=time.time_ns,
                 pace: float = 1.0, writer_id: str = "collector", orphan_s: float = 600.0,
                 clean_s: float = 30.0):
        self.reader = reader
        self.writer = writer
        self.source = schema.source(SOURCE, source_rp)
        self.target_rp = target_rp
        self.settle_s = settle_s
        self.max_pending = max_pending
        self.clock_ns = clock_ns
        self.pace = pace
        self.source_rp = source_rp
        self.marker_source = schema.source(MARKERS, source_rp)
        self.writer_id = writer_id
        self.orphan_s = orphan_s
        self._dirty: dict[tuple[SeriesKey, int], float] = {}
        """(series, minute) → monotonic time of its last stored write (inf: in flight)."""
        self._marked: dict[tuple[SeriesKey, int], int] = {}
        """Keys whose marker of this writer is stored and not yet deleted → its ``at``."""
        self._foreign: dict[tuple[SeriesKey, int], set[str]] = {}
        """Orphaned keys taken over from other writers → those writers."""
        self._complete = False
        """Every marker of this writer in InfluxDB is known (untruncated scan, none dropped)."""
        self._done: set[tuple[SeriesKey, int]] = set()
        """Own keys recomputed since their last write whose markers are not deleted yet."""
        self._foreign_done: dict[tuple[SeriesKey, int], set[str]] = {}
        self._deleting: set[tuple[SeriesKey, int]] = set()
        self._deleting_spans: list[tuple[int, int]] = []
        self._cleaned = time.monotonic()
        self.clean_s = clean_s
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.written = 0
        self.errors = 0
        self.dropped = 0
        self.markers_written = 0
        self.markers_deleted = 0
        self.deletes = 0
        self.orphans = 0
        self.scans = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------------- marking
    def touch(self, key: SeriesKey, time_ns: int) -> None:
        """Mark the minute holding ``time_ns`` of series ``key`` for recomputation, in memory
        only (tools and tests; the collector marks durably with :meth:`mark`)."""
        with self._lock:
            self._set((key, minute_of(time_ns)), time.monotonic())

    def _set(self, k: tuple[SeriesKey, int], t: float) -> None:
        """(under the lock) ``k`` dirty since ``t``; beyond ``max_pending`` the oldest key is
        forgotten (its marker stays in InfluxDB, found again by the next scan)."""
        self._dirty.pop(k, None)  # re-insert: newest last
        self._dirty[k] = t
        while len(self._dirty) > self.max_pending:
            old = next(iter(self._dirty))
            del self._dirty[old]
            self._marked.pop(old, None)
            self._complete = False
            self.dropped += 1

    def mark(self, spans: Iterable[tuple[SeriesKey, int, int]]) -> Marks:
        """Before a write of levels records (``(series, start ns, end ns)`` each): their
        minutes are in flight (no pass takes them) and the marker lines of those this
        collector has not marked yet are returned, to be written in the same request. Waits
        while a delete of the same minutes' markers is under way. Call :meth:`stored`
        after the write, whatever its outcome."""
        keys = list(dict.fromkeys((k, minute_of(start)) for k, start, _ in spans))
        if not keys:
            return Marks([], [], [])
        with self._cond:
            while (self._deleting or self._deleting_spans) and any(
                    k in self._deleting or any(a <= k[1] < b for a, b in self._deleting_spans)
                    for k in keys):
                self._cond.wait(1.0)
            for k in keys:
                self._set(k, math.inf)
            at = self.clock_ns()
            stale = at - int(self.orphan_s * 5e8)  # refreshed at half the orphan age
            new = [k for k in keys if self._marked.get(k, stale) <= stale]
        lines = [line(MARKERS, {**key.tags(), WRITER: self.writer_id}, {AT: at}, minute)
                 for key, minute in new]
        return Marks(keys, new, lines, at)

    def stored(self, marks: Marks, ok: bool) -> None:
        """After the write of :meth:`mark`'s batch: its minutes are dirty from now on (the
        settling delay runs from here); with ``ok`` their markers are stored."""
        if not marks.keys:
            return
        now = time.monotonic()
        with self._lock:
            for k in marks.keys:
                self._set(k, now)
            if ok:
                self._marked.update(dict.fromkeys(marks.new, marks.at))
                self.markers_written += len(marks.new)

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
        """Recompute the minutes that settled (all of them with ``force``), then delete the
        markers of finished minutes when it is time (:meth:`clean`; at once with
        ``force``); returns the number of rollup points written. On an InfluxDB error the
        minutes stay marked and the error is raised."""
        due = self._take(force)
        written = 0
        if due:
            try:
                written = self._recompute(due)
            except InfluxError as e:
                self._give_back(due)
                self.errors += 1
                self.last_error = str(e)
                raise
            self._finished(due)
        self.clean(force or bool(self._foreign_done))  # orphans: right after their pass
        return written

    # ------------------------------------------------------------------------- markers
    def _finished(self, done: list[tuple[SeriesKey, int]]) -> None:
        """Minutes just recomputed: their markers may go (:meth:`clean`), unless a write
        touched them since they were taken (then they stay dirty and marked)."""
        with self._lock:
            for k in done:
                if k in self._dirty:
                    continue
                if k in self._marked or not self._complete:
                    self._done.add(k)
                self._marked.pop(k, None)
                if k in self._foreign:
                    self._foreign_done.setdefault(k, set()).update(self._foreign.pop(k))

    def clean(self, force: bool = False) -> None:
        """Delete the markers of finished minutes: at once with ``force`` or when nothing is
        owed (idle), else at most every ``clean_s`` seconds (a ``DELETE`` costs InfluxDB
        about as much for one minute as for many). While every marker of this writer is
        known, one statement per run of finished minutes between owed ones (``writer`` and
        time only; a finished key of a minute still owed waits for that minute), else one
        per 100 series; orphans one statement each. A write of a
        minute being deleted waits for the delete. A failed delete is logged and retried at
        the next clean (the markers stay meanwhile)."""
        if not (self._done or self._foreign_done):
            return
        if not force and self._dirty and time.monotonic() - self._cleaned < self.clean_s:
            return
        with self._cond:
            self._cleaned = time.monotonic()
            dirty = set(self._dirty)
            owed = sorted({m for _, m in dirty})
            ranges: dict[int, list[int]] = {}  # gap between owed minutes → [first, last]
            single: list[tuple[SeriesKey, int]] = []
            later: set[tuple[SeriesKey, int]] = set()
            for key, m in self._done:
                i = bisect.bisect_left(owed, m)
                if not self._complete:
                    if (key, m) not in dirty:
                        single.append((key, m))
                    else:
                        later.add((key, m))
                elif i < len(owed) and owed[i] == m:
                    later.add((key, m))  # its minute is still owed: with that minute's run
                else:
                    r = ranges.setdefault(i, [m, m])
                    r[0], r[1] = min(r[0], m), max(r[1], m)
            done = self._done - later
            self._done = later
            foreign = {k: w for k, w in self._foreign_done.items() if k not in dirty}
            for k in foreign:
                del self._foreign_done[k]
            spans = [(first, last + MINUTE_NS) for first, last in ranges.values()]
            self._deleting = set(single) | set(foreign)
            self._deleting_spans = spans
        measurement = schema.quote_ident(MARKERS)
        me = where_tags([(WRITER, self.writer_id)])
        statements = [f"DELETE FROM {measurement} WHERE {me} AND time >= {a} AND time < {b}"
                      for a, b in sorted(spans)]
        by_minute: dict[int, list[SeriesKey]] = {}
        for key, m in single:
            by_minute.setdefault(m, []).append(key)
        for m, keys in sorted(by_minute.items()):
            keys.sort()
            for i in range(0, len(keys), SERIES_PER_DELETE):
                cond = " OR ".join(f"({_where(k.tags().items())})"
                                   for k in keys[i:i + SERIES_PER_DELETE])
                statements.append(f"DELETE FROM {measurement} WHERE {me} AND ({cond}) AND "
                                  f"time >= {m} AND time < {m + MINUTE_NS}")
        for (key, m), writers in sorted(foreign.items()):
            statements.append(f"DELETE FROM {measurement} WHERE "
                              f"{where_any(WRITER, sorted(writers))} AND "
                              f"{_where(key.tags().items())} AND time >= {m} AND "
                              f"time < {m + MINUTE_NS}")
        try:
            for i in range(0, len(statements), STATEMENTS_PER_QUERY):
                self.writer.query("; ".join(statements[i:i + STATEMENTS_PER_QUERY]))
            self.markers_deleted += len(done) + len(foreign)
            self.deletes += len(statements)
        except InfluxError as e:
            self.errors += 1
            self.last_error = f"deleting rollup markers: {e}"
            log.warning("rollups: deleting the markers of %d finished minute(s) failed (they "
                        "stay, the delete is retried): %s", len(done) + len(foreign), e)
            with self._lock:
                self._done |= done
                for k, w in foreign.items():
                    self._foreign_done.setdefault(k, set()).update(w)
        finally:
            with self._cond:
                self._deleting = set()
                self._deleting_spans = []
                self._cond.notify_all()

    def scan(self) -> int:
        """Read the outstanding markers (any age): this writer's (a previous run's, or ones
        whose delete failed) and other writers' older than ``orphan_s`` become dirty minutes
        due at once. Returns how many keys it added. An untruncated scan makes every marker
        of this writer known (whole-minute deletes allowed). Once that is so, later scans
        skip the last two minutes and the settling delay (the live minutes' markers, which
        this collector knows or which are not orphans yet)."""
        limit = max(1000, self.max_pending - self.pending)
        cols = ", ".join(schema.quote_ident(c) for c in (AT, WRITER, *TAGS))
        now = self.clock_ns()
        dropped = self.dropped
        where = (f" WHERE time < {now - 2 * MINUTE_NS - int(self.settle_s * 1e9)}"
                 if self._complete else "")
        rows = self.reader.query_rows(
            f"SELECT {cols} FROM {self.marker_source}{where} LIMIT {limit}", epoch="ns")
        oldest = now - int(self.orphan_s * 1e9)
        added = 0
        with self._lock:
            for r in rows:
                try:
                    k = (SeriesKey(*(str(r[t]) for t in TAGS)), int(r["time"]))
                    writer, at = str(r[WRITER]), int(r.get(AT) or 0)
                except (KeyError, TypeError, ValueError):
                    continue
                if k in self._done if writer == self.writer_id else (
                        writer in self._foreign_done.get(k, ())):
                    continue  # finished, its marker waits for the next clean
                if writer == self.writer_id:
                    self._marked[k] = max(at, self._marked.get(k, 0))
                elif at <= oldest:
                    if k not in self._foreign:
                        self.orphans += 1
                    self._foreign.setdefault(k, set()).add(writer)
                else:
                    continue
                if k not in self._dirty:
                    self._set(k, 0.0)
                    added += 1
            self._complete = len(rows) < limit and self.dropped == dropped
            self.scans += 1
        return added

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
    of every series (a safety net for data stored without markers); then it scans the
    outstanding markers (:meth:`Rollups.scan`) at once and every ``scan_s`` seconds (every
    5 s while a scan fails): a previous run, or a dead peer, may have stopped before it
    rolled up what it stored."""

    def __init__(self, rollups: Rollups, interval: float = 0.5, max_backoff: float = 30.0,
                 catchup_minutes: int = 0, scan_s: float = 60.0):
        super().__init__(name="tingbao-rollups", daemon=True)
        self.rollups = rollups
        self.interval = interval
        self.max_backoff = max_backoff
        self.catchup_minutes = catchup_minutes
        self.scan_s = scan_s
        self._stop_event = threading.Event()

    def _scan(self) -> bool:
        try:
            n = self.rollups.scan()
        except Exception as e:  # retried soon
            log.warning("rollups: reading the outstanding markers failed: %s", e)
            return False
        if n:
            log.info("rollups: %d minute(s) owed a rollup found in %s", n, MARKERS)
        return True

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
        next_scan = time.monotonic()
        while True:
            if time.monotonic() >= next_scan:
                ok = self._scan()
                next_scan = time.monotonic() + (self.scan_s if ok else min(5.0, self.scan_s))
            if self._stop_event.wait(delay):
                break
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
