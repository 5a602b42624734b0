"""``tingbao analyze --config SITE [--stack DIR] [--from D --to D [--redo]]``: the analysis
service (:mod:`tingbao.analysis.analyzer`). Without ``--from`` it runs until SIGINT/SIGTERM:
every ``[analysis] poll_s`` it evaluates the alert rules of running shifts and closes the
shifts that ended ``close_delay_s`` ago. With ``--from/--to`` it closes the workdays of that
period (local shift dates, inclusive) for every enterprise and exits; ``--redo`` rewrites days
already closed with different records and re-links the chain after them."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading

from .common import STACK_HINT, date_arg, open_publisher, open_site, site_arguments


def register(sub) -> None:
    p = sub.add_parser("analyze", help="close shifts, compute exposure and raise alerts "
                                       "(service, or --from/--to)")
    site_arguments(p)
    p.add_argument("--from", dest="first", type=date_arg, metavar="YYYY-MM-DD")
    p.add_argument("--to", dest="last", type=date_arg, metavar="YYYY-MM-DD")
    p.add_argument("--enterprise", metavar="ID", help="back-fill one enterprise only")
    p.add_argument("--redo", action="store_true",
                   help="rewrite closed days whose records changed (late data)")
    p.add_argument("--no-mqtt", action="store_true",
                   help="store alerts without publishing them on MQTT")
    p.set_defaults(func=run)


def run(args) -> int:
    from tingbao.edge.cli.main import CliError

    from ..alert_store import AlertStore
    from ..analyzer import Analyzer
    from ..ledger import AlreadyClosed

    if (args.first is None) != (args.last is None):
        raise CliError("give both --from and --to (or neither, to run as a service)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    site = open_site(args, writer=True)
    reg, reader, writer = site.reg, site.reader, site.writer
    publish, close = (None, lambda: None) if args.no_mqtt else open_publisher(
        reg, args, f"{STACK_HINT}, or --no-mqtt")
    try:
        analyzer = Analyzer(reg, reader, writer, AlertStore(reader, writer, publish))
        if args.first is not None:
            return _backfill(analyzer, reg, site.enterprises, args, AlreadyClosed, CliError)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print(f"tingbao analyze: {len(reg.enterprises)} enterprises, profile "
              f"{reg.profile.id}, every {reg.analysis.poll_s:g} s", file=sys.stderr, flush=True)
        while not stop.is_set():
            try:
                did = analyzer.tick()
            except Exception:  # a failed pass is logged; the next one retries
                logging.getLogger("tingbao.analysis").exception("analysis pass failed")
            else:
                for c in did["closed"]:
                    print(f"closed {c.enterprise} {c.date}: {c.posts} posts, {c.jobs} jobs, "
                          f"chain {c.closed.hash[:12]}…, {len(c.alerts)} alerts",
                          file=sys.stderr, flush=True)
            stop.wait(reg.analysis.poll_s)
        return 0
    finally:
        close()


def _backfill(analyzer, reg, enterprises, args, AlreadyClosed, CliError) -> int:
    from tqdm import tqdm

    if args.last < args.first:
        raise CliError(f"--to {args.last} is before --from {args.first}")
    days = (args.last - args.first).days + 1
    every = [(e, args.first + dt.timedelta(days=i))
             for e in enterprises for i in range(days)]
    work = [(e, d) for e, d in every if reg.enterprise(e).shift.works_on(d)]
    if len(work) < len(every):
        print(f"{len(every) - len(work)} enterprise-days are not workdays "
              "([enterprises.shift] workdays): not closed", file=sys.stderr)
    status = 0
    for ent, d in tqdm(work, desc="closing shifts", unit="day", disable=not sys.stderr.isatty(),
                       file=sys.stderr):
        try:
            c = analyzer.close(ent, d, redo=args.redo)
        except AlreadyClosed as e:
            print(f"{ent} {d}: {e}", file=sys.stderr)
            status = 1
            continue
        state = "closed" if c.closed.written else "already closed"
        extra = f"; re-linked {len(c.closed.relinked)} later days" if c.closed.relinked else ""
        print(f"{ent} {d}: {state}, {c.posts} posts, {c.jobs} jobs, chain "
              f"{c.closed.hash[:12]}…, {len(c.alerts)} alerts{extra}")
    return status
