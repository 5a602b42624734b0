"""Protection measured at the ear (tingbao.edge.protection) on synthetic signals through known
attenuation filters, and the protection contract against hostile payloads."""

from __future__ import annotations

import copy
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


def run(outer, inner, block=FS, settings=None, interval=1.0):
    m = ProtectionMonitor(FS, settings or ProtectionSettings(required_db=REQUIRED), interval)
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
