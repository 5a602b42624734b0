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
"""

from __future__ import annotations

import dataclasses
import math

from tingbao.collector.registry.profiles import Profile, profile

__all__ = ["HazardGrade", "grade"]


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
