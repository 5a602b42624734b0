"""Calibration from an acoustic-calibrator recording, and the GBZ/T 189.8 drift rule."""

import datetime as dt
import json

import numpy as np
import pytest
import soundfile as sf

from tingbao.edge.calibration import (
    CalibrationError,
    CalibrationStore,
    check_meter_id,
    read_calibrator,
)
from tingbao.edge.cli.main import main

FS = 48_000


def calibrator(rms_units, seconds=4.0, f=1000.0, noise=0.0, seed=0):
    t = np.arange(round(seconds * FS)) / FS
    x = np.sqrt(2) * rms_units * np.sin(2 * np.pi * f * t)
    return x + noise * np.random.default_rng(seed).standard_normal(len(t))


@pytest.mark.parametrize("level", [94.0, 114.0])
def test_sensitivity_from_a_calibrator_tone(level):
    r = read_calibrator(calibrator(0.05), FS, level)
    p_ref = 20e-6 * 10 ** (level / 20)
    assert r.pa_per_unit == pytest.approx(p_ref / 0.05, rel=1e-3)
    assert r.frequency_hz == pytest.approx(1000.0, abs=1.0)


def test_background_noise_outside_the_band_is_ignored():
    r = read_calibrator(calibrator(0.05, noise=0.01), FS, 94.0)
    assert 20 * np.log10(r.pa_per_unit / (1.0024 / 0.05)) == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize(
    "x, msg",
    [(calibrator(0.05, seconds=1.0), "too short"), (calibrator(0.05, f=250.0), "250 Hz"),
     (calibrator(0.9), "clipped"), (calibrator(0.01, noise=0.05), "background"),
     (np.zeros(FS * 3), "silent")],
)
def test_unusable_recordings_are_refused_with_the_reason(x, msg):
    with pytest.raises(CalibrationError, match=msg):
        read_calibrator(x, FS, 94.0)


def test_drift_over_half_a_decibel_invalidates_since_last_good_check(tmp_path):
    store = CalibrationStore(tmp_path)
    t0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
    e1 = store.record("m1", read_calibrator(calibrator(0.05), FS), when=t0)
    assert e1["status"] == "initial"
    e2 = store.record("m1", read_calibrator(calibrator(0.05 * 10 ** (0.3 / 20)), FS),
                      when=t0 + dt.timedelta(hours=4))
    assert e2["status"] == "ok" and e2["deviation_db"] == pytest.approx(0.3, abs=0.01)
    e3 = store.record("m1", read_calibrator(calibrator(0.05 * 10 ** (-0.6 / 20)), FS),
                      when=t0 + dt.timedelta(hours=8))
    assert e3["status"] == "drift"
    assert e3["deviation_db"] == pytest.approx(-0.9, abs=0.01)  # against S in force (check 2)
    assert e3["invalid_from"] == e2["time"] and e3["invalid_to"] == e3["time"]
    assert len(store.history("m1")) == 3
    assert store.current("m1")["pa_per_unit"] == e3["pa_per_unit"]


@pytest.mark.parametrize(
    "bad", ["", "a b", "m/1", "x" * 65, "../etc", "m,1", 'm"1', "m\n1", "m1\n"])
def test_hostile_meter_ids_are_refused(bad):
    with pytest.raises(ValueError, match="not allowed"):
        check_meter_id(bad)


def test_calibrate_command_records_and_reports_drift(tmp_path, capsys):
    good = tmp_path / "cal1.wav"
    sf.write(good, calibrator(0.05), FS, subtype="PCM_24")
    drifted = tmp_path / "cal2.wav"
    sf.write(drifted, calibrator(0.05 * 10 ** (0.8 / 20)), FS, subtype="PCM_24")
    store = tmp_path / "store"
    assert main(["calibrate", str(good), "--meter", "m1", "--store", str(store)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["status"] == "initial"
    assert first["pa_per_unit"] == pytest.approx(1.00237 / 0.05, rel=2e-3)
    assert main(["calibrate", str(drifted), "--meter", "m1", "--store", str(store)]) == 3
    second = json.loads(capsys.readouterr().out)
    assert second["status"] == "drift" and "0.5 dB" in second["message"]
    assert second["deviation_db"] == pytest.approx(0.8, abs=0.02)


def test_calibrate_command_fails_clearly_on_a_missing_file(tmp_path, capsys):
    assert main(["calibrate", str(tmp_path / "nope.wav")]) == 2
    assert "no such file" in capsys.readouterr().err
