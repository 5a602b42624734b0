"""Calibration of a measuring chain with an acoustic calibrator, and the per-meter record of
checks.

A raw sample value x is x·S pascal. S comes either from the user (``--pa-per-unit``) or from a
recording of an acoustic calibrator (IEC 60942) that produces a known sound pressure level,
94 dB or 114 dB re 20 µPa at 1 kHz: S = p_ref / RMS_raw with p_ref = 20 µPa · 10^(L/20).

GBZ/T 189.8-2007 (measurement of noise in the workplace) asks for a calibrator check before and
after each measurement and treats a difference of more than 0.5 dB as invalidating the
measurement in between. :class:`CalibrationStore` keeps, per meter, the dated history of checks
and reports a drifting check as invalidating everything since the last good one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import re
from pathlib import Path

import numpy as np
from scipy import signal

from .levels import P0

DRIFT_LIMIT_DB = 0.5
"""Largest accepted difference between two calibrator checks (GBZ/T 189.8-2007), dB."""

SETTLE_S = 0.5
"""Start of a calibrator recording that is ignored (handling, calibrator warm-up), seconds."""

MIN_DURATION_S = 2.0
"""Shortest usable calibrator tone after the settling time, seconds."""


class CalibrationError(ValueError):
    """A calibrator recording or a calibration record that cannot be used; says why."""


@dataclasses.dataclass(frozen=True)
class CalibratorReading:
    """What a calibrator recording shows.

    ``pa_per_unit`` is S in Pa per raw unit; ``rms_units`` the RMS of the tone in raw units;
    ``level_db`` the calibrator's nominal level (dB re 20 µPa); ``frequency_hz`` the measured
    tone frequency; ``tone_share_db`` how far the 1/3-octave band around the tone lies below
    the broadband level (0 dB for a clean tone); ``spread_db`` the range of 0.25 s levels.
    """

    pa_per_unit: float
    rms_units: float
    level_db: float
    frequency_hz: float
    tone_share_db: float
    spread_db: float


def read_calibrator(x, samplerate: float, level_db: float = 94.0,
                    frequency_hz: float = 1000.0) -> CalibratorReading:
    """Derive S (Pa per raw unit) from a recording of an acoustic calibrator.

    ``x`` is one channel of raw samples, shape (n,); ``samplerate`` in Hz; ``level_db`` the
    calibrator's sound pressure level in dB re 20 µPa (94 or 114 are usual); ``frequency_hz``
    its nominal frequency. The first 0.5 s are skipped. Raises :class:`CalibrationError` when
    the recording is too short, clipped, not a steady tone near ``frequency_hz``, or drowned
    in background noise.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise CalibrationError("pass one channel of the calibrator recording, shape (n,)")
    if not (30.0 <= level_db <= 160.0):
        raise CalibrationError(f"calibrator level {level_db} dB is implausible (94 or 114 usual)")
    skip = round(SETTLE_S * samplerate)
    x = x[skip:]
    if len(x) < MIN_DURATION_S * samplerate:
        raise CalibrationError(
            f"calibrator recording too short: need at least {SETTLE_S + MIN_DURATION_S:.1f} s")
    if not np.all(np.isfinite(x)):
        raise CalibrationError("calibrator recording holds NaN or infinite samples")
    if not np.any(x):
        raise CalibrationError("calibrator recording is silent: check the input and its gain")
    if np.max(np.abs(x)) >= 1.0 - 1.0 / 32768.0:
        raise CalibrationError("calibrator recording is clipped: lower the input gain")
    # Frequency of the strongest component.
    n = len(x)
    spec = np.abs(np.fft.rfft(x * np.hanning(n)))
    k = int(np.argmax(spec[1:]) + 1)
    if 1 <= k < len(spec) - 1:  # parabolic interpolation of the peak
        a, b, c = np.log(spec[k - 1 : k + 2] + 1e-300)
        k = k + 0.5 * (a - c) / (a - 2 * b + c)
    f_meas = k * samplerate / n
    if abs(f_meas / frequency_hz - 1.0) > 0.03:
        raise CalibrationError(
            f"strongest component at {f_meas:.0f} Hz, not the calibrator's {frequency_hz:.0f} Hz:"
            " is the calibrator on the microphone and switched on?")
    sos = signal.butter(3, [frequency_hz * 2 ** (-1 / 6), frequency_hz * 2 ** (1 / 6)],
                        btype="bandpass", fs=samplerate, output="sos")
    band = signal.sosfiltfilt(sos, x)
    edge = round(0.1 * samplerate)
    band, whole = band[edge:-edge], x[edge:-edge] - np.mean(x)
    rms_band = float(np.sqrt(np.mean(band**2)))
    rms_all = float(np.sqrt(np.mean(whole**2)))
    share = 20 * math.log10(rms_band / rms_all)
    if share < -1.0:
        raise CalibrationError(
            f"background noise too strong: the tone is {share:.1f} dB below the whole signal")
    win = round(0.25 * samplerate)
    parts = band[: len(band) // win * win].reshape(-1, win)
    lv = 10 * np.log10(np.mean(parts**2, axis=1))
    spread = float(lv.max() - lv.min())
    if spread > 0.5:
        raise CalibrationError(f"calibrator tone not steady: its level varies by {spread:.1f} dB")
    p_ref = P0 * 10 ** (level_db / 20)
    return CalibratorReading(p_ref / rms_band, rms_band, float(level_db), float(f_meas),
                             share, spread)


_SAFE_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def check_meter_id(meter: str) -> str:
    """Return ``meter`` if it is a safe identifier (letters, digits, ``_ . -``; ≤ 64 chars),
    else raise ValueError. Meter ids become file names, MQTT topic levels and InfluxDB tags."""
    if not isinstance(meter, str) or not _SAFE_ID.match(meter):
        raise ValueError(
            f"meter id {meter!r} is not allowed: use 1–64 letters, digits, '_', '.', '-'")
    return meter


class CalibrationStore:
    """Dated history of calibrator checks per meter, one JSON file per meter in ``directory``.

    Each entry: ``time`` (UTC ISO 8601), ``pa_per_unit``, ``level_db``, ``frequency_hz``,
    ``source`` (file name) and ``sha256``, ``deviation_db`` (reading with the previous S minus
    the calibrator level; null for the first), ``status`` (``initial``, ``ok`` or ``drift``) and
    for a drift ``invalid_from`` / ``invalid_to``: the period whose measurements are invalid.
    """

    def __init__(self, directory):
        self.directory = Path(directory)

    def _path(self, meter: str) -> Path:
        return self.directory / f"{check_meter_id(meter)}.json"

    def history(self, meter: str) -> list[dict]:
        """All checks of ``meter``, oldest first ([] if none)."""
        p = self._path(meter)
        if not p.exists():
            return []
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise CalibrationError(f"calibration record {p} is unreadable: {e}") from e
        if not isinstance(data, list):
            raise CalibrationError(f"calibration record {p} is not a list of checks")
        return data

    def current(self, meter: str) -> dict | None:
        """The latest check of ``meter`` (its ``pa_per_unit`` is the S in force), or None."""
        h = self.history(meter)
        return h[-1] if h else None

    def record(self, meter: str, reading: CalibratorReading, source: str = "",
               sha256: str = "", when: dt.datetime | None = None) -> dict:
        """Add a check of ``meter`` and return the entry, with its drift verdict against the
        S in force: |deviation| > 0.5 dB marks everything since the last good check invalid."""
        when = when or dt.datetime.now(dt.UTC)
        hist = self.history(meter)
        entry = {
            "time": when.astimezone(dt.UTC).isoformat(timespec="seconds"),
            "pa_per_unit": reading.pa_per_unit,
            "level_db": reading.level_db,
            "frequency_hz": round(reading.frequency_hz, 2),
            "source": source,
            "sha256": sha256,
            "deviation_db": None,
            "status": "initial",
        }
        if hist:
            prev = hist[-1]
            reading_db = 20 * math.log10(reading.rms_units * prev["pa_per_unit"] / P0)
            dev = reading_db - reading.level_db
            entry["deviation_db"] = round(dev, 3)
            if abs(dev) > DRIFT_LIMIT_DB:
                good = [h for h in hist if h["status"] != "drift"]
                entry["status"] = "drift"
                entry["invalid_from"] = (good[-1] if good else hist[0])["time"]
                entry["invalid_to"] = entry["time"]
            else:
                entry["status"] = "ok"
        hist.append(entry)
        self.directory.mkdir(parents=True, exist_ok=True)
        p = self._path(meter)
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(hist, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, p)
        return entry


def file_sha256(path) -> str:
    """SHA-256 of a file, hex (identifies the calibrator recording in the record)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
