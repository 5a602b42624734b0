"""The device-health verdicts that the alert rules (:mod:`.analyzer`) and the live page
(``dashboards/live/data.py``) both show, written once so the page and the alerts agree."""

from __future__ import annotations

import datetime as dt

__all__ = ["calibration_overdue", "gone_by_last_will"]


def gone_by_last_will(online: object, status_ns: int | None, last_interval_ns: int | None
                      ) -> bool:
    """Whether a meter's newest status (``online``, at ``status_ns``, UTC ns) is its last will
    (``online`` is False) and no interval arrived after it (``last_interval_ns``)."""
    return online is False and status_ns is not None and (
        last_interval_ns is None or status_ns >= last_interval_ns)


def calibration_overdue(calibrated: dt.date | None, today: dt.date, interval_days: int
                        ) -> bool:
    """No calibration date, or one more than ``interval_days`` before ``today`` (the
    registry's ``[analysis] calibration_interval_days``, one year by JJG 188)."""
    return calibrated is None or (today - calibrated).days > interval_days
