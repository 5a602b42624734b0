"""Hearing screening, the service (issue 14 item 6): for every stored audiogram
(:data:`~tingbao.collector.schema.AUDIOGRAMS`) the GBZ 49-2014 values and flags
(:mod:`.gbz49`), the GBZ 188-2014 noise-susceptible flag and exam interval (:mod:`.gbz188`),
the OSHA standard threshold shift against the worker's baseline with and without Appendix F
age correction (:mod:`.osha_sts`), written as :data:`~tingbao.collector.schema.SCREENING`
points, and alerts to inspectors (:mod:`.alert_store`). Per job, the ISO 1999 prediction of
the noise-induced threshold shift from its stored LEX,8h history (:mod:`.iso1999`).

Decisions where the standards leave the service a choice:

* **The baseline** of an audiogram is the worker's latest audiogram flagged ``baseline`` on or
  before it, else the worker's first audiogram (OSHA's "first valid audiogram"). The baseline
  itself has no STS. GBZ 188's "pre-placement thresholds" are that baseline's.
* **The worker's LEX,8h** is that of the audiogram's job: the energy mean of every stored
  ``exposure`` result of kind ``job`` under the profile in force (``ledger.py`` writes one per
  closed shift). No job, or no stored result: no interval, nothing due, never overdue (the
  result says so with ``lex_db`` absent).
* **Overdue** concerns the worker's latest audiogram only: due ``interval`` years after it,
  overdue from the day after.
* **Alerts** (Chinese, then English), for the worker's latest audiogram only (a history of
  imported exams does not flood the inspectors with old findings): ``hearing_suspected``
  (critical; GBZ 49 suspected occupational noise deafness), ``noise_susceptible`` (warning;
  GBZ 188), ``hearing_sts`` (warning; an STS without age correction in either ear, the
  conservative reading; both results are in the evidence) and ``exam_overdue`` (warning).
  ``shift_date`` is the exam date (overdue: the due date, so each missed date raises once),
  ``job`` the worker's job, ``worker`` the worker's pseudonym, which is part of the alert's
  identity (:func:`tingbao.analysis.alert_store.alert_id`): the same finding raised again has
  the same id (stored once), two workers of one job examined on one day have different ids.
  The worker is in the evidence and the texts too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.lineprotocol import line

from . import gbz49, gbz188, iso1999, osha_sts
from .alert_store import Alert, AlertStore, NotPublished
from .audiograms import Audiogram, read_audiograms
from .shifts import local_date
from .storage import write_batches

__all__ = ["RULES", "ScreeningResult", "ScreeningRun", "TEXTS", "alerts_for", "job_lex",
           "run_screening", "screen", "write_screening"]

log = logging.getLogger("tingbao.analysis.screening")

RULES = {"hearing_suspected": "critical", "noise_susceptible": "warning",
         "hearing_sts": "warning", "exam_overdue": "warning"}
"""Alert rule → severity."""

TEXTS = {
    "hearing_suspected": (
        "劳动者 {worker}（{job}）{date} 听力检查：双耳高频平均听阈 {hfta:.1f} dB HL ≥ 40，"
        "接噪工龄 {years:g} 年：疑似职业性噪声聋（GBZ 49-2014），较好耳语频听阈加权值 "
        "{better:.1f} dB HL（{grade_zh}）；请安排职业病诊断",
        "worker {worker} ({job}), exam {date}: binaural high-frequency average {hfta:.1f} dB "
        "HL ≥ 40 after {years:g} years of noise work: suspected occupational noise-induced "
        "deafness (GBZ 49-2014); better-ear weighted value {better:.1f} dB HL ({grade}); refer "
        "for diagnosis"),
    "noise_susceptible": (
        "劳动者 {worker}（{job}）上岗前听阈均 ≤ 25 dB HL，接噪 {years:g} 年时 3/4/6 kHz 任一耳 "
        "≥ 65 dB HL（{date}）：噪声易感者（GBZ 188-2014），应调离噪声作业",
        "worker {worker} ({job}): pre-placement thresholds all ≤ 25 dB HL, yet ≥ 65 dB HL at "
        "3/4/6 kHz after {years:g} years of noise work ({date}): noise-susceptible worker "
        "(GBZ 188-2014); remove from noise work"),
    "hearing_sts": (
        "劳动者 {worker}（{job}）{date} 较基线（{base}）出现标准阈移：2/3/4 kHz 平均变化 左 "
        "{cl:.1f} / 右 {cr:.1f} dB（按 OSHA 附录 F 年龄修正后 {al:.1f} / {ar:.1f} dB）",
        "worker {worker} ({job}), exam {date}: standard threshold shift against the baseline "
        "of {base}: average change at 2/3/4 kHz left {cl:.1f} / right {cr:.1f} dB "
        "({al:.1f} / {ar:.1f} dB age-corrected per OSHA Appendix F)"),
    "exam_overdue": (
        "劳动者 {worker}（{job}，LEX,8h {lex:.1f} dB(A)）职业健康检查已逾期：上次 {last}，周期 "
        "{n} 年，应于 {due} 前复查（GBZ 188-2014）",
        "worker {worker} ({job}, LEX,8h {lex:.1f} dB(A)): hearing exam overdue: last {last}, "
        "every {n} year(s), due {due} (GBZ 188-2014)"),
}


@dataclasses.dataclass(frozen=True)
class ScreeningResult:
    """The screening of one audiogram (module docstring); ``sts`` None for a baseline."""

    audiogram: Audiogram
    gbz49: gbz49.Gbz49Result
    susceptible: bool
    baseline: Audiogram
    sts: osha_sts.StsResult | None
    lex_db: float | None
    lex_days: int
    interval_years: int | None
    next_due: dt.date | None
    overdue: bool
    latest: bool

    def fields(self, computed_ns: int) -> dict:
        """The fields of its :data:`~tingbao.collector.schema.SCREENING` point."""
        g, s = self.gbz49, self.sts
        return {"hfta_db": g.hfta_db, "speech_left_db": g.speech_left_db,
                "speech_right_db": g.speech_right_db, "better_ear_db": g.better_ear_db,
                "grade": g.grade, "suspected": g.suspected, "susceptible": self.susceptible,
                "sts_left": bool(s and s.sts[0]), "sts_right": bool(s and s.sts[1]),
                "sts_age_left": bool(s and s.sts_age[0]),
                "sts_age_right": bool(s and s.sts_age[1]),
                "lex_db": self.lex_db, "interval_years": self.interval_years,
                "next_due": self.next_due.isoformat() if self.next_due else None,
                "overdue": self.overdue, "computed_ns": int(computed_ns)}

    def as_dict(self) -> dict:
        """JSON-able: the audiogram's identity and every result."""
        a, s = self.audiogram, self.sts
        return {"enterprise": a.enterprise, "worker": a.worker, "date": a.date.isoformat(),
                "age": a.age, "sex": a.sex, "job": a.job, "noise_years": a.noise_years,
                "baseline_date": self.baseline.date.isoformat(),
                "hfta_db": round(self.gbz49.hfta_db, 2),
                "speech_left_db": round(self.gbz49.speech_left_db, 2),
                "speech_right_db": round(self.gbz49.speech_right_db, 2),
                "better_ear_db": round(self.gbz49.better_ear_db, 2), "grade": self.gbz49.grade,
                "suspected": self.gbz49.suspected, "susceptible": self.susceptible,
                "sts_change_db": None if s is None else [round(x, 2) for x in s.change_db],
                "sts_change_age_db": None if s is None else [round(x, 2)
                                                             for x in s.change_age_db],
                "sts": None if s is None else list(s.sts),
                "sts_age": None if s is None else list(s.sts_age),
                "lex_db": None if self.lex_db is None else round(self.lex_db, 2),
                "interval_years": self.interval_years,
                "next_due": self.next_due.isoformat() if self.next_due else None,
                "overdue": self.overdue, "latest": self.latest}


def _baseline(history: Sequence[Audiogram], a: Audiogram) -> Audiogram:
    flagged = [b for b in history if b.baseline and b.date <= a.date]
    return flagged[-1] if flagged else history[0]


def screen(audiograms: Iterable[Audiogram], lex_by_job: Mapping[tuple[str, str], tuple],
           today: dt.date) -> list[ScreeningResult]:
    """Screen every audiogram against its worker's history (pure). ``lex_by_job`` maps
    (enterprise, job) to (LEX,8h dB(A), days) (:func:`job_lex`); ``today`` the local date."""
    by_worker: dict[tuple[str, str], list[Audiogram]] = {}
    for a in audiograms:
        by_worker.setdefault((a.enterprise, a.worker), []).append(a)
    out = []
    for history in by_worker.values():
        history.sort(key=lambda a: a.date)
        for i, a in enumerate(history):
            g = gbz49.assess(a.left, a.right, age_years=a.age, sex=a.sex,
                             noise_years=a.noise_years)
            base = _baseline(history, a)
            is_base = base is a
            sts = None if is_base else osha_sts.sts(
                np.stack([base.left, base.right]), np.stack([a.left, a.right]),
                baseline_age=base.age, current_age=a.age, sex=a.sex)
            susceptible = (not is_base) and gbz188.is_susceptible(
                base.left, base.right, a.left, a.right, a.noise_years)
            lex, days = lex_by_job.get((a.enterprise, a.job), (None, 0)) if a.job else (None, 0)
            interval = gbz188.exam_interval_years(lex)
            due = gbz188.next_due(a.date, interval)
            latest = i == len(history) - 1
            out.append(ScreeningResult(a, g, susceptible, base, sts, lex, days, interval, due,
                                       latest and gbz188.is_overdue(due, today), latest))
    out.sort(key=lambda r: (r.audiogram.enterprise, r.audiogram.worker, r.audiogram.date))
    return out


# ------------------------------------------------------------------------------- store
def job_lex(reader: InfluxClient, profile: str, *, enterprise: str | None = None
            ) -> dict[tuple[str, str], tuple[float, int]]:
    """(enterprise, job) → (energy mean of the stored daily LEX,8h in dB(A), number of days)
    from the ``exposure`` results of kind ``job`` under ``profile``."""
    rows = reader.query_rows(schema.job_lex_all(profile, enterprise))
    levels: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        v = r.get(schema.LEX_8H)
        if isinstance(v, (int, float)) and math.isfinite(v):
            levels.setdefault((r["enterprise"], r["job"]), []).append(float(v))
    return {k: (iso1999.energy_mean_db(v), len(v)) for k, v in levels.items()}


def job_predictions(lex_history: Mapping[tuple[str, str], tuple[float, int]],
                    years=(10.0, 20.0, 30.0, 40.0)) -> dict[tuple[str, str], dict]:
    """ISO 1999 N50/N10 per job from :func:`job_lex`'s long-term LEX,8h (JSON-able dicts)."""
    out = {}
    for key, (lex, days) in sorted(lex_history.items()):
        pred = iso1999.predict_lex(lex, days, years)
        out[key] = {"enterprise": key[0], "job": key[1], **pred.as_dict()}
    return out


def write_screening(writer: InfluxClient, results: Sequence[ScreeningResult], timezone: str,
                    computed_ns: int) -> int:
    """Store one :data:`~tingbao.collector.schema.SCREENING` point per result, at its
    audiogram's time (retention policy ``forever``); returns how many."""
    out = [line(schema.SCREENING, {"enterprise": r.audiogram.enterprise,
                                   "worker": r.audiogram.worker},
                r.fields(computed_ns), r.audiogram.time_ns(timezone)) for r in results]
    return write_batches(writer, out, schema.RP_FOREVER)


# ------------------------------------------------------------------------------ alerts
def alerts_for(results: Iterable[ScreeningResult], profile: str, now_ns: int) -> list[Alert]:
    """The alerts of the workers' latest audiograms (module docstring)."""
    out = []
    for r in results:
        if not r.latest:
            continue
        a, g = r.audiogram, r.gbz49
        common = {"worker": a.worker, "job": a.job or "—", "date": a.date.isoformat()}
        ev = {"worker": a.worker, "exam_date": a.date.isoformat(), "age": a.age, "sex": a.sex,
              "noise_years": a.noise_years, "left_db": list(a.left), "right_db": list(a.right),
              "hfta_db": g.hfta_db, "better_ear_db": g.better_ear_db, "grade": g.grade,
              "correction": g.correction, "baseline_date": r.baseline.date.isoformat()}
        found = []
        if g.suspected:
            found.append(("hearing_suspected", a.date, {
                "hfta": g.hfta_db, "years": a.noise_years, "better": g.better_ear_db,
                "grade": g.grade, "grade_zh": g.grade_zh}))
        if r.susceptible:
            found.append(("noise_susceptible", a.date, {"years": a.noise_years}))
        if r.sts is not None and any(r.sts.sts):
            s = r.sts
            ev_sts = {"sts_change_db": list(s.change_db), "sts_change_age_db":
                      list(s.change_age_db), "sts": list(s.sts), "sts_age": list(s.sts_age)}
            found.append(("hearing_sts", a.date, {
                "base": r.baseline.date.isoformat(), "cl": s.change_db[0], "cr": s.change_db[1],
                "al": s.change_age_db[0], "ar": s.change_age_db[1], "_ev": ev_sts}))
        if r.overdue:
            found.append(("exam_overdue", r.next_due, {
                "lex": r.lex_db, "last": a.date.isoformat(), "n": r.interval_years,
                "due": r.next_due.isoformat(), "_ev": {"lex_db": r.lex_db,
                                                       "interval_years": r.interval_years,
                                                       "next_due": r.next_due.isoformat()}}))
        for rule, day, args in found:
            extra = args.pop("_ev", {})
            zh, en = TEXTS[rule]
            out.append(Alert(enterprise=a.enterprise, rule=rule, shift_date=day.isoformat(),
                             profile=profile, severity=RULES[rule],
                             text_zh=zh.format(**common, **args),
                             text_en=en.format(**common, **args),
                             evidence={**ev, **extra}, raised_ns=now_ns, job=a.job,
                             worker=a.worker))
    return out


@dataclasses.dataclass(frozen=True)
class ScreeningRun:
    """What :func:`run_screening` did: the results, the ids of alerts newly stored, the
    per-job ISO 1999 predictions and how many points it wrote."""

    results: tuple[ScreeningResult, ...]
    raised: tuple[str, ...]
    predictions: dict
    written: int


def run_screening(reg, reader: InfluxClient, writer: InfluxClient | None,
                  store: AlertStore | None, *, enterprise: str | None = None,
                  now_ns: int | None = None, write: bool = True) -> ScreeningRun:
    """Screen the stored audiograms of the registry's enterprises (or one), with the jobs'
    LEX,8h from the ledger under the profile in force; with ``write``, store the
    :data:`~tingbao.collector.schema.SCREENING` points and open the alerts in ``store``
    (already stored ids are left alone)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    tz = reg.deployment.timezone
    today = local_date(now_ns, tz)
    known = {e.id for e in reg.enterprises}
    audiograms = [a for a in read_audiograms(reader, tz, enterprise=enterprise)
                  if a.enterprise in known]
    if not audiograms:
        return ScreeningRun((), (), {}, 0)
    lex = job_lex(reader, reg.profile.id, enterprise=enterprise)
    results = screen(audiograms, lex, today)
    written, raised = 0, []
    if write and writer is not None:
        written = write_screening(writer, results, tz, now_ns)
        if store is not None:
            for alert in alerts_for(results, reg.profile.id, now_ns):
                try:
                    if store.open(alert):
                        raised.append(alert.id)
                        log.info("alert %s %s: %s", alert.id, alert.rule, alert.text_en)
                except NotPublished as e:  # stored; `tingbao alerts publish ID` resends it
                    raised.append(alert.id)
                    log.warning("alert %s stored but not published: %s", alert.id, e)
    return ScreeningRun(tuple(results), tuple(raised), job_predictions(lex), written)
