"""An inspector's recording into the store: ``tingbao import`` (:mod:`.import_cli`) does the
work through these functions.

A WAV/FLAC recording from a handheld or personal meter is measured by the edge's IEC 61672-1
class 1 meter (:class:`~tingbao.edge.meter.SoundLevelMeter`, 1 s intervals) counting
impulses as a live agent does by default (:mod:`tingbao.edge.impulses`: C-weighted peak
events at :data:`contract.IMPULSE_THRESHOLDS_DB` = 120, 130, 135, 137, 140 dB, 0.5 s
refractory time), so an imported day has the GBZ 2.2 impulse count n of its peak limit.
Each interval becomes the ``levels`` payload a live agent would publish, impulse counts
included (:func:`contract.levels_payload`, or :func:`contract.levels_payload_channels` for a
multichannel meter; stored as ``imp_<threshold>`` fields, summed in ``levels_1m``), goes
through :func:`contract.validate` exactly as a live message does, becomes the same line
protocol (:func:`.lineprotocol.message_lines`) and is written to the deployment's InfluxDB
with its ``rollups_due`` markers (:meth:`.rollups.Rollups.mark`); the ``levels_1m`` minutes it
touched are then recomputed by the collector's own rollup code
(:meth:`.rollups.Rollups.run_due`), since analysis sums closed minutes from ``levels_1m``.

What is checked, and what happens (every refusal is a :class:`ImportRefused`, a
``ValueError`` whose one line says what to do; ``tingbao import`` prints it, exit status 2):

* **Meter**: ``--meter`` must be in the site registry (else the known meters are named, per
  enterprise); its enterprise and site come from the registry, as do its channels (the
  recording must have as many) and its calibration ``pa_per_unit``.
* **Calibration**: ``--pa-per-unit S`` or ``--calibrator CAL --calibrator-level 94`` (S from a
  calibrator recording on the same chain, :func:`tingbao.edge.calibration.read_calibrator`)
  override the registry's value; the registry's is the default. With none of them the import
  is **refused**: uncalibrated levels would enter the store looking like sound pressure
  levels of the workplace (a ``calibrated = false`` point is still summed by analysis), so
  every stored imported point has ``calibrated = true``.
* **Period**: ``--start`` is ISO 8601 with an offset or ``Z``; a time without one is taken in
  the deployment's ``[deployment] timezone`` (Asia/Shanghai unless set). A start before
  :data:`contract.EARLIEST_NS` (2000-01-01), or a start or an end (start + the recording's
  length) later than now + :data:`contract.FUTURE_TOLERANCE_S`, is refused before anything is
  written.
* **Audio**: a file libsndfile cannot read, or one cut short, is refused
  (:class:`~tingbao.edge.sources.chunk.SourceError` names the file and the remedy); so is a
  sample rate below :data:`tingbao.edge.iec61672.MIN_SAMPLERATE` (44.1 kHz: the class 1 A/C
  weighting filters need it up to 20 kHz). The registry's ``samplerate_hz`` is the live
  device's and need not match the inspector's recorder.
* **Retention**: a recording that starts before the retention of the 1 s points
  (``levels_1s``, 90 days unless the deployment set another) is refused: InfluxDB would drop
  the points, and the minute rollups are computed from them.
* **Overlap**: if the meter already has ``levels`` points in the period that are not this
  import's own (a live agent's, or an import of a recording with another start), the import is
  refused: their exposure and the recording's would add up twice.
* **Intervals**: an interval holding corrupt samples (NaN or infinite: a damaged chunk of a
  float file) is refused with stage ``audio``; one that :func:`contract.validate` refuses
  (e.g. a level outside 0 … 200 dB from a wrong S) with stage ``contract``; one InfluxDB
  refuses with stage ``store``. Each refused interval is written as a dead letter
  (:class:`.deadletter.DeadLetter`, collector tag ``tingbao-import``, with its payload) and
  reported; **the good intervals are stored**. With ``--bands``, a band level outside the
  range (a quiet band below 0 dB) is stored as null, as the edge agent sends it. A last
  interval shorter than 1 s (the recording is not a whole number of seconds) is stored with
  its true coverage, as an agent stores the interval it is stopped in.

Identity and re-imports. A point is (meter, channel, interval start): interval ``i`` of the
recording starts at ``start + i`` seconds and carries ``seq = IMPORT_SEQ_BASE + i``
(:data:`.schema.IMPORT_SEQ_BASE` = 2⁶², a range no agent's outbox reaches) and the field
``imported = true`` (:data:`.schema.IMPORTED`); the tags stay enterprise, site, meter,
channel, so analysis sees one series. Importing the same recording with the same start again
writes the same points (overwrites, never doubles), and the minutes are recomputed. The same
recording with another start is another period: it is refused where it overlaps the first
import's points (the overlap check above), otherwise stored beside it; delete a wrong import
before importing it again (``DELETE FROM levels WHERE meter = '…' AND time >= … AND time <
…`` and the same on ``levels_1m`` of retention policy ``forever``).

Durability. The ``rollups_due`` markers of a batch are written in the same ``/write`` as its
points, under the writer id ``tingbao-import-<host>-<pid>``; the markers go once the minutes
are recomputed. An import that dies in between leaves them for a running collector, which
takes over another writer's markers after its ``orphan_s`` (600 s) and recomputes those
minutes; running the same import again also recomputes them (its own writer id leaves the
dead run's markers to the collector). Nothing to clean by hand either way.

Units: levels dB re 20 µPa (A-weighted where the name says A), exposure EA in Pa²·s, times
in UTC ns unless said otherwise, durations in seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
import os
import re
import socket
import time
import zoneinfo
from collections.abc import Callable, Sequence

import numpy as np

from tingbao.edge import contract
from tingbao.edge.iec61672 import MIN_SAMPLERATE
from tingbao.edge.impulses import DEFAULT_REFRACTORY_S
from tingbao.edge.levels import leq_from_exposure, lex_8h
from tingbao.edge.meter import IntervalLevels, SoundLevelMeter
from tingbao.edge.sources.chunk import SourceError
from tingbao.edge.sources.files import FileSource

from . import schema
from .deadletter import DeadLetter, UniqueClock
from .influx import DataError, InfluxClient, InfluxError
from .lineprotocol import LineProtocolError, message_lines
from .registry.site import Meter, Registry
from .rollups import Rollups, SeriesKey

__all__ = ["INTERVAL_S", "IMPULSE_THRESHOLDS_DB", "IMPULSE_REFRACTORY_S", "DEAD_LETTER_TAG",
           "ImportRefused", "ImportPlan", "ImportResult",
           "Refusal", "find_meter", "parse_start", "check_period", "check_samplerate",
           "plan_import", "existing_conflicts", "check_retention", "retention_ns",
           "import_recording"]

INTERVAL_S = 1.0
"""Interval length of imported levels, s (the live agents' default)."""
IMPULSE_THRESHOLDS_DB = contract.IMPULSE_THRESHOLDS_DB
"""Impulse-count thresholds of imported levels, dB re 20 µPa C-weighted peak (the live
agents' default: 120, 130, 135, 137, 140)."""
IMPULSE_REFRACTORY_S = DEFAULT_REFRACTORY_S
"""Quiet time below a threshold before a new impulse counts, s (the edge's default, 0.5)."""
DEAD_LETTER_TAG = "tingbao-import"
"""``collector`` tag of the dead letters an import writes."""
BATCH_INTERVALS = 600
"""Intervals per ``/write`` (10 minutes of a meter)."""
SCAN_WINDOW_NS = 6 * 3600 * 10**9
"""The overlap check reads the meter's existing points in windows of this length, ns."""

IMPORT_SEQ_BASE = schema.IMPORT_SEQ_BASE
_NS = 1_000_000_000


class ImportRefused(ValueError):
    """The import cannot go ahead; the text says why and what to do."""


@dataclasses.dataclass(frozen=True)
class ImportPlan:
    """What a recording becomes: ``meter`` (the registry entry: enterprise, site, id),
    ``pa_per_unit`` (S in Pa per raw unit, one per channel), ``calibration`` (where S came
    from, for the report), ``start_ns`` (UTC ns of the first sample), ``samplerate`` (Hz),
    ``channels``, ``duration_s`` (length of the recording, s), ``bands`` (``None``,
    ``'third'`` or ``'octave'``)."""

    meter: Meter
    pa_per_unit: tuple[float, ...]
    calibration: str
    start_ns: int
    samplerate: float
    channels: int
    duration_s: float
    bands: str | None = None

    @property
    def interval_ns(self) -> int:
        return round(INTERVAL_S * _NS)

    @property
    def intervals(self) -> int:
        """Number of intervals the recording makes (the last one possibly partial)."""
        return math.ceil(round(self.duration_s * self.samplerate) /
                         round(INTERVAL_S * self.samplerate))

    @property
    def end_ns(self) -> int:
        """End of the last interval, UTC ns."""
        return self.start_ns + self.intervals * self.interval_ns

    def interval_start_ns(self, index: int) -> int:
        return self.start_ns + index * self.interval_ns

    def topic(self, kind: str = "levels") -> str:
        m = self.meter
        return contract.topic(m.enterprise, m.site, m.id, kind)


@dataclasses.dataclass(frozen=True)
class Refusal:
    """An interval that was not stored: its ``index`` in the recording, ``start_ns``,
    ``stage`` (``audio``, ``contract``, ``store``) and ``reason``."""

    index: int
    start_ns: int
    stage: str
    reason: str


@dataclasses.dataclass
class ImportResult:
    """What an import stored. ``stored``: intervals stored; ``refused``: the
    :class:`Refusal` of each interval not stored; per channel (arrays of shape (channels,))
    ``ea`` (Pa²·s) and ``coverage`` (s) of the stored intervals; ``overwritten``: points of an
    earlier import of the same recording and start that were there before; ``rollups``:
    ``levels_1m`` points written; ``dead_letters``: dead letters written."""

    stored: int = 0
    refused: list[Refusal] = dataclasses.field(default_factory=list)
    ea: np.ndarray | None = None
    coverage: np.ndarray | None = None
    overwritten: int = 0
    rollups: int = 0
    dead_letters: int = 0
    audio_error: str | None = None
    """Set when the audio broke part-way (a damaged FLAC stream): what came before it was
    stored; the text says where and what to do."""

    @property
    def laeq(self) -> np.ndarray:
        """LAeq of the stored intervals per channel, dB re 20 µPa: 10 lg(EA / (p0² · T)),
        T = their coverage (IEC 61672-1 clause 3.9)."""
        return leq_from_exposure(self.ea, self.coverage)

    @property
    def lex_8h(self) -> np.ndarray:
        """LEX,8h of the stored exposure alone per channel, dB(A): 10 lg(EA / (p0² · 28 800
        s)) (GBZ/T 189.8-2007 clause 3), i.e. as if the rest of an 8 h day were silent. A
        worker's day, with every source of exposure, comes from ``tingbao exposure``."""
        return lex_8h(self.ea)


# --------------------------------------------------------------------------- the checks
def find_meter(reg: Registry, meter_id: str, enterprise: str | None = None) -> Meter:
    """The registry entry of ``meter_id`` (of ``enterprise`` when given), or
    :class:`ImportRefused` naming the known meters (of that enterprise, or per enterprise)."""
    try:
        meter = reg.meter(meter_id)
    except KeyError:
        meter = None
    if meter is not None and (enterprise is None or meter.enterprise == enterprise):
        return meter
    where = f" ({reg.path})" if reg.path else ""
    if enterprise is not None:
        known = [m.id for m in reg.meters_of(enterprise)]
        if not any(e.id == enterprise for e in reg.enterprises):
            raise ImportRefused(
                f"未知企业 / unknown enterprise {enterprise!r} in the site registry{where}; "
                f"known: {', '.join(e.id for e in reg.enterprises) or '—'}")
        listing = f"the meters of {enterprise}: {', '.join(known) or '—'}"
    else:
        known = sorted(reg.meter_ids)
        listing = "; ".join(f"{e.id}: {', '.join(m.id for m in reg.meters_of(e.id)) or '—'}"
                            for e in reg.enterprises)
    close = difflib.get_close_matches(meter_id, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if meter is not None:  # exists, but in another enterprise
        raise ImportRefused(f"测点 / meter {meter_id!r} belongs to enterprise "
                            f"{meter.enterprise!r}, not {enterprise!r}; {listing}")
    raise ImportRefused(f"未知测点 / unknown meter {meter_id!r}: not in the site registry"
                        f"{where}{hint}; declare it in [[meters]] or give one of {listing}")


def parse_start(text: str, timezone: str) -> int:
    """UTC ns of an ISO 8601 time (``2026-11-30T08:00:00+08:00``, ``…Z``); a time without an
    offset is local time of ``timezone`` (an IANA name, the deployment's)."""
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ImportRefused(
            f"--start {text!r} 不是 ISO 8601 时间 / is not an ISO 8601 time: give e.g. "
            "2026-11-30T08:00:00+08:00 or 2026-11-30T00:00:00Z (without an offset, the "
            f"deployment's time zone {timezone} is assumed)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1000


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="seconds")


def check_period(start_ns: int, duration_s: float, now_ns: int | None = None) -> None:
    """Refuse a start before :data:`contract.EARLIEST_NS`, or a start or end (``start_ns`` +
    ``duration_s`` seconds) later than now + :data:`contract.FUTURE_TOLERANCE_S`."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    latest = now_ns + int(contract.FUTURE_TOLERANCE_S * _NS)
    end_ns = start_ns + round(duration_s * _NS)
    if start_ns < contract.EARLIEST_NS:
        raise ImportRefused(f"开始时间过早 / --start {_iso(start_ns)} is before "
                            f"{_iso(contract.EARLIEST_NS)}, which the store does not take: "
                            "check the date")
    if start_ns > latest:
        raise ImportRefused(f"开始时间在未来 / --start {_iso(start_ns)} is in the future (now "
                            f"{_iso(now_ns)}): give the time the recording began, with its "
                            "offset, e.g. +08:00")
    if end_ns > latest:
        raise ImportRefused(f"录音结束时间在未来 / the recording ({duration_s:.0f} s) would end "
                            f"at {_iso(end_ns)}, after now ({_iso(now_ns)}): --start must be "
                            "at least the recording's length ago")


def check_samplerate(samplerate: float, path: str = "") -> None:
    """Refuse a sample rate the class 1 meter cannot measure at (below
    :data:`~tingbao.edge.iec61672.MIN_SAMPLERATE`), saying what is accepted."""
    if not samplerate >= MIN_SAMPLERATE:
        what = f"{path}: " if path else ""
        raise ImportRefused(
            f"{what}采样率 {samplerate:g} Hz 不被接受 / sample rate {samplerate:g} Hz is refused: "
            f"the IEC 61672-1 class 1 A/C weighting needs {MIN_SAMPLERATE:g} Hz or more "
            "(44100, 48000, 96000 … are accepted); record or export at 48000 Hz")


def _sensitivity(meter: Meter, channels: int, pa_per_unit: float | Sequence[float] | None,
                 source: str) -> tuple[tuple[float, ...], str]:
    if pa_per_unit is None:
        pa_per_unit, source = meter.pa_per_unit, "registry"
    if pa_per_unit is None:
        raise ImportRefused(
            f"测点 {meter.id} 无校准 / meter {meter.id!r} has no calibration: give "
            "--pa-per-unit S (Pa per sample unit) or --calibrator CAL.wav --calibrator-level "
            "94 (a calibrator recording on the same chain), or set pa_per_unit in its "
            "[[meters]] entry; uncalibrated levels are not stored")
    s = np.atleast_1d(np.asarray(pa_per_unit, dtype=float))
    if s.size == 1:
        s = np.repeat(s, channels)
    if s.size != channels:
        raise ImportRefused(f"{source} gives {s.size} pa_per_unit values for {channels} "
                            "channel(s)")
    if not np.all(np.isfinite(s) & (s > 0)):
        raise ImportRefused(f"pa_per_unit must be finite and > 0 Pa per unit, got {pa_per_unit}")
    return tuple(float(x) for x in s), source


def plan_import(reg: Registry, path: str | os.PathLike, meter_id: str, start: str, *,
                pa_per_unit: float | Sequence[float] | None = None,
                calibration: str = "--pa-per-unit", enterprise: str | None = None,
                bands: str | None = None, now_ns: int | None = None) -> ImportPlan:
    """Check everything that can be checked before writing (meter, calibration, period,
    the audio file's header and rate) and return the :class:`ImportPlan`. ``pa_per_unit``
    (Pa per raw unit, one or per channel) overrides the registry's; ``calibration`` says
    where it came from. Raises :class:`ImportRefused` or
    :class:`~tingbao.edge.sources.chunk.SourceError`."""
    meter = find_meter(reg, meter_id, enterprise)
    start_ns = parse_start(start, reg.deployment.timezone)
    with FileSource(path) as src:  # SourceError: unreadable, truncated
        check_samplerate(src.samplerate, src.path)
        if src.channels != meter.channels:
            raise ImportRefused(
                f"{src.path}: {src.channels} channel(s), but meter {meter.id!r} has "
                f"{meter.channels} in the site registry: import a recording of that meter "
                "(or declare the meter's channels)")
        if src.frames == 0:
            raise ImportRefused(f"{src.path}: the recording holds no audio")
        s, source = _sensitivity(meter, src.channels, pa_per_unit, calibration)
        check_period(start_ns, src.duration, now_ns)
        return ImportPlan(meter, s, source, start_ns, src.samplerate, src.channels,
                          src.duration, bands)


def existing_conflicts(reader: InfluxClient, plan: ImportPlan, levels_rp: str | None = None
                       ) -> tuple[int, int, int | None]:
    """Read the meter's ``levels`` points in the plan's period: returns (points of this
    import's own grid — an earlier import of the same recording and start, which it will
    overwrite; points that are not — live data or an import with another start; the time of
    the first of those, ns, or None)."""
    own = foreign = 0
    first = None
    where_meter = schema.where_tags([("enterprise", plan.meter.enterprise),
                                     ("meter", plan.meter.id)])
    t = plan.start_ns
    while t < plan.end_ns:
        stop = min(t + SCAN_WINDOW_NS, plan.end_ns)
        rows = reader.query_rows(
            f"SELECT {schema.quote_ident(schema.SEQ)} FROM "
            f"{schema.source(schema.LEVELS, levels_rp)} WHERE {where_meter} AND "
            f"time >= {t} AND time < {stop}", epoch="ns")
        for r in rows:
            seq, at = r.get(schema.SEQ), int(r["time"])
            if (isinstance(seq, int) and seq >= IMPORT_SEQ_BASE
                    and at == plan.interval_start_ns(seq - IMPORT_SEQ_BASE)):
                own += 1
            else:
                foreign += 1
                first = at if first is None else min(first, at)
        t = stop
    return own, foreign, first


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT_NS = {"h": 3600 * _NS, "m": 60 * _NS, "s": _NS, "ms": 10**6, "us": 1000, "µs": 1000,
            "ns": 1}


def retention_ns(reader: InfluxClient, rp: str | None = None) -> int | None:
    """How long InfluxDB keeps the points of retention policy ``rp`` (None: the database's
    default one), ns; None when it keeps them for ever."""
    rows = reader.query_rows("SHOW RETENTION POLICIES")
    for r in rows:
        if (r.get("name") == rp) if rp else r.get("default"):
            total = sum(float(v) * _UNIT_NS[u]
                        for v, u in _GO_DURATION.findall(str(r.get("duration", "0s"))))
            return int(total) or None
    return None


def check_retention(reader: InfluxClient, plan: ImportPlan, rp: str | None = None,
                    now_ns: int | None = None) -> None:
    """Refuse a recording that starts before the retention of the 1 s points: InfluxDB would
    drop them (and the minute rollups are computed from them)."""
    keep = retention_ns(reader, rp)
    now_ns = time.time_ns() if now_ns is None else now_ns
    if keep is not None and plan.start_ns < now_ns - keep:
        raise ImportRefused(
            f"录音早于保留期 / the recording starts at {_iso(plan.start_ns)}, but the 1 s "
            f"levels are kept for {keep / 86_400e9:g} days only (retention policy "
            f"{rp or 'default'}): InfluxDB would drop them. Check --start; older recordings "
            "need a longer retention (tingbao stack up --retention)")


# ---------------------------------------------------------------------------- the import
def _with_imported(line_text: str) -> str:
    """A ``levels``/``bands`` line with the field ``imported=true`` added (their fields are
    numbers and booleans, so the last space is the one before the timestamp)."""
    head, _, ts = line_text.rpartition(" ")
    return f"{head},{schema.IMPORTED}=true {ts}"


@dataclasses.dataclass
class _Entry:
    index: int
    lines: list[str]
    spans: list[tuple[SeriesKey, int, int]]
    ea: np.ndarray
    coverage: np.ndarray
    topic: str
    raw: bytes


class _Importer:
    def __init__(self, plan: ImportPlan, writer: InfluxClient, reader: InfluxClient, *,
                 levels_rp: str | None, rollup_rp: str | None, now_ns: int | None):
        self.plan = plan
        self.writer = writer
        self.levels_rp = levels_rp
        self.now_ns = now_ns
        self.rollups = Rollups(reader, writer, source_rp=levels_rp, target_rp=rollup_rp,
                               writer_id=_writer_id())
        self.result = ImportResult(ea=np.zeros(plan.channels), coverage=np.zeros(plan.channels))
        self.pending: list[_Entry] = []
        self.dead: list[str] = []
        self.clock = UniqueClock()
        m = plan.meter
        self.series = [SeriesKey(m.enterprise, m.site, m.id, str(ch))
                       for ch in range(plan.channels)]
        self.fraction = {"third": 3, "octave": 1}.get(plan.bands)

    # one interval → an entry, or a refusal
    def interval(self, iv: IntervalLevels, bad_samples: int) -> None:
        plan = self.plan
        start_ns = plan.interval_start_ns(iv.index)
        seq = IMPORT_SEQ_BASE + iv.index
        recs = iv.records()
        if len(recs) == 1:
            payload = contract.levels_payload(recs[0], meter=plan.meter.id, seq=seq,
                                              start_ns=start_ns)
        else:
            payload = contract.levels_payload_channels(recs, meter=plan.meter.id, seq=seq,
                                                       start_ns=start_ns)
        topic = plan.topic("levels")
        raw = contract.encode(payload)
        if bad_samples:
            n = round(iv.duration * plan.samplerate) * plan.channels
            self.refuse(iv.index, topic, raw, "audio",
                        f"{bad_samples} of {n} samples are not numbers (NaN or infinite): "
                        "corrupt audio in this interval")
            return
        try:
            msg = contract.validate(topic, raw, self.now_ns)
            lines = [_with_imported(x) for x in message_lines(msg)]
        except LineProtocolError as e:
            self.refuse(iv.index, topic, raw, "convert", f"cannot be stored: {e}")
            return
        except ValueError as e:  # ContractError, or e.g. json's digit limit
            self.refuse(iv.index, topic, raw, "contract", str(e))
            return
        for rec in recs if self.fraction is not None else ():
            lines += self.bands(rec, seq, start_ns)
        end_ns = start_ns + plan.interval_ns
        ea = np.array([r["ea"] or 0.0 for r in recs])
        cov = np.array([r["coverage"] if r["ea"] is not None else 0.0 for r in recs])
        self.pending.append(_Entry(iv.index, lines, [(k, start_ns, end_ns) for k in self.series],
                                   ea, cov, topic, raw))
        if len(self.pending) >= BATCH_INTERVALS:
            self.flush()

    def bands(self, rec: dict, seq: int, start_ns: int) -> list[str]:
        """The ``bands`` line of one channel record; a band level outside the contract's
        range (a quiet band below 0 dB) is null, as the edge agent sends it. A bands message
        the contract still refuses is a refusal of its own (the interval's levels stay)."""
        plan = self.plan
        bp = contract.bands_payload(rec, meter=plan.meter.id, seq=seq, start_ns=start_ns,
                                    fraction=self.fraction)
        lo, hi = contract.LEVEL_RANGE_DB
        for k, v in bp["bands"].items():
            if v is not None and not lo <= v <= hi:
                bp["bands"][k] = None
        topic, raw = plan.topic("bands"), contract.encode(bp)
        index = round((start_ns - plan.start_ns) / plan.interval_ns)
        try:
            return [_with_imported(x)
                    for x in message_lines(contract.validate(topic, raw, self.now_ns))]
        except ValueError as e:
            self.refuse(index, topic, raw, "contract", f"bands of channel {rec['channel']} "
                        f"(the levels are stored): {e}")
            return []

    def refuse(self, index: int, topic: str, raw: bytes, stage: str, reason: str) -> None:
        start_ns = self.plan.interval_start_ns(index)
        self.result.refused.append(Refusal(index, start_ns, stage, reason))
        letter = DeadLetter(stage, f"tingbao import, interval {index} ({_iso(start_ns)}): "
                            f"{reason}", topic, raw, self.clock(), DEAD_LETTER_TAG)
        self.dead.append(letter.to_line())

    def flush(self) -> None:
        """Write the pending entries with their rollup markers (a part InfluxDB refuses is
        halved until the refused interval is alone; it becomes a dead letter), then the dead
        letters so far."""
        parts, self.pending = [self.pending], []
        while parts:
            part = parts.pop()
            if not part:
                continue
            marks = self.rollups.mark(s for e in part for s in e.spans)
            ok = False
            try:
                self.writer.write([x for e in part for x in e.lines] + marks.lines,
                                  rp=self.levels_rp)
                ok = True
            except DataError as e:
                if len(part) > 1:
                    half = len(part) // 2
                    parts += [part[half:], part[:half]]
                else:
                    self.refuse(part[0].index, part[0].topic, part[0].raw, "store",
                                f"InfluxDB refused the point: {e.message}")
                continue
            finally:
                self.rollups.stored(marks, ok)
            for e in part:
                self.result.stored += 1
                self.result.ea += e.ea
                self.result.coverage += e.coverage
        if self.dead:
            self.writer.write(self.dead)
            self.result.dead_letters += len(self.dead)
            self.dead = []


def _writer_id() -> str:
    host = "".join(c if c.isalnum() or c in "_.-" else "_" for c in socket.gethostname())
    return f"tingbao-import-{host[:32]}-{os.getpid()}"


def import_recording(plan: ImportPlan, path: str | os.PathLike, writer: InfluxClient,
                     reader: InfluxClient, *, levels_rp: str | None = None,
                     rollup_rp: str | None = schema.RP_FOREVER,
                     progress: Callable[[float], None] | None = None,
                     now_ns: int | None = None, blocksize: int = 65536,
                     check_overlap: bool = True) -> ImportResult:
    """Measure the recording at ``path`` and store it as :func:`plan_import` planned:
    returns the :class:`ImportResult`. ``writer`` / ``reader`` are clients of the database
    with WRITE / READ; ``levels_rp`` the retention policy of the 1 s points (None: the
    default, as the collector writes them), ``rollup_rp`` that of ``levels_1m``.
    ``progress(seconds of audio done)`` is called after every block. Raises
    :class:`ImportRefused` on an overlap with other points (nothing written),
    sets ``audio_error`` when the audio breaks part-way (what was measured before is stored and
    rolled up), raises :class:`~.influx.InfluxError` when the
    database fails (run the import again: it overwrites)."""
    check_retention(reader, plan, levels_rp, now_ns)
    if check_overlap:
        own, foreign, first = existing_conflicts(reader, plan, levels_rp)
        if foreign:
            raise ImportRefused(
                f"时段重叠 / meter {plan.meter.id!r} already has {foreign} interval(s) in "
                f"{_iso(plan.start_ns)} … {_iso(plan.end_ns)} that are not this recording's "
                f"(live data, or an import with another start; the first at {_iso(first)}): "
                "storing it would count that exposure twice. Check --start; delete a wrong "
                "import first")
    else:
        own = 0
    imp = _Importer(plan, writer, reader, levels_rp=levels_rp, rollup_rp=rollup_rp,
                    now_ns=now_ns)
    imp.result.overwritten = own
    meter = SoundLevelMeter(plan.samplerate, channels=plan.channels, interval=INTERVAL_S,
                            pa_per_unit=plan.pa_per_unit, bands=plan.bands,
                            impulse_thresholds_db=IMPULSE_THRESHOLDS_DB,
                            impulse_refractory_s=IMPULSE_REFRACTORY_S)
    n_int = round(INTERVAL_S * plan.samplerate)
    bad: dict[int, int] = {}

    def take(intervals: list[IntervalLevels]) -> None:
        for iv in intervals:
            imp.interval(iv, bad.pop(iv.index, 0))

    completed = False
    try:
        try:
            with FileSource(path, blocksize=blocksize) as src:
                for chunk in src:
                    data = chunk.data
                    finite = np.isfinite(data)
                    if not finite.all():  # corrupt samples: count them per interval
                        rows = np.flatnonzero(~finite.all(axis=1))
                        per_row = (~finite[rows]).sum(axis=1)
                        uniq, inverse = np.unique((rows + meter.clock) // n_int,
                                                  return_inverse=True)
                        per = np.bincount(inverse, weights=per_row)
                        for i, n in zip(uniq.tolist(), per.tolist(), strict=True):
                            bad[i] = bad.get(i, 0) + int(n)
                    take(meter.process(data))
                    if progress is not None:
                        progress(meter.clock / plan.samplerate)
        except SourceError as e:  # broken part-way: keep what was measured before
            imp.result.audio_error = str(e)
        take(meter.flush())
        imp.flush()
        completed = True
    finally:
        imp.pending = []
        if imp.rollups.pending:  # the minutes of what was stored, even when failing
            try:
                imp.result.rollups = imp.rollups.run_due(force=True)
            except InfluxError:
                if completed:
                    raise
                # failing anyway: the markers stay for a collector or a re-run
    return imp.result
