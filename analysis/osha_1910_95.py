"""29 CFR 1910.95 (OSHA occupational noise exposure) Appendix A and Table G-16a: noise dose and
8-hour time-weighted average, the arithmetic of a noise dosimeter. NIOSH (Criteria document
98-126) uses the same functions with its own criterion and exchange rate: they take the
numbers of a regulatory profile (:func:`criterion`), never constants of their own.

* Reference duration (Table G-16a): T(L) = Tc / 2^((L − Lc)/q) h, with criterion level Lc
  (OSHA 90 dB(A), NIOSH 85), criterion duration Tc = 8 h and exchange rate q (OSHA 5 dB,
  NIOSH 3): 90 → 8 h, 95 → 4, 100 → 2, 105 → 1, 110 → 0.5, 115 → 0.25 h for OSHA.
* Dose (Appendix A): D = 100 Σ Cn/Tn % over the levels Ln at or above the threshold (OSHA
  80 dB(A): 1910.95(d)(2)(ii) integrates every level from 80 dB(A); a level below it adds
  nothing), Cn the time spent at Ln.
* TWA = (q / lg 2) lg(D/100) + Lc: OSHA prints 16.61 lg(D/100) + 90 (5/lg 2 = 16.6096). For
  q = 3 the factor is 3/lg 2 = 9.966, where NIOSH prints 10 lg(D/100) + 85: the printed form
  is 0.034 dB higher per tenfold dose (0.034 dB at 1 000 %, 0 at 100 %). tingbao uses q/lg 2,
  the exact inverse of T(L), so that a constant level L for 8 h reads back TWA = L.

Levels above 130 dB(A) (the top of Table G-16a) are counted with the same formula; hearing
protectors are not taken into account (1910.95(d)(2)(i)). A dose needs each level on its own
(a threshold and a 5 dB exchange cannot be applied to a sum of energies): the store computes
it over the 1 s points (:func:`tingbao.collector.schema.dose_sums`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tingbao.collector.registry.profiles import Profile, profile

__all__ = ["DoseCriterion", "allowed_time_h", "criterion", "dose_from_profile", "dose_pct",
           "twa_db"]

CRITERION_H = 8.0
"""Criterion duration Tc of Table G-16a and the TWA, h."""


@dataclasses.dataclass(frozen=True)
class DoseCriterion:
    """A dosimeter's settings: criterion level ``criterion_db`` (dB(A): 100 % dose for
    ``criterion_h`` hours at it), exchange rate ``exchange_db`` (dB per halving of the allowed
    time) and threshold ``threshold_db`` (dB(A): lower levels add no dose; 0 = none)."""

    criterion_db: float
    exchange_db: float
    threshold_db: float = 0.0
    criterion_h: float = CRITERION_H

    def __post_init__(self):
        if not self.exchange_db > 0 or not self.criterion_h > 0:
            raise ValueError(f"exchange rate {self.exchange_db!r} dB and criterion duration "
                             f"{self.criterion_h!r} h must be > 0")


def criterion(prof: Profile | str) -> DoseCriterion:
    """The dosimeter settings of a regulatory profile: criterion level = ``lex_limit_db``
    (OSHA PEL 90, NIOSH REL 85 dB(A)), ``exchange_rate_db``, ``threshold_db``, 8 h."""
    p = prof if isinstance(prof, Profile) else profile(prof)
    return DoseCriterion(p.lex_limit_db, p.exchange_rate_db, p.threshold_db)


def allowed_time_h(level_db, criterion_db: float, exchange_db: float,
                   criterion_h: float = CRITERION_H):
    """Reference duration T in hours for the A-weighted level ``level_db`` (dB(A), scalar or
    array, any shape): Tc / 2^((L − Lc)/q) (Table G-16a). Same shape as ``level_db``."""
    return criterion_h / np.power(2.0, (np.asarray(level_db, dtype=float) - criterion_db)
                                  / exchange_db)


def dose_pct(levels_db, durations_h, *, criterion_db: float, exchange_db: float,
             threshold_db: float = 0.0, criterion_h: float = CRITERION_H) -> float:
    """Noise dose in % of the levels ``levels_db`` (dB(A)) held for ``durations_h`` (h),
    arrays of the same shape: 100 Σ C/T over the levels L ≥ ``threshold_db`` (Appendix A).
    2 h at 95 + 4 h at 90 + 2 h at 85 dB(A) (OSHA) = 100 (2/4 + 4/8 + 2/16) = 112.5 %."""
    levels = np.asarray(levels_db, dtype=float)
    hours = np.asarray(durations_h, dtype=float)
    if levels.shape != hours.shape:
        raise ValueError(f"levels {levels.shape} and durations {hours.shape} differ in shape")
    if np.any(~np.isfinite(levels)) or np.any(~np.isfinite(hours)) or np.any(hours < 0):
        raise ValueError("levels must be finite dB(A) and durations finite hours >= 0")
    counted = levels >= threshold_db
    t = allowed_time_h(levels[counted], criterion_db, exchange_db, criterion_h)
    return 100.0 * float(np.sum(hours[counted] / t))


def twa_db(dose: float, criterion_db: float, exchange_db: float) -> float:
    """8-hour TWA in dB(A) of a dose ``dose`` in %: (q / lg 2) lg(D/100) + Lc (Appendix A;
    16.61 lg(D/100) + 90 for OSHA). 50 % ↔ 85 dB(A), 100 % ↔ Lc. NaN for no dose (D ≤ 0)."""
    if not dose > 0 or not math.isfinite(dose):
        return math.nan
    return exchange_db / math.log10(2.0) * math.log10(dose / 100.0) + criterion_db


def dose_from_profile(levels_db, durations_h, prof: Profile | str) -> float:
    """:func:`dose_pct` (%) with the settings of profile ``prof`` (:func:`criterion`)."""
    c = criterion(prof)
    return dose_pct(levels_db, durations_h, criterion_db=c.criterion_db,
                    exchange_db=c.exchange_db, threshold_db=c.threshold_db,
                    criterion_h=c.criterion_h)
