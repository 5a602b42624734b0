"""``tingbao protection --config SITE --date D [--enterprise E] [--close]``: the wear time
measured at the ear on local date D, per worker (:mod:`tingbao.analysis.wear_time`): seconds
worn correctly, assessed, removed, badly fitted and talking, and the worn share. With
``--close`` the day's ``wear_daily`` points are written (again: the same points)."""

from __future__ import annotations

import sys

from .common import date_arg, open_site, site_arguments


def register(sub) -> None:
    p = sub.add_parser("protection", help="wear time of hearing protectors measured at the ear")
    site_arguments(p)
    p.add_argument("--date", required=True, type=date_arg, metavar="YYYY-MM-DD",
                   help="local date")
    p.add_argument("--enterprise", metavar="ID", help="one enterprise (default: all)")
    p.add_argument("--close", action="store_true", help="write the day's wear_daily points")
    p.set_defaults(func=run)


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def run(args) -> int:
    from ..wear_time import close_day, wear_days

    site = open_site(args, writer=args.close)
    tz = site.reg.deployment.timezone
    print("企业 enterprise | 工人 worker | 仪器 meter | 正确佩戴 worn | 已评估 assessed | "
          "摘下 removed | 佩戴不良 poor fit | 说话 voice | 佩戴率 share")
    for ent in site.enterprises:
        days = (close_day(site.reader, site.writer, ent, args.date, tz) if args.close
                else wear_days(site.reader, ent, args.date, tz))
        for d in days:
            share = "—" if d.share is None else f"{100 * d.share:.1f} %"
            print(f"{ent} | {d.worker} | {d.meter} | {_h(d.worn_s)} | {_h(d.assessed_s)} | "
                  f"{_h(d.removed_s)} | {_h(d.poor_fit_s)} | {_h(d.voice_s)} | {share}")
        if args.close:
            print(f"{ent}: {len(days)} 条已写入 wear_daily points written for {args.date}")
    sys.stdout.flush()
    return 0
