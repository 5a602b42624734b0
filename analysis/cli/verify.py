"""``tingbao verify --config SITE [--enterprise E]``: check the hash chain of the stored
exposure records (:mod:`tingbao.analysis.ledger`). Prints each enterprise's days checked and
head hash; exit status 0 when every chain holds, 1 when a record was edited, a day removed
or inserted, or records exist outside the chain (each break named by its date)."""

from __future__ import annotations

import sys

from .common import open_site, site_arguments


def register(sub) -> None:
    p = sub.add_parser("verify", help="check the hash chain of stored exposure records")
    site_arguments(p)
    p.add_argument("--enterprise", metavar="ID", help="one enterprise (default: all)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..ledger import verify

    site = open_site(args)
    status = 0
    for ent in site.enterprises:
        v = verify(site.reader, ent)
        if v.ok:
            head = f"head {v.head_date} {v.head}" if v.head else "no closed day yet"
            print(f"{ent}: OK 链完整 chain intact, {v.days} days; {head}")
        else:
            status = 1
            print(f"{ent}: BROKEN 链已破坏 chain broken, {len(v.breaks)} problem(s) in "
                  f"{v.days} days:")
            for b in v.breaks:
                print(f"  {b.date}: {b.reason}")
    sys.stdout.flush()
    return status
