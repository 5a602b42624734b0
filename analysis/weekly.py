"""Weekly exposure LEX,W (GBZ 2.2-2007 clause 4.2 note; GBZ/T 189.8-2007) from the days the
ledger closed: for weeks that are not five working days, the limit and the GBZ/T 229.4 grade
apply to LEX,W = 10 lg[(1/5) Σ_k 10^(0.1 LEX,8h,k)] over the days k worked in the week
(:func:`tingbao.analysis.gbz2_2.lex_w`, divisor from the profile).

The week is the ISO week (Monday to Sunday) of the shift dates. The days worked are the
enterprise's workdays (``[enterprises.shift] workdays`` / ``days_per_week``) in that week.
A workday whose record has no LEX,8h (the meter was off, the day is not closed) is listed
in ``missing``: LEX,W is then taken over the days with data and is a lower bound, never
guessed. ``applies`` says whether the week is not five days worked; LEX,W is computed either
way (for five days it is the energy mean of the days, the mean LEX,8h in energy), and the
grade is taken from LEX,W when it applies, else from the highest daily LEX,8h, as
GBZ/T 229.4 grades a day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from tingbao.collector.influx import InfluxClient
from tingbao.collector.registry.site import Registry

from . import gbz2_2, ledger
from .gbzt229_4 import HazardGrade, grade
from .shifts import shift_window

__all__ = ["WeekExposure", "week_dates", "week_exposure"]


@dataclasses.dataclass(frozen=True)
class WeekExposure:
    """One post's (``subject`` = ``meter:channel``) or job's week: the daily LEX,8h values
    (dB(A)) by date, LEX,W (dB(A)), whether LEX,W applies (not 5 days worked) and the grade."""

    enterprise: str
    kind: str
    subject: str
    year: int
    week: int
    daily: tuple[tuple[dt.date, float], ...]
    lex_w: float
    applies: bool
    grade: HazardGrade | None
    profile: str
    worked: int = 0
    missing: tuple[dt.date, ...] = ()

    @property
    def days(self) -> int:
        return len(self.daily)


def week_dates(year: int, week: int) -> list[dt.date]:
    """Monday … Sunday of ISO week ``week`` of ``year``."""
    return [dt.date.fromisocalendar(year, week, d) for d in range(1, 8)]


def week_exposure(reader: InfluxClient, reg: Registry, enterprise: str, year: int,
                  week: int) -> list[WeekExposure]:
    """The weeks of every post and job of ``enterprise`` with at least one closed day in ISO
    week ``week`` of ``year`` (profile in force)."""
    prof = reg.profile
    e = reg.enterprise(enterprise)
    workdays = [d for d in week_dates(year, week) if e.shift.works_on(d)]
    daily: dict[tuple[str, str], list[tuple[dt.date, float]]] = {}
    for d in workdays:
        w = shift_window(e, d, reg.deployment.timezone)
        for r in ledger.read_records(reader, enterprise, w.period.start_ns):
            if r.tags.get("profile") != prof.id or "lex_8h" not in r.fields:
                continue
            kind = r.tags.get("kind")
            subject = (f"{r.tags.get('meter')}:{r.tags.get('channel')}" if kind == "post"
                       else r.tags.get("job"))
            daily.setdefault((kind, subject), []).append((d, float(r.fields["lex_8h"])))
    out = []
    for (kind, subject), days in sorted(daily.items()):
        lw = gbz2_2.lex_w([lex for _, lex in days], prof)
        applies = len(workdays) != (prof.week_divisor_days or 5)
        g = grade(lw if applies else max(lex for _, lex in days), prof)
        have = {d for d, _ in days}
        out.append(WeekExposure(enterprise, kind, subject, year, week, tuple(days), lw,
                                applies, g, prof.id, len(workdays),
                                tuple(d for d in workdays if d not in have)))
    return out
