"""The inspector's report (`tingbao report`) on a real InfluxDB: three days of levels for two
meters (a third, two-channel meter without data), closed by the ledger, an alert with its
lifecycle, a meter-level alert and some band levels; the report
built in-process (its figures checked against plain arithmetic) and through the CLI (the PDF
checked with poppler: the Chinese and English text, the printed LEX values, the embedded Noto
CJK font, page 1 rendered). Page 1 of the PDF is kept as ``tests/artifacts/report-page1.png``
(that directory is ignored by git through its own .gitignore)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import shutil
import statistics
import subprocess
import zoneinfo
from pathlib import Path

import pytest
from support.commands import run_tingbao
from support.levels import steady_levels

from tingbao.analysis import ledger, records
from tingbao.analysis.alert_store import Alert, AlertStore
from tingbao.analysis.daily import compute_days
from tingbao.analysis.report import render
from tingbao.analysis.report.build import (
    U_CORRELATED,
    U_FULL_DAY,
    DayValue,
    build_report,
    period_lex,
    period_u,
    period_uncertainty,
)
from tingbao.analysis.shifts import shift_window
from tingbao.collector import schema
from tingbao.collector.lineprotocol import band_field, line
from tingbao.collector.registry import load_registry
from tingbao.collector.rollups import Rollups

P0 = 20e-6
TZ = "Asia/Shanghai"
ENT = "hualong"
NAME_ZH = "华隆机械厂"
NAME_EN = "Hualong Machinery"
STEP_S = 10
"""Seconds per stored level point (a 10 s interval: energies add whatever the interval)."""
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

TODAY = dt.datetime.now(zoneinfo.ZoneInfo(TZ)).date()
DAY1 = TODAY - dt.timedelta(days=4)  # inside the 1 s retention, the shifts long over
DAY2 = DAY1 + dt.timedelta(days=1)
DAY3 = DAY2 + dt.timedelta(days=1)  # two days ago: its shift is over too
CALIBRATED = DAY1 - dt.timedelta(days=100)

SITE_TOML = f"""
[deployment]
name_zh = "听保试点"
name_en = "tingbao pilot"
timezone = "{TZ}"

[[enterprises]]
id = "{ENT}"
name_zh = "{NAME_ZH}"
name_en = "{NAME_EN}"
industry = "machinery"
group = "pilot"
shift = {{ start = "08:00", hours = 8.0, days_per_week = 7 }}

[[sites]]
id = "w1"
enterprise = "{ENT}"
name_zh = "冲压车间"
name_en = "press shop"

[[meters]]
id = "m1"
enterprise = "{ENT}"
site = "w1"
position_zh = "冲床旁"
position_en = "beside the press"
calibrated = {CALIBRATED.isoformat()}

[[meters]]
id = "m2"
enterprise = "{ENT}"
site = "w1"
position_zh = "装配线"
position_en = "assembly line"

[[meters]]
id = "m3"
enterprise = "{ENT}"
site = "w1"
position_zh = "双通道测点"
position_en = "two-channel point"
channels = 2

[[job_types]]
id = "press-fitter"
enterprise = "{ENT}"
name_zh = "冲压装配工"
name_en = "press fitter"
tasks = [{{ what = "press", hours = 4.0, meter = "m1" }},
         {{ what = "assembly", hours = 4.0, meter = "m2" }}]
"""


def _levels(meter: str, start_ns: int, hours: float, level: float) -> list[str]:
    """Points of STEP_S seconds at a steady ``level`` (dB(A)): EA = p0² 10^(L/10) · STEP_S."""
    return steady_levels(ENT, "w1", meter, start_ns, round(hours * 3600 / STEP_S), level,
                         step_s=STEP_S, lafmax_above=4.0, lcpeak_above=20.0)


def _bands(meter: str, start_ns: int, values: list[tuple[float, float]]) -> list[str]:
    """``bands`` points, one per (L at 1 kHz, L at 2 kHz) of ``values``, 10 s apart."""
    return [line(schema.BANDS, {"enterprise": ENT, "site": "w1", "meter": meter,
                                "channel": "0"},
                 {band_field("1000"): a, band_field("2000"): b, "seq": 10_000 + i,
                  "duration_s": 10.0, "fraction": 1}, start_ns + i * 10 * 10**9)
            for i, (a, b) in enumerate(values)]


H = 3600 * 10**9


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory):
    """The registry file, with three days written, rolled up and closed by the ledger, one
    alert (opened, then acknowledged), a meter-level alert of m3 and band levels of m1 on
    day 1. (Seven workdays a week: the dates are relative to today, any weekday.)"""
    path = tmp_path_factory.mktemp("site") / "site.toml"
    path.write_text(SITE_TOML + f'\n[stack]\ndata_dir = "{stack.data_dir}"\n',
                    encoding="utf-8")
    stack.write_state()  # connect.py finds the servers and accounts through state.json
    reg = load_registry(path)
    reader, writer = stack.influx("reader"), stack.influx("writer")
    w1 = shift_window(reg.enterprise(ENT), DAY1, TZ)
    w2 = shift_window(reg.enterprise(ENT), DAY2, TZ)
    w3 = shift_window(reg.enterprise(ENT), DAY3, TZ)
    s1, s2, s3 = w1.period.start_ns, w2.period.start_ns, w3.period.start_ns
    lines = []
    # day 1: m1 4 h at 88 then 4 h at 80; m2 8 h at 90
    lines += _levels("m1", s1, 4, 88.0) + _levels("m1", s1 + 4 * H, 4, 80.0)
    lines += _levels("m2", s1, 8, 90.0)
    # day 2: m1 8 h at 86; m2 hour 3 missing, 7 h at 90 (coverage 7/8, extrapolated)
    lines += _levels("m1", s2, 8, 86.0)
    lines += _levels("m2", s2, 3, 90.0) + _levels("m2", s2 + 4 * H, 4, 90.0)
    # day 3: m1 8 h at 84; m2 8 h at 96
    lines += _levels("m1", s3, 8, 84.0) + _levels("m2", s3, 8, 96.0)
    # bands of m1 in day 1: 1 kHz at 80 and 86 dB, 2 kHz at 70 dB
    lines += _bands("m1", s1 + H, [(80.0, 70.0)] * 6 + [(86.0, 70.0)] * 6)
    for i in range(0, len(lines), 20_000):
        writer.write(lines[i:i + 20_000])
    rollups = Rollups(reader, writer)
    for w in (w1, w2, w3):
        rollups.recompute_range(w.period.start_ns, w.period.end_ns)
        day, extras = compute_days(reader, reg, ENT, w.date)  # what `analyze` closes
        ledger.close_day(reader, writer, ENT, w.date.isoformat(), w.period.start_ns,
                         records.day_records(day, extras))
    store = AlertStore(reader, writer)  # stored, not published
    alert = Alert(enterprise=ENT, rule="lex_projected", shift_date=DAY1.isoformat(),
                  profile="CN-GBZ", severity="warning", text_zh="预计 LEX,8h 超过 85 dB(A)",
                  text_en="projected LEX,8h above 85 dB(A)",
                  evidence={"projected_lex_db": 90.0}, raised_ns=s1 + 2 * H, meter="m2",
                  channel=0)
    assert store.open(alert)
    store.acknowledge(alert.id, "张工", "已发放耳罩", now_ns=s1 + 3 * H)
    offline = Alert(enterprise=ENT, rule="meter_offline", shift_date=DAY2.isoformat(),
                    profile="CN-GBZ", severity="warning", text_zh="声级计离线",
                    text_en="meter offline", evidence={"silent_s": 900}, raised_ns=s2 + H,
                    meter="m3")  # a meter's alert: no channel
    assert store.open(offline)
    return path, reg


# the stored daily values, from the levels written (GBZ/T 189.8 energy sums)
M1_DAY1 = 10 * math.log10(0.5 * 10**8.8 + 0.5 * 10**8.0)  # ½ at 88, ½ at 80 → 85.63
M1_DAY2 = 86.0
M2_U = 1.65 * math.sqrt(0.7**2 + 1.0**2)  # steady level: u1 = 0, u2 class 1, u3 → 2.01 dB


def test_build_reads_stored_records_and_sums_the_period(stack, site):
    _, reg = site
    data = build_report(stack.influx("reader"), reg, ENT, DAY1, DAY2)
    assert [d.closed for d in data.days] == [True, True]
    posts = {s.key: s for s in data.posts}
    m1, m2 = posts["m1:0"], posts["m2:0"]
    assert [round(d.lex_8h, 6) for d in m1.days] == [round(M1_DAY1, 6), M1_DAY2]
    # period LEX = energy mean of the days: 10 lg(½ 10^8.563 + ½ 10^8.6) = 85.82 dB(A)
    want = 10 * math.log10((10 ** (M1_DAY1 / 10) + 10**8.6) / 2)
    assert m1.lex_db == pytest.approx(want, abs=2e-6) and round(want, 1) == 85.8
    assert period_lex([M1_DAY1, M1_DAY2]) == pytest.approx(want, abs=1e-9)
    assert m1.max_db == pytest.approx(86.0) and m1.max_date == DAY2
    # both days reach the 85 dB(A) limit; grade I (85 ≤ L < 90)
    assert m1.days_over == 2 and m1.grade.code == "I"
    # m2: 90.0 both days (day 2 extrapolated over the missing hour), U 2.01 both days, so
    # the energy-weighted U of the period is 2.01 too; grade II (90 ≤ L < 94)
    assert m2.lex_db == pytest.approx(90.0, abs=1e-6)
    assert m2.u_db == pytest.approx(M2_U, abs=1e-6)  # records keep 6 decimals
    assert "gaps_extrapolated" in m2.flags and "uncalibrated" in m2.flags
    assert m2.grade.code == "II" and m2.n_alerts == 1
    # two days (< 3 for the full-day strategy): U the correlated combination
    assert m1.u_method == m2.u_method == U_CORRELATED and m2.u_detail.n_days == 2
    # the meter-level alert of m3 (no channel) counts for both its channels, not for m2;
    # m1 has none
    assert posts["m3:0"].n_alerts == posts["m3:1"].n_alerts == 1 and m1.n_alerts == 0
    assert posts["m3:0"].days and posts["m3:0"].lex_db is None
    # U of unequal days: weights 10^(0.1 L) / Σ: 85 and 88 dB → c = 1/3, 2/3 (10^0.3 ≈ 2)
    assert period_u([85.0, 88.0], [3.0, 1.5]) == pytest.approx(
        (3.0 + 10**0.3 * 1.5) / (1 + 10**0.3), abs=1e-12)
    assert period_u([85.0, 88.0], [3.0, None]) is None
    # spectrum of m1: 1 kHz energy mean of six at 80 and six at 86 dB:
    # 10 lg(½ 10^8 + ½ 10^8.6) = 83.98 dB; 2 kHz steady at 70
    sp = data.spectra[("m1", 0)]
    assert sp.labels == ("1000", "2000") and sp.n == 12
    assert sp.levels_db[0] == pytest.approx(10 * math.log10(0.5e8 + 0.5 * 10**8.6), abs=1e-6)
    assert sp.levels_db[1] == pytest.approx(70.0, abs=1e-9)
    assert ("m2", 0) not in data.spectra
    # minute rollups for the level-time plot: 480 minutes on day 1, 420 on day 2 for m2
    assert [len(d.minutes) for d in data.levels[("m2", 0)]] == [480, 420]
    # the alert's lifecycle, in time order
    a, offline = data.alerts
    assert offline.rule == "meter_offline" and offline.channel is None
    assert [c[1] for c in a.changes] == ["open", "acknowledged"] and a.changes[1][2] == "张工"
    assert a.meter == "m2" and a.channel == "0" and a.text_en.startswith("projected")
    # calibration: m1 calibrated 100 days before (valid for 365), m2 and m3 never
    states = {m.meter.id: m.state for m in data.meters}
    assert states == {"m1": "valid", "m2": "never", "m3": "never"}
    assert data.verified.ok and data.head[1] != data.days[-1].chain_hash  # day 3 is later


M1_DAY3, M2_DAY3 = 84.0, 96.0
TABLE_C4_N3 = {1.0: 1.6, 1.5: 3.1, 3.0: 11.5, 3.5: 15.7}
"""Table C.4, row N = 3 (full-day only), c1·u1 in dB at the u1 columns used here."""


def _c1u1_n3(u1: float) -> float:
    """c1·u1 of Table C.4 row N = 3, linear between the two columns around ``u1``."""
    lo = max(c for c in TABLE_C4_N3 if c <= u1 and c + 0.5 in TABLE_C4_N3)
    return TABLE_C4_N3[lo] + (u1 - lo) / 0.5 * (TABLE_C4_N3[lo + 0.5] - TABLE_C4_N3[lo])


def test_period_of_three_days_uses_the_full_day_strategy(stack, site):
    _, reg = site
    data = build_report(stack.influx("reader"), reg, ENT, DAY1, DAY3)
    assert data.edition == "GB/T 21230-2014" and data.instrument == "class1"
    assert data.head[1] == data.days[-1].chain_hash
    posts = {s.key: s for s in data.posts}
    m1, m2 = posts["m1:0"], posts["m2:0"]
    # m1: 85.63, 86.0, 84.0 → u1 = stdev (N − 1) = 1.064 dB; Table C.4 N = 3 between
    # u1 1.0 (1.6 dB) and 1.5 (3.1 dB): c1u1 = 1.6 + 0.064/0.5 · 1.5 = 1.79 dB ≤ 3.5 (plan
    # ok); u = √(1.79² + 0.7² + 1.0²) = 2.168, U = 1.65 u = 3.58 dB
    u1 = statistics.stdev([M1_DAY1, M1_DAY2, M1_DAY3])
    assert 1.0 < u1 < 1.5 and round(u1, 3) == 1.064
    c = _c1u1_n3(u1)
    want_u = 1.65 * math.sqrt(c**2 + 0.7**2 + 1.0**2)
    assert round(want_u, 2) == 3.58
    assert m1.u_method == U_FULL_DAY and not m1.u_detail.plan_revise
    assert m1.u_detail.c1u1_db == pytest.approx(c, abs=1e-5)
    assert m1.u_db == pytest.approx(want_u, abs=1e-5)
    # period LEX: 10 lg(⅓ Σ 10^(0.1 L)) = 85.29 dB(A)
    assert m1.lex_db == pytest.approx(
        10 * math.log10((10 ** (M1_DAY1 / 10) + 10**8.6 + 10**8.4) / 3), abs=2e-6)
    # m2: 90, 90, 96 → u1 = √((4 + 4 + 16)/2) = √12 = 3.464 dB; c1u1 = 11.5 + 0.464/0.5 · 4.2
    # = 15.40 dB > 3.5: U still given, √(15.40² + 0.49 + 1) · 1.65 = 25.49 dB, plan revise
    c2 = _c1u1_n3(math.sqrt(12))
    assert round(c2, 2) == 15.40
    assert m2.u_detail.plan_revise and m2.u_db == pytest.approx(
        1.65 * math.sqrt(c2**2 + 0.49 + 1.0), abs=1e-4)
    (job,) = data.jobs
    assert job.u_method == U_FULL_DAY and job.u_detail.n_days == 3
    # the job's tasks as the ledger stored them (JSON field): day 3, 4 h at m1 (84 dB) and
    # 4 h at m2 (96 dB), both measured
    stored = job.days[2].tasks
    assert [(t["what"], t["hours"], t["meter"], t["source"]) for t in stored] == [
        ("press", 4.0, "m1", "measured"), ("assembly", 4.0, "m2", "measured")]
    assert [t["laeq"] for t in stored] == pytest.approx([M1_DAY3, M2_DAY3], abs=1e-6)

    # the rendered report: the U method per row, the flag texts, the method notes
    tasks = [{"what": "press", "hours": 4.0, "laeq": 85.63, "source": "measured",
              "meter": "m1", "channel": 0, "coverage": 1.0},
             {"what": "break room", "hours": 0.5, "laeq": 70.0, "source": "declared",
              "meter": None, "channel": None, "coverage": None}]
    day = job.days[0]
    day = dataclasses.replace(day, fields={**day.fields, "tasks": json.dumps(tasks)},
                              flags=(*day.flags, "no_data:m2:0", "brand_new_flag"))
    assert [t["what"] for t in day.tasks] == ["press", "break room"]
    job = dataclasses.replace(job, days=(day, *job.days[1:]))
    html = render.report_html(dataclasses.replace(data, jobs=(job,)), "en")
    assert "full-day (ISO 9612:2009 clause 11), N = 3 days" in html
    assert f"c1·u1 = {c:.2f} dB" in html and "c1·u1 = 1.79 dB" in html
    assert "85.3 ± 3.6" in html  # m1's period: 85.29 ± 3.58
    assert "measurement plan must be revised (c1·u1 &gt; 3.5 dB)" in html
    assert "93.0 ± 25.5" in html  # m2: 10 lg(⅓(2·10^9 + 10^9.6)) = 93.00 ± 25.49
    # the job's tasks sub-table: what, hours, level, measured/declared, post
    assert "break room" in html and ">declared<" in html and ">m1:0<" in html
    assert ">85.6<" in html and ">0.5<" in html
    assert "no data: meter m2 channel 0" in html and "flag brand_new_flag" in html
    for text in ("U is shown, flagged “measurement plan must be revised (c1·u1 &gt; 3.5 dB)”",
                 "full-day strategy of GB/T 21230-2014 = ISO 9612:2009 clause 11",
                 "grades and limit checks use the unrounded value",
                 "lowest counting threshold (default 120 dB)",
                 "refractory time 0.5 s", "impacts 0.5–1 s apart count twice",
                 "impulse grades are provisional", "counts for every channel"):
        assert text in html, text
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-3-days-en.html").write_text(html, encoding="utf-8")  # to look at
    zh = render.report_html(data, "zh")
    assert "全天测量" in zh and "须修订测量计划（c1·u1 &gt; 3.5 dB）" in zh


def test_period_uncertainty_cases():
    # no day, one day, two days: no U method / the correlated combination
    assert period_uncertainty([], []).method is None
    one = period_uncertainty([88.0], [2.0])
    assert one.method == U_CORRELATED and one.u_db == pytest.approx(2.0)
    # 85 and 88 dB: weights 1 : 10^0.3 → (3.0 + 1.995 · 1.5) / 2.995 = 2.00 dB
    two = period_uncertainty([85.0, 88.0], [3.0, 1.5])
    assert two.method == U_CORRELATED and two.u_db == pytest.approx(
        (3.0 + 10**0.3 * 1.5) / (1 + 10**0.3), abs=1e-12)
    # three days, no stored U needed: 84, 86, 88 → u1 = 2.0 dB, c1u1 (N = 3) = 5.2 dB > 3.5:
    # U = 1.65 √(5.2² + 1.5² + 1.0²) = 1.65 · 5.503 = 9.08 dB with a personal meter, flagged
    r = period_uncertainty([84.0, 86.0, 88.0], [None] * 3, instrument="personal",
                           edition="GB/T 21230-2014")
    assert r.method == U_FULL_DAY and r.plan_revise and r.u1_db == pytest.approx(2.0)
    assert r.c1u1_db == pytest.approx(5.2) and r.u_db == pytest.approx(
        1.65 * math.sqrt(5.2**2 + 1.5**2 + 1.0**2), abs=1e-9)
    assert round(r.u_db, 2) == 9.08
    # 80, 90, 95 → u1 = √((−8.33² + 1.67² + 6.67²)/2) = 7.64 dB > 6 dB, beyond Table C.4:
    # no U, plan revise
    wide = period_uncertainty([80.0, 90.0, 95.0], [2.0] * 3)
    assert wide.method == U_FULL_DAY and wide.u_db is None and wide.plan_revise
    assert wide.u1_db == pytest.approx(statistics.stdev([80.0, 90.0, 95.0]))
    with pytest.raises(ValueError, match="unknown instrument"):
        period_uncertainty([84.0, 86.0, 88.0], [None] * 3, instrument="class3")
    # tasks: a JSON string or absent
    d = DayValue(DAY1, None, None, None, None, None, (), {"tasks": "not json"})
    assert d.tasks == () and dataclasses.replace(d, fields={}).tasks == ()


def test_every_flag_has_a_text():
    # the flags exposure.py, daily.py and gbz2_2.py store; a new one prints as it is
    for f in ("no_data", "gaps_extrapolated", "low_coverage", "u_insufficient_samples",
              "u_plan_revise", "declared_levels", "uncalibrated", "impulses_not_counted",
              "posts_low_coverage"):
        zh, en = render.flag_text(f)
        assert zh != en and f not in en and f not in zh, f
    assert render.flag_text("u_plan_revise", 3.5) == (
        "须修订测量计划（c1·u1 > 3.5 dB）", "measurement plan must be revised (c1·u1 > 3.5 dB)")
    assert render.flag_text("no_data:m1:2")[1] == "no data: meter m1 channel 2"
    assert render.flag_text("whatever") == ("标记 whatever", "flag whatever")


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: apt-get install poppler-utils", pytrace=False)
    return path


def _pdffonts(pdf: Path) -> list[dict]:
    """``pdffonts`` rows as dicts (name, emb) — columns cut at the dashes of its header."""
    out = subprocess.run([_need("pdffonts"), str(pdf)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    header, dashes, *rows = out
    spans, i = [], 0
    for part in dashes.split(" "):
        spans.append((i, i + len(part)))
        i += len(part) + 1
    names = header.split()
    # header: name type encoding emb sub uni object ID (type may be two words)
    keys = ["name", "type", "encoding", "emb", "sub", "uni", "object"]
    assert names[:3] == ["name", "type", "encoding"], header
    return [{k: r[a:b].strip() for k, (a, b) in zip(keys, spans, strict=False)} for r in rows]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_cli_writes_html_and_pdf_with_cjk_text_and_fonts(stack, site, tmp_path, lang):
    path, _ = site
    out = tmp_path / "out"
    r = run_tingbao("report", "--config", path, "--enterprise", ENT, "--from", DAY1,
                    "--to", DAY2, "--lang", lang, "--out", out, "--stack", stack.data_dir,
                    timeout=240)
    assert r.returncode == 0, r.stderr
    html_path = out / f"report-{ENT}-{DAY1}-{DAY2}.html"
    pdf = out / f"report-{ENT}-{DAY1}-{DAY2}.pdf"
    assert html_path.exists() and pdf.exists(), r.stdout
    html = html_path.read_text(encoding="utf-8")
    head = ledger.head(stack.influx("reader"), ENT)
    assert head[1] in html  # the chain head the records are covered by
    # self-contained: figures inlined as data URIs, no linked file
    assert '<img src="data:image/svg+xml;base64,' in html
    assert "<link" not in html and 'src="http' not in html and 'src="/' not in html
    text = subprocess.run([_need("pdftotext"), str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    text = " ".join(text.split())  # table cells and titles wrap: compare words, not lines
    flat = text.replace(" ", "")  # a narrow cell may break a Chinese word over two lines
    for s in (NAME_ZH, NAME_EN, "噪声", "接触", "Occupational noise exposure report",
              "张工", "已发放耳罩", "projected", "acknowledged", "未登记校准", "暂定"):
        assert s.replace(" ", "") in flat, s
    # the printed values: m1 days 85.6 and 86.0, period 85.8; m2 90.0 ± 2.0 (U 2.01)
    assert f"{M1_DAY1:.1f}" == "85.6" and "85.6 ±" in text and "86.0 ±" in text
    assert "85.8 ±" in text
    assert f"{M2_U:.1f}" == "2.0" and "90.0 ± 2.0" in text
    # Chinese first under zh, English first under en (title line)
    zh_at, en_at = flat.index("噪声职业接触检查报告"), flat.index("Occupationalnoiseexposure")
    assert (zh_at < en_at) == (lang == "zh")
    fonts = _pdffonts(pdf)
    cjk = [f for f in fonts if "CJK" in f["name"]]
    assert cjk and all(f["emb"] == "yes" for f in cjk), fonts
    # page 1 rendered; kept as a test artefact
    prefix = tmp_path / "page"
    subprocess.run([_need("pdftoppm"), "-png", "-r", "60", "-f", "1", "-l", "1", str(pdf),
                    str(prefix)], check=True)
    (png,) = sorted(tmp_path.glob("page*.png"))
    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] > 500 and (pixels[..., :3] < 0.5).mean() > 0.005  # ink on it
    ARTIFACTS.mkdir(exist_ok=True)
    keep = ARTIFACTS / f"report-page1-{lang}.png"
    shutil.copyfile(png, keep)
    print(f"page 1 of the {lang} report: {keep}")


def test_empty_period_says_not_closed(stack, site, tmp_path):
    path, _ = site
    first = DAY1 - dt.timedelta(days=30)
    r = run_tingbao("report", "--config", path, "--enterprise", ENT, "--from", first,
                    "--to", first + dt.timedelta(days=1), "--out", tmp_path,
                    "--stack", stack.data_dir, "--no-pdf", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "no closed exposure records" in r.stderr
    html = (tmp_path / f"report-{ENT}-{first}-{first + dt.timedelta(days=1)}.html").read_text(
        encoding="utf-8")
    assert "尚未结算" in html and "not closed yet" in html
    # wrong input is one line, exit 2
    r = run_tingbao("report", "--config", path, "--enterprise", "nope", "--from", DAY1,
                    "--to", DAY2, "--out", tmp_path, "--stack", stack.data_dir)
    assert r.returncode == 2 and "unknown enterprise 'nope'" in r.stderr
    r = run_tingbao("report", "--config", path, "--enterprise", ENT, "--from", DAY2,
                    "--to", DAY1, "--out", tmp_path, "--stack", stack.data_dir)
    assert r.returncode == 2 and "before" in r.stderr


def test_period_without_workdays_is_an_empty_report(stack, site, tmp_path):
    # five workdays a week (Monday–Friday): a Saturday–Sunday period has no shift at all
    path = tmp_path / "site.toml"
    path.write_text(site[0].read_text(encoding="utf-8").replace(
        "days_per_week = 7", "days_per_week = 5"), encoding="utf-8")
    reg = load_registry(path)
    saturday = DAY1 - dt.timedelta(days=(DAY1.isoweekday() - 6) % 7)  # on or before DAY1
    assert saturday.isoweekday() == 6
    data = build_report(stack.influx("reader"), reg, ENT, saturday,
                        saturday + dt.timedelta(days=1))
    assert data.days == () and data.empty and data.posts[0].days == ()
    assert "no closed exposure records" in render.report_html(data, "en").lower()
