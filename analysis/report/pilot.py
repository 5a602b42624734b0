"""The pilot-evaluation report (``tingbao pilot-report``): what the evaluator of the
听力保护行动 pilots reads, as HTML (self-contained) and PDF, Chinese with English
(:class:`~.render.Bilingual`), with plots. It reuses the inspector report's machinery
(:mod:`.render`: the bilingual ordering, the CSS, WeasyPrint with embedded Noto CJK;
:mod:`.plots`: matplotlib SVG with the CJK font) and changes none of it.

The numbers are the stored results (:mod:`tingbao.analysis.pilot_results`): correct-wearing
rates per group, enterprise and period with their 95 % intervals and one-sided 95 % lower
bounds, judged against the registry's milestones (met only when the lower bound reaches the
milestone; "not yet shown" when only the point estimate does), spot checks beside the wear
time measured at the ear, the difference in differences pilot vs comparison, hearing
screening (GBZ 49-2014 suspected occupational noise deafness by grade, GBZ 188-2014
noise-susceptible, OSHA STS, exams overdue) and the fit-test pass rate per enterprise.

Figures (SVG, % on the rate axes): a forest plot per period (rate, 95 % interval, the
one-sided lower bound, the milestone of the period's year and the 2020 baseline as lines),
the groups' rates over the periods, the DiD with its interval beside its four cells, and
screening counts per enterprise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import zoneinfo
from collections.abc import Sequence
from pathlib import Path

from markupsafe import Markup

from tingbao.collector.influx import InfluxClient
from tingbao.collector.registry.site import Registry

from .. import pilot_results as pr
from . import plots
from .render import Bilingual, _css, _data_uri, _environment

__all__ = ["PilotReport", "build_pilot_report", "pilot_html", "pilot_paths"]

VERDICT_COLOURS = {"met": "#2b8a3e", "not_yet_shown": "#e67700", "not_met": "#c92a2a",
                   None: "#1971c2"}
MAX_FORESTS = 6
"""At most this many forest plots (the newest periods of the main period kind)."""


@dataclasses.dataclass(frozen=True)
class PilotReport:
    """The report's data: the stored results of the periods starting from ``first`` to
    ``last`` (local dates, inclusive), the registry, when it was made."""

    registry: Registry
    first: dt.date
    last: dt.date
    generated: dt.datetime
    results: pr.PilotResults

    @property
    def main_kind(self) -> str | None:
        """The period kind the plots use: years when any rate is yearly, else quarters,
        else months."""
        kinds = {r.kind for r in self.results.rates}
        return next((k for k in ("year", "quarter", "month") if k in kinds), None)

    def label(self, scope: str, key: str) -> tuple[str, str]:
        return pr.label_of(self.registry, scope, key)


def build_pilot_report(reader: InfluxClient, reg: Registry, first: dt.date, last: dt.date,
                       now: dt.datetime | None = None) -> PilotReport:
    """Read the stored pilot evaluation of ``first`` … ``last`` (local dates)."""
    tz = zoneinfo.ZoneInfo(reg.deployment.timezone)
    now = now or dt.datetime.now(tz)
    return PilotReport(reg, first, last, now.astimezone(tz),
                       pr.read_pilot(reader, reg, first, last))


def pilot_paths(out_dir: str | os.PathLike, first: dt.date, last: dt.date
                ) -> tuple[Path, Path]:
    """``DIR/pilot-report-{from}-{to}.html`` and ``.pdf``."""
    stem = Path(out_dir) / f"pilot-report-{first.isoformat()}-{last.isoformat()}"
    return stem.with_suffix(".html"), stem.with_suffix(".pdf")


# --------------------------------------------------------------------------------- figures
def _rate_limits(values: Sequence[float | None], baseline: float) -> tuple[float, float]:
    xs = [v for v in values if v is not None and math.isfinite(v)] + [baseline]
    return max(0.0, math.floor(min(xs) / 10) * 10 - 5), min(100.0, math.ceil(max(xs) / 10)
                                                            * 10 + 5)


def forest_svg(rows: Sequence[tuple[str, pr.Rate]], milestone_pct: float | None,
               baseline: pr.ReferenceLine, title: str, bi: Bilingual) -> str:
    """Forest plot: one row per (label, rate), top to bottom: the rate (%, a dot coloured by
    its verdict), its two-sided 95 % interval (bar) and the one-sided 95 % lower bound (a
    tick), the milestone of the year and the baseline as vertical lines."""
    import matplotlib

    with matplotlib.rc_context(plots._rc()):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.2, 0.9 + 0.32 * max(len(rows), 1)))
        ax = fig.add_subplot()
        n = len(rows)
        for i, (_, r) in enumerate(rows):
            y = n - 1 - i
            if r.lo95 is not None and r.hi95 is not None:
                ax.plot([r.lo95, r.hi95], [y, y], color="#495057", lw=1.4)
            if r.lower95 is not None:
                ax.plot([r.lower95], [y], marker="|", ms=11, mew=1.6, color="#000")
            if r.rate is not None:
                ax.plot([r.rate], [y], "o", ms=6, color=VERDICT_COLOURS.get(r.verdict))
        ax.axvline(baseline.value_pct, color="#868e96", ls="--", lw=1,
                   label=bi.text(f"基线 {baseline.value_pct:g} %（{baseline.year}）",
                                 f"baseline {baseline.value_pct:g} % ({baseline.year})"))
        if milestone_pct is not None:
            ax.axvline(milestone_pct, color="#2b8a3e", lw=1.6,
                       label=bi.text(f"里程碑 {milestone_pct:g} %", f"milestone "
                                                                 f"{milestone_pct:g} %"))
        ax.set_yticks(range(n), [label for label, _ in reversed(rows)], fontsize=7.5)
        vals = [v for _, r in rows for v in (r.lo95, r.hi95, r.rate)]
        ax.set_xlim(*_rate_limits([*vals, milestone_pct], baseline.value_pct))
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlabel(bi.text("正确佩戴率 %（点：估计值；横线：95 % 区间；竖线：单侧 95 % 下限）",
                              "correct-wearing rate % (dot: estimate; bar: 95 % interval; "
                              "tick: one-sided 95 % lower bound)"), fontsize=7.5)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", lw=0.3, alpha=0.6)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return plots._svg(fig)


def timeline_svg(series: Sequence[tuple[str, Sequence[pr.Rate]]], periods: Sequence[str],
                 milestones_pct: dict[int, float], baseline: pr.ReferenceLine, title: str,
                 bi: Bilingual) -> str:
    """Rates (%) of each named series over ``periods`` with their 95 % intervals, the
    milestone of each period's year (dashed steps) and the baseline."""
    import matplotlib

    with matplotlib.rc_context(plots._rc()):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.2, 3.2))
        ax = fig.add_subplot()
        idx = {p: i for i, p in enumerate(periods)}
        k = max(len(series), 1)
        allv = []
        for j, (label, rates) in enumerate(series):
            off = (j - (k - 1) / 2) * 0.25 / k
            pts = sorted((idx[r.period], r) for r in rates if r.period in idx
                         and r.rate is not None)
            xs = [i + off for i, _ in pts]
            ys = [r.rate for _, r in pts]
            lo = [r.rate - r.lo95 if r.lo95 is not None else 0.0 for _, r in pts]
            hi = [r.hi95 - r.rate if r.hi95 is not None else 0.0 for _, r in pts]
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="-o", ms=4, capsize=2.5, lw=1,
                        label=label)
            allv += [r.lo95 for _, r in pts] + [r.hi95 for _, r in pts] + ys
        ms = [milestones_pct.get(pr.period_year(p)) for p in periods]
        if any(m is not None for m in ms):
            ax.step(range(len(periods)), [math.nan if m is None else m for m in ms],
                    where="mid", color="#2b8a3e", ls="--", lw=1.4,
                    label=bi.text("当年里程碑", "milestone of the year"))
        ax.axhline(baseline.value_pct, color="#868e96", ls=":", lw=1,
                   label=bi.text(f"基线 {baseline.value_pct:g} %", f"baseline "
                                                                  f"{baseline.value_pct:g} %"))
        ax.set_xticks(range(len(periods)), list(periods),
                      rotation=45 if len(periods) > 8 else 0)
        ax.set_xlim(-0.5, len(periods) - 0.5)
        ax.set_ylim(*_rate_limits([*allv, *ms], baseline.value_pct))
        ax.set_ylabel("%")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", lw=0.3, alpha=0.6)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        return plots._svg(fig)


def did_svg(d: pr.DidResult, bi: Bilingual) -> str:
    """Left: the four cell rates (%), pilot and comparison from baseline to follow-up;
    right: the difference in differences (percentage points) with its 95 % interval and
    the zero line."""
    import matplotlib

    with matplotlib.rc_context(plots._rc()):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.2, 2.8))
        ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
        for name, a, b, colour, dy in ((bi.text("试点", "pilot"), d.pilot_base,
                                        d.pilot_follow, "#1971c2", 6),
                                       (bi.text("对照", "comparison"), d.comparison_base,
                                        d.comparison_follow, "#868e96", -7)):
            ys = [math.nan if v is None else v for v in (a, b)]
            ax.plot([0, 1], ys, "-o", color=colour, label=name)
            for x, v in zip((0, 1), (a, b), strict=True):
                if v is not None:
                    ax.annotate(f"{v:.1f}", (x, v), textcoords="offset points", xytext=(6, dy),
                                fontsize=7, va="center")
        ax.set_xticks([0, 1], [bi.text(f"基线 {d.baseline}", f"baseline {d.baseline}"),
                               bi.text(f"随访 {d.followup}", f"follow-up {d.followup}")])
        ax.set_xlim(-0.3, 1.4)
        ax.set_ylabel("%")
        ax.legend(fontsize=7, frameon=False)
        ax.grid(axis="y", lw=0.3, alpha=0.6)
        if d.did_pp is not None:
            lo = d.did_pp - d.lo_pp if d.lo_pp is not None else 0.0
            hi = d.hi_pp - d.did_pp if d.hi_pp is not None else 0.0
            bx.errorbar([0], [d.did_pp], yerr=[[lo], [hi]], fmt="o", ms=6, capsize=5,
                        color="#1971c2")
            bx.annotate(f"{d.did_pp:+.1f}", (0, d.did_pp), textcoords="offset points",
                        xytext=(8, 0), fontsize=8, va="center")
        bx.axhline(0, color="#000", lw=0.8)
        bx.set_xticks([0], ["DiD"])
        bx.set_xlim(-1, 1)
        bx.set_ylabel(bi.text("百分点", "percentage points"))
        bx.grid(axis="y", lw=0.3, alpha=0.6)
        fig.suptitle(bi.text("差异中的差异：试点 vs 对照", "Difference in differences: pilot vs "
                             "comparison"), fontsize=9)
        return plots._svg(fig)


SCREENING_BARS = (("suspected", "疑似噪声聋", "suspected NIHL"), ("mild", "轻度", "mild"),
                  ("moderate", "中度", "moderate"), ("severe", "重度", "severe"),
                  ("susceptible", "噪声易感", "susceptible"), ("sts", "STS", "STS"),
                  ("sts_age", "STS（年龄校正）", "STS (age-corr.)"),
                  ("overdue", "逾期", "overdue"))


def screening_counts(c: pr.EnterpriseCounts) -> dict[str, int]:
    """The screening bars of one enterprise (workers)."""
    return {"suspected": c.suspected, "mild": c.grades.get("mild", 0),
            "moderate": c.grades.get("moderate", 0), "severe": c.grades.get("severe", 0),
            "susceptible": c.susceptible, "sts": c.sts, "sts_age": c.sts_age,
            "overdue": c.overdue}


def screening_svg(rows: Sequence[tuple[str, dict[str, int]]], bi: Bilingual) -> str:
    """Grouped bars: per enterprise the number of workers in each screening category."""
    import matplotlib

    with matplotlib.rc_context(plots._rc()):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.2, 2.8))
        ax = fig.add_subplot()
        k = len(rows)
        width = 0.8 / max(k, 1)
        for j, (label, counts) in enumerate(rows):
            xs = [i + (j - (k - 1) / 2) * width for i in range(len(SCREENING_BARS))]
            ax.bar(xs, [counts[c] for c, _, _ in SCREENING_BARS], width=width * 0.95,
                   label=label)
        ax.set_xticks(range(len(SCREENING_BARS)), [bi.text(zh, en).replace(" / ", "\n")
                                                   for _, zh, en in SCREENING_BARS],
                      fontsize=6.5)
        ax.set_ylabel(bi.text("人数", "workers"))
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_title(bi.text("听力筛查（按每人最新结果）",
                             "Hearing screening (each worker's latest result)"), fontsize=9)
        ax.grid(axis="y", lw=0.3, alpha=0.6)
        ax.legend(fontsize=7, frameon=False)
        return plots._svg(fig)


@dataclasses.dataclass(frozen=True)
class PilotFigures:
    forests: tuple[tuple[str, str], ...]
    """(period, data URI) of the forest plots, newest first."""
    timelines: tuple[tuple[str, str], ...]
    """(source, data URI) of the groups' rates over the periods."""
    did: tuple[tuple[str, str], ...]
    screening: str | None


def _row_label(data: PilotReport, r: pr.Rate, bi: Bilingual) -> str:
    zh, en = data.label(r.scope, r.key)
    szh, sen = pr.SOURCE_TEXT.get(r.source, (r.source, r.source))
    return bi.pair(f"{zh} · {szh}", f"{en} · {sen}")[0]


def figures(data: PilotReport, bi: Bilingual) -> PilotFigures:
    res = data.results
    kind = data.main_kind
    periods = sorted({r.period for r in res.rates if r.kind == kind})
    forests = []
    for p in reversed(periods[-MAX_FORESTS:]):
        rows = [(_row_label(data, r, bi), r) for r in res.rates if r.period == p
                and r.rate is not None]
        if rows:
            forests.append((p, _data_uri(forest_svg(
                rows, res.milestones.get(pr.period_year(p)), res.baseline,
                bi.text(f"{p} 年度/期间佩戴率", f"Rates of {p}"), bi))))
    timelines = []
    for source in sorted({r.source for r in res.rates}, key=lambda s: s != "observed"):
        groups: dict[tuple[str, str], list[pr.Rate]] = {}
        for r in res.rates:
            if r.kind == kind and r.scope != "enterprise" and r.source == source:
                groups.setdefault((r.scope, r.key), []).append(r)
        if groups and len(periods) >= 1:
            series = [(bi.pair(*data.label(s, k))[0], rs) for (s, k), rs in groups.items()]
            szh, sen = pr.SOURCE_TEXT.get(source, (source, source))
            timelines.append((source, _data_uri(timeline_svg(
                series, periods, res.milestones, res.baseline,
                bi.text(f"各组佩戴率随期间变化（{szh}）", f"Rates of the groups over the periods "
                                                  f"({sen})"), bi))))
    did = [(f"{d.baseline}→{d.followup}", _data_uri(did_svg(d, bi))) for d in res.did]
    scr = [(bi.pair(*data.label("enterprise", c.enterprise))[0], screening_counts(c))
           for c in res.counts if c.screened]
    return PilotFigures(tuple(forests), tuple(timelines), tuple(did),
                        _data_uri(screening_svg(scr, bi)) if scr else None)


# ---------------------------------------------------------------------------------- HTML
def method_notes(data: PilotReport) -> list[tuple[str, str]]:
    """(Chinese, English) paragraphs of how the numbers were obtained and are judged."""
    ms = data.results.milestones
    ms_zh = "、".join(f"{y} 年 {m:g} %" for y, m in sorted(ms.items()))
    ms_en = ", ".join(f"{m:g} % in {y}" for y, m in sorted(ms.items()))
    b = data.results.baseline
    return [
        ("指标为重点行业用人单位劳动者防噪声耳塞或耳罩正确佩戴率。本报告只读取分析服务已写入"
         "数据库的结果（wearing_rate、pilot_did、screening 等），不重新计算。",
         "The indicator is the correct-wearing rate of earplugs or earmuffs among workers of "
         "employers in key industries. This report reads the results the analysis stored "
         "(wearing_rate, pilot_did, screening …); it recomputes nothing."),
        (f"里程碑（登记表 [deployment]）：{ms_zh}。判定以单侧 95 % 置信下限为准：下限达到里程碑才"
         "记为“已达到”；仅点估计达到记为“尚未证实”；否则“未达到”。点估计与区间同时列出。"
         f"参考线为{b.source_zh} {b.value_pct:g} %。",
         f"Milestones (the registry's [deployment]): {ms_en}. A milestone is judged by the "
         "one-sided 95 % lower bound: “met” only when the lower bound reaches it; “not yet "
         "shown” when only the point estimate does; otherwise “not met”. The point estimate "
         f"and the interval are shown beside it. The reference line is the {b.source_en}, "
         f"{b.value_pct:g} %."),
        ("区间方法：单个企业用 Wilson 或 Clopper–Pearson 区间；企业组考虑企业内聚集，用 GEE"
         "（二项、可交换相关、偏差校正稳健方差）或设计效应 Deff = 1 + (m̄ − 1)·ICC。"
         "“现场抽查”为抽查人数 n 中正确佩戴 x 人；“耳内实测佩戴时长”为双通道边缘设备测得的"
         "人日，两者并列，不合并。",
         "Intervals: a single enterprise by Wilson or Clopper–Pearson; groups of enterprises "
         "respecting clustering by enterprise, by GEE (binomial, exchangeable, bias-reduced "
         "sandwich) or the design effect Deff = 1 + (m̄ − 1)·ICC. “Spot checks” count x of n "
         "workers observed wearing correctly; “wear time at the ear” counts worker-days "
         "measured by the two-channel edge devices; the two are shown side by side, never "
         "pooled."),
        ("试点与对照：线性概率模型 worn ~ pilot × post，企业聚类稳健标准误；企业数少时用野聚类"
         "自助法。DiD 为 (试点随访 − 试点基线) − (对照随访 − 对照基线)，单位为百分点。",
         "Pilot vs comparison: linear probability model worn ~ pilot × post with "
         "enterprise-clustered errors; with few enterprises a wild cluster bootstrap. The DiD "
         "is (pilot follow-up − pilot baseline) − (comparison follow-up − comparison "
         "baseline), in percentage points."),
        ("听力筛查按每名劳动者在本期间最新一次结果计人数（同一人两次体检计一次）：GBZ 49-2014 "
         "疑似职业性噪声聋及分级（较好耳语频加权值：轻度 26–40、中度 41–55、重度 ≥ 56 dB HL），"
         "GBZ 188-2014 噪声易感者，OSHA 29 CFR 1910.95 标准阈移（含/不含年龄校正），"
         "按 LEX,8h 定的体检周期已逾期者。电测听次数另列。",
         "Hearing screening counts workers by each one's latest result in the period (two "
         "exams of one worker count once): GBZ 49-2014 suspected occupational noise deafness "
         "and its grade (better ear's weighted value: mild 26–40, moderate 41–55, severe "
         "≥ 56 dB HL), GBZ 188-2014 noise-susceptible, the OSHA 29 CFR 1910.95 standard "
         "threshold shift (with and without age correction), exams overdue by the interval "
         "the LEX,8h sets. The number of audiograms is listed beside them."),
    ]


def pilot_html(data: PilotReport, lang: str = "zh") -> str:
    """The pilot report as one self-contained HTML document (CSS and figures inlined)."""
    bi = Bilingual(lang)
    env = _environment()

    def pair(p: tuple[str, str] | None, fallback: str = "—") -> Markup:
        return bi.html(*p) if p else bi.html(fallback, fallback)

    def label(scope: str, key: str) -> Markup:
        return bi.html(*data.label(scope, key))

    env.globals.update(t=bi.html, tt=bi.text, pair=pair, label=label,
                       method=lambda m: pair(pr.METHOD_TEXT.get(m), m or "—"),
                       source=lambda s: pair(pr.SOURCE_TEXT.get(s), s),
                       verdict=lambda v: pair(pr.VERDICT_TEXT.get(v)) if v else "—",
                       screening_counts=screening_counts)
    res = data.results
    return env.get_template("pilot.html.j2").render(
        d=data, r=res, lang=lang, css=Markup(_css()), figs=figures(data, bi),
        notes=method_notes(data),
        groups=[x for x in res.rates if x.scope != "enterprise"],
        enterprises=[x for x in res.rates if x.scope == "enterprise"])
