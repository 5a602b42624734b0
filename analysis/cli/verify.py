"""``tingbao verify --config SITE [--enterprise E]``: check the hash chain of the stored
exposure records (:mod:`tingbao.analysis.ledger`). Prints each enterprise's days checked and
head hash; exit status 0 when every chain holds, 1 when a record was edited, a day removed
or inserted, or records exist outside the chain (each break named by its date)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("verify", help="check the hash chain of stored exposure records")
    p.add_argument("--config", required=True, metavar="SITE", help="site registry TOML")
    p.add_argument("--enterprise", metavar="ID", help="one enterprise (default: all)")
    p.add_argument("--stack", metavar="DIR", help="the local stack's data directory "
                                                  "(default: the registry's [stack] data_dir)")
    p.set_defaults(func=run)


def run(args) -> int:
    from tingbao.collector.registry import load_registry
    from tingbao.collector.registry.connect import influx_client
    from tingbao.edge.cli.main import CliError

    from ..ledger import verify

    reg = load_registry(args.config)
    ids = [e.id for e in reg.enterprises]
    if args.enterprise is not None and args.enterprise not in ids:
        raise CliError(f"unknown enterprise {args.enterprise!r}; one of {', '.join(ids)}")
    reader = influx_client(reg, "reader", stack_dir=args.stack)
    status = 0
    for ent in [args.enterprise] if args.enterprise else ids:
        v = verify(reader, ent)
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
