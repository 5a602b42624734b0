"""analysis/observations.py and the two commands: bad survey rows rejected one by one with
their row and column while the good rows are kept; duplicates reported; then a simulated pilot
(tests/support/pilot.py) imported from a UTF-8 CSV, an XLSX and a GBK CSV into a real InfluxDB
with ``tingbao observations import``, and ``tingbao wearing-rate --did 2024 2025 --write``
writing WEARING_RATE and PILOT_DID, checked against counts of the simulated arrays."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from support.pilot import (
    SURVEY_HEADER_EN,
    enterprise_ids,
    registry_toml,
    simulate,
    survey_rows,
    write_csv,
    write_xlsx,
)
from support.stack import influx_query

from tingbao.analysis.observations import read_observations
from tingbao.analysis.spreadsheets import TableError
from tingbao.collector import schema
from tingbao.collector.registry import load_registry
from tingbao.edge.cli.main import main

TODAY = dt.date(2026, 3, 1)


@pytest.fixture
def reg(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text(registry_toml(tmp_path / "stack", pilots=2, comparisons=2), "utf-8")
    return load_registry(site)


BAD = [  # row as written, the (column, reason fragment) it must be rejected with
    (["2025-03-04", "pe01", "pe01-ws1", "press-1", "w001", "是", "是", "3M"], None),
    (["2025-03-04", "佛山某厂", "ws", "press-1", "w002", "是", "是", ""],
     ("enterprise", "unknown enterprise '佛山某厂'; one of pe01, pe02, ce01, ce02")),
    (["2026-03-02", "pe01", "ws", "press-1", "w003", "是", "是", ""],
     ("date", "2026-03-02 is in the future (today is 2026-03-01)")),
    (["2025-02-30", "pe01", "ws", "press-1", "w004", "是", "是", ""],
     ("date", "not a date (day is out of range for month)")),
    (["2025-03-04", "pe01", "ws", "press-1", "张三", "是", "是", ""],
     ("worker", "surveys carry pseudonyms, never names")),
    (["2025-03-04", "pe01", "ws", "press-1", "w006", "否", "是", ""],
     ("correct", "worn correctly = yes while wearing = no")),
    (["2025-03-04", "pe01", "ws", "press-1", "w007", "maybe", "否", ""],
     ("wearing", "'maybe' is not yes/no")),
    (["2025-03-04", "pe01", "ws", "press-1", "w008", "Y", "", ""],
     ("correct", "empty while wearing")),
    (["2025-03-04", "模拟企业ce01", "冲压车间", "press-1", "w009", "N", "", ""], None),
    (["2025/3/5", "ce02", "ws 2", "press-1", "w010", "1", "0", ""],
     ("workshop", "is not a valid id")),
    (["2025-03-04", "pe01", "pe01-ws1", "press-1", "w001", "是", "是", "3M"], "dup"),
    (["2025年3月4日", "pe01", "pe01-ws1", "press-1", "w001", "否", "否", ""], "dup-differs"),
]


@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])
def test_bad_rows_rejected_good_rows_kept(tmp_path, reg, encoding):
    path = write_csv(tmp_path / "survey.csv", [r for r, _ in BAD], encoding=encoding,
                     header=SURVEY_HEADER_EN)
    imp = read_observations(path, reg, today=TODAY)
    assert imp.encoding == ("utf-8" if encoding == "utf-8" else "gb18030")
    # rows are numbered as a spreadsheet shows them: header row 1, BAD[i] is row i + 2
    want = {i + 2: exp for i, (_, exp) in enumerate(BAD) if isinstance(exp, tuple)}
    got = {e.row: (e.column, e.reason) for e in imp.errors}
    assert set(got) == set(want) == set(imp.rejected)
    for row, (column, fragment) in want.items():
        assert got[row][0] == column and fragment in got[row][1], (row, got[row])
    # good rows kept: BAD[0] and BAD[8] (名称 → id, 车间 name → the registry site id;
    # correct blank while not wearing → False)
    assert [(o.row, o.enterprise, o.workshop, o.wearing, o.correct) for o in imp.observations
            ] == [(2, "pe01", "pe01-ws1", True, True), (10, "ce01", "ce01-ws1", False, False)]
    # row 12 repeats row 2 exactly, row 13 the same worker/post/date with other answers
    assert [(d.row, d.first_row, d.key[-1]) for d in imp.duplicates] == [
        (12, 2, "2025-03-04"), (13, 2, "differs")]


def test_missing_column_is_one_error(tmp_path, reg):
    p = tmp_path / "s.csv"
    p.write_text("日期,企业,车间,岗位,工人编号,是否佩戴\n2025-03-04,pe01,w,p,w1,是\n", "utf-8")
    with pytest.raises(TableError, match=r"missing column\(s\) correct"):
        read_observations(p, reg, today=TODAY)


def test_simulated_pilot_imported_and_evaluated(stack, tmp_path, capsys):
    stack.write_state()
    pilots = comparisons = 4
    site = tmp_path / "site.toml"
    site.write_text(registry_toml(stack.data_dir, pilots=pilots, comparisons=comparisons),
                    "utf-8")
    sim = simulate(1, pilots=pilots, comparisons=comparisons, workers=30, seed=5)
    rows = survey_rows(sim, 0, (dt.date(2024, 6, 15), dt.date(2025, 6, 15)), comparisons)
    ids = enterprise_ids(pilots, comparisons)
    # three files as offices send them: pilots in UTF-8 CSV, comparisons' baseline in XLSX,
    # comparisons' follow-up in GBK CSV with one bad row appended (a real name)
    pilot_rows = [r for r in rows if r[1].startswith("pe")]
    comp_base = [r for r in rows if r[1].startswith("ce") and r[0].startswith("2024")]
    comp_follow = [r for r in rows if r[1].startswith("ce") and r[0].startswith("2025")]
    files = [write_csv(tmp_path / "pilots.csv", pilot_rows),
             write_xlsx(tmp_path / "comparison-2024.xlsx", comp_base),
             write_csv(tmp_path / "comparison-2025.csv",
                       [*comp_follow, ["2025-06-15", "ce01", "ce01-ws1", "press-1", "李四",
                                       "是", "是", ""]], encoding="gbk")]
    codes = [main(["observations", "import", str(f), "--config", str(site), "--quiet"])
             for f in files]
    out = capsys.readouterr().out
    assert codes == [0, 0, 1]  # the GBK file had a rejected row; its good rows are stored
    assert "(gb18030)" in out and "拒绝 1 行" in out and "column worker" in out
    stored = influx_query(stack, f"SELECT COUNT(correct) FROM "
                                 f"{schema.source(schema.OBSERVATIONS, schema.RP_FOREVER)}")
    assert stored[0]["count"] == len(rows) == 8 * 2 * 30

    assert main(["wearing-rate", "--config", str(site), "--by", "group", "--period", "year",
                 "--did", "2024", "2025", "--write", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # independent counts from the simulated array: x of n per group and year
    worn = sim.worn[0]  # enterprise, period, worker
    for r in result["rates"]:
        ents = slice(0, pilots) if r["key"] == "pilot" else slice(pilots, None)
        t = 0 if r["period"] == "2024" else 1
        assert (r["x"], r["n"]) == (int(worn[ents, t].sum()), worn[ents, t].size)
        assert r["method"] == "gee_bias_reduced" and r["clusters"] == 4
        assert r["milestone_pct"] == {"2024": 70.0, "2025": 80.0}[r["period"]]
        assert r["met"] == (r["lower95_pct"] >= r["milestone_pct"])
    # DiD = difference of the four cell means (saturated OLS), in points
    cell = 100 * worn.mean(axis=2)  # per enterprise and period; equal sizes → group means
    want = ((cell[:pilots, 1].mean() - cell[:pilots, 0].mean())
            - (cell[pilots:, 1].mean() - cell[pilots:, 0].mean()))
    did = result["did"]
    assert did["did_pp"] == pytest.approx(want, abs=1e-9)
    assert did["method"] == "wild_cluster_bootstrap" and did["weights"] == "webb"
    assert did["lo_pp"] < did["did_pp"] < did["hi_pp"]

    rates = influx_query(stack, f"SELECT * FROM "
                                f"{schema.source(schema.WEARING_RATE, schema.RP_FOREVER)}")
    assert {(r["scope"], r["key"], r["period"], r["source"]) for r in rates} == {
        ("group", g, y, "observed") for g in ("pilot", "comparison") for y in ("2024", "2025")}
    by_key = {(r["key"], r["period"]): r for r in result["rates"]}
    for r in rates:
        j = by_key[(r["key"], r["period"])]
        assert (r["n"], r["x"], r["method"], r["met"]) == (j["n"], j["x"], j["method"],
                                                           j["met"])
        assert r["rate"] == pytest.approx(j["rate_pct"], abs=0.01)
        assert r["lower95"] == pytest.approx(j["lower95_pct"], abs=0.01)
    # a year's point is at its first local midnight: 2025-01-01 00:00 +08:00
    assert max(r["time"] for r in rates) == "2024-12-31T16:00:00Z"
    (d,) = influx_query(stack, f"SELECT * FROM "
                               f"{schema.source(schema.PILOT_DID, schema.RP_FOREVER)}")
    assert (d["baseline"], d["followup"], d["method"]) == ("2024", "2025",
                                                          "wild_cluster_bootstrap")
    assert d["did_pp"] == pytest.approx(want, abs=1e-9)
    assert (d["enterprises_pilot"], d["enterprises_comparison"], d["n"]) == (4, 4, 480)
    assert np.isclose(d["pilot_follow"], 100 * worn[:pilots, 1].mean())
    assert set(ids) == {e.id for e in load_registry(site).enterprises}

    # the analyzer's daily step (pilot_evaluation.daily through Analyzer.tick) rewrites every
    # scope by year and quarter without anyone running a command; every survey is dated
    # 15 June, so a year's counts are its Q2's, from the simulated array as above
    from tingbao.analysis.alert_store import AlertStore
    from tingbao.analysis.analyzer import Analyzer

    reg = load_registry(site)
    now = 1_764_633_600_000_000_000  # 2025-12-02T00:00Z, 08:00 in Asia/Shanghai
    an = Analyzer(reg, stack.influx("reader"), stack.influx("writer"),
                  AlertStore(stack.influx("reader"), stack.influx("writer"), None))
    # (08:00 is also where the default shift of these enterprises starts: the in-shift rules
    # meet an empty elapsed period and must judge nothing rather than fail)
    assert an.tick(now)["failed"] == [] and an.evaluated_on == dt.date(2025, 12, 2)
    rates = influx_query(stack, f"SELECT * FROM "
                                f"{schema.source(schema.WEARING_RATE, schema.RP_FOREVER)}")
    got = {(r["scope"], r["key"], r["period"]): (r["x"], r["n"]) for r in rates}
    assert {k[0] for k in got} == {"enterprise", "industry", "group", "all"}
    for y, t in (("2024", 0), ("2025", 1)):
        for g, ents in (("pilot", slice(0, pilots)), ("comparison", slice(pilots, None))):
            want = (int(worn[ents, t].sum()), worn[ents, t].size)
            assert got[("group", g, y)] == got[("group", g, f"{y}-Q2")] == want
        assert got[("all", "all", f"{y}-Q2")] == (int(worn[:, t].sum()), worn[:, t].size)
        for i, e in enumerate(ids):
            assert got[("enterprise", e, y)] == (int(worn[i, t].sum()), worn[i, t].size)
    assert not any(k[2].endswith(("Q1", "Q3", "Q4")) for k in got)
    # the DiD written by the command is left as it was: the daily step has no DiD
    assert len(influx_query(stack, f"SELECT * FROM "
                                   f"{schema.source(schema.PILOT_DID, schema.RP_FOREVER)}")) == 1
