"""When to raise an alert: the rules of the profile in force, evaluated on what the store
holds, edge-triggered with a hold-off (the lifecycle and storage are
:mod:`.alert_store`'s).

Rules, each per post (meter, channel) and shift unless said otherwise; limits from the profile
(``lex_limit_db``, ``peak_limits``), bounds from the registry's ``[analysis]``:

============================  ===========  ==================================================
rule                          severity     condition
============================  ===========  ==================================================
``lex_projected``             warning      in shift: exposure so far + the rest of the shift at
                                           the recent LAeq (last ``recent_s``) gives LEX,8h ≥
                                           the limit (GBZ/T 189.8 arithmetic)
``dose_50`` / ``dose_100``    info/warning in shift: dose so far ≥ 50 % / 100 % of the limit's
                                           daily dose (equal energy: 100·EA/(p0²·T0·10^(L/10)))
``lex_exceeded``              critical     shift closed: LEX,8h ≥ limit (posts and jobs)
``peak_exceeded``             critical     the day's highest peak ≥ the GBZ 2.2 limit for the
                                           day's impulse count (:mod:`.daily`)
``coverage_low``              warning      shift closed: coverage < ``coverage_alert_below``
``overload``                  warning      in shift: an interval of the last ``recent_s``
                                           reports overload; at the close: any interval of
                                           the shift
``meter_offline``             warning      per meter: its last will (status online = false) or
                                           no interval for ``offline_after_s``
``clock_offset``              warning      per meter: |clock_offset_s| in its status > bound
``calibration_overdue``       warning      per meter: no calibration date, or older than
                                           ``calibration_interval_days``
``calibration_drift``         critical     per meter: its agent reports a calibrator check
                                           that drifted (status ``drift``, or
                                           |deviation| > ``calibration_drift_max_db``,
                                           0.5 dB per GBZ/T 189.8): levels since the last
                                           good check are invalid
============================  ===========  ==================================================

**Edge triggering.** A condition raises when it turns true; while it stays true nothing more
is raised. When it clears and turns true again, it raises again only after ``holdoff_s``
since it cleared, as occurrence 1, 2, … of that condition in that shift. An alert's id is a
hash of (enterprise, rule, post or job, shift date, profile, occurrence; and the worker for
the hearing-screening alerts of ``analysis/screening.py``, which are raised once per finding,
not by these rules), so a back-fill re-raising
the same condition finds the alert already stored and adds nothing; a restarted service
first counts the occurrences already stored (:meth:`EdgeTrigger.seed`), so its next one gets
a new id. Limits are reached at equality (≥), as grades are.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Condition", "EdgeTrigger", "TEXTS"]


@dataclasses.dataclass(frozen=True)
class Condition:
    """One evaluated condition: which (rule, meter, channel, job), whether it holds now,
    and the evidence and text arguments for the alert it raises."""

    rule: str
    active: bool
    meter: str | None = None
    channel: int | None = None
    job: str | None = None
    evidence: dict = dataclasses.field(default_factory=dict)
    args: dict = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.rule, self.meter, self.channel, self.job)


SEVERITY = {"lex_projected": "warning", "dose_50": "info", "dose_100": "warning",
            "lex_exceeded": "critical", "peak_exceeded": "critical", "coverage_low": "warning",
            "overload": "warning", "meter_offline": "warning", "clock_offset": "warning",
            "calibration_overdue": "warning", "calibration_drift": "critical"}

TEXTS = {
    "lex_projected": ("{subject} 预计本班 LEX,8h {projected:.1f} dB(A)，将达到限值 {limit:g} "
                      "dB(A)（近 {recent_min:.0f} 分钟 LAeq {recent:.1f} dB(A)）",
                      "{subject}: projected LEX,8h {projected:.1f} dB(A) reaches the "
                      "{limit:g} dB(A) limit (LAeq {recent:.1f} dB(A) over the last "
                      "{recent_min:.0f} min)"),
    "dose_50": ("{subject} 剂量已达 {dose:.0f} %（超过 50 %）",
                "{subject}: dose so far {dose:.0f} % (past 50 %)"),
    "dose_100": ("{subject} 剂量已达 {dose:.0f} %（超过 100 %，本班已超限）",
                 "{subject}: dose so far {dose:.0f} % (past 100 %: over the limit for the "
                 "shift)"),
    "lex_exceeded": ("{subject} 本班 LEX,8h {lex:.1f} ± {u} dB(A) 达到或超过限值 {limit:g} dB(A)",
                     "{subject}: LEX,8h {lex:.1f} ± {u} dB(A) reaches or exceeds the {limit:g} "
                     "dB(A) limit"),
    "peak_exceeded": ("{subject} 峰值 {peak:.1f} dB({w}) 达到或超过 {n} 次脉冲对应的限值 {limit}",
                      "{subject}: peak {peak:.1f} dB({w}) reaches or exceeds the limit {limit} "
                      "for {n} impulses"),
    "coverage_low": ("{subject} 本班测量覆盖率 {coverage:.0f} %，低于 {bound:.0f} %",
                     "{subject}: the shift was {coverage:.0f} % measured, below {bound:.0f} %"),
    "overload": ("{subject} 本班有 {n} 个过载区间，测量值不可信",
                 "{subject}: {n} overloaded intervals in the shift; levels are not reliable"),
    "meter_offline": ("声级计 {meter} 离线（{why}）", "meter {meter} is offline ({why_en})"),
    "clock_offset": ("声级计 {meter} 时钟偏差 {offset:.2f} s，超过 {bound:g} s",
                     "meter {meter}: clock offset {offset:.2f} s beyond {bound:g} s"),
    "calibration_drift": ("声级计 {meter} 校准核查偏差 {deviation} dB，超过 {bound:g} dB："
                          "自上次合格核查以来的测量无效",
                          "meter {meter}: calibrator check deviates by {deviation} dB, beyond "
                          "{bound:g} dB: measurements since the last good check are invalid"),
    "calibration_overdue": ("声级计 {meter} 校准已过期（上次 {last}，周期 {days} 天）",
                            "meter {meter}: calibration overdue (last {last}, interval "
                            "{days} days)"),
}


def texts(rule: str, **args) -> tuple[str, str]:
    """(Chinese, English) text of ``rule`` with its arguments."""
    zh, en = TEXTS[rule]
    return zh.format(**args), en.format(**args)


class EdgeTrigger:
    """Edge triggering with a hold-off for one shift's conditions (module docstring).

    ``update(cond, now_ns)`` returns the occurrence number to raise (0 for the first), or
    None. A condition that turns true again within the hold-off raises once the hold-off has
    passed, if it still holds then. State per key: (active, cleared_ns, raised, armed)."""

    def __init__(self, holdoff_s: float):
        self.holdoff_ns = int(holdoff_s * 1e9)
        self.state: dict[tuple, tuple[bool, int | None, int, bool]] = {}

    def known(self, key: tuple) -> bool:
        return key in self.state

    def raised(self, key: tuple) -> int:
        """How many occurrences of ``key`` were raised (0 for an unknown key)."""
        return self.state.get(key, (False, None, 0, False))[2]

    def seed(self, key: tuple, raised: int) -> None:
        """Start ``key`` from the alerts already stored (a restarted service): ``raised``
        occurrences exist, and the latest is taken to cover the condition if it holds now."""
        self.state[key] = (raised > 0, None, raised, raised > 0)

    def update(self, cond: Condition, now_ns: int) -> int | None:
        active, cleared, raised, armed = self.state.get(cond.key, (False, None, 0, False))
        if cond.active:
            if not armed and (raised == 0 or cleared is None
                              or now_ns - cleared >= self.holdoff_ns):
                self.state[cond.key] = (True, cleared, raised + 1, True)
                return raised
            self.state[cond.key] = (True, cleared, raised, armed)
            return None
        if active:
            self.state[cond.key] = (False, now_ns, raised, False)
        return None
