"""``tingbao fit-tests``: individual hearing-protector fit tests
(:mod:`tingbao.analysis.fit_tests`, :mod:`tingbao.analysis.fit_test_import`).

* ``tingbao fit-tests import FILE --config SITE [--enterprise E]``: a CSV (UTF-8, UTF-8 BOM
  or GBK) or XLSX export of an F-MIRE/REAT system; prints what was stored, every refused row
  (row and column), the duplicated rows and the records stored before. Exit 0 when every row
  was stored or already there, 1 when rows were refused.
* ``tingbao fit-tests listen --config SITE``: subscribes to ``tingbao/v1/+/fittests`` and
  stores each record (refused ones as dead letters, stage ``fit_test``) until interrupted.
* ``tingbao fit-tests list --config SITE --from D [--to D] [--enterprise E] [--format
  table|json|csv]``: the stored tests with their pass/fail, cautions and the individual
  effective exposure (LEX − PAR) with its GB/T 23466 verdict.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
import threading

from .common import date_arg, open_site, site_arguments


def register(sub) -> None:
    p = sub.add_parser("fit-tests", help="hearing-protector fit tests: import, listen, list")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="{import,listen,list}")
    imp = verbs.add_parser("import", help="import a CSV/XLSX of fit tests")
    imp.add_argument("file", metavar="FILE")
    site_arguments(imp)
    imp.add_argument("--enterprise", metavar="ID",
                     help="the enterprise of a file without an enterprise column")
    imp.set_defaults(func=run_import)
    lis = verbs.add_parser("listen", help="store fit tests published on MQTT")
    site_arguments(lis)
    lis.set_defaults(func=run_listen)
    ls = verbs.add_parser("list", help="list stored fit tests")
    site_arguments(ls)
    ls.add_argument("--from", dest="start", type=date_arg, required=True, metavar="YYYY-MM-DD")
    ls.add_argument("--to", dest="end", type=date_arg, metavar="YYYY-MM-DD")
    ls.add_argument("--enterprise", metavar="ID", help="one enterprise (default: all)")
    ls.add_argument("--format", choices=("table", "json", "csv"), default="table")
    ls.set_defaults(func=run_list)


def run_import(args) -> int:
    from tingbao.edge.cli.main import CliError

    from ..fit_test_import import import_file
    from ..spreadsheets import TableError

    site = open_site(args, writer=True)
    try:
        got = import_file(args.file, site.reg, site.reader, site.writer,
                          enterprise=args.enterprise, progress=True)
    except (TableError, ValueError) as e:
        raise CliError(str(e)) from None
    print(f"{got.path} ({got.encoding}): 已导入 stored {len(got.stored)}, 拒绝 refused "
          f"{len(got.rejected_rows)} row(s), 重复 duplicates {len(got.duplicates)}, 已存在 "
          f"already stored {len(got.already)}")
    for note in got.notes:
        print(f"  注 note: {note}")
    for e in got.errors:
        print(f"  拒绝 refused: {e}")
    for d in got.duplicates:
        print(f"  重复 duplicate: {d}")
    for n in got.already:
        print(f"  已存在 already stored: row {n}")
    for n, r in got.stored:
        for c in r.cautions:
            print(f"  注意 caution row {n} ({r.test.worker}): {c}")
    return 1 if got.errors else 0


def run_listen(args) -> int:
    from tingbao.collector.registry.connect import mqtt_endpoint
    from tingbao.collector.stack.errors import StackError
    from tingbao.edge.cli.main import CliError

    from ..fit_test_import import TOPIC_FILTER, FitTestListener

    site = open_site(args, writer=True)
    try:
        endpoint = mqtt_endpoint(site.reg, stack_dir=args.stack)
    except StackError as e:
        raise CliError(str(e)) from None

    def report(h) -> None:
        who = f"{h.result.test.enterprise}/{h.result.test.worker}" if h.result else ""
        print(f"{h.outcome} {who} {h.reason}".rstrip(), flush=True)

    listener = FitTestListener(site.reg, endpoint, site.reader, site.writer,
                               on_handled=report)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    listener.start()
    print(f"listening on {TOPIC_FILTER} at {endpoint.host}:{endpoint.port}", flush=True)
    try:
        stop.wait()
    finally:
        listener.stop()
    return 0


def _rows(site, args) -> list[dict]:
    from ..fit_test_import import read_fit_tests
    from ..fit_tests import METHODS, individual_exposure

    prof = site.reg.profile
    rows = []
    for ent in site.enterprises:
        for r in read_fit_tests(site.reader, ent, args.start, args.end or args.start,
                                site.reg.deployment.timezone):
            rec = json.loads(r.get("record") or "{}")
            exposure = r.get("exposure_db")
            eff, v = (individual_exposure(exposure, r["par_binaural"], prof)
                      if exposure is not None else (None, None))
            rows.append({
                "enterprise": ent, "date": rec.get("date"), "worker": r.get("worker"),
                "protector": r.get("protector"),
                "method": METHODS.get(r.get("method"), r.get("method")),
                "par_left": r.get("par_left"), "par_right": r.get("par_right"),
                "par_binaural": r.get("par_binaural"), "par_u": r.get("par_u"),
                "job": r.get("job"), "exposure_db": exposure, "limit_db": r.get("limit_db"),
                "passed": r.get("passed"), "cautions": ",".join(json.loads(
                    r.get("cautions") or "[]")), "effective_db":
                    None if eff is None else round(eff, 1),
                "verdict": v.code if v else None, "source": r.get("source")})
    return rows


def run_list(args) -> int:
    site = open_site(args)
    rows = _rows(site, args)
    out = sys.stdout
    if args.format == "json":
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
        return 0
    if args.format == "csv":
        keys = list(rows[0]) if rows else ["enterprise", "date", "worker"]
        w = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in keys})
        return 0
    out.write("日期 date | 劳动者 worker | 护听器 protector | 方法 method | PAR L/R/B ± u | "
              "接触 LEX | 通过 pass | 佩戴后 LEX−PAR | 评价 verdict | 注意 cautions\n")
    for r in rows:
        passed = {True: "通过 pass", False: "未通过 FAIL", None: "—"}[r["passed"]]
        out.write(f"{r['date']} | {r['enterprise']}/{r['worker']} | {r['protector']} | "
                  f"{r['method']} | {r['par_left']}/{r['par_right']}/{r['par_binaural']} ± "
                  f"{r['par_u']} | {r['exposure_db']} | {passed} | {r['effective_db']} | "
                  f"{r['verdict'] or '—'} | {r['cautions'] or '—'}\n")
    if not rows:
        out.write("无记录 no fit tests stored in this period\n")
    return 0
