"""What the live page's pilot-evaluation view (``/pilot``, ``/api/pilot``) shows, read from the
store: the stored correct-wearing rates with their intervals and milestone verdicts, the
pilot-vs-comparison difference in differences, hearing screening and fit tests per enterprise
(:mod:`tingbao.analysis.pilot_results` reads them through :mod:`tingbao.collector.schema`
names and :class:`~tingbao.collector.influx.InfluxClient`; nothing is recomputed here).

Units: rates, interval ends, lower bounds and milestones in % (0–100), the difference in
differences in percentage points; times UTC ns. The JSON contract (``/api/pilot``)::

    {"from": "YYYY-MM-DD", "to": "YYYY-MM-DD", "empty": bool,
     "baseline": {"value_pct", "year", "label"},
     "milestones": [[year, %], …],
     "rates": [{"scope", "key", "label", "period", "kind", "year", "source", "n", "x",
                "clusters", "rate", "lo95", "hi95", "lower95", "method", "deff", "icc",
                "milestone", "verdict", "met_stored", "inconsistent"}, …],
     "did": [{"baseline", "followup", "did_pp", "lo_pp", "hi_pp", "p", "method",
              "enterprises_pilot", "enterprises_comparison", "n", "pilot_base",
              "pilot_follow", "comparison_base", "comparison_follow"}, …],
     "enterprises": [{"enterprise", "label", "group", "industry", "exams",
                      "workers_examined", "screened", "suspected", "grades": {grade: n},
                      "susceptible", "sts", "sts_age", "overdue", "fit_tests", "fit_passed",
                      "fit_pass_pct", "fit_workers", "fit_cautions", "observations",
                      "observed_correct", "observed_workers", "wear_days",
                      "wear_workers"}, …]}

Labels are in the language asked for (``lang``: ``zh`` or ``en``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

from tingbao.analysis import pilot_results as pr
from tingbao.collector.influx import InfluxClient
from tingbao.collector.registry.site import Registry

DEFAULT_FIRST = dt.date(2020, 1, 1)
"""The page's default start: the indicator's baseline year."""


def _num(x, nd: int = 2):
    if x is None:
        return None
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None


class PilotData:
    """Reads for one registry from one InfluxDB ``reader``."""

    def __init__(self, reg: Registry, reader: InfluxClient):
        self.reg = reg
        self.reader = reader

    def default_range(self, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
        """From 1 January 2020 (the baseline year) to the end of this year."""
        today = today or dt.date.today()
        return DEFAULT_FIRST, dt.date(today.year, 12, 31)

    def results(self, first: dt.date, last: dt.date) -> pr.PilotResults:
        return pr.read_pilot(self.reader, self.reg, first, last)

    def snapshot(self, first: dt.date, last: dt.date, lang: str = "zh") -> dict:
        """The view's numbers (module docstring) for the periods starting from ``first`` to
        ``last`` (local dates, inclusive)."""
        res = self.results(first, last)
        return to_json(res, self.reg, first, last, lang)


def to_json(res: pr.PilotResults, reg: Registry, first: dt.date, last: dt.date,
            lang: str = "zh") -> dict:
    """:class:`~tingbao.analysis.pilot_results.PilotResults` as the page's JSON."""
    en = lang == "en"

    def pick(pair: tuple[str, str]) -> str:
        return pair[1] if en else pair[0]

    ents = {e.id: e for e in reg.enterprises}
    rates = []
    for r in res.rates:
        rates.append({
            "scope": r.scope, "key": r.key, "label": pick(pr.label_of(reg, r.scope, r.key)),
            "period": r.period, "kind": r.kind, "year": r.year, "source": r.source,
            "n": r.n, "x": r.x, "clusters": r.clusters, "rate": _num(r.rate),
            "lo95": _num(r.lo95), "hi95": _num(r.hi95), "lower95": _num(r.lower95),
            "method": r.method, "deff": _num(r.deff, 3), "icc": _num(r.icc, 4),
            "milestone": _num(r.milestone), "verdict": r.verdict,
            "met_stored": r.met_stored, "inconsistent": r.inconsistent})
    did = [{k: (_num(v, 4 if k == "p" else 2) if isinstance(v, float) else v)
            for k, v in dataclasses.asdict(d).items() if k != "time_ns"} for d in res.did]
    enterprises = []
    for c in res.counts:
        e = ents.get(c.enterprise)
        row = dataclasses.asdict(c)
        row.update(label=pick(pr.label_of(reg, "enterprise", c.enterprise)),
                   group=e.group if e else None, industry=e.industry if e else None,
                   fit_pass_pct=_num(c.fit_pass_pct, 1))
        enterprises.append(row)
    b = res.baseline
    return {"from": first.isoformat(), "to": last.isoformat(), "empty": res.empty,
            "baseline": {"value_pct": b.value_pct, "year": b.year,
                         "label": b.source_en if en else b.source_zh},
            "milestones": sorted([y, m] for y, m in res.milestones.items()),
            "rates": rates, "did": did, "enterprises": enterprises}
