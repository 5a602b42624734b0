"""GBZ 2.2-2007 (工作场所有害因素职业接触限值 第2部分：物理因素), clause 11 噪声 (noise; the
clause number is recalled, not checked against the print): the occupational exposure limits
for noise, as the regulatory profile holds them.

* Steady and non-steady noise: LEX,8h ≤ 85 dB(A) for a five-day week; for a week that is not
  five days, the weekly exposure LEX,W = 10 lg[(1/5) Σ_k 10^(0.1 LEX,8h,k)] over the days
  worked (divisor fixed at 5: ``week_divisor_days``) is held to the same 85 dB(A)
  (:func:`lex_w`; the daily LEX,8h is :func:`tingbao.analysis.gbzt189_8.lex_8h`, or
  :func:`~tingbao.analysis.gbzt189_8.lex_8h_from_tasks` for several posts).
* Impulse noise: the peak sound pressure level by the number n of impulses in a working day,
  n ≤ 100 → 140 dB; 100 < n ≤ 1 000 → 130 dB; 1 000 < n ≤ 10 000 → 120 dB (the profile's
  ``peak_limits``; confidence H). The standard has no row for n > 10 000: :func:`peak_limit_db`
  returns None and :func:`peak_check` treats the peak as exceeded and says why. The n of a
  day is :func:`impulse_count` of the counts the edge sent: the one rule every caller uses.

Not confirmed (confidence L, noise-standards.md "Checked 2026-11-29"): the frequency weighting
GBZ 2.2 prints for the peak (the profile's ``peak_weighting``, default C; the store keeps both
LCpeak and LZpeak) and the definition of an impulse (rises and decays within 0.5 s, more than
1 s apart). :class:`PeakCheck` carries the weighting used, its confidence and bilingual notes
(Chinese first) that a report must print.

Edges: a level equal to a limit counts as reaching it (the GBZ/T 229.4 convention, where
LEX,8h = 85.0, the GBZ 2.2 limit itself, is grade I): ``exceeded`` is ``peak ≥ limit``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from tingbao.collector.registry.profiles import Profile, profile

__all__ = ["BEYOND_TABLE_NOTE", "MAX_WEEK_DAYS", "PeakCheck", "impulse_count", "lex_w",
           "peak_check", "peak_limit_db", "weighting_note"]

MAX_WEEK_DAYS = 7
"""A week has at most seven working days: :func:`lex_w` refuses more."""

BEYOND_TABLE_NOTE = ("超出表列范围：每日脉冲次数超过 10 000 次，GBZ 2.2 无对应限值，按超标处理 / "
                     "beyond the table: impulse count exceeds 10 000 a day, GBZ 2.2 gives no "
                     "limit; treated as exceeded")
"""The note of a :class:`PeakCheck` whose impulse count is beyond the profile's table."""


def _profile(prof: Profile | str | None) -> Profile:
    return prof if isinstance(prof, Profile) else profile(prof or "CN-GBZ")


def _check_count(n_impulses) -> int:
    if isinstance(n_impulses, bool) or not float(n_impulses).is_integer() or n_impulses < 0:
        raise ValueError(f"impulse count must be a whole number >= 0, got {n_impulses!r}")
    return int(n_impulses)


def impulse_count(counts: Mapping[float, int]) -> tuple[int | None, float | None]:
    """The number n of impulses in a working day, the n of the GBZ 2.2-2007 peak table, from
    the impulse ``counts`` the edge sent for it, ``{C-weighted peak threshold, dB re 20 µPa:
    impulses counted at or above it}`` (the ``imp_<threshold>`` sums of the store). Returns
    (n, the threshold in dB whose count it is), or (None, None) when there are no counts
    (the edge did not count impulses: n is unknown, not 0).

    The rule, the one every caller uses (``tingbao exposure``, ``tingbao analyze``, the
    virtual dosimeters): every impulse the edge counted is an impulse of the day, since
    GBZ 2.2 counts impulses, not impulses above some level. So n is the count at the LOWEST
    counting threshold, whatever the peak limits of the profile: the edge's lowest threshold
    (default 120 dB, :data:`tingbao.edge.contract.IMPULSE_THRESHOLDS_DB`) defines what counts
    as an impulse, and a deployment that counts from 110 dB gets the impulses from 110 dB.
    One impact counts once: the edge starts an impulse only after 0.5 s below the threshold
    (the refractory time, :mod:`tingbao.edge.impulses`), so an impact's ringing is not
    counted again. ``{110: 5000, 120: 50}`` → (5000, 110.0); ``{}`` → (None, None).
    A negative or fractional count is refused (ValueError)."""
    if not counts:
        return None, None
    by_threshold = {float(t): _check_count(n) for t, n in counts.items()}
    threshold = min(by_threshold)
    return by_threshold[threshold], threshold


def peak_limit_db(n_impulses: int, prof: Profile | str | None = None) -> float | None:
    """The peak limit in dB re 20 µPa (weighting: the profile's ``peak_weighting``) for
    ``n_impulses`` impulses in a working day: the first row of the profile's ``peak_limits``
    whose ``max_impulses_per_day`` ≥ n (GBZ 2.2-2007: 140 / 130 / 120 dB for ≤ 100 / 1 000 /
    10 000). None when n is beyond the last row (GBZ 2.2 has no limit above 10 000 impulses a
    day: treat as exceeded, see :data:`BEYOND_TABLE_NOTE`). A profile without a table (OSHA,
    NIOSH, EU) has one ceiling whatever the count: its ``peak_ceiling_db`` (None if it has
    none). n = 0 (no impulse counted) reads the first row."""
    p = _profile(prof)
    n = _check_count(n_impulses)
    if not p.peak_limits:
        return p.peak_ceiling_db
    for row in p.peak_limits:
        if n <= row.max_impulses_per_day:
            return row.limit_db
    return None


@dataclasses.dataclass(frozen=True)
class PeakCheck:
    """A day's highest peak ``peak_db`` (dB re 20 µPa, ``weighting``-weighted) against the
    limit for ``n_impulses`` impulses. ``limit_db`` is None beyond the table (then
    ``exceeded`` is True and ``margin_db`` None); ``margin_db`` = limit − peak (dB, negative
    when exceeded). ``weighting_confidence`` is the profile's H / M / L for the weighting;
    ``provisional`` holds the notes (Chinese / English) a report must print with it, empty
    when nothing is unconfirmed."""

    peak_db: float
    n_impulses: int
    limit_db: float | None
    exceeded: bool
    margin_db: float | None
    weighting: str
    weighting_confidence: str
    profile: str
    provisional: tuple[str, ...] = ()


def weighting_note(prof: Profile) -> str | None:
    """The note (Chinese / English) for a peak weighting that is not confirmed by two sources
    (confidence M: one source; L: not confirmed), else None."""
    c, w = prof.peak_weighting_confidence, prof.peak_weighting
    if c == "H":
        return None
    zh, en = (("仅有一个来源", "rests on one source") if c == "M"
              else ("未经确认", "is not confirmed"))
    return (f"峰值频率计权{zh}（可信度 {c}），采用 {w} 计权 / the peak weighting of {prof.id} "
            f"{en} (confidence {c}); {w}-weighted peak used")


def peak_check(peak_max_db: float | None, n_impulses: int,
               prof: Profile | str | None = None) -> PeakCheck | None:
    """GBZ 2.2-2007 impulse-noise check of the day's highest peak ``peak_max_db`` (dB re
    20 µPa, weighted as the profile's ``peak_weighting`` says: the caller passes LCpeak for
    ``"C"``, LZpeak for ``"Z"``) with ``n_impulses`` impulses counted that day. None when the
    peak is not a number (no data). See :class:`PeakCheck`."""
    p = _profile(prof)
    n = _check_count(n_impulses)
    if peak_max_db is None or not math.isfinite(float(peak_max_db)):
        return None
    peak = float(peak_max_db)
    limit = peak_limit_db(n, p)
    notes = [note] if (note := weighting_note(p)) else []
    if limit is None and p.peak_limits:
        notes.append(BEYOND_TABLE_NOTE)
        exceeded, margin = True, None
    elif limit is None:  # no peak limit in this profile at all
        exceeded, margin = False, None
    else:
        exceeded, margin = peak >= limit, limit - peak
    return PeakCheck(peak, n, limit, exceeded, margin, p.peak_weighting,
                     p.peak_weighting_confidence, p.id, tuple(notes))


def lex_w(daily_lex_db, prof: Profile | str | None = None) -> float:
    """LEX,W in dB(A) of the days worked in one week, ``daily_lex_db`` (1-D, one LEX,8h per
    day worked, dB(A), at most 7): 10 lg[(1/d) Σ_k 10^(0.1 LEX,8h,k)] with d the profile's
    ``week_divisor_days`` (5 in GBZ 2.2-2007 / GBZ/T 189.8-2007, fixed whatever the number of
    days worked). Six days at 85 dB(A) give 85 + 10 lg(6/5) = 85.79 dB(A). NaN for no day.
    A day without a level is left out by the caller (a NaN here is refused: it would hide a
    missing day)."""
    p = _profile(prof)
    if p.week_divisor_days is None:
        raise ValueError(f"profile {p.id} has no weekly exposure (week_divisor_days)")
    days = np.atleast_1d(np.asarray(daily_lex_db, dtype=float))
    if days.ndim != 1:
        raise ValueError(f"daily levels must be 1-D, got shape {days.shape}")
    if days.size > MAX_WEEK_DAYS:
        raise ValueError(f"{days.size} daily levels: a week has at most {MAX_WEEK_DAYS} days")
    if not np.all(np.isfinite(days)):
        raise ValueError("every daily LEX,8h must be a number: leave days without one out")
    if days.size == 0:
        return math.nan
    top = float(days.max())
    return top + 10.0 * math.log10(float(np.sum(10.0 ** (0.1 * (days - top))))
                                   / p.week_divisor_days)
