"""IEC 61672-1:2013 frequency weightings against the standard's own Table 3 and Annex E."""

import numpy as np
import pytest
from scipy import signal

from tingbao.edge import iec61672

RATES = [44_100.0, 48_000.0, 51_200.0, 96_000.0]


def _response_db(sos, f, fs):
    _, h = signal.sosfreqz(sos, worN=np.asarray(f, dtype=float), fs=fs)
    return 20 * np.log10(np.abs(h))


def test_annex_e_formula_reproduces_table3_design_goals():
    t = iec61672.table3()
    f = 1000.0 * 10 ** (t["index_n"] / 10)  # exact base-10 frequencies
    assert np.allclose(iec61672.a_weighting_db(f), t["a_db"], atol=0.05)
    assert np.allclose(iec61672.c_weighting_db(f), t["c_db"], atol=0.05)
    assert abs(iec61672.a_weighting_db(1000.0)) < 0.001
    assert abs(iec61672.c_weighting_db(1000.0)) < 0.001


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("weighting", ["A", "C"])
def test_digital_weighting_follows_analytic_curve_to_0_1_db_up_to_10_khz(fs, weighting):
    f = np.geomspace(10.0, 10_000.0, 3000)
    err = _response_db(iec61672.weighting_sos(weighting, fs), f, fs) - iec61672.weighting_db(
        weighting, f
    )
    assert np.max(np.abs(err)) < 0.1, f"max deviation {np.max(np.abs(err)):.3f} dB"


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("weighting", ["A", "C", "Z"])
def test_digital_weighting_within_class1_acceptance_limits_10_hz_to_20_khz(fs, weighting):
    t = iec61672.table3()
    f = 1000.0 * 10 ** (t["index_n"] / 10)
    goal = {"A": t["a_db"], "C": t["c_db"], "Z": np.zeros_like(f)}[weighting]
    dev = _response_db(iec61672.weighting_sos(weighting, fs), f, fs) - goal
    low, high = t["class1_lower_db"], t["class1_upper_db"]
    bad = (dev > high) | (dev < low)
    assert not bad.any(), list(zip(t["nominal_hz"][bad], dev[bad], strict=True))


def test_plain_bilinear_a_weighting_fails_the_accuracy_the_design_meets():
    # The reference design the issue warns about: so the accuracy test above can fail.
    fs = 48_000.0
    z = [0.0] * 4
    w = 2 * np.pi * np.array([iec61672.F1, iec61672.F1, iec61672.F2, iec61672.F3,
                              iec61672.F4, iec61672.F4])
    zd, pd, kd = signal.bilinear_zpk(z, -w, 1.0, fs)
    sos = signal.zpk2sos(zd, pd, kd)
    g = _response_db(sos, [1000.0], fs)[0] - iec61672.a_weighting_db(1000.0)
    err10k = _response_db(sos, [10_000.0], fs)[0] - g - iec61672.a_weighting_db(10_000.0)
    assert err10k < -1.0
    ours = _response_db(iec61672.weighting_sos("A", fs), [10_000.0], fs)[0]
    assert abs(ours - iec61672.a_weighting_db(10_000.0)) < 0.1


def test_c_to_a_section_turns_c_into_a():
    fs = 48_000.0
    f = np.geomspace(20, 20_000, 200)
    cascade = np.vstack([iec61672.weighting_sos("C", fs), iec61672.c_to_a_sos(fs)])
    assert np.allclose(_response_db(cascade, f, fs),
                       _response_db(iec61672.weighting_sos("A", fs), f, fs), atol=1e-9)


@pytest.mark.parametrize("fs", [8000.0, 22_050.0, float("nan")])
def test_low_sample_rates_are_refused_with_a_clear_error(fs):
    with pytest.raises(ValueError, match="44100 Hz or more"):
        iec61672.weighting_sos("A", fs)


def test_unknown_weighting_refused():
    with pytest.raises(ValueError, match="A, C, Z"):
        iec61672.weighting_sos("B", 48_000)


def test_block_weights_reproduce_the_per_sample_exponential():
    fs, m = 48_000.0, 12
    w, decay = iec61672.exponential_block_weights(iec61672.TAU_F, fs, m)
    rng = np.random.default_rng(3)
    e = rng.random(m * 50)
    a = np.exp(-1 / (iec61672.TAU_F * fs))
    y = signal.lfilter([1 - a], [1, -a], e)
    blocks = e.reshape(-1, m) @ w
    yb = signal.lfilter([1.0], [1.0, -decay], blocks)
    assert np.allclose(yb, y[m - 1 :: m], rtol=1e-12)
