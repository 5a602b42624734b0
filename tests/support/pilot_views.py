"""Stored results of a pilot evaluation, written directly as the analysis would write them
(``wearing_rate``, ``pilot_did``, ``audiograms``, ``screening``, ``fit_tests``,
``wearing_observations``, ``wear_daily``; layout in collector/schema.py), for the tests of the
views that read them (the live page's /pilot, the Grafana pilot dashboard, the pilot report).
The writers themselves are tested apart.

The rates are computed here with statsmodels from (x, n), as the writer would: the two-sided
95 % interval and the one-sided 95 % lower bound (the lower end of the two-sided 90 %
interval), Wilson for a single enterprise. The group rates carry the numbers a clustered
method gave (fixed here: they are read back, not recomputed).
"""

from __future__ import annotations

import dataclasses
import json
import zoneinfo
from datetime import date, datetime, time

from statsmodels.stats.proportion import proportion_confint

from tingbao.collector import schema
from tingbao.collector.lineprotocol import line

TZ = "Asia/Shanghai"
PILOT, COMPARISON = "p-ent1", "c-ent1"
HOSTILE = "<img src=x onerror=alert(1)>"
"""A ``key`` tag no registry has: the views must show it as text."""


def day_ns(d: date, tz: str = TZ) -> int:
    """Local midnight of ``d`` as UTC ns."""
    return int(datetime.combine(d, time(), zoneinfo.ZoneInfo(tz)).timestamp()) * 10**9


def period_start(period: str) -> date:
    if "-Q" in period:
        y, qn = period.split("-Q")
        return date(int(y), 3 * int(qn) - 2, 1)
    if "-" in period:
        y, m = period.split("-")
        return date(int(y), int(m), 1)
    return date(int(period), 1, 1)


@dataclasses.dataclass(frozen=True)
class RateFixture:
    scope: str
    key: str
    period: str
    source: str
    n: int
    x: int
    rate: float
    lo95: float
    hi95: float
    lower95: float
    method: str
    clusters: int
    milestone: float | None
    deff: float | None = None
    icc: float | None = None

    @property
    def met(self) -> bool | None:
        return None if self.milestone is None else self.lower95 >= self.milestone


def wilson(scope: str, key: str, period: str, source: str, x: int, n: int,
           milestone: float | None) -> RateFixture:
    """A single enterprise's (or pooled) rate x/n in % with statsmodels' Wilson intervals."""
    lo, hi = proportion_confint(x, n, alpha=0.05, method="wilson")
    lower = proportion_confint(x, n, alpha=0.10, method="wilson")[0]
    return RateFixture(scope, key, period, source, n, x, 100 * x / n, 100 * lo, 100 * hi,
                       100 * lower, "wilson", 1, milestone)


RATES = (
    # all enterprises 2024: 268/400 = 67.0 % (GEE numbers as a writer gave them), milestone
    # 70 → not met (67.0 < 70)
    RateFixture("all", "all", "2024", "observed", 400, 268, 67.0, 61.2, 72.4, 62.1,
                "gee_bias_reduced", 4, 70.0, deff=1.8, icc=0.021),
    # the pilots 2025: 164/200 = 82.0 %, Wilson lower95 77.11 < 80 ≤ 82.0 → not yet shown
    wilson("group", "pilot", "2025", "observed", 164, 200, 80.0),
    # the pilots 2025 at the ear: 1290/1500 worker-days = 86.0 %, lower95 84.46 ≥ 80 → met
    wilson("group", "pilot", "2025", "edge", 1290, 1500, 80.0),
    # the comparison 2025: 110/180 = 61.1 %, → not met
    wilson("group", "comparison", "2025", "observed", 110, 180, 80.0),
    # the pilots 2023 (baseline): 111/200 = 55.5 %, milestone 65 → not met
    wilson("group", "pilot", "2023", "observed", 111, 200, 65.0),
    # machinery, a quarter: 70/100 = 70.0 %, design effect 1.4
    dataclasses.replace(wilson("industry", "machinery", "2024-Q3", "observed", 70, 100, 70.0),
                        method="design_effect", deff=1.4, icc=0.01, clusters=2),
    # one pilot enterprise 2025: 90/100 = 90.0 %, Wilson lower95 ≈ 84.0 ≥ 80 → met
    wilson("enterprise", PILOT, "2025", "observed", 90, 100, 80.0),
    # a key the registry does not know, hostile markup
    wilson("enterprise", HOSTILE, "2025", "observed", 5, 10, 80.0),
)

DID = {"baseline": "2023", "followup": "2025", "did_pp": 18.3, "lo_pp": 9.1, "hi_pp": 27.5,
       "p": 0.002, "method": "wild_cluster_bootstrap", "enterprises_pilot": 3,
       "enterprises_comparison": 3, "n": 1200, "pilot_base": 55.2, "pilot_follow": 79.8,
       "comparison_base": 54.9, "comparison_follow": 61.2}
"""(79.8 − 55.2) − (61.2 − 54.9) = 24.6 − 6.3 = 18.3 percentage points."""

SCREENING_DAY1, SCREENING_DAY2 = date(2025, 3, 10), date(2025, 9, 15)
SCREENING = (
    # (worker, date, fields): w1 first normal then suspected mild (the newer counts);
    # w2 suspected moderate and overdue; w3 susceptible with an STS on the left; w4 an
    # age-corrected STS on the right, overdue on the older exam only
    ("w1", SCREENING_DAY1, {"suspected": False, "grade": "none", "overdue": False}),
    ("w1", SCREENING_DAY2, {"suspected": True, "grade": "mild", "overdue": False}),
    ("w2", SCREENING_DAY2, {"suspected": True, "grade": "moderate", "overdue": True}),
    ("w3", SCREENING_DAY2, {"suspected": False, "grade": "none", "susceptible": True,
                            "sts_left": True}),
    ("w4", SCREENING_DAY1, {"suspected": False, "grade": "none", "overdue": True}),
    ("w4", SCREENING_DAY2, {"suspected": False, "grade": "none", "sts_age_right": True,
                            "overdue": False}),
)
SCREENING_EXPECTED = {"exams": 6, "workers_examined": 4, "screened": 4, "suspected": 2,
                      "mild": 1, "moderate": 1, "severe": 0, "susceptible": 1, "sts": 1,
                      "sts_age": 1, "overdue": 1}
FIT = ((True, []), (True, []), (False, ["low_125"]))
"""Three fit tests of the pilot enterprise: 2 of 3 passed = 66.7 %, one with a caution."""
OBSERVATIONS = ((True, True), (True, False), (True, True))
"""Spot checks at the comparison enterprise: 3 observations, 2 worn correctly."""


def pilot_lines(computed_ns: int = 1) -> list[str]:
    """Line protocol of every fixture point (write into ``forever``)."""
    out = []
    for r in RATES:
        fields = {"n": r.n, "x": r.x, "rate": r.rate, "lo95": r.lo95, "hi95": r.hi95,
                  "lower95": r.lower95, "method": r.method, "clusters": r.clusters,
                  "deff": r.deff, "icc": r.icc, "milestone": r.milestone, "met": r.met,
                  "computed_ns": computed_ns}
        out.append(line(schema.WEARING_RATE, {"scope": r.scope, "key": r.key,
                                              "period": r.period, "source": r.source},
                        fields, day_ns(period_start(r.period))))
    out.append(line(schema.PILOT_DID, {"baseline": DID["baseline"], "followup":
                                       DID["followup"]},
                    {k: v for k, v in DID.items() if k not in ("baseline", "followup")}
                    | {"computed_ns": computed_ns}, day_ns(period_start(DID["followup"]))))
    for worker, d, f in SCREENING:
        t = day_ns(d)
        out.append(line(schema.AUDIOGRAMS, {"enterprise": PILOT, "worker": worker},
                        {"age": 40, "sex": "M", "l_4000": 30.0, "r_4000": 35.0,
                         "baseline": False, "kind": "periodic"}, t))
        out.append(line(schema.SCREENING, {"enterprise": PILOT, "worker": worker},
                        {"hfta_db": 30.0, "susceptible": False, "sts_left": False,
                         "sts_right": False, "sts_age_left": False, "sts_age_right": False,
                         "computed_ns": computed_ns} | f, t))
    for i, (passed, cautions) in enumerate(FIT):
        out.append(line(schema.FIT_TESTS, {"enterprise": PILOT, "worker": f"w{i + 1}",
                                           "protector": "plug-a", "method": "F-MIRE"},
                        {"par_binaural": 20.0, "par_u": 3.0, "passed": passed,
                         "cautions": json.dumps(cautions), "source": "csv"},
                        day_ns(date(2025, 6, 2)) + i))
    for i, (wearing, correct) in enumerate(OBSERVATIONS):
        out.append(line(schema.OBSERVATIONS, {"enterprise": COMPARISON, "workshop": "ws1",
                                              "post": "p1", "worker": f"o{i + 1}"},
                        {"wearing": wearing, "correct": correct, "protector": "plug-a",
                         "source": "survey.csv", "row": i + 2}, day_ns(date(2025, 5, 6))))
    for d in (date(2025, 5, 6), date(2025, 5, 7)):
        out.append(line(schema.WEAR_DAILY, {"enterprise": PILOT, "meter": "e1",
                                            "worker": "w1"},
                        {"worn_s": 25000.0, "assessed_s": 28000.0, "share": 25000 / 28000},
                        day_ns(d)))
    return out


def site_toml(extra: str = "") -> str:
    """A registry with one pilot (machinery) and one comparison (light industry)
    enterprise and the default milestones."""
    return f"""
[deployment]
timezone = "{TZ}"
{extra}
[[enterprises]]
id = "{PILOT}"
name_zh = "华隆机械厂"
name_en = "Hualong Machinery"
industry = "machinery"
group = "pilot"
[[enterprises]]
id = "{COMPARISON}"
name_zh = "安达纺织"
name_en = "Anda Textiles"
industry = "light_industry"
group = "comparison"
"""
