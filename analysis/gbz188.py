"""GBZ 188-2014 职业健康监护技术规范, noise (clause 8.4 / 噪声作业): the noise-susceptible
worker (噪声易感者) and the periodic exam interval.

* **Noise-susceptible**: every pre-placement threshold ≤ 25 dB HL, yet within one year of
  noise work either ear ≥ 65 dB HL at 3, 4 or 6 kHz (:func:`is_susceptible`).
* **Exam interval** from the worker's LEX,8h (dB(A)): ≥ 85 → every year; 80 ≤ L < 85 → every
  two years; below 80 no periodic exam is required (None) (:func:`exam_interval_years`).
  The next exam is due that many years after the last one (:func:`next_due`; 29 February →
  28 February in a common year); an exam is overdue from the day after it was due
  (:func:`is_overdue`).

The numbers are data (``data/gbz49_2014.toml`` [gbz188], sources and confidence there).
Thresholds are arrays with last axis 0.5, 1, 2, 3, 4, 6 kHz (:data:`.gbz49.FREQUENCIES_HZ`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools

import numpy as np

from tingbao.edge.settings import ConfigError, load_toml

from .gbt7582 import data_path
from .gbz49 import FREQUENCIES_HZ

__all__ = ["Gbz188", "exam_interval_years", "is_overdue", "is_susceptible", "next_due",
           "rules"]


@dataclasses.dataclass(frozen=True)
class Gbz188:
    """The numbers of ``data/gbz49_2014.toml`` [gbz188]."""

    pre_placement_max_db: float
    within_years: float
    susceptible_idx: tuple[int, ...]
    susceptible_threshold_db: float
    yearly_from_lex_db: float
    biennial_from_lex_db: float
    confidence_susceptible: str
    confidence_interval: str


@functools.cache
def rules() -> Gbz188:
    path = data_path("gbz49_2014.toml")
    try:
        g = load_toml(path, "GBZ 188 data")["gbz188"]
        return Gbz188(float(g["pre_placement_max_db"]), float(g["susceptible_within_years"]),
                      tuple(FREQUENCIES_HZ.index(int(f)) for f in g["susceptible_frequencies_hz"]),
                      float(g["susceptible_threshold_db"]), float(g["yearly_from_lex_db"]),
                      float(g["biennial_from_lex_db"]), g["confidence_susceptible"],
                      g["confidence_interval"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"malformed [gbz188] ({e!r})", file=path) from None


def is_susceptible(pre_left_db, pre_right_db, left_db, right_db, noise_years: float | None
                   ) -> bool:
    """Whether the worker is noise-susceptible: the pre-placement audiogram (``pre_*``, dB HL)
    ≤ 25 at every frequency of both ears, and this audiogram (``left_db``, ``right_db``),
    taken after ``noise_years`` ≤ 1 year of noise work (None: unknown → False), has 3, 4 or
    6 kHz ≥ 65 dB HL in either ear. Uncorrected thresholds (the criterion is absolute)."""
    r = rules()
    if noise_years is None or noise_years > r.within_years:
        return False
    pre = np.stack([np.asarray(pre_left_db, float), np.asarray(pre_right_db, float)])
    now = np.stack([np.asarray(left_db, float), np.asarray(right_db, float)])
    return bool(np.all(pre <= r.pre_placement_max_db)
                and np.any(now[:, list(r.susceptible_idx)] >= r.susceptible_threshold_db))


def exam_interval_years(lex_db: float | None) -> int | None:
    """Years between periodic exams for a worker at ``lex_db`` (LEX,8h, dB(A)): 1 at ≥ 85, 2 at
    80 ≤ L < 85, None below 80 or unknown (None or NaN: no periodic exam can be scheduled)."""
    r = rules()
    if lex_db is None or not np.isfinite(lex_db):
        return None
    if lex_db >= r.yearly_from_lex_db:
        return 1
    if lex_db >= r.biennial_from_lex_db:
        return 2
    return None


def next_due(last_exam: dt.date, interval_years: int | None) -> dt.date | None:
    """The date the next exam is due: ``interval_years`` after ``last_exam`` (None: none due)."""
    if interval_years is None:
        return None
    year = last_exam.year + int(interval_years)
    try:
        return last_exam.replace(year=year)
    except ValueError:  # 29 February
        return dt.date(year, 2, 28)


def is_overdue(due: dt.date | None, today: dt.date) -> bool:
    """True when an exam was due before ``today`` (due today is not overdue yet)."""
    return due is not None and today > due
