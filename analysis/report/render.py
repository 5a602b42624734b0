"""The inspector's report as HTML (Jinja2, autoescape on, CSS and figures inlined so the file
stands alone) and as PDF (WeasyPrint: HTML and CSS to PDF with Pango's text layout, which
embeds a subset of each font it uses, so the Noto CJK glyphs travel inside the PDF).

Every user-facing text is bilingual: ``lang="zh"`` puts Chinese first with English beside
it, ``lang="en"`` the reverse (:class:`Bilingual`). The data comes from
:func:`tingbao.analysis.report.build.build_report`; this module only formats it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import math
import os
from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from .. import iso9612
from ..gbzt229_4 import PROVISIONAL_NOTE
from . import plots
from .build import ReportData, evidence_text

__all__ = ["Bilingual", "FLAG_TEXT", "report_html", "report_paths", "write_pdf"]

LANGS = ("zh", "en")

FLAG_TEXT = {
    "gaps_extrapolated": ("未测时段按已测水平外推", "gaps extrapolated at the measured level"),
    "low_coverage": ("覆盖率低：仅计已测能量（下限）", "low coverage: measured energy only (a "
                                                   "lower bound)"),
    "no_data": ("无数据", "no data"),
    "u_insufficient_samples": ("样本不足，无不确定度", "too few samples: no U"),
    "u_plan_revise": ("c1·u1 超过 3.5 dB，需修订测量计划", "c1·u1 above 3.5 dB: revise the "
                                                         "measurement plan"),
    "uncalibrated": ("声级计未登记校准", "meter without a recorded calibration"),
    "declared_levels": ("含申报声级（非实测）", "includes declared (not measured) levels"),
    "impulses_not_counted": ("未计脉冲次数", "impulses not counted"),
}
"""Bilingual text of the flags stored with exposure records (:mod:`..exposure`,
:mod:`..daily`)."""

METER_STATE_TEXT = {
    "valid": ("校准有效", "calibration valid"),
    "expires": ("期间内校准到期", "calibration expires within the period"),
    "expired": ("校准已过期", "calibration expired"),
    "after": ("期间开始后才校准", "calibrated only after the period began"),
    "never": ("未登记校准", "no calibration recorded"),
}
ALERT_STATE_TEXT = {"open": ("未处理", "open"), "acknowledged": ("已确认", "acknowledged"),
                    "resolved": ("已解决", "resolved")}


@dataclasses.dataclass(frozen=True)
class Bilingual:
    """Orders a (Chinese, English) pair for one report language."""

    lang: str = "zh"

    def __post_init__(self):
        if self.lang not in LANGS:
            raise ValueError(f"language {self.lang!r}: one of {', '.join(LANGS)}")

    def pair(self, zh: str, en: str) -> tuple[str, str]:
        return (zh, en) if self.lang == "zh" else (en, zh)

    def html(self, zh: str, en: str) -> Markup:
        """``<span class="l1">first</span> <span class="l2">second</span>`` (escaped)."""
        a, b = self.pair(zh, en)
        if not b or a == b:
            return Markup('<span class="l1">{}</span>').format(a)
        return Markup('<span class="l1">{}</span> <span class="l2">{}</span>').format(a, b)

    def text(self, zh: str, en: str) -> str:
        """``first / second`` as plain text (figure titles)."""
        a, b = self.pair(zh, en)
        return a if not b or a == b else f"{a} / {b}"


# ------------------------------------------------------------------------------- filters
def _db(x, spec: str = ".1f") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) \
        else format(float(x), spec)


def _pct(x) -> str:
    return "—" if x is None else f"{100 * float(x):.0f} %"


def _lex_u(lex, u) -> str:
    """``85.6 ± 2.0`` (dB(A)); ``85.6 ± —`` without U; ``—`` without LEX."""
    if lex is None:
        return "—"
    return f"{lex:.1f} ± {_db(u)}"


def _time(ns: int, tz) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).astimezone(tz).strftime(
        "%Y-%m-%d %H:%M")


def _data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


@dataclasses.dataclass(frozen=True)
class Figures:
    """Inlined figures (data URIs): LEX charts of posts and jobs, level–time plots and
    spectra per post key."""

    lex_posts: str | None
    lex_jobs: str | None
    level_time: dict[str, str]
    spectra: dict[str, str]


def figures(data: ReportData, bi: Bilingual) -> Figures:
    """Draw every figure of the report (:mod:`.plots`)."""
    prof = data.profile

    def chart(subjects, zh, en):
        series = [(f"{s.key}", [(d.date, d.lex_8h, d.u_db) for d in s.days
                                if d.lex_8h is not None]) for s in subjects]
        if not any(pts for _, pts in series):
            return None
        return _data_uri(plots.lex_chart_svg(series, prof, bi.text(zh, en)))

    level_time = {}
    for s in data.posts:
        days = data.levels.get((s.meter, s.channel))
        if days:
            level_time[s.key] = _data_uri(plots.level_time_svg(
                days, data.enterprise.shift.hours, prof,
                bi.text(f"{s.name_zh} {s.key} 分钟声级", f"{s.name_en} {s.key} minute levels")))
    spectra = {}
    for s in data.posts:
        sp = data.spectra.get((s.meter, s.channel))
        if sp is not None:
            spectra[s.key] = _data_uri(plots.spectrum_svg(
                sp.labels, sp.levels_db, bi.text(f"{s.name_zh} {s.key} 频谱（{sp.n} 个区间）",
                                                 f"{s.name_en} {s.key} spectrum ({sp.n} "
                                                 "intervals)")))
    return Figures(chart(data.posts, "岗位每日 LEX,8h ± U", "Daily LEX,8h ± U of the posts"),
                   chart(data.jobs, "工种每日 LEX,8h ± U", "Daily LEX,8h ± U of the jobs"),
                   level_time, spectra)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tingbao.analysis.report", "templates"),
        autoescape=jinja2.select_autoescape(("html", "j2", "html.j2"), default=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(db=_db, pct=_pct, lex_u=_lex_u)
    return env


def _css() -> str:
    return (resources.files("tingbao.analysis.report") / "static" / "report.css").read_text(
        encoding="utf-8")


def method_notes(data: ReportData) -> list[tuple[str, str]]:
    """(Chinese, English) paragraphs of the method notes, numbers from the profile, the
    ISO 9612 edition data and the registry's ``[analysis]`` settings."""
    ed = iso9612.load_edition()
    a = data.registry.analysis
    inst = ed.instrument(a.instrument)
    p = data.profile
    notes = [
        ("日接触 LEX,8h 按 GBZ/T 189.8-2007 由能量累计 ΣEA 计算："
         "LEX,8h = 10 lg(ΣEA / (p0²·28 800 s))；多岗位工种按 10 lg Σ(Tm/8 h)·10^(0.1 Lm)。"
         "本报告只读取台账已存储并链入哈希链的记录，不重新计算。",
         "Daily exposure LEX,8h per GBZ/T 189.8-2007 from the summed sound exposure ΣEA: "
         "LEX,8h = 10 lg(ΣEA / (p0²·28 800 s)); a job over several posts by "
         "10 lg Σ (Tm/8 h)·10^(0.1 Lm). This report reads the records the ledger stored and "
         "chained; it recomputes nothing."),
        (f"不确定度按 GB/T 21230-2014（= {ed.edition}）："
         "岗位按工作日内 N 段的声级（基于工种的策略，表 C.4 的 c1·u1），工种按任务策略；"
         f"u2 = {inst.u2_db:g} dB（{inst.name_zh}），"
         f"u3 = {ed.u3_microphone_db:g} dB，扩展不确定度 U = k·u，k = {ed.coverage_factor_k:g}。"
         f"c1·u1 > {ed.plan_limit_c1u1_db:g} dB 时须修订测量计划（不给出 U）。",
         f"Uncertainty per GB/T 21230-2014 (= {ed.edition}): a post from the levels of N "
         f"parts of its shift (job-based strategy, c1·u1 of Table C.4), a job by the "
         f"task-based strategy; u2 = {inst.u2_db:g} dB ({inst.name_en}), "
         f"u3 = {ed.u3_microphone_db:g} dB, expanded U = k·u with "
         f"k = {ed.coverage_factor_k:g}. c1·u1 > {ed.plan_limit_c1u1_db:g} dB: the plan must "
         "be revised (no U given)."),
        (f"覆盖率规则：班次实测比例 ≥ {a.extrapolate_min_coverage:.0%} 时，未测时段按已测水平外推"
         "（标记“外推”）；低于该比例时 LEX,8h 只计实测能量，为下限（标记“覆盖率低”）。",
         f"Coverage rule: when at least {a.extrapolate_min_coverage:.0%} of the shift is "
         "measured the gaps are assumed as loud as the measured part (flag “gaps "
         "extrapolated”); below it LEX,8h counts the measured energy only, a lower bound "
         "(flag “low coverage”)."),
        ("期间汇总：期间 LEX,8h 为各日 LEX,8h 的能量平均 10 lg[(1/N) Σ 10^(0.1 LEX,8h,d)]；"
         "其 U 取各日 U 的能量加权和（各日视为完全相关，保守）；分级按期间 LEX,8h；"
         "LEX,8h 达到限值即计为超限日。",
         "Period summary: the period's LEX,8h is the energy mean of the daily values, "
         "10 lg[(1/N) Σ 10^(0.1 LEX,8h,d)]; its U the energy-weighted sum of the daily U "
         "(days taken as fully correlated, conservative); the grade is that of the period's "
         "LEX,8h; a day whose LEX,8h reaches the limit counts as over the limit."),
        (f"分级按 GBZ/T 229.4-2012 第 5 条（{p.id} 配置：" + "、".join(
            f"{g.code} ≥ {g.from_db:g}" for g in p.grades) + " dB(A)）。",
         f"Grades per GBZ/T 229.4-2012 clause 5 (profile {p.id}: " + ", ".join(
            f"{g.code} ≥ {g.from_db:g}" for g in p.grades) + " dB(A))."),
    ]
    if p.impulse_grades:
        zh, en = PROVISIONAL_NOTE.split(" / ", 1)
        notes.append((f"脉冲噪声：GBZ 2.2-2007 峰值限值按每日脉冲次数；{zh}"
                      f"（{p.peak_weighting} 计权峰值，权重未经确认）。",
                      f"Impulse noise: GBZ 2.2-2007 peak limits by the daily impulse count; "
                      f"{en} ({p.peak_weighting}-weighted peak; the weighting is not "
                      "confirmed)."))
    return notes


def report_html(data: ReportData, lang: str = "zh") -> str:
    """The report as one self-contained HTML document (CSS and figures inlined)."""
    bi = Bilingual(lang)
    tz = data.generated.tzinfo

    def flag_html(flag: str) -> Markup:
        base, _, rest = flag.partition(":")
        zh, en = FLAG_TEXT.get(base, (base, base))
        if rest:
            zh, en = f"{zh} {rest}", f"{en} {rest}"
        return bi.html(zh, en)

    env = _environment()
    env.globals.update(t=bi.html, tt=bi.text, flag=flag_html,
                       time=lambda ns: _time(ns, tz),
                       meter_state=lambda s: bi.html(*METER_STATE_TEXT[s]),
                       alert_state=lambda s: bi.html(*ALERT_STATE_TEXT.get(s, (s, s))),
                       evidence=evidence_text, escape=escape)
    return env.get_template("report.html.j2").render(
        d=data, lang=lang, css=Markup(_css()), figs=figures(data, bi),
        notes=method_notes(data), provisional=PROVISIONAL_NOTE.split(" / ", 1),
        flag_text=FLAG_TEXT)


def report_paths(out_dir: str | os.PathLike, enterprise: str, first: dt.date,
                 last: dt.date) -> tuple[Path, Path]:
    """``DIR/report-{enterprise}-{from}-{to}.html`` and ``.pdf``."""
    stem = Path(out_dir) / f"report-{enterprise}-{first.isoformat()}-{last.isoformat()}"
    return stem.with_suffix(".html"), stem.with_suffix(".pdf")


def write_pdf(html: str, path: str | os.PathLike) -> Path:
    """Render ``html`` to a PDF at ``path`` with WeasyPrint (fonts embedded as subsets)."""
    import weasyprint

    plots.cjk_font()  # the same check for the PDF's text: fail early, naming the package
    weasyprint.HTML(string=html, base_url=str(Path(path).parent)).write_pdf(str(path))
    return Path(path)
