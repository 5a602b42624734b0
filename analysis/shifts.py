"""Shifts in the enterprise's local time (GBZ/T 189.8-2007 clause 3: the working day Te).

A shift is named by the local calendar date on which it starts (its *shift date*): the
night shift of 2026-03-01 that starts at 22:00 Asia/Shanghai and lasts 8 h runs from
2026-03-01T14:00Z to 2026-03-01T22:00Z, and its exposure belongs to 2026-03-01 even though
most of it falls on the 2nd in local time. Times are converted with :mod:`zoneinfo`; a shift
lasts its nominal hours of elapsed time, so in a zone with daylight saving a shift across
the change still lasts ``hours`` (Asia/Shanghai has none). The registry's
:class:`~tingbao.collector.registry.site.Shift` gives start (``HH:MM``), hours and days
worked per week.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

from tingbao.collector.registry.site import Enterprise, Registry
from tingbao.collector.schema import Period

__all__ = ["ShiftWindow", "shift_window", "shifts_between", "shift_at", "iso_week",
           "local_midnight_ns", "local_date", "local_days"]

NS = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class ShiftWindow:
    """One enterprise's shift: ``date`` (local date of its start), ``period`` (UTC ns,
    half-open), ``hours`` (nominal length, h) and the time zone it was computed in."""

    enterprise: str
    date: dt.date
    period: Period
    hours: float
    timezone: str

    @property
    def length_s(self) -> float:
        return (self.period.end_ns - self.period.start_ns) / NS

    def local_start(self) -> dt.datetime:
        return _from_ns(self.period.start_ns, self.timezone)

    def local_end(self) -> dt.datetime:
        return _from_ns(self.period.end_ns, self.timezone)


def _from_ns(ns: int, tz: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / NS, dt.UTC).astimezone(zoneinfo.ZoneInfo(tz))


def local_midnight_ns(date: dt.date, timezone: str) -> int:
    """UTC ns of ``date``'s 00:00 in ``timezone`` (what a "local date" point is stamped
    with: exposure days, observations, audiograms, fit tests, rates)."""
    return _to_ns(dt.datetime.combine(date, dt.time(), zoneinfo.ZoneInfo(timezone)))


def local_date(ns: int, timezone: str) -> dt.date:
    """The local calendar date in ``timezone`` of the instant ``ns`` (UTC ns): the day a
    stored point belongs to (the inverse of :func:`local_midnight_ns` on its day); resolved
    to the microsecond, as :mod:`datetime` is."""
    return _from_ns(ns, timezone).date()


def local_days(first: dt.date, last: dt.date, timezone: str) -> Period:
    """[``first`` 00:00, ``last`` + 1 day 00:00) local time as UTC ns (a day is 23 or 25 h
    across a DST change)."""
    return Period(local_midnight_ns(first, timezone),
                  local_midnight_ns(last + dt.timedelta(days=1), timezone))


def _to_ns(t: dt.datetime) -> int:
    delta = t.astimezone(dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


def shift_window(enterprise: Enterprise, date: dt.date, timezone: str) -> ShiftWindow:
    """The shift of ``enterprise`` that starts on local ``date`` in ``timezone``."""
    h, m = map(int, enterprise.shift.start.split(":"))
    start = dt.datetime.combine(date, dt.time(h, m), zoneinfo.ZoneInfo(timezone))
    start_ns = _to_ns(start)
    end_ns = start_ns + round(enterprise.shift.hours * 3600 * NS)
    return ShiftWindow(enterprise.id, date, Period(start_ns, end_ns), enterprise.shift.hours,
                       timezone)


def shifts_between(reg: Registry, enterprise_id: str, first: dt.date, last: dt.date
                   ) -> list[ShiftWindow]:
    """The shifts of ``enterprise_id`` starting on local dates ``first`` … ``last``
    (inclusive), on its workdays (``[enterprises.shift] workdays``, by default the first
    ``days_per_week`` days from Monday). A workday without data is reported with zero
    coverage, never guessed away."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    e = reg.enterprise(enterprise_id)
    days = (last - first).days + 1
    dates = [first + dt.timedelta(days=i) for i in range(days)]
    return [shift_window(e, d, reg.deployment.timezone) for d in dates
            if e.shift.works_on(d)]


def shift_at(reg: Registry, enterprise_id: str, now_ns: int) -> ShiftWindow | None:
    """The shift of ``enterprise_id`` running at ``now_ns`` (UTC ns), or None between
    shifts and on days that are not workdays. A night shift that started yesterday is found
    (its date is yesterday)."""
    e = reg.enterprise(enterprise_id)
    tz = reg.deployment.timezone
    today = local_date(now_ns, tz)
    for d in (today, today - dt.timedelta(days=1)):
        if not e.shift.works_on(d):
            continue
        w = shift_window(e, d, tz)
        if w.period.start_ns <= now_ns < w.period.end_ns:
            return w
    return None


def iso_week(date: dt.date) -> tuple[int, int]:
    """(ISO year, ISO week number) of a shift date: the week LEX,W is taken over."""
    y, w, _ = date.isocalendar()
    return y, w
