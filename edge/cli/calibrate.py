"""``tingbao calibrate FILE --level 94``: derive S (Pa per raw unit) from a recording of an
acoustic calibrator and, with ``--meter``, record the check and its drift verdict."""

from __future__ import annotations

import json
import os

from .main import CliError

DEFAULT_STORE = os.path.join("var", "calibration")


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="sensitivity S from an acoustic-calibrator recording (94/114 dB at 1 kHz)",
        description="Read a recording of an acoustic calibrator, print S in Pa per raw unit "
        "and, with --meter, record the dated check. A check that differs from the S in force "
        "by more than 0.5 dB (GBZ/T 189.8) is reported as invalidating the measurements since "
        "the last good check; the command then exits with status 3.",
    )
    p.add_argument("file", help="WAV/FLAC recording of the calibrator on the microphone")
    p.add_argument("--level", type=float, default=94.0, metavar="DB",
                   help="calibrator level in dB re 20 µPa (94 or 114)")
    p.add_argument("--frequency", type=float, default=1000.0, metavar="HZ",
                   help="calibrator frequency (default 1000 Hz)")
    p.add_argument("--channel", type=int, default=0, help="channel of the recording (from 0)")
    p.add_argument("--meter", help="meter id: record the check in the calibration store")
    p.add_argument("--store", default=DEFAULT_STORE,
                   help=f"directory of the per-meter calibration records ({DEFAULT_STORE})")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ..calibration import CalibrationStore, file_sha256, read_calibrator
    from ..sources.files import FileSource

    with FileSource(args.file) as src:
        if not 0 <= args.channel < src.channels:
            raise CliError(f"--channel {args.channel}: the file has {src.channels} channel(s)")
        data = np.concatenate([c.data[:, args.channel] for c in src] or [np.zeros(0)])
        fs = src.samplerate
    reading = read_calibrator(data, fs, args.level, args.frequency)
    result = {
        "pa_per_unit": reading.pa_per_unit,
        "level_db": reading.level_db,
        "frequency_hz": round(reading.frequency_hz, 2),
        "tone_share_db": round(reading.tone_share_db, 3),
        "spread_db": round(reading.spread_db, 3),
    }
    status = 0
    if args.meter:
        entry = CalibrationStore(args.store).record(
            args.meter, reading, source=os.path.basename(args.file),
            sha256=file_sha256(args.file))
        result.update(meter=args.meter, **{k: entry[k] for k in
                                           ("time", "status", "deviation_db")})
        if entry["status"] == "drift":
            result["invalid_from"] = entry["invalid_from"]
            result["invalid_to"] = entry["invalid_to"]
            dev = entry["deviation_db"]
            result["message"] = (
                f"校准偏差 {dev:+.2f} dB 超过 0.5 dB，自上次合格校准以来的测量无效 / "
                f"calibration drifted {dev:+.2f} dB (> 0.5 dB, GBZ/T 189.8): "
                f"measurements from {entry['invalid_from']} to {entry['invalid_to']} are invalid")
            status = 3
    print(json.dumps(result, ensure_ascii=False))
    return status
