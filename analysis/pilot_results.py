"""The pilot evaluation as stored: what the analysis wrote about the 听力保护行动 pilots, read
back from InfluxDB for the evaluator's views (the live page's ``/pilot``, the pilot report).
Nothing here computes a statistic; the numbers are those of the writers
(``analysis/wearing_rate.py``, ``analysis/screening.py`` …), read through
:mod:`tingbao.collector.schema` names.

The indicator (noise-standards.md, "The indicator the pilots are judged by" and "Checked
2026-11-29 / The pilot statistics"): 重点行业用人单位劳动者防噪音耳塞或耳罩正确佩戴率, the
correct-wearing rate of earplugs or earmuffs, judged against the deployment's milestones
(65 % in 2023, 70 % in 2024, 80 % in 2025: ``[deployment] wearing_rate_milestones`` and
``milestone_years`` of the registry) by the **one-sided 95 % lower bound**: a milestone is
*met* only when ``lower95`` reaches it; when only the point estimate does it is *not yet
shown* (:func:`verdict`). Rates, bounds and milestones are in per cent (the ``wearing_rate``
point compares ``lower95 ≥ milestone``, and ``milestone`` is stated in %), differences in
percentage points.

Measurements read (fields as :mod:`tingbao.collector.schema` documents them):

* ``wearing_rate`` (tags scope, key, period, source): n, x, rate, lo95, hi95, lower95, method,
  clusters, deff, icc, milestone, met;
* ``pilot_did`` (tags baseline, followup): did_pp, lo_pp, hi_pp, p, method,
  enterprises_pilot, enterprises_comparison, n, pilot_base, pilot_follow, comparison_base,
  comparison_follow;
* ``audiograms`` (tags enterprise, worker): COUNT(age) per enterprise (exams), and the
  workers examined;
* ``screening`` (tags enterprise, worker): per worker the latest result in the period:
  suspected, grade, susceptible, sts_left/right, sts_age_left/right, overdue;
* ``fit_tests`` (tags enterprise, worker, protector, method): passed, cautions;
* ``wearing_observations`` (tags enterprise, workshop, post, worker): COUNT(wearing), and
  COUNT(correct) where correct = true;
* ``wear_daily`` (tags enterprise, meter, worker): COUNT(assessed_s) (worker-days measured).

Screening counts are of **workers**, each by the latest screening result of the period (a
worker examined twice counts once, in the state of the newer exam); the number of exams is
counted beside them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping

from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.influx import finite_number as _float
from tingbao.collector.registry.site import Registry

from .action_plan import load_plan
from .action_plan import milestones as plan_milestones
from .shifts import local_days

__all__ = ["BASELINE", "DidResult", "EnterpriseCounts", "PilotResults", "Rate",
           "ReferenceLine", "SCOPES", "VERDICTS", "milestones", "period_kind", "read_pilot",
           "verdict"]

SCOPES = ("all", "group", "industry", "enterprise")
"""``wearing_rate`` scopes, in the order the views list them."""
VERDICTS = ("met", "not_yet_shown", "not_met")
"""Milestone verdicts: the lower bound reaches the milestone; only the point estimate does;
neither does."""


@dataclasses.dataclass(frozen=True)
class ReferenceLine:
    """A reference value drawn on every rate chart: ``value_pct`` (%), its year and source."""

    value_pct: float
    year: int
    source_zh: str
    source_en: str


def _baseline() -> ReferenceLine:
    plan = load_plan()
    year = plan.baseline_year
    return ReferenceLine(round(100.0 * plan.baseline_rate, 6), year,
                         f"广东省 {year} 年基线（听力保护行动）",
                         f"Guangdong {year} baseline (hearing-protection action)")


BASELINE = _baseline()
"""The 2020 baseline of the indicator in Guangdong, 53.7 % (noise-standards.md, "The
indicator the pilots are judged by"; ``[baseline]`` of the action plan's data,
:func:`.action_plan.load_plan`): the reference line of the evaluator's charts, not a
milestone (those are the registry's)."""


def verdict(rate_pct: float | None, lower95_pct: float | None,
            milestone_pct: float | None) -> str | None:
    """The milestone verdict of a rate (all in %): ``met`` when the one-sided 95 % lower bound
    reaches the milestone, ``not_yet_shown`` when only the point estimate does (or there is
    no lower bound and it does), ``not_met`` otherwise; None without a milestone or a rate."""
    if milestone_pct is None or rate_pct is None:
        return None
    # rounded as the writer compares (a bound exactly on the milestone meets it, whatever
    # the last bit of a float after × 100)
    if lower95_pct is not None and round(lower95_pct, 9) >= round(milestone_pct, 9):
        return "met"
    if rate_pct >= milestone_pct:
        return "not_yet_shown"
    return "not_met"


_YEAR = re.compile(r"\A(\d{4})\Z")
_QUARTER = re.compile(r"\A(\d{4})-Q([1-4])\Z")
_MONTH = re.compile(r"\A(\d{4})-(0[1-9]|1[0-2])\Z")


def period_kind(period: str) -> str | None:
    """``year`` (``2025``), ``quarter`` (``2025-Q3``), ``month`` (``2025-07``) or None."""
    for kind, pat in (("year", _YEAR), ("quarter", _QUARTER), ("month", _MONTH)):
        if pat.match(period):
            return kind
    return None


def period_year(period: str) -> int | None:
    return int(period[:4]) if period_kind(period) else None


def milestones(reg: Registry) -> dict[int, float]:
    """{year: milestone %} of the registry's ``[deployment]`` (fractions there;
    :func:`.action_plan.milestones` in per cent)."""
    return {y: round(100.0 * m.rate, 6) for y, m in plan_milestones(reg).items()}




def _int(v) -> int | None:
    x = _float(v)
    return None if x is None else int(round(x))


def _bool(v) -> bool | None:
    return v if isinstance(v, bool) else None


def _str(v) -> str | None:
    return v if isinstance(v, str) and v else None


@dataclasses.dataclass(frozen=True)
class Rate:
    """One stored correct-wearing rate: a group (``scope``, ``key``) over a ``period`` from a
    ``source`` (``observed`` spot checks, ``edge`` wear time). Rates, intervals, the lower
    bound and the milestone in %; ``n`` workers observed (or worker-days measured), ``x`` of
    them wearing correctly, ``clusters`` enterprises; ``met_stored`` the writer's ``met``."""

    scope: str
    key: str
    period: str
    source: str
    time_ns: int
    n: int | None
    x: int | None
    rate: float | None
    lo95: float | None
    hi95: float | None
    lower95: float | None
    method: str | None
    clusters: int | None
    deff: float | None
    icc: float | None
    milestone: float | None
    met_stored: bool | None

    @property
    def verdict(self) -> str | None:
        """:func:`verdict` of this rate against its stored milestone."""
        return verdict(self.rate, self.lower95, self.milestone)

    @property
    def inconsistent(self) -> bool:
        """The writer's ``met`` disagrees with lower95 ≥ milestone (shown as a warning)."""
        v = self.verdict
        return self.met_stored is not None and v is not None and self.met_stored != (v == "met")

    @property
    def kind(self) -> str | None:
        return period_kind(self.period)

    @property
    def year(self) -> int | None:
        return period_year(self.period)


@dataclasses.dataclass(frozen=True)
class DidResult:
    """One stored difference in differences, pilot vs comparison, ``baseline`` → ``followup``
    periods: ``did_pp`` [``lo_pp``, ``hi_pp``] in percentage points (95 %), ``p``, the
    ``method``, the four cell rates in %, and the enterprises and observations behind it."""

    baseline: str
    followup: str
    time_ns: int
    did_pp: float | None
    lo_pp: float | None
    hi_pp: float | None
    p: float | None
    method: str | None
    enterprises_pilot: int | None
    enterprises_comparison: int | None
    n: int | None
    pilot_base: float | None
    pilot_follow: float | None
    comparison_base: float | None
    comparison_follow: float | None


@dataclasses.dataclass
class EnterpriseCounts:
    """Per enterprise over the period: screening (workers, by each one's latest result;
    ``exams`` audiograms), fit tests and the data behind the rates."""

    enterprise: str
    exams: int = 0
    workers_examined: int = 0
    screened: int = 0
    suspected: int = 0
    grades: dict = dataclasses.field(default_factory=dict)
    susceptible: int = 0
    sts: int = 0
    sts_age: int = 0
    overdue: int = 0
    fit_tests: int = 0
    fit_passed: int = 0
    fit_workers: int = 0
    fit_cautions: int = 0
    observations: int = 0
    observed_correct: int = 0
    observed_workers: int = 0
    wear_days: int = 0
    wear_workers: int = 0

    @property
    def fit_pass_pct(self) -> float | None:
        return 100.0 * self.fit_passed / self.fit_tests if self.fit_tests else None


@dataclasses.dataclass(frozen=True)
class PilotResults:
    """Everything the evaluator's views show for one span of time (``start_ns`` …
    ``end_ns``, UTC ns; the points of periods that start in it)."""

    start_ns: int
    end_ns: int
    rates: tuple[Rate, ...]
    did: tuple[DidResult, ...]
    counts: tuple[EnterpriseCounts, ...]
    milestones: dict[int, float]
    baseline: ReferenceLine = BASELINE

    @property
    def empty(self) -> bool:
        return not (self.rates or self.did or any(
            c.exams or c.screened or c.fit_tests or c.observations or c.wear_days
            for c in self.counts))

    @property
    def has_screening(self) -> bool:
        return any(c.exams or c.screened for c in self.counts)

    @property
    def has_fit_tests(self) -> bool:
        return any(c.fit_tests for c in self.counts)


def read_rates(reader: InfluxClient, span: schema.Period) -> list[Rate]:
    """Every ``wearing_rate`` point of periods starting in ``span``, sorted by scope (all,
    group, industry, enterprise), key, period, source (observed before edge)."""
    got: dict[tuple, Rate] = {}
    for r in reader.query_rows(schema.wearing_rates_query(span)):
        tags = tuple(r.get(t) or "" for t in schema.WEARING_RATE_TAGS)
        rate = Rate(*tags, time_ns=int(r["time"]), n=_int(r.get("n")), x=_int(r.get("x")),
                    rate=_float(r.get("rate")), lo95=_float(r.get("lo95")),
                    hi95=_float(r.get("hi95")), lower95=_float(r.get("lower95")),
                    method=_str(r.get("method")), clusters=_int(r.get("clusters")),
                    deff=_float(r.get("deff")), icc=_float(r.get("icc")),
                    milestone=_float(r.get("milestone")), met_stored=_bool(r.get("met")))
        old = got.get(tags)
        if old is None or rate.time_ns >= old.time_ns:
            got[tags] = rate
    order = {s: i for i, s in enumerate(SCOPES)}
    return sorted(got.values(), key=lambda x: (order.get(x.scope, len(order)), x.key,
                                               x.period, x.source != "observed", x.source))


def read_did(reader: InfluxClient, span: schema.Period) -> list[DidResult]:
    """Every ``pilot_did`` point whose follow-up starts in ``span``, by (baseline,
    follow-up)."""
    got: dict[tuple, DidResult] = {}
    for r in reader.query_rows(schema.pilot_did_query(span)):
        d = DidResult(
            r.get("baseline") or "", r.get("followup") or "", int(r["time"]),
            *(_float(r.get(k)) for k in ("did_pp", "lo_pp", "hi_pp", "p")),
            _str(r.get("method")),
            *(_int(r.get(k)) for k in ("enterprises_pilot", "enterprises_comparison", "n")),
            *(_float(r.get(k)) for k in ("pilot_base", "pilot_follow", "comparison_base",
                                         "comparison_follow")))
        key = (d.baseline, d.followup)
        if key not in got or d.time_ns >= got[key].time_ns:
            got[key] = d
    return sorted(got.values(), key=lambda d: (d.followup, d.baseline))


def _cautions(v) -> bool:
    """Whether a stored ``cautions`` value (a JSON list of codes) names any."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return bool(v.strip())
    return bool(v)


def read_counts(reader: InfluxClient, span: schema.Period,
                enterprises: list[str] | None = None) -> list[EnterpriseCounts]:
    """Per enterprise over ``span``: screening (workers by their latest result, exams),
    fit tests, observations and measured worker-days (module docstring). Enterprises of
    ``enterprises`` come first, in that order, then any other the store names."""
    out: dict[str, EnterpriseCounts] = {e: EnterpriseCounts(e) for e in enterprises or []}

    def acc(e: str) -> EnterpriseCounts:
        return out.setdefault(e, EnterpriseCounts(e))

    statements = schema.pilot_counts_queries(span)
    for r in reader.query_rows(statements["audiograms"]):
        c = acc(r["enterprise"])
        c.exams += int(r.get("n") or 0)
        c.workers_examined += 1
    latest: dict[tuple[str, str], dict] = {}
    for r in reader.query_rows(statements["screening"]):
        k = (r["enterprise"], r["worker"])
        if k not in latest or int(r["time"]) >= int(latest[k]["time"]):
            latest[k] = r
    for (e, _), r in sorted(latest.items()):
        c = acc(e)
        c.screened += 1
        if r.get("suspected") is True:
            c.suspected += 1
            g = r.get("grade") if isinstance(r.get("grade"), str) else "none"
            c.grades[g] = c.grades.get(g, 0) + 1
        c.susceptible += r.get("susceptible") is True
        c.sts += r.get("sts_left") is True or r.get("sts_right") is True
        c.sts_age += r.get("sts_age_left") is True or r.get("sts_age_right") is True
        c.overdue += r.get("overdue") is True
    workers: dict[str, set] = {}
    for r in reader.query_rows(statements["fit_tests"]):
        c = acc(r["enterprise"])
        c.fit_tests += 1
        c.fit_passed += r.get("passed") is True
        c.fit_cautions += _cautions(r.get("cautions"))
        workers.setdefault(r["enterprise"], set()).add(r["worker"])
    for e, ws in workers.items():
        out[e].fit_workers = len(ws)
    for r in reader.query_rows(statements["observations"]):
        c = acc(r["enterprise"])
        c.observations += int(r.get("n") or 0)
        c.observed_workers += 1
    for r in reader.query_rows(statements["observations_correct"]):
        acc(r["enterprise"]).observed_correct += int(r.get("n") or 0)
    for r in reader.query_rows(statements["wear_days"]):
        c = acc(r["enterprise"])
        c.wear_days += int(r.get("n") or 0)
        c.wear_workers += 1
    return list(out.values())


def read_pilot(reader: InfluxClient, reg: Registry, first: dt.date, last: dt.date
               ) -> PilotResults:
    """The stored pilot evaluation of the periods starting from ``first`` to ``last`` (local
    dates of the deployment's time zone, inclusive)."""
    span = local_days(first, last, reg.deployment.timezone)
    return PilotResults(span.start_ns, span.end_ns, tuple(read_rates(reader, span)),
                        tuple(read_did(reader, span)),
                        tuple(read_counts(reader, span, [e.id for e in reg.enterprises])),
                        milestones(reg))


def label_of(reg: Registry, scope: str, key: str) -> tuple[str, str]:
    """(Chinese, English) name of a rate's group: the enterprise's registry names, the
    industry, pilot/comparison, all; an unknown key is shown as it is."""
    if scope == "enterprise":
        for e in reg.enterprises:
            if e.id == key:
                return e.name_zh, e.name_en or e.name_zh
        return key, key
    if scope == "industry":
        zh = next((e.industry_zh for e in reg.enterprises if e.industry == key
                   and e.industry_zh), None)
        base = INDUSTRY_TEXT.get(key, (key, key))
        return (zh or base[0]), base[1]
    if scope == "group":
        return GROUP_TEXT.get(key, (key, key))
    if scope == "all":
        return ("全部企业", "all enterprises")
    return key, key


INDUSTRY_TEXT: Mapping[str, tuple[str, str]] = {
    "machinery": ("机械制造", "machinery"), "light_industry": ("轻工", "light industry"),
    "building_materials": ("建材", "building materials"), "other": ("其他", "other")}
GROUP_TEXT: Mapping[str, tuple[str, str]] = {
    "pilot": ("试点企业", "pilot enterprises"), "comparison": ("对照企业", "comparison "
                                                              "enterprises")}
METHOD_TEXT: Mapping[str, tuple[str, str]] = {
    "wilson": ("Wilson 区间", "Wilson interval"),
    "beta": ("Clopper–Pearson 精确区间", "Clopper–Pearson exact interval"),
    "gee_bias_reduced": ("GEE（可交换相关，偏差校正稳健方差）",
                         "GEE (exchangeable, bias-reduced sandwich)"),
    "design_effect": ("设计效应校正", "design effect"),
    "cluster_robust": ("线性概率模型，企业聚类稳健标准误",
                       "linear probability model, enterprise-clustered errors"),
    "wild_cluster_bootstrap": ("野聚类自助法", "wild cluster bootstrap"),
}
SOURCE_TEXT: Mapping[str, tuple[str, str]] = {
    "observed": ("现场抽查", "spot checks"), "edge": ("耳内实测佩戴时长", "wear time at the ear")}
VERDICT_TEXT: Mapping[str, tuple[str, str]] = {
    "met": ("已达到（单侧 95 % 下限 ≥ 里程碑）", "met (one-sided 95 % lower bound ≥ milestone)"),
    "not_yet_shown": ("尚未证实（仅点估计达到）", "not yet shown (point estimate only)"),
    "not_met": ("未达到", "not met"),
}
