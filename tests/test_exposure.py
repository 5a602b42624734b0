"""Exposure from the store on a real InfluxDB: a night shift across midnight in
Asia/Shanghai, posts with full, gapped (extrapolated) and low coverage, a multi-post job, the
write-back with its hash chain and `verify` finding an edit. Every expected figure is
computed here from the levels written, by plain arithmetic stated beside it."""

from __future__ import annotations

import datetime as dt
import json
import math
import tomllib
import zoneinfo

import pytest
from support.commands import run_tingbao
from support.levels import steady_levels

from tingbao.analysis import exposure, ledger, records
from tingbao.analysis.shifts import shift_at, shift_window
from tingbao.collector import schema
from tingbao.collector.lineprotocol import line
from tingbao.collector.registry.site import registry_from_mapping
from tingbao.collector.rollups import Rollups

P0 = 20e-6
TZ = "Asia/Shanghai"
ENT = "night-ent"


SITE_TOML = """
[deployment]
timezone = "Asia/Shanghai"

[[enterprises]]
id = "night-ent"
name_zh = "夜班厂"
industry = "machinery"
group = "pilot"
shift = { start = "22:00", hours = 8.0, days_per_week = 6 }

[[sites]]
id = "w1"
enterprise = "night-ent"
name_zh = "车间"

[[meters]]
id = "m1"
enterprise = "night-ent"
site = "w1"
calibrated = 2026-06-01

[[meters]]
id = "m2"
enterprise = "night-ent"
site = "w1"
channels = 2
calibrated = 2026-06-01

[[job_types]]
id = "press-fitter"
enterprise = "night-ent"
name_zh = "冲压装配工"
tasks = [{ what = "press", hours = 4.0, meter = "m1" },
         { what = "assembly", hours = 4.0, meter = "m2", channel = 0 }]

[[job_types]]
id = "inspector"
enterprise = "night-ent"
name_zh = "质检员"
tasks = [{ what = "press", hours = 3.0, meter = "m1" },
         { what = "office", hours = 5.0, laeq_db = 70.0 }]
"""


def registry():
    return registry_from_mapping(tomllib.loads(SITE_TOML))


# three days ago in local time: inside the 1 s retention, and the shift is long over
DATE = (dt.datetime.now(zoneinfo.ZoneInfo(TZ)) - dt.timedelta(days=3)).date()


def _levels(meter, channel, start_ns, seconds, level, *, imp=None):
    return steady_levels(ENT, "w1", meter, start_ns, seconds, level, channel=channel,
                         lafmax_above=4.0, lcpeak_above=20.0,
                         extra=(lambda i: imp.get(i)) if imp else None)


@pytest.fixture(scope="module")
def day(stack):
    reg = registry()
    w = shift_window(reg.enterprise(ENT), DATE, TZ)
    s = w.period.start_ns
    h = 3600
    lines = []
    # m1:0 — 4 h at 88 dB then 4 h at 80 dB, three impulses counted by the edge
    lines += _levels("m1", 0, s, 4 * h, 88.0,
                     imp={10: {"imp_120": 1, "imp_130": 1}, 500: {"imp_120": 1}})
    lines += _levels("m1", 0, s + 4 * h * 10**9, 4 * h, 80.0)
    # m2:0 — 90 dB with hour 3 missing (coverage 7/8)
    lines += _levels("m2", 0, s, 3 * h, 90.0)
    lines += _levels("m2", 0, s + 4 * h * 10**9, 4 * h, 90.0)
    # m2:1 — only 2 h at 95 dB (coverage 2/8)
    lines += _levels("m2", 1, s, 2 * h, 95.0)
    writer = stack.influx("writer")
    for i in range(0, len(lines), 20_000):
        writer.write(lines[i:i + 20_000])
    Rollups(stack.influx("reader"), writer).recompute_range(s, w.period.end_ns)
    return reg, w, exposure.compute_day(stack.influx("reader"), reg, ENT, DATE)


def test_night_shift_crosses_midnight_in_local_time():
    reg = registry()
    w = shift_window(reg.enterprise(ENT), dt.date(2026, 3, 2), TZ)  # a Monday
    # 22:00 CST (UTC+8) on 2 March = 14:00Z; 8 h later 22:00Z = 06:00 CST on 3 March
    assert w.period.start_ns == int(dt.datetime(2026, 3, 2, 14, tzinfo=dt.UTC).timestamp()) \
        * 10**9
    assert w.local_end().date() == dt.date(2026, 3, 3) and w.local_end().hour == 6
    # 03:00 local on the 3rd belongs to the shift of the 2nd
    at = int(dt.datetime(2026, 3, 2, 19, tzinfo=dt.UTC).timestamp()) * 10**9
    assert shift_at(reg, ENT, at).date == dt.date(2026, 3, 2)
    assert shift_at(reg, ENT, at + 4 * 3600 * 10**9) is None  # 07:00 local: between shifts
    # the enterprise works six days, Monday to Saturday: Sunday night (1 March) is no shift
    assert shift_at(reg, ENT, at - 86400 * 10**9) is None


def test_full_post_lex_grade_and_peaks(day):
    _, _, d = day
    p = {(x.meter, x.channel): x for x in d.posts}[("m1", 0)]
    # 4 h at 88 + 4 h at 80: LEX,8h = 10 lg(½·10^8.8 + ½·10^8.0) = 85.63 dB(A)
    want = 10 * math.log10(0.5 * 10**8.8 + 0.5 * 10**8.0)
    assert p.lex_8h == pytest.approx(want, abs=1e-6)
    assert round(p.lex_8h, 1) == 85.6
    assert p.coverage == pytest.approx(1.0) and not p.extrapolated
    assert p.grade.code == "I" and p.grade.noise_work
    assert p.sums.lcpeak_db == pytest.approx(108.0)  # 88 + 20
    assert p.sums.impulses == {120.0: 2, 130.0: 1}
    # U: the whole shift was measured, so no sampling term (module docstring of exposure):
    # U = 1.65 √(u2² + u3²) = 1.65 √(0.7² + 1.0²) = 2.01 dB for a class 1 meter
    assert p.u_db == pytest.approx(1.65 * math.sqrt(0.7**2 + 1.0**2), abs=1e-9)
    parts = [88.0] * 4 + [80.0] * 4  # the eight one-hour parts a job's U samples
    assert sorted(round(x, 6) for x in p.parts_db) == sorted(parts)


def test_gap_above_threshold_is_extrapolated_and_flagged(day):
    _, _, d = day
    p = {(x.meter, x.channel): x for x in d.posts}[("m2", 0)]
    # 7 of 8 h measured at 90 dB: coverage 0.875 >= 0.8, gap assumed at 90 → LEX = 90.0
    assert p.coverage == pytest.approx(7 / 8)
    assert p.lex_8h == pytest.approx(90.0, abs=1e-9)
    assert p.extrapolated and "gaps_extrapolated" in p.flags
    # constant level: u1 = 0 over 7 parts → U = 1.65 √(0.7² + 1.0²) = 2.01 dB
    assert p.u_db == pytest.approx(1.65 * math.sqrt(0.49 + 1.0), abs=1e-9)


def test_gap_below_threshold_counts_measured_energy_only(day):
    _, _, d = day
    p = {(x.meter, x.channel): x for x in d.posts}[("m2", 1)]
    # 2 h at 95 of 8: coverage 0.25 < 0.8 → LEX from the energy measured:
    # 95 + 10 lg(2/8) = 88.98 dB(A) (a lower bound), flagged
    assert p.coverage == pytest.approx(0.25)
    assert p.lex_8h == pytest.approx(95 + 10 * math.log10(2 / 8), abs=1e-9)
    assert "low_coverage" in p.flags and not p.extrapolated
    assert "u_insufficient_samples" in p.flags and p.u_db is None  # 2 parts with data < 5


def test_multi_post_job_and_declared_level(day):
    _, _, d = day
    jobs = {j.job: j for j in d.jobs}
    l1 = 10 * math.log10(0.5 * 10**8.8 + 0.5 * 10**8.0)  # m1's LAeq over the shift
    # press-fitter: 4 h at m1 (85.63) + 4 h at m2:0 (90.0): 10 lg(½·10^8.563 + ½·10^9)
    want = 10 * math.log10(4 / 8 * 10 ** (l1 / 10) + 4 / 8 * 10**9.0)
    assert jobs["press-fitter"].lex_8h == pytest.approx(want, abs=1e-6)
    assert jobs["press-fitter"].grade.code == "I"
    # U by the task-based strategy (ISO 9612 clause 9), from the posts' one-hour parts:
    # task 1 samples 88×4, 80×4: u1a = √(Σ(x − 84)² / (8·7)) = √(128/56) = 1.512 dB;
    # task 2 samples 90×7: u1a = 0; c_m = (Tm/8)·10^(0.1(Lm − LEX));
    # u² = Σ c_m² (u1a,m² + 0.7² + 1.0²); U = 1.65 u
    lex = 10 * math.log10(0.5 * 10 ** (l1 / 10) + 0.5 * 10**9.0)
    c1, c2 = 0.5 * 10 ** (0.1 * (l1 - lex)), 0.5 * 10 ** (0.1 * (90.0 - lex))
    u = math.sqrt(c1**2 * (128 / 56 + 0.49 + 1.0) + c2**2 * (0.0 + 0.49 + 1.0))
    assert jobs["press-fitter"].u_db == pytest.approx(1.65 * u, abs=1e-9)
    # inspector: 3 h at m1 + 5 h declared at 70 dB: 10 lg(3/8·10^8.563 + 5/8·10^7) = 81.56:
    # noise work (≥ 80) without a grade (< 85)
    want = 10 * math.log10(3 / 8 * 10 ** (l1 / 10) + 5 / 8 * 10**7.0)
    assert round(want, 2) == 81.56
    assert jobs["inspector"].lex_8h == pytest.approx(want, abs=1e-6)
    assert "declared_levels" in jobs["inspector"].flags
    assert jobs["inspector"].grade.code == "0" and jobs["inspector"].grade.noise_work


def test_ledger_closes_days_and_verify_finds_an_edit(stack, day):
    reg, w, d = day
    writer, reader = stack.influx("writer"), stack.influx("reader")
    recs = records.day_records(d)
    t = w.period.start_ns
    closed = ledger.close_day(reader, writer, ENT, DATE.isoformat(), t, recs)
    assert closed.written
    # closing again with the same records changes nothing
    assert not ledger.close_day(reader, writer, ENT, DATE.isoformat(), t, recs).written
    # stored records hash to what was chained (floats round-trip through InfluxDB's JSON)
    assert ledger.records_sha256(ledger.read_records(reader, ENT, t)) == \
        ledger.records_sha256(recs)
    # a second day links to the first
    w2 = shift_window(reg.enterprise(ENT), DATE + dt.timedelta(days=1), TZ)
    recs2 = [ledger.Record(r.tags, r.fields, w2.period.start_ns) for r in recs[:2]]
    second = ledger.close_day(reader, writer, ENT, (DATE + dt.timedelta(days=1)).isoformat(),
                              w2.period.start_ns, recs2)
    v = ledger.verify(reader, ENT)
    assert v.ok and v.days == 2 and v.head == second.hash
    # different records for a closed day are refused without redo
    changed = [ledger.Record(recs[0].tags, {**recs[0].fields, "lex_8h": 80.0}, t), *recs[1:]]
    with pytest.raises(ledger.AlreadyClosed):
        ledger.close_day(reader, writer, ENT, DATE.isoformat(), t, changed)
    # an edit behind the ledger's back: verify names the day
    r0 = recs[0]
    writer.write([line(schema.EXPOSURE, dict(r0.tags), {"lex_8h": 70.0}, t)],
                 rp=schema.RP_FOREVER)
    v = ledger.verify(reader, ENT)
    assert not v.ok and v.breaks[0].date == DATE.isoformat()
    assert "edited" in v.breaks[0].reason
    # redo rewrites the day and re-links the next one: the chain verifies again
    redone = ledger.close_day(reader, writer, ENT, DATE.isoformat(), t, recs, redo=True)
    assert redone.relinked == ((DATE + dt.timedelta(days=1)).isoformat(),)
    v = ledger.verify(reader, ENT)
    assert v.ok, v.breaks


def test_exposure_and_verify_commands(stack, day, tmp_path):
    stack.write_state()
    site = tmp_path / "site.toml"
    site.write_text(SITE_TOML, encoding="utf-8")
    r = run_tingbao("exposure", "--config", site, "--stack", stack.data_dir, "--date",
                    DATE.isoformat(), "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    post = next(x for x in rows if x["kind"] == "post" and x["meter"] == "m1")
    for key in ("enterprise", "channel", "date", "laeq", "duration_h", "coverage", "lex_8h",
                "u_db", "grade", "profile", "lcpeak_max", "imp_120"):
        assert key in post, key
    # the same 85.63 dB(A) as computed in test_full_post_lex_grade_and_peaks
    assert post["lex_8h"] == pytest.approx(10 * math.log10(0.5 * 10**8.8 + 0.5 * 10**8.0),
                                           abs=1e-5)
    assert post["grade"] == "I" and post["imp_120"] == 2 and post["n_impulses"] == 2
    # 108 dB peak with 2 impulses: GBZ 2.2 limit 140 dB (n <= 100), not exceeded
    assert post["peak_limit_db"] == 140.0 and post["peak_exceeded"] is False
    # the profiles side by side: OSHA's TWA from the in-database dose sum
    osha = next(v for v in post["profiles"] if v["profile"] == "OSHA")
    # OSHA: 4 h at 88 → 4/ (8/2^(-2/5)) ... dose = 100·[4/T(88) + 4/T(80)], T(L) = 8/2^((L−90)/5);
    # 80 dB is at the threshold and counts: T(88) = 10.56 h, T(80) = 32 h
    dose = 100 * (4 / (8 / 2 ** ((88 - 90) / 5)) + 4 / (8 / 2 ** ((80 - 90) / 5)))
    assert osha["dose_pct"] == pytest.approx(dose, rel=1e-6)
    job = next(x for x in rows if x["kind"] == "job" and x["job"] == "press-fitter")
    assert job["grade"] == "I" and len(job["tasks"]) == 2
    r = run_tingbao("exposure", "--config", site, "--stack", stack.data_dir, "--date",
                    DATE.isoformat())
    assert r.returncode == 0 and "LEX,8h" in r.stdout and "85.6" in r.stdout
    r = run_tingbao("exposure", "--config", site, "--stack", stack.data_dir, "--date",
                    DATE.isoformat(), "--enterprise", "nobody")
    assert r.returncode == 2 and "unknown enterprise" in r.stderr
    r = run_tingbao("verify", "--config", site, "--stack", stack.data_dir)
    assert r.returncode == 0 and "night-ent: OK" in r.stdout, r.stdout  # the ledger test
    # left a chain that verifies; an edit behind its back turns it red
    rec = ledger.read_records(stack.influx("reader"), ENT, day[1].period.start_ns)[0]
    stack.influx("writer").write([line(schema.EXPOSURE, dict(rec.tags), {"laeq": 1.0},
                                       rec.time_ns)], rp=schema.RP_FOREVER)
    r = run_tingbao("verify", "--config", site, "--stack", stack.data_dir)
    assert r.returncode == 1 and "BROKEN" in r.stdout and DATE.isoformat() in r.stdout


def test_ledger_links_a_day_closed_late_and_a_day_without_records(stack):
    reader, writer = stack.influx("reader"), stack.influx("writer")
    ent, day_ns = "gap-ent", 86400 * 10**9
    t0 = (int(dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp()) * 10**9)

    def recs(t, lex):
        return [ledger.Record({"kind": "post", "enterprise": ent, "meter": "g1",
                               "channel": "0", "profile": "CN-GBZ"},
                              {"date": str(t), "lex_8h": lex}, t)]
    # days 0 and 2 are closed first; day 1 is back-filled afterwards (a service that was
    # down): day 2 must then link to day 1, not to day 0
    ledger.close_day(reader, writer, ent, "d0", t0, recs(t0, 85.0))
    ledger.close_day(reader, writer, ent, "d2", t0 + 2 * day_ns, recs(t0 + 2 * day_ns, 86.0))
    late = ledger.close_day(reader, writer, ent, "d1", t0 + day_ns, recs(t0 + day_ns, 87.0))
    assert late.relinked == ("d2",)
    v = ledger.verify(reader, ent)
    assert v.ok and v.days == 3, v.breaks
    # a day that closes with no record at all (nothing installed yet) chains and verifies
    ledger.close_day(reader, writer, ent, "d3", t0 + 3 * day_ns, [])
    v = ledger.verify(reader, ent)
    assert v.ok and v.days == 4 and v.head_date == "d3", v.breaks
