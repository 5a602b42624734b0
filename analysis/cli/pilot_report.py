"""``tingbao pilot-report --config SITE --from D --to D --out DIR [--lang zh|en]``: the
pilot-evaluation report of the 听力保护行动 (:mod:`tingbao.analysis.report.pilot`) over the
periods starting from D to D (local dates, inclusive), written as
``DIR/pilot-report-{from}-{to}.html`` (self-contained) and ``.pdf``. It reads the results the
analysis stored (``tingbao wearing-rate``, ``tingbao screening`` …); a period without them
gives a report that says "no data yet", and a line on stderr.
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
    p = sub.add_parser("pilot-report", help="the pilot-evaluation report (HTML and PDF): "
                                            "wearing rates, milestones, DiD, screening")
    site_arguments(p)
    p.add_argument("--from", dest="first", required=True, type=date_arg, metavar="YYYY-MM-DD",
                   help="first period start date (local), e.g. 2020-01-01")
    p.add_argument("--to", dest="last", required=True, type=date_arg, metavar="YYYY-MM-DD",
                   help="last period start date (local, inclusive), e.g. 2025-12-31")
    report_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from tingbao.edge.cli.main import CliError

    from ..report.pilot import build_pilot_report, pilot_html, pilot_paths

    if args.last < args.first:
        raise CliError(f"--to {args.last} is before --from {args.first}")
    require_report_font()
    site = open_site(args)
    data = build_pilot_report(site.reader, site.reg, args.first, args.last)
    html_path, pdf_path = pilot_paths(args.out, args.first, args.last)
    write_report(args, pilot_html(data, args.lang), html_path, pdf_path)
    if data.results.empty:
        print(f"tingbao pilot-report: no pilot results stored for periods from {args.first} "
              f"to {args.last} (run tingbao wearing-rate / screening first): the report says "
              "so", file=sys.stderr)
    return 0
