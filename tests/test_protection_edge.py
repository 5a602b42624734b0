"""Protection measured at the ear (tingbao.edge.protection) on synthetic signals through known
attenuation filters, and the protection contract against hostile payloads."""

from __future__ import annotations

import copy
import dataclasses
import json
import time

import numpy as np
import pytest
from scipy import signal

from tingbao.edge import contract, iec61672
from tingbao.edge.levels import level_from_mean_square
from tingbao.edge.protection import (
    BAND_LABELS,
    ProtectionMonitor,
    ProtectionSettings,
    classify,
)

FS = 48_000
REQUIRED = 15.0
# the "plug": flat 20 dB loss and a 2nd-order low-pass at 800 Hz (more loss at high
# frequencies, as an earplug has)
PLUG = signal.butter(2, 800, "lowpass", fs=FS, output="sos")
PLUG_GAIN = 10 ** (-20 / 20)
# a badly inserted plug: 8 dB flat loss only
POOR_GAIN = 10 ** (-8 / 20)


def pink(seconds: float, seed: int) -> np.ndarray:
    """Pink-ish noise (Paul Kellet's 1/f filter on white noise), unit RMS, raw units = Pa."""
    w = np.random.default_rng(seed).standard_normal(round(seconds * FS))
    x = signal.lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                       [1, -2.494956002, 2.017265875, -0.522189400], w)
    return x / np.sqrt(np.mean(x**2))


def outer_at(laeq_db: float, seconds: float, seed: int = 1) -> np.ndarray:
    x = pink(seconds, seed)
    a = signal.sosfilt(iec61672.weighting_sos("A", FS), x)
    la = level_from_mean_square(np.mean(a**2))
    return x * 10 ** ((laeq_db - la) / 20)


def fft_a_level(x: np.ndarray) -> float:
    """LAeq (dB) computed independently: FFT-domain A weighting of the whole signal."""
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / FS)
    w = np.zeros_like(f)
    w[1:] = 10 ** (iec61672.a_weighting_db(f[1:]) / 10)
    scale = np.where((f > 0) & (f < FS / 2), 2.0, 1.0)
    return float(level_from_mean_square(np.sum(spec * w * scale) / len(x) ** 2))


FULL_SCALE_PA = 200.0
"""Digital full scale of the test signals (raw units = Pa): 200 Pa, a 140 dB peak, an in-ear
dosimeter's range; the 95 dB(A) signals peak near 5 Pa."""


def run(outer, inner, block=FS, settings=None, interval=1.0):
    m = ProtectionMonitor(FS, settings or ProtectionSettings(required_db=REQUIRED), interval,
                          full_scale=FULL_SCALE_PA)
    x = np.stack([outer, inner], axis=1)
    parts = [m.process(x[i:i + block]) for i in range(0, len(x), block)] + [m.flush()]
    return [r for p in parts for r in p.records()], m


def voice(seconds: float, level_pa: float, seed: int = 5) -> np.ndarray:
    """A synthetic voiced signal: harmonics of a fundamental gliding 120-220 Hz, each
    weighted by formant-like peaks at 500 and 900 Hz and rolled off above 1 kHz."""
    t = np.arange(round(seconds * FS)) / FS
    f0 = 170 + 50 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / FS
    y = np.zeros_like(t)
    for k in range(1, 9):  # harmonics up to ~1.7 kHz
        fk = k * 170.0
        amp = (np.exp(-((fk - 500) / 250) ** 2) + 0.6 * np.exp(-((fk - 900) / 300) ** 2)
               + 0.3 / k)
        y += amp * np.sin(k * phase + k)
    syll = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))  # syllabic 4 Hz modulation
    y *= syll
    return y / np.sqrt(np.mean(y**2)) * level_pa


def test_worn_plug_attenuation_matches_an_independent_computation():
    # outer: pink noise at 95 dB(A); inner: through the plug filter. Expected A-weighted
    # attenuation from the FFT-domain A levels of both whole signals (not the module's
    # filters); expected octave-band attenuation from sosfreqz of the plug filter,
    # averaged as power over each band's edges fm·2^(±1/2) with the pink (1/f) weighting.
    seconds = 10.0
    outer = outer_at(95.0, seconds)
    inner = signal.sosfilt(PLUG, outer) * PLUG_GAIN
    recs, _ = run(outer, inner)
    expected_a = fft_a_level(outer) - fft_a_level(inner)
    att_a = np.array([r["att_a"] for r in recs[1:]])  # first second: filters settling
    assert np.all(np.abs(att_a - expected_a) < 0.5), (att_a, expected_a)
    assert {r["state"] for r in recs[1:]} == {"worn"}  # ~27 dB >= 15 required
    band = np.array([r["bands"]["att"] for r in recs[1:]])
    for i, lab in enumerate(BAND_LABELS):
        fm = float(lab)
        f = np.geomspace(fm / 2**0.5, fm * 2**0.5, 400)
        _, h = signal.sosfreqz(PLUG, worN=f, fs=FS)
        power = np.sum(np.abs(h) ** 2 / f) / np.sum(1 / f)  # pink weighting
        expected = -10 * np.log10(power * PLUG_GAIN**2)
        # filter skirts leak energy between octaves: 1 dB up to 2 kHz, the steep end more
        tol = 1.0 if fm <= 2000 else 3.0
        assert np.all(np.abs(band[:, i] - expected) < tol), (lab, band[:, i], expected)
    # level under the protector: LAeq,inner = 95 - att_a
    inner_l = np.array([r["inner_laeq"] for r in recs[1:]])
    assert np.all(np.abs(inner_l - (np.array([r["outer_laeq"] for r in recs[1:]]) - att_a))
                  < 0.02)


def test_removed_mid_shift_and_poor_fit_and_quiet():
    # 0-20 s plug in, 20-40 s removed (inner = outer), 40-60 s badly inserted (8 dB flat <
    # 15 required), 60-70 s quiet (outer 60 dB(A) < 70)
    outer = outer_at(95.0, 70.0)
    outer[60 * FS:] *= 10 ** (-35 / 20)
    inner = signal.sosfilt(PLUG, outer) * PLUG_GAIN
    inner[20 * FS:40 * FS] = outer[20 * FS:40 * FS]
    inner[40 * FS:] = outer[40 * FS:] * POOR_GAIN
    recs, _ = run(outer, inner)
    states = [r["state"] for r in recs]
    assert states[1:20] == ["worn"] * 19
    assert states[21:40] == ["removed"] * 19  # the boundary second may be either
    assert states[41:60] == ["poor_fit"] * 19
    assert states[61:70] == ["quiet"] * 9
    worn = sum(r["worn_s"] for r in recs)
    assessed = sum(r["assessed_s"] for r in recs)
    assert 19 <= worn <= 20 and 58 <= assessed <= 60  # 60 s loud, 10 s quiet not assessed


def test_talking_worker_is_not_read_as_removed():
    # plug in for 60 s; 20-40 s the worker talks: the inner mic gets a voiced signal
    # (120-220 Hz harmonics, formants 500/900 Hz) at 88 dB rms (occlusion-boosted own
    # voice), about as loud as the outer noise's low bands. The high-frequency attenuation
    # (2-8 kHz) stays ~35-60 dB, so the intervals must be voice (or worn), never removed
    # nor poor_fit, and they count as worn.
    outer = outer_at(95.0, 60.0)
    inner = signal.sosfilt(PLUG, outer) * PLUG_GAIN
    from tingbao.edge.levels import P0
    inner[20 * FS:40 * FS] += voice(20.0, P0 * 10 ** (88 / 20))
    recs, _ = run(outer, inner)
    talk = recs[21:40]
    assert {r["state"] for r in talk} <= {"voice", "worn"}
    assert sum(r["state"] == "voice" for r in talk) >= 15  # the voice does lower att_a
    assert all(r["worn_s"] == r["assessed_s"] == r["coverage"] for r in talk)
    # the same voice with the plug removed (open ear: no occlusion, inner = outer + voice
    # at a lower level) is removed
    inner2 = outer.copy()
    inner2[20 * FS:40 * FS] += voice(20.0, P0 * 10 ** (80 / 20))
    recs2, _ = run(outer, inner2)
    assert {r["state"] for r in recs2[21:40]} == {"removed"}


def test_block_size_invariance_and_batched_classification():
    outer = outer_at(95.0, 12.0)
    inner = signal.sosfilt(PLUG, outer) * PLUG_GAIN
    inner[6 * FS:] = outer[6 * FS:]
    a, ma = run(outer, inner, block=FS)
    b, mb = run(outer, inner, block=7919)  # a prime: blocks straddle every boundary
    assert [r["state"] for r in a] == [r["state"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra["att_a"] == pytest.approx(rb["att_a"], abs=0.011)
    # classification of all intervals at once == one at a time with the state carried
    m = ma.meter
    m.reset()
    spectra = m.process(np.stack([outer, inner], axis=1))
    cfg = ProtectionSettings(required_db=REQUIRED)
    whole, _ = classify(spectra, cfg)
    state, one = None, []
    for i in range(len(spectra)):
        part = type(spectra)(spectra.index[i:i + 1], spectra.start_s[i:i + 1],
                             spectra.duration_s, spectra.coverage_s[i:i + 1],
                             spectra.outer_ea[i:i + 1], spectra.inner_ea[i:i + 1],
                             spectra.outer_bands[i:i + 1], spectra.inner_bands[i:i + 1])
        r, state = classify(part, cfg, state)
        one.append(r.state[0])
    assert list(whole.state) == one


def test_nan_chunks_are_no_audio_and_good_seconds_are_kept():
    # seconds 3-5 all NaN (two whole intervals), and 0.5 s of NaN inside second 8: those
    # two intervals are no_audio; second 8 keeps its 0.5 valid seconds, worn.
    outer = outer_at(95.0, 10.0)
    inner = signal.sosfilt(PLUG, outer) * PLUG_GAIN
    inner[3 * FS:5 * FS] = np.nan
    outer[8 * FS:int(8.5 * FS)] = np.nan
    recs, m = run(outer, inner, block=4800)
    assert [r["state"] for r in recs[3:5]] == ["no_audio", "no_audio"]
    assert recs[8]["coverage"] == pytest.approx(0.5) and recs[8]["state"] == "worn"
    assert recs[8]["worn_s"] == pytest.approx(0.5)
    # total worn = 10 s - 2 s (NaN) - 0.5 s (NaN) - second 5 (filters settling after the
    # gap may or may not reach 15 dB... they do: the A filter's memory is ms)
    assert sum(r["worn_s"] for r in recs[1:]) >= 6.4
    assert m.bad_samples == 2 * FS + FS // 2
    for r in recs:  # every record is a valid contract payload
        p = contract.protection_payload(r, meter="m1", seq=1,
                                        start_ns=time.time_ns() - 10**12 + r["index"] * 10**9,
                                        worker="w1", protector="plug-a")
        contract.validate("tingbao/v1/e/s/m1/protection", contract.encode(p))


# --------------------------------------------------------------------------- contract
def good_payload() -> dict:
    return {"schema": "tingbao.protection/1", "meter": "m1", "seq": 3,
            "start_ns": time.time_ns() - 10**12, "duration_s": 1.0, "calibrated": True,
            "worker": "w-0042", "protector": "foam-plug-a", "coverage": 1.0,
            "outer_laeq": 95.1, "inner_laeq": 68.3, "att_a": 26.8, "required_db": 15.0,
            "state": "worn", "worn_s": 1.0, "assessed_s": 1.0,
            "bands": {"fc": [63, 125, 250, 500, 1000, 2000, 4000, 8000],
                      "att": [20.1, 20.3, 21.0, 22.4, 25.9, 33.0, 38.2, None]}}


TOPIC = "tingbao/v1/e/s/m1/protection"

HOSTILE = [
    ("worker", "w 1", "not a valid id"),
    ("worker", "w,1=x", "not a valid id"),
    ("protector", None, "not a valid id"),
    ("state", "asleep", "is not one of"),
    ("state", ["worn"], "is not one of"),
    ("att_a", 200.0, "plausible range"),
    ("att_a", 20.0, "is not outer_laeq - inner_laeq"),
    ("outer_laeq", -1.0, "plausible range"),
    ("required_db", 61.0, "plausible range"),
    ("coverage", 2.0, "plausible range"),
    ("worn_s", 0.5, "counts every assessed second as worn"),
    ("assessed_s", 1.5, "plausible range"),
    ("bands", {"fc": [63, 125], "att": [1.0]}, "one per band"),
    ("bands", {"fc": [125, 63], "att": [1.0, 2.0]}, "strictly increasing"),
    ("bands", {"fc": [100], "att": [1.0]}, "nominal frequency"),
    ("bands", {"fc": [True], "att": [1.0]}, "nominal frequency"),
    ("bands", {"fc": [1000], "att": ["1"]}, "must be a number"),
    ("bands", {"fc": [1000], "att": [500.0]}, "plausible range"),
    ("bands", {"fc": [1000], "att": [1.0], "x": []}, "exactly 'fc' and 'att'"),
    ("bands", {"fc": list(range(11)), "att": [0] * 11}, "1-10"),
    ("extra", 1, "unknown field"),
]


@pytest.mark.parametrize(("key", "value", "reason"), HOSTILE)
def test_hostile_protection_payloads_are_refused(key, value, reason):
    contract.validate(TOPIC, contract.encode(good_payload()))  # the base is good
    p = copy.deepcopy(good_payload())
    p[key] = value
    with pytest.raises(contract.ContractError, match=reason):
        contract.validate(TOPIC, json.dumps(p).encode())


def test_protection_state_rules():
    p = good_payload()
    p.update(state="removed", worn_s=1.0)
    with pytest.raises(contract.ContractError, match="no worn seconds"):
        contract.validate(TOPIC, contract.encode(p))
    p.update(state="quiet", worn_s=0.0, assessed_s=1.0)
    with pytest.raises(contract.ContractError, match="not assessed"):
        contract.validate(TOPIC, contract.encode(p))
    p.update(state="no_audio", assessed_s=0.0, outer_laeq=None, inner_laeq=None, att_a=None)
    contract.validate(TOPIC, contract.encode(p))  # levels may be null when not assessed
    p.update(state="poor_fit", assessed_s=1.0)
    with pytest.raises(contract.ContractError, match="needs outer_laeq"):
        contract.validate(TOPIC, contract.encode(p))
    with pytest.raises(contract.ContractError, match="sent on a 'levels' topic"):
        contract.validate("tingbao/v1/e/s/m1/levels", contract.encode(good_payload()))


# ------------------------------------------------------------- review fixes (second review)
LEAK_LP = signal.butter(4, 250, "lowpass", fs=FS, output="sos")
"""An acoustic leak beside the plug: a parallel path passing the low frequencies (4th-order
low-pass at 250 Hz), added to the plug's path at unity gain (0 dB)."""


def white_at(level_db: float, seconds: float, seed: int) -> np.ndarray:
    """White noise, unweighted level ``level_db`` (dB re 20 µPa), raw units = Pa."""
    from tingbao.edge.levels import P0
    w = np.random.default_rng(seed).standard_normal(round(seconds * FS))
    return w / np.sqrt(np.mean(w**2)) * P0 * 10 ** (level_db / 20)


def synthetic(rows, duration: float = 1.0, first: int = 0):
    """IntervalSpectra built from numbers, for the pure decision: ``rows`` of (LAeq,outer dB,
    att_a dB, band attenuations dB (8,)); every outer octave band holds 1 Pa²·s per second
    (94 dB), the inner band = outer / 10^(D/10). With equal D over a group of bands the
    group's energy-ratio attenuation (D_HF, D_LM) is exactly that D."""
    from tingbao.edge.levels import P0
    from tingbao.edge.protection import IntervalSpectra
    n = len(rows)
    lo = np.array([r[0] for r in rows], dtype=float)
    att = np.array([r[1] for r in rows], dtype=float)
    d = np.array([r[2] for r in rows], dtype=float).reshape(n, len(BAND_LABELS))
    idx = np.arange(first, first + n, dtype=np.int64)
    outer_b = np.full((n, len(BAND_LABELS)), duration)
    return IntervalSpectra(idx, idx * duration, duration, np.full(n, duration),
                           P0**2 * 10 ** (lo / 10) * duration,
                           P0**2 * 10 ** ((lo - att) / 10) * duration,
                           outer_b, outer_b * 10 ** (-d / 10))


def bands(d_hf: float, d_lm: float, **override) -> list[float]:
    """Octave attenuations 63 Hz … 8 kHz with D_HF = d_hf (4, 8 kHz) and D_LM = d_lm
    (125 Hz … 1 kHz, 63 Hz too); 2 kHz halfway. ``override``: band label → D, e.g. b250=-4."""
    v = [d_lm, d_lm, d_lm, d_lm, d_lm, (d_hf + d_lm) / 2, d_hf, d_hf]
    for k, x in override.items():
        v[BAND_LABELS.index(k[1:])] = x
    return v


def validate_all(recs):
    for r in recs:
        p = contract.protection_payload(r, meter="m1", seq=1,
                                        start_ns=time.time_ns() - 10**12 + r["index"] * 10**9,
                                        worker="w1", protector="plug-a")
        contract.validate(TOPIC, contract.encode(p))


def test_a_dead_inner_microphone_is_not_read_as_worn():
    # review t5: outer white noise at 105 dB(A); the inner microphone is dead and outputs
    # only its electrical noise, white at 20 dB unweighted. FFT-domain A levels: white
    # noise over 0-24 kHz loses ~2.7 dB to A weighting, so att_a ~ 105 - 17.3 = 87.7 dB,
    # far beyond the ~40-50 dB bone conduction lets any protector reach (setting
    # max_plausible_att_db = 50): not audio of a protector, state no_audio, not assessed.
    outer = white_at(0.0, 5.0, 1)
    outer *= 10 ** ((105.0 - fft_a_level(outer)) / 20)
    inner = white_at(20.0, 5.0, 2)
    expected = fft_a_level(outer) - fft_a_level(inner)
    assert 85.0 < expected < 90.0
    recs, _ = run(outer, inner)
    assert [r["state"] for r in recs[1:]] == ["no_audio"] * 4
    assert all(r["worn_s"] == r["assessed_s"] == 0.0 for r in recs)
    assert all(abs(r["att_a"] - expected) < 0.5 for r in recs[1:])  # still reported
    validate_all(recs)
    # the dead microphone's floor at 2 dB unweighted: LAeq,inner ~ 2 - 2.7 = -0.7 dB, below
    # the contract's 0 … 200 dB, and att_a ~ 105.7 dB above its -60 … 100 dB. Those fields
    # are sent as null, the record stays valid (it was refused, a dead letter, before).
    inner2 = white_at(2.0, 5.0, 2)
    assert fft_a_level(inner2) < 0.0
    recs2, _ = run(outer, inner2)
    assert [r["state"] for r in recs2[1:]] == ["no_audio"] * 4
    assert all(r["inner_laeq"] is None and r["att_a"] is None for r in recs2)
    assert all(abs(r["outer_laeq"] - 105.0) < 0.5 for r in recs2[1:])  # the good field kept
    validate_all(recs2)


def test_attenuation_above_the_plausible_limit_is_not_assessed():
    # pure decision at the boundary: outer 95 dB(A), required 20 dB, limit 50 dB.
    # att_a 50.0 (= the limit) is worn; 50.5 is no_audio, 0 s assessed; the band values are
    # irrelevant to it. A band attenuation of 120 dB (> the contract's 100) is sent as null.
    cfg = ProtectionSettings(required_db=20.0)
    assert cfg.max_plausible_att_db == 50.0
    res, _ = classify(synthetic([(95.0, 50.0, bands(45.0, 30.0)),
                                 (95.0, 50.5, bands(45.0, 30.0)),
                                 (95.0, 30.0, bands(45.0, 30.0, b8000=120.0))]), cfg)
    assert list(res.state) == ["worn", "no_audio", "worn"]
    assert list(res.assessed_s) == [1.0, 0.0, 1.0]
    recs = res.records()
    assert recs[2]["bands"]["att"][-1] is None and recs[2]["bands"]["att"][-2] == 45.0
    validate_all(recs)
    # a requirement no protector can be measured to reach is a configuration error
    with pytest.raises(ValueError, match="max_plausible_att_db"):
        ProtectionSettings(required_db=55.0)


def leak_with_pauses(seconds_worn: int, pattern: list[tuple[str, int]], seed: int = 3):
    """Outer pink noise at 95 dB(A), plug in (inner through PLUG) for ``seconds_worn`` s,
    then ``pattern`` of ("leak", s): the plug plus the 0 dB low-pass leak path, or
    ("quiet", s): the machine stops, outer 40 dB lower (55 dB(A) < 70: quiet)."""
    total = seconds_worn + sum(s for _, s in pattern)
    outer = outer_at(95.0, total, seed)
    leak = np.zeros(outer.size)
    t = seconds_worn
    for kind, s in pattern:
        if kind == "quiet":
            outer[t * FS:(t + s) * FS] *= 10 ** (-40 / 20)
        else:
            leak[t * FS:(t + s) * FS] = 1.0
        t += s
    inner = signal.sosfilt(PLUG, outer) * PLUG_GAIN + signal.sosfilt(LEAK_LP, outer) * leak
    return outer, inner


def test_short_quiet_pauses_do_not_reset_the_voice_limit():
    # review t4, shortened: required 20 dB. The leak keeps D_HF (~49 dB, as the reference)
    # and drops D_LM (~5 vs ~21 dB) and att_a (~18.7 < 19: no hysteresis hold), so against
    # the reference it reads as a talk. voice_max_s = 10 s; 5 s worn, then 4 x (8 s leak +
    # 2 s quiet). Before: each 2 s quiet reset the run, 32 voice seconds of 32. Now the quiet
    # pauses the run: 8 s voice, pause, 2 more voice seconds (run 10 s), and the remaining
    # 32 - 10 = 22 leak seconds are poor_fit.
    cfg = ProtectionSettings(required_db=20.0, voice_max_s=10.0)
    outer, inner = leak_with_pauses(5, [("leak", 8), ("quiet", 2)] * 4)
    recs, m = run(outer, inner, settings=cfg)
    states = [r["state"] for r in recs]
    assert states[1:5] == ["worn"] * 4
    leak_s = [states[5 + 10 * k + i] for k in range(4) for i in range(8)]
    assert set(leak_s) <= {"voice", "poor_fit"}
    assert 9 <= leak_s.count("voice") <= 11 and leak_s.count("poor_fit") >= 21
    assert leak_s[-8:] == ["poor_fit"] * 8
    assert m.wear_state.voice_run_s > 10.0  # the run is still open at the end


def test_a_long_quiet_stretch_invalidates_the_voice_reference():
    # 5 s worn (the reference: D_HF ~49, D_LM ~21 dB), 8 s quiet (> reference_break_s = 5 s:
    # the machine stopped, plugs may have come out), then 6 s of the leak. Before: the
    # reference still held (age 8 s < 30 min) and the leak read voice (D_HF held, D_LM
    # dropped > 6 dB). Now there is no reference; the no-reference rule needs some
    # 125-500 Hz band with the inside >= 3 dB louder, the leak's is at most 0.3 dB louder
    # (D_125 ~ -0.3 dB), so it is poor_fit.
    cfg = ProtectionSettings(required_db=20.0)
    outer, inner = leak_with_pauses(5, [("quiet", 8), ("leak", 6)])
    recs, _ = run(outer, inner, settings=cfg)
    states = [r["state"] for r in recs]
    assert states[6:13] == ["quiet"] * 7
    assert states[14:19] == ["poor_fit"] * 5
    # the same with a 2 s stop (<= 5 s) keeps the reference: voice
    outer, inner = leak_with_pauses(5, [("quiet", 2), ("leak", 6)])
    recs, _ = run(outer, inner, settings=cfg)
    assert [r["state"] for r in recs[8:13]] == ["voice"] * 5


def test_without_a_reference_the_inside_must_be_clearly_louder():
    # a shift that starts with the leak (no worn interval before): D_HF ~49 dB >= 20 but the
    # 125 Hz band's inside is only ~0.3 dB louder (D_125 = -0.3 dB, 250 Hz +4.4): not a voice
    # (needs D <= -3 dB in a 125-500 Hz band), poor_fit. Before: any D < 0 made it voice.
    cfg = ProtectionSettings(required_db=20.0)
    outer, inner = leak_with_pauses(0, [("leak", 6)])
    recs, _ = run(outer, inner, settings=cfg)
    assert {r["state"] for r in recs[1:6]} == {"poor_fit"}
    # a talk from the start: the plug in, own voice at 100 dB rms in the canal (occluded:
    # 10-25 dB above the ~80-90 dB of a raised voice): the 500 Hz band reads D ~ -9 dB and
    # D_HF ~48 dB, so voice, counted as worn
    from tingbao.edge.levels import P0
    outer = outer_at(95.0, 6.0)
    inner = signal.sosfilt(PLUG, outer) * PLUG_GAIN + voice(6.0, P0 * 10 ** (100 / 20))
    recs, _ = run(outer, inner, settings=cfg)
    assert {r["state"] for r in recs[1:6]} == {"voice"}


def test_an_interval_held_by_hysteresis_is_not_the_voice_reference():
    # required 20 dB, hysteresis 1 dB. i0 att 25 (worn, the reference: D_HF 40, D_LM 22);
    # i1 att 19.5 (worn only by the hold, 19.5 >= 19; D_HF 34, D_LM 19: the plug works
    # loose); i2 att 15, D_HF 32, D_LM 12. Against i1 (before): 32 >= 34 - 3 and 12 <= 19 - 6
    # -> voice, a loosening plug ratchets its own reference down. Against i0 (now): 32 < 40 - 3
    # -> poor_fit.
    cfg = ProtectionSettings(required_db=20.0)
    rows = [(95.0, 25.0, bands(40.0, 22.0)), (95.0, 19.5, bands(34.0, 19.0)),
            (95.0, 15.0, bands(32.0, 12.0))]
    whole, st = classify(synthetic(rows), cfg)
    assert list(whole.state) == ["worn", "worn", "poor_fit"]
    assert st.ref_hf_db == pytest.approx(40.0) and st.ref_lm_db == pytest.approx(22.0)
    one, st1 = [], None
    for i, row in enumerate(rows):
        r, st1 = classify(synthetic([row], first=i), cfg, st1)
        one.append(r.state[0])
    assert one == list(whole.state) and st1 == st


def test_clipped_intervals_are_not_assessed():
    # pink at 95 dB(A) (~1.1 Pa rms), plug in, raw units = Pa / 10 (pa_per_unit 10), full
    # scale 1.0 raw = 10 Pa. Second 3: the outer microphone overloads: its raw samples are
    # clipped at ±0.2 (x 10 Pa: a peak of 2 Pa, under-reading the outer level). Second 5: one
    # inner sample reaches full scale. Both intervals are no_audio (not assessed); the others
    # stay worn. clipped_samples counts every sample at or beyond 1 - 1/32768 of full scale.
    from tingbao.edge.meter import PCM16_FULL_SCALE
    outer = outer_at(95.0, 8.0) / 10.0
    inner = signal.sosfilt(PLUG, outer) * PLUG_GAIN
    sec3 = slice(3 * FS, 4 * FS)
    outer[sec3] = np.clip(outer[sec3] * 5.0, -1.0, 1.0)
    n_clip = int(np.sum(np.abs(outer[sec3]) >= PCM16_FULL_SCALE))
    assert n_clip > 100
    inner[5 * FS + 100] = -1.0
    m = ProtectionMonitor(FS, ProtectionSettings(required_db=REQUIRED), pa_per_unit=10.0,
                          full_scale=1.0)
    x = np.stack([outer, inner], axis=1)
    res = [m.process(x[i:i + 7919]) for i in range(0, len(x), 7919)] + [m.flush()]
    states = [s for r in res for s in r.state]
    assert states[1:] == ["worn", "worn", "no_audio", "worn", "no_audio", "worn", "worn"]
    assert m.clipped_samples == n_clip + 1


def test_batched_and_one_by_one_decisions_agree_with_pauses_and_breaks():
    # a random sequence of 400 synthetic intervals (worn, held, leak-like, talk-like,
    # removed, quiet, no_audio by an implausible 60 dB) in random chunk sizes: every cut
    # gives the states and the final WearState of the whole batch.
    rng = np.random.default_rng(11)
    kinds = [(95.0, 25.0, bands(40.0, 22.0)), (95.0, 19.5, bands(39.0, 21.0)),
             (95.0, 15.0, bands(39.0, 10.0)), (95.0, 12.0, bands(41.0, 5.0, b250=-4.0)),
             (95.0, 0.0, bands(-2.0, 0.0)), (60.0, 25.0, bands(40.0, 22.0)),
             (95.0, 60.0, bands(40.0, 22.0))]
    seq = []
    while len(seq) < 400:  # runs of 1-12 intervals of one kind
        seq += [kinds[rng.integers(len(kinds))]] * int(rng.integers(1, 13))
    seq = seq[:400]
    cfg = ProtectionSettings(required_db=20.0, voice_max_s=15.0, reference_max_age_s=60.0)
    whole, st = classify(synthetic(seq), cfg)
    assert {"worn", "voice", "poor_fit", "removed", "quiet", "no_audio"} <= set(whole.state)
    i, parts, st2 = 0, [], None
    while i < len(seq):
        k = int(rng.integers(1, 40))
        r, st2 = classify(synthetic(seq[i:i + k], first=i), cfg, st2)
        parts += list(r.state)
        i += k
    assert parts == list(whole.state) and st2 == st


def test_a_block_that_completes_no_interval_returns_what_classify_returns_for_none():
    # ProtectionMonitor skips classify when the meter completed no interval; its answer must
    # be classify's own for n = 0 (empty arrays of the same dtypes and shapes) and the wear
    # state must stay as it was. 0.5 s of 95 dB(A) at 48 kHz: half a 1 s interval, none done.
    cfg = ProtectionSettings(required_db=REQUIRED)
    m = ProtectionMonitor(FS, cfg, full_scale=FULL_SCALE_PA)
    worn = outer_at(95.0, 2.0)
    m.process(np.stack([worn, signal.sosfilt(PLUG, worn) * PLUG_GAIN], axis=1))
    before = m.wear_state
    assert before.latched  # 2 worn intervals: the state is not the fresh one
    half = np.stack([worn[:FS // 2], worn[:FS // 2] * PLUG_GAIN], axis=1)
    got = m.process(half)
    expected, state = classify(m.meter.process(np.zeros((0, 2))), cfg, before)
    assert state == before and m.wear_state == before
    assert len(got) == 0 and got.records() == []
    for f in dataclasses.fields(expected):
        a, b = getattr(got, f.name), getattr(expected, f.name)
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, f.name
        else:
            assert a == b, f.name
