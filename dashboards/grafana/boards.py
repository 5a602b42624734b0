"""The Grafana dashboards of tingbao, built with grafana-foundation-sdk (Grafana 11.6 schema)
over the InfluxDB data source with raw InfluxQL (:mod:`.query`): the same views as the built-in
live page (issue 13).

* ``tingbao-live-floor`` — latest LAeq,1s / LAFmax / LCpeak per meter (``levels``) and the
  LAeq per meter over time, energy-correct per ``$__interval``;
* ``tingbao-alerts`` — the ``alerts`` measurement: one row per state change;
* ``tingbao-exposure`` — LEX,8h per post and job over the days (``exposure``, the profile in
  force), the limit line and the GBZ/T 229.4-2012 grades;
* ``tingbao-pilot`` — the pilot evaluation (issue 14): the correct-wearing rate per group
  and per enterprise and period with its 95 % interval, the one-sided 95 % lower bound
  against the milestones (threshold lines with the 2020 baseline), the pilot-vs-comparison
  difference in differences, hearing-screening counts and the fit-test pass rate per
  enterprise (``wearing_rate``, ``pilot_did``, ``audiograms``, ``screening``,
  ``fit_tests``), and the exposure context (share of post-days with LEX,8h at or above the
  limit, per enterprise and per group).

Every measurement, tag and field name comes from :mod:`tingbao.collector.schema`, every
limit and grade edge from the regulatory profile (:mod:`tingbao.collector.registry.profiles`).
Grafana substitutes ``$timeFilter`` (``time >= … AND time <= …``), ``$__interval`` and the
template variables ``$enterprise`` (one value) and ``$meter`` (a regex alternation of the
selected values) before the query reaches InfluxDB.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal

from grafana_foundation_sdk.builders import common as gc
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from tingbao.collector import schema
from tingbao.collector.registry.profiles import DEFAULT_PROFILE, Profile, profile
from tingbao.edge.levels import P0_SQUARED

from .query import DATASOURCE_TYPE, Dataquery

__all__ = ["DEFAULT_DATASOURCE_UID", "UIDS", "build_all", "dashboard_json", "grade_thresholds",
           "limit_thresholds"]

DEFAULT_DATASOURCE_UID = "tingbao-influxdb"
UIDS = ("tingbao-live-floor", "tingbao-alerts", "tingbao-exposure", "tingbao-pilot")
TAGS = ["tingbao"]

q = schema.quote_ident
ENTERPRISE = schema.where_tags([("enterprise", "$enterprise")])
"""``"enterprise" = '$enterprise'``: Grafana puts the selected id in place of the variable."""
METERS = f"{q('meter')} =~ /^$meter$/"
"""The selected meters: Grafana writes a multi-value variable as ``(m1|m2)`` in a regex."""
BY_POST = ", ".join(q(t) for t in ("meter", "channel"))
_COLORS = ("green", "#EAB839", "orange", "red", "dark-red", "purple", "dark-purple")


def _plain(x: float) -> str:
    """A number in plain decimals (InfluxQL reads no scientific notation): 4e-10 →
    ``0.0000000004``."""
    return format(Decimal(repr(float(x))), "f")


def _ds(uid: str) -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=uid)


# ---------------------------------------------------------------------------- thresholds
def grade_thresholds(prof: Profile) -> list[tuple[float | None, str]]:
    """(lower edge dB(A) or None for the base, colour) of the profile's level classes: below
    the noise-work level, from it (GBZ/T 229.4-2012 噪声作业, 80 dB(A) in CN-GBZ), and from
    each hazard grade's lower edge (85/90/94/100 dB(A) in CN-GBZ)."""
    edges = ([prof.noise_work_db] if prof.noise_work_db is not None else []) + [
        g.from_db for g in prof.grades]
    if not edges:
        edges = [prof.lex_limit_db]
    return [(None, _COLORS[0])] + [(e, _COLORS[min(i + 1, len(_COLORS) - 1)])
                                    for i, e in enumerate(edges)]


def limit_thresholds(prof: Profile) -> list[tuple[float | None, str]]:
    """Green below the profile's LEX,8h limit, red from it (85 dB(A) in CN-GBZ)."""
    return [(None, "green"), (prof.lex_limit_db, "red")]


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> gd.ThresholdsConfig:
    return (gd.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in steps]))


def _by_thresholds() -> gd.FieldColor:
    return gd.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS)


# ----------------------------------------------------------------------------- variables
def _enterprise_var(uid: str, measurement: str, rp: str | None = None) -> gd.QueryVariable:
    return (gd.QueryVariable("enterprise").label("企业 enterprise").datasource(_ds(uid))
            .query(f"SHOW TAG VALUES FROM {schema.source(measurement, rp)} WITH KEY = "
                   f"{q('enterprise')}")
            .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD).sort(dm.VariableSort.ALPHABETICAL_ASC))


def _meter_var(uid: str) -> gd.QueryVariable:
    return (gd.QueryVariable("meter").label("测点 meter").datasource(_ds(uid))
            .query(f"SHOW TAG VALUES FROM {schema.source(schema.LEVELS)} WITH KEY = "
                   f"{q('meter')} WHERE {ENTERPRISE}")
            .multi(True).include_all(True)
            .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD).sort(dm.VariableSort.ALPHABETICAL_ASC))


def _target(uid: str, ref: str, query: str, *, table_format: bool = False,
            alias: str | None = None) -> Dataquery:
    t = Dataquery(uid).ref_id(ref).query(query)
    if alias:
        t = t.alias(alias)
    return t.table() if table_format else t


def _board(uid: str, title: str, description: str, timezone: str, time_from: str,
           refresh: str | None = None) -> gd.Dashboard:
    b = (gd.Dashboard(title).uid(uid).description(description).tags(TAGS).timezone(timezone)
         .time(time_from, "now").tooltip(dm.DashboardCursorSync.CROSSHAIR).editable())
    return b.refresh(refresh) if refresh else b


# ----------------------------------------------------------------------------- live floor
def live_floor_queries() -> dict[str, str]:
    """The InfluxQL of the live floor's panels (by refId-like key)."""
    levels = schema.source(schema.LEVELS)
    cond = f"{ENTERPRISE} AND {METERS} AND $timeFilter"
    e, c = q(schema.EA), q(schema.COVERAGE)
    inner = (f"SELECT SUM({e}) AS {q('e')}, SUM({c}) AS {q('c')} FROM {levels} WHERE {cond} "
             f"GROUP BY time($__interval), {BY_POST} fill(none)")
    return {
        "laeq_now": f"SELECT LAST({q('laeq')}) AS {q('laeq')} FROM {levels} WHERE {cond} "
                    f"GROUP BY {BY_POST}",
        "latest": (f"SELECT LAST({q('laeq')}) AS {q('laeq')}, LAST({q('lafmax')}) AS "
                   f"{q('lafmax')}, LAST({q('lcpeak')}) AS {q('lcpeak')} FROM {levels} "
                   f"WHERE {cond} GROUP BY {BY_POST}"),
        # LAeq of each interval = 10 lg(ΣEA / (p0² Σcoverage)): energies add, decibels not
        "laeq_series": (f"SELECT 10 * LOG10({q('e')} / {q('c')} / {_plain(P0_SQUARED)}) AS "
                        f"{q('laeq')} FROM ({inner}) WHERE $timeFilter GROUP BY {BY_POST}"),
        "lcpeak_series": (f"SELECT MAX({q('lcpeak')}) AS {q('lcpeak')} FROM {levels} WHERE "
                          f"{cond} GROUP BY time($__interval), {BY_POST} fill(none)"),
    }


def live_floor(uid: str, prof: Profile, timezone: str = "browser") -> gd.Dashboard:
    qs = live_floor_queries()
    steps = grade_thresholds(prof)
    alias = "$tag_meter/$tag_channel"
    return (
        _board("tingbao-live-floor", "听保 车间实时 · tingbao live floor",
               "每个测点的实时声级 / latest levels per meter", timezone, "now-1h", "5s")
        .with_variable(_enterprise_var(uid, schema.LEVELS)).with_variable(_meter_var(uid))
        .with_panel(
            stat.Panel().title("LAeq,1s 当前 · now").unit("dB").decimals(1).height(5).span(24)
            .description("每个测点通道最新的 1 s LAeq (dB(A))；颜色：噪声作业与 GBZ/T 229.4 "
                         "分级下限 / newest 1 s LAeq per meter channel, coloured at the "
                         "profile's noise-work and grade edges")
            .with_target(_target(uid, "A", qs["laeq_now"], alias=alias))
            .thresholds(_thresholds(steps)).color_scheme(_by_thresholds())
            .reduce_options(gc.ReduceDataOptions().calcs(["lastNotNull"]))
            .color_mode(cm.BigValueColorMode.BACKGROUND))
        .with_panel(
            table.Panel().title("最新声级 · latest levels").unit("dB").decimals(1).height(8)
            .span(24)
            .description("LAeq,1s、LAFmax、LCpeak 各自的最新值 (dB) / the newest LAeq,1s, "
                         "LAFmax and LCpeak of each meter channel")
            .with_target(_target(uid, "A", qs["latest"], table_format=True))
            .thresholds(_thresholds(steps)).color_scheme(_by_thresholds()))
        .with_panel(
            timeseries.Panel().title("LAeq 时间历程 · LAeq over time").unit("dB").height(10)
            .span(24)
            .description("每个时间间隔的 LAeq = 10 lg(ΣEA / (p0² Σ有效秒数))，按能量而非分贝"
                         "平均 / LAeq of each interval from the summed A-weighted exposure "
                         "over the summed valid seconds (energy, not decibels, averaged)")
            .with_target(_target(uid, "A", qs["laeq_series"], alias=alias))
            .thresholds(_thresholds(steps)).color_scheme(
                gd.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
            .thresholds_style(gc.GraphThresholdsStyleConfig().mode(
                cm.GraphThresholdsStyleMode.LINE)))
        .with_panel(
            timeseries.Panel().title("LCpeak 最大值 · LCpeak maximum").unit("dB").height(8)
            .span(24)
            .description("每个时间间隔内最高的 C 计权峰值声级 / highest C-weighted peak "
                         "level of each interval")
            .with_target(_target(uid, "A", qs["lcpeak_series"], alias=alias)))
    )


# --------------------------------------------------------------------------------- alerts
ALERT_COLUMNS = ("state", "rule", "severity", "meter", "channel", "shift_date", "text_zh",
                 "text_en", "who", "note")


def alerts_queries() -> dict[str, str]:
    alerts = schema.source(schema.ALERTS, schema.RP_FOREVER)
    cond = f"{ENTERPRISE} AND $timeFilter"
    cols = ", ".join(q(c) for c in ALERT_COLUMNS)
    return {
        "changes": f"SELECT {cols} FROM {alerts} WHERE {cond} ORDER BY time DESC",
        "raised": (f"SELECT COUNT({q('raised_ns')}) AS {q('raised')} FROM {alerts} WHERE "
                   f"{cond} AND {schema.where_tags([('state', 'open')])}"),
        "by_state": (f"SELECT COUNT({q('raised_ns')}) AS {q('changes')} FROM {alerts} WHERE "
                     f"{cond} GROUP BY {q('state')}"),
    }


def alerts_review(uid: str, timezone: str = "browser") -> gd.Dashboard:
    qs = alerts_queries()
    return (
        _board("tingbao-alerts", "听保 告警复核 · tingbao alerts review",
               "告警的每次状态变化 / every alert state change", timezone, "now-7d", "30s")
        .with_variable(_enterprise_var(uid, schema.ALERTS, schema.RP_FOREVER))
        .with_panel(
            stat.Panel().title("新告警 · alerts raised").height(5).span(8)
            .description("时间范围内新开的告警数 / alerts opened in the time range")
            .with_target(_target(uid, "A", qs["raised"]))
            .reduce_options(gc.ReduceDataOptions().calcs(["sum"])))
        .with_panel(
            stat.Panel().title("状态变化 · changes by state").height(5).span(16)
            .description("open / acknowledged / resolved 的次数 / state changes by state")
            .with_target(_target(uid, "A", qs["by_state"], alias="$tag_state"))
            .reduce_options(gc.ReduceDataOptions().calcs(["sum"])))
        .with_panel(
            table.Panel().title("告警状态变化 · alert state changes").height(14).span(24)
            .description("每行一次状态变化（新开、确认、解决），含中英文说明、处理人与备注；"
                         "换行存为 \\n / one row per state change (open, acknowledged, "
                         "resolved) with the Chinese and English text, who and the note; line "
                         "breaks are stored as \\n")
            .with_target(_target(uid, "A", qs["changes"], table_format=True))
            .filterable(True))
    )


# ------------------------------------------------------------------------------- exposure
def exposure_queries(profile_id: str) -> dict[str, str]:
    exp = schema.source(schema.EXPOSURE, schema.RP_FOREVER)
    base = f"{ENTERPRISE} AND {schema.where_tags([('profile', profile_id)])}"
    post = f"{base} AND {schema.where_tags([('kind', 'post')])} AND $timeFilter"
    job = f"{base} AND {schema.where_tags([('kind', 'job')])} AND $timeFilter"
    cols = ", ".join(q(c) for c in ("kind", "meter", "channel", "job", "date", "lex_8h",
                                     "u_db", "grade", "flags"))
    return {
        "post_lex": f"SELECT {q('lex_8h')} FROM {exp} WHERE {post} GROUP BY {BY_POST}",
        "job_lex": f"SELECT {q('lex_8h')} FROM {exp} WHERE {job} GROUP BY {q('job')}",
        "grades": f"SELECT {cols} FROM {exp} WHERE {base} AND $timeFilter",
    }


def enterprise_exposure(uid: str, prof: Profile, timezone: str = "browser") -> gd.Dashboard:
    qs = exposure_queries(prof.id)
    limit = _thresholds(limit_thresholds(prof))
    line = gc.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)

    def lex_panel(title: str, query: str, alias: str) -> timeseries.Panel:
        return (timeseries.Panel().title(title).unit("dB").decimals(1).height(10).span(24)
                .description(f"每班的 LEX,8h (dB(A), {prof.id})，红线为限值 "
                             f"{prof.lex_limit_db:g} dB(A) / LEX,8h of each shift, the red "
                             f"line the limit")
                .with_target(_target(uid, "A", query, alias=alias))
                .thresholds(limit).thresholds_style(line).show_points(
                    cm.VisibilityMode.ALWAYS).draw_style(cm.GraphDrawStyle.LINE))

    return (
        _board("tingbao-exposure", "听保 企业暴露 · tingbao enterprise exposure",
               "岗位与工种的 LEX,8h 与分级 / LEX,8h and grades per post and job", timezone,
               "now-30d")
        .with_variable(_enterprise_var(uid, schema.EXPOSURE, schema.RP_FOREVER))
        .with_panel(lex_panel("岗位 LEX,8h · per post", qs["post_lex"],
                              "$tag_meter/$tag_channel"))
        .with_panel(lex_panel("工种 LEX,8h · per job", qs["job_lex"], "$tag_job"))
        .with_panel(
            table.Panel().title("分级 · grades").unit("dB").decimals(1).height(12).span(24)
            .description("GBZ/T 229.4-2012 分级（0 为未达 I 级）与扩展不确定度 U / "
                         "grades (0: below grade I) and the expanded uncertainty U")
            .with_target(_target(uid, "A", qs["grades"], table_format=True))
            .thresholds(_thresholds(grade_thresholds(prof))).filterable(True))
    )


# ----------------------------------------------------------------------- pilot evaluation
def pilot_queries(profile_id: str, limit_db: float,
                  groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Counts of post-days (all, and with LEX,8h ≥ the limit) per enterprise, and per group
    of enterprises (``{group: [enterprise ids]}``)."""
    exp = schema.source(schema.EXPOSURE, schema.RP_FOREVER)
    base = (f"{schema.where_tags([('profile', profile_id), ('kind', 'post')])} "
            f"AND $timeFilter")
    over = f"{q('lex_8h')} >= {_plain(limit_db)}"
    out = {
        "all_by_enterprise": (f"SELECT COUNT({q('lex_8h')}) AS {q('post_days')} FROM {exp} "
                              f"WHERE {base} GROUP BY {q('enterprise')}"),
        "over_by_enterprise": (f"SELECT COUNT({q('lex_8h')}) AS {q('over_limit')} FROM {exp}"
                               f" WHERE {base} AND {over} GROUP BY {q('enterprise')}"),
    }
    for g, ids in groups.items():
        scope = schema.where_any("enterprise", ids)
        out[f"all_{g}"] = (f"SELECT COUNT({q('lex_8h')}) AS {q('post_days')} FROM {exp} "
                           f"WHERE {base} AND {scope}")
        out[f"over_{g}"] = (f"SELECT COUNT({q('lex_8h')}) AS {q('over_limit')} FROM {exp} "
                            f"WHERE {base} AND {over} AND {scope}")
    return out


def _merge() -> list[dm.DataTransformerConfig]:
    """Grafana's merge: the panel's query results joined into one table."""
    return [dm.DataTransformerConfig(id_val="merge", options={})]


def _ratio_pct_transform(num: str, den: str, alias: str) -> list[dm.DataTransformerConfig]:
    """Merge the panel's results and add the column ``alias`` = ``num`` / ``den`` × 100 (a
    per cent, from two count columns)."""
    return [
        *_merge(),
        dm.DataTransformerConfig(id_val="calculateField", options={
            "mode": "binary", "alias": alias,
            "binary": {"left": num, "operator": "/", "right": den},
            "replaceFields": False}),
        dm.DataTransformerConfig(id_val="calculateField", options={
            "mode": "binary", "alias": alias,
            "binary": {"left": alias, "operator": "*", "right": "100"},
            "replaceFields": False}),
    ]


def _share_transform() -> list[dm.DataTransformerConfig]:
    """Join A (post-days) and B (over the limit) and add over_limit / post_days × 100."""
    return _ratio_pct_transform("over_limit", "post_days", "share_pct")


RATE_COLUMNS = ("rate", "lo95", "hi95", "lower95", "milestone", "met", "n", "x", "clusters",
                "method", "deff", "icc")
"""Fields of a ``wearing_rate`` point the rate tables show (% for the rates and bounds)."""
YEARLY = f"{q('period')} =~ /^[0-9]{{4}}$/"
"""Periods that are whole years (``2025``), not quarters or months."""
SCREENING_COUNTS = (
    ("suspected", f"{q('s')} = true"),
    ("mild", f"{q('s')} = true AND {q('g')} = 'mild'"),
    ("moderate", f"{q('s')} = true AND {q('g')} = 'moderate'"),
    ("severe", f"{q('s')} = true AND {q('g')} = 'severe'"),
    ("susceptible", f"{q('ns')} = true"),
    ("sts", f"({q('sl')} = true OR {q('sr')} = true)"),
    ("sts_age", f"({q('sal')} = true OR {q('sar')} = true)"),
    ("overdue", f"{q('od')} = true"),
)
"""(column, condition on each worker's latest screening result): the screening counts."""


def pilot_protection_queries() -> dict[str, str]:
    """The InfluxQL of the wearing-rate, difference-in-differences, screening and fit-test
    panels of the pilot evaluation (measurements ``wearing_rate``, ``pilot_did``,
    ``audiograms``, ``screening``, ``fit_tests`` in RP ``forever``). Rates, bounds and
    milestones are in %, the DiD in percentage points; screening counts are of workers by
    each one's latest result in the time range (a worker examined twice counts once), the
    audiograms are counted as exams."""
    rate = schema.source(schema.WEARING_RATE, schema.RP_FOREVER)
    did = schema.source(schema.PILOT_DID, schema.RP_FOREVER)
    aud = schema.source(schema.AUDIOGRAMS, schema.RP_FOREVER)
    scr = schema.source(schema.SCREENING, schema.RP_FOREVER)
    fit = schema.source(schema.FIT_TESTS, schema.RP_FOREVER)
    cols = ", ".join(q(c) for c in RATE_COLUMNS)
    by_rate = ", ".join(q(t) for t in schema.WEARING_RATE_TAGS)
    enterprise = schema.where_tags([("scope", "enterprise")])
    not_enterprise = f"{q('scope')} != 'enterprise'"
    groups = schema.where_tags([("scope", "group")])
    observed = schema.where_tags([("source", "observed")])
    by_ent = f"GROUP BY {q('enterprise')}"
    latest = (f"SELECT LAST({q('suspected')}) AS {q('s')}, LAST({q('grade')}) AS {q('g')}, "
              f"LAST({q('susceptible')}) AS {q('ns')}, LAST({q('sts_left')}) AS {q('sl')}, "
              f"LAST({q('sts_right')}) AS {q('sr')}, LAST({q('sts_age_left')}) AS {q('sal')}, "
              f"LAST({q('sts_age_right')}) AS {q('sar')}, LAST({q('overdue')}) AS {q('od')} "
              f"FROM {scr} WHERE $timeFilter GROUP BY {q('enterprise')}, {q('worker')}")
    out = {
        "rates_groups": (f"SELECT {cols} FROM {rate} WHERE {not_enterprise} AND $timeFilter "
                         f"GROUP BY {by_rate}"),
        "rates_enterprises": (f"SELECT {cols} FROM {rate} WHERE {enterprise} AND $timeFilter "
                              f"GROUP BY {by_rate}"),
        "rate_series": (f"SELECT {q('rate')} AS {q('rate')}, {q('lo95')} AS {q('lo95')}, "
                        f"{q('hi95')} AS {q('hi95')} FROM {rate} WHERE {groups} AND {YEARLY} "
                        f"AND $timeFilter GROUP BY {q('key')}, {q('source')}"),
        "lower_latest": (f"SELECT LAST({q('lower95')}) AS {q('lower95')} FROM {rate} WHERE "
                         f"{not_enterprise} AND {observed} AND {YEARLY} AND $timeFilter "
                         f"GROUP BY {q('scope')}, {q('key')}"),
        "did_stat": (f"SELECT LAST({q('did_pp')}) AS {q('did_pp')}, LAST({q('lo_pp')}) AS "
                     f"{q('lo_pp')}, LAST({q('hi_pp')}) AS {q('hi_pp')} FROM {did} WHERE "
                     "$timeFilter"),
        "did_table": (f"SELECT * FROM {did} WHERE $timeFilter GROUP BY "
                      + ", ".join(q(t) for t in schema.PILOT_DID_TAGS)),
        "screen_audiograms": (f"SELECT COUNT({q('age')}) AS {q('audiograms')} FROM {aud} "
                              f"WHERE $timeFilter {by_ent}"),
        "fit_tests": (f"SELECT COUNT({q('passed')}) AS {q('tests')} FROM {fit} WHERE "
                      f"$timeFilter {by_ent}"),
        "fit_passed": (f"SELECT COUNT({q('passed')}) AS {q('passed')} FROM {fit} WHERE "
                       f"{q('passed')} = true AND $timeFilter {by_ent}"),
    }
    for col, cond in SCREENING_COUNTS:
        out[f"screen_{col}"] = (f"SELECT COUNT({q('s')}) AS {q(col)} FROM ({latest}) WHERE "
                                f"{cond} {by_ent}")
    return out


def milestone_thresholds(milestones_pct: Mapping[int, float], baseline_pct: float
                         ) -> list[tuple[float | None, str]]:
    """Red below the baseline, grey from it (53.7 %, 2020), then orange, yellow … green at
    each milestone (65/70/80 %): the lines a rate chart draws."""
    ms = sorted(set(milestones_pct.values()))
    colours = ["orange", "yellow", "green"]
    colours = ["#EAB839"] * max(0, len(ms) - len(colours)) + colours
    steps: list[tuple[float | None, str]] = [(None, "red"), (baseline_pct, "#8e8e8e")]
    return steps + [(m, colours[len(colours) - len(ms) + i]) for i, m in enumerate(ms)]


def pilot_evaluation(uid: str, prof: Profile, groups: Mapping[str, Sequence[str]] | None = None,
                     timezone: str = "browser",
                     milestones_pct: Mapping[int, float] | None = None) -> gd.Dashboard:
    from tingbao.analysis.pilot_results import BASELINE

    groups = dict(groups or {})
    if milestones_pct is None:
        from tingbao.collector.registry.site import Deployment

        d = Deployment()
        milestones_pct = {y: 100 * r for y, r in zip(d.milestone_years,
                                                      d.wearing_rate_milestones, strict=True)}
    qs = pilot_queries(prof.id, prof.lex_limit_db, groups)
    pq = pilot_protection_queries()
    steps = _thresholds(milestone_thresholds(milestones_pct, BASELINE.value_pct))
    ms_text = ", ".join(f"{y}: {m:g} %" for y, m in sorted(milestones_pct.items()))
    rule = ("里程碑以单侧 95 % 下限判定（met = lower95 ≥ milestone）；仅点估计达到为“尚未证实” / "
            "a milestone is met only when the one-sided 95 % lower bound reaches it; the "
            "point estimate alone is “not yet shown”")
    desc = (f"LEX,8h ≥ {prof.lex_limit_db:g} dB(A) ({prof.id}) 的岗位-日占比：A 为岗位-日数，"
            f"B 为超限数，share_pct = B / A × 100 / share of post-days at or above the limit: "
            f"A counts post-days, B those over it, share_pct = B / A × 100")
    rate_table_desc = (f"佩戴率、95 % 区间、单侧 95 % 下限与当年里程碑（%），"
                       f"n 为人数（edge 为人日），x 为正确佩戴数，clusters 为企业数，"
                       f"method 为区间方法 / rate, 95 % interval, one-sided 95 % lower "
                       f"bound and the year's milestone (%), n "
                       f"workers (worker-days for source edge), x correct, clusters enterprises,"
                       f" method of the interval. {rule}")
    line = gc.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)
    screening = (
        table.Panel().title("听力筛查（按企业）· hearing screening per enterprise")
        .height(8).span(24)
        .description("audiograms 为电测听次数；其余为人数，按每人时间范围内最新一次结果："
                     "疑似职业性噪声聋（GBZ 49）及分级、噪声易感者（GBZ 188）、OSHA 标准阈移"
                     "（sts_age：年龄校正）、体检逾期 / audiograms counts exams; the rest "
                     "count workers by each one's latest result in the range: suspected "
                     "occupational noise deafness (GBZ 49) by grade, noise-susceptible "
                     "(GBZ 188), OSHA STS (sts_age: age-corrected), exams overdue")
        .with_target(_target(uid, "A", pq["screen_audiograms"], table_format=True))
        .transformations(_merge()))
    for i, (col, _) in enumerate(SCREENING_COUNTS):
        screening = screening.with_target(_target(uid, chr(ord("B") + i), pq[f"screen_{col}"],
                                                  table_format=True))
    b = (_board("tingbao-pilot", "听保 试点评估 · tingbao pilot evaluation",
                "护听器正确佩戴率、试点与对照、听力筛查 / correct-wearing rate, pilot vs "
                "comparison, hearing screening", timezone, "now-5y")
         .with_panel(
             timeseries.Panel().title("佩戴率（分组，按年）· wearing rate per group, yearly")
             .unit("percent").decimals(1).min(0).max(100).height(10).span(16)
             .description(f"每组每年的佩戴率及 95 % 区间（lo95/hi95）；阈值线：基线 "
                          f"{BASELINE.value_pct:g} %（{BASELINE.year}），里程碑 {ms_text} / "
                          f"rate of each group per year with its 95 % interval; threshold "
                          f"lines: the {BASELINE.year} baseline and the milestones. {rule}")
             .with_target(_target(uid, "A", pq["rate_series"], alias="$tag_key $tag_source $col"))
             .thresholds(steps).thresholds_style(line)
             .show_points(cm.VisibilityMode.ALWAYS).draw_style(cm.GraphDrawStyle.LINE))
         .with_panel(
             stat.Panel().title("单侧 95 % 下限 vs 里程碑 · lower bound vs milestones")
             .unit("percent").decimals(1).height(10).span(8)
             .description(f"各组最近一年抽查佩戴率的单侧 95 % 下限；颜色为达到的里程碑（{ms_text}）"
                          f" / the one-sided 95 % lower bound of each group's latest yearly "
                          f"spot-check rate, coloured by the milestone it reaches")
             .with_target(_target(uid, "A", pq["lower_latest"], alias="$tag_key"))
             .thresholds(steps).color_scheme(_by_thresholds())
             .reduce_options(gc.ReduceDataOptions().calcs(["lastNotNull"]))
             .color_mode(cm.BigValueColorMode.BACKGROUND))
         .with_panel(
             table.Panel().title("佩戴率（全部/组/行业）· rates per group and period")
             .height(10).span(24).description(rate_table_desc)
             .with_target(_target(uid, "A", pq["rates_groups"], table_format=True))
             .thresholds(steps).filterable(True))
         .with_panel(
             table.Panel().title("佩戴率（企业）· rates per enterprise and period")
             .height(10).span(24).description(rate_table_desc)
             .with_target(_target(uid, "A", pq["rates_enterprises"], table_format=True))
             .thresholds(steps).filterable(True))
         .with_panel(
             stat.Panel().title("差异中的差异 · difference in differences").unit("suffix: pp")
             .decimals(1).height(6).span(8)
             .description("试点与对照的差异中的差异（百分点）及其 95 % 区间 / pilot minus "
                          "comparison change, percentage points, with its 95 % interval")
             .with_target(_target(uid, "A", pq["did_stat"]))
             .reduce_options(gc.ReduceDataOptions().calcs(["lastNotNull"]).fields("/.*/")))
         .with_panel(
             table.Panel().title("差异中的差异明细 · DiD with its cells").height(6).span(16)
             .description("基线与随访期、DiD 与区间（百分点）、p、方法、四格佩戴率（%）、企业数 / "
                          "baseline and follow-up, DiD and interval (pp), p, method, the four "
                          "cell rates (%), enterprises")
             .with_target(_target(uid, "A", pq["did_table"], table_format=True)))
         .with_panel(screening)
         .with_panel(
             table.Panel().title("个体适合性检验通过率 · fit-test pass rate per enterprise")
             .height(6).span(24)
             .description("A 为检验次数，B 为通过数，pass_pct = B / A × 100 / A counts fit "
                          "tests, B those passed, pass_pct = B / A × 100")
             .with_target(_target(uid, "A", pq["fit_tests"], table_format=True))
             .with_target(_target(uid, "B", pq["fit_passed"], table_format=True))
             .transformations(_ratio_pct_transform("passed", "tests", "pass_pct")))
         .with_panel(
             table.Panel().title("超限岗位占比（按企业）· share over the limit, per enterprise")
             .height(9).span(24).description(desc)
             .with_target(_target(uid, "A", qs["all_by_enterprise"], table_format=True))
             .with_target(_target(uid, "B", qs["over_by_enterprise"], table_format=True))
             .transformations(_share_transform())))
    for g in groups:
        b = b.with_panel(
            table.Panel().title(f"超限岗位占比 · share over the limit: {g}").height(5)
            .span(12).description(desc)
            .with_target(_target(uid, "A", qs[f"all_{g}"], table_format=True))
            .with_target(_target(uid, "B", qs[f"over_{g}"], table_format=True))
            .transformations(_share_transform()))
    return b


# ------------------------------------------------------------------------------ all of them
def build_all(datasource_uid: str = DEFAULT_DATASOURCE_UID, *, reg=None,
              profile_id: str | None = None) -> list[dm.Dashboard]:
    """The four dashboards (models, in :data:`UIDS` order) for the data source
    ``datasource_uid``. ``reg`` (a loaded site registry, optional) gives the profile in force,
    the time zone and the enterprise groups of the pilot evaluation; without it the profile
    is ``profile_id`` (CN-GBZ by default) and there are no group panels."""
    milestones_pct = None
    if reg is not None:
        from tingbao.analysis.pilot_results import milestones

        profile_id = profile_id or reg.regulation.profile
        tz = reg.deployment.timezone
        groups: dict[str, list[str]] = {}
        for e in reg.enterprises:
            groups.setdefault(e.group, []).append(e.id)
        milestones_pct = milestones(reg)
    else:
        tz, groups = "browser", {}
    prof = profile(profile_id or DEFAULT_PROFILE)
    boards = [live_floor(datasource_uid, prof, tz), alerts_review(datasource_uid, tz),
              enterprise_exposure(datasource_uid, prof, tz),
              pilot_evaluation(datasource_uid, prof, groups, tz, milestones_pct)]
    return [b.build() for b in boards]


def dashboard_json(board: dm.Dashboard) -> dict:
    """The dashboard as the JSON object Grafana stores (plain dicts and lists)."""
    return json.loads(json.dumps(board, cls=JSONEncoder))
