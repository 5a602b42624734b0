"""SyntheticScene: determinism, blocksize invariance, and the intended levels of each part
of a scene, checked with an A-weighting of the tests' own (FFT domain, IEC 61672-1 Annex E
analytic curve), independent of tingbao's meter and of the generator's calibration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.fft import next_fast_len

from tingbao.edge.sources import PROFILES, Source, SyntheticScene

FS = 48000
P0 = 20e-6


def a_weight_db(f):
    """IEC 61672-1 Annex E: A(f) = 20 lg[f4² f⁴ / ((f²+f1²) √(f²+f2²) √(f²+f3²) (f²+f4²))]
    − A1000, A1000 = −2.000 dB."""
    f1, f2, f3, f4 = 20.598997, 107.65265, 737.86223, 12194.217
    f2_ = np.asarray(f, dtype=float) ** 2
    ratio = f4**2 * f2_**2 / (
        (f2_ + f1**2) * np.sqrt(f2_ + f2**2) * np.sqrt(f2_ + f3**2) * (f2_ + f4**2))
    with np.errstate(divide="ignore"):
        return 20 * np.log10(ratio) + 2.0


def power_spectrum(p):
    """One-sided power per rfft bin of ``p`` (Pa), summing to the mean square (Pa²).
    ``p`` is first cut to the longest length the FFT handles fast."""
    n = p.size
    while next_fast_len(n, real=True) != n:
        n -= 1
    p = p[:n]
    spec = np.abs(np.fft.rfft(p)) ** 2 / n**2
    spec[1:] *= 2.0
    if n % 2 == 0:
        spec[-1] /= 2.0
    return np.fft.rfftfreq(n, 1.0 / FS), spec


def laeq(p):
    """A-weighted equivalent level in dB(A) of pressure samples ``p`` (Pa)."""
    f, spec = power_spectrum(p)
    return 10 * np.log10(np.sum(spec * 10 ** (a_weight_db(f) / 10)) / P0**2)


def peak_db(p):
    return 20 * np.log10(np.max(np.abs(p)) / P0)


def pascals(scene, channel=0):
    return scene.read_all()[:, channel] * scene.pa_per_unit


def part(p, start, end, trim=0.5):
    """Samples of [start + trim, end - trim) seconds."""
    return p[int((start + trim) * FS) : int((end - trim) * FS)]


@pytest.fixture(scope="module")
def mixed():
    scene = SyntheticScene(profile="mixed", duration=60.0, seed=7)
    return scene, pascals(scene)


# -- contract and determinism --------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_chunks_and_segments(profile):
    scene = SyntheticScene(profile=profile, duration=20.5, channels=2, blocksize=10000)
    assert isinstance(scene, Source)
    assert scene.pa_per_unit == 200.0 and scene.samplerate == 48000.0
    chunks = list(scene)
    assert [c.frames for c in chunks] == [10000] * 98 + [4000]
    assert all(c.data.dtype == np.float64 and c.data.shape[1] == 2 for c in chunks)
    assert all(c.gap_before == 0 for c in chunks)
    x = np.concatenate([c.data for c in chunks])
    assert np.max(np.abs(x)) < 1.0  # never clips
    assert not np.array_equal(x[:, 0], x[:, 1])  # channels: independent noise, same scene
    segs = scene.segments()
    assert segs[0][0] == 0.0 and segs[-1][1] == 20.5
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:], strict=False))
    assert {lab for *_, lab in segs} <= {"quiet", "steady", "stamping", "grinding"}
    with scene:
        pass


@pytest.mark.parametrize("profile", ["stamping", "mixed"])
def test_deterministic_and_blocksize_invariant(profile):
    def run(**kw):
        return SyntheticScene(profile=profile, duration=15.0, seed=3, **kw).read_all()

    ref = run(blocksize=48000)
    for blocksize in (997, 4800, 65536, 2_000_000):
        np.testing.assert_array_equal(run(blocksize=blocksize), ref)
    np.testing.assert_array_equal(run(), ref)  # and again: same seed, same samples
    assert not np.array_equal(
        SyntheticScene(profile=profile, duration=15.0, seed=4).read_all(), ref)
    # iterating the same object twice gives the same samples
    scene = SyntheticScene(profile=profile, duration=15.0, seed=3, blocksize=1234)
    np.testing.assert_array_equal(scene.read_all(), scene.read_all())
    # and the first channel of a 2-channel scene is the 1-channel scene
    two = SyntheticScene(profile=profile, duration=15.0, seed=3, channels=2).read_all()
    np.testing.assert_array_equal(two[:, :1], ref)


def test_other_samplerate():
    scene = SyntheticScene(samplerate=44100, profile="steady", duration=10.0)
    x = scene.read_all()
    assert x.shape == (441000, 1)
    spec = np.abs(np.fft.rfft(x[:, 0] * scene.pa_per_unit)) ** 2 * 2 / x.shape[0] ** 2
    f = np.fft.rfftfreq(x.shape[0], 1 / 44100)
    level = 10 * np.log10(np.sum(spec * 10 ** (a_weight_db(f) / 10)) / P0**2)
    assert level == pytest.approx(scene.nominal_dba("steady"), abs=0.3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="profile"):
        SyntheticScene(profile="welding")
    with pytest.raises(ValueError, match="seed"):
        SyntheticScene(seed=-1)
    with pytest.raises(ValueError, match="samplerate"):
        SyntheticScene(samplerate=8000)


# -- levels ----------------------------------------------------------------------------


def test_steady_machine_noise_level_and_spectrum():
    scene = SyntheticScene(profile="steady", duration=30.0, seed=1)
    p = pascals(scene)
    level = laeq(p)
    assert 85.0 <= level <= 90.0
    assert level == pytest.approx(scene.nominal_dba("steady"), abs=0.3)
    # stationary: every 5 s within 0.5 dB of the whole
    assert all(abs(laeq(w) - level) < 0.5 for w in p.reshape(6, -1))
    # tonal components stand out of the broadband noise
    f, spec = power_spectrum(p)
    for tone in (100.0, 200.0, 300.0, 1600.0):
        at = np.argmin(np.abs(f - tone))
        around = np.median(spec[at - 300 : at + 300])
        assert 10 * np.log10(spec[at] / around) > 20.0, tone
    # pink-ish broadband: about -3 dB per octave of spectral density (tone-free bands)
    def density_db(lo, hi):
        sel = (f >= lo) & (f < hi)
        return 10 * np.log10(np.mean(spec[sel]))

    slope = (density_db(3400, 3600) - density_db(425, 450)) / np.log2(3500 / 437.5)
    assert -4.0 < slope < -2.0


def test_quiet_profile_is_quiet():
    scene = SyntheticScene(profile="quiet", duration=20.0, seed=2)
    p = pascals(scene)
    assert 60.0 <= laeq(p) <= 65.0
    assert peak_db(p) < 80.0


def test_press_impulses_have_intended_peaks_and_rate():
    scene = SyntheticScene(profile="stamping", duration=60.0, seed=5)
    p = pascals(scene)
    hits = scene.impulses()
    period = scene.stroke_period
    assert 1.5 <= period <= 3.0  # 20-40 strokes per minute
    assert len(hits) == pytest.approx(60.0 / period, abs=2)
    onsets = np.array([t for t, _ in hits])
    assert np.all(np.abs(np.diff(onsets) - period) <= 0.21 * period)  # ±10 % jitter each
    for onset, intended in hits:
        measured = peak_db(p[int(onset * FS) : int((onset + 0.25) * FS)])
        assert 120.0 <= measured <= 130.0
        assert measured == pytest.approx(intended, abs=0.5)
    # between strokes only the machine: peaks far below the impulses
    for a, b in zip(onsets, onsets[1:], strict=False):
        assert peak_db(p[int((a + 0.3) * FS) : int(b * FS)]) < 105.0
    # the impulses lift the A-weighted level well above the steady machine noise
    assert laeq(p) > scene.nominal_dba("steady") + 3.0


def test_grinder_level_band_and_duty():
    scene = SyntheticScene(profile="grinding", duration=60.0, seed=11)
    p = pascals(scene)
    segs = scene.segments()
    grinding = [(a, b) for a, b, lab in segs if lab == "grinding" and b - a > 5]
    steady = [(a, b) for a, b, lab in segs if lab == "steady" and b - a > 3]
    assert grinding and steady
    assert all(b - a >= 20.0 for a, b in grinding[:-1])  # tens of seconds at a time
    for a, b in grinding:
        q = part(p, a, b)
        assert laeq(q) == pytest.approx(scene.nominal_dba("grinding"), abs=1.0)
        assert 94.0 <= laeq(q) <= 97.0
        # most of the A-weighted energy is in the grinder band
        f, spec = power_spectrum(q)
        wa = spec * 10 ** (a_weight_db(f) / 10)
        band = (f >= 2000) & (f <= 8000)
        assert wa[band].sum() / wa.sum() > 0.7
    for a, b in steady:
        assert 85.0 <= laeq(part(p, a, b)) <= 90.0


def test_mixed_shift_has_every_state_at_its_level(mixed):
    scene, p = mixed
    segs = scene.segments()
    assert {lab for *_, lab in segs} == {"quiet", "steady", "stamping", "grinding"}
    assert segs[0][2] == "quiet"
    stamping_levels = []
    for a, b, label in segs:
        if b - a < 3.0:
            continue
        level = laeq(part(p, a, b))
        if label == "quiet":
            assert 60.0 <= level <= 65.0
            assert peak_db(part(p, a, b)) < 80.0
        elif label == "steady":
            assert 85.0 <= level <= 90.0
        elif label == "grinding":
            assert 94.0 <= level <= 97.0
        else:
            stamping_levels.append(level)
    assert stamping_levels and min(stamping_levels) > 90.0
    # impulses only while stamping
    for t, _ in scene.impulses():
        assert any(a <= t and t + 0.25 <= b for a, b, lab in segs if lab == "stamping")
