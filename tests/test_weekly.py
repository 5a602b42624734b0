"""LEX,W (GBZ 2.2-2007, divisor 5) from the days the ledger closed, on a real InfluxDB: a
6-day week, a 3-day week and a 5-day week, with the arithmetic beside each figure."""

from __future__ import annotations

import json
import math
import tomllib

import pytest
from support.commands import run_tingbao

from tingbao.analysis import ledger
from tingbao.analysis.shifts import shift_window
from tingbao.analysis.weekly import week_dates, week_exposure
from tingbao.collector.registry.site import registry_from_mapping

SITE = """
[deployment]
timezone = "Asia/Shanghai"
[[enterprises]]
id = "six-day"
name_zh = "六天厂"
industry = "building_materials"
group = "comparison"
shift = { start = "07:30", hours = 8.0, days_per_week = 6 }
[[sites]]
id = "kiln"
enterprise = "six-day"
name_zh = "窑炉"
[[meters]]
id = "k1"
enterprise = "six-day"
site = "kiln"
[[meters]]
id = "k2"
enterprise = "six-day"
site = "kiln"
[[enterprises]]
id = "five-day"
name_zh = "五天厂"
industry = "light_industry"
group = "pilot"
shift = { start = "08:00", hours = 8.0 }
[[sites]]
id = "hall"
enterprise = "five-day"
name_zh = "装配车间"
[[meters]]
id = "k3"
enterprise = "five-day"
site = "hall"
"""
YEAR, WEEK = 2026, 45  # 2 to 8 November 2026: inside any retention, long closed


def _close(reader, writer, reg, ent: str, levels: dict[str, list[float]]):
    """Close the week's workdays of ``ent`` with one post record per meter:
    ``levels[meter][i]`` is the LEX,8h of day i (Monday = 0); NaN = no data that day."""
    e = reg.enterprise(ent)
    for i, d in enumerate(week_dates(YEAR, WEEK)):
        if not e.shift.works_on(d):
            continue
        t = shift_window(e, d, "Asia/Shanghai").period.start_ns
        recs = []
        for meter, days in levels.items():
            fields = {"date": d.isoformat(), "coverage": 0.0}
            if i < len(days) and math.isfinite(days[i]):
                fields.update(lex_8h=days[i], coverage=1.0)
            recs.append(ledger.Record({"kind": "post", "enterprise": ent,
                                       "meter": meter, "channel": "0",
                                       "profile": "CN-GBZ"}, fields, t))
        ledger.close_day(reader, writer, ent, d.isoformat(), t, recs)


def test_lex_w_for_six_three_and_five_day_weeks(stack, tmp_path):
    reg = registry_from_mapping(tomllib.loads(SITE))
    reader, writer = stack.influx("reader"), stack.influx("writer")
    nan = math.nan
    _close(reader, writer, reg, "six-day", {   # works Monday to Saturday
        "k1": [85.0] * 6,                      # six days at 85
        "k2": [90.0, 90.0, 90.0, nan, nan, nan],  # data on three of its six workdays
    })
    _close(reader, writer, reg, "five-day", {"k3": [84.0] * 5})  # Monday to Friday
    weeks = {w.subject: w for w in week_exposure(reader, reg, "six-day", YEAR, WEEK)}
    weeks.update({w.subject: w for w in week_exposure(reader, reg, "five-day", YEAR, WEEK)})
    # k1: 10 lg[(1/5)·6·10^8.5] = 85 + 10 lg(6/5) = 85.79 dB(A): a 6-day week, LEX,W applies,
    # grade I although no single day exceeds 85.0
    assert weeks["k1:0"].lex_w == pytest.approx(85 + 10 * math.log10(6 / 5), abs=1e-9)
    assert weeks["k1:0"].applies and weeks["k1:0"].days == 6 and not weeks["k1:0"].missing
    assert weeks["k1:0"].grade.code == "I"
    # k2: 90 + 10 lg(3/5) = 87.78 dB(A) over the three days with data, a lower bound: the
    # other three workdays are listed as missing, not taken as days off
    assert weeks["k2:0"].lex_w == pytest.approx(90 + 10 * math.log10(3 / 5), abs=1e-9)
    assert weeks["k2:0"].applies and weeks["k2:0"].grade.code == "I"
    assert [d.isoweekday() for d in weeks["k2:0"].missing] == [4, 5, 6]
    # k3: a five-day week: LEX,W = 84.0 does not apply; graded by its days (84 → no grade)
    assert weeks["k3:0"].lex_w == pytest.approx(84.0, abs=1e-9)
    assert not weeks["k3:0"].applies and weeks["k3:0"].grade.code == "0"
    assert weeks["k3:0"].worked == 5
    site = tmp_path / "site.toml"
    site.write_text(SITE, encoding="utf-8")
    stack.write_state()
    r = run_tingbao("exposure", "--config", site, "--stack", stack.data_dir, "--week",
                    f"{YEAR}-W{WEEK}", "--format", "json", "--enterprise", "six-day")
    assert r.returncode == 0, r.stderr
    rows = {x["subject"]: x for x in map(json.loads, r.stdout.splitlines())}
    assert rows["k1:0"]["lex_w"] == pytest.approx(85.79, abs=0.005)
    assert rows["k1:0"]["days"] == 6 and rows["k1:0"]["lex_w_applies"] is True
    assert len(rows["k2:0"]["missing"]) == 3 and rows["k2:0"]["workdays"] == 6
    r = run_tingbao("exposure", "--config", site, "--stack", stack.data_dir, "--week",
                    "2026-W99")
    assert r.returncode == 2 and "week" in r.stderr
