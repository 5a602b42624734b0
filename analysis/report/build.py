"""The inspector's report, its data: what the ledger stored for an enterprise over a period of
shift dates, read back from InfluxDB and summed up. Nothing here recomputes a day's exposure
(GBZ/T 189.8-2007 clause 6, GB/T 21230-2014 = ISO 9612:2009): a day shows the ``exposure``
records the ledger chained (:mod:`tingbao.analysis.ledger`), so the chain head the report
prints covers every number in it; a day without records is shown as not closed yet.

Besides the stored records the report reads, all through :mod:`tingbao.collector.schema`:
the minute rollups (``levels_1m``: LAeq, LAFmax, LCpeak per minute) for the level–time plots,
the ``bands`` points (LZeq per band, dB re 20 µPa) for the spectra, the alerts opened in
the period with their lifecycle (:class:`tingbao.analysis.alert_store.AlertStore`), and the
registry (meters' calibration, names, the profiles).

**The period's figures of a post or job** (a choice, documented; the standards grade one day
or one week): over the N days that have a stored LEX,8h,

* LEX,8h of the period = 10 lg[(1/N) Σ_d 10^(0.1 LEX,8h,d)], the energy mean of the daily
  exposures (the exposure of the average day; for a five-day week it is GBZ 2.2's LEX,W);
* its U (:func:`period_uncertainty`), with N ≥ the edition's ``min_days_full_day`` (3):
  the full-day strategy of ISO 9612 clause 11 (:func:`tingbao.analysis.iso9612.full_day`:
  u1 the sample standard deviation of the N daily LEX,8h, c1·u1 from Table C.4,
  u² = (c1u1)² + u2² + u3², U = k·u), u2 of the registry's ``[analysis] instrument``, the
  edition the profile names (``uncertainty_method``); c1·u1 above the plan limit (3.5 dB)
  keeps U and flags ``u_plan_revise``, c1·u1 beyond the table gives no U and the same flag.
  With 1 or 2 days (too few for the full-day strategy): U = Σ_d c_d U_d with
  c_d = 10^(0.1 LEX,8h,d) / Σ_j 10^(0.1 LEX,8h,j), the daily expanded uncertainties taken
  as fully correlated (the instrument and microphone terms u2, u3 are the same every day),
  the conservative bound; a day without U leaves the period without U;
* the grade is that of the period's LEX,8h (GBZ/T 229.4-2012 clause 5, the profile's edges),
  the worst day is shown beside it, and a day counts as over the limit when its LEX,8h
  reaches the profile's ``lex_limit_db`` (≥, the convention of :mod:`tingbao.analysis.gbz2_2`);
  grades and limit checks use the unrounded stored values, the report prints 0.1 dB.

**Alerts per post**: an alert with a meter and a channel counts for that post; an alert with
a meter and no channel (``meter_offline``, ``calibration_drift``, ``clock_offset`` …) counts
for every channel (post) of that meter; a job's alerts are those naming the job.

**Spectra**: per post, the energy mean over the period's ``bands`` intervals of each band,
10 lg(mean 10^(0.1 L)), taken in the database (POW in a subquery, then SUM and COUNT); the
intervals are assumed equally long (an agent sends bands at one interval).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import zoneinfo
from collections.abc import Callable, Iterable, Sequence

from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.influx import finite_number as _num
from tingbao.collector.registry.profiles import Profile, profile
from tingbao.collector.registry.site import Enterprise, Meter, Registry

from .. import iso9612, ledger
from ..gbzt229_4 import HazardGrade, grade
from ..shifts import ShiftWindow, local_days, shifts_between

__all__ = ["U_CORRELATED", "U_FULL_DAY", "AlertHistory", "DayStatus", "DayValue",
           "MeterState", "MinuteLevels", "PeriodU", "ReportData", "Spectrum", "SubjectSummary",
           "build_report", "period_lex", "period_u", "period_uncertainty"]

NS = 1_000_000_000
ALERT_STATES = ("open", "acknowledged", "resolved")
U_FULL_DAY = "full-day"
"""Period U by the full-day strategy (ISO 9612 clause 11, N ≥ 3 days)."""
U_CORRELATED = "correlated"
"""Period U as the energy-weighted sum of the daily U (days fully correlated; 1–2 days)."""


# ------------------------------------------------------------------------------ dataclasses
@dataclasses.dataclass(frozen=True)
class DayStatus:
    """One shift date of the period: its shift window, whether the ledger closed it
    (``closed``: a chain point exists), the number of stored records and the day's chain
    hash."""

    date: dt.date
    window: ShiftWindow
    closed: bool
    n_records: int
    chain_hash: str | None


@dataclasses.dataclass(frozen=True)
class DayValue:
    """One post's or job's day as stored: levels in dB(A) re 20 µPa, ``coverage`` a
    fraction, ``grade`` the stored code (``0``, ``I`` … ``IV``), ``flags`` the stored flags,
    ``fields`` every stored field (peak check, impulse counts, …)."""

    date: dt.date
    lex_8h: float | None
    u_db: float | None
    laeq: float | None
    coverage: float | None
    grade: str | None
    flags: tuple[str, ...]
    fields: dict

    @property
    def peak_exceeded(self) -> bool:
        return bool(self.fields.get("peak_exceeded"))

    @property
    def tasks(self) -> tuple[dict, ...]:
        """A job's tasks as stored (field ``tasks``, a JSON list of ``{what, hours, laeq,
        source, meter, channel, coverage}``; hours in h, laeq in dB(A), coverage a
        fraction); () when absent or unreadable (records written before the field)."""
        raw = self.fields.get("tasks")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                return ()
        if not isinstance(raw, list):
            return ()
        return tuple(t for t in raw if isinstance(t, dict))


@dataclasses.dataclass(frozen=True)
class PeriodU:
    """The expanded uncertainty U (dB) of a period's LEX,8h and how it was obtained:
    ``method`` :data:`U_FULL_DAY` or :data:`U_CORRELATED` (None: no day with LEX,8h),
    ``n_days`` the N days, ``plan_revise`` when ISO 9612 asks for a revised plan (c1·u1 above
    the edition's limit: U kept; beyond Table C.4: ``u_db`` None), ``u1_db`` (sample standard
    deviation of the daily LEX,8h, dB) and ``c1u1_db`` (Table C.4, dB) for the full-day
    strategy."""

    u_db: float | None
    method: str | None
    n_days: int
    plan_revise: bool = False
    u1_db: float | None = None
    c1u1_db: float | None = None


@dataclasses.dataclass(frozen=True)
class SubjectSummary:
    """A post (``kind`` ``post``, ``key`` ``meter:channel``) or job (``kind`` ``job``,
    ``key`` its id) over the period (module docstring for the period figures). ``views``
    holds the other profiles' stored records per profile id: ``[(date, fields), …]``."""

    kind: str
    key: str
    name_zh: str
    name_en: str
    days: tuple[DayValue, ...]
    lex_db: float | None
    u_db: float | None
    grade: HazardGrade | None
    max_db: float | None
    max_date: dt.date | None
    max_grade: HazardGrade | None
    days_over: int
    peak_days_over: int
    flags: tuple[str, ...]
    n_alerts: int
    views: dict[str, list[tuple[dt.date, dict]]]
    u_detail: PeriodU | None = None

    @property
    def u_method(self) -> str | None:
        """How the period's U was obtained (:class:`PeriodU`), None without days."""
        return self.u_detail.method if self.u_detail else None

    @property
    def meter(self) -> str | None:
        return self.key.split(":")[0] if self.kind == "post" else None

    @property
    def channel(self) -> int | None:
        return int(self.key.split(":")[1]) if self.kind == "post" else None


@dataclasses.dataclass(frozen=True)
class MinuteLevels:
    """A post's minute rollups in one shift: ``minutes`` from the shift's start (float),
    ``laeq``, ``lafmax``, ``lcpeak`` in dB (None where a minute lacks the field)."""

    date: dt.date
    minutes: tuple[float, ...]
    laeq: tuple[float | None, ...]
    lafmax: tuple[float | None, ...]
    lcpeak: tuple[float | None, ...]


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """A post's energy-mean band levels over the period: ``labels`` (nominal midband, Hz, as
    the edge names them), ``levels_db`` (LZeq, dB re 20 µPa), ``n`` intervals averaged."""

    meter: str
    channel: int
    labels: tuple[str, ...]
    levels_db: tuple[float, ...]
    n: int


@dataclasses.dataclass(frozen=True)
class MeterState:
    """A meter's calibration over the period: ``calibrated`` (registry date, None: never),
    ``due`` (calibrated + the registry's ``calibration_interval_days``), ``state`` one of
    ``valid``, ``expires`` (due inside the period), ``expired``, ``after`` (calibrated only
    after the period began), ``never``."""

    meter: Meter
    calibrated: dt.date | None
    due: dt.date | None
    state: str


@dataclasses.dataclass(frozen=True)
class AlertHistory:
    """One alert (``id``) and its state changes in time order: ``changes`` of
    ``(time_ns, state, who, note)``; ``fields`` its evidence (a mapping), shift date and
    profile."""

    id: str
    rule: str
    meter: str | None
    channel: str | None
    job: str | None
    severity: str | None
    text_zh: str
    text_en: str
    raised_ns: int
    changes: tuple[tuple[int, str, str, str], ...]
    fields: dict

    @property
    def state(self) -> str:
        return self.changes[-1][1] if self.changes else "open"


@dataclasses.dataclass(frozen=True)
class ReportData:
    """Everything the report prints (see the module docstring)."""

    registry: Registry
    enterprise: Enterprise
    first: dt.date
    last: dt.date
    generated: dt.datetime
    profile: Profile
    other_profiles: tuple[Profile, ...]
    days: tuple[DayStatus, ...]
    posts: tuple[SubjectSummary, ...]
    jobs: tuple[SubjectSummary, ...]
    head: tuple[str, str] | None
    verified: ledger.Verified
    alerts: tuple[AlertHistory, ...]
    meters: tuple[MeterState, ...]
    levels: dict[tuple[str, int], tuple[MinuteLevels, ...]]
    spectra: dict[tuple[str, int], Spectrum]
    edition: str = iso9612.DEFAULT_EDITION
    """The ISO 9612 edition of the profile in force (``uncertainty_method``)."""
    instrument: str = "class1"
    """The registry's ``[analysis] instrument`` (u2 of the period's full-day U)."""

    @property
    def closed_days(self) -> tuple[DayStatus, ...]:
        return tuple(d for d in self.days if d.closed)

    @property
    def open_days(self) -> tuple[DayStatus, ...]:
        return tuple(d for d in self.days if not d.closed)

    @property
    def empty(self) -> bool:
        """No day of the period has stored records."""
        return not any(d.n_records for d in self.days)

    @property
    def impulse_grades_shown(self) -> bool:
        return any("impulse_grade" in v.fields for s in self.posts for v in s.days)


# ------------------------------------------------------------------------- period figures
def period_lex(levels_db: Sequence[float]) -> float | None:
    """Energy mean of daily LEX,8h values (dB(A)): 10 lg[(1/N) Σ 10^(0.1 L)]; None for
    none."""
    xs = [x for x in levels_db if x is not None and math.isfinite(x)]
    if not xs:
        return None
    top = max(xs)  # factor out the largest level: no overflow, same sum
    return top + 10 * math.log10(sum(10 ** (0.1 * (x - top)) for x in xs) / len(xs))


def period_u(levels_db: Sequence[float], u_db: Sequence[float | None]) -> float | None:
    """Expanded U (dB) of :func:`period_lex`: Σ c_d U_d with energy weights c_d (fully
    correlated days, module docstring); None when a day has no U."""
    if not levels_db or any(u is None for u in u_db):
        return None
    top = max(levels_db)
    w = [10 ** (0.1 * (x - top)) for x in levels_db]
    total = sum(w)
    return sum(wi / total * u for wi, u in zip(w, u_db, strict=True))


def period_uncertainty(levels_db: Sequence[float], u_db: Sequence[float | None], *,
                       instrument: str = "class1",
                       edition: str = iso9612.DEFAULT_EDITION) -> PeriodU:
    """U (dB) of the period's LEX,8h from the N daily ``levels_db`` (LEX,8h, dB(A)) and their
    stored ``u_db`` (expanded, dB; None where a day has none), module docstring: the
    full-day strategy (:func:`tingbao.analysis.iso9612.full_day`, ``instrument`` and
    ``edition`` as there) when N reaches the edition's ``min_days_full_day``, else
    :func:`period_u`. ValueError for an unknown edition or instrument."""
    levels = [float(x) for x in levels_db]
    ed = iso9612.load_edition(edition)
    ed.instrument(instrument)  # an unknown instrument is a setting error, not a plan one
    n = len(levels)
    if n == 0:
        return PeriodU(None, None, 0)
    if n < ed.min_days_full_day:
        return PeriodU(period_u(levels, list(u_db)), U_CORRELATED, n)
    try:
        r = iso9612.full_day(levels, instrument=instrument, edition=edition)
    except ValueError:  # u1 beyond Table C.4: the plan must be revised, no U
        mean = sum(levels) / n
        u1 = math.sqrt(sum((x - mean) ** 2 for x in levels) / (n - 1))
        return PeriodU(None, U_FULL_DAY, n, True, u1, None)
    return PeriodU(r.U_db, U_FULL_DAY, n, not r.plan_ok, r.u1_db, r.c1u1_db)




def _day_value(date: dt.date, fields: dict) -> DayValue:
    flags = tuple(f for f in str(fields.get("flags") or "").split(",") if f)
    g = fields.get("grade")
    return DayValue(date, _num(fields.get("lex_8h")), _num(fields.get("u_db")),
                    _num(fields.get("laeq")), _num(fields.get("coverage")),
                    None if g is None else str(g), flags, dict(fields))


def summarise(kind: str, key: str, name_zh: str, name_en: str, days: Iterable[DayValue],
              prof: Profile, views: dict | None = None, n_alerts: int = 0, *,
              instrument: str = "class1",
              edition: str = iso9612.DEFAULT_EDITION) -> SubjectSummary:
    """A :class:`SubjectSummary` of ``days`` (stored records of one subject) under ``prof``
    (module docstring; ``instrument`` and ``edition`` for the period's U)."""
    days = tuple(sorted(days, key=lambda d: d.date))
    with_lex = [d for d in days if d.lex_8h is not None]
    lex = period_lex([d.lex_8h for d in with_lex])
    detail = period_uncertainty([d.lex_8h for d in with_lex], [d.u_db for d in with_lex],
                                instrument=instrument, edition=edition)
    u = detail.u_db
    worst = max(with_lex, key=lambda d: d.lex_8h, default=None)
    flags = tuple(dict.fromkeys(f for d in days for f in d.flags))
    return SubjectSummary(
        kind, key, name_zh, name_en, days, lex, u, grade(lex, prof) if lex is not None else
        None, worst.lex_8h if worst else None, worst.date if worst else None,
        grade(worst.lex_8h, prof) if worst else None,
        sum(1 for d in with_lex if d.lex_8h >= prof.lex_limit_db),
        sum(1 for d in days if d.peak_exceeded), flags, n_alerts, dict(views or {}),
        detail if with_lex else None)


# --------------------------------------------------------------------------------- reading
def _chain_points(reader: InfluxClient, enterprise: str, start_ns: int, end_ns: int
                  ) -> dict[int, dict]:
    q = (f"SELECT \"date\", \"n\", \"hash\" FROM "
         f"{schema.source(schema.EXPOSURE_CHAIN, schema.RP_FOREVER)} WHERE "
         f"{schema.where_tags([('enterprise', enterprise)])} AND time >= {start_ns} AND "
         f"time < {end_ns}")
    return {int(r["time"]): r for r in reader.query_rows(q)}


def _minute_levels(reader: InfluxClient, enterprise: str, windows: Sequence[ShiftWindow]
                   ) -> dict[tuple[str, int], tuple[MinuteLevels, ...]]:
    cols = ", ".join(schema.quote_ident(f) for f in ("laeq", "lafmax", "lcpeak"))
    scope = schema.where_tags([("enterprise", enterprise)])
    group = "GROUP BY " + ", ".join(schema.quote_ident(t) for t in ("meter", "channel"))
    statements = [f"SELECT {cols} FROM {schema.source(schema.LEVELS_1M, schema.RP_FOREVER)} "
                  f"WHERE {scope} AND {w.period.where()} {group}" for w in windows]
    out: dict[tuple[str, int], list[MinuteLevels]] = {}
    for i in range(0, len(statements), 16):  # a few shifts per request
        for s in reader.query(";".join(statements[i:i + 16])):
            if not s.rows:
                continue
            t0 = int(s.rows[0]["time"])
            w = next(w for w in windows if w.period.start_ns <= t0 < w.period.end_ns)
            key = (s.tags.get("meter", ""), int(s.tags.get("channel", 0)))
            out.setdefault(key, []).append(MinuteLevels(
                w.date, tuple((int(r["time"]) - w.period.start_ns) / (60 * NS) for r in s.rows),
                tuple(_num(r.get("laeq")) for r in s.rows),
                tuple(_num(r.get("lafmax")) for r in s.rows),
                tuple(_num(r.get("lcpeak")) for r in s.rows)))
    return {k: tuple(sorted(v, key=lambda m: m.date)) for k, v in out.items()}


def band_label(field: str) -> str | None:
    """The band label of a ``bands`` field (the inverse of
    :func:`tingbao.collector.lineprotocol.band_field`): ``b1000`` → ``1000``, ``b31_5`` →
    ``31.5``; None for other fields (``seq``, ``duration_s``, ``fraction``)."""
    if not field.startswith("b") or not field[1:2].isdigit():
        return None
    label = field[1:].replace("_", ".")
    try:
        float(label)
    except ValueError:
        return None
    return label


def _spectra(reader: InfluxClient, enterprise: str, windows: Sequence[ShiftWindow],
             levels_rp: str | None = None) -> dict[tuple[str, int], Spectrum]:
    keys = reader.query_rows(f"SHOW FIELD KEYS FROM {schema.source(schema.BANDS, levels_rp)}")
    fields = sorted({r["fieldKey"] for r in keys if band_label(r.get("fieldKey", ""))},
                    key=lambda f: float(band_label(f)))
    if not fields:
        return {}
    q = schema.quote_ident
    scope = schema.where_tags([("enterprise", enterprise)])
    group = "GROUP BY " + ", ".join(q(t) for t in ("meter", "channel"))
    inner_cols = ", ".join(f"POW(10, {q(f)} / 10) AS {q(f)}" for f in fields)
    outer_cols = ", ".join(f"SUM({q(f)}) AS {q('s_' + f)}, COUNT({q(f)}) AS {q('n_' + f)}"
                           for f in fields)
    sums: dict[tuple[str, int], dict[str, list[float]]] = {}
    for w in windows:
        inner = (f"SELECT {inner_cols} FROM {schema.source(schema.BANDS, levels_rp)} WHERE "
                 f"{scope} AND {w.period.where()} {group}")
        stmt = (f"SELECT {outer_cols} FROM ({inner}) WHERE {w.period.where()} {group}")
        for r in reader.query_rows(stmt):
            acc = sums.setdefault((r["meter"], int(r["channel"])), {})
            for f in fields:
                s, n = _num(r.get("s_" + f)), int(r.get("n_" + f) or 0)
                if s is not None and n:
                    a = acc.setdefault(f, [0.0, 0])
                    a[0] += s
                    a[1] += n
    out = {}
    for (meter, ch), acc in sums.items():
        present = [f for f in fields if f in acc and acc[f][0] > 0]
        if not present:
            continue
        out[(meter, ch)] = Spectrum(
            meter, ch, tuple(band_label(f) for f in present),
            tuple(10 * math.log10(acc[f][0] / acc[f][1]) for f in present),
            max(acc[f][1] for f in present))
    return out


def _alerts(reader: InfluxClient, enterprise: str, start_ns: int, end_ns: int
            ) -> tuple[AlertHistory, ...]:
    """The alerts of ``enterprise`` opened in [start_ns, end_ns), with their lifecycle as
    :class:`tingbao.analysis.alert_store.AlertStore` reads it (texts decoded)."""
    from ..alert_store import AlertStore

    out = []
    for a in AlertStore(reader, reader).list(enterprise=enterprise, since_ns=start_ns,
                                             until_ns=end_ns, limit=100_000):
        changes = [(a.opened_ns, "open", "", "")]
        if a.acknowledged_ns is not None:
            changes.append((a.acknowledged_ns, "acknowledged", a.acknowledged_by or "",
                            a.acknowledged_note or ""))
        if a.resolved_ns is not None:
            changes.append((a.resolved_ns, "resolved", a.resolved_by or "",
                            a.resolved_note or ""))
        out.append(AlertHistory(
            a.id, a.rule, a.meter, None if a.channel is None else str(a.channel), a.job,
            a.severity, a.text_zh, a.text_en, int(a.raised_ns), tuple(changes),
            {"evidence": dict(a.evidence), "shift_date": a.shift_date, "profile": a.profile}))
    out.sort(key=lambda x: (x.raised_ns, x.id))
    return tuple(out)


def meter_state(m: Meter, first: dt.date, last: dt.date, interval_days: int) -> MeterState:
    """The calibration state of meter ``m`` over [first, last] (see :class:`MeterState`)."""
    cal = m.calibrated
    if cal is None:
        return MeterState(m, None, None, "never")
    due = cal + dt.timedelta(days=interval_days)
    if cal > first:
        state = "after"
    elif due <= first:
        state = "expired"
    elif due <= last:
        state = "expires"
    else:
        state = "valid"
    return MeterState(m, cal, due, state)


def build_report(reader: InfluxClient, reg: Registry, enterprise_id: str, first: dt.date,
                 last: dt.date, *, now: dt.datetime | None = None,
                 progress: Callable[[Iterable], Iterable] = lambda x: x,
                 levels_rp: str | None = None) -> ReportData:
    """Read everything the report of ``enterprise_id`` over the shift dates ``first`` …
    ``last`` (inclusive, local) prints (module docstring). ``progress`` wraps the loop over
    days (a tqdm bar, say)."""
    e = reg.enterprise(enterprise_id)  # KeyError for an unknown id: the CLI names the known
    windows = shifts_between(reg, enterprise_id, first, last)
    tz = zoneinfo.ZoneInfo(reg.deployment.timezone)
    now = now or dt.datetime.now(tz)
    prof = reg.profile
    edition = prof.uncertainty_method or iso9612.DEFAULT_EDITION
    instrument = reg.analysis.instrument
    # the period's local midnights; the shifts (none when no date of it is a workday) may
    # run past them
    span = local_days(first, last, reg.deployment.timezone)
    start_ns, end_ns = span.start_ns, span.end_ns
    if windows:
        start_ns = min(start_ns, windows[0].period.start_ns)
        end_ns = max(end_ns, windows[-1].period.end_ns)
    chain = _chain_points(reader, enterprise_id, windows[0].period.start_ns,
                          windows[-1].period.end_ns) if windows else {}
    days = []
    values: dict[tuple[str, str], dict[str, list[DayValue]]] = {}
    for w in progress(windows):
        t = w.period.start_ns
        recs = ledger.read_records(reader, enterprise_id, t)
        point = chain.get(t)
        days.append(DayStatus(w.date, w, point is not None, len(recs),
                              point.get("hash") if point else None))
        for r in recs:
            kind = r.tags.get("kind")
            key = (f"{r.tags.get('meter')}:{r.tags.get('channel')}" if kind == "post"
                   else r.tags.get("job"))
            if kind not in ("post", "job") or not key:
                continue
            pid = r.tags.get("profile") or prof.id
            values.setdefault((kind, key), {}).setdefault(pid, []).append(
                _day_value(w.date, dict(r.fields)))

    alerts = _alerts(reader, enterprise_id, start_ns, end_ns)

    def n_alerts(kind: str, key: str) -> int:
        if kind == "post":  # a meter's alert (no channel) counts for each of its channels
            meter, ch = key.split(":")
            return sum(1 for a in alerts
                       if a.meter == meter and (a.channel is None or str(a.channel) == ch))
        return sum(1 for a in alerts if a.job == key)

    def views_of(by_profile: dict[str, list[DayValue]]) -> dict:
        return {pid: [(v.date, v.fields) for v in sorted(vs, key=lambda v: v.date)]
                for pid, vs in by_profile.items() if pid != prof.id}

    posts = []
    for m in reg.meters_of(enterprise_id):
        for ch in range(m.channels):
            key = f"{m.id}:{ch}"
            by_profile = values.pop(("post", key), {})
            name_zh = m.position_zh or m.id
            name_en = m.position_en or m.id
            if m.channels > 1:
                name_zh, name_en = f"{name_zh}（通道 {ch}）", f"{name_en} (channel {ch})"
            posts.append(summarise("post", key, name_zh, name_en, by_profile.get(prof.id, ()),
                                   prof, views_of(by_profile), n_alerts("post", key),
                                   instrument=instrument, edition=edition))
    jobs = []
    for j in reg.jobs_of(enterprise_id):
        by_profile = values.pop(("job", j.id), {})
        jobs.append(summarise("job", j.id, j.name_zh, j.name_en or j.id,
                              by_profile.get(prof.id, ()), prof, views_of(by_profile),
                              n_alerts("job", j.id), instrument=instrument, edition=edition))
    # records of posts or jobs no longer in the registry are still shown, under their ids
    for (kind, key), by_profile in sorted(values.items()):
        s = summarise(kind, key, key, key, by_profile.get(prof.id, ()), prof,
                      views_of(by_profile), n_alerts(kind, key), instrument=instrument,
                      edition=edition)
        (posts if kind == "post" else jobs).append(s)

    others = tuple(profile(pid) for pid in reg.analysis.profiles if pid != prof.id)
    meters = tuple(meter_state(m, first, last, reg.analysis.calibration_interval_days)
                   for m in reg.meters_of(enterprise_id))
    return ReportData(
        registry=reg, enterprise=e, first=first, last=last, generated=now, profile=prof,
        other_profiles=others, days=tuple(days), posts=tuple(posts), jobs=tuple(jobs),
        head=ledger.head(reader, enterprise_id), verified=ledger.verify(reader, enterprise_id),
        alerts=alerts, meters=meters, levels=_minute_levels(reader, enterprise_id, windows),
        spectra=_spectra(reader, enterprise_id, windows, levels_rp), edition=edition,
        instrument=instrument)


def evidence_text(alert: AlertHistory) -> str:
    """The alert's evidence (stored as JSON) as short ``key value`` text."""
    ev = alert.fields.get("evidence")
    if not ev:
        return ""
    if isinstance(ev, str):
        try:
            ev = json.loads(ev)
        except ValueError:
            return ev
    if isinstance(ev, dict):
        return ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in ev.items())
    return str(ev)
