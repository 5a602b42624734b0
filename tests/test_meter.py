"""The streaming sound level meter against IEC 61672-1 tables and independent computations."""

import numpy as np
import pytest

from tingbao.edge import iec61672
from tingbao.edge.levels import P0
from tingbao.edge.meter import SoundLevelMeter

FS = 48_000


def sine(f, seconds, rms=1.0, fs=FS, phase=0.0):
    t = np.arange(round(seconds * fs)) / fs
    return np.sqrt(2) * rms * np.sin(2 * np.pi * f * t + phase)


def run(x, fs=FS, block=None, **kw):
    m = SoundLevelMeter(fs, **kw)
    out = []
    block = block or len(x)
    for i in range(0, len(x), block):
        out += m.process(x[i : i + block])
    return out


def pink(n, seed=0):
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x**2))


def test_1khz_sine_of_1_pa_rms_reads_94_db():
    out = run(sine(1000, 3), pa_per_unit=1.0)
    for iv in out[1:]:
        assert iv.laeq[0] == pytest.approx(94.0, abs=0.05)
        assert iv.lceq[0] == pytest.approx(94.0, abs=0.05)
        assert iv.lafmax[0] == pytest.approx(94.0, abs=0.05)
        assert iv.lzpeak[0] == pytest.approx(94.0 + 3.01, abs=0.05)
        assert iv.ea[0] == pytest.approx(1.0, rel=0.005)  # 1 Pa² for 1 s


@pytest.mark.parametrize("fs", [44_100, 48_000, 96_000])
def test_laeq_of_broadband_noise_equals_independent_fft_computation(fs):
    x = 0.5 * pink(fs * 10, seed=fs)
    out = run(x, fs=fs)
    ea = sum(iv.ea[0] for iv in out)
    laeq = 10 * np.log10(ea / 10.0 / P0**2)
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / fs)
    w = np.zeros_like(f)
    w[1:] = 10 ** (iec61672.a_weighting_db(f[1:]) / 10)
    scale = np.full_like(f, 2.0)
    scale[0] = 1.0
    if len(x) % 2 == 0:
        scale[-1] = 1.0
    ms = np.sum(spec * w * scale) / len(x) ** 2
    assert laeq == pytest.approx(10 * np.log10(ms / P0**2), abs=0.1)
    # and the C weighting the same way
    wc = np.zeros_like(f)
    wc[1:] = 10 ** (iec61672.c_weighting_db(f[1:]) / 10)
    msc = np.sum(spec * wc * scale) / len(x) ** 2
    lceq = 10 * np.log10(np.mean([10 ** (iv.lceq[0] / 10) for iv in out]))
    assert lceq == pytest.approx(10 * np.log10(msc / P0**2), abs=0.1)


FIELDS = ["laeq", "ea", "lceq", "lcpeak", "lzpeak", "lafmax", "lasmax", "lafmin",
          "laf5", "laf10", "laf50", "laf90", "laf95"]


def _table(out):
    rows = [[np.nan if r[k] is None else r[k] for k in FIELDS]
            for iv in out for r in iv.records(decimals=6)]
    return np.array(rows, dtype=float)


def _same(a, b, tol=0.01):
    assert a.shape == b.shape
    assert np.array_equal(np.isnan(a), np.isnan(b))
    return np.nanmax(np.abs(a - b)) < tol


@pytest.mark.slow  # blocks of 37 samples over 3 s of audio: ~4 s
def test_results_do_not_depend_on_block_size():
    x = 0.2 * pink(FS * 3, seed=7)
    x[FS : FS + 200] += 0.9  # an impulse
    ref = _table(run(x, block=48_000, interval=0.5))
    for block in (37, 1024):
        got = _table(run(x, block=block, interval=0.5))
        assert _same(got, ref), block
    short = x[: FS // 2]
    ref1 = _table(run(short, block=48_000, interval=0.1))
    got1 = _table(run(short, block=1, interval=0.1))
    assert len(got1) == 5
    assert _same(got1, ref1)


def _burst(f, tb, level_rms, total=3.0, at=1.0):
    x = np.zeros(round(total * FS))
    n = round(tb * FS)
    i0 = round(at * FS)
    t = np.arange(n) / FS
    x[i0 : i0 + n] = np.sqrt(2) * level_rms * np.sin(2 * np.pi * f * t)
    return x


@pytest.mark.parametrize("row", range(12))
def test_4khz_tone_burst_response_table4(row):
    t4 = iec61672.table4()
    tb = t4["burst_ms"][row] / 1000
    steady = run(sine(4000, 3), interval=3.0)[0]
    ref_a = steady.laeq[0]
    burst = run(_burst(4000, tb, 1.0, total=3.0), interval=3.0)[0]
    lo, hi = t4["class1_lower_db"][row], t4["class1_upper_db"][row]
    d_f = burst.lafmax[0] - ref_a - t4["ref_f_db"][row]
    assert lo <= d_f <= hi, f"F, Tb={tb}: {d_f:+.2f} dB"
    lae = 10 * np.log10(burst.ea[0] / P0**2)
    d_e = lae - ref_a - t4["ref_e_db"][row]
    assert lo <= d_e <= hi, f"E, Tb={tb}: {d_e:+.2f} dB"
    if np.isfinite(t4["ref_s_db"][row]):
        d_s = burst.lasmax[0] - ref_a - t4["ref_s_db"][row]
        assert lo <= d_s <= hi, f"S, Tb={tb}: {d_s:+.2f} dB"


@pytest.mark.parametrize("row", range(5))
def test_c_weighted_peak_table5(row):
    t5 = iec61672.table5()
    f, cycles, pol = t5["frequency_hz"][row], t5["cycles"][row], t5["polarity"][row]
    steady = run(sine(f, 4, rms=1.0), interval=2.0)[1].lceq[0]
    n = round(cycles * FS / f)
    x = np.zeros(2 * FS)
    t = np.arange(n) / FS
    sign = -1.0 if pol == "negative" else 1.0
    x[FS : FS + n] = sign * np.sqrt(2) * np.sin(2 * np.pi * f * t)
    peak = run(x, interval=2.0)[0].lcpeak[0]
    d = peak - steady - t5["ref_db"][row]
    assert t5["class1_lower_db"][row] <= d <= t5["class1_upper_db"][row], f"{d:+.2f} dB"


def test_time_weighting_never_restarts_and_decays_at_the_standard_rates():
    # 1 s of 94 dB then silence: LAF falls 34.7 dB/s (F) and LAS 4.3 dB/s (S), clause 5.8.2,
    # across interval boundaries.
    x = np.concatenate([sine(1000, 2.0), np.zeros(FS)])
    out = run(x, interval=0.1)
    after = out[20:28]
    lafmax = np.array([iv.lafmax[0] for iv in after])
    lasmax = np.array([iv.lasmax[0] for iv in after])
    rate_f = -np.diff(lafmax).mean() / 0.1
    rate_s = -np.diff(lasmax).mean() / 0.1
    assert rate_f == pytest.approx(10 * np.log10(np.e) / iec61672.TAU_F, abs=0.3)
    assert rate_s == pytest.approx(10 * np.log10(np.e) / iec61672.TAU_S, abs=0.05)
    # The first interval after the stop starts where the previous one ended (no restart).
    assert out[20].lafmax[0] == pytest.approx(out[19].lafmin[0], abs=0.05)


def test_statistical_levels_of_a_two_level_signal():
    # 3 s at 94 dB, 7 s at 74 dB, five times: LAF10 reads the loud, LAF90 the quiet level.
    loud = sine(1000, 3.0, rms=1.0)
    quiet = sine(1000, 7.0, rms=0.1)
    cycle = np.concatenate([loud, quiet])
    out = run(np.tile(cycle, 5), interval=50.0)[0]
    assert out.lafn[10][0] == pytest.approx(94.0, abs=0.3)
    assert out.lafn[90][0] == pytest.approx(74.0, abs=0.3)
    assert out.lafn[5][0] >= out.lafn[10][0] >= out.lafn[50][0] >= out.lafn[90][0]
    assert out.lafmin[0] == pytest.approx(74.0, abs=0.3)


def test_gap_reduces_coverage_and_leaves_levels_of_a_steady_signal_alone():
    m = SoundLevelMeter(FS)
    x = sine(1000, 3.0)
    out = m.process(x[: FS + FS // 2])
    out += m.gap(FS // 4)
    out += m.process(x[FS + FS // 2 :])
    out += m.flush()
    cov = [iv.coverage[0] for iv in out]
    assert cov[:2] == [1.0, 0.75]
    assert sum(cov) == pytest.approx(3.0)
    assert out[1].laeq[0] == pytest.approx(94.0, abs=0.1)
    assert out[1].lafmin[0] == pytest.approx(94.0, abs=0.1)  # the gap is not a quiet moment
    assert out[1].ea[0] == pytest.approx(0.75, rel=0.02)


def test_non_finite_samples_become_uncovered_not_nan_levels():
    x = sine(1000, 2.0)
    x[1000:1100] = np.nan
    x[5000] = np.inf
    m = SoundLevelMeter(FS)
    out = m.process(x)
    assert m.bad_samples == 101
    assert out[0].coverage[0] == pytest.approx(1 - 101 / FS)
    assert np.isfinite(out[0].laeq[0]) and np.isfinite(out[1].laeq[0])
    assert out[1].laeq[0] == pytest.approx(94.0, abs=0.05)


def test_overload_flag_at_digital_full_scale():
    full = np.clip(sine(1000, 1.0, rms=1.0), -1, 1)
    assert run(full)[0].overload[0]
    assert not run(sine(1000, 1.0, rms=0.5))[0].overload[0]
    pcm16_max = np.full(FS, 32767 / 32768)
    assert run(pcm16_max)[0].overload[0]


def test_channels_are_independent_and_calibration_scales():
    x = 0.1 * pink(FS * 2, seed=1)
    two = np.stack([x, 10 * x], axis=1)
    out = run(two, channels=2, pa_per_unit=[1.0, 1.0])
    mono = run(x)
    for a, b in zip(out, mono, strict=True):
        assert a.laeq[0] == pytest.approx(b.laeq[0], abs=1e-9)
        assert a.laeq[1] - a.laeq[0] == pytest.approx(20.0, abs=1e-6)
    scaled = run(x, pa_per_unit=2.0)
    assert scaled[1].laeq[0] - mono[1].laeq[0] == pytest.approx(20 * np.log10(2), abs=1e-9)


def test_flush_emits_partial_interval_with_its_coverage():
    m = SoundLevelMeter(FS)
    out = m.process(sine(1000, 1.5)) + m.flush()
    assert [iv.start for iv in out] == [0.0, 1.0]
    assert out[1].coverage[0] == pytest.approx(0.5)
    assert out[1].laeq[0] == pytest.approx(94.0, abs=0.1)
    assert m.flush() == []


@pytest.mark.parametrize(
    "kw, msg",
    [({"interval": 0.05}, "outside"), ({"interval": 61}, "outside"),
     ({"interval": 0.123456}, "whole number"), ({"pa_per_unit": 0.0}, "pa_per_unit"),
     ({"pa_per_unit": float("nan")}, "pa_per_unit"), ({"bands": "fifth"}, "bands")],
)
def test_bad_settings_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SoundLevelMeter(44_100, **kw)


def test_block_of_wrong_shape_is_refused():
    m = SoundLevelMeter(FS, channels=2)
    with pytest.raises(ValueError, match="channel"):
        m.process(np.zeros(100))


def test_short_blocks_are_gathered_without_changing_what_is_returned_or_when():
    # The agent feeds 0.1 s blocks (4 800 samples); the meter gathers them and evaluates at
    # the interval boundary. What must not change: each interval comes back from the call
    # that holds its last sample, with the values of a meter fed whole stretches, and the
    # clock counts every sample fed. The audio: 3.3 s of pink noise with an impulse, 100
    # non-finite samples inside a gathered block and a 0.25 s gap in the middle of a gathered
    # interval, so the gap and bad-sample bookkeeping are checked against the direct path.
    x = 0.2 * pink(round(3.3 * FS), seed=11)
    x[FS + 300 : FS + 500] += 0.9
    x[2 * FS + 1000 : 2 * FS + 1100] = np.nan
    cut = FS + FS // 4  # the gap comes after 1.25 s of audio
    gap = FS // 4
    kw = {"bands": "third", "impulse_thresholds_db": [100.0, 110.0]}

    whole = SoundLevelMeter(FS, **kw)
    ref = whole.process(x[:cut]) + whole.gap(gap) + whole.process(x[cut:]) + whole.flush()

    fed = SoundLevelMeter(FS, **kw)
    got, clocks, expected_clock = [], [], 0
    calls: list[tuple[int, int, int]] = []  # (first sample, end sample, intervals returned)

    def feed(out, n):
        nonlocal expected_clock
        calls.append((expected_clock, expected_clock + n, len(out)))
        expected_clock += n
        clocks.append((fed.clock, expected_clock))
        got.extend(out)

    for i in range(0, cut, 4800):
        feed(fed.process(x[i : min(i + 4800, cut)]), min(4800, cut - i))
    feed(fed.gap(gap), gap)
    for i in range(cut, x.size, 4800):
        feed(fed.process(x[i : i + 4800]), min(4800, x.size - i))
    got += fed.flush()

    assert all(a == b for a, b in clocks)
    assert fed.bad_samples == whole.bad_samples == 100
    # interval k ends at sample (k + 1)·FS: the call whose samples reach that end returns it
    # (3.3 s of audio + 0.25 s of gap = 3.55 s: intervals 0, 1, 2 from calls, 3 from flush)
    returned = [n for _, _, n in calls]
    for k in range(3):
        end = (k + 1) * FS
        holder = next(j for j, (a, b, _) in enumerate(calls) if a < end <= b)
        assert returned[holder] == 1, k
    assert sum(returned) == 3 and len(got) == len(ref) == 4
    for a, b in zip(got, ref, strict=True):
        assert a.coverage[0] == b.coverage[0]
        for name in ("laeq", "lceq", "lcpeak", "lzpeak", "lafmax", "lasmax", "lafmin"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=1e-9)
        np.testing.assert_allclose(a.band_lzeq, b.band_lzeq, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(a.impulse_counts, b.impulse_counts)
    assert got[1].coverage[0] == 0.75  # the gap: 0.25 s of the second interval
    assert got[2].coverage[0] == pytest.approx(1 - 100 / FS)  # the non-finite samples


def test_a_long_call_is_evaluated_in_pieces_and_leaves_bounded_scratch():
    # 12 s in one call vs the same audio in 1 s calls: identical intervals (the results do
    # not depend on how the audio is cut), and the work arrays kept afterwards are those of a
    # LONGEST_CALL_SECONDS piece (4 s = 192 000 samples), not of the 12 s call (576 000)
    from tingbao.edge import meter as meter_module

    fs = 48000
    x = np.random.default_rng(3).standard_normal(12 * fs) * 0.2
    one = SoundLevelMeter(fs, interval=1.0, pa_per_unit=1.0)
    whole = one.process(x)
    cut = SoundLevelMeter(fs, interval=1.0, pa_per_unit=1.0)
    parts = [iv for i in range(12) for iv in cut.process(x[i * fs:(i + 1) * fs])]
    assert len(whole) == len(parts) == 12
    for a, b in zip(whole, parts, strict=True):
        assert a.ea == pytest.approx(b.ea, rel=1e-12)
        assert a.lafmax == pytest.approx(b.lafmax, abs=1e-9)
    longest = round(meter_module.LONGEST_CALL_SECONDS * fs)
    scratch = [v for v in vars(one).values() if isinstance(v, np.ndarray)]
    scratch += [a for v in vars(one).values() if isinstance(v, list | tuple)
                for a in v if isinstance(a, np.ndarray)]
    assert max(a.shape[-1] for a in scratch) <= max(longest, 2 * fs)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_finite_samples_whose_sum_overflows_are_not_a_crash():
    # 10 samples of 1e308 Pa: each is finite, their sum is inf, so the finiteness check
    # finds no bad sample; the block must still be measured (an absurd level the contract
    # refuses downstream), not raise IndexError from an empty split
    m = SoundLevelMeter(48000, interval=1.0, pa_per_unit=1.0)
    assert m.process(np.full(10, 1e308)) == [] and m.bad_samples == 0
    (iv,) = m.flush()
    assert iv.coverage[0] == pytest.approx(10 / 48000)
