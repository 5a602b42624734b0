"""Effective exposure under the hearing protector, per post-day and per job-day, from the
store (GB/T 23466-2009 selection, ISO 4869-2:2018 methods: :mod:`tingbao.analysis.gbt23466`).

What it reads, for one enterprise's shift (:func:`tingbao.analysis.shifts.shift_window`):

* the day's closed results, the ``exposure`` points the ledger wrote for the profile in force
  (``analysis/ledger.py``): a post's ``laeq``, ``lex_8h``; a job's ``lex_8h`` and ``tasks``;
* each post's spectrum over the shift from the ``bands`` points (LZeq per band, 1/1 or 1/3
  octave, fields ``b63`` … ``b8000``): the energy mean of each band, weighted by each
  interval's duration, summed by InfluxDB (:func:`band_sums_query`: a subquery makes
  10^(0.1 L)·duration per point, the outer query sums it); 1/3 octaves are combined into
  octaves by energy (:func:`tingbao.analysis.iso4869_2.octaves_from_thirds`);
* each post's LC over the shift from the ``lceq`` of the 1 s ``levels`` the same way
  (:func:`lc_sums_query`; the rollups hold only A-weighted energy).

Then, for the protector a job is issued (the registry's ``[job_types] protector``: its
catalogue entries, or an entry made of its SNR), the attenuation of every measured task's
noise by the best method the data allow (octave band when the post has bands, else HML with
LA and LC, else SNR) and by every method that fits (shown side by side), derated by the
profile's rule, and the job's protected LEX,8h = 10 lg Σ (T_m/8 h)·10^(0.1 (L_m − A_m)) with
its GB/T 23466 verdict. A task at a declared level (no meter) has no spectrum and no LC: it is
counted unprotected unless the rule needs no LC (OSHA), and flagged ``declared_unprotected``.
Per post: the catalogue's adequate protectors for its spectrum, ranked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.schema import lc_sums_query

from . import eu_2003_10, iso4869_2
from .gbt23466 import (
    METHODS,
    Protected,
    Protector,
    Ranked,
    Spectrum,
    Verdict,
    catalogue,
    effective_level,
    rank_protectors,
    verdict,
)
from .gbzt189_8 import lex_8h_from_tasks
from .shifts import ShiftWindow, shift_window

__all__ = ["JobProtection", "PostProtection", "PostSpectrum", "TaskProtection",
           "band_sums_query", "compute", "job_protectors", "lc_sums_query", "read_spectra"]

THIRD_LABELS = tuple(lbl for labels in iso4869_2.THIRDS_OF_OCTAVE.values() for lbl in labels)
OCTAVE_LABELS = tuple(str(f) for f in iso4869_2.OCTAVE_BANDS_HZ)


def band_sums_query(period: schema.Period, enterprise: str, fraction: int) -> str:
    """InfluxQL: per (meter, channel) over ``period``, for each band label ``x`` of the
    octaves (``fraction`` 1) or the 1/3 octaves 50 Hz … 10 kHz (3) that make up ISO 4869-2's
    eight octaves, ``e_x`` = Σ 10^(0.1 L_x)·duration_s and ``d_x`` = Σ duration_s of the
    points that have the band (s): the band's energy mean is 10 lg(e_x/d_x)
    (:func:`tingbao.collector.schema.band_sums_query` over these labels)."""
    if fraction not in (1, 3):
        raise ValueError(f"fraction {fraction!r}: 1 or 3")
    return schema.band_sums_query(period, enterprise, fraction,
                                  OCTAVE_LABELS if fraction == 1 else THIRD_LABELS)


def _mean_db(row: dict, key: str) -> float | None:
    e, d = row.get("e_" + key), row.get("d_" + key)
    if e is None or not d or e <= 0:
        return None
    return 10.0 * math.log10(float(e) / float(d))


@dataclasses.dataclass(frozen=True)
class PostSpectrum:
    """A post's noise over a shift: LC (dB, None without ``lceq``), the octave levels
    63 Hz … 8 kHz (dB, None unless all eight are known) and the band fraction they came from
    (1, 3 or None)."""

    meter: str
    channel: int
    lc_db: float | None
    octave_db: tuple[float, ...] | None
    fraction: int | None


def read_spectra(reader: InfluxClient, enterprise: str, period: schema.Period
                 ) -> dict[tuple[str, int], PostSpectrum]:
    """Every post's :class:`PostSpectrum` of ``enterprise`` over ``period`` (three queries in
    one request). Octaves come from 1/1-octave points when a post has them, else from 1/3."""
    answers = reader.query(";".join([band_sums_query(period, enterprise, 1),
                                     band_sums_query(period, enterprise, 3),
                                     lc_sums_query(period, enterprise)]))
    by: dict[tuple[str, int], dict] = {}
    for s in answers:
        key = (s.tags.get("meter"), int(s.tags.get("channel", 0)))
        acc = by.setdefault(key, {})
        for row in s.rows:
            cols = {k for k, v in row.items() if v is not None and k.startswith("e_")}
            if not cols:
                continue
            if "e_lc" in cols:
                acc["lc"] = _mean_db(row, "lc")
            elif any(k[2:] in ("50", "80") for k in cols):
                acc["thirds"] = row
            else:
                acc["octaves"] = row
    out = {}
    for (meter, ch), acc in by.items():
        octave, fraction = None, None
        if "octaves" in acc:
            vals = [_mean_db(acc["octaves"], lbl) for lbl in OCTAVE_LABELS]
            if all(v is not None for v in vals):
                octave, fraction = tuple(vals), 1
        if octave is None and "thirds" in acc:
            thirds = {lbl: _mean_db(acc["thirds"], lbl) for lbl in THIRD_LABELS}
            octs = iso4869_2.octaves_from_thirds(thirds)
            if len(octs) == len(iso4869_2.OCTAVE_BANDS_HZ):
                octave, fraction = tuple(octs[f] for f in iso4869_2.OCTAVE_BANDS_HZ), 3
        out[(meter, ch)] = PostSpectrum(meter, ch, acc.get("lc"), octave, fraction)
    return out


def _exposure_points(reader: InfluxClient, enterprise: str, time_ns: int, profile_id: str
                     ) -> list[dict]:
    out = []
    for s in reader.query(schema.exposure_at(enterprise, profile_id, time_ns)):
        for r in s.rows:
            out.append({**{k: v for k, v in s.tags.items() if v},
                        **{k: v for k, v in r.items() if v is not None}})
    return out


# ------------------------------------------------------------------------------- protectors
def job_protectors(job) -> tuple[Protector, ...] | None:
    """The protector(s) a registry job is issued: its catalogue entries (plug and muff for
    ``both``), else one entry made of its SNR (``registry`` source), else None. ValueError
    for an unknown catalogue id or a type that disagrees with the catalogue."""
    p = job.protector
    if p is None:
        return None
    if p.catalogue:
        cat = catalogue()
        unknown = [c for c in p.catalogue if c not in cat]
        if unknown:
            raise ValueError(f"job {job.id!r}: protector catalogue id(s) {unknown} are not in "
                             f"analysis/data/protectors.toml; one of {', '.join(cat)}")
        got = tuple(cat[c] for c in p.catalogue)
        types = sorted(x.type for x in got)
        want = ["earmuff", "earplug"] if p.type == "both" else [p.type]
        if types != want:
            raise ValueError(f"job {job.id!r}: protector type {p.type!r} but catalogue "
                             f"entries are {' + '.join(types)}")
        if p.formable is not None:
            got = tuple(dataclasses.replace(x, formable=p.formable) if x.type == "earplug"
                        else x for x in got)
        return got
    if p.snr_db is None:
        return None
    kind = "earmuff" if p.type == "earmuff" else "earplug"
    return (Protector(f"{job.id}-protector", p.model or p.type, kind, bool(p.formable),
                      p.snr_db, None, None, None, None, None, None, None,
                      "site registry (SNR only)", False),)


# ------------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class PostProtection:
    """One post-day: its levels (dB), spectrum and the catalogue's adequate protectors."""

    enterprise: str
    meter: str
    channel: int
    date: dt.date
    lex_db: float | None
    la_db: float | None
    spectrum: PostSpectrum | None
    ranked: tuple[Ranked, ...]
    derating: str


@dataclasses.dataclass(frozen=True)
class TaskProtection:
    """One task of a job: its hours, level (dB(A)) and the protected level by method."""

    what: str
    hours: float
    laeq_db: float
    meter: str | None
    channel: int | None
    by_method: dict[str, Protected]
    chosen: Protected | None


@dataclasses.dataclass(frozen=True)
class JobProtection:
    """One job-day: its stored LEX,8h, the protector(s), the protected LEX,8h by the best
    method of each task (``protected_lex_db``, with ``methods`` used) and by each method
    that fits every measured task (``by_method``), the ``derating`` rule, the GB/T 23466
    ``verdict``, ``flags`` and the notes a report must print. ``eu_status`` is the
    EU 2003/10/EC Article 3 status with the 87 dB(A) limit value checked under the protector
    (:func:`tingbao.analysis.eu_2003_10.classify` with the protected LEX,8h; the action
    values stay on the unprotected level); None without both."""

    enterprise: str
    job: str
    date: dt.date
    lex_db: float | None
    protectors: tuple[str, ...]
    tasks: tuple[TaskProtection, ...]
    protected_lex_db: float | None
    methods: tuple[str, ...]
    by_method: dict[str, float]
    derating: str
    verdict: Verdict | None
    flags: tuple[str, ...]
    notes: tuple[str, ...]
    eu_status: str | None = None


def _task(task: dict, spectra: dict, protectors: tuple[Protector, ...], rule: str,
          bonus: float) -> TaskProtection:
    meter, ch = task.get("meter"), task.get("channel")
    la = float(task["laeq"]) if task.get("laeq") is not None else math.nan
    spec = spectra.get((meter, int(ch))) if meter is not None and ch is not None else None
    s = Spectrum(la, spec.lc_db if spec else None, spec.octave_db if spec else None)
    by, chosen = {}, None
    if math.isfinite(la):
        for m in METHODS:
            try:
                by[m] = effective_level(protectors, s, derating=rule, dual_bonus_db=bonus,
                                        method=m)
            except (ValueError, TypeError):
                continue
        try:
            chosen = effective_level(protectors, s, derating=rule, dual_bonus_db=bonus)
        except ValueError:
            chosen = None
    return TaskProtection(str(task.get("what") or ""), float(task.get("hours") or 0.0), la,
                          meter, None if ch is None else int(ch), by, chosen)


def _job(reg, job, rec: dict, spectra: dict, date: dt.date) -> JobProtection:
    prof = reg.profile
    rule, bonus = prof.protector_derating, prof.dual_protection_bonus_db
    lex = rec.get("lex_8h")
    protectors = job_protectors(job)
    flags: list[str] = []
    if protectors is None:
        return JobProtection(job.enterprise, job.id, date, lex, (), (), None, (), {}, rule,
                             None, ("no_protector",), ())
    tasks = [_task(t, spectra, protectors, rule, bonus)
             for t in json.loads(rec.get("tasks") or "[]")]
    levels, hours, methods, notes = [], [], [], []
    for t in tasks:
        if not math.isfinite(t.laeq_db):
            flags.append(f"no_data:{t.meter}:{t.channel}")
            continue
        if t.chosen is None:
            flags.append("declared_unprotected" if t.meter is None else
                         f"unassessed:{t.meter}:{t.channel}")
            levels.append(t.laeq_db)
        else:
            levels.append(t.chosen.level_db)
            methods.append(t.chosen.method)
            notes.extend(t.chosen.notes)
        hours.append(t.hours)
    protected = lex_8h_from_tasks(levels, hours) if levels else math.nan
    by_method = {}
    measured = [t for t in tasks if math.isfinite(t.laeq_db)]
    for m in METHODS:
        if measured and all(m in t.by_method or t.meter is None for t in measured):
            lv = [t.by_method[m].level_db if m in t.by_method else t.laeq_db for t in measured]
            by_method[m] = float(lex_8h_from_tasks(lv, [t.hours for t in measured]))
    ok = math.isfinite(protected)
    eu = (eu_2003_10.classify(lex, protected_lex_db=float(protected)).lex_status
          if ok and lex is not None and math.isfinite(lex) else None)
    return JobProtection(job.enterprise, job.id, date, lex,
                         tuple(p.id for p in protectors), tuple(tasks),
                         float(protected) if ok else None, tuple(dict.fromkeys(methods)),
                         by_method, rule, verdict(protected, prof) if ok else None,
                         tuple(dict.fromkeys(flags)), tuple(dict.fromkeys(notes)), eu)


@dataclasses.dataclass(frozen=True)
class DayProtection:
    """An enterprise's shift: its posts and jobs under protection, and the profile."""

    enterprise: str
    date: dt.date
    window: ShiftWindow
    profile: str
    posts: tuple[PostProtection, ...]
    jobs: tuple[JobProtection, ...]


def compute(reader: InfluxClient, reg, enterprise: str, date: dt.date) -> DayProtection:
    """Posts and jobs of ``enterprise``'s shift starting on local ``date`` under protection
    (module docstring). Only a closed day (with ``exposure`` points) has results; posts and
    jobs without a stored point are left out."""
    prof = reg.profile
    window = shift_window(reg.enterprise(enterprise), date, reg.deployment.timezone)
    points = _exposure_points(reader, enterprise, window.period.start_ns, prof.id)
    spectra = read_spectra(reader, enterprise, window.period)
    posts = []
    for rec in (r for r in points if r.get("kind") == "post"):
        key = (rec.get("meter"), int(rec.get("channel", 0)))
        spec = spectra.get(key)
        la = rec.get("laeq")
        ranked: tuple[Ranked, ...] = ()
        if la is not None and spec is not None and (spec.octave_db is not None
                                                    or spec.lc_db is not None):
            ranked = tuple(rank_protectors(Spectrum(float(la), spec.lc_db, spec.octave_db),
                                           prof))
        posts.append(PostProtection(enterprise, key[0], key[1], date, rec.get("lex_8h"), la,
                                    spec, ranked, prof.protector_derating))
    jobs = []
    records = {r.get("job"): r for r in points if r.get("kind") == "job"}
    for job in reg.jobs_of(enterprise):
        if job.id in records:
            jobs.append(_job(reg, job, records[job.id], spectra, date))
    return DayProtection(enterprise, date, window, prof.id, tuple(posts), tuple(jobs))

