"""The storage schema's queries on a real InfluxDB: exposure sums from minute rollups plus the
ragged edges from 1 s points equal the sums over the 1 s points alone and an independent sum in
Python; the latest levels; dead letters. Names come from tingbao.collector.schema only."""

from __future__ import annotations

import math
import random
import time

import pytest

from tingbao.analysis.gbzt189_8 import lex_8h
from tingbao.collector import schema
from tingbao.collector.lineprotocol import line
from tingbao.collector.rollups import Rollups

P0 = 20e-6
ENT = "schema-ent"
T0 = (int(time.time()) // 60 * 60 - 86_400) * 10**9  # a minute a day ago (UTC), ns


@pytest.fixture(scope="module")
def stored(stack):
    """7.5 minutes of 1 s points for two meters (channel 0 and 1 of m1, channel 0 of m2),
    with a gap, and their minute rollups; returns the points written."""
    rng = random.Random(7)
    points = []
    lines = []
    for meter, channels in (("m1", (0, 1)), ("m2", (0,))):
        for ch in channels:
            for i in range(450):
                if 100 <= i < 110:  # ten missing seconds
                    continue
                level = rng.uniform(70, 105)
                coverage = 1.0 if i % 37 else 0.5
                ea = P0**2 * 10 ** (level / 10) * coverage
                t = T0 + i * 10**9
                points.append((meter, str(ch), t, ea, coverage, level))
                lines.append(line(schema.LEVELS, {"enterprise": ENT, "site": "s", "meter": meter,
                                                  "channel": str(ch)},
                                  {"ea": ea, "coverage": coverage, "duration_s": 1.0,
                                   "laeq": level, "lafmax": level + 3, "lcpeak": level + 15,
                                   "seq": i}, t))
    stack.influx("writer").write(lines)
    Rollups(stack.influx("reader"), stack.influx("writer")).recompute_range(
        T0, T0 + 450 * 10**9)
    return points


def _sums(stack, period, **kw):
    rows = []
    for q in schema.exposure_sums(period, enterprise=ENT, **kw):
        rows += stack.influx("reader").query_rows(q)
    return schema.add_sums(rows)


@pytest.mark.parametrize("start_s, end_s", [(0, 450), (13.5, 301), (61, 119), (5, 50),
                                           (59.999, 180.001)])
def test_exposure_from_rollups_equals_the_1s_sum(stack, stored, start_s, end_s):
    period = schema.Period(T0 + int(start_s * 1e9), T0 + int(end_s * 1e9))
    fine = _sums(stack, period, rollups=False)
    coarse = _sums(stack, period, rollups=True)
    direct: dict = {}
    for meter, ch, t, ea, cov, _ in stored:
        if period.start_ns <= t < period.end_ns:
            acc = direct.setdefault((meter, ch), {"ea": 0.0, "coverage": 0.0, "n": 0})
            acc["ea"] += ea
            acc["coverage"] += cov
            acc["n"] += 1
    assert set(fine) == set(coarse) == set(direct) == {("m1", "0"), ("m1", "1"), ("m2", "0")}
    for key, want in direct.items():
        for got in (fine[key], coarse[key]):
            assert got["n"] == want["n"]
            assert got["coverage"] == pytest.approx(want["coverage"], rel=1e-12)
            assert got["ea"] == pytest.approx(want["ea"], rel=1e-9)
            # the same exposure as a level: LEX,8h to 1e-6 dB
            assert lex_8h(got["ea"]) == pytest.approx(lex_8h(want["ea"]), abs=1e-6)
    if end_s - start_s >= 120:  # whole minutes came from the rollups: fewer statements' rows
        assert len(schema.exposure_sums(period, enterprise=ENT)) >= 2


def test_exposure_can_be_limited_to_meters(stack, stored):
    period = schema.Period(T0, T0 + 450 * 10**9)
    assert set(_sums(stack, period, meters=["m2"])) == {("m2", "0")}


def test_latest_levels_and_dead_letters_queries_run(stack, stored):
    # the stored points are a day old: "since 1h" covers none of them
    assert stack.influx("reader").query_rows(schema.latest_levels(enterprise=ENT)) == []
    now = time.time_ns() // 10**9 * 10**9
    tags = {"enterprise": ENT + "-live", "site": "s", "meter": "m1", "channel": "0"}
    stack.influx("writer").write([
        line(schema.LEVELS, tags, {"ea": P0**2 * 10**8, "coverage": 1.0, "laeq": 80.0,
                                   "lafmax": 83.0, "lcpeak": 95.0, "seq": 1}, now - 10**10),
        line(schema.LEVELS, tags, {"ea": P0**2 * 10**9, "coverage": 1.0, "laeq": 90.0,
                                   "lafmax": 93.0, "lcpeak": 105.0, "seq": 2}, now - 5 * 10**9)])
    (row,) = stack.influx("reader").query_rows(schema.latest_levels(enterprise=ENT + "-live"))
    assert (row["meter"], row["channel"], row["laeq"], row["lafmax"], row["lcpeak"],
            row["n"], row["coverage"]) == ("m1", "0", 90.0, 93.0, 105.0, 2, 2.0)
    assert row["ea"] == pytest.approx(P0**2 * 1.1e9, rel=1e-12)
    with pytest.raises(ValueError, match="InfluxQL duration"):
        schema.latest_levels(since="1 hour; DROP DATABASE tingbao")
    stack.influx("writer").write([line(schema.DEAD_LETTERS, {"collector": "t", "kind": "levels",
                                                             "stage": "contract"},
                                       {"reason": "test", "payload_bytes": 3}, T0)])
    rows = stack.influx("reader").query_rows(schema.dead_letters(stage="contract", limit=5))
    assert rows and rows[0]["reason"] == "test"


def test_period_and_ids_are_checked():
    with pytest.raises(ValueError, match="empty period"):
        schema.Period(10, 10)
    with pytest.raises(Exception, match="not a valid id"):
        schema.exposure_sums(schema.Period(0, 10), enterprise="x' OR '1'='1")
    assert math.isclose(len(schema.exposure_sums(schema.Period(0, 10**9))), 1)
