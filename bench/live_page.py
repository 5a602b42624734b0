"""The live page with 200 meters on one enterprise's floor: how long the server takes to
compute the floor snapshot it pushes every second, how large that push is, and how long the
floor page takes to render, against a real InfluxDB.

Not a test: it prints figures; its last line is one JSON object with ``snapshot_ms`` (median
time to compute one snapshot of the enterprise: the six store queries and the arithmetic,
shared by every connected browser), ``snapshot_kb`` (the SSE payload), ``page_ms`` (median
time to render ``/floor/{enterprise}``), ``influx_ms_share`` (the part of a snapshot spent
waiting for InfluxDB) and ``budget_share`` = snapshot_ms / 1000 (the fraction of the 1 s push
period one enterprise's snapshot uses: below 1 the page keeps up).

Set-up: a local stack in a temporary directory; ``--meters`` one-channel meters (default
200) of one enterprise whose shift started an hour ago; that hour as minute rollups, the
last two minutes as 1 s points.

    .venv/bin/python bench/live_page.py [--meters 200] [--repeat 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import zoneinfo
from pathlib import Path

import numpy as np

TZ = "Asia/Shanghai"
P0_SQ = 4e-10


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meters", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    from starlette.testclient import TestClient

    from tingbao.analysis.alert_store import AlertStore
    from tingbao.collector import schema
    from tingbao.collector.registry.site import registry_from_mapping
    from tingbao.collector.rollups import Rollups
    from tingbao.collector.stack import Stack
    from tingbao.dashboards.live.app import create_app
    from tingbao.dashboards.live.data import FloorData

    now = dt.datetime.now(zoneinfo.ZoneInfo(TZ))
    start = (now - dt.timedelta(hours=1)).replace(second=0, microsecond=0)
    ent = "bench-floor"
    reg = registry_from_mapping({
        "deployment": {"timezone": TZ},
        "enterprises": [{"id": ent, "name_zh": "基准厂", "industry": "machinery",
                         "group": "pilot", "shift": {"start": f"{start:%H:%M}", "hours": 8.0,
                                                     "days_per_week": 7}}],
        "sites": [{"id": f"w{k}", "enterprise": ent, "name_zh": f"车间{k}"} for k in range(4)],
        "meters": [{"id": f"m{i:03d}", "enterprise": ent, "site": f"w{i % 4}",
                    "calibrated": "2026-10-01"} for i in range(args.meters)]})
    rng = np.random.default_rng(3)
    s0 = int(start.timestamp()) * 10**9
    now_ns = time.time_ns() // 10**9 * 10**9
    with tempfile.TemporaryDirectory(prefix="tingbao-bench-live-") as tmp:
        stack = Stack(Path(tmp) / "stack")
        stack.start()
        try:
            reader, writer = stack.influx("reader"), stack.influx("writer")
            lines = []
            for m in reg.meters:
                base = rng.normal(85, 6)
                for t in range(s0, now_ns, 10**9):
                    if t < now_ns - 120 * 10**9 and (t - s0) % (60 * 10**9):
                        continue  # older than two minutes: one point a minute is enough here
                    level = base + rng.normal(0, 2)
                    lines.append(
                        f"{schema.LEVELS},channel=0,enterprise={ent},meter={m.id},site={m.site}"
                        f" ea={P0_SQ * 10 ** (level / 10):.12f},coverage=1,duration_s=1,"
                        f"laeq={level:.2f},lafmax={level + 4:.2f},lcpeak={level + 18:.2f},"
                        f"seq={(t - s0) // 10**9}i {t}")
            for i in range(0, len(lines), 20000):
                writer.write(lines[i:i + 20000])
            Rollups(reader, writer).recompute_range(s0, now_ns - 120 * 10**9)
            data = FloorData(reg, reader)
            app = create_app(reg, AlertStore(reader, writer), data)
            snap_ms, influx_share = [], []
            payload = b""
            for _ in range(args.repeat):
                q0 = reader.__class__.query
                spent = [0.0]

                def timed_query(self, *a, _q0=q0, _spent=spent, **k):
                    t = time.perf_counter()
                    try:
                        return _q0(self, *a, **k)
                    finally:
                        _spent[0] += time.perf_counter() - t
                reader.__class__.query = timed_query
                try:
                    t = time.perf_counter()
                    snap = data.snapshot(ent)
                    dt_s = time.perf_counter() - t
                finally:
                    reader.__class__.query = q0
                snap_ms.append(dt_s * 1000)
                influx_share.append(spent[0] / dt_s)
                payload = json.dumps(snap).encode()
            page_ms = []
            with TestClient(app) as client:
                for _ in range(max(3, args.repeat // 4)):
                    t = time.perf_counter()
                    r = client.get(f"/floor/{ent}")
                    page_ms.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, r.text[:300]
                tiles = r.text.count('class="tile ')
        finally:
            stack.stop()
    result = {"meters": args.meters, "tiles": tiles,
              "snapshot_ms": round(statistics.median(snap_ms), 1),
              "snapshot_kb": round(len(payload) / 1024, 1),
              "page_ms": round(statistics.median(page_ms), 1),
              "page_kb": round(len(r.content) / 1024, 1),
              "influx_ms_share": round(statistics.median(influx_share), 2),
              "budget_share": round(statistics.median(snap_ms) / 1000, 3)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
