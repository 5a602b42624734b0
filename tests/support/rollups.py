"""Helpers for the minute rollups on a real InfluxDB: valid ``levels`` payloads, the rollups
they should give (computed here, independently of the collector), and the ``rollups_due``
markers still outstanding."""

from __future__ import annotations

import math
import random

from tingbao.collector.rollups import laeq, minute_of
from tingbao.collector.schema import (
    LEVELS,
    LEVELS_1M,
    MARKER_AT,
    MARKER_WRITER,
    ROLLUPS_DUE,
    RP_FOREVER,
    SERIES_TAGS,
    quote_ident,
    source,
    where_tags,
)
from tingbao.edge import contract


def levels_payload(meter: str, seq: int, start_ns: int, rng: random.Random | None = None,
                   channel: int = 0, duration: float = 1.0) -> dict:
    """A valid single-channel levels payload with random but plausible values (about one in
    20 without coverage)."""
    rng = rng or random.Random(seq)
    base = rng.uniform(60.0, 100.0)
    covered = rng.random() > 0.05
    p = {"schema": "tingbao.levels/1", "meter": meter, "seq": seq, "channel": channel,
         "start_ns": start_ns, "duration_s": duration,
         "ea": (20e-6) ** 2 * 10 ** (base / 10) * duration if covered else None,
         "coverage": round(rng.uniform(0.5, 1.0) * duration, 6) if covered else 0.0,
         "overload": rng.random() < 0.1, "calibrated": rng.random() < 0.9}
    for k in contract.LEVEL_FIELDS:
        p[k] = round(base + rng.uniform(-10, 30), 3) if covered else None
    return p


def expected_rollups(payloads) -> dict[tuple[str, str, int], dict]:
    """(meter, channel, minute ns) → the sums a ``levels_1m`` point must hold."""
    out: dict[tuple[str, str, int], dict] = {}
    for p in payloads:
        key = (p["meter"], str(p["channel"]), minute_of(p["start_ns"]))
        agg = out.setdefault(key, {"ea": None, "coverage": 0.0, "n": 0, "lafmax": None,
                                   "lafmin": None, "lcpeak": None, "lzpeak": None,
                                   "lasmax": None})
        agg["n"] += 1
        agg["coverage"] += p["coverage"]
        if p["ea"] is not None:
            agg["ea"] = (agg["ea"] or 0.0) + p["ea"]
        for k, fn in (("lafmax", max), ("lcpeak", max), ("lzpeak", max), ("lasmax", max),
                      ("lafmin", min)):
            if p.get(k) is not None:
                agg[k] = p[k] if agg[k] is None else fn(agg[k], p[k])
    for agg in out.values():
        agg["laeq"] = laeq(agg["ea"], agg["coverage"])
    return out


def rollup_mismatches(stack, payloads, enterprise: str) -> list[str]:
    """What differs between the stored ``levels_1m`` points of ``enterprise`` and the sums of
    ``payloads`` (empty when every minute matches: ea, coverage, n, maxima, minimum, laeq)."""
    expected = expected_rollups(payloads)
    rows = stack.influx().query_rows(
        f"SELECT * FROM {source(LEVELS_1M, RP_FOREVER)} WHERE "
        f"{where_tags([('enterprise', enterprise)])}", epoch="ns")
    got = {(r["meter"], r["channel"], int(r["time"])): r for r in rows}
    out = []
    if set(got) != set(expected):
        out.append(f"minutes: {len(set(expected) - set(got))} missing, "
                   f"{len(set(got) - set(expected))} unexpected")
    for key in sorted(set(got) & set(expected)):
        e, g = expected[key], got[key]
        for k in ("n", "lafmax", "lafmin", "lcpeak", "lzpeak", "lasmax"):
            if g.get(k) != e[k]:
                out.append(f"{key} {k}: {g.get(k)} != {e[k]}")
        if not math.isclose(g["coverage"], e["coverage"], rel_tol=1e-12):
            out.append(f"{key} coverage: {g['coverage']} != {e['coverage']}")
        if (g.get("ea") is None) != (e["ea"] is None) or (
                e["ea"] is not None and not (math.isclose(g["ea"], e["ea"], rel_tol=1e-12)
                                             and abs(g["laeq"] - e["laeq"]) < 1e-9)):
            out.append(f"{key} ea/laeq: {g.get('ea')}/{g.get('laeq')} != "
                       f"{e['ea']}/{e['laeq']}")
    return out


def markers(stack, enterprise: str | None = None) -> list[dict]:
    """The outstanding ``rollups_due`` markers (of ``enterprise``, or all): rows with the
    series tags, ``writer``, ``at`` and ``time`` (ns, the minute's start)."""
    cols = ", ".join(quote_ident(c) for c in (MARKER_AT, MARKER_WRITER, *SERIES_TAGS))
    where = f" WHERE {where_tags([('enterprise', enterprise)])}" if enterprise else ""
    return stack.influx().query_rows(f"SELECT {cols} FROM {source(ROLLUPS_DUE)}{where}",
                                     epoch="ns")


def marked_minutes(stack, enterprise: str) -> set[tuple[str, str, int]]:
    """(meter, channel, minute ns) of the outstanding markers of ``enterprise``."""
    return {(r["meter"], r["channel"], int(r["time"])) for r in markers(stack, enterprise)}


def rollups_vs_points(stack, meter: str) -> list[str]:
    """What differs between a meter's stored ``levels_1m`` points and the sums of its stored
    1 s ``levels`` points per minute (ea, coverage, n; empty when every minute matches)."""
    fine = stack.influx().query_rows(
        f"SELECT SUM(ea) AS ea, SUM(coverage) AS coverage, COUNT(ea) AS n FROM "
        f"{source(LEVELS)} WHERE {where_tags([('meter', meter)])} GROUP BY time(1m), channel "
        "fill(none)", epoch="ns")
    coarse = stack.influx().query_rows(
        f"SELECT ea, coverage, n, channel FROM {source(LEVELS_1M, RP_FOREVER)} WHERE "
        f"{where_tags([('meter', meter)])}", epoch="ns")
    want = {(r["channel"], int(r["time"])): r for r in fine}
    got = {(r["channel"], int(r["time"])): r for r in coarse}
    out = []
    if set(got) != set(want):
        out.append(f"minutes: {sorted(set(want) - set(got))} missing, "
                   f"{sorted(set(got) - set(want))} unexpected")
    for key in sorted(set(got) & set(want)):
        g, w = got[key], want[key]
        if g["n"] != w["n"] or not math.isclose(g["coverage"], w["coverage"], rel_tol=1e-12) \
                or not math.isclose(g["ea"], w["ea"], rel_tol=1e-9):
            out.append(f"{key}: rollup {g['ea']}/{g['coverage']}/{g['n']} != 1 s sums "
                       f"{w['ea']}/{w['coverage']}/{w['n']}")
    return out
