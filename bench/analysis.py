"""Exposure computation speed: post-days per second from the minute rollups of a real
InfluxDB.

Not a test: it prints figures; its last line is one JSON object with ``posts_days_per_s``
(LEX,8h of every post-day by :func:`tingbao.analysis.exposure.lex_many`, the path for
surveys over many post-days (dashboards, a province's figures): SUM(ea) and SUM(coverage)
from the store, one statement set per shift window and date, two connections at once),
``full_records_per_s`` (the whole record per post-day: LEX, U from the sub-period spread,
peaks, impulse counts, grade, jobs, through :func:`~tingbao.analysis.exposure.compute_day`,
one enterprise-day at a time as ``tingbao analyze`` closes them), and the same LEX done the
naive way for comparison: ``rows_to_python_per_s`` pulls each post-day's minute rows into
Python and sums them there (what a hand-written report script does), with
``ratio_vs_rows`` = posts_days_per_s / rows_to_python_per_s.
``influx_cpu_cores`` and ``python_cpu_cores`` (CPU seconds per wall second while computing)
say what bounds the figure.

Set-up: a local stack in a temporary directory; ``--posts`` one-channel meters (default
1 000) in enterprises of ``--per-enterprise`` (default 100), shift 08:00–16:00 Asia/Shanghai;
``--days`` days (default 30) of minute rollups (``levels_1m``: 480 points per post-day, random
levels, impulse counts) ending the day before yesterday. Loading is timed apart.

    .venv/bin/python bench/analysis.py [--posts 1000] [--days 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
import zoneinfo
from pathlib import Path

import numpy as np

P0_SQ = 4e-10
TZ = "Asia/Shanghai"


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a live process (Linux /proc); 0 if it is gone."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def registry(n_posts: int, per_enterprise: int):
    from tingbao.collector.registry.site import registry_from_mapping

    ents, sites, meters = [], [], []
    for e in range((n_posts + per_enterprise - 1) // per_enterprise):
        eid = f"bench-e{e:03d}"
        ents.append({"id": eid, "name_zh": f"企业{e}", "industry": "machinery",
                     "group": "pilot", "shift": {"start": "08:00", "hours": 8.0}})
        sites.append({"id": "w", "enterprise": eid, "name_zh": "车间"})
        for m in range(min(per_enterprise, n_posts - e * per_enterprise)):
            meters.append({"id": f"{eid}-m{m:03d}", "enterprise": eid, "site": "w",
                           "calibrated": "2026-06-01"})
    return registry_from_mapping({"deployment": {"timezone": TZ}, "enterprises": ents,
                                  "sites": sites, "meters": meters})


def load(writer, reg, days: list[dt.date], rng: np.random.Generator) -> int:
    """Write 480 ``levels_1m`` points per post-day (the shift's minutes), two writes in
    flight; returns the number of points."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        return sum(pool.map(lambda d: _load_day(writer, reg, d, np.random.default_rng(
            [int(rng.integers(1 << 30)), d.toordinal()])), days))


def _load_day(writer, reg, d: dt.date, rng: np.random.Generator) -> int:
    from tingbao.analysis.shifts import shift_window
    from tingbao.collector import schema

    total = 0
    for e in reg.enterprises:
        w = shift_window(e, d, TZ)
        minutes = np.arange(w.period.start_ns, w.period.end_ns, schema.MINUTE_NS)
        lines = []
        for m in reg.meters_of(e.id):
            level = rng.normal(85.0, 5.0) + rng.normal(0.0, 3.0, minutes.size)
            ea = P0_SQ * 10 ** (level / 10) * 60.0
            peak = level + 25 + rng.normal(0.0, 3.0, minutes.size)
            imp = rng.poisson(0.2, minutes.size)
            head = f"{schema.LEVELS_1M},channel=0,enterprise={e.id},meter={m.id},site=w "
            lines += [f"{head}ea={a:.9f},coverage=60,duration_s=60,n=60i,laeq={lv:.3f},"
                      f"lafmax={lv + 6:.3f},lcpeak={pk:.3f},imp_120={k}i {t}"
                      for a, lv, pk, k, t in zip(ea, level, peak, imp, minutes.tolist(),
                                                 strict=True)]
        writer.write(lines, rp=schema.RP_FOREVER)
        total += len(lines)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--posts", type=int, default=1000)
    ap.add_argument("--per-enterprise", type=int, default=100)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--naive-days", type=int, default=2,
                    help="days computed the naive way (rows into Python) for the ratio")
    args = ap.parse_args()

    from tingbao.analysis.exposure import compute_day, lex_many
    from tingbao.analysis.shifts import shift_window
    from tingbao.collector import schema
    from tingbao.collector.stack import Stack

    reg = registry(args.posts, args.per_enterprise)
    last = (dt.datetime.now(zoneinfo.ZoneInfo(TZ)) - dt.timedelta(days=2)).date()
    days = [last - dt.timedelta(days=i) for i in range(args.days)][::-1]
    with tempfile.TemporaryDirectory(prefix="tingbao-bench-analysis-") as tmp:
        stack = Stack(Path(tmp) / "stack")
        stack.start()
        try:
            writer, reader = stack.influx("writer"), stack.influx("reader")
            t0 = time.perf_counter()
            points = load(writer, reg, days, np.random.default_rng(1))
            load_s = time.perf_counter() - t0
            print(f"loaded {points:,} minute points ({args.posts} posts × {args.days} days) in "
                  f"{load_s:.1f} s", file=sys.stderr, flush=True)
            pid = stack.status()["influxdb"]["pid"]

            def timed(fn):
                c0, p0, t = cpu_seconds(pid), time.process_time(), time.perf_counter()
                n = fn()
                wall = time.perf_counter() - t
                return n, wall, (cpu_seconds(pid) - c0) / wall, (time.process_time() - p0) / wall

            def full():
                n = 0
                for d in days:
                    for e in reg.enterprises:
                        n += len(compute_day(reader, reg, e.id, d).posts)
                return n

            def lex():
                return len(lex_many(reader, reg, days, threads=2))

            def naive():
                n = 0
                for d in days[:args.naive_days]:
                    for e in reg.enterprises:
                        w = shift_window(e, d, TZ)
                        for m in reg.meters_of(e.id):
                            src = schema.source(schema.LEVELS_1M, schema.RP_FOREVER)
                            rows = reader.query_rows(
                                f"SELECT ea, coverage FROM {src} WHERE "
                                f"{schema.where_tags([('meter', m.id)])} AND "
                                f"{w.period.where()}")
                            sum(r["ea"] for r in rows)
                            n += 1
                return n

            n_lex, wall_lex, influx_cores, py_cores = timed(lex)
            n_full, wall_full, influx_full, _ = timed(full)
            n_naive, wall_naive, _, _ = timed(naive)
        finally:
            stack.stop()
    result = {
        "posts": args.posts, "days": args.days, "post_days": n_lex,
        "minute_points": points, "load_s": round(load_s, 1),
        "posts_days_per_s": round(n_lex / wall_lex, 1),
        "full_records_per_s": round(n_full / wall_full, 1),
        "rows_to_python_per_s": round(n_naive / wall_naive, 1),
        "ratio_vs_rows": round((n_lex / wall_lex) / (n_naive / wall_naive), 2),
        "influx_cpu_cores": round(influx_cores, 2), "python_cpu_cores": round(py_cores, 2),
        "influx_cpu_cores_full": round(influx_full, 2),
        "goal_posts_days_per_s": 3000,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
