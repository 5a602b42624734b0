"""``tingbao demo`` end to end, as ``make demo`` runs it without a terminal: the stack, the
synthetic meters of all three enterprises of the packaged registry, the collector, the
analysis service and the live page, from the demo's own registry copy whose shifts start
the minute the demo starts, and the pilot evaluation (``/pilot``) filled from the survey,
audiogram and fit-test files the demo writes (checked against counts read back from those
files); then everything it started is gone and the data stay."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from support.commands import TINGBAO

from tingbao.collector import schema
from tingbao.collector.registry import load_registry
from tingbao.dashboards.demo import example_site

P0_SQUARED = (20e-6) ** 2  # Pa², the reference pressure squared
T0_8H = 8 * 3600.0  # s


def _children_of(data_dir: Path) -> list[str]:
    """Command lines of running processes that name ``data_dir`` (its servers and agents)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(data_dir) in cmd and "pytest" not in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def _get_json(url: str):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.stack
def test_demo_runs_every_enterprise_raises_an_early_warning_and_stops_clean(tmp_path):
    d = tmp_path / "demo"
    log = tmp_path / "demo.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*TINGBAO, "demo", "--duration", "35", "--data-dir", str(d),
                                 "--port", "0"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        registry = load_registry(example_site())
        deadline = time.monotonic() + 40
        url = password = None
        while time.monotonic() < deadline and proc.poll() is None and password is None:
            text = log.read_text(encoding="utf-8", errors="replace")
            m = re.search(r"live page \S+ (http://\S+/)", text)
            url = m.group(1) if m else None
            m = re.search(r"sign in \S+ user inspector\s+password (\S+)", text)
            password = m.group(1) if m else None
            time.sleep(0.5)
        text = log.read_text(encoding="utf-8", errors="replace")
        assert url and password, text[-3000:]

        # the sign-in printed is the one hashed (Argon2id) into the users file
        from argon2 import PasswordHasher

        users = (d / "users.toml").read_text(encoding="utf-8")
        stored = re.search(r'password_hash = "(\$argon2id\$[^"]+)"', users).group(1)
        assert PasswordHasher().verify(stored, password)
        assert password not in users

        # the demo's registry copy: every shift runs now, every day
        copy = load_registry(d / "site.demo.toml")
        assert [m.id for m in copy.meters] == [m.id for m in registry.meters]
        assert all(e.shift.days_per_week == 7 for e in copy.enterprises)

        from tingbao.analysis.alert_store import AlertStore
        from tingbao.collector.registry.connect import influx_client

        reader = influx_client(copy, "reader", stack_dir=d / "stack")
        wanted = {e.id for e in registry.enterprises}
        floors, levels, alerts = {}, set(), []
        while time.monotonic() < deadline + 40 and proc.poll() is None:
            for e in wanted - set(floors):
                snap = _get_json(f"{url}api/floor/{e}")
                if all(m.get("laeq") is not None for m in snap["meters"]
                       if registry.meter(m["meter"]).source.kind == "synthetic"):
                    floors[e] = snap
            levels = {r["enterprise"] for r in reader.query_rows(
                f'SELECT COUNT("laeq") FROM {schema.source(schema.LEVELS)} WHERE time > '
                f'now() - 10m GROUP BY "enterprise"') if r.get("count")}
            try:
                alerts = AlertStore(reader, None).list(rule="lex_projected")
            except Exception:  # noqa: BLE001 - no alert measurement before the first alert
                alerts = []
            if set(floors) == wanted and levels == wanted and alerts:
                break
            time.sleep(2)
        text = log.read_text(encoding="utf-8", errors="replace")
        # the page answers with every meter of the registry, per enterprise
        assert set(floors) == wanted, (floors, text[-3000:])
        for e, snap in floors.items():
            assert {m["meter"] for m in snap["meters"]} == \
                {m.id for m in registry.meters_of(e)}
        # levels of all three enterprises are in InfluxDB
        assert levels == wanted, text[-3000:]
        # an early warning: a loud post projects LEX,8h >= 85 dB(A). Recomputed from its
        # evidence: LEX,8h = 10 lg((E_so_far + p0²·10^(L_recent/10)·T_rest) / (p0²·8 h));
        # e.g. a 96 dB(A) stamping post 30 s into an 8 h shift: E ≈ 4e-10·10^9.6·30 =
        # 0.048 Pa²s, rest 4e-10·10^9.6·28770 = 45.8 Pa²s → 10 lg(45.85/0.01152) ≈ 96.0.
        assert alerts, text[-3000:]
        a = alerts[0]
        ev = a.evidence
        rest_s = (ev["period_end_ns"] - ev["now_ns"]) / 1e9
        rest = P0_SQUARED * 10 ** (ev["recent_laeq"] / 10) * rest_s
        lex = 10 * math.log10((ev["ea_pa2s"] + rest) / (P0_SQUARED * T0_8H))
        assert lex == pytest.approx(ev["projected_lex_8h"], abs=1e-6)
        assert lex >= 85.0
        assert a.enterprise in wanted and registry.meter(a.meter).enterprise == a.enterprise
        assert "预警 alert [warning] lex_projected" in text or proc.poll() is None

        # the pilot evaluation, filled at start-up from the files in DATA_DIR/pilot
        # (written in the background: a few seconds after start-up)
        while time.monotonic() < deadline + 60 and "试点评估 pilot evaluation" not in text:
            time.sleep(0.5)
            text = log.read_text(encoding="utf-8", errors="replace")
        assert f"试点评估 pilot evaluation: {url}pilot" in text, text[-3000:]
        _check_pilot(d / "pilot", registry, copy, url)

        assert proc.wait(60) == 0, text[-3000:]
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "stopped; data and logs are in" in text
    # every process it started is gone: servers, agents, collector, analysis, page
    time.sleep(0.5)
    assert _children_of(d) == []
    # the data stay for the next run
    assert any((d / "stack" / "influxdb").rglob("*.tsm")) or any(
        (d / "stack" / "influxdb").rglob("*.wal")), list((d / "stack").rglob("*"))[:20]
    assert (d / "collector.log").exists() and (d / "analyze.log").exists()


def _survey_counts(directory: Path, copy) -> dict[tuple[str, int], list[int]]:
    """[x correct, n observed] per (enterprise id, year), read back from the demo's three
    survey files (UTF-8 CSV, GBK CSV naming enterprises in Chinese, XLSX)."""
    import openpyxl

    by_name = {e.name_zh: e.id for e in copy.enterprises}
    rows = []
    for f in sorted(directory.glob("survey-*")):
        if f.suffix == ".xlsx":
            ws = openpyxl.load_workbook(f, read_only=True).active
            rows += [[c.isoformat()[:10] if hasattr(c, "isoformat") else str(c) for c in r]
                     for r in list(ws.iter_rows(values_only=True))[1:]]
        else:
            enc = "gbk" if "gbk" in f.name else "utf-8"
            rows += list(csv.reader(f.read_text(encoding=enc).splitlines()))[1:]
    counts: dict[tuple[str, int], list[int]] = {}
    for r in rows:
        c = counts.setdefault((by_name.get(r[1], r[1]), int(r[0][:4])), [0, 0])
        c[0] += r[6] == "是"
        c[1] += 1
    return counts


def _check_pilot(directory: Path, registry, copy, url: str) -> None:
    """/api/pilot and /pilot against the files the demo wrote (independent counts)."""
    counts = _survey_counts(directory, copy)
    years = sorted({y for _, y in counts})
    assert len(years) == 2, counts
    snap = _get_json(f"{url}api/pilot")
    assert not snap["empty"], snap
    # every registry enterprise's observed rate of each year is x/n of its survey rows
    # (Wilson's point estimate is x/n; e.g. 41 of 48 = 85.42 %)
    rates = {(r["scope"], r["key"], r["year"], r["source"]): r for r in snap["rates"]}
    for e in copy.enterprises:
        for y in years:
            x, n = counts[(e.id, y)]
            r = rates[("enterprise", e.id, y, "observed")]
            assert (r["x"], r["n"]) == (x, n) and r["rate"] == pytest.approx(100 * x / n,
                                                                               abs=0.01)
    # the groups: equal-sized enterprises, so the GEE estimate is the pooled x/n; the DiD of
    # the saturated linear probability model is the difference of the four cell means:
    # (pilot follow − pilot base) − (comparison follow − comparison base)
    group = {e.id: e.group for e in copy.enterprises}
    cell = {}
    for g in ("pilot", "comparison"):
        for y in years:
            x = sum(c[0] for (e, yy), c in counts.items() if group[e] == g and yy == y)
            n = sum(c[1] for (e, yy), c in counts.items() if group[e] == g and yy == y)
            cell[(g, y)] = 100 * x / n
            assert rates[("group", g, y, "observed")]["rate"] == pytest.approx(cell[(g, y)],
                                                                                abs=0.01)
    (did,) = snap["did"]
    assert (did["baseline"], did["followup"]) == tuple(str(y) for y in years)
    assert (did["enterprises_pilot"], did["enterprises_comparison"]) == (4, 4)
    assert did["n"] == sum(c[1] for c in counts.values())
    b, f = years
    expect = (cell[("pilot", f)] - cell[("pilot", b)]) - (cell[("comparison", f)]
                                                         - cell[("comparison", b)])
    assert did["did_pp"] == pytest.approx(expect, abs=0.01)
    assert did["lo_pp"] < did["did_pp"] < did["hi_pp"]
    # screening and fit tests, per registry enterprise, from audiograms.csv and fit-tests.csv
    aud = list(csv.DictReader((directory / "audiograms.csv").open(encoding="utf-8")))
    fits = list(csv.DictReader((directory / "fit-tests.csv").open(encoding="utf-8")))
    ents = {c["enterprise"]: c for c in snap["enterprises"]}
    hf = [f"{ear}耳{f}Hz" for ear in "左右" for f in (3000, 4000, 6000)]
    for e in registry.enterprises:
        mine = sorted((r for r in aud if r["企业"] == e.id), key=lambda r: r["检查日期"])
        latest = {r["工号"]: r for r in mine}  # the later exam of each worker
        first = {}
        for r in mine:
            first.setdefault(r["工号"], r)
        c = ents[e.id]
        assert (c["exams"], c["workers_examined"]) == (len(mine), len(latest))
        # GBZ 49 suspected: binaural 3/4/6 kHz mean ≥ 40 dB HL after age correction; the
        # planted case is 65.8 dB HL raw (61.2 corrected), every other worker ≤ 30 raw
        assert c["suspected"] == sum(
            sum(float(r[k]) for k in hf) / 6 >= 50 for r in latest.values()) >= 1
        # OSHA STS without age correction: mean change at 2/3/4 kHz ≥ 10 dB in either ear
        sts = 0
        for w, r in latest.items():
            base = first[w]
            sts += any(sum(float(r[f"{ear}耳{f}Hz"]) - float(base[f"{ear}耳{f}Hz"])
                           for f in (2000, 3000, 4000)) / 3 >= 10 for ear in "左右")
        assert c["sts"] == sts >= 1
        # fit tests: pass when binaural PAR − u ≥ exposure − 85 dB (CN-GBZ limit)
        ft = [r for r in fits if r["企业"] == e.id]
        assert c["fit_tests"] == len(ft)
        assert c["fit_passed"] == sum(float(r["双耳PAR"]) - float(r["不确定度"])
                                      >= float(r["接触水平"]) - 85 for r in ft)
        # a simulated day at the ear: 4 workers, worn 100 %, 93.75 % (30 of 480 min out),
        # 75 % and 50 % of the shift: 2 of 4 worker-days at >= 90 % count as worn correctly
        assert (c["wear_days"], c["wear_workers"]) == (4, 4)
        edge = [r for k, r in rates.items() if k[:2] == ("enterprise", e.id)
                and k[3] == "edge"]
        assert [(r["x"], r["n"]) for r in edge] == [(2, 4)]
    assert sum(c["susceptible"] for c in ents.values()) == 1
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}pilot", timeout=10) as r:
        page = r.read().decode("utf-8")
    assert 'id="pilot-empty"' not in page and 'id="pilot-did"' in page
    assert f"{did['did_pp']:+.1f}" in page


SHORT_SITE = """
# a one-enterprise site whose shift lasts a quarter of an hour, for a quick --speed run
[deployment]
timezone = "Asia/Shanghai"
[[enterprises]]
id = "fs-hongli"
name_zh = "佛山市顺德区宏力五金机械有限公司"
name_en = "Hongli Hardware Machinery"
industry = "machinery"
group = "pilot"
shift = { start = "08:00", hours = 0.25 }
[[sites]]
id = "stamping"
enterprise = "fs-hongli"
name_zh = "冲压车间"
[[meters]]
id = "hl-stp-01"
enterprise = "fs-hongli"
site = "stamping"
pa_per_unit = 20.0
calibrated = "2026-11-03"
typical_laeq_db = 96.0
impulsive = true
source = { kind = "synthetic", scene = "stamping" }
"""


@pytest.mark.stack
def test_demo_speed_closes_a_backfilled_shift_and_writes_its_report(tmp_path):
    # --speed 60 on a 0.25 h shift: 0.25 h / 60 = 15 s of it remain live, the other
    # 14 min 45 s (885 s) are back-filled for its loudest meter (hl-stp-01, stamping, typical
    # 96 dB(A)) at ~100x real time: about 10 s. The same code runs fs-hongli's 8 h shift of
    # the packaged registry with --speed 480 in about 5 min (checked by hand).
    d = tmp_path / "demo"
    site = tmp_path / "short.toml"
    site.write_text(SHORT_SITE, encoding="utf-8")
    done = subprocess.run([*TINGBAO, "demo", "--speed", "60", "--site", str(site),
                           "--data-dir", str(d), "--port", "0"], capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert re.search(r"--speed 60: the 0.25 h shift of fs-hongli \(\S+\) started", out), \
        out[-3000:]
    date = re.search(r"fs-hongli \((\d{4}-\d\d-\d\d)\)", out).group(1)
    assert f"tingbao analyze fs-hongli {date}: done" in out, out[-3000:]
    assert f"tingbao report fs-hongli {date}: done" in out, out[-3000:]
    reports = sorted(p.name for p in (d / "reports").rglob("*") if p.is_file())
    assert any(n.endswith(".html") for n in reports), reports
    assert any(n.endswith(".pdf") for n in reports), reports
    assert _children_of(d) == []

    # the closed day: hl-stp-01 was measured over the whole shift (back-fill + live), so its
    # LEX,8h is its LAeq over the shift plus 10 lg(0.25 h / 8 h) = −15.05 dB (GBZ/T 189.8:
    # LEX,8h = LAeq,Te + 10 lg(Te/8 h)); a ~96 dB(A) stamping scene gives ≈ 81 dB(A): no
    # exceedance, but a closed, chained record. Read back with the stack started again.
    from tingbao.analysis import ledger
    from tingbao.collector.stack import Stack

    stack = Stack(d / "stack")
    stack.start()
    try:
        reader = stack.influx("reader")
        v = ledger.verify(reader, "fs-hongli")
        recs = []
        for p in ledger.chain(reader, "fs-hongli"):
            if p["date"] == date:
                recs = ledger.read_records(reader, "fs-hongli", int(p["time"]))
    finally:
        stack.stop()
    assert v.ok and v.head_date == date, v
    post = next(r for r in recs if r.tags.get("meter") == "hl-stp-01"
                and r.tags.get("profile") == "CN-GBZ")
    f = post.fields
    assert f["coverage"] >= 0.9, f  # back-fill + live cover the shift but seconds
    assert f["lex_8h"] == pytest.approx(f["laeq"] + 10 * math.log10(0.25 / 8), abs=0.05) \
        or f["coverage"] < 0.8, f
