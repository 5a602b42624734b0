"""Local dates and local-day spans of analysis/shifts.py (UTC ns ↔ the enterprise's days)."""

from __future__ import annotations

import datetime as dt

from tingbao.analysis.shifts import local_date, local_days, local_midnight_ns

NS = 10**9


def _utc_ns(*fields: int) -> int:
    return int(dt.datetime(*fields, tzinfo=dt.UTC).timestamp()) * NS


def test_local_date_turns_at_local_midnight():
    # Asia/Shanghai is UTC+8 all year: local 2026-03-02 00:00 is 2026-03-01T16:00Z.
    midnight = _utc_ns(2026, 3, 1, 16)
    assert local_midnight_ns(dt.date(2026, 3, 2), "Asia/Shanghai") == midnight
    assert local_date(midnight, "Asia/Shanghai") == dt.date(2026, 3, 2)
    # datetime resolves 1 µs (1000 ns): the last microsecond before midnight is the 1st
    assert local_date(midnight - 1000, "Asia/Shanghai") == dt.date(2026, 3, 1)
    # the same instant is still the 1st in UTC (16:00) and in New York (11:00, UTC-5)
    assert local_date(midnight, "UTC") == dt.date(2026, 3, 1)
    assert local_date(midnight, "America/New_York") == dt.date(2026, 3, 1)


def test_local_days_last_23_hours_across_the_spring_change():
    # Europe/Berlin moves from UTC+1 to UTC+2 on 2026-03-29: 00:00 local is 23:00Z the day
    # before, 2026-03-30 00:00 local is 22:00Z, so the day lasts 23 h.
    day = local_days(dt.date(2026, 3, 29), dt.date(2026, 3, 29), "Europe/Berlin")
    assert day.start_ns == _utc_ns(2026, 3, 28, 23)
    assert day.end_ns == _utc_ns(2026, 3, 29, 22)
    assert day.end_ns - day.start_ns == 23 * 3600 * NS
    assert local_date(day.end_ns - 1000, "Europe/Berlin") == dt.date(2026, 3, 29)
    assert local_date(day.end_ns, "Europe/Berlin") == dt.date(2026, 3, 30)
