"""``tingbao report --config SITE --enterprise E --from D --to D [--lang zh|en] --out DIR``:
the inspector's report of an enterprise over the shift dates D … D (inclusive), written as
``DIR/report-{E}-{from}-{to}.html`` (self-contained) and ``.pdf``
(:mod:`tingbao.analysis.report`). It reads the exposure records the ledger stored and
chained; a day not closed yet is said so, never computed here.
"""

from __future__ import annotations

import sys

from .common import (
    date_arg,
    open_site,
    report_arguments,
    require_report_font,
    site_arguments,
    write_report,
)


def register(sub) -> None:
    p = sub.add_parser("report", help="the inspector's report (HTML and PDF) of an enterprise "
                                      "over a period")
    site_arguments(p)
    p.add_argument("--enterprise", required=True, metavar="ID")
    p.add_argument("--from", dest="first", required=True, type=date_arg, metavar="YYYY-MM-DD",
                   help="first shift date (local)")
    p.add_argument("--to", dest="last", required=True, type=date_arg, metavar="YYYY-MM-DD",
                   help="last shift date (local, inclusive)")
    report_arguments(p)
    p.set_defaults(func=run)


MAX_DAYS = 366
"""A report covers at most a year of shift dates."""


def run(args) -> int:
    from tingbao.edge.cli.main import CliError

    from ..report import render
    from ..report.build import build_report

    if args.last < args.first:
        raise CliError(f"--to {args.last} is before --from {args.first}")
    if (args.last - args.first).days + 1 > MAX_DAYS:
        raise CliError(f"the period has more than {MAX_DAYS} days; split it")
    require_report_font()
    site = open_site(args)  # the registry, the enterprise checked, the reader
    reg, reader = site.reg, site.reader

    def progress(items):
        try:
            from tqdm import tqdm
        except ImportError:
            return items
        return tqdm(items, desc="days", unit="day", disable=not sys.stderr.isatty(),
                    leave=False)

    data = build_report(reader, reg, args.enterprise, args.first, args.last,
                        progress=progress)
    html_path, pdf_path = render.report_paths(args.out, args.enterprise, args.first,
                                              args.last)
    write_report(args, render.report_html(data, args.lang), html_path, pdf_path)
    if data.empty:
        print(f"tingbao report: no closed exposure records for {args.enterprise} from "
              f"{args.first} to {args.last}: the report says so (not closed yet)",
              file=sys.stderr)
    if not data.verified.ok:
        print(f"tingbao report: the hash chain of {args.enterprise} does NOT verify "
              f"({len(data.verified.breaks)} break(s)); the report says where",
              file=sys.stderr)
    return 0
