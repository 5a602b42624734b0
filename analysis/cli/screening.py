"""``tingbao screening --config SITE [--stack DIR] [--enterprise E] [--write] [--no-mqtt]
[--format table|json|csv]``: hearing screening of the stored audiograms
(:mod:`tingbao.analysis.screening`): per audiogram the GBZ 49-2014 high-frequency average,
weighted values, suspected flag and grade, the GBZ 188-2014 noise-susceptible flag, exam
interval, due date and overdue state, and the OSHA STS with and without age correction; per job
the ISO 1999:2013 prediction from its stored LEX,8h.

Without ``--write`` it only prints. With ``--write`` it stores the ``screening`` points and
raises the alerts (suspected deafness, noise-susceptible, STS, overdue exam), published on
MQTT unless ``--no-mqtt``. ``json``: one object ``{"screenings": [...], "predictions":
[...]}``; ``csv``: one row per audiogram. Exit status 0; 2 with one line for a bad argument
or unreachable servers.
"""

from __future__ import annotations

import csv
import json
import sys

from .common import STACK_HINT, open_publisher, open_site, site_arguments

COLUMNS = (("企业", "enterprise"), ("劳动者", "worker"), ("日期", "date"), ("工种", "job"),
           ("高频均值", "hfta_db"), ("较好耳", "better_ear_db"), ("分级", "grade"),
           ("疑似", "suspected"), ("易感", "susceptible"), ("阈移", "sts"),
           ("LEX", "lex_db"), ("下次", "next_due"), ("逾期", "overdue"))


def register(sub) -> None:
    p = sub.add_parser("screening", help="hearing screening of the stored audiograms",
                       description="听力筛查 / Hearing screening: GBZ 49, GBZ 188, OSHA STS, "
                       "ISO 1999.")
    site_arguments(p)
    p.add_argument("--enterprise", metavar="ID", help="one enterprise (default: all)")
    p.add_argument("--write", action="store_true",
                   help="store the screening results and raise the alerts")
    p.add_argument("--no-mqtt", action="store_true",
                   help="with --write: store alerts without publishing them on MQTT")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=run)


def _cell(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "是 yes" if v else "否 no"
    if isinstance(v, float):
        return f"{v:.1f}"
    if isinstance(v, list):
        return "/".join(_cell(x) for x in v)
    return str(v)


def run(args) -> int:
    from ..alert_store import AlertStore
    from ..screening import run_screening

    site = open_site(args, writer=args.write)
    publish, close = (None, lambda: None)
    if args.write and not args.no_mqtt:
        publish, close = open_publisher(site.reg, args, f"{STACK_HINT}, or --no-mqtt")
    try:
        store = AlertStore(site.reader, site.writer, publish) if args.write else None
        run_ = run_screening(site.reg, site.reader, site.writer, store,
                             enterprise=args.enterprise, write=args.write)
    finally:
        close()
    rows = [r.as_dict() for r in run_.results]
    preds = list(run_.predictions.values())
    out = sys.stdout
    if args.format == "json":
        json.dump({"screenings": rows, "predictions": preds}, out, ensure_ascii=False)
        out.write("\n")
    elif args.format == "csv":
        keys = list(rows[0]) if rows else [k for _, k in COLUMNS]
        w = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    else:
        print("  ".join(f"{zh} {en}" for zh, en in COLUMNS))
        for r in rows:
            print("  ".join(_cell(r[k]) for _, k in COLUMNS))
        for p in preds:
            n10 = p["n10_db"][1] if len(p["n10_db"]) > 1 else p["n10_db"][0]
            print(f"ISO 1999 {p['enterprise']}/{p['job']}: LEX,8h {p['lex_db']:.1f} dB(A) over "
                  f"{p['days']} days; N10 at 20 years (0.5–6 kHz) {n10} dB")
        if args.write:
            print(f"{run_.written} screening results stored, {len(run_.raised)} new alerts")
    out.flush()
    return 0
