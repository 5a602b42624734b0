"""Audiogram import and the screening service.

Pure: bad audiogram files (thresholds outside −10…120 dB HL, ages under 16 or absurd, bad
dates and sexes, missing columns, GBK and UTF-8 (with and without BOM) CSVs, XLSX, duplicated
rows): each bad row rejected with its row, column and reason, the good rows kept. On the real
stack (InfluxDB + Mosquitto): audiograms and job exposure results stored, the analysis
service's daily hook screens them, writes ``screening`` points and raises the alerts of a
suspected occupational deafness, a noise-susceptible worker, an STS and an overdue exam
(read back from InfluxDB); a second run raises nothing new; the two commands as child
processes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path

import openpyxl
import pytest
from support.commands import run_tingbao

from tingbao.analysis.alert_store import AlertStore
from tingbao.analysis.analyzer import Analyzer
from tingbao.analysis.audiograms import Audiogram, parse_audiograms, write_audiograms
from tingbao.analysis.screening import screen
from tingbao.analysis.spreadsheets import TableError
from tingbao.collector import schema
from tingbao.collector.lineprotocol import line
from tingbao.collector.registry import load_registry

S = 1_000_000_000
TODAY = dt.date(2026, 11, 29)
EN_HEADER = ("worker,enterprise,date,age,sex,job,noise_years,baseline,"
             "l_500,l_1000,l_2000,l_3000,l_4000,l_6000,r_500,r_1000,r_2000,r_3000,r_4000,r_6000")
ZH_HEADER = ("工号,企业,检查日期,年龄,性别,工种,接噪工龄,基线,左耳500Hz,左耳1000Hz,左耳2000Hz,"
             "左耳3000Hz,左耳4000Hz,左耳6000Hz,右耳500Hz,右耳1000Hz,右耳2000Hz,右耳3000Hz,"
             "右耳4000Hz,右耳6000Hz")
OK = "10,10,15,20,25,20,10,10,10,20,30,25"

BAD_ROWS = [  # (row text, the row's errors as (column, words in the reason))
    (f"w-01,sc-a,2025-03-01,30,男,press,5,否,{OK}", []),
    (f"w-02,sc-a,2025/03/02,15,女,,,,{OK}", [("age", "under 16")]),
    (f"w-03,sc-a,2025-03-03,150,M,,,,{OK}", [("age", "not plausible")]),
    ("w-04,sc-a,2025-03-04,40,F,,,,10,10,15,20,25,20,10,10,10,20,130,25",
     [("r_4000", "outside -10…120")]),
    ("w-05,sc-a,2025-03-05,40,F,,,,-15,10,15,20,25,20,10,10,10,20,30,",
     [("l_500", "outside -10…120"), ("r_6000", "missing")]),
    (f"w-06,sc-a,2025-13-40,40,X,,,,{OK}", [("date", "not a date"), ("sex", "not a sex")]),
    (f"w-07,sc-a,2027-01-01,40,F,,,,{OK}", [("date", "in the future")]),
    (f"w-08,sc-zzz,2025-03-01,40,F,,,,{OK}", [("enterprise", "unknown enterprise")]),
    (f"w 09,sc-a,2025-03-01,40,F,,50,,{OK}", [("worker", ""), ("noise_years", "not possible")]),
    (f"w-01,sc-a,2025-03-01,30,男,press,5,否,{OK}", []),   # duplicate of row 2
    (f"w-10,sc-a,20250310,45,female,press,12,是,{OK}", []),
]


def _check_import(result, first_row: int = 2):
    """Rows are numbered as a spreadsheet shows them: the header is row 1."""
    good = {a.worker for a in result.good}
    assert good == {"w-01", "w-10"}, [str(e) for e in result.errors]
    for i, (_, expected) in enumerate(BAD_ROWS):
        row = first_row + i
        errs = [e for e in result.errors if e.row == row]
        assert len(errs) == len(expected), (row, [str(e) for e in errs])
        for (col, words), e in zip(expected, errs, strict=True):
            assert e.column == col and words in e.reason, str(e)
    (dup,) = result.duplicates
    assert (dup.row, dup.first_row) == (first_row + 9, first_row)
    w10 = next(a for a in result.good if a.worker == "w-10")
    assert (w10.date, w10.sex, w10.baseline, w10.noise_years) == (dt.date(2025, 3, 10), "F",
                                                                  True, 12.0)
    assert w10.right[4] == 30.0 and w10.left[0] == 10.0


@pytest.mark.parametrize("header, encoding, female", [
    (EN_HEADER, "utf-8", "女"), (ZH_HEADER, "utf-8-sig", "女"), (ZH_HEADER, "gbk", "F"),
    (ZH_HEADER, "gbk", "女")])
def test_import_bad_rows_rejected_good_kept(tmp_path, header, encoding, female):
    path = tmp_path / "exams.csv"
    rows = [r.replace("女", female) for r, _ in BAD_ROWS]
    path.write_bytes(("\n".join([header] + rows) + "\n").encode(encoding))
    result = parse_audiograms(path, enterprises=["sc-a"], today=TODAY)
    assert result.table.encoding == {"utf-8": "utf-8", "gbk": "gb18030",
                                     "utf-8-sig": "utf-8-sig"}[encoding]
    _check_import(result)


def test_import_xlsx(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(ZH_HEADER.split(","))
    for r, _ in BAD_ROWS:
        ws.append([c for c in r.split(",")])
    path = tmp_path / "exams.xlsx"
    wb.save(path)
    _check_import(parse_audiograms(path, enterprises=["sc-a"], today=TODAY))


def test_import_missing_columns(tmp_path):
    path = tmp_path / "exams.csv"
    header = EN_HEADER.replace(",r_6000", "").replace("age,", "")
    path.write_text(header + "\n", encoding="utf-8")
    with pytest.raises(TableError, match="missing column.*age.*r_6000"):
        parse_audiograms(path, enterprises=["sc-a"], today=TODAY)


def test_screen_pure_baseline_and_lex():
    # baseline = the first audiogram when none is flagged; a job without stored LEX has no
    # interval and is never overdue; the baseline itself has no STS
    a1 = Audiogram("e", "w", dt.date(2020, 1, 1), 30, "M", (10,) * 6, (10,) * 6, job="j")
    a2 = Audiogram("e", "w", dt.date(2021, 1, 1), 31, "M", (10, 10, 25, 25, 25, 10),
                   (10,) * 6, job="j")
    r1, r2 = screen([a2, a1], {}, TODAY)
    assert r1.sts is None and r2.baseline is a1 and r2.sts.sts == (True, False)
    assert r2.interval_years is None and not r2.overdue and r2.latest and not r1.latest
    # with LEX 85 → yearly: due 2022-01-01, overdue on TODAY
    (_, r2) = screen([a1, a2], {("e", "j"): (85.0, 10)}, TODAY)
    assert r2.interval_years == 1 and r2.next_due == dt.date(2022, 1, 1) and r2.overdue


# ------------------------------------------------------------------------ on the stack
ENT = "sc-stack"
NOW = int(dt.datetime(2026, 11, 28, 18, 0, tzinfo=dt.UTC).timestamp()) * S
"""2026-11-29 02:00 in Asia/Shanghai, a Sunday: no shift runs or is due; today = 2026-11-29."""


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory) -> Path:
    stack.write_state()
    path = tmp_path_factory.mktemp("site") / "site.toml"
    path.write_text(f'[deployment]\ntimezone = "Asia/Shanghai"\n[stack]\ndata_dir = '
                    f'"{stack.data_dir}"\n[[enterprises]]\nid = "{ENT}"\nname_zh = "筛查企业"\n'
                    f'industry = "machinery"\ngroup = "pilot"\n', encoding="utf-8")
    return path


def _ear(hf: float, low: float = 10.0, k4: float | None = None) -> tuple:
    return (low, low, low, hf, hf if k4 is None else k4, hf)


@pytest.fixture(scope="module")
def ledger(stack, site) -> None:
    """The jobs' daily LEX,8h in the ledger, which both the service and the commands read:
    press 88 and 90 dB(A) → energy mean 10 lg((10^8.8 + 10^9.0)/2) = 89.12; assembly 82."""
    reg = load_registry(site)
    day = int(dt.datetime(2026, 11, 2, 0, 0, tzinfo=dt.UTC).timestamp()) * S
    stack.influx("writer").write(
        [line(schema.EXPOSURE, {"enterprise": ENT, "kind": "job", "job": job,
                                "profile": reg.profile.id}, {"lex_8h": lex}, day + i * 86400 * S)
         for job, levels in (("press", (88.0, 90.0)), ("assembly", (82.0,)))
         for i, lex in enumerate(levels)], rp=schema.RP_FOREVER)


def test_screening_service_alerts(stack, site, ledger):
    reg = load_registry(site)
    reader, writer = stack.influx("reader"), stack.influx("writer")
    exams = [
        # suspected: age 35 (group 30–39 subtracts 1, 1, 1, 2, 2, 3 at 0.5–6 kHz): HFTA
        # (48 + 48 + 47)/3 = 47.67 ≥ 40 after 5 years; weighted value 0.9·29 + 0.1·48 = 30.9:
        # mild; STS vs 2020: 2/3/4 kHz change (20 + 40 + 40)/3 = 33.3 ≥ 10; job press LEX
        # 89.1 → yearly, last exam 2025-01-10 → due 2026-01-10, overdue on 2026-11-29
        Audiogram(ENT, "w-sus", dt.date(2020, 1, 10), 30, "M", _ear(10), _ear(10),
                  job="press", noise_years=0.0, baseline=True),
        Audiogram(ENT, "w-sus", dt.date(2025, 1, 10), 35, "M", _ear(50, 30), _ear(50, 30),
                  job="press", noise_years=5.0),
        # noise-susceptible: pre-placement all 15 ≤ 25, after 0.75 years 4 kHz 70 ≥ 65
        Audiogram(ENT, "w-new", dt.date(2026, 1, 5), 22, "F", _ear(15, 15), _ear(15, 15),
                  job="press", noise_years=0.0, baseline=True, kind="pre_placement"),
        Audiogram(ENT, "w-new", dt.date(2026, 10, 5), 22, "F", _ear(15, 15, k4=70),
                  _ear(15, 15), job="press", noise_years=0.75, kind="periodic"),
        # normal, LEX 82 → every two years, due 2028-06-01: nothing to raise
        Audiogram(ENT, "w-ok", dt.date(2026, 6, 1), 40, "M", _ear(15), _ear(15),
                  job="assembly", noise_years=8.0),
    ]
    tz = reg.deployment.timezone
    assert write_audiograms(writer, exams, tz) == 5

    store = AlertStore(reader, writer)
    analyzer = Analyzer(reg, reader, writer, store, clock=lambda: NOW)
    did = analyzer.tick(NOW)
    assert not did["failed"], did["failed"]
    assert analyzer.screened_on == TODAY

    points = {(r["worker"], r["time"]): r for r in reader.query_rows(
        f"SELECT * FROM {schema.source(schema.SCREENING, schema.RP_FOREVER)} WHERE "
        f"{schema.where_tags([('enterprise', ENT)])}")}
    assert len(points) == 5
    sus = max((r for (w, _), r in points.items() if w == "w-sus"), key=lambda r: r["time"])
    press = 10 * math.log10((10 ** 8.8 + 10 ** 9.0) / 2)
    assert sus["suspected"] is True and sus["grade"] == "mild"
    assert sus["better_ear_db"] == pytest.approx(30.9)
    assert sus["hfta_db"] == pytest.approx(143 / 3)
    assert sus["sts_left"] is True and sus["sts_right"] is True
    assert sus["lex_db"] == pytest.approx(press) and sus["interval_years"] == 1
    assert sus["next_due"] == "2026-01-10" and sus["overdue"] is True
    ok = next(r for (w, _), r in points.items() if w == "w-ok")
    assert ok["interval_years"] == 2 and ok["next_due"] == "2028-06-01"
    assert ok["overdue"] is False and ok["suspected"] is False

    alerts = store.list(enterprise=ENT)
    got = {(a.rule, a.evidence["worker"], a.shift_date) for a in alerts}
    assert got == {("hearing_suspected", "w-sus", "2025-01-10"),
                   ("hearing_sts", "w-sus", "2025-01-10"),
                   ("exam_overdue", "w-sus", "2026-01-10"),
                   ("noise_susceptible", "w-new", "2026-10-05"),
                   ("hearing_sts", "w-new", "2026-10-05")}
    assert set(did["raised"]) == {a.id for a in alerts}
    overdue = next(a for a in alerts if a.rule == "exam_overdue")
    assert overdue.text_zh.startswith("劳动者 w-sus") and "逾期" in overdue.text_zh
    assert "overdue" in overdue.text_en and overdue.severity == "warning"
    assert overdue.job == "press" and overdue.worker == "w-sus" and overdue.occurrence == 0
    # the worker is part of the identity: SHA-256 of "enterprise|rule|meter|channel|job|
    # shift_date|profile|occurrence|worker", first 16 hex digits (no meter, no channel)
    key = f"{ENT}|exam_overdue|||press|2026-01-10|{overdue.profile}|0|w-sus"
    assert overdue.id == hashlib.sha256(key.encode()).hexdigest()[:16]
    assert {a.rule for a in store.list(enterprise=ENT, worker="w-sus")} == {
        "hearing_suspected", "hearing_sts", "exam_overdue"}
    assert {a.worker for a in alerts} == {"w-sus", "w-new"}
    assert overdue.evidence["next_due"] == "2026-01-10"
    suspected = next(a for a in alerts if a.rule == "hearing_suspected")
    assert suspected.severity == "critical" and "疑似职业性噪声聋" in suspected.text_zh

    # the same day again: the hook does not run twice; a later day re-screens, raising nothing
    # new (deterministic ids)
    assert analyzer.tick(NOW + 60 * S)["raised"] == []
    again = analyzer.tick(NOW + 86400 * S)
    assert again["raised"] == [] and not again["failed"]
    assert len(store.list(enterprise=ENT)) == 5


def test_commands(stack, site, ledger, tmp_path):
    path = tmp_path / "exams.csv"
    path.write_bytes(("\n".join([ZH_HEADER, f"w-cli,{ENT},2026-03-01,30,男,press,2,否,{OK}",
                                 f"w-kid,{ENT},2026-03-01,14,男,,,,{OK}"]) + "\n")
                     .encode("gbk"))
    r = run_tingbao("audiograms", "import", path, "--config", site)
    assert r.returncode == 1, r.stderr
    assert "1 good, 1 stored" in r.stdout and "row 3, column age: age 14 is under 16" in r.stdout
    r = run_tingbao("screening", "--config", site, "--enterprise", ENT, "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    cli = next(s for s in data["screenings"] if s["worker"] == "w-cli")
    assert cli["grade"] == "none" and cli["suspected"] is False and cli["interval_years"] == 1
    assert {p["job"] for p in data["predictions"]} >= {"press", "assembly"}
    r = run_tingbao("screening", "--config", site, "--enterprise", ENT, "--format", "csv")
    assert r.returncode == 0, r.stderr
    header, *body = r.stdout.splitlines()
    assert header.startswith("enterprise,worker,date,") and len(body) == len(data["screenings"])
    r = run_tingbao("audiograms", "import", tmp_path / "nothing.csv", "--config", site)
    assert r.returncode == 2 and "nothing.csv" in r.stderr
