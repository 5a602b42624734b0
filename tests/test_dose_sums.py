"""The in-database dose sum (tingbao.collector.schema.dose_sums) on a real InfluxDB: the dose
fraction Σ coverage · 2^((laeq − Lc)/q) / 28 800 s over the 1 s points at or above the
threshold equals an independent sum in Python, per (meter, channel), for the OSHA and NIOSH
settings; the OSHA worked shift (2 h at 95, 4 h at 90, 2 h at 85 dB(A) → 112.5 %, TWA 90.85)
comes back from the store; and why the minute rollups cannot give the same sum."""

from __future__ import annotations

import math
import random
import re
import time

import pytest

from tingbao.analysis.dosimeters import PostSums, dose_queries, views
from tingbao.analysis.osha_1910_95 import twa_db
from tingbao.collector import schema
from tingbao.collector.lineprotocol import line
from tingbao.collector.registry import profile

P0 = 20e-6
ENT = "dose-ent"
ENT_SHIFT = "dose-shift"
T0 = (int(time.time()) // 60 * 60 - 2 * 86_400) * 10**9  # a minute two days ago (UTC), ns
N = 300


def _point(ent, meter, ch, t_ns, laeq, coverage, seq):
    tags = {"enterprise": ent, "site": "s", "meter": meter, "channel": str(ch)}
    fields = {"coverage": coverage, "duration_s": 1.0, "seq": seq}
    if laeq is not None:  # a point without audio has no level and no energy
        fields.update(laeq=laeq, ea=P0**2 * 10 ** (laeq / 10) * coverage)
    return line(schema.LEVELS, tags, fields, t_ns)


@pytest.fixture(scope="module")
def stored(stack):
    """N seconds of 1 s points for m1 (channels 0 and 1) and m2 (channel 0): levels from 60
    to 110 dB(A) (many below 80), full, partial (0.5, 0.25 s) and no coverage; one point
    after the period. Returns (meter, channel, t, laeq, coverage) of the points written."""
    rng = random.Random(11)
    points, lines = [], []
    for meter, channels in (("m1", (0, 1)), ("m2", (0,))):
        for ch in channels:
            for i in range(N + 1):  # i = N lies just outside the period
                coverage = 0.0 if i % 41 == 0 else (0.5 if i % 7 == 0 else
                                                    (0.25 if i % 11 == 0 else 1.0))
                laeq = round(rng.uniform(60, 110), 2) if coverage > 0 else None
                t = T0 + i * 10**9
                points.append((meter, str(ch), t, laeq, coverage))
                lines.append(_point(ENT, meter, ch, t, laeq, coverage, i))
    # the edge thresholds: exactly at 80 counts, 79.99 does not
    for i, laeq in ((0, 80.0), (1, 79.99)):
        t = T0 + (N + 10 + i) * 10**9
        points.append(("m3", "0", t, laeq, 1.0))
        lines.append(_point(ENT, "m3", 0, t, laeq, 1.0, i))
    stack.influx("writer").write(lines)
    return points


def _db_doses(stack, period, criterion_db, exchange_db, threshold_db, **kw):
    q = schema.dose_sums(period, criterion_db=criterion_db, exchange_db=exchange_db,
                         threshold_db=threshold_db, **kw)
    rows = stack.influx("reader").query_rows(q)
    return {(r["meter"], r["channel"]): r[schema.DOSE] for r in rows}


def _python_doses(points, period, criterion_db, exchange_db, threshold_db):
    # the definition, point by point: C/T with C = coverage (s) and T = 28 800 / 2^((L-Lc)/q)
    out: dict = {}
    for meter, ch, t, laeq, coverage in points:
        if period.start_ns <= t < period.end_ns and laeq is not None and laeq >= threshold_db:
            allowed_s = 28_800 / 2 ** ((laeq - criterion_db) / exchange_db)
            out[(meter, ch)] = out.get((meter, ch), 0.0) + coverage / allowed_s
    return out


@pytest.mark.parametrize("profile_id", ["OSHA", "NIOSH"])
def test_dose_sums_equal_the_python_sum(stack, stored, profile_id):
    p = profile(profile_id)  # OSHA Lc 90, q 5, threshold 80; NIOSH Lc 85, q 3, no threshold
    period = schema.Period(T0, T0 + N * 10**9)
    got = _db_doses(stack, period, p.lex_limit_db, p.exchange_rate_db, p.threshold_db,
                    enterprise=ENT, meters=["m1", "m2"])
    want = _python_doses(stored, period, p.lex_limit_db, p.exchange_rate_db, p.threshold_db)
    assert set(got) == set(want) == {("m1", "0"), ("m1", "1"), ("m2", "0")}
    for key, value in want.items():
        assert value > 0
        assert got[key] == pytest.approx(value, rel=1e-9)


def test_threshold_is_inclusive_and_levels_below_add_nothing(stack, stored):
    # m3: one second at exactly 80.0 (counted: T(80) = 8 h · 2^2 = 115 200 s, so 1/115 200)
    # and one at 79.99 (left out) with OSHA's threshold; without a threshold both count.
    period = schema.Period(T0, T0 + (N + 20) * 10**9)
    osha = _db_doses(stack, period, 90.0, 5.0, 80.0, enterprise=ENT, meters=["m3"])
    assert osha == {("m3", "0"): pytest.approx(1 / 115_200, rel=1e-12)}
    every = _db_doses(stack, period, 90.0, 5.0, 0.0, enterprise=ENT, meters=["m3"])
    assert every[("m3", "0")] == pytest.approx(1 / 115_200 + 2 ** (-10.01 / 5) / 28_800,
                                               rel=1e-12)
    # a threshold above every level: no rows at all
    assert _db_doses(stack, period, 90.0, 5.0, 120.0, enterprise=ENT) == {}


def test_osha_worked_shift_from_the_store(stack):
    # 2 h at 95 + 4 h at 90 + 2 h at 85 dB(A), compressed: each 1 s point stands for a minute
    # (coverage 60 s), so 120 points at 95, 240 at 90, 120 at 85 hold the shift's 8 h;
    # 60 points at 75 dB(A) (below 80) add nothing. D = 100 (2/4 + 4/8 + 2/16) = 112.5 %,
    # TWA = 16.61 lg 1.125 + 90 = 90.85 dB(A).
    lines, i = [], 0
    for level, n in ((95.0, 120), (90.0, 240), (85.0, 120), (75.0, 60)):
        for _ in range(n):
            lines.append(_point(ENT_SHIFT, "m1", 0, T0 + i * 10**9, level, 60.0, i))
            i += 1
    stack.influx("writer").write(lines)
    p = profile("OSHA")
    got = _db_doses(stack, schema.Period(T0, T0 + i * 10**9), p.lex_limit_db,
                    p.exchange_rate_db, p.threshold_db, enterprise=ENT_SHIFT)
    dose_pct = 100 * got[("m1", "0")]
    assert dose_pct == pytest.approx(112.5, rel=1e-12)
    assert twa_db(dose_pct, p.lex_limit_db, p.exchange_rate_db) == pytest.approx(90.85,
                                                                                  abs=0.005)
    # the virtual dosimeters from the store's sums: the shift holds 9 h of coverage (the hour
    # at 75 included), so LEX,8h = 10 lg((2·10^9.5 + 4·10^9 + 2·10^8.5 + 1·10^7.5) / 8)
    # = 91.38 dB(A) for CN-GBZ (the hour at 75 adds 0.01 dB to the 91.37 of the 8 h), and
    # OSHA reads TWA 90.85 from the dose sum (the hour at 75 is below its threshold)
    period = schema.Period(T0, T0 + i * 10**9)
    (energy,) = schema.add_sums(
        r for q in schema.exposure_sums(period, enterprise=ENT_SHIFT, rollups=False)
        for r in stack.influx("reader").query_rows(q)).values()
    assert energy["coverage"] == pytest.approx(9 * 3600.0)
    # the statements of every profile stated as a dose (OSHA, NIOSH), then the shift's sums
    queries = dose_queries(period, enterprise=ENT_SHIFT)
    assert set(queries) == {"OSHA", "NIOSH"}
    doses = {pid: r[schema.DOSE] for pid, q in queries.items()
             for r in stack.influx("reader").query_rows(q)}
    sums = PostSums.from_store(energy, None, 9 * 3600.0, doses)
    assert sums.dose_sums["OSHA"] == got[("m1", "0")]
    cn, osha = views(sums, ["CN-GBZ", "OSHA"])
    want = 10 * math.log10((2 * 10**9.5 + 4 * 10**9 + 2 * 10**8.5 + 10**7.5) / 8)
    assert cn.lex_8h_db == pytest.approx(want, abs=1e-9) and round(want, 2) == 91.38
    assert (osha.dose_pct, round(osha.twa_db, 2)) == (pytest.approx(112.5, rel=1e-12), 90.85)


def test_statement_numbers_are_plain_and_ids_checked():
    q = schema.dose_sums(schema.Period(0, 10**9), criterion_db=90.0, exchange_db=5.0,
                         threshold_db=0.00001)
    # InfluxQL reads no scientific notation: 1e-05 must be written 0.00001
    assert "0.00001" in q and not re.search(r"\de[-+]?\d", q, re.IGNORECASE)
    with pytest.raises(ValueError):
        schema.dose_sums(schema.Period(0, 10**9), criterion_db=90.0, exchange_db=0.0,
                         threshold_db=80.0)
    with pytest.raises(ValueError):
        schema.dose_sums(schema.Period(0, 10**9), criterion_db=float("inf"), exchange_db=5.0,
                         threshold_db=80.0)
    with pytest.raises(Exception, match="not a valid id"):
        schema.dose_sums(schema.Period(0, 10), criterion_db=90.0, exchange_db=5.0,
                         threshold_db=80.0, enterprise="x' OR '1'='1")


def test_minute_energy_cannot_give_the_threshold_dose():
    # Why dose_sums reads the 1 s points: a minute of 30 s at 95 and 30 s at 70 dB(A) has the
    # energy level 10 lg((10^9.5 + 10^7)/2) = 92.0 dB(A). OSHA per second: 30 s / T(95) with
    # T(95) = 4 h = 14 400 s, the 70s below the threshold → 30/14 400. From the minute's level:
    # 60 s / T(92.0) = 60 / (28 800 / 2^(2.0/5)), a third more (1.32 times).
    per_second = 30 / 14_400
    minute_level = 10 * math.log10((10**9.5 + 10**7.0) / 2)
    from_minute = 60 / (28_800 / 2 ** ((minute_level - 90) / 5))
    assert minute_level == pytest.approx(92.0, abs=0.05)
    assert abs(from_minute / per_second - 1) > 0.3
