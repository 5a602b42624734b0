"""Stored 1 s ``levels`` points of a steady level, as the collector would write them, for
tests that fill InfluxDB directly (the collector's own path is tested end to end apart)."""

from __future__ import annotations

from tingbao.collector import schema
from tingbao.collector.lineprotocol import line

P0 = 20e-6
NS = 10**9


def steady_levels(enterprise: str, site: str, meter: str, start_ns: int, count: int,
                  level_db: float, *, channel: int = 0, step_s: int = 1,
                  lafmax_above: float = 3.0, lcpeak_above: float = 15.0,
                  extra=None) -> list[str]:
    """``count`` line-protocol points of ``step_s`` seconds each from ``start_ns`` at a
    steady LAeq ``level_db`` (dB(A)): EA = p0²·10^(L/10)·step_s Pa²·s, full coverage,
    LAFmax and LCpeak that much above the level, ``seq`` the point's index. ``extra(i)``
    may return more fields for point ``i`` (impulse counts, overload)."""
    ea = P0**2 * 10 ** (level_db / 10) * step_s
    tags = {"enterprise": enterprise, "site": site, "meter": meter, "channel": str(channel)}
    out = []
    for i in range(count):
        fields = {"ea": ea, "coverage": float(step_s), "duration_s": float(step_s),
                  "laeq": level_db, "lafmax": level_db + lafmax_above,
                  "lcpeak": level_db + lcpeak_above, "seq": i}
        if extra is not None:
            fields.update(extra(i) or {})
        out.append(line(schema.LEVELS, tags, fields, start_ns + i * step_s * NS))
    return out
