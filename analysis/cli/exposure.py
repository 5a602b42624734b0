"""``tingbao exposure --config SITE --date YYYY-MM-DD [--enterprise E] [--format table|json|csv]``:
every post's and job's exposure for the shift that starts on that local date, computed now
from the store (:mod:`tingbao.analysis.exposure`), with the profiles side by side.

``json`` prints one object per line (:mod:`tingbao.analysis.records` lists the keys: at least
``kind``, ``enterprise``, ``meter``/``channel`` or ``job``, ``date``, ``laeq``,
``duration_h``, ``coverage``, ``lex_8h``, ``u_db``, ``grade``, ``profile``, and for posts
``lcpeak_max`` and the impulse counts ``imp_…``); ``csv`` the same flat keys with a header;
``table`` a bilingual table for a person. ``--week YYYY-Www`` instead of ``--date`` gives
LEX,W per post and job from the days the ledger closed (:mod:`tingbao.analysis.weekly`).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys

from .common import date_arg, emit_rows, open_site, site_arguments


def register(sub) -> None:
    p = sub.add_parser("exposure", help="LEX,8h ± U, grade and profiles per post and job for "
                                        "one day")
    site_arguments(p)
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", type=date_arg, metavar="YYYY-MM-DD",
                      help="local date on which the shift starts")
    when.add_argument("--week", type=_week, metavar="YYYY-Www",
                      help="ISO week: LEX,W per post and job from the closed days (GBZ 2.2, "
                           "divisor 5)")
    p.add_argument("--enterprise", metavar="ID", help="one enterprise (default: all)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=run)


def _week(text: str) -> tuple[int, int]:
    try:
        year, week = text.split("-W")
        dt.date.fromisocalendar(int(year), int(week), 1)
        return int(year), int(week)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO week such as 2026-W45"
                                         ) from None


def run(args) -> int:
    from ..daily import compute_days
    from ..records import objects

    site = open_site(args)
    reg, reader = site.reg, site.reader
    if args.week is not None:
        return _weeks(reader, reg, site.enterprises, args)
    rows = []
    for ent in site.enterprises:
        day, views = compute_days(reader, reg, ent, args.date)
        rows += list(objects(day, views))
    emit_rows(rows, args.format, table)
    return 0


def _weeks(reader, reg, enterprises, args) -> int:
    from ..weekly import week_exposure

    year, week = args.week
    rows = []
    for ent in enterprises:
        for w in week_exposure(reader, reg, ent, year, week):
            rows.append({"kind": w.kind, "enterprise": w.enterprise, "subject": w.subject,
                         "week": f"{year}-W{week:02d}", "days": w.days,
                         "workdays": w.worked,
                         "missing": [d.isoformat() for d in w.missing],
                         "lex_w": round(w.lex_w, 6), "lex_w_applies": w.applies,
                         "grade": w.grade.code if w.grade else None, "profile": w.profile,
                         "daily": {d.isoformat(): round(v, 6) for d, v in w.daily}})
    out = sys.stdout
    if args.format == "json":
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    elif args.format == "csv":
        w = csv.DictWriter(out, fieldnames=[k for k in rows[0] if k != "daily"] if rows else
                           ["kind"], extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        out.write(f"{'类型 kind':10s} {'企业 enterprise':16s} {'岗位/工种 post/job':22s} "
                  f"{'周 week':9s} {'天数 days':>9s} {'LEX,W':>6s} {'适用 applies':>12s} "
                  f"{'分级 grade':>10s}\n")
        for r in rows:
            out.write(f"{r['kind']:10s} {r['enterprise']:16s} {r['subject']:22s} "
                      f"{r['week']:9s} {r['days']:>9d} {r['lex_w']:6.1f} "
                      f"{'是 yes' if r['lex_w_applies'] else '否 no':>12s} "
                      f"{r['grade'] or '—':>10s}\n")
    return 0


def _f(x, spec=".1f") -> str:
    return "—" if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    """A bilingual fixed-width table of exposure objects."""
    head = (f"{'类型 kind':10s} {'企业 enterprise':16s} {'岗位/工种 post/job':22s} "
            f"{'日期 date':10s} {'LAeq':>6s} {'LEX,8h':>7s} {'±U':>5s} {'覆盖 cov':>8s} "
            f"{'分级 grade':>10s} {'LCpeak':>7s}  flags")
    lines = [head, "-" * len(head)]
    for r in rows:
        subject = (f"{r['meter']}:{r['channel']}" if r["kind"] == "post" else r["job"])
        kind = "岗位 post" if r["kind"] == "post" else "工种 job"
        cov = "—" if r.get("coverage") is None else f"{100 * r['coverage']:.0f} %"
        lines.append(f"{kind:10s} {r['enterprise']:16s} {subject:22s} {r['date']:10s} "
                     f"{_f(r.get('laeq')):>6s} {_f(r.get('lex_8h')):>7s} "
                     f"{_f(r.get('u_db')):>5s} {cov:>8s} {r.get('grade') or '—':>10s} "
                     f"{_f(r.get('lcpeak_max')):>7s}  {r.get('flags') or ''}")
    return "\n".join(lines) + "\n"
