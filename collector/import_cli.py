"""``tingbao import FILE --config SITE --meter ID --start ISO-8601``: an inspector's recording
(WAV/FLAC from a handheld or personal meter) into the store, through the same validation and
schema as live data. What is checked, how points are identified (re-imports overwrite) and
what is refused: :mod:`tingbao.collector.recording_import`.

Prints a summary on stdout (intervals stored, refused with reasons, LAeq and LEX,8h of what
was stored), a progress bar on stderr over the audio (tqdm; only on a terminal, never with
``--quiet``). Exit status 0 when every interval was stored, 1 when some were refused (the
others are stored), 2 when nothing could be imported (one line ``tingbao import: error: …``
saying what to do)."""

from __future__ import annotations

import sys

from tingbao.edge.cli.main import CliError

MAX_REFUSALS_SHOWN = 20


def register(sub) -> None:
    p = sub.add_parser(
        "import",
        help="store an inspector's recording (WAV/FLAC) as a meter's levels in InfluxDB",
        description="导入检查员录音 / Measure a WAV/FLAC recording with the IEC 61672-1 class 1 "
        "meter (1 s intervals) and store it as the levels of a meter of the site registry, "
        "validated as live data. Re-importing the same file with the same --start overwrites "
        "the same points, never doubles them; the minute rollups are recomputed.",
    )
    p.add_argument("file", help="WAV or FLAC recording")
    p.add_argument("--config", required=True, metavar="SITE",
                   help="site registry TOML (configs/site.example.toml)")
    p.add_argument("--meter", required=True, metavar="ID",
                   help="meter id of the registry the recording stands for")
    p.add_argument("--enterprise", metavar="ID",
                   help="check that the meter belongs to this enterprise")
    p.add_argument("--start", required=True, metavar="ISO-8601",
                   help="time of the first sample, e.g. 2026-11-30T08:00:00+08:00 (without an "
                        "offset: the registry's [deployment] timezone)")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--pa-per-unit", type=float, metavar="S",
                     help="calibration: a sample value x is x·S Pa (default: the registry's "
                          "pa_per_unit of the meter)")
    cal.add_argument("--calibrator", metavar="CAL",
                     help="recording of an acoustic calibrator on the same chain")
    p.add_argument("--calibrator-level", type=float, default=94.0, metavar="DB",
                   help="the calibrator's level in dB re 20 µPa (default 94; 114 also usual)")
    p.add_argument("--calibrator-frequency", type=float, default=1000.0, metavar="HZ")
    p.add_argument("--bands", choices=["third", "octave"],
                   help="also store LZeq per 1/3-octave or octave band")
    p.add_argument("--stack", metavar="DIR",
                   help="data directory of the local stack (overrides the registry's "
                        "[stack] data_dir; ignored when the registry names an [influx] server)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--blocksize", type=int, default=65536, help=_hidden())
    p.set_defaults(func=run)


def _hidden():
    import argparse

    return argparse.SUPPRESS


def _calibration(args):
    """(pa_per_unit or None, where it came from)."""
    if args.calibrator:
        from tingbao.edge.cli.levels import sensitivity_from

        s = sensitivity_from(args, _channels_of(args.file))
        return s, f"calibrator {args.calibrator} at {args.calibrator_level:g} dB"
    if args.pa_per_unit is not None:
        return args.pa_per_unit, "--pa-per-unit"
    return None, "registry"


def _channels_of(path: str) -> int:
    from tingbao.edge.sources.files import FileSource

    with FileSource(path) as src:
        return src.channels


def run(args) -> int:
    from .influx import InfluxError
    from .recording_import import find_meter, import_recording, plan_import
    from .registry import load_registry
    from .registry.connect import influx_client
    from .stack.errors import StackError

    reg = load_registry(args.config)  # ConfigError: one line, exit 2
    find_meter(reg, args.meter, args.enterprise)  # before reading any audio
    s, source = _calibration(args)
    plan = plan_import(reg, args.file, args.meter, args.start, pa_per_unit=s,
                       calibration=source, enterprise=args.enterprise, bands=args.bands)
    try:
        writer = influx_client(reg, "writer", stack_dir=args.stack)
        reader = influx_client(reg, "reader", stack_dir=args.stack)
    except StackError as e:
        raise CliError(f"{e} (or give the stack's directory with --stack DIR)") from None
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=round(plan.duration_s, 1), unit="s", file=sys.stderr,
                   desc=args.file, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s "
                   "[{elapsed}<{remaining}]")

    def progress(done_s: float) -> None:
        bar.update(min(done_s, bar.total) - bar.n)

    try:
        result = import_recording(plan, args.file, writer, reader, blocksize=args.blocksize,
                                  progress=progress if bar is not None else None)
    except InfluxError as e:
        raise CliError(f"InfluxDB: {e}; check that it runs (tingbao stack status) and run "
                       "the same import again: stored intervals are overwritten, not "
                       "doubled") from None
    finally:
        if bar is not None:
            bar.close()
    _summary(plan, result, args.file, reg.deployment.timezone, sys.stdout)
    if result.audio_error:
        raise CliError(result.audio_error)
    return 1 if result.refused else 0


def _local(ns: int, tz: str) -> str:
    import datetime as dt
    import zoneinfo

    return dt.datetime.fromtimestamp(ns / 1e9, zoneinfo.ZoneInfo(tz)).isoformat(
        timespec="seconds")


def _summary(plan, result, path: str, tz: str, out) -> None:
    m = plan.meter
    s = ", ".join(f"{x:g}" for x in plan.pa_per_unit)
    out.write(f"导入 / imported {path} → {m.enterprise}/{m.site}/{m.id}, "
              f"{_local(plan.start_ns, tz)} … {_local(plan.end_ns, tz)} "
              f"({plan.duration_s:.1f} s, {plan.samplerate:g} Hz, {plan.channels} channel(s))\n")
    out.write(f"  校准 / calibration: S = {s} Pa per unit ({plan.calibration})\n")
    again = (f", {result.overwritten} point(s) of an earlier import overwritten"
             if result.overwritten else "")
    out.write(f"  已存储 / stored: {result.stored} of {plan.intervals} intervals; "
              f"{len(result.refused)} refused; {result.rollups} minute rollup(s){again}\n")
    for r in result.refused[:MAX_REFUSALS_SHOWN]:
        out.write(f"  拒收 / refused: interval {r.index} ({_local(r.start_ns, tz)}) "
                  f"[{r.stage}] {r.reason}\n")
    if len(result.refused) > MAX_REFUSALS_SHOWN:
        out.write(f"  … and {len(result.refused) - MAX_REFUSALS_SHOWN} more (dead letters "
                  "of collector tingbao-import)\n")
    for ch in range(plan.channels):
        ea, cov = float(result.ea[ch]), float(result.coverage[ch])
        if cov > 0 and ea > 0:
            out.write(f"  通道 / channel {ch}: LAeq {result.laeq[ch]:.1f} dB(A) over {cov:.0f} s, "
                      f"EA {ea:.6g} Pa²·s, LEX,8h {result.lex_8h[ch]:.1f} dB(A) (this "
                      "recording's exposure alone)\n")
        else:
            out.write(f"  通道 / channel {ch}: no exposure stored\n")
    first = _local(plan.start_ns - 86400 * 10**9, tz)[:10]  # a night shift of the day before
    last = _local(plan.end_ns, tz)[:10]
    out.write(f"  若该时段的班次已结算，请重新结算 / if a shift in this period was already closed, "
              f"close it again: tingbao analyze --config SITE --from {first} --to {last} "
              "--redo\n")
