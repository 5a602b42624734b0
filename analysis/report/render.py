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

from tingbao.edge.impulses import DEFAULT_REFRACTORY_S, DEFAULT_THRESHOLDS_DB

from .. import iso9612
from ..gbzt229_4 import PROVISIONAL_NOTE
from . import plots
from .build import U_CORRELATED, U_FULL_DAY, ReportData, SubjectSummary, evidence_text

__all__ = ["Bilingual", "FLAG_TEXT", "flag_text", "method_notes", "report_html",
           "report_paths", "u_method_text", "write_pdf"]

LANGS = ("zh", "en")

FLAG_TEXT = {
    "no_data": ("无数据", "no data"),
    "gaps_extrapolated": ("未测时段按已测水平外推", "gaps extrapolated at the measured level"),
    "low_coverage": ("覆盖率低：仅计已测能量（下限）", "low coverage: measured energy only (a "
                                                   "lower bound)"),
    "posts_low_coverage": ("所含岗位测量覆盖率低于阈值：工种 LEX 用各岗位 LAeq（外推）",
                           "posts measured below the coverage threshold: the job's LEX uses "
                           "the posts' LAeq (extrapolated)"),
    "u_insufficient_samples": ("样本不足，无不确定度", "too few samples: no U"),
    "u_plan_revise": ("须修订测量计划（c1·u1 > {plan_limit:g} dB）",
                      "measurement plan must be revised (c1·u1 > {plan_limit:g} dB)"),
    "declared_levels": ("含申报声级（非实测）", "includes declared (not measured) levels"),
    "uncalibrated": ("声级计未登记校准", "meter without a recorded calibration"),
    "impulses_not_counted": ("边缘设备未发送脉冲次数：GBZ 2.2 峰值限值按最宽松一档",
                             "the edge sent no impulse counts: the GBZ 2.2 peak limit used "
                             "the most lenient row"),
}
"""Bilingual text of the flags stored with exposure records (:mod:`..exposure`,
:mod:`..daily`), as templates: ``{plan_limit}`` is the edition's c1·u1 plan limit (dB).
A flag may carry a subject after a colon (``no_data:m1:0``: a job's task post without
data); a flag missing here prints as it is stored (:func:`flag_text`)."""


def flag_text(flag: str, plan_limit_db: float | None = None) -> tuple[str, str]:
    """(Chinese, English) text of a stored ``flag``: :data:`FLAG_TEXT` with ``{plan_limit}``
    the edition's c1·u1 limit in dB (default: the default edition's); ``no_data:METER:CHANNEL``
    names the post; an unknown flag gives ``标记 FLAG`` / ``flag FLAG`` (the raw flag)."""
    if plan_limit_db is None:
        plan_limit_db = iso9612.load_edition().plan_limit_c1u1_db
    base, _, rest = flag.partition(":")
    if base not in FLAG_TEXT:
        return f"标记 {flag}", f"flag {flag}"
    zh, en = (x.format(plan_limit=plan_limit_db) for x in FLAG_TEXT[base])
    if base == "no_data" and rest.count(":") == 1:
        meter, ch = rest.split(":")
        return f"{zh}：声级计 {meter} 通道 {ch}", f"{en}: meter {meter} channel {ch}"
    if rest:
        return f"{zh} {rest}", f"{en} {rest}"
    return zh, en


def u_method_text(s: SubjectSummary, ed: iso9612.Edition) -> tuple[str, str]:
    """(Chinese, English) of how the period's U of ``s`` was obtained (``—`` without
    days)."""
    d = s.u_detail
    if d is None or d.method is None:
        return "—", "—"
    if d.method == U_FULL_DAY:
        zh = f"全天测量（{ed.edition} 第 11 条），N = {d.n_days} 天"
        en = f"full-day ({ed.edition} clause 11), N = {d.n_days} days"
        if d.c1u1_db is not None:
            zh += f"，u1 = {d.u1_db:.2f} dB，c1·u1 = {d.c1u1_db:.2f} dB"
            en += f", u1 = {d.u1_db:.2f} dB, c1·u1 = {d.c1u1_db:.2f} dB"
        if d.plan_revise:
            fz, fe = flag_text("u_plan_revise", ed.plan_limit_c1u1_db)
            if d.u_db is None:
                zh += f"；u1 = {d.u1_db:.2f} dB 超出表 C.4，不给出 U；{fz}"
                en += f"; u1 = {d.u1_db:.2f} dB beyond Table C.4, no U; {fe}"
            else:
                zh, en = f"{zh}；{fz}", f"{en}; {fe}"
        return zh, en
    if d.method == U_CORRELATED:
        zh = f"各日 U 能量加权（视为完全相关），N = {d.n_days} 天 < {ed.min_days_full_day}"
        en = (f"daily U energy-weighted (fully correlated), N = {d.n_days} "
              f"< {ed.min_days_full_day} days")
        if d.u_db is None:
            zh, en = f"{zh}；有一天无 U", f"{en}; a day without U"
        return zh, en
    return d.method, d.method


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
    ISO 9612 edition the profile names and the registry's ``[analysis]`` settings."""
    ed = iso9612.load_edition(data.edition)
    a = data.registry.analysis
    inst = ed.instrument(a.instrument)
    p = data.profile
    k, lim = ed.coverage_factor_k, ed.plan_limit_c1u1_db
    plan_zh, plan_en = flag_text("u_plan_revise", lim)
    names = " = ".join(dict.fromkeys((data.edition, *ed.names)))
    thresholds = sorted({float(f[4:].replace("p", ".")) for s in data.posts for v in s.days
                         for f in v.fields if f.startswith("imp_")
                         and f[4:].replace("p", "").isdigit()})
    seen_zh = f"；本期记录最低 {thresholds[0]:g} dB" if thresholds else ""
    seen_en = f"; the lowest in this period's records {thresholds[0]:g} dB" if thresholds else ""
    notes = [
        ("日接触 LEX,8h 按 GBZ/T 189.8-2007 由能量累计 ΣEA 计算："
         "LEX,8h = 10 lg(ΣEA / (p0²·28 800 s))；多岗位工种按 10 lg Σ(Tm/8 h)·10^(0.1 Lm)。"
         "本报告只读取台账已存储并链入哈希链的记录，不重新计算。",
         "Daily exposure LEX,8h per GBZ/T 189.8-2007 from the summed sound exposure ΣEA: "
         "LEX,8h = 10 lg(ΣEA / (p0²·28 800 s)); a job over several posts by "
         "10 lg Σ (Tm/8 h)·10^(0.1 Lm). This report reads the records the ledger stored and "
         "chained; it recomputes nothing."),
        (f"不确定度按 {names}："
         "岗位按工作日内 N 段的声级（基于工种的策略，表 C.4 的 c1·u1），工种按任务策略；"
         f"u2 = {inst.u2_db:g} dB（{inst.name_zh}），"
         f"u3 = {ed.u3_microphone_db:g} dB，扩展不确定度 U = k·u，k = {k:g}。"
         f"少于 {ed.min_samples_job} 段时不给出 U（标记“样本不足”）。"
         f"c1·u1 > {lim:g} dB 时仍给出 U，并标记“{plan_zh}”；"
         "c1·u1 超出表 C.4 时不给出 U，标记相同。",
         f"Uncertainty per {names}: a post from the levels of N parts of its shift "
         "(job-based strategy, c1·u1 of Table C.4), a job by the task-based strategy; "
         f"u2 = {inst.u2_db:g} dB ({inst.name_en}), u3 = {ed.u3_microphone_db:g} dB, "
         f"expanded U = k·u with k = {k:g}. Fewer than {ed.min_samples_job} parts: no U "
         f"(flag “too few samples”). c1·u1 > {lim:g} dB: U is shown, flagged “{plan_en}”; "
         "c1·u1 beyond Table C.4: no U, the same flag."),
        (f"覆盖率规则：班次实测比例 ≥ {a.extrapolate_min_coverage:.0%} 时，未测时段按已测水平外推"
         "（标记“外推”）；低于该比例时 LEX,8h 只计实测能量，为下限（标记“覆盖率低”）。"
         "工种所含岗位低于该比例时，工种 LEX 仍用岗位的 LAeq，即外推（标记“岗位覆盖率低”）。",
         f"Coverage rule: when at least {a.extrapolate_min_coverage:.0%} of the shift is "
         "measured the gaps are assumed as loud as the measured part (flag “gaps "
         "extrapolated”); below it LEX,8h counts the measured energy only, a lower bound "
         "(flag “low coverage”). A job whose posts were measured below it still uses the "
         "posts' LAeq, i.e. extrapolated (flag “posts low coverage”)."),
        ("期间汇总：期间 LEX,8h 为各日 LEX,8h 的能量平均 10 lg[(1/N) Σ 10^(0.1 LEX,8h,d)]。"
         f"其 U：N ≥ {ed.min_days_full_day} 天时按 {names} 第 11 条全天测量策略，"
         "u1 为各日 LEX,8h 的样本标准差，c1·u1 查表 C.4，u² = (c1·u1)² + u2² + u3²，"
         f"U = {k:g}·u（u2 = {inst.u2_db:g} dB，{inst.name_zh}）；"
         f"c1·u1 > {lim:g} dB 时给出 U 并标记须修订测量计划，超出表 C.4 时不给出 U。"
         f"仅 1–{ed.min_days_full_day - 1} 天时取各日 U 的能量加权和（各日视为完全相关，保守），"
         "有一天无 U 则不给出。汇总表“U 方法”一栏注明每行所用方法。"
         "分级按期间 LEX,8h；LEX,8h 达到限值即计为超限日。",
         "Period summary: the period's LEX,8h is the energy mean of the daily values, "
         "10 lg[(1/N) Σ 10^(0.1 LEX,8h,d)]. Its U: with N ≥ "
         f"{ed.min_days_full_day} days the full-day strategy of {names} clause 11, u1 the "
         "sample standard deviation of the daily LEX,8h, c1·u1 from Table C.4, "
         f"u² = (c1·u1)² + u2² + u3², U = {k:g}·u (u2 = {inst.u2_db:g} dB, {inst.name_en}); "
         f"c1·u1 > {lim:g} dB: U shown and flagged that the plan must be revised; beyond "
         f"Table C.4: no U. With 1–{ed.min_days_full_day - 1} days only: the energy-weighted "
         "sum of the daily U (days taken as fully correlated, conservative), none if a day "
         "has none. The summary's column “U method” says which applies to each row. The "
         "grade is that of the period's LEX,8h; a day whose LEX,8h reaches the limit counts "
         "as over the limit."),
        ("数值修约：LEX,8h 打印到 0.1 dB；分级与限值判定均用未修约的值，"
         "故临界处打印值与分级可能看似不符（如 84.96 打印为 85.0，分级仍为 0）。",
         "Rounding: LEX,8h is printed to 0.1 dB; grades and limit checks use the unrounded "
         "value, so at an edge the printed value and the grade may look at odds (84.96 prints "
         "85.0 and is graded 0)."),
        (f"分级按 GBZ/T 229.4-2012 第 5 条（{p.id} 配置：" + "、".join(
            f"{g.code} ≥ {g.from_db:g}" for g in p.grades) + " dB(A)）。",
         f"Grades per GBZ/T 229.4-2012 clause 5 (profile {p.id}: " + ", ".join(
            f"{g.code} ≥ {g.from_db:g}" for g in p.grades) + " dB(A))."),
        (f"脉冲计数：计 C 计权峰值达到或超过边缘设备最低计数阈值（默认 "
         f"{min(DEFAULT_THRESHOLDS_DB):g} dB{seen_zh}）的事件；"
         f"同一撞击只计一次（不应期 {DEFAULT_REFRACTORY_S:g} s：低于阈值满 "
         f"{DEFAULT_REFRACTORY_S:g} s 后才计新的脉冲）。参考资料中的脉冲定义"
         "（0.5 s 内升起并衰减、脉冲间隔大于 1 s）可信度低；间隔 0.5–1 s 的两次撞击计为两次。"
         "GBZ/T 229.4 的脉冲噪声分级为暂定。",
         "Impulse counting: C-weighted peak events at or above the edge's lowest counting "
         f"threshold (default {min(DEFAULT_THRESHOLDS_DB):g} dB"
         f"{seen_en}); one impact counts once (refractory time "
         f"{DEFAULT_REFRACTORY_S:g} s: a new impulse starts only after "
         f"{DEFAULT_REFRACTORY_S:g} s below the threshold). The reference's impulse definition "
         "(rises and decays within 0.5 s, more than 1 s between impulses) is of low "
         "confidence; impacts 0.5–1 s apart count twice. The GBZ/T 229.4 impulse grades are "
         "provisional."),
        ("告警计数：带通道的告警计入该岗位；声级计级告警（无通道，如离线、校准漂移、时钟偏差）"
         "计入该声级计的每个通道（岗位）；工种的告警为指明该工种的告警。",
         "Alert counts: an alert with a channel counts for that post; a meter-level alert (no "
         "channel: meter offline, calibration drift, clock offset, …) counts for every "
         "channel (post) of that meter; a job's alerts are those naming the job."),
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
    ed = iso9612.load_edition(data.edition)

    def flag_html(flag: str) -> Markup:
        return bi.html(*flag_text(flag, ed.plan_limit_c1u1_db))

    env = _environment()
    env.globals.update(t=bi.html, tt=bi.text, flag=flag_html,
                       time=lambda ns: _time(ns, tz),
                       meter_state=lambda s: bi.html(*METER_STATE_TEXT[s]),
                       alert_state=lambda s: bi.html(*ALERT_STATE_TEXT.get(s, (s, s))),
                       evidence=evidence_text, escape=escape,
                       u_method=lambda s: bi.html(*u_method_text(s, ed)))
    return env.get_template("report.html.j2").render(
        d=data, lang=lang, css=Markup(_css()), figs=figures(data, bi),
        notes=method_notes(data), provisional=PROVISIONAL_NOTE.split(" / ", 1),
        flag_text={k: flag_text(k, ed.plan_limit_c1u1_db)
                   for k in (*FLAG_TEXT, "no_data:METER:CHANNEL")})


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
