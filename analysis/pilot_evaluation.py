"""The pilot evaluation as a service: the correct-wearing rates (and the difference in
differences) from what the store holds, written back for the page, the dashboard and the
report to read.

The statistics are :mod:`.wearing_rate`'s; this module reads their inputs from InfluxDB (the
spot checks of ``wearing_observations`` through :func:`.observations.load_observations`, the
worker-days of ``wear_daily``) and writes ``wearing_rate`` / ``pilot_did`` points. One
function serves ``tingbao wearing-rate``, the demo and the daily step of ``tingbao analyze``
(:func:`daily`), so the three cannot compute the rates differently.

:func:`daily` (once a local day, from the analyzer): closes yesterday's wear time at the ear
(:func:`.wear_time.close_day`, each enterprise), then recomputes and writes the rates of every
scope (enterprise, industry, group, all) by year and by quarter over all stored observations
and worker-days, so that a survey imported during the day is on the page the next morning
without anyone running a command. The DiD is not part of it: which two periods are the
baseline and the follow-up is the evaluator's choice (``tingbao wearing-rate --did``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Sequence

from tingbao.collector import schema

from . import wearing_rate as wr
from .observations import load_observations
from .shifts import local_days

DAILY_PERIODS = ("year", "quarter")
"""The periods :func:`daily` writes (months are left to ``tingbao wearing-rate``)."""


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Rates (observed, then edge rows where wear time is stored) and the DiD when asked."""

    rates: tuple[wr.RateRow, ...]
    did: wr.DidResult | None = None
    did_periods: tuple[str, str] | None = None


def evaluate(reader, reg, *, first: dt.date | None = None, last: dt.date | None = None,
             scopes: Sequence[str] = ("group",), periods: Sequence[str] = ("year",),
             did: tuple[str, str] | None = None, single_method: str = "wilson",
             group_method: str = "gee_bias_reduced", seed: int | None = None,
             draws: int | None = None) -> Evaluation:
    """The rates of each of ``scopes`` × ``periods`` over the observations (and worker-days at
    the ear) of local dates ``first`` … ``last`` (default: 2000-01-01 … today), and, with
    ``did`` = (baseline, follow-up) period keys, the difference in differences over those two
    periods' observations (whatever ``first``/``last`` say). Raises ValueError for an unknown
    scope or period, a malformed period key, or a DiD that cannot be estimated."""
    tz = reg.deployment.timezone
    today = dt.datetime.now(zoneinfo.ZoneInfo(tz)).date()
    lo = first or dt.date(2000, 1, 1)
    hi = last or today
    if hi < lo:
        raise ValueError(f"the last date {hi} is before the first {lo}")
    load_lo, load_hi = lo, hi
    if did:
        load_lo = min(load_lo, wr.period_days(did[0])[0])
        load_hi = max(load_hi, wr.period_days(did[1])[1] - dt.timedelta(days=1))
    loaded = local_days(load_lo, load_hi, tz)
    units = load_observations(reader, loaded.start_ns, loaded.end_ns, tz)
    in_range = [u for u in units if lo <= u[0] <= hi]
    span = local_days(lo, hi, tz)
    edge_rows = reader.query_rows(schema.wear_daily_query(span.start_ns, span.end_ns))
    days = times = None
    if edge_rows:
        days, times = wr.edge_worker_days(edge_rows, tz)
    rows: list[wr.RateRow] = []
    for by in scopes:
        for period in periods:
            rows += wr.rates(in_range, reg, by=by, period=period, source="observed",
                             single_method=single_method, group_method=group_method)
            if days:
                shares = wr.time_shares(times, reg, by=by, period=period)
                rows += wr.rates(days, reg, by=by, period=period, source="edge",
                                 single_method=single_method, group_method=group_method,
                                 time_shares=shares)
    rows.sort(key=lambda r: (r.period, r.key, r.source))
    result = None
    if did:
        kw = {k: v for k, v in (("seed", seed), ("draws", draws)) if v is not None}
        result = wr.did_from_units(units, reg, *did, **kw)
    return Evaluation(tuple(rows), result, tuple(did) if did else None)


def write(writer, reg, evaluation: Evaluation, now_ns: int) -> int:
    """Store ``evaluation``'s rates (and DiD) in ``schema.RP_FOREVER``; returns the points
    written. Writing again overwrites the same (tags, period start) points."""
    tz = reg.deployment.timezone
    lines = wr.rate_lines(evaluation.rates, tz, now_ns)
    if evaluation.did is not None:
        lines += wr.did_lines(evaluation.did, *evaluation.did_periods, tz, now_ns)
    if lines:
        writer.write(lines, rp=schema.RP_FOREVER)
    return len(lines)


@dataclasses.dataclass(frozen=True)
class DailyRun:
    wear_days: int
    """Worker-days of wear time at the ear closed for yesterday."""
    rates: int
    """Rate points written."""


def daily(reader, writer, reg, today: dt.date, now_ns: int) -> DailyRun:
    """Close ``today − 1``'s wear time of every enterprise, then write the rates of every
    scope by :data:`DAILY_PERIODS` over everything stored (module docstring)."""
    from .wear_time import close_day

    tz = reg.deployment.timezone
    yesterday = today - dt.timedelta(days=1)
    closed = sum(len(close_day(reader, writer, e.id, yesterday, tz)) for e in reg.enterprises)
    ev = evaluate(reader, reg, last=today, scopes=wr.SCOPES, periods=DAILY_PERIODS)
    return DailyRun(closed, write(writer, reg, ev, now_ns))
