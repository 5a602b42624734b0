"""GBZ/T 229.4-2012 (工作场所职业病危害作业分级 第4部分：噪声): the hazard grade of noise work.

Clause 5 grades steady and non-steady noise by the daily exposure LEX,8h (or the weekly LEX,W
for weeks that are not five days), in dB(A):

==========  ==================  ================
grade       LEX,8h, dB(A)       name
==========  ==================  ================
—           L < 85              no grade (0)
I           85 ≤ L < 90         轻度危害 mild
II          90 ≤ L < 94         中度危害 moderate
III         94 ≤ L < 100        重度危害 severe
IV          L ≥ 100             极重危害 extreme
==========  ==================  ================

and calls work with LEX,8h ≥ 80 dB(A) 噪声作业 (noise work). The edges are data of the
regulatory profile (:mod:`tingbao.collector.registry.profiles`, ``CN-GBZ``), so a revised
standard is a new profile. Only an exposure over a working day is graded: a 1 s LAeq is not
an LEX,8h (a projected LEX,8h is, see :func:`tingbao.analysis.gbzt189_8.projected_lex_8h`).
The obsolete 1995 index method (grades from Lw − Ls) is not used.

Impulse noise (:func:`impulse_grade`) is graded by how far the day's highest peak lies above
the GBZ 2.2-2007 peak limit for the day's impulse count
(:func:`tingbao.analysis.gbz2_2.peak_limit_db`). The bands are NOT CONFIRMED (confidence L,
noise-standards.md "Checked 2026-11-29"): the profile ships them as provisional data, 2.5 dB
steps (I limit ≤ peak < limit + 2.5, II < +5, III < +7.5, IV ≥ +7.5 dB), and every
:class:`ImpulseHazardGrade` carries ``provisional=True`` and a note that reports must print.
"""

from __future__ import annotations

import dataclasses
import math

from tingbao.analysis.gbz2_2 import BEYOND_TABLE_NOTE, peak_limit_db, weighting_note
from tingbao.collector.registry.profiles import Profile, profile

__all__ = ["PROVISIONAL_NOTE", "HazardGrade", "ImpulseHazardGrade", "grade", "impulse_grade"]

PROVISIONAL_NOTE = ("脉冲噪声分级为暂定值，尚未与 GBZ/T 229.4-2012 原文核对 / impulse-noise grades "
                    "are provisional: not yet checked against the printed GBZ/T 229.4-2012")
"""The note every provisional impulse grade carries (Chinese / English)."""


@dataclasses.dataclass(frozen=True)
class HazardGrade:
    """The grade of one exposure. ``code`` is ``"0"`` below the first grade, else the
    profile's code (``I`` … ``IV``); ``noise_work`` says whether LEX,8h reaches the
    profile's 噪声作业 threshold; ``lex_db`` is the graded level, dB(A)."""

    code: str
    name_zh: str
    name_en: str
    noise_work: bool
    lex_db: float
    profile: str

    @property
    def label(self) -> str:
        """``"II 中度危害 moderate hazard"``, ``"噪声作业 noise work"`` or ``"—"``."""
        if self.code != "0":
            return f"{self.code} {self.name_zh} {self.name_en}"
        return "噪声作业 noise work" if self.noise_work else "—"


def grade(lex_db: float, prof: Profile | str | None = None) -> HazardGrade | None:
    """GBZ/T 229.4-2012 clause 5 grade of a daily (LEX,8h) or weekly (LEX,W) exposure level
    ``lex_db`` in dB(A), with the edges of profile ``prof`` (default ``CN-GBZ``). Returns
    None for a level that is not a number (no data). Edges are inclusive below: 94.0 is III.
    """
    p = prof if isinstance(prof, Profile) else profile(prof or "CN-GBZ")
    if lex_db is None or not math.isfinite(float(lex_db)):
        return None
    lex = float(lex_db)
    noise_work = p.noise_work_db is not None and lex >= p.noise_work_db
    found = None
    for g in p.grades:
        if lex >= g.from_db:
            found = g
    if found is None:
        return HazardGrade("0", "无分级", "below grade I", noise_work, lex, p.id)
    return HazardGrade(found.code, found.name_zh, found.name_en, noise_work, lex, p.id)


@dataclasses.dataclass(frozen=True)
class ImpulseHazardGrade:
    """The impulse-noise grade of one day: ``code`` ``"0"`` below the peak limit, the
    profile's code (``I`` … ``IV``) at or above it, ``"beyond"`` when the impulse count is
    beyond the GBZ 2.2 table (no limit, treated as exceeded, not graded). ``peak_db`` is the
    graded peak (dB re 20 µPa, ``weighting``), ``limit_db`` the GBZ 2.2 limit for
    ``n_impulses`` (None beyond the table), ``above_limit_db`` = peak − limit.
    ``provisional`` is the profile's ``impulse_grades_provisional`` (True for CN-GBZ);
    ``notes`` are what a report must print with it."""

    code: str
    name_zh: str
    name_en: str
    peak_db: float
    n_impulses: int
    limit_db: float | None
    above_limit_db: float | None
    weighting: str
    profile: str
    provisional: bool = True
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``"II 中度危害 moderate hazard（暂定 provisional）"``, or the plain text of ``"0"``
        and ``"beyond"`` (which do not depend on the provisional bands)."""
        if self.code in ("0", "beyond"):  # not a band of the provisional table
            return f"{self.name_zh} {self.name_en}"
        return (f"{self.code} {self.name_zh} {self.name_en}"
                + ("（暂定 provisional）" if self.provisional else ""))


def impulse_grade(peak_db: float, n_impulses: int,
                  prof: Profile | str | None = None) -> ImpulseHazardGrade | None:
    """GBZ/T 229.4-2012 impulse-noise grade (PROVISIONAL bands, see the module docstring) of
    the day's highest peak ``peak_db`` (dB re 20 µPa, weighted as the profile's
    ``peak_weighting``) with ``n_impulses`` impulses that day, profile ``prof`` (default
    ``CN-GBZ``). Edges are inclusive below: a peak equal to the limit is grade I, limit + 2.5
    is II. None for a peak that is not a number (no data); :class:`ValueError` for a profile
    without impulse grades."""
    p = prof if isinstance(prof, Profile) else profile(prof or "CN-GBZ")
    if not p.impulse_grades:
        raise ValueError(f"profile {p.id} has no impulse-noise grades")
    if peak_db is None or not math.isfinite(float(peak_db)):
        return None
    peak = float(peak_db)
    limit = peak_limit_db(n_impulses, p)
    n = int(n_impulses)
    notes = [PROVISIONAL_NOTE] if p.impulse_grades_provisional else []
    if note := weighting_note(p):
        notes.append(note)
    if limit is None:
        return ImpulseHazardGrade("beyond", "超出表列范围，按超标处理",
                                  "beyond the table, treated as exceeded", peak, n, None, None,
                                  p.peak_weighting, p.id, p.impulse_grades_provisional,
                                  (*notes, BEYOND_TABLE_NOTE))
    above = peak - limit
    found = None
    for g in p.impulse_grades:
        if above >= g.above_limit_db:
            found = g
    if found is None:
        return ImpulseHazardGrade("0", "未超过峰值限值", "below the peak limit", peak, n, limit,
                                  above, p.peak_weighting, p.id, p.impulse_grades_provisional,
                                  tuple(notes))
    return ImpulseHazardGrade(found.code, found.name_zh, found.name_en, peak, n, limit, above,
                              p.peak_weighting, p.id, p.impulse_grades_provisional,
                              tuple(notes))
