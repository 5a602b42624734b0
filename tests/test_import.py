"""``tingbao import`` on a real InfluxDB: an inspector's recording stored as a meter's 1 s
levels and minute rollups, with exposure sums checked against the analytic value of the
recording's sine tones and an independent filtering of the same samples; re-imports
overwrite; a calibrator recording gives the same S as the equivalent --pa-per-unit; bad input
ends with exit status 2 and one line saying what to do; corrupt intervals are refused and
reported while the good ones are kept; impacts in a recording are counted as a live agent
counts them and summed in the 1 s levels and the minute rollups."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal
from support.commands import run_tingbao

from tingbao.analysis import gbz2_2
from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.recording_import import (
    IMPORT_SEQ_BASE,
    IMPULSE_THRESHOLDS_DB,
    ImportRefused,
    import_recording,
    plan_import,
)
from tingbao.collector.registry import load_registry
from tingbao.edge import contract, iec61672
from tingbao.edge.cli.main import main as tingbao_main

FS = 48_000
P0 = 20e-6
ENT = "imp-ent"
S = 2.0
"""Pa per raw unit of the test recordings."""
AMPLITUDES = (0.5, 0.05)
"""Raw peak amplitudes of the two 90 s parts of the 3-minute recording: at S = 2 Pa per unit,
p_rms = 0.5·2/√2 = 0.7071 Pa (91.0 dB) and 0.07071 Pa (71.0 dB)."""
PART_S = 90
DAY_AGO_NS = (int(time.time()) // 60 * 60 - 86_400) * 10**9
"""A whole UTC minute about a day ago; each test imports at its own offset from it."""


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def _two_tone(amplitudes=AMPLITUDES, part_s=PART_S) -> np.ndarray:
    """The raw samples: 1 kHz sine (48 whole samples a cycle) at each amplitude for part_s."""
    t = np.arange(part_s * FS) / FS
    tone = np.sin(2 * np.pi * 1000.0 * t)
    return np.concatenate([a * tone for a in amplitudes])


def _write(path: Path, x: np.ndarray, fs: int = FS, subtype: str = "FLOAT") -> Path:
    sf.write(path, x, fs, subtype=subtype)
    return path


def _analytic_ea(amplitudes=AMPLITUDES, part_s=PART_S, s=S) -> float:
    """EA = Σ p_rms² · T over the parts, p_rms = a·S/√2, A(1 kHz) = 0 dB (IEC 61672-1 E.6):
    (0.7071² + 0.07071²) · 90 = (0.5 + 0.005) · 90 = 45.45 Pa²·s."""
    return sum((a * s) ** 2 / 2 * part_s for a in amplitudes)


def _filtered_ea(x: np.ndarray, s=S) -> float:
    """EA of the same samples through the meter's digital A weighting, in one sosfilt call
    over the whole signal (independent of the meter's streaming, intervals and rollups):
    Σ pA² / fs, Pa²·s."""
    sos = np.vstack([iec61672.weighting_sos("C", FS), iec61672.c_to_a_sos(FS)])
    a = signal.sosfilt(sos, x * s)
    return float(np.sum(a * a) / FS)


def _laeq(ea: float, t: float) -> float:
    return 10 * math.log10(ea / (P0**2 * t))


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory) -> Path:
    """A registry of enterprise imp-ent: meters m1 and m3 without calibration, m2 with
    pa_per_unit = 2, m4 with two channels; [stack] data_dir is the test stack's."""
    stack.write_state()  # what `tingbao stack up` leaves for server-side commands
    d = tmp_path_factory.mktemp("site")
    meters = "".join(
        f'[[meters]]\nid = "{m}"\nenterprise = "{ENT}"\nsite = "ws"\n{extra}\n'
        for m, extra in (("m1", ""), ("m2", f"pa_per_unit = {S}"), ("m3", ""),
                         ("m4", "channels = 2\npa_per_unit = [2.0, 2.0]")))
    path = d / "site.toml"
    path.write_text(
        f'[deployment]\ntimezone = "Asia/Shanghai"\n[stack]\ndata_dir = "{stack.data_dir}"\n'
        f'[[enterprises]]\nid = "{ENT}"\nname_zh = "测试企业"\nindustry = "machinery"\n'
        f'group = "pilot"\n[[enterprises]]\nid = "other-ent"\nname_zh = "另一企业"\n'
        f'industry = "other"\ngroup = "comparison"\n'
        f'[[sites]]\nid = "ws"\nenterprise = "{ENT}"\nname_zh = "车间"\n' + meters,
        encoding="utf-8")
    return path


def _sums(client: InfluxClient, meter: str, start_ns: int, end_ns: int) -> dict:
    """SUM(ea), COUNT and the imported marks of the meter's levels, and SUM(ea), SUM(n) of
    its levels_1m, over [start, end)."""
    where = (f"{schema.where_tags([('meter', meter)])} AND time >= {start_ns} AND "
             f"time < {end_ns}")
    fine = client.query_rows(
        f"SELECT SUM(ea) AS ea, COUNT(ea) AS n, COUNT(imported) AS imported, MIN(seq) AS seq0 "
        f"FROM {schema.source(schema.LEVELS)} WHERE {where}")
    coarse = client.query_rows(
        f"SELECT SUM(ea) AS ea, SUM(n) AS n, COUNT(ea) AS minutes FROM "
        f"{schema.source(schema.LEVELS_1M, schema.RP_FOREVER)} WHERE {where}")
    f = fine[0] if fine else {"ea": 0.0, "n": 0, "imported": 0, "seq0": None}
    c = coarse[0] if coarse else {"ea": 0.0, "n": 0, "minutes": 0}
    return {"ea": f["ea"], "n": f["n"], "imported": f["imported"], "seq0": f["seq0"],
            "ea_1m": c["ea"], "n_1m": c["n"], "minutes": c["minutes"]}


def _markers(client: InfluxClient, meter: str) -> list[dict]:
    return client.query_rows(f"SELECT * FROM {schema.source(schema.ROLLUPS_DUE)} WHERE "
                             f"{schema.where_tags([('meter', meter)])}")


def test_import_stores_the_recordings_exposure(stack, site, tmp_path):
    # 90 s at 91.0 dB then 90 s at 71.0 dB: EA = (0.5 + 0.005) · 90 = 45.45 Pa²·s over 180 s,
    # LAeq = 10 lg(45.45 / (4e-10 · 180)) = 88.0 dB; 180 points of 1 s in 3 whole minutes.
    x = _two_tone()
    wav = _write(tmp_path / "inspector.wav", x)
    start = DAY_AGO_NS
    reg = load_registry(site)
    plan = plan_import(reg, wav, "m1", _iso(start), pa_per_unit=S)
    result = import_recording(plan, wav, stack.influx("writer"), stack.influx("reader"))
    got = _sums(stack.influx(), "m1", start, start + 180 * 10**9)
    exact = _filtered_ea(x)
    # The digital A filter's gain at 1 kHz is +0.0003 dB off the analytic 0 dB, and the
    # switch-on and the step ring a little: 8e-5 relative, far inside 0.05 dB.
    analytic = _analytic_ea()
    assert abs(analytic - 45.45) < 1e-12
    assert result.stored == got["n"] == got["n_1m"] == got["imported"] == 180
    assert got["minutes"] == 3 and result.rollups == 3 and not result.refused
    assert got["seq0"] == IMPORT_SEQ_BASE  # interval 0 carries seq 2^62 + 0
    # stored sums = one sosfilt over the whole signal to 1e-6 (ea is stored to 7 digits)
    assert got["ea"] == pytest.approx(exact, rel=1e-6)
    assert got["ea_1m"] == pytest.approx(got["ea"], rel=1e-9)
    assert float(result.ea[0]) == pytest.approx(exact, rel=1e-6)
    assert abs(_laeq(got["ea"], 180) - _laeq(analytic, 180)) < 0.05
    assert abs(float(result.laeq[0]) - 88.00) < 0.05  # 10 lg(45.45/7.2e-8) = 88.002
    # LEX,8h of that exposure alone: 10 lg(45.45 / (4e-10 · 28 800)) = 65.96 dB(A)
    assert abs(float(result.lex_8h[0]) - 65.96) < 0.05
    assert _markers(stack.influx(), "m1") == []  # the rollups are done, their markers gone

    # The same recording with another start overlaps the first import: refused, nothing
    # written (it would count 150 s twice).
    shifted = plan_import(reg, wav, "m1", _iso(start + 30 * 10**9), pa_per_unit=S)
    with pytest.raises(ImportRefused, match="count that exposure twice"):
        import_recording(shifted, wav, stack.influx("writer"), stack.influx("reader"))
    assert _sums(stack.influx(), "m1", start, start + 300 * 10**9)["n"] == 180


def test_cli_import_twice_overwrites(stack, site, tmp_path):
    # The command as a subprocess, calibration from the registry (m2: pa_per_unit = 2), the
    # start as local time of the deployment (Asia/Shanghai, +08:00) without an offset.
    # Twice: 180 points and SUM(ea) = 45.45 Pa²·s (±8e-5) both times, not 360 and 90.9.
    x = _two_tone()
    wav = _write(tmp_path / "again.flac", x, subtype="PCM_24")
    start = DAY_AGO_NS + 10 * 60 * 10**9
    local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start / 1e9 + 8 * 3600))
    sums = []
    for attempt in range(2):
        done = run_tingbao("import", wav, "--config", site, "--meter", "m2", "--start", local,
                           "--quiet", timeout=120)
        assert done.returncode == 0, done.stderr
        assert "stored: 180 of 180 intervals; 0 refused; 3 minute rollup(s)" in done.stdout
        assert ("overwritten" in done.stdout) == (attempt == 1)
        sums.append(_sums(stack.influx(), "m2", start - 60 * 10**9, start + 240 * 10**9))
    # PCM_24 quantisation (2^-23 of full scale) changes EA by < 1e-6
    for got in sums:
        assert got["n"] == got["n_1m"] == 180 and got["minutes"] == 3
        assert got["ea"] == pytest.approx(_filtered_ea(x), rel=2e-6)
        assert got["ea_1m"] == pytest.approx(got["ea"], rel=1e-9)
    assert sums[1]["ea"] == pytest.approx(sums[0]["ea"], rel=1e-12)
    assert sums[1]["ea_1m"] == pytest.approx(sums[0]["ea_1m"], rel=1e-12)
    assert "LAeq 88.0 dB(A)" in done.stdout


def test_calibrator_gives_the_same_result_as_pa_per_unit(stack, site, tmp_path):
    # A 94 dB calibrator is p = 20 µPa · 10^(94/20) = 1.0024 Pa rms; recorded at 0.25 raw
    # peak (0.17678 rms) it gives S = 1.0024 / 0.17678 = 5.6703 Pa per unit. Importing with
    # --calibrator must store what --pa-per-unit 5.6703 stores (the same points, overwritten).
    s_cal = P0 * 10 ** (94 / 20) / (0.25 / math.sqrt(2))
    assert abs(s_cal - 5.6703) < 1e-4
    t = np.arange(5 * FS) / FS
    cal = _write(tmp_path / "cal94.wav", 0.25 * np.sin(2 * np.pi * 1000.0 * t))
    x = _two_tone(part_s=30)
    wav = _write(tmp_path / "short.wav", x)
    start = DAY_AGO_NS + 20 * 60 * 10**9
    base = ["import", str(wav), "--config", str(site), "--meter", "m3", "--start", _iso(start),
            "--quiet"]
    assert tingbao_main([*base, "--calibrator", str(cal), "--calibrator-level", "94"]) == 0
    by_cal = _sums(stack.influx(), "m3", start, start + 60 * 10**9)
    assert tingbao_main([*base, "--pa-per-unit", repr(s_cal)]) == 0
    by_s = _sums(stack.influx(), "m3", start, start + 60 * 10**9)
    # EA = (0.5² + 0.05²)/2 · 5.6703² · 30 = 0.12625 · 32.153 · 30 = 121.78 Pa²·s
    analytic = _analytic_ea(part_s=30, s=s_cal)
    assert by_cal["n"] == by_s["n"] == 60
    assert by_cal["ea"] == pytest.approx(by_s["ea"], rel=1e-6)
    assert by_cal["ea_1m"] == pytest.approx(by_s["ea_1m"], rel=1e-6)
    assert abs(_laeq(by_cal["ea"], 60) - _laeq(analytic, 60)) < 0.05


@pytest.mark.parametrize("case", ["rate", "future", "meter", "garbage", "truncated",
                                  "uncalibrated", "channels", "early", "retention"])
def test_bad_input_is_refused_with_one_line(stack, site, tmp_path, capsys, case):
    # Each: exit status 2, nothing on stdout, one line on stderr saying what is wrong and
    # what to do; nothing stored for meter m1 in the hour it names.
    start = DAY_AGO_NS + 40 * 60 * 10**9
    meter, extra = "m1", ["--pa-per-unit", "2"]
    wav = _write(tmp_path / "ok.wav", _two_tone(part_s=3))
    expect = ""
    if case == "rate":  # 22.05 kHz is below the 44.1 kHz the class 1 filters need
        wav = _write(tmp_path / "low.wav", _two_tone(part_s=3)[::2], fs=22_050)
        expect = "sample rate 22050 Hz is refused"
    elif case == "future":
        start = time.time_ns() + 3600 * 10**9
        expect = "is in the future"
    elif case == "early":  # before contract.EARLIEST_NS, 2000-01-01
        start, expect = 946_684_800 * 10**9 - 3600 * 10**9, "is before 2000-01-01"
    elif case == "retention":  # 200 days ago: levels_1s keeps 90 days (2160 h)
        start = DAY_AGO_NS - 199 * 86_400 * 10**9
        expect = "the 1 s levels are kept for 90 days only"
    elif case == "meter":
        meter, expect = "m9", "unknown meter 'm9'"
    elif case == "garbage":
        wav = tmp_path / "garbage.wav"
        wav.write_bytes(b"RIFF\x00\x01\x00\x00WAVEjunk" + bytes(range(256)) * 8)
        expect = "re-copy or re-export it"
    elif case == "truncated":  # header says 6 s, the file holds half of it
        raw = wav.read_bytes()
        wav = tmp_path / "cut.wav"
        wav.write_bytes(raw[: len(raw) // 2])
        expect = "truncated WAV"
    elif case == "uncalibrated":
        extra, expect = [], "has no calibration: give --pa-per-unit S"
    elif case == "channels":
        meter, expect = "m4", "1 channel(s), but meter 'm4' has 2"
    code = tingbao_main(["import", str(wav), "--config", str(site), "--meter", meter,
                         "--start", _iso(start), "--quiet", *extra])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("tingbao import: error: ")
    assert expect in err
    if case == "meter":  # names the known meters, per enterprise
        assert "imp-ent: m1, m2, m3, m4" in err
    assert _sums(stack.influx(), meter, start, start + 3600 * 10**9)["n"] == 0


def test_corrupt_chunk_keeps_the_good_intervals(stack, site, tmp_path, capsys):
    # A float WAV of 3 minutes whose samples 30.5 s … 32.2 s are NaN (a damaged chunk):
    # intervals 30, 31 and 32 are refused (stage audio, dead letters), the other 177 are
    # stored. Their EA: 177 intervals of the 91.0/71.0 dB tones: 87 s loud + 90 s quiet →
    # (0.5 · 87 + 0.005 · 90) = 43.95 Pa²·s (±1e-3 for the filter's ringing after the hole).
    x = _two_tone()
    x[int(30.5 * FS):int(32.2 * FS)] = np.nan
    wav = _write(tmp_path / "damaged.wav", x)
    start = DAY_AGO_NS + 30 * 60 * 10**9
    code = tingbao_main(["import", str(wav), "--config", str(site), "--meter", "m2",
                         "--start", _iso(start), "--quiet"])
    out, _ = capsys.readouterr()
    assert code == 1  # some refused, the rest stored
    assert "stored: 177 of 180 intervals; 3 refused" in out
    for i, n in ((30, 24_000), (31, 48_000), (32, 9_600)):  # NaN samples in each interval
        assert f"interval {i} " in out and f"[audio] {n} of 48000 samples" in out
    got = _sums(stack.influx(), "m2", start, start + 180 * 10**9)
    assert got["n"] == got["n_1m"] == 177 and got["minutes"] == 3
    assert got["ea"] == pytest.approx(0.5 * 87 + 0.005 * 90, rel=1e-3)
    assert got["ea_1m"] == pytest.approx(got["ea"], rel=1e-9)
    letters = stack.influx().query_rows(
        f"SELECT reason, topic FROM {schema.source(schema.DEAD_LETTERS)} WHERE "
        f"{schema.where_tags([('collector', 'tingbao-import'), ('stage', 'audio')])} AND "
        f"time > now() - 1h")
    mine = [r for r in letters if "/m2/" in r["topic"]]
    assert len(mine) == 3
    assert all("not numbers (NaN or infinite)" in r["reason"] for r in mine)


def test_two_channels_with_bands(stack, site, tmp_path):
    # Meter m4 has two channels (pa_per_unit 2 each): channel 0 at 0.5 raw peak (p_rms 0.7071
    # Pa, 90.97 dB), channel 1 at 0.05 (70.97 dB), 5 s. One multichannel levels message per
    # interval becomes one point per channel: 5 + 5 points, EA 0.5·5 = 2.5 and 0.005·5 =
    # 0.025 Pa²·s; the octave band at 1 kHz holds the whole tone: LZeq 90.97 / 70.97 dB.
    tone = np.sin(2 * np.pi * 1000.0 * np.arange(5 * FS) / FS)
    wav = _write(tmp_path / "stereo.wav", np.stack([0.5 * tone, 0.05 * tone], axis=1))
    start = DAY_AGO_NS + 50 * 60 * 10**9
    reg = load_registry(site)
    plan = plan_import(reg, wav, "m4", _iso(start), bands="octave")
    assert plan.pa_per_unit == (2.0, 2.0) and plan.calibration == "registry"
    result = import_recording(plan, wav, stack.influx("writer"), stack.influx("reader"))
    assert result.stored == 5 and not result.refused
    rows = stack.influx().query_rows(
        f"SELECT SUM(ea) AS ea, COUNT(imported) AS n FROM {schema.source(schema.LEVELS)} WHERE "
        f"{schema.where_tags([('meter', 'm4')])} GROUP BY channel")
    by_channel = {r["channel"]: r for r in rows}
    assert by_channel["0"]["n"] == by_channel["1"]["n"] == 5
    assert by_channel["0"]["ea"] == pytest.approx(2.5, rel=1e-3)
    assert by_channel["1"]["ea"] == pytest.approx(0.025, rel=1e-3)
    bands = stack.influx().query_rows(
        f"SELECT b1000, imported FROM {schema.source(schema.BANDS)} WHERE "
        f"{schema.where_tags([('meter', 'm4')])} AND time >= {start + 10**9} GROUP BY channel")
    assert len(bands) == 8 and all(r["imported"] is True for r in bands)
    for r in bands:
        want = 20 * math.log10((0.5 if r["channel"] == "0" else 0.05) * 2 / math.sqrt(2) / P0)
        assert abs(r["b1000"] - want) < 0.1


IMPACTS = ((2.5, 125.0), (9.7, 132.0), (17.98, 141.5), (24.9, 127.0),
           (33.1, 136.0), (48.6, 138.5), (70.4, 134.0))
"""(start s into the recording, peak dB re 20 µPa) of the synthetic impacts: 1 kHz decaying
bursts, each at least 0.45 dB away from every counting threshold (120, 130, 135, 137, 140)."""
S_IMPACT = 500.0
"""Pa per raw unit of the impact recording (141.5 dB = 237.7 Pa peak = 0.475 raw)."""


def _impacts(seconds: int = 75) -> np.ndarray:
    """Quiet background (white noise, 0.02 Pa rms: 60 dB) with the :data:`IMPACTS`: each
    p(t) = p_peak · e^(−t / 20 ms) · sin(2π · 1 kHz · t) for 0.3 s. A 141.5 dB burst falls
    below 120 dB after 20 ms · ln 10^(21.5/20) = 50 ms: one impact, well inside the 0.5 s
    refractory time; bursts are more than 1 s apart."""
    x = np.random.default_rng(7).normal(0.0, 0.02 / S_IMPACT, seconds * FS)
    t = np.arange(int(0.3 * FS)) / FS
    for at, peak in IMPACTS:
        i = round(at * FS)
        x[i:i + t.size] += (P0 * 10 ** (peak / 20) / S_IMPACT * np.exp(-t / 0.02)
                            * np.sin(2 * np.pi * 1000.0 * t))
    return x


def test_impacts_are_counted_and_summed(stack, site, tmp_path):
    # 75 s starting 30 s into a UTC minute: impacts 1-4 fall in the first minute, 5-7 in the
    # second; the impact at 17.98 s rings across the 18 s interval boundary (counted once,
    # in interval 17, where it starts). Peaks 125, 132, 141.5, 127 | 136, 138.5, 134 dB give
    # per threshold (the number of peaks at or above it):
    #   120: 4 + 3 = 7;  130: 2 + 3 = 5;  135: 1 + 2 = 3;  137: 1 + 1 = 2;  140: 1 + 0 = 1.
    x = _impacts()
    # independent of the meter's streaming: the C-weighted peak of each burst from one
    # sosfilt over the whole signal is within 0.05 dB of its design, so each is on the
    # designed side of every threshold (≥ 0.45 dB away)
    pc = signal.sosfilt(iec61672.weighting_sos("C", FS), x * S_IMPACT)
    for at, peak in IMPACTS:
        i = round(at * FS)
        got = 20 * math.log10(float(np.max(np.abs(pc[i:i + int(0.3 * FS)]))) / P0)
        assert abs(got - peak) < 0.05
    assert IMPULSE_THRESHOLDS_DB == contract.IMPULSE_THRESHOLDS_DB == (120, 130, 135, 137, 140)
    want = {t: sum(p >= t for _, p in IMPACTS) for t in IMPULSE_THRESHOLDS_DB}
    assert want == {120: 7, 130: 5, 135: 3, 137: 2, 140: 1}
    first = {t: sum(p >= t for _, p in IMPACTS[:4]) for t in IMPULSE_THRESHOLDS_DB}
    assert first == {120: 4, 130: 2, 135: 1, 137: 1, 140: 1}

    minute0 = DAY_AGO_NS + 70 * 60 * 10**9
    start = minute0 + 30 * 10**9
    wav = _write(tmp_path / "impacts.wav", x)
    plan = plan_import(load_registry(site), wav, "m3", _iso(start), pa_per_unit=S_IMPACT)
    result = import_recording(plan, wav, stack.influx("writer"), stack.influx("reader"))
    assert result.stored == 75 and not result.refused and result.rollups == 2
    where = schema.where_tags([("meter", "m3")])
    fields = ", ".join(f"SUM({schema.impulse_field(t)}) AS {schema.impulse_field(t)}"
                       for t in IMPULSE_THRESHOLDS_DB)
    fine = stack.influx().query_rows(
        f"SELECT {fields} FROM {schema.source(schema.LEVELS)} WHERE {where} AND "
        f"time >= {start} AND time < {start + 75 * 10**9}")
    minutes = stack.influx().query_rows(
        f"SELECT {schema.impulse_field(120)}, {schema.impulse_field(130)}, "
        f"{schema.impulse_field(135)}, {schema.impulse_field(137)}, "
        f"{schema.impulse_field(140)} FROM {schema.source(schema.LEVELS_1M, schema.RP_FOREVER)}"
        f" WHERE {where} AND time >= {minute0} AND time < {minute0 + 120 * 10**9}", epoch="ns")
    assert len(fine) == 1 and len(minutes) == 2
    assert [int(r["time"]) for r in minutes] == [minute0, minute0 + 60 * 10**9]
    for t, n in want.items():
        name = schema.impulse_field(t)
        assert fine[0][name] == n  # the 1 s levels
        assert minutes[0][name] == first[t]  # each minute rollup
        assert minutes[0][name] + minutes[1][name] == n
    # what analysis reads (the two whole minutes from levels_1m): n = 7 at 120 dB, the
    # highest LCpeak 141.5 dB ≥ the 140 dB limit for n ≤ 100 (GBZ 2.2-2007)
    period = schema.Period(minute0, minute0 + 120 * 10**9)
    peaks = schema.add_peaks(r for q in schema.period_peaks(period, meters=["m3"])
                             for r in stack.influx().query_rows(q))[("m3", "0")]
    counts = {t: peaks[name] for t, name in schema.impulse_thresholds(peaks).items()}
    assert gbz2_2.impulse_count(counts) == (7, 120.0)
    check = gbz2_2.peak_check(peaks["lcpeak"], 7, "CN-GBZ")
    assert abs(peaks["lcpeak"] - 141.5) < 0.05
    assert (check.limit_db, check.exceeded) == (140.0, True)
