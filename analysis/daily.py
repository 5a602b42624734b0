"""One enterprise's day, complete: the exposure of every post and job
(:mod:`.exposure`), the GBZ 2.2-2007 impulse-noise check and the provisional GBZ/T 229.4
impulse grade of every post, and the other regulatory profiles side by side
(:mod:`.dosimeters`). What ``tingbao exposure`` prints, the ledger stores and alerts read.

**The impulse count of a day** (:func:`tingbao.analysis.gbz2_2.impulse_count`): GBZ 2.2-2007
sets the peak limit by the number n of impulses in the working day; every impulse the edge
counted at its lowest threshold (default 120 dB, C-weighted peak events; one impact and its
ringing count once, 0.5 s refractory, :mod:`tingbao.edge.impulses`) is one. The peak compared
is the day's highest LCpeak (LZpeak when the profile's ``peak_weighting`` is ``Z``).
Intervals from agents that do not count impulses give n = 0, the most lenient row; the post
is then flagged ``impulses_not_counted``.
"""

from __future__ import annotations

import datetime as dt
import math

from tingbao.collector.influx import InfluxClient
from tingbao.collector.registry.profiles import profile
from tingbao.collector.registry.site import Registry

from . import dosimeters, gbz2_2, gbzt229_4
from .exposure import DayExposure, PostExposure, compute_day

__all__ = ["compute_days", "dose_profiles", "peak_fields"]


def dose_profiles(reg: Registry) -> list:
    """The side-by-side profiles stated as a dose and TWA (OSHA, NIOSH: ``exposure_metric``
    ``twa``), or whose dose an energy sum cannot give (a threshold, or an exchange rate other
    than 3 dB): their dose is summed in the database over the 1 s levels."""
    out = []
    for pid in reg.analysis.profiles:
        p = profile(pid)
        if p.exposure_metric == "twa" or p.threshold_db > 0 or p.exchange_rate_db != 3.0:
            out.append(p)
    return out


def peak_fields(post: PostExposure, reg: Registry) -> dict:
    """The GBZ 2.2 peak check and the provisional impulse grade of a post as record fields:
    ``n_impulses``, ``peak_limit_db``, ``peak_exceeded``, ``peak_weighting``,
    ``impulse_grade`` and ``impulse_grade_provisional``."""
    prof = reg.profile
    n, threshold = gbz2_2.impulse_count(post.sums.impulses)
    counted, n = n is not None, n or 0
    peak = post.sums.lzpeak_db if prof.peak_weighting == "Z" else post.sums.lcpeak_db
    out: dict = {"n_impulses": n, "peak_weighting": prof.peak_weighting}
    check = gbz2_2.peak_check(peak, n, prof)
    if check is not None:
        out.update(peak_limit_db=check.limit_db, peak_exceeded=check.exceeded)
    if prof.impulse_grades and peak is not None:
        g = gbzt229_4.impulse_grade(peak, n, prof)
        if g is not None:
            out.update(impulse_grade=g.code, impulse_grade_provisional=g.provisional)
    if counted:
        out["impulse_threshold_db"] = threshold
    elif post.sums.n:
        out["flags"] = ",".join((*post.flags, "impulses_not_counted"))
    return out


def compute_days(reader: InfluxClient, reg: Registry, enterprise: str, date: dt.date
                 ) -> tuple[DayExposure, dict]:
    """The day of ``enterprise`` starting on local ``date`` and its extras:
    ``{("post", (meter, channel)) | ("job", job): {"extra": {fields},
    "profiles": [ {profile fields}, … ]}}``."""
    day = compute_day(reader, reg, enterprise, date, dose_profiles=dose_profiles(reg))
    extras: dict = {}
    for p in day.posts:
        extras[("post", (p.meter, p.channel))] = {"extra": peak_fields(p, reg),
                                                  "profiles": _views(p, reg)}
    for j in day.jobs:
        extras[("job", j.job)] = {"extra": {}, "profiles": []}
    return day, extras


def _views(post: PostExposure, reg: Registry) -> list[dict]:
    """The post under each side-by-side profile other than the one in force, as record
    fields (:func:`tingbao.analysis.dosimeters.view`)."""
    s = post.sums
    sums = dosimeters.PostSums(ea_pa2s=s.ea_pa2s, coverage_s=min(s.covered_s,
                                                                 post.shift.length_s),
                               shift_s=post.shift.length_s, lcpeak_max_db=s.lcpeak_db,
                               lzpeak_max_db=s.lzpeak_db, impulse_counts=s.impulses,
                               dose_sums=s.doses)
    out = []
    for pid in reg.analysis.profiles:
        if pid == reg.profile.id:
            continue
        v = dosimeters.view(sums, pid, min_coverage=reg.analysis.extrapolate_min_coverage)
        out.append({"profile": v.profile, "metric": v.exposure_metric,
                    "level_db": _finite(v.level_db), "lex_8h": _finite(v.lex_8h_db),
                    "twa_db": _finite(v.twa_db), "dose_pct": _finite(v.dose_pct),
                    "limit_db": v.limit_db, "status": v.status,
                    "peak_limit_db": v.peak_limit_db, "peak_exceeded": v.peak_exceeded,
                    "notes": " | ".join(v.notes) or None})
    return out


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None
