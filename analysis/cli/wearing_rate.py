"""``tingbao wearing-rate --config SITE [--by enterprise|industry|group|all]
[--period month|quarter|year] [--from D --to D] [--did BASELINE FOLLOWUP] [--write]
[--format table|json|csv]``: the correct-wearing rate of hearing protectors per scope and
period, from the stored spot checks (source ``observed``) and, where present, the wear time
measured at the ear (source ``edge``), side by side, with the milestone of the period's year
judged by the one-sided 95 % lower bound; ``--did`` adds the pilot-vs-comparison difference
in differences between two periods (``2024 2025``, ``2024-Q4 2025-Q4``, ``2025-01 2025-06``).
``--write`` stores the results (``schema.WEARING_RATE``, ``schema.PILOT_DID``). Statistics:
:mod:`tingbao.analysis.wearing_rate`."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time

from .common import date_arg, site_arguments

RATE_COLUMNS = ("scope", "key", "period", "source", "n", "x", "rate_pct", "lo95_pct",
                "hi95_pct", "lower95_pct", "method", "clusters", "deff", "icc",
                "milestone_pct", "met", "time_share_pct", "note")
DID_COLUMNS = ("baseline", "followup", "did_pp", "lo_pp", "hi_pp", "p", "method", "weights",
               "draws", "seed", "enterprises_pilot", "enterprises_comparison", "n",
               "pilot_base", "pilot_follow", "comparison_base", "comparison_follow",
               "cr_lo_pp", "cr_hi_pp", "cr_p", "note")


def register(sub) -> None:
    p = sub.add_parser("wearing-rate", help="correct-wearing rate, milestones, pilot DiD")
    site_arguments(p)
    p.add_argument("--by", choices=("enterprise", "industry", "group", "all"),
                   default="enterprise")
    p.add_argument("--period", choices=("month", "quarter", "year"), default="year")
    p.add_argument("--from", dest="date_from", type=date_arg, metavar="D",
                   help="first local date (default: all stored)")
    p.add_argument("--to", dest="date_to", type=date_arg, metavar="D",
                   help="last local date, inclusive (default: today)")
    p.add_argument("--did", nargs=2, metavar=("BASELINE", "FOLLOWUP"),
                   help="difference in differences between two periods (YYYY, YYYY-Qn, "
                        "YYYY-MM)")
    p.add_argument("--method", choices=("gee_bias_reduced", "design_effect"),
                   default="gee_bias_reduced", help="interval of groups of enterprises")
    p.add_argument("--interval", choices=("wilson", "beta"), default="wilson",
                   help="interval of one enterprise (beta = Clopper–Pearson)")
    p.add_argument("--seed", type=int, default=None, help="bootstrap seed")
    p.add_argument("--draws", type=int, default=None, help="bootstrap draws (default 9999)")
    p.add_argument("--write", action="store_true", help="store the results in InfluxDB")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=run)


def run(args) -> int:
    from tingbao.edge.cli.main import CliError

    from .. import pilot_evaluation
    from .. import wearing_rate as wr
    from .common import open_site

    if args.did:
        for key in args.did:
            try:
                wr.period_first_day(key)
            except ValueError as e:
                raise CliError(str(e)) from None
    site = open_site(args, writer=args.write)
    reg = site.reg
    if args.date_from and args.date_to and args.date_to < args.date_from:
        raise CliError(f"--to {args.date_to} is before --from {args.date_from}")
    try:
        ev = pilot_evaluation.evaluate(
            site.reader, reg, first=args.date_from, last=args.date_to, scopes=(args.by,),
            periods=(args.period,), did=tuple(args.did) if args.did else None,
            single_method=args.interval, group_method=args.method, seed=args.seed,
            draws=args.draws)
    except ValueError as e:
        raise CliError(f"--did {' '.join(args.did)}: {e}" if args.did else str(e)) from None
    rows, did = list(ev.rates), ev.did
    if args.write:
        pilot_evaluation.write(site.writer, reg, ev, time.time_ns())
    rate_dicts = [rate_dict(r) for r in rows]
    did_dict = None if did is None else {"baseline": args.did[0], "followup": args.did[1],
                                         **{k: _finite(getattr(did, k))
                                            for k in DID_COLUMNS[2:]}}
    out = sys.stdout
    if args.format == "json":
        json.dump({"rates": rate_dicts, "did": did_dict}, out, ensure_ascii=False, indent=1)
        out.write("\n")
    elif args.format == "csv":
        out.write(to_csv(RATE_COLUMNS, rate_dicts))
        if did_dict:
            out.write("\n" + to_csv(DID_COLUMNS, [did_dict]))
    else:
        out.write(table(rate_dicts, did_dict, args))
    out.flush()
    return 0


def _pct(v):
    return None if v is None else round(100 * v, 2)


def rate_dict(r) -> dict:
    e = r.estimate
    return {"scope": r.scope, "key": r.key, "period": r.period, "source": r.source,
            "n": e.n, "x": e.x, "rate_pct": _pct(e.rate), "lo95_pct": _pct(e.lo95),
            "hi95_pct": _pct(e.hi95), "lower95_pct": _pct(e.lower95), "method": e.method,
            "clusters": e.clusters, "deff": None if e.deff is None else round(e.deff, 3),
            "icc": None if e.icc is None or e.icc != e.icc else round(e.icc, 4),
            "milestone_pct": _pct(r.milestone), "met": r.met,
            "time_share_pct": _pct(r.time_share), "note": e.note}


def to_csv(columns, dicts) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(dicts)
    return buf.getvalue()


def _finite(v):
    """NaN (no interval, no test: the DiD's note says why) as None, so JSON stays JSON."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _pp(v) -> str:
    return "—" if v is None else f"{v:+.1f}"


def _p(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def table(rates, did, args) -> str:
    """The human table, Chinese first."""
    if not rates and did is None:
        return "无佩戴观察数据 no wearing observations in the range\n"
    lines = [f"正确佩戴率 correct-wearing rate, by {args.by}, per {args.period} "
             f"(95 % CI; 单侧下限 one-sided 95 % lower bound judges the milestone)",
             f"{'period':9s} {'key':14s} {'source':8s} {'n':>6s} {'rate %':>7s} "
             f"{'95 % CI':>15s} {'lower %':>8s} {'milestone':>9s} {'达标 met':>8s} "
             f"{'time %':>7s} method"]
    for r in rates:
        met = {True: "是 yes", False: "否 no", None: "—"}[r["met"]]
        ms = "—" if r["milestone_pct"] is None else f"{r['milestone_pct']:.0f}"
        share = "" if r["time_share_pct"] is None else f"{r['time_share_pct']:.1f}"
        method = r["method"] + (f" ({r['note']})" if r["note"] else "")
        lines.append(f"{r['period']:9s} {r['key']:14s} {r['source']:8s} {r['n']:6d} "
                     f"{r['rate_pct']:7.1f} {r['lo95_pct']:6.1f} – {r['hi95_pct']:5.1f} "
                     f"{r['lower95_pct']:8.1f} {ms:>9s} {met:>8s} {share:>7s} {method}")
    if did is not None:
        lines += ["", f"试点与对照的双重差分 pilot vs comparison difference in differences, "
                      f"{did['baseline']} → {did['followup']}:",
                  f"  试点 pilot {did['pilot_base']:.1f} % → {did['pilot_follow']:.1f} %  "
                  f"对照 comparison {did['comparison_base']:.1f} % → "
                  f"{did['comparison_follow']:.1f} %",
                  f"  DiD {_pp(did['did_pp'])} pp, 95 % CI {_pp(did['lo_pp'])} … "
                  f"{_pp(did['hi_pp'])} pp, p = {_p(did['p'])} ({did['method']}"
                  + (f", {did['weights']} weights, {did['draws']} draws, seed {did['seed']}"
                     if did["method"] == "wild_cluster_bootstrap" else "")
                  + f"); enterprises {did['enterprises_pilot']} pilot + "
                  f"{did['enterprises_comparison']} comparison, n = {did['n']}",
                  f"  cluster-robust t: {_pp(did['cr_lo_pp'])} … {_pp(did['cr_hi_pp'])} pp, "
                  f"p = {_p(did['cr_p'])}"]
        if did["note"]:
            lines.append(f"  注 note: {did['note']}")
    return "\n".join(lines) + "\n"
