"""The live page (``tingbao serve``) on the real stack (InfluxDB + Mosquitto) through
Starlette's TestClient: the floor snapshot's numbers against the arithmetic of GBZ/T 189.8
(dose so far, projected LEX,8h) stated in each test, the badges, 404s, signing in, the
read-only view, acknowledging and resolving as an inspector (stored in the ``alerts``
measurement), forged and expired sessions refused, hostile notes escaped, the SSE stream, and
``tingbao serve --hash-password``. Levels are written directly as 1 s points."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import subprocess
import sys
import time
import tomllib
import zoneinfo

import pytest
from starlette.testclient import TestClient
from support.levels import steady_levels

from tingbao.analysis.alert_store import Alert, AlertStore, mqtt_publisher
from tingbao.analysis.shifts import shift_at
from tingbao.collector import schema
from tingbao.collector.registry.connect import mqtt_endpoint
from tingbao.collector.registry.site import registry_from_mapping
from tingbao.collector.rollups import Rollups
from tingbao.dashboards.live import auth
from tingbao.dashboards.live.app import create_app
from tingbao.dashboards.live.data import FloorData

TZ = "Asia/Shanghai"
ENT = "live-ent"
NS = 10**9
P0 = 20e-6
PASSWORD = "correct horse 听保"
# a shift that started 2 h ago (local), 8 h long, every day: now is always inside it
START = (dt.datetime.now(zoneinfo.ZoneInfo(TZ)) - dt.timedelta(hours=2)).strftime("%H:%M")
CALIBRATED = (dt.date.today() - dt.timedelta(days=10)).isoformat()


def site_toml(stack_dir) -> str:
    return f"""
[deployment]
timezone = "{TZ}"
[stack]
data_dir = "{stack_dir}"
[[enterprises]]
id = "{ENT}"
name_zh = "实况厂"
name_en = "Live works"
industry = "machinery"
group = "pilot"
shift = {{ start = "{START}", hours = 8.0, days_per_week = 7 }}
[[sites]]
id = "w1"
enterprise = "{ENT}"
name_zh = "冲压车间"
[[meters]]
id = "lv1"
enterprise = "{ENT}"
site = "w1"
calibrated = {CALIBRATED}
[[meters]]
id = "lv2"
enterprise = "{ENT}"
site = "w1"
[[meters]]
id = "lv3"
enterprise = "{ENT}"
site = "w1"
calibrated = {CALIBRATED}
"""


def _points(meter, start_ns, seconds, level, overload_last=False):
    return steady_levels(ENT, "w1", meter, start_ns, seconds, level,
                         extra=lambda i: {"overload": overload_last and i == seconds - 1})


@pytest.fixture(scope="module")
def live(stack):
    stack.write_state()
    reg = registry_from_mapping(tomllib.loads(site_toml(stack.data_dir)))
    reader, writer = stack.influx("reader"), stack.influx("writer")
    t = time.time_ns() // NS * NS
    # lv1: the last 600 s at 94 dB(A); lv2: the last 600 s at 80 dB(A), its newest second
    # overloaded; lv3: nothing
    writer.write(_points("lv1", t - 600 * NS, 600, 94.0)
                 + _points("lv2", t - 600 * NS, 600, 80.0, overload_last=True))
    Rollups(reader, writer).recompute_range(t - 600 * NS, t - 180 * NS)
    publish, close = mqtt_publisher(mqtt_endpoint(reg, stack_dir=stack.data_dir), timeout=5)
    store = AlertStore(reader, writer, publish)
    users = {"insp": auth.User("insp", "inspector", auth.hash_password(PASSWORD))}
    alert = Alert(enterprise=ENT, rule="lex_projected", shift_date=dt.date.today().isoformat(),
                  profile="CN-GBZ", severity="warning", text_zh="预计超标 <b>x</b>",
                  text_en="projected exceedance", evidence={}, raised_ns=t, meter="lv1",
                  channel=0)
    store.open(alert)
    app = create_app(reg, store, FloorData(reg, reader), users=users, session_minutes=60)
    yield {"reg": reg, "t": t, "store": store, "app": app, "alert": alert.id,
           "users": users, "reader": reader}
    close()


def _client(live) -> TestClient:
    return TestClient(live["app"])


def _sign_in(c: TestClient) -> str:
    r = c.post("/login", data={"user": "insp", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303
    page = c.get("/alerts").text
    return re.search(r'data-csrf="([^"]+)"', page).group(1)


def test_snapshot_numbers(live):
    c = _client(live)
    snap = c.get(f"/api/floor/{ENT}").json()
    assert snap["enterprise"] == ENT
    m = {x["meter"]: x for x in snap["meters"]}
    assert set(m) == {"lv1", "lv2", "lv3"}
    w = shift_at(live["reg"], ENT, snap["time_ns"])
    rest_s = (w.period.end_ns - snap["time_ns"]) / NS
    # lv1: 600 s at 94 dB(A) so far. dose = 100 · 600 s · 10^9.4 / (28 800 s · 10^8.5)
    # = 100 · (600/28 800) · 10^0.9 = 16.54 %
    dose = 100 * 600 / 28800 * 10**0.9
    assert m["lv1"]["dose_pct"] == pytest.approx(dose, abs=0.01)
    # projected: so far 600 s + the rest of the shift at the recent 94 dB(A):
    # 94 + 10 lg((600 + rest) / 28 800)
    assert m["lv1"]["projected_lex_8h"] == pytest.approx(
        94 + 10 * math.log10((600 + rest_s) / 28800), abs=0.01)
    assert (m["lv1"]["laeq"], m["lv1"]["lafmax"], m["lv1"]["lcpeak"]) == (94.0, 97.0, 109.0)
    # ~6 h left of 8: 94 + 10 lg((600 + 21 600)/28 800) ≈ 92.9 → GBZ/T 229.4 grade II (90–94)
    assert m["lv1"]["grade"] == "II"
    # lv2 at 80: projected ≈ 78.9 < 85 → no grade ("0"); dose 100 · (600/28 800) · 10^-0.5
    assert m["lv2"]["dose_pct"] == pytest.approx(100 * 600 / 28800 * 10**-0.5, abs=0.01)
    assert m["lv2"]["grade"] == "0"
    assert m["lv2"]["overload"] and not m["lv1"]["overload"]
    assert m["lv2"]["uncalibrated"] and not m["lv1"]["uncalibrated"]
    assert m["lv3"]["offline"] and not m["lv1"]["offline"] and not m["lv2"]["offline"]
    assert m["lv3"]["laeq"] is None and m["lv3"]["dose_pct"] == 0.0


def test_floor_page_tiles_and_badges(live):
    html = _client(live).get(f"/floor/{ENT}").text
    for meter in ("lv1", "lv2", "lv3"):
        assert f'data-meter="{meter}" data-channel="0"' in html
    tile = re.search(r'<div class="tile ([^"]+)" data-meter="lv1".*?chart-btn', html, re.S)
    assert tile.group(1) == "grade-II" and '<span class="laeq">94.0</span>' in tile.group(0)
    lv3 = re.search(r'data-meter="lv3".*?chart-btn', html, re.S).group(0)
    assert 'class="badge offline"' in lv3 and 'class="badge overload"' not in lv3
    assert 'id="lang-switch"' in html and "/static/vendor/echarts.min.js" in html
    assert "车间" in html and "Workshop" in _client(live).get(f"/floor/{ENT}?lang=en").text
    assert _client(live).get("/static/vendor/echarts.min.js").status_code == 200


def test_history_minutes(live):
    h = _client(live).get(f"/api/floor/{ENT}/history?meter=lv1&channel=0&minutes=60").json()
    # 600 s at 94 dB(A): 10 or 11 minutes (the first may be partial), each LAeq = 94.0
    assert 10 <= len(h["points"]) <= 11 and {p[1] for p in h["points"]} == {94.0}


def test_unknown_enterprise_or_meter_404(live):
    c = _client(live)
    for url in ("/floor/nope", "/api/floor/nope", "/exposure/nope", "/reports/nope",
                f"/api/floor/{ENT}/history?meter=zz", "/events/floor/nope"):
        r = c.get(url)
        assert r.status_code == 404, url
        assert "未找到" in r.text and "Not found" in r.text
    assert c.get("/", follow_redirects=False).headers["location"] == f"/floor/{ENT}"


def test_login_wrong_password_refused(live):
    c = _client(live)
    form = c.get("/login").text
    assert 'id="login-user"' in form and 'id="login-password"' in form
    r = c.post("/login", data={"user": "insp", "password": "wrong"})
    assert r.status_code == 401 and '<p class="error">' in r.text
    r = c.post("/login", data={"user": "nobody", "password": PASSWORD})
    assert r.status_code == 401
    _sign_in(c)
    assert 'id="signed-in"' in c.get("/alerts").text


def test_read_only_view_refuses_changes(live):
    c = _client(live)
    html = c.get("/alerts").text
    assert f'data-id="{live["alert"]}"' in html
    assert 'class="ack"' not in html and 'class="resolve"' not in html
    r = c.post(f"/alerts/{live['alert']}/ack", data={"note": "x"})
    assert r.status_code == 401
    assert live["store"].get(live["alert"]).state == "open"


def test_inspector_ack_and_resolve_stored(live, stack):
    c = _client(live)
    csrf = _sign_in(c)
    aid = live["alert"]
    html = c.get("/alerts").text
    assert f'<textarea class="note" data-id="{aid}"' in html
    assert f'<button type="button" class="ack" data-id="{aid}"' in html
    # without the CSRF token: refused
    assert c.post(f"/alerts/{aid}/ack", json={"note": "x"}).status_code == 403
    hostile = "<script>alert(1)</script>"
    r = c.post(f"/alerts/{aid}/ack", json={"note": hostile}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    r = c.post(f"/alerts/{aid}/ack", json={"note": "again"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409 and "already acknowledged" in r.json()["error"]
    assert c.post("/alerts/0123456789abcdef/ack", json={"note": "x"},
                  headers={"X-CSRF-Token": csrf}).status_code == 404
    html = c.get("/alerts").text
    assert hostile not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    r = c.post(f"/alerts/{aid}/resolve", data={"note": "耳塞已发放", "csrf": csrf},
               follow_redirects=False)
    assert r.status_code == 303
    rows = stack.influx("reader").query_rows(
        f"SELECT * FROM {schema.source(schema.ALERTS, schema.RP_FOREVER)} WHERE "
        f"{schema.where_tags([('id', aid)])}")
    by_state = {r["state"]: r for r in rows}
    assert set(by_state) == {"open", "acknowledged", "resolved"}
    assert by_state["acknowledged"]["who"] == "insp"
    assert by_state["acknowledged"]["note"] == hostile
    assert by_state["resolved"]["note"] == "耳塞已发放"


def test_forged_and_expired_sessions_refused(live):
    c = _client(live)
    _sign_in(c)
    cookie = c.cookies.get("tingbao_session")
    payload, _, sig = cookie.partition(".")
    forged = TestClient(live["app"])
    forged.cookies.set("tingbao_session", payload + "." + "A" * len(sig))
    r = forged.post(f"/alerts/{live['alert']}/ack", json={"note": "x"},
                    headers={"X-CSRF-Token": "whatever"})
    assert r.status_code == 401
    # a 3 s session: signed in, then 4.5 s later it is treated as signed out
    short = create_app(live["reg"], live["store"], FloorData(live["reg"], live["reader"]),
                       users=live["users"], session_minutes=3 / 60)
    s = TestClient(short)
    csrf = _sign_in(s)
    time.sleep(4.5)
    r = s.post(f"/alerts/{live['alert']}/resolve", json={"note": "late"},
               headers={"X-CSRF-Token": csrf})
    assert r.status_code == 401
    assert 'class="resolve"' not in s.get("/alerts").text


def test_sse_floor_event(live):
    c = _client(live)
    with c.stream("GET", f"/events/floor/{ENT}") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for text in r.iter_lines():
            if text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: ") and event == "floor":
                snap = json.loads(text[6:])
                break
    assert snap["enterprise"] == ENT
    assert {m["meter"] for m in snap["meters"]} == {"lv1", "lv2", "lv3"}


def test_reports_listed_and_no_traversal(live, tmp_path):
    (tmp_path / f"report-{ENT}-2026-11.html").write_text("<p>r</p>")
    (tmp_path / "report-other-2026-11.html").write_text("<p>o</p>")
    app = create_app(live["reg"], live["store"], FloorData(live["reg"], live["reader"]),
                     reports_dir=tmp_path)
    c = TestClient(app)
    html = c.get(f"/reports/{ENT}").text
    assert f"report-{ENT}-2026-11.html" in html and "report-other" not in html
    assert c.get(f"/reports/{ENT}/report-{ENT}-2026-11.html").text == "<p>r</p>"
    assert c.get(f"/reports/{ENT}/report-other-2026-11.html").status_code == 404
    assert c.get(f"/reports/{ENT}/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_exposure_page(live):
    r = _client(live).get(f"/exposure/{ENT}?lang=en")
    # nothing closed in the ledger yet: the page says so, the limit line is 85 dB(A)
    assert r.status_code == 200 and "No closed shifts" in r.text and "Limit 85" in r.text
    assert r.cookies.get("lang") == "en"


def test_hash_password_cli_round_trip():
    out = subprocess.run([sys.executable, "-m", "tingbao.edge.cli.main", "serve",
                          "--hash-password"], input="s3cret 听保\n", capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    h = out.stdout.strip()
    assert h.startswith("$argon2id$")
    users = {"u": auth.User("u", "inspector", h)}
    assert auth.verify(users, "u", "s3cret 听保") is not None
    assert auth.verify(users, "u", "s3cret") is None


def test_serve_command_starts_prints_url_and_stops_on_sigterm(live, stack, tmp_path):
    import signal
    import urllib.request

    from support.commands import free_port, tingbao

    site = tmp_path / "site.toml"
    site.write_text(site_toml(stack.data_dir), encoding="utf-8")
    port = free_port()
    p = tingbao("serve", "--config", str(site), "--port", str(port), "--no-mqtt",
                "--users", "configs/users.example.toml")
    try:
        first = p.stdout.readline()
        assert first.strip() == f"tingbao serve: http://127.0.0.1:{port}/floor/{ENT}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/floor/{ENT}",
                                            timeout=5) as r:
                    snap = json.loads(r.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "the page did not answer"
                time.sleep(0.2)
        assert {m["meter"] for m in snap["meters"]} == {"lv1", "lv2", "lv3"}
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
