"""Grafana dashboards as code (``tingbao.dashboards.grafana``, ``tingbao dashboards``).

No Grafana server can be installed on these machines, so: every dashboard is built and read
back through the SDK's own model (Grafana 11.6 schema, ``schemaVersion`` 41); every panel's
every InfluxQL query runs on the real InfluxDB (tests/support stack) filled with a demo
scenario, with ``$timeFilter``, ``$__interval`` and the template variables substituted as
Grafana would, and must return the expected series and values; the provisioning YAML has the
documented keys; ``push`` talks to a small local HTTP stand-in for Grafana that records the
requests (paths, the bearer token, the bodies) — a stand-in, not Grafana.

The scenario: enterprise ``hualong`` (group pilot; ``anda``, group comparison, has no data),
the stored results of a pilot evaluation (support/pilot_views.py: wearing rates, the DiD,
audiograms, screening, fit tests), one 8 h shift (08:00 Asia/Shanghai) of 1 s points: m1
steady at 84 dB(A), m2 alternating 30 s at 90 and 30 s at 80 dB(A) within each minute; rolled
up, closed by the ledger (posts and the job press-fitter = 4 h at m1 + 4 h at m2); one alert
opened, then acknowledged.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import math
import re
import threading
import zoneinfo

import pytest
import yaml
from grafana_foundation_sdk.models import dashboard as dm
from support import pilot_views as pv
from support.commands import free_port, run_tingbao

from tingbao.analysis import ledger, records
from tingbao.analysis.alert_store import Alert, AlertStore
from tingbao.analysis.daily import compute_days
from tingbao.analysis.shifts import shift_window
from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.lineprotocol import line
from tingbao.collector.registry import load_registry
from tingbao.collector.registry.profiles import profile
from tingbao.collector.rollups import Rollups
from tingbao.dashboards.grafana import boards
from tingbao.dashboards.grafana.provisioning import PushError, push
from tingbao.dashboards.grafana.query import Dataquery, InfluxQuery

P0 = 20e-6
TZ = "Asia/Shanghai"
ENT = "hualong"
DAY = dt.datetime.now(zoneinfo.ZoneInfo(TZ)).date() - dt.timedelta(days=3)
S = 10**9
MIN = 60 * S

SITE_TOML = f"""
[deployment]
name_zh = "听保试点"
name_en = "tingbao pilot"
timezone = "{TZ}"

[[enterprises]]
id = "{ENT}"
name_zh = "华隆机械厂"
name_en = "Hualong Machinery"
industry = "machinery"
group = "pilot"
shift = {{ start = "08:00", hours = 8.0, days_per_week = 7 }}

[[enterprises]]
id = "anda"
name_zh = "安达纺织"
name_en = "Anda Textiles"
industry = "light_industry"
group = "comparison"
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

[[meters]]
id = "m2"
enterprise = "{ENT}"
site = "w1"
position_zh = "装配线"
position_en = "assembly line"

[[job_types]]
id = "press-fitter"
enterprise = "{ENT}"
name_zh = "冲压装配工"
name_en = "press fitter"
tasks = [{{ what = "press", hours = 4.0, meter = "m1" }},
         {{ what = "assembly", hours = 4.0, meter = "m2" }}]
"""


def _level(meter: str, t_ns: int) -> float:
    """The scenario's LAeq,1s (dB(A)) of ``meter`` at ``t_ns``."""
    if meter == "m1":
        return 84.0
    return 90.0 if (t_ns // S) % 60 < 30 else 80.0


def _lines(meter: str, start_ns: int, seconds: int) -> list[str]:
    out = []
    for i in range(seconds):
        t = start_ns + i * S
        level = _level(meter, t)
        out.append(line(schema.LEVELS, {"enterprise": ENT, "site": "w1", "meter": meter,
                                        "channel": "0"},
                        {"ea": P0**2 * 10 ** (level / 10), "coverage": 1.0, "duration_s": 1.0,
                         "laeq": level, "lafmax": level + 4, "lcpeak": level + 20, "seq": i},
                        t))
    return out


# energy means (GBZ/T 189.8: energies add): m2's minute and day are ½ at 90 + ½ at 80
M2_LAEQ = 10 * math.log10(0.5 * 10**9.0 + 0.5 * 10**8.0)  # 87.404 dB(A), not the 85 of MEAN
M1_LAEQ = 84.0
JOB_LEX = 10 * math.log10(0.5 * 10 ** (M1_LAEQ / 10) + 0.5 * 10 ** (M2_LAEQ / 10))  # 86.0


@pytest.fixture(scope="module")
def scenario(stack, tmp_path_factory):
    path = tmp_path_factory.mktemp("site") / "site.toml"
    path.write_text(SITE_TOML + f'\n[stack]\ndata_dir = "{stack.data_dir}"\n',
                    encoding="utf-8")
    stack.write_state()
    reg = load_registry(path)
    reader, writer = stack.influx("reader"), stack.influx("writer")
    w = shift_window(reg.enterprise(ENT), DAY, TZ)
    s0, s1 = w.period.start_ns, w.period.end_ns
    n = (s1 - s0) // S
    lines = _lines("m1", s0, n) + _lines("m2", s0, n)
    for i in range(0, len(lines), 20_000):
        writer.write(lines[i:i + 20_000])
    Rollups(reader, writer).recompute_range(s0, s1)
    day, extras = compute_days(reader, reg, ENT, DAY)
    ledger.close_day(reader, writer, ENT, DAY.isoformat(), s0, records.day_records(day, extras))
    store = AlertStore(reader, writer)
    alert = Alert(enterprise=ENT, rule="lex_projected", shift_date=DAY.isoformat(),
                  profile="CN-GBZ", severity="warning", text_zh="预计 LEX,8h 超过 85 dB(A)",
                  text_en="projected LEX,8h above 85 dB(A)", evidence={"projected_lex_db": 87.4},
                  raised_ns=s0 + 2 * 3600 * S, meter="m2", channel=0)
    assert store.open(alert)
    store.acknowledge(alert.id, "张工", "已发放耳罩", now_ns=s0 + 3 * 3600 * S)
    writer.write(pv.pilot_lines(), rp=schema.RP_FOREVER)  # the stored pilot evaluation
    return {"path": path, "reg": reg, "start": s0, "end": s1, "reader": reader}


# ------------------------------------------------------------------------- the JSON model
def _targets(d: dict) -> list[tuple[str, dict]]:
    return [(p["title"], t) for p in d["panels"] for t in p.get("targets", [])]


def test_every_dashboard_builds_and_round_trips_through_the_sdk_model():
    built = boards.build_all()
    assert [b.uid for b in built] == list(boards.UIDS)
    for b in built:
        d = boards.dashboard_json(b)
        assert d["schemaVersion"] == 41  # the Grafana 11.6 dashboard schema
        again = dm.Dashboard.from_json(d)
        assert boards.dashboard_json(again) == d  # nothing lost or added by the model
        for title, t in _targets(d):
            assert set(t) >= {"refId", "datasource", "query", "rawQuery", "resultFormat"}
            assert t["datasource"] == {"type": "influxdb", "uid": boards.DEFAULT_DATASOURCE_UID}
            assert t["rawQuery"] is True and t["resultFormat"] in ("time_series", "table")
            assert "e-" not in t["query"], title  # InfluxQL reads no scientific notation
        refs = [[t["refId"] for t in p.get("targets", [])] for p in d["panels"]]
        assert all(len(r) == len(set(r)) for r in refs)
    # the targets came back as our InfluxQuery model, not the SDK's unknown bag
    panel = dm.Dashboard.from_json(boards.dashboard_json(built[0])).panels[0]
    assert isinstance(panel.targets[0], InfluxQuery)


def test_dataquery_builder_emits_the_influxql_target():
    t = Dataquery("ds1").ref_id("B").query("SELECT 1").table().build().to_json()
    assert t == {"refId": "B", "datasource": {"type": "influxdb", "uid": "ds1"},
                 "query": "SELECT 1", "rawQuery": True, "resultFormat": "table"}
    with pytest.raises(ValueError):
        Dataquery("ds1").result_format("heatmap")


def test_thresholds_are_the_profiles_edges():
    prof = profile("CN-GBZ")
    # noise work from 80, grades I–IV from 85/90/94/100 dB(A) (GBZ/T 229.4-2012)
    assert [v for v, _ in boards.grade_thresholds(prof)] == [None, 80.0, 85.0, 90.0, 94.0, 100.0]
    assert boards.limit_thresholds(prof) == [(None, "green"), (85.0, "red")]
    d = boards.dashboard_json(boards.build_all()[2])  # exposure: the limit line
    lex = d["panels"][0]["fieldConfig"]["defaults"]
    assert [s["value"] for s in lex["thresholds"]["steps"]] == [None, 85.0]
    assert lex["custom"]["thresholdsStyle"]["mode"] == "line"


# ------------------------------------------------------------------ queries on InfluxDB
def _substitute(q: str, start: int, end: int, interval: str = "1m") -> str:
    return (q.replace("$timeFilter", f"time >= {start} AND time < {end}")
            .replace("$__interval", interval).replace("$enterprise", ENT)
            .replace("$meter", "(m1|m2)"))


def _run(reader, q: str) -> list:
    return reader.query(q, epoch="ns")


def _by_post(series) -> dict:
    return {(s.tags.get("meter"), s.tags.get("channel")): s.rows for s in series}


def test_every_panel_query_returns_the_scenario(stack, scenario):
    reader, s0, s1 = scenario["reader"], scenario["start"], scenario["end"]
    d = {b.uid: boards.dashboard_json(b) for b in boards.build_all(reg=scenario["reg"])}
    seen = 0

    # template variables
    for board in d.values():
        for v in board["templating"].get("list", []):
            values = {r["value"] for s in _run(reader, _substitute(v["query"], s0, s1))
                      for r in s.rows}
            assert values == ({"hualong"} if v["name"] == "enterprise" else {"m1", "m2"})

    # live floor over two minutes of the shift, 1 min interval
    lo, hi = s0 + 10 * MIN, s0 + 12 * MIN
    live = {t["refId"] + p["title"]: t["query"] for p in d["tingbao-live-floor"]["panels"]
            for t in p["targets"]}
    for key, q in live.items():
        seen += 1
        series = _by_post(_run(reader, _substitute(q, lo, hi)))
        assert set(series) == {("m1", "0"), ("m2", "0")}, key
        if "now" in key:  # newest second hi-1 s: m2 in the second half of its minute, 80
            assert series[("m1", "0")][0]["laeq"] == 84.0
            assert series[("m2", "0")][0]["laeq"] == 80.0
        elif "latest" in key:  # lafmax = L + 4, lcpeak = L + 20
            assert {k: series[("m2", "0")][0][k] for k in ("laeq", "lafmax", "lcpeak")} == {
                "laeq": 80.0, "lafmax": 84.0, "lcpeak": 100.0}
        elif "LAeq over time" in key:
            # per minute: 10 lg(ΣEA / (p0² Σcoverage)) = 10 lg(½·10^9 + ½·10^8) = 87.40
            # (the MEAN of the decibels would say 85.0)
            for post, want in ((("m1", "0"), M1_LAEQ), (("m2", "0"), M2_LAEQ)):
                rows = series[post]
                assert [r["time"] for r in rows] == [lo, lo + MIN]
                assert all(r["laeq"] == pytest.approx(want, abs=1e-9) for r in rows)
        else:  # LCpeak max per minute: 90 + 20 for m2, 84 + 20 for m1
            assert [r["lcpeak"] for r in series[("m2", "0")]] == [110.0, 110.0]
            assert [r["lcpeak"] for r in series[("m1", "0")]] == [104.0, 104.0]

    # alerts review over the shift: opened at +2 h, acknowledged at +3 h
    alerts = {p["title"]: p["targets"][0]["query"] for p in d["tingbao-alerts"]["panels"]}
    for title, q in alerts.items():
        seen += 1
        rows = [{**s.tags, **r} for s in _run(reader, _substitute(q, s0, s1)) for r in s.rows]
        if "raised" in title:  # one alert opened in the range: COUNT = 1
            assert [r["raised"] for r in rows] == [1]
        elif "by state" in title:  # one open and one acknowledged change
            assert {r["state"]: r["changes"] for r in rows} == {"open": 1, "acknowledged": 1}
        else:  # newest first; the service opened it
            assert [(r["state"], r["who"], r["note"]) for r in rows] == [
                ("acknowledged", "张工", "已发放耳罩"), ("open", "tingbao", "")]
            assert rows[0]["text_zh"] == "预计 LEX,8h 超过 85 dB(A)"
            assert rows[0]["meter"] == "m2" and rows[0]["rule"] == "lex_projected"
    # outside the range: nothing
    empty = _run(reader, _substitute(alerts["新告警 · alerts raised"], s1, s1 + MIN))
    assert not any(s.rows for s in empty)

    # exposure over the day: LEX,8h of a fully measured 8 h shift = its LAeq
    rng = (s0 - 3600 * S, s1)
    exposure = {p["title"]: p["targets"][0]["query"] for p in d["tingbao-exposure"]["panels"]}
    for title, q in exposure.items():
        seen += 1
        series = _run(reader, _substitute(q, *rng))
        if "per post" in title:
            posts = _by_post(series)
            assert set(posts) == {("m1", "0"), ("m2", "0")}
            assert posts[("m1", "0")][0]["lex_8h"] == pytest.approx(M1_LAEQ, abs=0.01)
            assert posts[("m2", "0")][0]["lex_8h"] == pytest.approx(M2_LAEQ, abs=0.01)
            assert posts[("m1", "0")][0]["time"] == s0  # one point per shift, at its start
        elif "per job" in title:
            # 4 h at m1 + 4 h at m2: 10 lg(½·10^8.4 + ½·10^8.74) = 86.0 dB(A)
            (job,) = series
            assert job.tags == {"job": "press-fitter"}
            assert job.rows[0]["lex_8h"] == pytest.approx(JOB_LEX, abs=0.01)
        else:
            rows = [r for s in series for r in s.rows]
            grades = {(r["kind"], r["meter"] or r["job"]): r["grade"] for r in rows}
            # 84.0 below grade I; 87.4 and 86.0 in grade I (85 ≤ L < 90)
            assert grades == {("post", "m1"): "0", ("post", "m2"): "I",
                              ("job", "press-fitter"): "I"}
            assert all(r["date"] == DAY.isoformat() for r in rows)

    # pilot evaluation over 2020 … now: the stored results of support/pilot_views.py and the
    # exposure context (2 post-days, 1 at or above 85 (m2) → 50 %; the comparison group has
    # no closed days)
    pilot_rng = (pv.day_ns(dt.date(2020, 1, 1)), s1 + 86400 * S)
    rates = {(r.scope, r.key, r.period, r.source): r for r in pv.RATES}
    for p in d["tingbao-pilot"]["panels"]:
        answers = {}
        for t in p.get("targets", []):
            seen += 1
            answers[t["refId"]] = [{**s.tags, **r} for s in _run(reader, _substitute(
                t["query"], *pilot_rng)) for r in s.rows]
        title = p["title"]
        if "per group, yearly" in title:
            # the yearly group rates (2023, 2025; not the 2024-Q3 industry quarter): rate,
            # lo95 and hi95 of each (key, source) at its year's start
            got = {(r["key"], r["source"], r["time"]): (r["rate"], r["lo95"], r["hi95"])
                   for r in answers["A"]}
            want = {(r.key, r.source, pv.day_ns(pv.period_start(r.period))):
                    (r.rate, r.lo95, r.hi95) for r in pv.RATES
                    if r.scope == "group" and len(r.period) == 4}
            assert set(got) == set(want) and len(got) == 4
            assert all(got[k] == pytest.approx(v) for k, v in want.items())
            steps = [x["value"] for x in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]
            assert steps == [None, 53.7, 65.0, 70.0, 80.0]  # baseline 2020, milestones
        elif "lower bound vs milestones" in title:
            # the newest yearly spot-check lower bound per group: pilot 2025 77.11 (Wilson,
            # 164/200), comparison 2025 55.01 (110/180), all 2024 62.1
            got = {r["key"]: r["lower95"] for r in answers["A"]}
            assert got == pytest.approx({
                "pilot": rates[("group", "pilot", "2025", "observed")].lower95,
                "comparison": rates[("group", "comparison", "2025", "observed")].lower95,
                "all": 62.1})
            assert got["pilot"] == pytest.approx(77.11, abs=0.01)
        elif "rates per group and period" in title or "rates per enterprise" in title:
            want = {k: r for k, r in rates.items()
                    if (k[0] == "enterprise") == ("enterprise" in title)}
            got = {(r["scope"], r["key"], r["period"], r["source"]): r for r in answers["A"]}
            assert set(got) == set(want)
            for k, r in want.items():
                g = got[k]
                assert (g["rate"], g["lower95"], g["milestone"], g["met"], g["n"], g["x"],
                        g["method"]) == (pytest.approx(r.rate), pytest.approx(r.lower95),
                                         r.milestone, r.met, r.n, r.x, r.method)
        elif title.startswith("差异中的差异 ·"):
            # (79.8 − 55.2) − (61.2 − 54.9) = 18.3 pp [9.1, 27.5]
            (row,) = answers["A"]
            assert (row["did_pp"], row["lo_pp"], row["hi_pp"]) == (18.3, 9.1, 27.5)
        elif "DiD with its cells" in title:
            (row,) = answers["A"]
            assert {k: row[k] for k in pv.DID} == pv.DID
        elif "hearing screening" in title:
            # by each worker's latest result (w1 mild, w2 moderate + overdue, w3 susceptible
            # + STS, w4 age-corrected STS; w4's older overdue does not count), 6 audiograms;
            # a count that is zero has no row (severe)
            cols = {}
            for rows in answers.values():
                for r in rows:
                    assert r["enterprise"] == pv.PILOT
                    cols.update({k: v for k, v in r.items() if k not in ("enterprise", "time")})
            want = {k: v for k, v in pv.SCREENING_EXPECTED.items()
                    if v and k not in ("workers_examined", "screened", "exams")}
            assert cols == {"audiograms": 6, **want}
        elif "fit-test" in title:
            # 3 tests, 2 passed: pass_pct = 2/3 × 100 = 66.7 (Grafana's calculateField)
            assert [(r["enterprise"], r["tests"]) for r in answers["A"]] == [(pv.PILOT, 3)]
            assert [(r["enterprise"], r["passed"]) for r in answers["B"]] == [(pv.PILOT, 2)]
        elif "per enterprise" in title:
            assert [(r["enterprise"], r["post_days"]) for r in answers["A"]] == [(ENT, 2)]
            assert [(r["enterprise"], r["over_limit"]) for r in answers["B"]] == [(ENT, 1)]
        elif title.endswith(": pilot"):
            assert answers["A"][0]["post_days"] == 2 and answers["B"][0]["over_limit"] == 1
        else:
            assert title.endswith(": comparison"), title
            assert answers == {"A": [], "B": []}
    total = sum(len(_targets(x)) for x in d.values())
    assert seen == total and total >= 12


# ------------------------------------------------------------------------------ provisioning
def test_export_writes_documented_provisioning(stack, scenario, tmp_path):
    r = run_tingbao("dashboards", "export", str(tmp_path), "--config", str(scenario["path"]))
    assert r.returncode == 0, r.stderr
    prov = tmp_path / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "tingbao.yaml").read_text(encoding="utf-8"))
    assert ds["apiVersion"] == 1
    (src,) = ds["datasources"]
    assert {k: src[k] for k in ("name", "type", "uid", "access")} == {
        "name": "tingbao InfluxDB", "type": "influxdb", "uid": boards.DEFAULT_DATASOURCE_UID,
        "access": "proxy"}
    reader = stack.influx("reader")
    assert src["url"] == reader.url and src["jsonData"] == {"dbName": "tingbao",
                                                            "httpMode": "POST"}
    # the reader account of the local stack (connect.py): its password logs in
    grafana_view = InfluxClient(src["url"], src["jsonData"]["dbName"], src["user"],
                                src["secureJsonData"]["password"])
    assert {r["name"] for s in grafana_view.query("SHOW MEASUREMENTS") for r in s.rows} >= {
        schema.LEVELS, schema.EXPOSURE, schema.ALERTS}  # the account logs in and reads
    db = yaml.safe_load((prov / "dashboards" / "tingbao.yaml").read_text(encoding="utf-8"))
    assert db["apiVersion"] == 1
    (provider,) = db["providers"]
    assert provider["type"] == "file"
    json_dir = prov / "dashboards" / "tingbao"
    assert provider["options"]["path"] == str(json_dir.resolve())
    files = sorted(p.stem for p in json_dir.glob("*.json"))
    assert files == sorted(boards.UIDS)
    pilot = json.loads((json_dir / "tingbao-pilot.json").read_text(encoding="utf-8"))
    assert pilot["timezone"] == TZ
    # explicit options win; the password comes from a file
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    out = tmp_path / "o2"
    r = run_tingbao("dashboards", "export", str(out), "--datasource-url", "http://influx:8086",
                    "--db", "db2", "--user", "grafana", "--password-file", str(pw))
    assert r.returncode == 0, r.stderr
    src = yaml.safe_load((out / "provisioning/datasources/tingbao.yaml").read_text())[
        "datasources"][0]
    assert (src["url"], src["jsonData"]["dbName"], src["user"],
            src["secureJsonData"]["password"]) == ("http://influx:8086", "db2", "grafana",
                                                   "s3cret")


# ------------------------------------------------------------------------------ push
class _Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in for Grafana's HTTP API (no Grafana can be installed here): answers the
    folder and dashboard calls push makes and records every request."""

    log: list = []

    def _answer(self, body: object, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        entry = {"method": self.command, "path": self.path,
                 "auth": self.headers.get("Authorization"), "body": body}
        self.log.append(entry)
        return entry

    def do_GET(self):  # noqa: N802
        self._record()
        self._answer([{"uid": "other", "title": "other"}])

    def do_POST(self):  # noqa: N802
        e = self._record()
        if self.path == "/api/folders":
            self._answer({"uid": "f-tingbao", "title": e["body"]["title"]})
        else:
            self._answer({"status": "success", "uid": e["body"]["dashboard"]["uid"]})

    def log_message(self, *args):
        pass


def test_push_uploads_every_dashboard_with_the_token():
    _Recorder.log = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert push(url, "tok-123") == list(boards.UIDS)
    finally:
        server.shutdown()
    log = _Recorder.log
    assert all(e["auth"] == "Bearer tok-123" for e in log)
    assert [(e["method"], e["path"].split("?")[0]) for e in log] == (
        [("GET", "/api/folders"), ("POST", "/api/folders")]
        + [("POST", "/api/dashboards/db")] * len(boards.UIDS))
    assert log[1]["body"]["title"] == "tingbao"
    for e, uid in zip(log[2:], boards.UIDS, strict=True):
        assert e["body"]["overwrite"] is True and e["body"]["folderUid"] == "f-tingbao"
        assert e["body"]["dashboard"]["uid"] == uid
        assert e["body"]["dashboard"]["schemaVersion"] == 41


def test_push_to_nothing_is_one_line_and_exit_2():
    port = free_port()
    with pytest.raises(PushError, match="cannot reach Grafana"):
        push(f"http://127.0.0.1:{port}", "t", timeout=2)
    r = run_tingbao("dashboards", "push", "--url", f"http://127.0.0.1:{port}", "--token", "t")
    assert r.returncode == 2
    assert re.fullmatch(r"tingbao dashboards: error: cannot reach Grafana at \S+: .+\n",
                        r.stderr), r.stderr
