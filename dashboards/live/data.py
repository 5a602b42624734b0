"""What the live page shows, read from the store: the floor snapshot of an enterprise (a few
queries for all its meters), a meter's minute series, the alerts and the exposure ledger.

Units: levels in dB re 20 µPa (A-weighted LAeq and LAFmax, C-weighted LCpeak), energies in
Pa²·s, times UTC ns. The dose and the projection are those of the analysis service's
in-shift rules (:mod:`tingbao.analysis.running_shift`); grades GBZ/T 229.4-2012 clause 5
(:func:`tingbao.analysis.gbzt229_4.grade`) of the projected LEX,8h.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import threading
import time
from collections.abc import Callable

from tingbao.analysis import ledger
from tingbao.analysis.device_health import calibration_overdue, gone_by_last_will
from tingbao.analysis.gbzt189_8 import laeq as laeq_of
from tingbao.analysis.gbzt229_4 import grade
from tingbao.analysis.running_shift import dose_pct, projected_lex_8h
from tingbao.analysis.shifts import shift_at, shifts_between
from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.lineprotocol import band_field
from tingbao.collector.registry.site import Registry

NS = 1_000_000_000
q = schema.quote_ident


def _num(x) -> float | None:
    """A finite float rounded for display (0.01 dB), else None (JSON null)."""
    if x is None:
        return None
    x = float(x)
    return round(x, 2) if math.isfinite(x) else None


class FloorData:
    """Reads for one registry from one InfluxDB ``reader``; ``clock`` gives UTC ns."""

    def __init__(self, reg: Registry, reader: InfluxClient,
                 clock: Callable[[], int] = time.time_ns):
        self.reg = reg
        self.reader = reader
        self.clock = clock

    # ------------------------------------------------------------------------ floor
    def snapshot(self, enterprise: str, now_ns: int | None = None) -> dict:
        """The floor snapshot of ``enterprise`` (module docstring; keys as the page's JSON
        contract): newest levels, dose so far and projected LEX,8h of the running shift
        (None between shifts), the grade of the projection, offline / uncalibrated /
        overload flags."""
        reg, a, prof = self.reg, self.reg.analysis, self.reg.profile
        now = self.clock() if now_ns is None else now_ns
        ent = schema.where_tags([("enterprise", enterprise)])
        offline_s = max(1, int(math.ceil(a.offline_after_s)))
        latest = {(r["meter"], r["channel"]): r for r in self.reader.query_rows(
            f"SELECT LAST({q('laeq')}) AS laeq, LAST({q('lafmax')}) AS lafmax, "
            f"LAST({q('lcpeak')}) AS lcpeak FROM {schema.source(schema.LEVELS)} WHERE {ent} "
            f"AND time > {now - offline_s * NS} AND time <= {now} GROUP BY "
            + ", ".join(q(t) for t in schema.SERIES_TAGS))}
        last_seen = {r["meter"]: int(r["time"]) for r in self.reader.query_rows(
            f"SELECT LAST({q(schema.EA)}) FROM {schema.source(schema.LEVELS)} WHERE {ent} AND "
            f"time > {now - offline_s * NS} AND time <= {now} GROUP BY {q('meter')}")}
        will = {r["meter"]: (r.get("online"), int(r["time"])) for r in self.reader.query_rows(
            f"SELECT LAST({q('online')}) AS online FROM {schema.source(schema.STATUS)} WHERE "
            f"{ent} AND time > {now - 86400 * NS} AND time <= {now} GROUP BY {q('meter')}")}
        minute = schema.Period(now - 60 * NS, now + 1)
        overload = {(r["meter"], r["channel"]) for r in self.reader.query_rows(
            f"SELECT COUNT({q('overload')}) AS n FROM {schema.source(schema.LEVELS)} WHERE "
            f"{ent} AND {q('overload')} = true AND {minute.where()} GROUP BY "
            + ", ".join(q(t) for t in schema.SERIES_TAGS)) if r.get("n")}
        w = shift_at(reg, enterprise, now)
        sums, recent = {}, {}
        if w is not None and now > w.period.start_ns:
            so_far = schema.Period(w.period.start_ns, now + 1)
            sums = schema.add_sums(self.reader.query_rows(";".join(schema.exposure_sums(
                so_far, enterprise=enterprise, fine_from_ns=now - int(a.rollup_lag_s * NS),
                count=False))))
            rec = schema.Period(max(w.period.start_ns, now - int(a.recent_s * NS)), now + 1)
            recent = schema.add_sums(self.reader.query_rows(";".join(schema.exposure_sums(
                rec, enterprise=enterprise, rollups=False, count=False))))
        today = dt.datetime.fromtimestamp(now / NS, dt.UTC).date()
        meters = []
        for m in reg.meters_of(enterprise):
            seen = last_seen.get(m.id)
            online, will_ns = will.get(m.id, (None, None))
            offline = seen is None or gone_by_last_will(online, will_ns, seen)
            uncalibrated = calibration_overdue(m.calibrated, today,
                                               a.calibration_interval_days)
            for ch in range(m.channels):
                key = (m.id, str(ch))
                lv = latest.get(key, {})
                dose = projected = None
                if w is not None:
                    s = sums.get(key, {"ea": 0.0})
                    r = recent.get(key, {})
                    dose = dose_pct(s["ea"], prof.lex_limit_db)
                    projected = projected_lex_8h(
                        s["ea"], laeq_of(r.get("ea", 0.0), r.get("coverage", 0.0)),
                        (w.period.end_ns - now) / NS)
                g = grade(projected, prof) if projected is not None else None
                meters.append({
                    "meter": m.id, "channel": ch, "site": m.site,
                    "laeq": _num(lv.get("laeq")), "lafmax": _num(lv.get("lafmax")),
                    "lcpeak": _num(lv.get("lcpeak")), "dose_pct": _num(dose),
                    "projected_lex_8h": _num(projected),
                    "grade": g.code if g is not None else None,
                    "offline": bool(offline), "uncalibrated": bool(uncalibrated),
                    "overload": key in overload})
        return {"enterprise": enterprise, "time_ns": now, "meters": meters}

    def history(self, enterprise: str, meter: str, channel: int, minutes: int = 60,
                now_ns: int | None = None) -> dict:
        """Minute LAeq (dB(A)) of one post over the last ``minutes``: closed minutes from
        ``levels_1m``, the minutes not rolled up yet (and the running one) summed from the
        1 s points; ``{"meter", "channel", "points": [[minute start ms, LAeq], …]}``."""
        now = self.clock() if now_ns is None else now_ns
        start = (now - minutes * 60 * NS) // schema.MINUTE_NS * schema.MINUTE_NS
        cond = schema.where_tags([("enterprise", enterprise), ("meter", meter),
                                  ("channel", str(channel))])
        per_minute: dict[int, list[float]] = {}
        for src, rp in ((schema.LEVELS_1M, schema.RP_FOREVER), (schema.LEVELS, None)):
            rows = self.reader.query_rows(
                f"SELECT SUM({q(schema.EA)}) AS ea, SUM({q(schema.COVERAGE)}) AS coverage "
                f"FROM {schema.source(src, rp)} WHERE {cond} AND time >= {start} AND "
                f"time <= {now} GROUP BY time(1m) fill(none)")
            got = {int(r["time"]): (float(r.get("ea") or 0), float(r.get("coverage") or 0))
                   for r in rows}
            for t, v in got.items():
                if src == schema.LEVELS_1M or t not in per_minute:
                    per_minute.setdefault(t, list(v))
        points = [[t // 1_000_000, _num(laeq_of(ea, cov))]
                  for t, (ea, cov) in sorted(per_minute.items())]
        return {"meter": meter, "channel": channel, "points": points}

    # ------------------------------------------------------------------------ exposure
    def exposure(self, enterprise: str, first: dt.date, last: dt.date) -> list[dict]:
        """The ledger's records (profile in force) of the shifts from ``first`` to ``last``:
        one dict per post or job and day with ``date``, ``kind``, ``subject``, ``lex_8h``,
        ``u_db``, ``grade``, ``coverage``."""
        prof = self.reg.profile.id
        out = []
        for w in shifts_between(self.reg, enterprise, first, last):
            for r in ledger.read_records(self.reader, enterprise, w.period.start_ns):
                if r.tags.get("profile") != prof:
                    continue
                f = r.fields
                kind = r.tags.get("kind")
                subject = (f"{r.tags.get('meter')}:{r.tags.get('channel')}" if kind == "post"
                           else r.tags.get("job"))
                out.append({"date": w.date.isoformat(), "kind": kind, "subject": subject,
                            "lex_8h": _num(f.get("lex_8h")), "u_db": _num(f.get("u_db")),
                            "grade": f.get("grade"), "coverage": _num(f.get("coverage"))})
        out.sort(key=lambda x: (x["kind"] != "post", x["subject"] or "", x["date"]))
        return out

    def spectra(self, enterprise: str, now_ns: int | None = None) -> list[dict]:
        """The newest band spectrum (LZeq per band, dB) of each meter and channel in the last
        day: ``[{"meter", "channel", "bands": [[label, dB], …]}]``."""
        now = self.clock() if now_ns is None else now_ns
        rows = self.reader.query_rows(
            f"SELECT * FROM {schema.source(schema.BANDS)} WHERE "
            f"{schema.where_tags([('enterprise', enterprise)])} AND time > "
            f"{now - 86400 * NS} GROUP BY {q('meter')}, {q('channel')} ORDER BY time DESC "
            "LIMIT 1")
        out = []
        for r in rows:
            bands = []
            for k, v in r.items():
                if k.startswith("b") and k[1:2].isdigit() and isinstance(v, (int, float)):
                    label = k[1:].replace("_", ".")
                    if band_field(label) == k:
                        bands.append([label, _num(v)])
            bands.sort(key=lambda b: float(b[0]))
            if bands:
                out.append({"meter": r["meter"], "channel": r["channel"], "bands": bands})
        return out


@dataclasses.dataclass
class _Entry:
    at: float
    value: object


class SharedCache:
    """One computation per key per ``ttl_s`` seconds for all clients (SSE streams of the same
    enterprise share a snapshot); thread-safe, the computation runs outside the lock but
    only once per key at a time."""

    def __init__(self, ttl_s: float = 1.0):
        self.ttl_s = ttl_s
        self._entries: dict[object, _Entry] = {}
        self._locks: dict[object, threading.Lock] = {}
        self._guard = threading.Lock()
        self.computed = 0

    def clear(self) -> None:
        """Forget every value (after a change the next read recomputes)."""
        with self._guard:
            self._entries.clear()

    def get(self, key, compute: Callable[[], object]):
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            e = self._entries.get(key)
            if e is not None and time.monotonic() - e.at < self.ttl_s:
                return e.value
            value = compute()
            self.computed += 1
            self._entries[key] = _Entry(time.monotonic(), value)
            return value
