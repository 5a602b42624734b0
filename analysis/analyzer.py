"""The analysis service behind ``tingbao analyze``: as time passes it evaluates the alert rules
of every running shift (:mod:`.alert_rules`) and closes every shift that ended
``close_delay_s`` ago: the day's exposure (:mod:`.daily`) goes into the ledger
(:mod:`.ledger`, hash chain) and the shift-end rules run on it. ``--from/--to`` back-fills
closed days and exits.

Everything reads sums from InfluxDB; one tick costs a few small queries per enterprise
whatever the number of 1 s points. Device-health rules run during an enterprise's shifts only
(a meter switched off after hours is not an alarm). Which days are closed is the ledger's
business: a restart re-closes nothing (closing a day again with the same records is a no-op)
and re-raises nothing (alert ids are deterministic, :mod:`.alert_store`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Callable

from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.registry.site import Registry

from . import gbz2_2, ledger, running_shift
from .alert_rules import SEVERITY, Condition, EdgeTrigger, texts
from .alert_store import Alert, AlertStore, NotPublished
from .daily import compute_days
from .device_health import calibration_overdue, gone_by_last_will
from .exposure import PostSums
from .gbzt189_8 import laeq as laeq_of
from .records import day_records
from .shifts import ShiftWindow, local_date, shift_at, shift_window

__all__ = ["Analyzer", "ClosedDay"]

log = logging.getLogger("tingbao.analysis")
NS = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class ClosedDay:
    """What closing one enterprise's day did: the ledger outcome and the alerts raised."""

    enterprise: str
    date: dt.date
    closed: ledger.Closed
    alerts: tuple[str, ...]
    posts: int
    jobs: int


def _subject(meter: str | None, channel: int | None, job: str | None) -> str:
    if job is not None:
        return f"工种 job {job}"
    if channel is not None:
        return f"岗位 post {meter}:{channel}"
    return f"声级计 meter {meter}"


class Analyzer:
    """Alerts and shift closing for the enterprises of ``reg`` (module docstring)."""

    def __init__(self, reg: Registry, reader: InfluxClient, writer: InfluxClient,
                 store: AlertStore, *, clock: Callable[[], int] = time.time_ns):
        self.reg = reg
        self.reader = reader
        self.writer = writer
        self.store = store
        self.clock = clock
        self.triggers: dict[tuple[str, dt.date], EdgeTrigger] = {}
        self.screened_on: dt.date | None = None  # local date of the last hearing screening
        self.evaluated_on: dt.date | None = None  # local date of the last pilot evaluation

    # ------------------------------------------------------------------------ raising
    def _trigger(self, w: ShiftWindow) -> EdgeTrigger:
        key = (w.enterprise, w.date)
        if key not in self.triggers:
            self.triggers[key] = EdgeTrigger(self.reg.analysis.holdoff_s)
            for old in [k for k in self.triggers if k[0] == w.enterprise
                        and (w.date - k[1]).days > 2]:
                del self.triggers[old]
        return self.triggers[key]

    def _seed(self, w: ShiftWindow, trigger: EdgeTrigger, cond: Condition) -> None:
        """Count the occurrences of ``cond`` already stored for this shift (a restart)."""
        stored = self.store.list(enterprise=w.enterprise, rule=cond.rule, meter=cond.meter,
                                 since_ns=w.period.start_ns - 3600 * NS,
                                 until_ns=w.period.end_ns + 3 * 86400 * NS, limit=1000)
        same = [a for a in stored if a.shift_date == w.date.isoformat()
                and a.channel == cond.channel and a.job == cond.job
                and a.profile == self.reg.profile.id]
        trigger.seed(cond.key, len(same))

    def _raised_before(self, w: ShiftWindow, cond: Condition) -> int:
        trigger = self._trigger(w)
        if not trigger.known(cond.key):
            self._seed(w, trigger, cond)
        return trigger.raised(cond.key)

    def _raise(self, w: ShiftWindow, cond: Condition, now_ns: int) -> str | None:
        trigger = self._trigger(w)
        if not trigger.known(cond.key):
            self._seed(w, trigger, cond)
        occurrence = trigger.update(cond, now_ns)
        if occurrence is None:
            return None
        zh, en = texts(cond.rule, subject=_subject(cond.meter, cond.channel, cond.job),
                       meter=cond.meter, **cond.args)
        meter = self.reg.meter(cond.meter) if cond.meter else None
        evidence = {**_json_safe(cond.evidence), "period_start_ns": w.period.start_ns,
                    "period_end_ns": w.period.end_ns, "profile": self.reg.profile.id}
        if meter is not None:
            evidence["calibrated"] = meter.calibrated.isoformat() if meter.calibrated else None
        alert = Alert(enterprise=w.enterprise, rule=cond.rule, shift_date=w.date.isoformat(),
                      profile=self.reg.profile.id, severity=SEVERITY[cond.rule], text_zh=zh,
                      text_en=en, evidence=evidence, raised_ns=now_ns, meter=cond.meter,
                      channel=cond.channel, job=cond.job, occurrence=occurrence)
        try:
            if self.store.open(alert):
                log.info("alert %s %s: %s", alert.id, cond.rule, en)
        except NotPublished as e:  # stored; `tingbao alerts publish ID` sends it again
            log.warning("alert %s stored but not published: %s", alert.id, e)
        return alert.id

    # ------------------------------------------------------------------------ in shift
    def _sums(self, period: schema.Period, enterprise: str, rollups: bool = True,
              fine_from_ns: int | None = None) -> dict:
        rows = self.reader.query_rows(";".join(schema.exposure_sums(
            period, enterprise=enterprise, rollups=rollups, fine_from_ns=fine_from_ns)))
        return schema.add_sums(rows)

    def in_shift(self, w: ShiftWindow, now_ns: int) -> list[str]:
        """Evaluate the in-shift rules of ``w`` at ``now_ns``; returns the alert ids raised."""
        if now_ns <= w.period.start_ns:
            return []  # the shift starts now: nothing measured yet, nothing to judge
        a = self.reg.analysis
        prof = self.reg.profile
        ent = w.enterprise
        so_far = schema.Period(w.period.start_ns, now_ns)
        recent = schema.Period(max(w.period.start_ns, now_ns - int(a.recent_s * NS)), now_ns)
        fine_from = now_ns - int(a.rollup_lag_s * NS)
        sums = self._sums(so_far, ent, fine_from_ns=fine_from)
        latest = self._sums(recent, ent, rollups=False)
        peaks = schema.add_peaks(self.reader.query_rows(";".join(
            schema.period_peaks(so_far, enterprise=ent, fine_from_ns=fine_from))))
        overloads = {(r["meter"], r["channel"]): int(r.get("n") or 0)
                     for r in self.reader.query_rows(_overload_query(recent, ent))}
        remaining_s = (w.period.end_ns - now_ns) / NS
        limit = prof.lex_limit_db
        raised = []
        for m in self.reg.meters_of(ent):
            for ch in range(m.channels):
                key = (m.id, str(ch))
                s = sums.get(key)
                if not s or s["ea"] <= 0:
                    continue
                recent_l = laeq_of(latest.get(key, {}).get("ea", 0.0),
                                   latest.get(key, {}).get("coverage", 0.0))
                projected = running_shift.projected_lex_8h(s["ea"], recent_l, remaining_s)
                dose = running_shift.dose_pct(s["ea"], limit)
                ev = {"ea_pa2s": s["ea"], "covered_s": s["coverage"],
                      "recent_laeq": recent_l if math.isfinite(recent_l) else None,
                      "projected_lex_8h": projected, "dose_pct": dose, "limit_db": limit,
                      "now_ns": now_ns}
                conds = [
                    Condition("lex_projected", projected >= limit, m.id, ch, evidence=ev,
                              args={"projected": projected, "limit": limit,
                                    "recent": recent_l if math.isfinite(recent_l) else
                                    float("nan"), "recent_min": a.recent_s / 60}),
                    Condition("dose_50", dose >= 50.0, m.id, ch, evidence=ev,
                              args={"dose": dose}),
                    Condition("dose_100", dose >= 100.0, m.id, ch, evidence=ev,
                              args={"dose": dose}),
                    Condition("overload", overloads.get(key, 0) > 0, m.id, ch,
                              evidence={"overloaded_intervals": overloads.get(key, 0)},
                              args={"n": overloads.get(key, 0)}),
                ]
                conds += self._peak_condition(m.id, ch, peaks.get(key, {}))
                raised += [i for c in conds if (i := self._raise(w, c, now_ns))]
        raised += self._device_health(w, now_ns)
        return raised

    def _peak_condition(self, meter: str, ch: int, p: dict) -> list[Condition]:
        prof = self.reg.profile
        impulses = {t: int(p[name]) for t, name in schema.impulse_thresholds(p).items()}
        n = gbz2_2.impulse_count(impulses)[0] or 0
        peak = p.get("lzpeak") if prof.peak_weighting == "Z" else p.get("lcpeak")
        check = gbz2_2.peak_check(peak, n, prof)
        if check is None:
            return []
        return [Condition("peak_exceeded", check.exceeded, meter, ch,
                          evidence={"peak_db": check.peak_db, "n_impulses": n,
                                    "limit_db": check.limit_db,
                                    "weighting": check.weighting},
                          args={"peak": check.peak_db, "w": check.weighting, "n": n,
                                "limit": "—" if check.limit_db is None
                                else f"{check.limit_db:g} dB"})]

    def _device_health(self, w: ShiftWindow, now_ns: int) -> list[str]:
        a = self.reg.analysis
        ent = w.enterprise
        window_s = max(3600.0, 2 * a.offline_after_s)
        last = {r["meter"]: int(r["time"]) for r in self.reader.query_rows(
            f"SELECT LAST({schema.quote_ident(schema.EA)}) FROM {schema.source(schema.LEVELS)}"
            f" WHERE {schema.where_tags([('enterprise', ent)])} AND time > "
            f"{now_ns - int(window_s * NS)} AND time <= {now_ns} GROUP BY "
            f"{schema.quote_ident('meter')}")}
        status = {}
        for r in self.reader.query_rows(
                f"SELECT * FROM {schema.source(schema.STATUS)} WHERE "
                f"{schema.where_tags([('enterprise', ent)])} AND time > "
                f"{now_ns - 86400 * NS} AND time <= {now_ns} GROUP BY "
                f"{schema.quote_ident('meter')} ORDER BY time DESC LIMIT 1"):
            status[r["meter"]] = r
        raised = []
        started_s = (now_ns - w.period.start_ns) / NS
        for m in self.reg.meters_of(ent):
            st = status.get(m.id, {})
            seen = last.get(m.id)
            silent_s = (now_ns - seen) / NS if seen is not None else window_s
            will = gone_by_last_will(st.get("online"), st.get("time"), seen)
            offline = will or (silent_s >= a.offline_after_s and started_s >= a.offline_after_s)
            why = ("最后遗嘱 last will" if will else f"{silent_s:.0f} s 无数据")
            why_en = "its last will" if will else f"no interval for {silent_s:.0f} s"
            conds = [Condition("meter_offline", offline, m.id,
                               evidence={"last_interval_ns": seen, "last_will": will},
                               args={"why": why, "why_en": why_en})]
            offset = st.get("clock_offset_s")
            if isinstance(offset, (int, float)) and math.isfinite(offset):
                conds.append(Condition("clock_offset", abs(offset) > a.clock_offset_max_s,
                                       m.id, evidence={"clock_offset_s": offset},
                                       args={"offset": offset, "bound": a.clock_offset_max_s}))
            dev = st.get("calibration_deviation_db")
            drift = st.get("calibration") == "drift" or (
                isinstance(dev, (int, float)) and abs(dev) > a.calibration_drift_max_db)
            if drift or isinstance(dev, (int, float)):
                conds.append(Condition(
                    "calibration_drift", drift, m.id,
                    evidence={"calibration_deviation_db": dev,
                              "calibration_status": st.get("calibration"),
                              "calibration_time": st.get("calibration_time")},
                    args={"deviation": "—" if dev is None else f"{dev:+.2f}",
                          "bound": a.calibration_drift_max_db}))
            today = w.date
            overdue = calibration_overdue(m.calibrated, today, a.calibration_interval_days)
            conds.append(Condition("calibration_overdue", overdue, m.id,
                                   evidence={"calibrated": m.calibrated.isoformat()
                                             if m.calibrated else None,
                                             "interval_days": a.calibration_interval_days},
                                   args={"last": m.calibrated or "—",
                                         "days": a.calibration_interval_days}))
            raised += [i for c in conds if (i := self._raise(w, c, now_ns))]
        return raised

    # ------------------------------------------------------------------------ closing
    def close(self, enterprise: str, date: dt.date, *, redo: bool = False) -> ClosedDay:
        """Close the shift of ``enterprise`` that started on ``date``: exposure into the
        ledger, then the shift-end rules (exceedance, peak, coverage)."""
        day, extras = compute_days(self.reader, self.reg, enterprise, date)
        w = day.shift
        recs = day_records(day, extras)
        closed = ledger.close_day(self.reader, self.writer, enterprise, date.isoformat(),
                                  w.period.start_ns, recs, redo=redo)
        limit = self.reg.profile.lex_limit_db
        now = w.period.end_ns
        raised = []
        overloads = {(r["meter"], r["channel"]): int(r.get("n") or 0)
                     for r in self.reader.query_rows(_overload_query(w.period, enterprise))}
        for p in day.posts:
            ev = {"lex_8h": p.lex_8h, "u_db": p.u_db, "coverage": p.coverage,
                  "laeq": p.laeq, "flags": list(p.flags), "limit_db": limit}
            conds = []
            if math.isfinite(p.lex_8h):
                conds.append(Condition("lex_exceeded", p.lex_8h >= limit, p.meter, p.channel,
                                       evidence=ev, args=_lex_args(p.lex_8h, p.u_db, limit)))
            conds.append(Condition("coverage_low",
                                   p.coverage < self.reg.analysis.coverage_alert_below,
                                   p.meter, p.channel, evidence=ev,
                                   args={"coverage": 100 * p.coverage,
                                         "bound": 100 * self.reg.analysis.coverage_alert_below}))
            conds += self._peak_condition(p.meter, p.channel, _peaks_of(p.sums))
            n_over = overloads.get((p.meter, str(p.channel)), 0)
            over = Condition("overload", n_over > 0, p.meter, p.channel,
                             evidence={"overloaded_intervals": n_over}, args={"n": n_over})
            if not self._raised_before(w, over):  # the shift's overload, unless alerted in it
                conds.append(over)
            raised += [i for c in conds if (i := self._raise(w, c, now))]
        for j in day.jobs:
            if math.isfinite(j.lex_8h):
                c = Condition("lex_exceeded", j.lex_8h >= limit, job=j.job,
                              evidence={"lex_8h": j.lex_8h, "u_db": j.u_db,
                                        "coverage": j.coverage, "flags": list(j.flags),
                                        "limit_db": limit},
                              args=_lex_args(j.lex_8h, j.u_db, limit))
                if i := self._raise(w, c, now):
                    raised.append(i)
        return ClosedDay(enterprise, date, closed, tuple(raised), len(day.posts),
                         len(day.jobs))

    def due(self, now_ns: int) -> list[tuple[str, dt.date]]:
        """Workday shifts that ended at least ``close_delay_s`` before ``now_ns`` (of the
        last three days, so a service down for a day catches up; older ones are for
        ``--from/--to``) and are not chained. A shift whose minutes still await their rollup
        (``rollups_due`` markers in it: late intervals being stored) waits, for at most an
        hour past its due time. Before an enterprise's first closed day, days without any
        data are not closed (a new deployment does not start with empty days and alerts)."""
        out = []
        delay = int(self.reg.analysis.close_delay_s * NS)
        tz = self.reg.deployment.timezone
        today = local_date(now_ns, tz)
        for e in self.reg.enterprises:
            for back in (3, 2, 1, 0):
                d = today - dt.timedelta(days=back)
                if not e.shift.works_on(d):
                    continue
                w = shift_window(e, d, tz)
                due_ns = w.period.end_ns + delay
                if due_ns > now_ns or ledger.is_closed(self.reader, e.id, w.period.start_ns):
                    continue
                if now_ns < due_ns + 3600 * NS and self._pending_rollups(e.id, w):
                    log.info("%s %s: minutes still await their rollup; closing later", e.id, d)
                    continue
                if ledger.head(self.reader, e.id) is None and not self._has_data(e.id, w):
                    continue  # before the enterprise's first data: nothing to close yet
                out.append((e.id, d))
        return out

    def _has_data(self, enterprise: str, w: ShiftWindow) -> bool:
        rows = self.reader.query_rows(";".join(schema.exposure_sums(
            w.period, enterprise=enterprise, count=False)))
        return any(r.get(schema.EA) for r in rows)

    def _pending_rollups(self, enterprise: str, w: ShiftWindow) -> bool:
        rows = self.reader.query_rows(
            f"SELECT COUNT({schema.quote_ident(schema.MARKER_AT)}) AS n FROM "
            f"{schema.source(schema.ROLLUPS_DUE)} WHERE "
            f"{schema.where_tags([('enterprise', enterprise)])} AND {w.period.where()}")
        return bool(rows and rows[0].get("n"))

    def tick(self, now_ns: int | None = None) -> dict:
        """One pass: close what is due, evaluate running shifts. A failure of one enterprise
        or day is logged and the others go on. Returns what it did."""
        now = self.clock() if now_ns is None else now_ns
        closed, raised, failed = [], [], []
        for e, d in self.due(now):
            try:
                closed.append(self.close(e, d))
            except Exception as exc:  # noqa: BLE001 - one day must not stop the others
                log.exception("closing %s %s failed", e, d)
                failed.append((e, d, str(exc)))
        for e in self.reg.enterprises:
            w = shift_at(self.reg, e.id, now)
            if w is None:
                continue
            try:
                raised += self.in_shift(w, now)
            except Exception as exc:  # noqa: BLE001
                log.exception("in-shift rules of %s failed", e.id)
                failed.append((e.id, w.date, str(exc)))
        raised += self._screen_daily(now, failed)
        self._evaluate_daily(now, failed)
        return {"closed": closed, "raised": raised, "failed": failed}

    def _evaluate_daily(self, now_ns: int, failed: list) -> None:
        """Once a local day: yesterday's wear time at the ear closed and the correct-wearing
        rates rewritten (:func:`tingbao.analysis.pilot_evaluation.daily`)."""
        from .pilot_evaluation import daily

        today = local_date(now_ns, self.reg.deployment.timezone)
        if self.evaluated_on == today:
            return
        try:
            run = daily(self.reader, self.writer, self.reg, today, now_ns)
        except Exception as exc:  # noqa: BLE001 - retried at the next tick
            log.exception("pilot evaluation failed")
            failed.append(("pilot_evaluation", today, str(exc)))
            return
        log.info("pilot evaluation: %d wear day(s) closed, %d rate point(s) written",
                 run.wear_days, run.rates)
        self.evaluated_on = today

    def _screen_daily(self, now_ns: int, failed: list) -> list[str]:
        """Once a local day: hearing screening of the stored audiograms and the overdue-exam
        check (:func:`tingbao.analysis.screening.run_screening`)."""
        from .screening import run_screening

        today = local_date(now_ns, self.reg.deployment.timezone)
        if self.screened_on == today:
            return []
        try:
            run = run_screening(self.reg, self.reader, self.writer, self.store, now_ns=now_ns)
        except Exception as exc:  # noqa: BLE001 - retried at the next tick
            log.exception("hearing screening failed")
            failed.append(("screening", today, str(exc)))
            return []
        self.screened_on = today
        return list(run.raised)


def _json_safe(evidence: dict) -> dict:
    """Evidence with values that are not numbers (no data: NaN) as None (JSON null)."""
    out = {}
    for k, v in evidence.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out


def _lex_args(lex: float, u: float | None, limit: float) -> dict:
    return {"lex": lex, "u": "—" if u is None else f"{u:.1f}", "limit": limit}


def _peaks_of(s: PostSums) -> dict:
    out = {"lcpeak": s.lcpeak_db, "lzpeak": s.lzpeak_db}
    out.update({schema.impulse_field(t): n for t, n in s.impulses.items()})
    return {k: v for k, v in out.items() if v is not None}


def _overload_query(period: schema.Period, enterprise: str) -> str:
    return (f"SELECT COUNT({schema.quote_ident('overload')}) AS n FROM "
            f"{schema.source(schema.LEVELS)} WHERE "
            f"{schema.where_tags([('enterprise', enterprise)])} AND "
            f"{schema.quote_ident('overload')} = true AND {period.where()} GROUP BY "
            + ", ".join(schema.quote_ident(t) for t in schema.SERIES_TAGS))
