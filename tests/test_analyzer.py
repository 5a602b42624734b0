"""The analysis service on a real InfluxDB: in-shift early warning and dose alerts raised
once (edge-triggered), the hold-off, the shift closed into the ledger with exactly one
exceedance alert per post and job, nothing doubled by a second pass. Levels are written
directly as 1 s points (the collector's path is tested end to end elsewhere)."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
import zoneinfo

import pytest
from support.levels import steady_levels

from tingbao.analysis import ledger
from tingbao.analysis.alert_rules import Condition, EdgeTrigger
from tingbao.analysis.alert_store import AlertStore
from tingbao.analysis.analyzer import Analyzer
from tingbao.analysis.shifts import shift_window
from tingbao.collector import schema
from tingbao.collector.lineprotocol import line
from tingbao.collector.registry.site import registry_from_mapping
from tingbao.collector.rollups import Rollups

P0 = 20e-6
TZ = "Asia/Shanghai"
ENT = "alarm-ent"
NS = 10**9
SITE = f"""
[deployment]
timezone = "{TZ}"
[analysis]
holdoff_s = 600
recent_s = 300
[[enterprises]]
id = "{ENT}"
name_zh = "报警厂"
industry = "machinery"
group = "pilot"
shift = {{ start = "08:00", hours = 8.0, days_per_week = 7 }}
[[sites]]
id = "w1"
enterprise = "{ENT}"
name_zh = "车间"
[[meters]]
id = "m1"
enterprise = "{ENT}"
site = "w1"
calibrated = 2026-06-01
[[meters]]
id = "m2"
enterprise = "{ENT}"
site = "w1"
calibrated = 2026-06-01
[[job_types]]
id = "both"
enterprise = "{ENT}"
name_zh = "两岗位工"
tasks = [{{ what = "loud", hours = 4.0, meter = "m1" }},
         {{ what = "quiet", hours = 4.0, meter = "m2" }}]
"""
DATE = (dt.datetime.now(zoneinfo.ZoneInfo(TZ)) - dt.timedelta(days=3)).date()


def test_edge_trigger_raises_once_and_waits_for_the_holdoff():
    t = EdgeTrigger(holdoff_s=600)
    on, off = Condition("x", True, "m1", 0), Condition("x", False, "m1", 0)
    assert t.update(on, 0) == 0  # first raise: occurrence 0
    assert t.update(on, 10 * NS) is None  # still true: nothing more
    assert t.update(off, 20 * NS) is None  # cleared at 20 s
    assert t.update(on, 100 * NS) is None  # true again 80 s later: within the 600 s hold-off
    assert t.update(on, 619 * NS) is None
    assert t.update(on, 620 * NS) == 1  # 600 s after clearing and still true: occurrence 1
    assert t.update(Condition("x", True, "m2", 0), 621 * NS) == 0  # another post: its own


def test_edge_trigger_seeded_after_a_restart():
    t = EdgeTrigger(holdoff_s=600)
    on, off = Condition("x", True, "m1", 0), Condition("x", False, "m1", 0)
    t.seed(on.key, 2)  # two occurrences were stored before the restart
    assert t.update(on, 0) is None  # the latest one covers the condition that still holds
    assert t.update(off, 10 * NS) is None
    assert t.update(on, 700 * NS) == 2  # the next is occurrence 2: a new id, not a lost one


def _points(meter, start_ns, seconds, level):
    return steady_levels(ENT, "w1", meter, start_ns, seconds, level)


@pytest.fixture(scope="module")
def service(stack):
    reg = registry_from_mapping(tomllib.loads(SITE))
    w = shift_window(reg.enterprise(ENT), DATE, TZ)
    reader, writer = stack.influx("reader"), stack.influx("writer")
    s = w.period.start_ns
    lines = _points("m1", s, 2 * 3600, 95.0)  # the first 2 h of m1 at 95 dB(A)
    lines += _points("m2", s, 2 * 3600, 75.0)
    for i in range(0, len(lines), 20_000):
        writer.write(lines[i:i + 20_000])
    # the collector has rolled up the minutes older than a few minutes; the newest are
    # summed from the 1 s points ([analysis] rollup_lag_s = 300 s)
    Rollups(reader, writer).recompute_range(s, s + (2 * 3600 - 180) * NS)
    store = AlertStore(reader, writer)
    return reg, w, Analyzer(reg, reader, writer, store), store


def test_in_shift_alerts_raised_once(service):
    reg, w, an, store = service
    now = w.period.start_ns + 2 * 3600 * NS
    an.in_shift(w, now)
    got = {(a.rule, a.meter) for a in store.list(enterprise=ENT)}
    # m1: 2 h at 95 so far; the rest (6 h) at the recent 95 → LEX = 95 ≥ 85: early warning.
    # dose so far = (2/8)·10^((95 − 85)/10) = 250 %: past 50 % and past 100 %.
    assert {("lex_projected", "m1"), ("dose_50", "m1"), ("dose_100", "m1")} <= got
    # m2: 75 dB → projected 75, dose 2.5 %: nothing
    assert not {r for r, m in got if m == "m2"}
    warn = next(a for a in store.list(enterprise=ENT, rule="lex_projected"))
    assert warn.evidence["projected_lex_8h"] == pytest.approx(95.0, abs=1e-9)
    assert warn.evidence["dose_pct"] == pytest.approx(250.0, rel=1e-9)
    assert warn.text_zh.startswith("岗位") and "dB(A)" in warn.text_en
    assert warn.evidence["now_ns"] < w.period.end_ns  # raised before the shift ends
    # a second pass a minute later raises nothing new, nor does a restarted service
    n = len(store.list(enterprise=ENT))
    an.in_shift(w, now + 60 * NS)
    assert len(store.list(enterprise=ENT)) == n
    Analyzer(reg, an.reader, an.writer, store).in_shift(w, now + 90 * NS)  # < offline_after_s
    assert len(store.list(enterprise=ENT)) == n


def test_close_raises_one_exceedance_per_post_and_job(stack, service):
    reg, w, an, store = service
    s = w.period.start_ns
    writer = stack.influx("writer")
    # the rest of the shift: m1 quiet at 80 for 6 h, m2 at 75
    lines = _points("m1", s + 2 * 3600 * NS, 6 * 3600, 80.0)
    lines += _points("m2", s + 2 * 3600 * NS, 6 * 3600, 75.0)
    for i in range(0, len(lines), 20_000):
        writer.write(lines[i:i + 20_000])
    Rollups(stack.influx("reader"), writer).recompute_range(s, w.period.end_ns)
    closed = an.close(ENT, DATE)
    assert closed.closed.written
    ex = store.list(enterprise=ENT, rule="lex_exceeded")
    # m1: 10 lg(2/8·10^9.5 + 6/8·10^8.0) = 89.38 ≥ 85 → one; m2: 75 → none;
    # job "both": 4 h at m1 (its LAeq 89.38) + 4 h at m2 (75): 10 lg(½·10^8.938 + ½·10^7.5)
    # = 86.53 ≥ 85 → one
    assert sorted((a.meter or "", a.job or "") for a in ex) == [("", "both"), ("m1", "")]
    m1 = next(a for a in ex if a.meter == "m1")
    assert m1.evidence["lex_8h"] == pytest.approx(
        10 * math.log10(2 / 8 * 10**9.5 + 6 / 8 * 10**8.0), abs=1e-6)
    # closing again: the ledger has it, no alert added
    again = an.close(ENT, DATE)
    assert not again.closed.written
    assert len(store.list(enterprise=ENT, rule="lex_exceeded")) == 2
    assert ledger.verify(stack.influx("reader"), ENT).ok
    # the service's due list no longer holds the day
    assert (ENT, DATE) not in an.due(w.period.end_ns + 10 * 3600 * NS)


def test_device_health_from_status_and_registry(stack, service):
    reg, w, an, store = service
    now = w.period.start_ns + 2 * 3600 * NS
    writer = stack.influx("writer")
    tags = {"enterprise": ENT, "site": "w1"}
    # m1's agent reports a calibrator check 0.8 dB off (> 0.5 dB, GBZ/T 189.8) and a clock
    # 5 s off (> the 2 s bound); m2's last will says it went offline after its last interval
    writer.write([
        line(schema.STATUS, {**tags, "meter": "m1"},
             {"online": True, "calibration": "drift", "calibration_deviation_db": 0.8,
              "clock_offset_s": 5.0}, now - 30 * NS),
        line(schema.STATUS, {**tags, "meter": "m2"}, {"online": False}, now),
    ])
    an.in_shift(w, now)
    got = {(a.rule, a.meter) for a in store.list(enterprise=ENT)}
    assert {("calibration_drift", "m1"), ("clock_offset", "m1"),
            ("meter_offline", "m2")} <= got
    assert ("meter_offline", "m1") not in got  # m1 sent its last interval 1 s ago
    drift = store.list(enterprise=ENT, rule="calibration_drift")[0]
    assert drift.severity == "critical" and drift.evidence["calibration_deviation_db"] == 0.8
    # both meters were calibrated on 2026-06-01, within the 365-day interval: not overdue
    assert not store.list(enterprise=ENT, rule="calibration_overdue")


def test_the_service_closes_a_due_shift_and_stops_cleanly(stack, tmp_path):
    """`tingbao analyze` as a service: a 3-minute shift that ended a few minutes ago is
    closed on its first pass (close_delay_s = 0), and SIGTERM ends it with status 0."""
    import signal

    from support.commands import tingbao
    from support.wait import wait_for

    tz = zoneinfo.ZoneInfo(TZ)
    start = (dt.datetime.now(tz) - dt.timedelta(minutes=10)).replace(second=0, microsecond=0)
    site = tmp_path / "site.toml"
    site.write_text(f"""
[deployment]
timezone = "{TZ}"
[stack]
data_dir = "{stack.data_dir}"
[analysis]
close_delay_s = 0
poll_s = 0.5
[[enterprises]]
id = "svc-ent"
name_zh = "服务厂"
industry = "machinery"
group = "pilot"
shift = {{ start = "{start:%H:%M}", hours = 0.05, days_per_week = 7 }}
[[sites]]
id = "w1"
enterprise = "svc-ent"
name_zh = "车间"
[[meters]]
id = "m1"
enterprise = "svc-ent"
site = "w1"
calibrated = 2026-06-01
""", encoding="utf-8")
    stack.write_state()
    s0 = int(start.timestamp()) * NS
    stack.influx("writer").write(
        [line(schema.LEVELS, {"enterprise": "svc-ent", "site": "w1", "meter": "m1",
                              "channel": "0"},
              {"ea": P0**2 * 10**9.0, "coverage": 1.0, "duration_s": 1.0, "laeq": 90.0,
               "seq": i}, s0 + i * NS) for i in range(180)])
    # the collector would roll the minutes up; here they were written directly
    Rollups(stack.influx("reader"), stack.influx("writer")).recompute_range(s0, s0 + 180 * NS)
    p = tingbao("analyze", "--config", site, "--no-mqtt", log=tmp_path / "analyze.log")
    try:
        reader = stack.influx("reader")
        wait_for(lambda: ledger.is_closed(reader, "svc-ent", s0), 30, "the shift closed",
                 interval=0.2, detail=lambda: (tmp_path / "analyze.log").read_text()[-2000:])
        rec = next(r for r in ledger.read_records(reader, "svc-ent", s0)
                   if r.tags.get("profile") == "CN-GBZ")
        # 180 s at 90 dB(A): LEX,8h = 90 + 10 lg(180 / 28 800) = 67.96 dB(A)
        assert rec.fields["lex_8h"] == pytest.approx(90 + 10 * math.log10(180 / 28800),
                                                     abs=1e-6)
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0, (tmp_path / "analyze.log").read_text()[-2000:]
