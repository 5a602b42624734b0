"""The live page (`tingbao serve`) in real headless Chromium (Selenium, Debian chromium and
chromium-driver; support/browser.py), against the real stack (InfluxDB + Mosquitto).

Set-up (module scope): a registry with one enterprise whose 8 h shift started an hour ago
(Asia/Shanghai, 7 workdays, so any day works), three meters; the hour so far back-filled with
1 s levels (m1 at 95, m2 at 82, m3 at 70 dB(A)) and rolled up into minutes as the collector
would; a thread writing one 1 s point per meter every second at the current time with a level
that changes each second; a users file with one inspector (hash by
`tingbao serve --hash-password`); `tingbao serve` as a child process on a free port.

The page's contract (issue 13): floor tiles ``div.tile[data-meter][data-channel]`` with
``span.laeq`` …, updated by SSE without reload; ``tr.alert[data-id][data-state]`` rows with
``td.state``, ``textarea.note``/``button.ack``/``button.resolve`` only when signed in; the
login form ``#login-user``, ``#login-password``, ``#login-submit`` and ``p.error``;
``a#lang-switch``. Screenshots go to tests/artifacts/ (floor-view.png is the README's). Each
test has a browser of its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zoneinfo
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from support import pilot_views
from support.browser import chromium, page_tail, screenshot, wait_until
from support.commands import TINGBAO, free_port, tingbao
from support.stack import influx_query
from support.wait import wait_for

from tingbao.analysis.alert_store import AlertStore, decode_text, mqtt_publisher
from tingbao.analysis.analyzer import Analyzer
from tingbao.analysis.shifts import shift_at
from tingbao.collector import schema
from tingbao.collector.lineprotocol import line
from tingbao.collector.registry import load_registry
from tingbao.collector.registry.connect import mqtt_endpoint
from tingbao.collector.rollups import Rollups

NS = 1_000_000_000
P0 = 20e-6
TZ = "Asia/Shanghai"
ENT = "web-ent"
WORKSHOP = "w1"
BASE_DB = {"m1": 95.0, "m2": 82.0, "m3": 70.0}
"""Each meter's level in the back-filled hour (dB(A)); the live points wander around it."""
INSPECTOR, PASSWORD = "inspector", "耳塞-Plugs-2026!"
HOSTILE = "<img src=x onerror=alert(1)>"


def level_at(meter: str, seq: int) -> float:
    """The live level of ``meter``'s ``seq``-th second (dB(A)): its base plus a 7-step
    staircase of 0.7 dB steps, so two consecutive seconds always differ by ≥ 0.7 dB."""
    return BASE_DB[meter] + 0.7 * (seq % 7) - 2.1


def levels_line(meter: str, t_ns: int, level: float, seq: int) -> str:
    """One 1 s ``levels`` point as the collector stores it: ea = p0²·10^(L/10) Pa²·s for a
    fully covered second."""
    return line(schema.LEVELS, {"enterprise": ENT, "site": WORKSHOP, "meter": meter,
                                "channel": "0"},
                {"ea": P0**2 * 10 ** (level / 10), "coverage": 1.0, "duration_s": 1.0,
                 "laeq": level, "lafmax": level + 3, "lcpeak": level + 15, "seq": seq}, t_ns)


class LiveLevels(threading.Thread):
    """Writes one point per meter every second at the current (whole) second, as live meters
    do; ``written[meter]`` holds the levels written so far."""

    def __init__(self, writer):
        super().__init__(daemon=True, name="live-levels")
        self.writer = writer
        self.stop = threading.Event()
        self.written: dict[str, list[float]] = {m: [] for m in BASE_DB}
        self.error: BaseException | None = None

    def run(self):
        seq = 0
        while not self.stop.is_set():
            t = time.time_ns() // NS * NS
            try:
                self.writer.write([levels_line(m, t, level_at(m, seq), 1_000_000 + seq)
                                   for m in BASE_DB])
            except Exception as e:  # shown by the tests that need the points
                self.error = e
            for m in BASE_DB:
                self.written[m].append(level_at(m, seq))
            seq += 1
            self.stop.wait(max(0.0, (t + NS - time.time_ns()) / NS))


def site_toml(stack, shift_start: str, calibrated: dict[str, dt.date]) -> str:
    meters = "".join(f'[[meters]]\nid = "{m}"\nenterprise = "{ENT}"\nsite = "{WORKSHOP}"\n'
                     f'calibrated = {calibrated[m].isoformat()}\n' for m in BASE_DB)
    return f"""
[deployment]
timezone = "{TZ}"
[stack]
data_dir = "{stack.data_dir}"
[[enterprises]]
id = "{ENT}"
name_zh = "冲压厂"
name_en = "Stamping works"
industry = "machinery"
group = "pilot"
shift = {{ start = "{shift_start}", hours = 8.0, days_per_week = 7 }}
[[sites]]
id = "{WORKSHOP}"
enterprise = "{ENT}"
name_zh = "冲压车间"
name_en = "Press shop"
{meters}"""


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


@dataclasses.dataclass(frozen=True)
class Served:
    base: str
    """the page's URL, ``http://127.0.0.1:PORT``"""
    site: Path
    """the registry file"""
    live: LiveLevels
    shift_start_ns: int
    """the running shift's start, UTC ns (an hour before the module started)"""


@pytest.fixture(scope="module")
def served(stack, tmp_path_factory):
    """:class:`Served`: `tingbao serve` on the stack, with the hour
    so far back-filled and live points flowing."""
    tmp = tmp_path_factory.mktemp("serve")
    stack.write_state()
    now = dt.datetime.now(zoneinfo.ZoneInfo(TZ))
    start = (now - dt.timedelta(hours=1)).replace(second=0, microsecond=0)
    site = tmp / "site.toml"
    # m1 and m2 verified 30 days ago; m3 two years ago, past the 365-day interval
    calibrated = {m: now.date() - dt.timedelta(days=30) for m in BASE_DB}
    calibrated["m3"] = now.date() - dt.timedelta(days=730)
    site.write_text(site_toml(stack, start.strftime("%H:%M"), calibrated), encoding="utf-8")
    reader, writer = stack.influx("reader"), stack.influx("writer")
    # the hour so far at each meter's base level, and its minutes rolled up
    start_ns = int(start.timestamp()) * NS
    now_ns = time.time_ns() // NS * NS
    lines = [levels_line(m, t, BASE_DB[m], i)
             for m in BASE_DB for i, t in enumerate(range(start_ns, now_ns, NS))]
    for i in range(0, len(lines), 20_000):
        writer.write(lines[i:i + 20_000])
    Rollups(reader, writer).recompute_range(start_ns, now_ns - 180 * NS)
    live = LiveLevels(stack.influx("writer"))
    live.start()

    hashed = subprocess.run([*TINGBAO, "serve", "--hash-password"], input=PASSWORD + "\n",
                            capture_output=True, text=True, timeout=60)
    assert hashed.returncode == 0, hashed.stderr
    digest = hashed.stdout.strip()
    assert digest.startswith("$argon2id$"), hashed.stdout
    users = tmp / "users.toml"
    users.write_text(f'[[users]]\nname = "{INSPECTOR}"\nrole = "inspector"\n'
                     f"password_hash = '{digest}'\n", encoding="utf-8")

    port = free_port()
    log = tmp / "serve.log"
    proc = tingbao("serve", "--config", site, "--stack", stack.data_dir, "--host", "127.0.0.1",
                   "--port", port, "--users", users, log=log)
    base = f"http://127.0.0.1:{port}"

    def up():
        assert proc.poll() is None, f"tingbao serve exited {proc.returncode}: " \
                                    f"{log.read_text()[-2000:]}"
        try:
            return _get(f"{base}/login")[0] == 200
        except OSError:
            return False

    try:
        wait_for(up, timeout=30, what="tingbao serve to answer /login", interval=0.2,
                 detail=lambda: log.read_text()[-2000:])
        yield Served(base, site, live, start_ns)
    finally:
        live.stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        live.join(timeout=5)


@pytest.fixture
def browser():
    """A browser of each test's own: no cookies, no pages kept from another test."""
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def raise_alerts(stack, served):
    """A function that runs the analysis service's in-shift rules once (as `tingbao analyze`
    does, storing and publishing through the analysis account) and returns the id of m1's
    projected-LEX early warning; later calls return the same id."""
    site = served.site
    reg = load_registry(site)
    publish, close = mqtt_publisher(mqtt_endpoint(reg, stack_dir=stack.data_dir), timeout=5.0)
    store = AlertStore(stack.influx("reader"), stack.influx("writer"), publish)
    done: list[str] = []

    def run() -> str:
        if not done:
            now = time.time_ns()
            Analyzer(reg, store.reader, store.writer, store).in_shift(
                shift_at(reg, ENT, now), now)
            warn = store.list(enterprise=ENT, rule="lex_projected", meter="m1")
            assert len(warn) == 1, [(a.rule, a.meter) for a in store.list(enterprise=ENT)]
            done.append(warn[0].id)
        return done[0]

    yield run
    close()


def _stored_states(stack, alert_id: str) -> dict[str, dict]:
    """The alert's stored points in InfluxDB by state (tag ``state``)."""
    rows = influx_query(stack, f"SELECT * FROM "
                               f"{schema.source(schema.ALERTS, schema.RP_FOREVER)} WHERE "
                               f"{schema.where_tags([('id', alert_id)])}")
    return {r["state"]: r for r in rows}


def _tiles(browser) -> dict[str, str]:
    """meter → its tile's LAeq text."""
    return {t.get_attribute("data-meter"): t.find_element("css selector", "span.laeq").text
            for t in browser.find_elements("css selector", "div.tile[data-meter]")}


def _mark_page(browser) -> None:
    """A marker in the page's JS world: a reload would drop it."""
    browser.execute_script("window.__tingbaoNoReload = 42;")


def _not_reloaded(browser) -> bool:
    return browser.execute_script("return window.__tingbaoNoReload === 42;")


# --------------------------------------------------------------------------------- tests
def test_floor_shows_every_meter_and_its_values_change(served, browser):
    base, live = served.base, served.live
    browser.get(f"{base}/floor/{ENT}")
    first = wait_until(browser, lambda: (t := _tiles(browser)) and all(t.values()) and t,
                       timeout=10, what="three tiles with LAeq values")
    assert sorted(first) == ["m1", "m2", "m3"]
    for tile in browser.find_elements("css selector", "div.tile[data-meter]"):
        assert tile.get_attribute("data-channel") == "0"
        assert any(c.startswith("grade-") for c in tile.get_attribute("class").split())
        for cls in ("lafmax", "lcpeak", "dose", "projected"):
            tile.find_element("css selector", f"span.{cls}")  # present
    _mark_page(browser)
    t0 = time.monotonic()
    # the live points step by 0.7 dB every second: within 3 s each tile shows another value
    changed = wait_until(
        browser, lambda: (t := _tiles(browser)) and all(t[m] != first[m] for m in BASE_DB) and t,
        timeout=3.0, what="every tile's LAeq to change within 3 s")
    assert time.monotonic() - t0 <= 3.5
    assert _not_reloaded(browser), "the floor page reloaded instead of updating in place"
    assert live.error is None, live.error
    # each shown LAeq is one the thread wrote for that meter (to the display's rounding)
    for m, text in changed.items():
        shown = float(text.split()[0])
        assert min(abs(shown - v) for v in live.written[m]) <= 0.051, (m, text)
    # grade by the projected LEX,8h: m1 (95 dB(A) all along: projected 95, GBZ/T 229.4
    # grade III, 94 ≤ L < 100) is not graded like m3 (70 dB(A), below 85: no grade)
    grades = {t.get_attribute("data-meter"): {c for c in t.get_attribute("class").split()
                                              if c.startswith("grade-")}
              for t in browser.find_elements("css selector", "div.tile[data-meter]")}
    assert grades["m1"] != grades["m3"], grades
    # dose so far = 100 %·(t/8 h)·10^((L − 85)/10), the points averaging L (the staircase's
    # mean over a 7 s cycle is the base): at t ≈ 1 h 01 min, m1 (95) 10·t/8 h ≈ 127 %, m2
    # (82) 0.501·t/8 h ≈ 6.4 %, m3 (70) 0.0316·t/8 h ≈ 0.40 %; projected LEX,8h ≈ the level
    # (recent LAeq = the level so far). 1 % slack: the partial staircase cycle (≤ 0.35 dB for
    # a few of ~3 700 s) and the page's 1 s lag
    t_h = (time.time_ns() - served.shift_start_ns) / NS / 3600
    for tile in browser.find_elements("css selector", "div.tile[data-meter]"):
        m = tile.get_attribute("data-meter")
        dose = float(tile.find_element("css selector", "span.dose").text.split()[0])
        want = 100 * t_h / 8 * 10 ** ((BASE_DB[m] - 85) / 10)
        assert dose == pytest.approx(want, rel=0.01, abs=0.06), (m, dose, want)
        projected = float(tile.find_element("css selector", "span.projected").text.split()[0])
        assert projected == pytest.approx(BASE_DB[m], abs=0.3), (m, projected)
        # badges: none offline (all write every second); m3 verified 730 days ago, past the
        # 365-day calibration interval: uncalibrated, the others not
        badges = {c for b in tile.find_elements("css selector", "span.badge")
                  for c in b.get_attribute("class").split()} - {"badge"}
        assert badges == ({"uncalibrated"} if m == "m3" else set()), (m, badges)
    screenshot(browser, "floor-view")


def test_unknown_enterprise_is_404(served, browser):
    base = served.base
    status, body = _get(f"{base}/floor/no-such-ent")
    assert status == 404 and "no-such-ent" in body, (status, body[:300])


def test_an_alert_raised_by_the_analysis_service_appears_without_reload(served, browser,
                                                                          raise_alerts):
    base = served.base
    browser.get(f"{base}/alerts")
    wait_until(browser, lambda: browser.find_element("css selector", "body"), 10, "the page")
    _mark_page(browser)
    before = {r.get_attribute("data-id")
              for r in browser.find_elements("css selector", "tr.alert")}
    # m1 has been at 95 dB(A) for an hour of the 8 h shift: dose so far 1/8·10^((95−85)/10)
    # = 125 %, projected LEX,8h 95 ≥ 85 → the early warning (and the dose alerts)
    alert_id = raise_alerts()
    assert alert_id not in before
    row = wait_until(browser, lambda: browser.find_element(
        "css selector", f'tr.alert[data-id="{alert_id}"]'), 10, f"alert {alert_id} row")
    assert row.get_attribute("data-state") == "open"
    assert row.find_element("css selector", "td.state").text.strip()
    assert _not_reloaded(browser), "the alerts page reloaded instead of adding the row"
    # read-only: nothing to acknowledge or resolve with
    for sel in ("button.ack", "button.resolve", "textarea.note"):
        assert not browser.find_elements("css selector", sel), sel
    screenshot(browser, "alerts")


def test_a_wrong_password_is_refused(served, browser):
    base = served.base
    browser.get(f"{base}/login")
    browser.find_element("css selector", "#login-user").send_keys(INSPECTOR)
    browser.find_element("css selector", "#login-password").send_keys(PASSWORD + "x")
    browser.find_element("css selector", "#login-submit").click()
    err = wait_until(browser, lambda: _shown_error(browser), 10,
                     "the error of a wrong password")
    assert err.text.strip()
    assert "/login" in browser.current_url
    browser.get(f"{base}/alerts")
    wait_until(browser, lambda: browser.find_elements("css selector", "tr.alert"), 10,
               "alert rows")
    assert not browser.find_elements("css selector", "button.ack")
    assert not browser.find_elements("css selector", "button.resolve")


def _shown_error(browser):
    """The first displayed ``p.error`` (pages may hold a hidden one for later errors)."""
    return next((e for e in browser.find_elements("css selector", "p.error")
                 if e.is_displayed()), None)


def _sign_in(browser, base: str) -> None:
    browser.get(f"{base}/login")
    browser.find_element("css selector", "#login-user").send_keys(INSPECTOR)
    browser.find_element("css selector", "#login-password").send_keys(PASSWORD)
    browser.find_element("css selector", "#login-submit").click()
    wait_until(browser, lambda: "/login" not in browser.current_url or _shown_error(browser),
               10, "the sign-in")
    assert not _shown_error(browser), page_tail(browser)


def _row_state(browser, alert_id: str) -> str | None:
    rows = browser.find_elements("css selector", f'tr.alert[data-id="{alert_id}"]')
    return rows[0].get_attribute("data-state") if rows else None


def _act(browser, alert_id: str, button: str, note: str) -> None:
    box = browser.find_element("css selector", f'textarea.note[data-id="{alert_id}"]')
    box.clear()
    box.send_keys(note)
    browser.find_element("css selector", f'button.{button}[data-id="{alert_id}"]').click()


def test_an_inspector_acknowledges_and_resolves_and_the_state_is_stored(
        stack, served, browser, raise_alerts):
    base = served.base
    alert_id = raise_alerts()
    _sign_in(browser, base)
    browser.get(f"{base}/alerts")
    wait_until(browser, lambda: browser.find_elements(
        "css selector", f'button.ack[data-id="{alert_id}"]'), 10, "the ack button")
    assert _row_state(browser, alert_id) == "open"
    screenshot(browser, "alerts-signed-in")

    # acknowledged with a note that is markup: it must be stored as typed, shown as text
    _act(browser, alert_id, "ack", HOSTILE)
    wait_until(browser, lambda: _row_state(browser, alert_id) == "acknowledged", 10,
               "the row to show acknowledged")
    stored = wait_for(lambda: (s := _stored_states(stack, alert_id)) and "acknowledged" in s
                      and s, 10, "the acknowledged point in InfluxDB")
    ack = stored["acknowledged"]
    assert ack["who"] == INSPECTOR
    assert decode_text(ack["note"]) == HOSTILE

    browser.refresh()  # the note as the server renders it, not only as the script put it
    wait_until(browser, lambda: _row_state(browser, alert_id) == "acknowledged", 10,
               "the acknowledged row after a reload")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018 -- the property raises when no dialog is open
    assert browser.execute_script(
        "return document.querySelectorAll('img[src=\"x\"]').length;") == 0
    assert HOSTILE in browser.find_element("css selector", "body").text, page_tail(browser)
    screenshot(browser, "alerts-acknowledged-note-as-text")

    _act(browser, alert_id, "resolve", "已发放耳塞并复测 / plugs issued, re-measured")
    # the row shows resolved (or leaves a list that hides resolved alerts); InfluxDB decides
    wait_until(browser, lambda: _row_state(browser, alert_id) in ("resolved", None), 10,
               "the row to show resolved")
    stored = wait_for(lambda: (s := _stored_states(stack, alert_id)) and "resolved" in s
                      and s, 10, "the resolved point in InfluxDB")
    assert set(stored) == {"open", "acknowledged", "resolved"}
    assert stored["resolved"]["who"] == INSPECTOR
    assert decode_text(stored["resolved"]["note"]).startswith("已发放耳塞")


def test_the_language_switch(served, browser):
    base = served.base
    browser.get(f"{base}/floor/{ENT}")
    # Chinese by default: the alerts link reads 告警 and the enterprise its Chinese name
    body = browser.find_element("css selector", "body").text
    assert "告警" in body and "冲压厂" in body, page_tail(browser)
    assert "Alerts" not in body
    assert browser.execute_script("return document.documentElement.lang;").startswith("zh")
    browser.find_element("css selector", "a#lang-switch").click()
    wait_until(browser, lambda: browser.execute_script(
        "return document.documentElement.lang;").startswith("en"), 10, "the English page")
    body = browser.find_element("css selector", "body").text
    assert "Alerts" in body and "Stamping works" in body, page_tail(browser)
    assert "告警" not in body
    # and it stays English on the next page
    browser.get(f"{base}/alerts")
    assert browser.execute_script("return document.documentElement.lang;").startswith("en")


def test_pages_still_load_after_moving_between_them(served, browser):
    """A page left for another closes its stream (app.js on pagehide), so Chromium's back-
    forward cache does not keep connections: after 6 views with open streams the browser
    had all its 6 connections per host taken and the next page never loaded."""
    base = served.base
    browser.set_page_load_timeout(10)
    # 8 page views alternating floor and alerts, each with its own SSE stream: a user
    # clicking between the two views; more than Chromium's 6 connections per host
    for i in range(8):
        browser.get(f"{base}/floor/{ENT}" if i % 2 == 0 else f"{base}/alerts")
    browser.get(f"{base}/floor/{ENT}")
    first = wait_until(browser, lambda: (t := _tiles(browser)) and all(t.values()) and t, 10,
                       "the tiles")
    wait_until(browser, lambda: _tiles(browser)["m1"] != first["m1"], 3,
               "m1's LAeq to change after moving between the pages")


def test_screenshots_are_saved(served):
    for name in ("floor-view", "alerts", "alerts-signed-in"):
        path = Path(__file__).parent / "artifacts" / f"{name}.png"
        assert path.stat().st_size > 5_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pilot_page_draws_its_charts(stack, served, browser):
    """/pilot in Chromium over the stored results of support/pilot_views.py: the script ran
    (the newest year chosen, the forest plot and the time line drawn as ECharts canvases),
    one table row per stored rate, the hostile key only as text; the screenshot is
    tests/artifacts/pilot-evaluation.png."""
    stack.influx("writer").write(pilot_views.pilot_lines(), rp=schema.RP_FOREVER)
    browser.get(f"{served.base}/pilot?lang=en")
    wait_until(browser, lambda: browser.execute_script(
        "return document.querySelectorAll('#pilot-forest canvas, #pilot-timeline canvas')"
        ".length") >= 2, what="the forest plot and the time line")
    assert browser.find_element("id", "pilot-period").get_attribute("value") == "2025"
    assert len(browser.find_elements("css selector", "tr.rate-row")) == len(pilot_views.RATES)
    assert browser.execute_script("return document.querySelectorAll('img[src=x]').length") == 0
    screenshot(browser, "pilot-evaluation")
