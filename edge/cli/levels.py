"""``tingbao levels FILE``: interval levels of a recording, one record per interval and
channel, as JSON lines or CSV."""

from __future__ import annotations

import csv
import json
import sys

from .main import CliError
from .progress import Progress

FIELDS = ["channel", "start", "duration", "laeq", "ea", "lceq", "lcpeak", "lzpeak", "lafmax",
          "lasmax", "lafmin", "laf5", "laf10", "laf50", "laf90", "laf95", "overload",
          "coverage"]


def register(sub) -> None:
    p = sub.add_parser(
        "levels",
        help="interval levels (LAeq, EA, LCpeak, LAFmax, …) of a WAV/FLAC recording",
        description="Measure a recording with the IEC 61672-1 class 1 meter and print one "
        "record per interval and channel. start is seconds from the file start; levels in dB "
        "re 20 µPa; ea (A-weighted sound exposure) in Pa²·s; coverage in seconds.",
    )
    p.add_argument("file", help="WAV or FLAC recording (streamed, any length)")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--pa-per-unit", type=float, metavar="S",
                     help="calibration: a sample value x is x·S Pa (default 1.0)")
    cal.add_argument("--calibrator", metavar="CALFILE",
                     help="recording of an acoustic calibrator on the same chain")
    p.add_argument("--calibrator-level", type=float, default=94.0, metavar="DB",
                   help="the calibrator's level in dB re 20 µPa (default 94; 114 also usual)")
    p.add_argument("--calibrator-frequency", type=float, default=1000.0, metavar="HZ")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="interval length, 0.1–60 s (default 1)")
    p.add_argument("--bands", choices=["third", "octave"],
                   help="also report LZeq per 1/3-octave (25 Hz–10 kHz) or octave band")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    p.add_argument("--blocksize", type=int, default=65536, help=argparse_hidden())
    p.set_defaults(func=run)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def sensitivity_from(args, channels: int):
    """S in Pa per unit from ``--pa-per-unit`` or ``--calibrator`` (per channel)."""
    from ..calibration import read_calibrator
    from ..sources.files import FileSource

    if args.calibrator:
        with FileSource(args.calibrator) as cal:
            chunks = [c.data for c in cal]
        import numpy as np

        data = np.concatenate(chunks) if chunks else np.zeros((0, cal.channels))
        s = [read_calibrator(data[:, ch], cal.samplerate, args.calibrator_level,
                             args.calibrator_frequency).pa_per_unit
             for ch in range(data.shape[1])]
        if len(s) == 1:
            return s[0]
        if len(s) != channels:
            raise CliError(f"calibrator file has {len(s)} channels, recording has {channels}")
        return s
    return 1.0 if args.pa_per_unit is None else args.pa_per_unit


def run(args) -> int:
    from ..meter import SoundLevelMeter
    from ..sources.files import FileSource

    src = FileSource(args.file, blocksize=args.blocksize)
    if args.pa_per_unit is None and not args.calibrator:
        print("tingbao levels: note: no calibration given (--pa-per-unit or --calibrator): "
              "levels are relative to 1 Pa per unit (a sample value of 1.0 is taken as "
              "1 Pa), not sound pressure levels of the workplace", file=sys.stderr)
    with src:
        meter = SoundLevelMeter(src.samplerate, channels=src.channels, interval=args.interval,
                                pa_per_unit=sensitivity_from(args, src.channels),
                                bands=args.bands)
        out = sys.stdout
        fields = list(FIELDS)
        if meter.band_nominal:
            fields += [f"band_{b}" for b in meter.band_nominal]
        writer = None
        if args.format == "csv":
            writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
        progress = Progress(src.duration, label=str(args.file))

        def emit(intervals):
            for iv in intervals:
                for rec in iv.records():
                    if writer is not None:
                        bands = rec.pop("bands", {}) or {}
                        rec.update({f"band_{k}": v for k, v in bands.items()})
                        writer.writerow(rec)
                    else:
                        out.write(json.dumps(rec, ensure_ascii=False) + "\n")

        for chunk in src:
            if chunk.gap_before:
                emit(meter.gap(chunk.gap_before))
            emit(meter.process(chunk.data))
            progress.update(meter.clock / src.samplerate)
        emit(meter.flush())
        progress.close()
        if meter.bad_samples:
            print(f"warning: {meter.bad_samples} non-finite samples were treated as missing",
                  file=sys.stderr)
    return 0
