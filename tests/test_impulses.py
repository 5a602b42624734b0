"""Impulse counts (C-weighted peak events above thresholds) from the edge to the minute rollups:
the counting rule on synthetic impacts with known counts, the refractory rule at the sample,
block-size invariance and interval attribution, the meter's records (consistent with its
LCpeak), contract v1's optional ``impulses`` field, and the collector storing the counts and
summing them in ``levels_1m`` on real servers.

The test signals: impacts are 1 kHz tone bursts decaying with τ = 5 ms, scaled so that the
C-weighted burst alone has the stated peak (p_C from the IEC 61672-1 C filter, computed here
with scipy from rest), in pink noise at 85 dB (its C-weighted peaks stay near 100 dB, 20 dB
below the lowest threshold). A burst of peak L is above a threshold T for
τ·ln(10^((L − T)/20)) after its peak: 141 dB is above 120 dB for 5 ms × ln(10^(21/20)) =
5 × 2.42 = 12 ms, about 24 half cycles of its carrier, i.e. it crosses 120 dB ~12 times
upward; impacts ≥ 0.8 s apart therefore leave ≥ 0.78 s of quiet, more than the 0.5 s
refractory time, and each counts.
"""

from __future__ import annotations

import json
import math
import random
import time

import numpy as np
import pytest
from scipy import signal
from support.collector import start_collector
from support.mqtt import Publisher
from support.rollups import levels_payload
from support.wait import wait_for

from tingbao.collector import schema
from tingbao.collector.lineprotocol import message_lines
from tingbao.collector.rollups import MINUTE_NS, minute_of
from tingbao.edge import contract, iec61672
from tingbao.edge.impulses import (
    DEFAULT_THRESHOLDS_DB,
    ImpulseCounter,
    count_impulses,
    impulse_starts,
    quiet_state,
    threshold_pressures,
)
from tingbao.edge.meter import SoundLevelMeter

FS = 48_000
P0 = 20e-6
TAU_S = 0.005
THRESHOLDS = (120.0, 130.0, 135.0, 137.0, 140.0)


# ---------------------------------------------------------------------------- signals
def pink_noise(n: int, level_db: float, seed: int) -> np.ndarray:
    """Pink noise (power ∝ 1/f, 20 Hz – 20 kHz) of RMS p0·10^(L/20) Pa, n samples."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / FS)
    gain = np.zeros_like(f)
    band = (f >= 20) & (f <= 20_000)
    gain[band] = 1 / np.sqrt(f[band])
    x = np.fft.irfft(spec * gain, n)
    return x * (P0 * 10 ** (level_db / 20) / np.sqrt(np.mean(x**2)))


def c_weighted(x: np.ndarray) -> np.ndarray:
    """p_C of a signal in Pa (the IEC 61672-1 C filter from rest)."""
    return signal.sosfilt(iec61672.weighting_sos("C", FS), x)


def burst(peak_c_db: float) -> np.ndarray:
    """0.1 s of a 1 kHz tone decaying with τ = 5 ms whose C-weighted peak, alone, is
    ``peak_c_db`` dB re 20 µPa."""
    t = np.arange(int(0.1 * FS)) / FS
    b = np.sin(2 * np.pi * 1000 * t) * np.exp(-t / TAU_S)
    return b * (P0 * 10 ** (peak_c_db / 20) / np.max(np.abs(c_weighted(b))))


def scene(duration_s: float, impacts: list[tuple[float, float]], seed: int = 1) -> np.ndarray:
    """Pink noise at 85 dB with bursts (start s, C-weighted peak dB) added."""
    x = pink_noise(round(duration_s * FS), 85.0, seed)
    for start, peak in impacts:
        b = burst(peak)
        i = round(start * FS)
        x[i:i + b.size] += b[: x.size - i]
        assert i + b.size <= x.size
    return x


def expected_counts(peaks) -> list[int]:
    """Impacts at or above each threshold, for well separated impacts."""
    return [sum(p >= t for p in peaks) for t in THRESHOLDS]


def seventeen_impacts(seed: int = 3) -> tuple[list[tuple[float, float]], float]:
    """17 impacts: 6 at 125, 5 at 133, 6 at 141 dB in a seeded order, 0.8–2 s apart."""
    rng = random.Random(seed)
    peaks = [125.0] * 6 + [133.0] * 5 + [141.0] * 6
    rng.shuffle(peaks)
    t, out = 0.5, []
    for p in peaks:
        out.append((t, p))
        t += rng.uniform(0.8, 2.0)
    return out, t + 0.5


# ------------------------------------------------------------------------- the rule
def test_seventeen_impacts_in_pink_noise_count_as_designed():
    impacts, duration = seventeen_impacts()
    x = scene(duration, impacts)
    got = count_impulses(c_weighted(x), FS)[0].tolist()
    # 6 × 125 + 5 × 133 + 6 × 141 dB: ≥ 120 all 17; ≥ 130 the 11 of 133 and 141; ≥ 135, 137
    # and 140 the 6 of 141 (141 dB counts once at every threshold, independently)
    assert expected_counts([p for _, p in impacts]) == [17, 11, 6, 6, 6]
    assert got == [17, 11, 6, 6, 6]
    # the noise alone never reaches 120 dB: its C peaks are about 12-15 dB above 85 dB
    noise_pc = c_weighted(scene(duration, []))
    assert 20 * math.log10(np.max(np.abs(noise_pc)) / P0) < 105
    assert count_impulses(noise_pc, FS)[0].tolist() == [0, 0, 0, 0, 0]


def test_the_ringing_of_one_impact_counts_once():
    pc = c_weighted(scene(1.0, [(0.3, 141.0)]))
    above = np.abs(pc) >= threshold_pressures([120.0])[0]
    upward = int(np.sum(above[1:] & ~above[:-1]))
    # above 120 dB for ~12 ms of a 1 kHz carrier: |p_C| crosses 120 dB upward every half
    # cycle, ~24 times; all within 0.5 s of each other, so one impulse
    assert upward >= 10
    assert count_impulses(pc, FS)[0].tolist() == [1, 1, 1, 1, 1]


@pytest.mark.parametrize(("gap_s", "expected"), [(0.3, 1), (0.7, 2)])
def test_two_impacts_count_once_within_the_refractory_time_twice_beyond(gap_s, expected):
    pc = c_weighted(scene(2.0, [(0.4, 141.0), (0.4 + gap_s, 141.0)]))
    # the first impact is above 120 dB for 12 ms: 0.3 s apart leaves 0.288 s below 120 dB,
    # less than the 0.5 s refractory time: the refractory rule makes them one impulse; at
    # 0.7 s apart 0.688 s ≥ 0.5 s: two (at every threshold: above 140 dB only for 0.6 ms)
    assert count_impulses(pc, FS)[0].tolist() == [expected] * 5


def test_the_refractory_rule_at_the_sample():
    # fs 1000 Hz, refractory 0.5 s → R = 500 samples. Single samples at 1 Pa (94 dB), the
    # threshold 90 dB: at 0 (quiet before the stream: starts), at 500 (samples 1…499 below:
    # 499 < 500, no start), at 1001 (501…1000 below: 500 ≥ 500, starts), at 1502 (501: starts)
    x = np.zeros(2000)
    x[[0, 500, 1001, 1502]] = 1.0
    counter = ImpulseCounter(1000.0, 1, (90.0,), 0.5)
    starts = counter.starts(x)
    assert starts.sample.tolist() == [0, 1001, 1502]
    # state after the block: 2000 − 1 − 1502 = 497 samples below, capped at R = 500
    assert counter.state.tolist() == [[497]]
    # the pure function: same answer, state in and out, the input state untouched
    q0 = quiet_state(1, 1, 500)
    found, q1 = impulse_starts(x[None, :], threshold_pressures([90.0]), 500, q0)
    assert found.sample.tolist() == [0, 1001, 1502] and q1.tolist() == [[497]]
    assert q0.tolist() == [[500]]
    # a sample 3 after the block's end: 497 + 3 = 500 samples below → a start
    assert counter.count(np.array([0, 0, 0, 1.0]))[0].tolist() == [1]


def test_channels_and_thresholds_count_independently():
    # channel 0: 125 dB then 141 dB 0.3 s later; channel 1: only the 141 dB impact. At 120
    # channel 0 merges the two (0.3 s apart): 1; at 130…140 the 125 dB impact is not an
    # impulse, so the 141 dB one starts one: 1. Channel 1: 1 at every threshold.
    a = scene(1.5, [(0.2, 125.0), (0.5, 141.0)], seed=5)
    b = scene(1.5, [(0.5, 141.0)], seed=6)
    pc = c_weighted(np.vstack([a, b]))
    counter = ImpulseCounter(FS, 2)
    found = counter.starts(pc)
    assert counter.count(np.zeros((2, 0))).tolist() == [[0] * 5, [0] * 5]
    counts = found.counts(2, 5)
    assert counts.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    # channel 0 at 120 dB starts at the 125 dB impact (0.2 s), at 130 dB at the 141 dB one
    t120 = found.sample[(found.channel == 0) & (found.threshold == 0)] / FS
    t130 = found.sample[(found.channel == 0) & (found.threshold == 1)] / FS
    assert 0.2 <= t120[0] < 0.21 and 0.5 <= t130[0] < 0.51


# ------------------------------------------------------------------ blocks and intervals
# 3 s: 141 dB at 0.2 s; 141 dB at 0.99 s (rings across the 1 s boundary); 133 dB at 1.29 s
# (0.3 s later: merged at 120 and 130); 125 dB at 2.2 s; 141 dB at 2.5 s (0.3 s after the
# 125 dB one: merged at 120, but an impulse of its own at 130…140, which 125 dB never reached)
STRADDLE = [(0.2, 141.0), (0.99, 141.0), (1.29, 133.0), (2.2, 125.0), (2.5, 141.0)]
PER_INTERVAL = [[2, 2, 2, 2, 2], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]


@pytest.mark.parametrize("block", [1, 37, 1024, 48_000])
def test_block_size_never_changes_the_impulses(block):
    pc = c_weighted(scene(3.0, STRADDLE))
    whole = ImpulseCounter(FS).starts(pc[None, :])
    counter = ImpulseCounter(FS)
    samples, thresholds = [], []
    for i in range(0, pc.size, block):
        found = counter.starts(pc[i:i + block])
        samples += (found.sample + i).tolist()
        thresholds += found.threshold.tolist()
    # the same impulses at the same samples: totals 3 per threshold (0.2, 0.99 and 2.2 s at
    # 120 dB; 0.2, 0.99 and 2.5 s at 130…140 dB)
    assert sorted(zip(thresholds, samples, strict=True)) == sorted(
        zip(whole.threshold.tolist(), whole.sample.tolist(), strict=True))
    assert np.bincount(thresholds, minlength=5).tolist() == [3, 3, 3, 3, 3]


@pytest.mark.parametrize("block", [37, 1024, 48_000])
def test_meter_intervals_count_impulses_where_they_start(block):
    x = scene(3.0, STRADDLE)
    meter = SoundLevelMeter(FS, impulse_thresholds_db=DEFAULT_THRESHOLDS_DB)
    ivs = []
    for i in range(0, x.size, block):
        ivs += meter.process(x[i:i + block])
    assert [iv.impulse_counts[0].tolist() for iv in ivs] == PER_INTERVAL
    # the 0.99 s impact rings on into interval 1 (10 ms after its peak it is still
    # 141 − 8.69 × 10/5 = 123.6 dB) and the 1.29 s impact reaches 133 dB there: interval 1
    # has LCpeak ≥ 133 dB but no impulse starts in it
    assert ivs[1].lcpeak[0] > 133.0 - 0.5
    for iv in ivs:
        check_peak_consistency(iv)


def check_peak_consistency(iv) -> None:
    """LCpeak ≥ the highest threshold with a count > 0 (a count means |p_C| ≥ T in the
    interval, and LCpeak is the max |p_C| of the same samples)."""
    for ch in range(len(iv.lcpeak)):
        counted = [t for t, n in zip(iv.impulse_thresholds_db, iv.impulse_counts[ch],
                                     strict=True) if n > 0]
        if counted:
            assert iv.lcpeak[ch] >= max(counted), (iv.index, iv.lcpeak[ch], counted)


def test_meter_records_carry_the_counts_and_agree_with_lcpeak():
    impacts, duration = seventeen_impacts()
    x = scene(math.ceil(duration), impacts)
    meter = SoundLevelMeter(FS, impulse_thresholds_db=THRESHOLDS)
    ivs = meter.process(x) + meter.flush()
    total = np.sum([iv.impulse_counts[0] for iv in ivs], axis=0)
    assert total.tolist() == [17, 11, 6, 6, 6]  # as designed (see the first test)
    for iv in ivs:
        check_peak_consistency(iv)
        (rec,) = iv.records()
        assert rec["impulses"] == {"thresholds_db": list(THRESHOLDS),
                                   "counts": iv.impulse_counts[0].tolist()}
    # the loudest interval's LCpeak is the 141 dB design peak (p_C of the burst alone plus
    # noise ≤ 1.6 Pa against 224 Pa: ≤ 0.07 dB)
    assert abs(max(iv.lcpeak[0] for iv in ivs) - 141.0) < 0.1
    # without thresholds the meter counts nothing and its records have no "impulses"
    plain = SoundLevelMeter(FS).process(x[:FS])
    assert plain[0].impulse_counts is None and "impulses" not in plain[0].records()[0]


def test_a_gap_is_quiet_time_and_an_interval_without_audio_has_no_counts():
    meter = SoundLevelMeter(FS, impulse_thresholds_db=THRESHOLDS)
    b = burst(141.0)
    ivs = meter.process(np.concatenate([np.zeros(FS // 2), b, np.zeros(FS // 2 - b.size)]))
    ivs += meter.gap(FS)  # 1 s that never arrived: coverage 0, no counts reported
    ivs += meter.process(np.concatenate([b, np.zeros(FS - b.size)]))
    assert [iv.impulse_counts[0].tolist() for iv in ivs] == [[1] * 5, [0] * 5, [1] * 5]
    assert "impulses" not in ivs[1].records()[0] and ivs[1].coverage[0] == 0


# ------------------------------------------------------------------------- contract
TOPIC = contract.topic("e1", "s1", "m1", "levels")


def payload_with(impulses=None, **over) -> dict:
    p = levels_payload("m1", 1, time.time_ns() // 10**9 * 10**9 - 10**10)
    if impulses is not None:
        p["impulses"] = impulses
    p.update(over)
    return p


def test_contract_old_payloads_stay_valid_and_new_ones_round_trip():
    old = payload_with()
    assert "impulses" not in contract.validate(TOPIC, contract.encode(old)).payload
    meter = SoundLevelMeter(FS, impulse_thresholds_db=(120.0, 137.5))
    (iv,) = meter.process(scene(1.0, [(0.3, 139.0)]))
    (rec,) = iv.records()
    assert rec["impulses"] == {"thresholds_db": [120.0, 137.5], "counts": [1, 1]}
    p = contract.levels_payload(rec, meter="m1", seq=1, start_ns=old["start_ns"])
    msg = contract.validate(TOPIC, contract.encode(p))
    assert msg.payload["impulses"] == rec["impulses"]
    # stored as one integer field per threshold: imp_120=1i, imp_137p5=1i
    (line,) = message_lines(msg)
    assert "imp_120=1i" in line and "imp_137p5=1i" in line
    # the multichannel form carries it per channel
    multi = contract.levels_payload_channels([rec, {**rec, "channel": 1}], meter="m1", seq=2,
                                             start_ns=old["start_ns"])
    lines = message_lines(contract.validate(TOPIC, contract.encode(multi)))
    assert all("imp_137p5=1i" in ln for ln in lines) and len(lines) == 2


GOOD = {"thresholds_db": [120, 130, 135, 137, 140], "counts": [3, 1, 0, 0, 0]}


@pytest.mark.parametrize(("impulses", "reason"), [
    ({**GOOD, "counts": [3, -1, 0, 0, 0]}, "count at 130 dB = -1 is outside 0..101"),
    ({**GOOD, "counts": [3, 1.5, 0, 0, 0]}, "count at 130 dB '1.5' is not an integer"),
    ({**GOOD, "counts": [3, 1.0, 0, 0, 0]}, "count at 130 dB '1.0' is not an integer"),
    ({**GOOD, "counts": [3, True, 0, 0, 0]}, "is not an integer"),
    ({**GOOD, "counts": [3, 1, 0, 0]}, "'counts' must be a list of 5 integers"),
    ({**GOOD, "counts": [102, 0, 0, 0, 0]}, "outside 0..101"),  # 100/s × 1 s + 1
    ({**GOOD, "thresholds_db": [120, 130, 135, 140, 137]}, "strictly increasing"),
    ({**GOOD, "thresholds_db": [120, 130, 135, 137, 250]}, "outside 0..200 dB"),
    ({**GOOD, "thresholds_db": [120, 130, 135, 137.25, 140]}, "not a multiple of 0.1 dB"),
    ({**GOOD, "thresholds_db": [120, 130, "135", 137, 140]}, "is not a number"),
    ({"thresholds_db": list(range(100, 117)), "counts": [0] * 17}, "at most 16"),
    ({"thresholds_db": [], "counts": []}, "'thresholds_db' is empty"),
    ({**GOOD, "extra": 1}, "exactly 'thresholds_db' and 'counts'"),
    ([1, 2], "must be an object"),
])
def test_contract_refuses_broken_impulses_with_a_reason(impulses, reason):
    raw = contract.encode(payload_with(impulses))
    with pytest.raises(contract.ContractError, match="impulses") as e:
        contract.validate(TOPIC, raw)
    assert reason in str(e.value)


def test_contract_refuses_a_nan_threshold_and_in_the_multichannel_form():
    p = payload_with({**GOOD})
    raw = json.dumps(p).replace("[120, 130", "[NaN, 130").encode()
    with pytest.raises(contract.ContractError, match="NaN"):
        contract.validate(TOPIC, raw)
    with pytest.raises(contract.ContractError, match="not finite"):
        contract.check_impulse_thresholds([float("nan")])
    one = {k: p.pop(k) for k in ("channel", "ea", "coverage", "overload", "impulses",
                                 *contract.LEVEL_FIELDS)}
    p["channels"] = [dict(one, channel=0), dict(one, channel=1, impulses={**GOOD,
                                                                          "counts": [-1] * 5})]
    with pytest.raises(contract.ContractError, match=r"channels\[1\]: field 'impulses'"):
        contract.validate(TOPIC, contract.encode(p))


def test_schema_field_names_and_their_thresholds():
    # 120 → imp_120; 137.5 → imp_137p5 (the decimal point is not a plain name character)
    assert [schema.impulse_field(t) for t in (120, 137.5, 0, 200)] == [
        "imp_120", "imp_137p5", "imp_0", "imp_200"]
    with pytest.raises(ValueError):
        schema.impulse_field(137.25)
    names = ["ea", "imp_140", "imp_120", "imp_137p5", "imp_13p0", "imp_0120", "imp_x", "n"]
    assert schema.impulse_thresholds(names) == {120.0: "imp_120", 137.5: "imp_137p5",
                                                140.0: "imp_140"}


# ------------------------------------------------------------- collector and rollups
def test_counts_are_stored_and_summed_per_minute_on_real_servers(stack, tmp_path):
    """Three minutes of 1 s points: minute 0 with the default thresholds, minute 1 mixed (an
    agent with 137.5 dB too, and points without counts), minute 2 without any counts; one
    broken message goes to the dead letters."""
    c = start_collector(stack, tmp_path, client_id="imp", group="g-imp", batch_size=50)
    pub = Publisher(stack, "m1")
    rng = random.Random(17)
    enterprise = "impulses"
    topic = contract.topic(enterprise, "s1", "m1", "levels")
    try:
        base = minute_of(time.time_ns()) - 8 * MINUTE_NS
        payloads = []
        for k in range(180):
            p = levels_payload("m1", k + 1, base + k * 10**9, rng)
            minute = k // 60
            if minute == 0 or (minute == 1 and k % 3 == 0):
                p["impulses"] = {"thresholds_db": list(THRESHOLDS),
                                 "counts": sorted(rng.choices(range(4), k=5), reverse=True)}
            elif minute == 1 and k % 3 == 1:
                p["impulses"] = {"thresholds_db": [120, 137.5],
                                 "counts": [rng.randrange(3), rng.randrange(2)]}
            payloads.append(p)
            pub.publish(topic, p)
        bad = payload_with({**GOOD, "counts": [1, 2, 3, -4, 0]}, seq=999,
                           start_ns=base + 500 * 10**9)
        pub.publish(topic, bad)
        pub.wait()
        wait_for(lambda: c.counters()["acked"] >= 181, what="181 acknowledgements")

        # the 1 s points: one integer field per threshold, as sent
        r = stack.influx()
        rows = r.query_rows(f"SELECT * FROM {schema.source(schema.LEVELS)} WHERE "
                            f"{schema.where_tags([('enterprise', enterprise)])}", epoch="ns")
        assert len(rows) == 180
        by_time = {int(row["time"]): row for row in rows}
        for p in payloads:
            row = by_time[p["start_ns"]]
            imp = p.get("impulses")
            sent = {} if imp is None else {schema.impulse_field(t): n for t, n in zip(
                imp["thresholds_db"], imp["counts"], strict=True)}
            stored = {k: v for k, v in row.items() if k.startswith("imp_") and v is not None}
            assert stored == sent and all(type(v) is int for v in stored.values())

        # the minute rollups: SUM of each field per minute, computed here from the payloads
        want: dict[int, dict[str, int]] = {}
        for p in payloads:
            sums = want.setdefault(minute_of(p["start_ns"]), {})
            imp = p.get("impulses") or {"thresholds_db": [], "counts": []}
            for t, n in zip(imp["thresholds_db"], imp["counts"], strict=True):
                f = schema.impulse_field(t)
                sums[f] = sums.get(f, 0) + n
        assert sorted(len(v) for v in want.values()) == [0, 5, 6]  # minute 2 has none

        minutes_src = schema.source(schema.LEVELS_1M, schema.RP_FOREVER)

        def rollups():
            got = r.query_rows(f"SELECT * FROM {minutes_src} WHERE "
                               f"{schema.where_tags([('enterprise', enterprise)])}",
                               epoch="ns")
            return {int(g["time"]): g for g in got} if len(got) == 3 and all(
                g["n"] == 60 for g in got) else None

        got = wait_for(rollups, 30, "three minute rollups of 60 points")
        assert set(got) == set(want)
        for minute, sums in want.items():
            g = got[minute]
            stored = {k: v for k, v in g.items() if k.startswith("imp_") and v is not None}
            assert stored == sums and all(type(v) is int for v in stored.values())
            # the minute without counts still rolls up its energy (a ~1e-12 relative sum)
            ea = sum(p["ea"] or 0.0 for p in payloads if minute_of(p["start_ns"]) == minute)
            assert math.isclose(g["ea"], ea, rel_tol=1e-9)
        # analysis finds the thresholds from the answer's columns
        columns = set().union(*(g.keys() for g in got.values()))
        assert list(schema.impulse_thresholds(columns)) == [120.0, 130.0, 135.0, 137.0,
                                                             137.5, 140.0]

        dead = r.query_rows(f"SELECT * FROM {schema.source(schema.DEAD_LETTERS)} WHERE "
                            f"{schema.where_tags([('collector', 'imp')])}")
        assert len(dead) == 1 and dead[0]["stage"] == "contract"
        assert "field 'impulses': count at 137 dB = -4 is outside 0..101" in dead[0]["reason"]
    finally:
        pub.close()
        c.stop()
