"""``tingbao audiograms import FILE --config SITE [--stack DIR] [--sheet NAME] [--dry-run]``:
import pure-tone audiograms from a CSV (UTF-8, UTF-8 with BOM, GBK/GB18030) or XLSX file into
InfluxDB (:mod:`tingbao.analysis.audiograms`: columns, checks, duplicates).

Prints how many rows were read and stored, then every rejected row with its column and
reason, and every duplicated row; the good rows are stored even when others are rejected.
``--dry-run`` checks without storing. Exit status 0 when every row was good, 1 when rows were
rejected or duplicated (the good ones stored), 2 (one line ``tingbao audiograms: error: …``)
when the file cannot be read or lacks a required column, or the servers are unreachable.
"""

from __future__ import annotations

import sys

from .common import open_site, site_arguments


def register(sub) -> None:
    p = sub.add_parser("audiograms", help="import pure-tone audiograms (CSV/XLSX)",
                       description="听力图 / Audiograms: import from CSV or XLSX, row by row.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = actions.add_parser("import", help="check a file and store its good rows")
    imp.add_argument("file", metavar="FILE", help="CSV (UTF-8 or GBK) or XLSX")
    site_arguments(imp)
    imp.add_argument("--sheet", metavar="NAME", help="XLSX sheet (default: the first)")
    imp.add_argument("--dry-run", action="store_true", help="check only, store nothing")
    imp.set_defaults(func=run_import)


def run_import(args) -> int:
    from tqdm import tqdm

    from tingbao.edge.cli.main import CliError

    from ..audiograms import parse_audiograms, write_audiograms
    from ..spreadsheets import TableError

    site = open_site(args, writer=not args.dry_run)
    try:
        result = parse_audiograms(args.file, enterprises=[e.id for e in site.reg.enterprises],
                                  sheet=args.sheet)
    except TableError as e:
        raise CliError(str(e)) from None
    tz = site.reg.deployment.timezone
    good = list(result.good)
    stored = 0
    if not args.dry_run and good:
        with tqdm(total=len(good), desc="storing audiograms", unit="row",
                  disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
            stored = write_audiograms(site.writer, good, tz, batch=2000, progress=bar.update)
    t = result.table
    print(f"{args.file}: {len(t.rows) + len(t.errors)} rows read ({t.encoding}); "
          f"{len(good)} good, {stored} stored 已导入; {len(result.rejected_rows)} rejected "
          f"已拒绝; {len(result.duplicates)} duplicated 重复")
    for note in t.notes:
        print(f"  note: {note}")
    for e in result.errors:
        print(f"  rejected 拒绝 {e}")
    for d in result.duplicates:
        print(f"  duplicate 重复 {d}: not stored")
    sys.stdout.flush()
    return 1 if result.errors or result.duplicates else 0
