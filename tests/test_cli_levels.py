"""``tingbao levels`` end to end on real files: fields, calibration, formats, bad input."""

import csv
import io
import json

import numpy as np
import pytest
import soundfile as sf

from tingbao.edge.cli.main import main

FS = 48_000
FIELDS = ["start", "duration", "laeq", "ea", "lceq", "lcpeak", "lzpeak", "lafmax", "lasmax",
          "lafmin", "laf10", "laf50", "laf90", "overload", "coverage"]


def tone(seconds, rms, f=1000.0):
    t = np.arange(round(seconds * FS)) / FS
    return np.sqrt(2) * rms * np.sin(2 * np.pi * f * t)


@pytest.fixture
def recording(tmp_path):
    p = tmp_path / "rec.wav"
    sf.write(str(p), tone(3.5, 0.01), FS, subtype="PCM_24")
    return p


def test_jsonl_records_with_pa_per_unit(recording, capsys):
    assert main(["levels", str(recording), "--pa-per-unit", "100"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["start"] for r in rows] == [0.0, 1.0, 2.0, 3.0]
    for k in FIELDS:
        assert k in rows[0]
    # 0.01 units RMS × 100 Pa/unit = 1 Pa RMS = 94.0 dB
    assert rows[1]["laeq"] == pytest.approx(94.0, abs=0.05)
    assert rows[1]["ea"] == pytest.approx(1.0, rel=0.01)
    assert rows[3]["coverage"] == pytest.approx(0.5)
    assert rows[1]["overload"] is False


def test_calibrator_file_sets_the_sensitivity(tmp_path, recording, capsys):
    cal = tmp_path / "cal.wav"
    sf.write(str(cal), tone(4.0, 0.02), FS, subtype="PCM_24")  # 94 dB → S = 1.0024/0.02 Pa/unit
    assert main(["levels", str(recording), "--calibrator", str(cal),
                 "--calibrator-level", "94"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[1]["laeq"] == pytest.approx(94.0 - 20 * np.log10(2), abs=0.06)


def test_csv_with_third_octave_bands(recording, capsys):
    assert main(["levels", str(recording), "--pa-per-unit", "100", "--format", "csv",
                 "--bands", "third", "--interval", "0.5"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 7
    assert float(rows[2]["band_1000"]) == pytest.approx(94.0, abs=0.2)
    assert float(rows[2]["band_250"]) < 60.0
    assert "band_25" in rows[0] and "band_10000" in rows[0]


def test_garbage_file_gives_a_clear_error(tmp_path, capsys):
    p = tmp_path / "bad.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    assert main(["levels", str(p)]) == 2
    err = capsys.readouterr().err
    assert "bad.wav" in err and "error" in err


def test_interval_that_is_not_whole_samples_is_refused(recording, capsys):
    assert main(["levels", str(recording), "--interval", "0.123456"]) == 2
    assert "whole number of samples" in capsys.readouterr().err
