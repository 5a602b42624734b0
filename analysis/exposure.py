"""Exposure per post and per job over one shift, from the sums InfluxDB computes
(GBZ/T 189.8-2007 clause 6; GB/T 21230-2014 = ISO 9612:2009 clauses 9-11 and Annex C).

Nothing here reads a shift of 1 s rows: the store answers ``SUM(ea)``, ``SUM(coverage)``
(:func:`tingbao.collector.schema.exposure_sums`: minute rollups for closed minutes, 1 s
points only at the ragged edges), the highest peaks and the impulse counts
(:func:`~tingbao.collector.schema.period_peaks`), and the sums of the shift's sub-periods
(:func:`~tingbao.collector.schema.minute_parts`) whose spread ISO 9612 needs.

**Post** (a meter's channel, for a worker who stays there the whole shift, Te = the shift's
``hours``): LAeq over the measured seconds; coverage = measured / shift length. When
coverage ≥ ``[analysis] extrapolate_min_coverage`` the gaps are assumed as loud as the
measured part: LEX,8h = LAeq + 10 lg(Te / 8 h) (flag ``gaps_extrapolated`` when coverage
< 1). Below it LEX,8h counts the measured energy only, 10 lg(EA / (p0² · 8 h)), a lower
bound (flag ``low_coverage``). A shift without data has no LEX (flag ``no_data``).

**Uncertainty of a post** (a choice, documented here). A shift measured from start to end
has no sampling uncertainty within the day (ISO 9612 samples because it cannot measure all
of it): its U = k·√(u2² + u3²) (u2 of the ``[analysis] instrument`` class, u3 = 1.0 dB,
k = 1.65; 2.01 dB for a class 1 meter). The variation from day to day is the full-day
strategy's business (clause 11), taken over the days of a report. A shift with gaps that
were extrapolated is sampled: it is cut into N = max(5, round(hours)) equal parts of whole
minutes; the LAeq of each part with at least half its time measured is one sample of the
job-based strategy (clause 10, Table C.4 for c1·u1). Fewer than 5 such parts: no U (flag
``u_insufficient_samples``); c1·u1 > 3.5 dB: U is given and flagged ``u_plan_revise`` (the
standard says the plan must be revised); beyond the table: no U, same flag.

**Job** (工种, GBZ/T 189.8-2007 clause 6.3, ISO 9612 task-based strategy clause 9): its
tasks from the registry, each ``hours`` at a post (that post's LAeq over the shift) or at a
declared ``laeq_db``; LEX,8h = 10 lg Σ (Tm / 8 h) · 10^(0.1 Lm)
(:func:`~tingbao.analysis.gbzt189_8.lex_8h_from_tasks`). A task whose post has no data is
left out of the sum and flagged ``no_data:METER:CHANNEL`` (the LEX is then a lower bound);
``posts_low_coverage`` says the posts' LAeq stood for gaps below the coverage threshold.
U by the task-based strategy, each measured task's samples being its post's sub-period
levels, a declared level counting as a fixed level without sampling spread (its u1a = 0,
said in the flags). The job's
coverage is the hours-weighted coverage of its measured tasks.

Grades per GBZ/T 229.4-2012 (:mod:`.gbzt229_4`) of the profile in force, impulse-noise peak
checks per GBZ 2.2-2007 (:mod:`.gbz2_2`) and the side-by-side profiles (:mod:`.dosimeters`)
are attached to each result.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable

from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.registry.site import Registry
from tingbao.edge.levels import P0_SQUARED, T0_8H

from . import iso9612
from .gbzt189_8 import laeq as laeq_of
from .gbzt189_8 import lex_8h_from_tasks
from .gbzt229_4 import HazardGrade, grade
from .shifts import ShiftWindow, shift_window

__all__ = ["DayExposure", "JobExposure", "PostExposure", "PostLex", "PostSums", "compute_day",
           "lex_many", "post_exposure", "post_lex", "read_post_sums"]

MIN_PART_FILL = 0.5
"""A sub-period counts as an ISO 9612 sample when at least this fraction of it is measured."""
COMPLETE_TOLERANCE_S = 5.0
"""A shift missing at most this many seconds counts as measured in full (the intervals of a
meter start where its stream started, not at the shift's edges)."""


@dataclasses.dataclass(frozen=True)
class PostSums:
    """What the store answers for one post over one shift. Energies in Pa²·s, times in s,
    levels in dB re 20 µPa; ``impulses`` maps threshold (dB) → count; ``parts`` holds
    (EA, covered s, part length s) of the shift's sub-periods."""

    meter: str
    channel: int
    ea_pa2s: float = 0.0
    covered_s: float = 0.0
    n: int = 0
    lcpeak_db: float | None = None
    lzpeak_db: float | None = None
    lafmax_db: float | None = None
    impulses: dict[float, int] = dataclasses.field(default_factory=dict)
    parts: tuple[tuple[float, float, float], ...] = ()
    doses: dict[str, float] = dataclasses.field(default_factory=dict)
    """Per profile id: the in-database dose sum (fraction of the criterion dose; 1 = 100 %)
    for profiles whose dose an energy sum cannot give (threshold or exchange ≠ 3 dB)."""


@dataclasses.dataclass(frozen=True)
class PostExposure:
    """A post's exposure over one shift (see the module docstring). ``laeq`` over the
    measured time, ``lex_8h`` and ``u_db`` (expanded, k = 1.65) in dB(A); ``coverage`` a
    fraction of the shift; ``flags`` what a reader must know (``gaps_extrapolated`` …)."""

    enterprise: str
    site: str
    meter: str
    channel: int
    shift: ShiftWindow
    sums: PostSums
    laeq: float
    coverage: float
    lex_8h: float
    u_db: float | None
    extrapolated: bool
    flags: tuple[str, ...]
    grade: HazardGrade | None
    profile: str
    parts_db: tuple[float, ...] = ()

    @property
    def date(self) -> dt.date:
        return self.shift.date

    @property
    def duration_h(self) -> float:
        return self.shift.hours


@dataclasses.dataclass(frozen=True)
class TaskLevel:
    """One task of a job as computed: where, how long (h), at which level (dB(A)), and
    whether the level was ``measured`` at a post or ``declared`` in the registry."""

    what: str
    hours: float
    laeq: float
    source: str
    meter: str | None = None
    channel: int | None = None
    coverage: float | None = None


@dataclasses.dataclass(frozen=True)
class JobExposure:
    """A job type's exposure over one shift from its tasks (module docstring)."""

    enterprise: str
    job: str
    shift: ShiftWindow
    tasks: tuple[TaskLevel, ...]
    lex_8h: float
    u_db: float | None
    coverage: float
    flags: tuple[str, ...]
    grade: HazardGrade | None
    profile: str

    @property
    def date(self) -> dt.date:
        return self.shift.date

    @property
    def duration_h(self) -> float:
        return sum(t.hours for t in self.tasks)

    @property
    def laeq(self) -> float:
        """The energy mean over the tasks' hours, dB(A)."""
        h = self.duration_h
        return self.lex_8h - 10 * math.log10(h / 8.0) if h > 0 and math.isfinite(
            self.lex_8h) else math.nan


@dataclasses.dataclass(frozen=True)
class DayExposure:
    """Every post and job of one enterprise for one shift."""

    enterprise: str
    shift: ShiftWindow
    posts: tuple[PostExposure, ...]
    jobs: tuple[JobExposure, ...]


# ------------------------------------------------------------------------------- reading
def _parts_step_s(length_s: float, hours: float) -> int:
    n = max(5, round(hours))
    return max(60, int(length_s / n) // 60 * 60)


def read_post_sums(client: InfluxClient, window: ShiftWindow, meters: Iterable[str],
                   dose_profiles: Iterable = (), *, levels_rp: str | None = None
                   ) -> dict[tuple[str, int], PostSums]:
    """Ask the store for every (meter, channel) of ``meters`` over ``window``: energy and
    coverage sums, peaks and impulse counts, sub-period sums, and the in-database dose sums
    of ``dose_profiles`` (profiles whose ``threshold_db`` > 0 or exchange ≠ 3 dB). Four to
    six small answers, whatever the shift's length."""
    meters = list(meters)
    if not meters:
        return {}
    period = window.period
    statements = schema.exposure_sums(period, meters=meters, levels_rp=levels_rp)
    sums = schema.add_sums(client.query_rows(";".join(statements)))
    peaks = schema.add_peaks(client.query_rows(";".join(
        schema.period_peaks(period, meters=meters, levels_rp=levels_rp))))
    step = _parts_step_s(window.length_s, window.hours)
    parts: dict[tuple[str, str], list] = {}
    try:
        q = schema.minute_parts(period, step, meters=meters)
    except ValueError:
        q = None
    if q is not None:
        for r in client.query_rows(q):
            parts.setdefault((r["meter"], r["channel"]), []).append(
                (float(r.get(schema.EA) or 0.0), float(r.get(schema.COVERAGE) or 0.0),
                 float(step)))
    doses: dict[tuple[str, str], dict[str, float]] = {}
    for prof in dose_profiles:
        q = schema.dose_sums(period, criterion_db=prof.lex_limit_db,
                             exchange_db=prof.exchange_rate_db,
                             threshold_db=prof.threshold_db, meters=meters,
                             levels_rp=levels_rp)
        for r in client.query_rows(q):
            doses.setdefault((r["meter"], r["channel"]), {})[prof.id] = float(
                r.get("dose") or 0.0)
    out = {}
    for key in set(sums) | set(peaks):
        s = sums.get(key, {})
        p = peaks.get(key, {})
        impulses = {t: int(p[name]) for t, name in schema.impulse_thresholds(p).items()}
        out[(key[0], int(key[1]))] = PostSums(
            meter=key[0], channel=int(key[1]), ea_pa2s=float(s.get("ea", 0.0)),
            covered_s=float(s.get("coverage", 0.0)), n=int(s.get("n", 0)),
            lcpeak_db=p.get("lcpeak"), lzpeak_db=p.get("lzpeak"), lafmax_db=p.get("lafmax"),
            impulses=impulses, parts=tuple(parts.get(key, ())), doses=doses.get(key, {}))
    return out


# ----------------------------------------------------------------------------- computing
def _edition(reg: Registry) -> str:
    """The ISO 9612 edition of the profile in force (``uncertainty_method``, e.g.
    ``GB/T 21230-2014`` = ISO 9612:2009), the default edition when the profile names none."""
    return reg.profile.uncertainty_method or iso9612.DEFAULT_EDITION


def _post_u(parts_db: list[float], hours: float, instrument: str, edition: str,
            complete: bool) -> tuple[float | None, str | None]:
    """(U in dB, flag) of a post-day (module docstring): no sampling term when ``complete``
    (the whole shift measured), else the job-based strategy over the sub-period levels."""
    if complete:
        ed = iso9612.load_edition(edition)
        u2 = ed.instrument(instrument).u2_db
        return ed.coverage_factor_k * math.hypot(u2, ed.u3_microphone_db), None
    if len(parts_db) < 5:
        return None, "u_insufficient_samples"
    try:
        u = iso9612.job_based(parts_db, hours, instrument=instrument, edition=edition)
    except ValueError:
        return None, "u_plan_revise"
    return u.U_db, None if u.plan_ok else "u_plan_revise"


def _parts_db(parts: Iterable[tuple[float, float, float]]) -> list[float]:
    out = []
    for ea, covered, length in parts:
        if covered >= MIN_PART_FILL * length and ea > 0:
            out.append(laeq_of(ea, covered))
    return out


@dataclasses.dataclass(frozen=True)
class PostLex:
    """LEX,8h of a post-day by the coverage rule alone (module docstring): ``laeq`` over the
    measured time and ``lex_8h`` in dB(A), ``coverage`` as a fraction of the shift."""

    laeq: float
    coverage: float
    lex_8h: float
    extrapolated: bool
    flags: tuple[str, ...]
    complete: bool = False


def post_lex(ea_pa2s: float, covered_s: float, shift_s: float, min_coverage: float
             ) -> PostLex:
    """The coverage rule of the module docstring: extrapolate over gaps only when the
    measured fraction of the ``shift_s`` seconds reaches ``min_coverage``; else count the
    measured exposure ``ea_pa2s`` (Pa²·s) only (a lower bound)."""
    covered = min(covered_s, shift_s)
    coverage = covered / shift_s if shift_s > 0 else 0.0
    level = laeq_of(ea_pa2s, covered)
    if not math.isfinite(level):
        return PostLex(level, coverage, math.nan, False, ("no_data",))
    if coverage >= min_coverage:
        complete = shift_s - covered <= COMPLETE_TOLERANCE_S
        return PostLex(level, coverage, level + 10 * math.log10(shift_s / T0_8H),
                       not complete, () if complete else ("gaps_extrapolated",), complete)
    return PostLex(level, coverage, 10 * math.log10(ea_pa2s / (P0_SQUARED * T0_8H)), False,
                   ("low_coverage",))


def post_exposure(reg: Registry, window: ShiftWindow, sums: PostSums) -> PostExposure:
    """The exposure of one post over one shift from its :class:`PostSums` (module
    docstring: coverage rule, U, grade)."""
    settings = reg.analysis
    prof = reg.profile
    meter = reg.meter(sums.meter)
    r = post_lex(sums.ea_pa2s, sums.covered_s, window.length_s,
                 settings.extrapolate_min_coverage)
    flags = list(r.flags)
    parts_db = _parts_db(sums.parts)
    u_db, u_flag = (None, None) if not math.isfinite(r.lex_8h) else _post_u(
        parts_db, window.hours, settings.instrument, _edition(reg),
        complete=r.complete)
    if u_flag:
        flags.append(u_flag)
    if meter.calibrated is None:
        flags.append("uncalibrated")
    return PostExposure(
        enterprise=meter.enterprise, site=meter.site, meter=meter.id, channel=sums.channel,
        shift=window, sums=sums, laeq=r.laeq, coverage=r.coverage, lex_8h=r.lex_8h,
        u_db=u_db, extrapolated=r.extrapolated, flags=tuple(flags),
        grade=grade(r.lex_8h, prof), profile=prof.id, parts_db=tuple(parts_db))


def lex_many(reader: InfluxClient, reg: Registry, dates: Iterable[dt.date], *,
             enterprises: Iterable[str] | None = None, threads: int = 2
             ) -> dict[tuple[str, dt.date, str, int], PostLex]:
    """LEX,8h of every post of ``enterprises`` (default all) on every shift date of
    ``dates``, by the fewest queries: enterprises whose shifts start at the same instant share
    one statement set (``SUM(ea)``, ``SUM(coverage)`` from the minute rollups plus ragged
    edges), run on ``threads`` connections at once (InfluxDB answers each on one core).
    Posts without data are left out. What a dashboard or a survey over many post-days needs;
    :func:`compute_day` adds U, peaks and jobs."""
    from concurrent.futures import ThreadPoolExecutor

    ids = list(enterprises) if enterprises is not None else [e.id for e in reg.enterprises]
    groups: dict[tuple[int, int, dt.date], list[str]] = {}
    for d in dates:
        for eid in ids:
            w = shift_window(reg.enterprise(eid), d, reg.deployment.timezone)
            groups.setdefault((w.period.start_ns, w.period.end_ns, d), []).append(eid)
    owner = {m.id: m.enterprise for m in reg.meters}
    min_cov = reg.analysis.extrapolate_min_coverage
    # each group in ``threads`` slices of its enterprises, so every connection has work
    tasks = []
    for key, ents in groups.items():
        step = max(1, -(-len(ents) // max(1, threads)))
        tasks += [(key, ents[i:i + step]) for i in range(0, len(ents), step)]

    def one(item):
        (start, end, d), ents = item
        period = schema.Period(start, end)
        rows = reader.query_rows(";".join(schema.exposure_sums(period, enterprise=ents,
                                                               count=False)))
        out = {}
        for (meter, ch), acc in schema.add_sums(rows).items():
            if meter in owner:
                out[(owner[meter], d, meter, int(ch))] = post_lex(
                    acc["ea"], acc["coverage"], (end - start) / 1e9, min_cov)
        return out

    result: dict = {}
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for part in pool.map(one, tasks):
            result.update(part)
    return result


def job_exposure(reg: Registry, job, window: ShiftWindow,
                 posts: dict[tuple[str, int], PostExposure]) -> JobExposure:
    """The exposure of ``job`` (a registry :class:`JobType`) from its tasks (module
    docstring)."""
    prof = reg.profile
    tasks: list[TaskLevel] = []
    samples: list[iso9612.TaskSamples] = []
    flags: list[str] = []
    measured_h = covered_h = 0.0
    for t in job.tasks:
        if t.laeq_db is not None:
            tasks.append(TaskLevel(t.what, t.hours, t.laeq_db, "declared"))
            samples.append(iso9612.TaskSamples([t.laeq_db], t.hours, fixed=True))
            if "declared_levels" not in flags:
                flags.append("declared_levels")
            continue
        post = posts.get((t.meter, t.channel))
        level = post.laeq if post is not None else math.nan
        cov = post.coverage if post is not None else 0.0
        tasks.append(TaskLevel(t.what, t.hours, level, "measured", t.meter, t.channel, cov))
        measured_h += t.hours
        covered_h += t.hours * cov
        if not math.isfinite(level):
            flags.append(f"no_data:{t.meter}:{t.channel}")
        elif post.parts_db and len(post.parts_db) >= 3 and t.hours > 0:
            samples.append(iso9612.TaskSamples(list(post.parts_db), t.hours))
        elif t.hours > 0:
            flags.append("u_insufficient_samples")
    known = [t for t in tasks if math.isfinite(t.laeq)]  # a post without data: flagged above
    lex = lex_8h_from_tasks([t.laeq for t in known], [t.hours for t in known]) if known \
        else math.nan
    coverage = covered_h / measured_h if measured_h > 0 else 1.0
    if coverage < reg.analysis.extrapolate_min_coverage:
        flags.append("posts_low_coverage")  # the posts' LAeq stands for their gaps
    u_db = None
    if math.isfinite(lex) and samples and "u_insufficient_samples" not in flags and not any(
            f.startswith("no_data") for f in flags):
        try:
            u_db = iso9612.task_based(samples, instrument=reg.analysis.instrument,
                                      edition=_edition(reg)).U_db
        except ValueError:
            flags.append("u_plan_revise")
    return JobExposure(enterprise=job.enterprise, job=job.id, shift=window,
                       tasks=tuple(tasks), lex_8h=lex, u_db=u_db, coverage=coverage,
                       flags=tuple(dict.fromkeys(flags)), grade=grade(lex, prof),
                       profile=prof.id)


def compute_day(client: InfluxClient, reg: Registry, enterprise_id: str, date: dt.date,
                *, levels_rp: str | None = None, dose_profiles: Iterable = ()
                ) -> DayExposure:
    """Every post (each channel of each registry meter) and every job of ``enterprise_id``
    for the shift that starts on local ``date``. A post without data is reported (flag
    ``no_data``), never left out."""
    e = reg.enterprise(enterprise_id)
    window = shift_window(e, date, reg.deployment.timezone)
    meters = reg.meters_of(enterprise_id)
    sums = read_post_sums(client, window, [m.id for m in meters], dose_profiles,
                          levels_rp=levels_rp)
    posts = {}
    for m in meters:
        for ch in range(m.channels):
            s = sums.get((m.id, ch)) or PostSums(meter=m.id, channel=ch)
            posts[(m.id, ch)] = post_exposure(reg, window, s)
    jobs = tuple(job_exposure(reg, j, window, posts) for j in reg.jobs_of(enterprise_id))
    return DayExposure(enterprise_id, window, tuple(posts.values()), jobs)
