"""``tingbao observations import FILE [--sheet NAME] --config SITE``: store a spot-check survey
of hearing-protector wearing (CSV in UTF-8/GBK or XLSX; :mod:`tingbao.analysis.observations`).

Prints a bilingual summary: rows read, stored, rejected (each with its row, column and reason)
and duplicates (each with the row it repeats). Exit status 0 when every row was stored (or was
a duplicate), 1 when some rows were rejected (the good rows are stored all the same), 2 when
the file could not be read at all (a required column missing, bytes in no known encoding)."""

from __future__ import annotations

import sys

from .common import site_arguments

SHOW_AT_MOST = 50
"""Rejected rows and duplicates listed one per line up to this many each (then a count)."""


def register(sub) -> None:
    p = sub.add_parser("observations", help="import spot-check surveys of protector wearing")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = actions.add_parser("import", help="store a survey file (CSV or XLSX)")
    imp.add_argument("file", metavar="FILE", help="survey: .csv (UTF-8 or GBK) or .xlsx")
    imp.add_argument("--sheet", metavar="NAME", help="XLSX sheet (default: the first)")
    site_arguments(imp)
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=run_import)


def run_import(args) -> int:
    from tingbao.collector.influx import InfluxError
    from tingbao.collector.registry import load_registry
    from tingbao.edge.cli.main import CliError

    from ..observations import read_observations, write_observations
    from .common import connect

    reg = load_registry(args.config)
    imp = read_observations(args.file, reg, sheet=args.sheet)  # TableError: exit 2
    _, writer = connect(reg, args, writer=True)
    bar = None
    if not args.quiet and sys.stderr.isatty() and imp.observations:
        from tqdm import tqdm

        bar = tqdm(total=len(imp.observations), unit="row", file=sys.stderr, desc=args.file)
    try:
        stored = write_observations(writer, imp, reg.deployment.timezone,
                                    progress=bar.update if bar is not None else None)
    except InfluxError as e:
        raise CliError(f"InfluxDB refused the observations: {e}") from None
    finally:
        if bar is not None:
            bar.close()
    print(summary(imp, stored))
    sys.stdout.flush()
    return 1 if imp.errors else 0


def summary(imp, stored: int) -> str:
    """The bilingual report of one import (Chinese first)."""
    where = f"{imp.path}" + (f" [{imp.sheet}]" if imp.sheet else "")
    lines = [f"{where} ({imp.encoding})",
             f"  读取 {imp.rows} 行，入库 {stored} 行，拒绝 {len(imp.rejected)} 行，重复 "
             f"{len(imp.duplicates)} 行",
             f"  read {imp.rows} rows, stored {stored}, rejected {len(imp.rejected)}, "
             f"duplicates {len(imp.duplicates)}"]
    lines += [f"  注意 note: {n}" for n in imp.notes]
    if imp.errors:
        lines.append("  拒绝的行 rejected rows:")
        lines += [f"    {e}" for e in imp.errors[:SHOW_AT_MOST]]
        if len(imp.errors) > SHOW_AT_MOST:
            lines.append(f"    … {len(imp.errors) - SHOW_AT_MOST} more 更多")
    if imp.duplicates:
        lines.append("  重复的行（保留第一行） duplicates (the first row kept):")
        lines += [f"    {d}" for d in imp.duplicates[:SHOW_AT_MOST]]
        if len(imp.duplicates) > SHOW_AT_MOST:
            lines.append(f"    … {len(imp.duplicates) - SHOW_AT_MOST} more 更多")
    return "\n".join(lines)
