"""The Grafana dashboards of tingbao, built with grafana-foundation-sdk (Grafana 11.6 schema)
over the InfluxDB data source with raw InfluxQL (:mod:`.query`): the same views as the built-in
live page (issue 13).

* ``tingbao-live-floor`` — latest LAeq,1s / LAFmax / LCpeak per meter (``levels``) and the
  LAeq per meter over time, energy-correct per ``$__interval``;
* ``tingbao-alerts`` — the ``alerts`` measurement: one row per state change;
* ``tingbao-exposure`` — LEX,8h per post and job over the days (``exposure``, the profile in
  force), the limit line and the GBZ/T 229.4-2012 grades;
* ``tingbao-pilot`` — the exposure context of the pilot evaluation (share of post-days with
  LEX,8h at or above the limit, per enterprise and per group); the wearing-rate and
  screening panels arrive with the hearing-protection issue.

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
from grafana_foundation_sdk.builders import stat, table, text, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import text as tm

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


def _share_transform() -> list[dm.DataTransformerConfig]:
    """Join A (post-days) and B (over the limit) and add over_limit / post_days × 100."""
    return [
        dm.DataTransformerConfig(id_val="merge", options={}),
        dm.DataTransformerConfig(id_val="calculateField", options={
            "mode": "binary", "alias": "share_pct",
            "binary": {"left": "over_limit", "operator": "/", "right": "post_days"},
            "replaceFields": False}),
        dm.DataTransformerConfig(id_val="calculateField", options={
            "mode": "binary", "alias": "share_pct",
            "binary": {"left": "share_pct", "operator": "*", "right": "100"},
            "replaceFields": False}),
    ]


PROTECTION_NOTE = (
    "### 佩戴率与筛查 · Wearing rate and screening\n\n"
    "护听器佩戴率与听力筛查的面板随“听力防护”议题一起提供；目前本看板只显示暴露背景。\n\n"
    "The hearing-protector wearing-rate and screening panels arrive with the protection "
    "issue; until then this dashboard shows the exposure context.")


def pilot_evaluation(uid: str, prof: Profile, groups: Mapping[str, Sequence[str]] | None = None,
                     timezone: str = "browser") -> gd.Dashboard:
    groups = dict(groups or {})
    qs = pilot_queries(prof.id, prof.lex_limit_db, groups)
    desc = (f"LEX,8h ≥ {prof.lex_limit_db:g} dB(A) ({prof.id}) 的岗位-日占比：A 为岗位-日数，"
            f"B 为超限数，share_pct = B / A × 100 / share of post-days at or above the limit: "
            f"A counts post-days, B those over it, share_pct = B / A × 100")
    b = (_board("tingbao-pilot", "听保 试点评估 · tingbao pilot evaluation",
                "试点与对照企业的暴露背景 / exposure context of pilot and comparison "
                "enterprises", timezone, "now-90d")
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
    return b.with_panel(text.Panel().title("佩戴率与筛查 · wearing rate and screening")
                        .height(5).span(24).mode(tm.TextMode.MARKDOWN)
                        .content(PROTECTION_NOTE))


# ------------------------------------------------------------------------------ all of them
def build_all(datasource_uid: str = DEFAULT_DATASOURCE_UID, *, reg=None,
              profile_id: str | None = None) -> list[dm.Dashboard]:
    """The four dashboards (models, in :data:`UIDS` order) for the data source
    ``datasource_uid``. ``reg`` (a loaded site registry, optional) gives the profile in force,
    the time zone and the enterprise groups of the pilot evaluation; without it the profile
    is ``profile_id`` (CN-GBZ by default) and there are no group panels."""
    if reg is not None:
        profile_id = profile_id or reg.regulation.profile
        tz = reg.deployment.timezone
        groups: dict[str, list[str]] = {}
        for e in reg.enterprises:
            groups.setdefault(e.group, []).append(e.id)
    else:
        tz, groups = "browser", {}
    prof = profile(profile_id or DEFAULT_PROFILE)
    boards = [live_floor(datasource_uid, prof, tz), alerts_review(datasource_uid, tz),
              enterprise_exposure(datasource_uid, prof, tz),
              pilot_evaluation(datasource_uid, prof, groups, tz)]
    return [b.build() for b in boards]


def dashboard_json(board: dm.Dashboard) -> dict:
    """The dashboard as the JSON object Grafana stores (plain dicts and lists)."""
    return json.loads(json.dumps(board, cls=JSONEncoder))
