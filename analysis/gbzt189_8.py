"""GBZ/T 189.8-2007 (工作场所物理因素测量 第8部分：噪声) exposure arithmetic over sound exposure
sums, as the store holds them (ISO 9612:2009 = GB/T 21230-2014 clause 3 for the definitions).

Energies add, decibels do not: every function here takes the A-weighted sound exposure EA in
Pa²·s (``SUM(ea)`` from InfluxDB, :func:`tingbao.collector.schema.exposure_sums`) and the time
it covers in seconds, never an average of decibels. The one exception is
:func:`lex_8h_from_tasks`, the task-based form for levels measured per task or post (each
LAeq,Tm already an energy mean), which weights energies, not decibels, by duration.
"""

from __future__ import annotations

import math

import numpy as np

from tingbao.edge.levels import P0_SQUARED, T0_8H

__all__ = ["laeq", "lex_8h", "lex_8h_from_tasks", "projected_lex_8h"]

T0_8H_H = T0_8H / 3600.0
"""The reference duration T0 = 8 h, in hours."""


def laeq(ea_pa2s: float, covered_s: float) -> float:
    """LAeq,T in dB(A) of exposure ``ea_pa2s`` (Pa²·s) over ``covered_s`` seconds of valid
    audio: 10 lg(EA / (p0² T)) (IEC 61672-1 clause 3.9). NaN without coverage or energy."""
    if not covered_s > 0 or not ea_pa2s > 0:
        return math.nan
    return 10.0 * math.log10(ea_pa2s / (P0_SQUARED * covered_s))


def lex_8h(ea_pa2s: float) -> float:
    """LEX,8h in dB(A) of a working day's exposure EA,Te (Pa²·s):
    10 lg(EA,Te / (p0² · 28 800 s)) (GBZ/T 189.8-2007 clause 3, ISO 9612 eq. 7)."""
    if not ea_pa2s > 0:
        return math.nan
    return 10.0 * math.log10(ea_pa2s / (P0_SQUARED * T0_8H))


def projected_lex_8h(ea_pa2s: float, covered_s: float, shift_s: float = T0_8H) -> float:
    """The LEX,8h a shift of ``shift_s`` seconds would reach if the rest of it were as loud as
    the ``covered_s`` seconds measured so far (exposure ``ea_pa2s``, Pa²·s):
    LAeq,so far + 10 lg(Te / T0) with Te = ``shift_s`` and T0 = 8 h (GBZ/T 189.8-2007 clause
    3). Uses the covered time, not a count of intervals, so intervals of any length and gaps
    are right. NaN before anything was measured."""
    if not shift_s > 0:
        raise ValueError(f"shift length must be > 0 s, got {shift_s!r}")
    level = laeq(ea_pa2s, covered_s)
    return level + 10.0 * math.log10(shift_s / T0_8H) if math.isfinite(level) else math.nan


def lex_8h_from_tasks(levels_db, hours) -> float:
    """LEX,8h in dB(A) of a day made of tasks or posts m, each with its equivalent level
    ``levels_db[m]`` (LAeq,Tm, dB(A)) over ``hours[m]`` (Tm, h): 10 lg Σ (Tm / 8 h)
    10^(0.1 Lm) (GBZ/T 189.8-2007 clause 6 for several posts; ISO 9612:2009 = GB/T
    21230-2014 clause 9, task-based). 1-D arrays (or scalars) of the same length; hours ≥ 0,
    and a task of 0 h adds nothing. NaN when no time is given."""
    levels = np.atleast_1d(np.asarray(levels_db, dtype=float))
    t = np.atleast_1d(np.asarray(hours, dtype=float))
    if levels.shape != t.shape or levels.ndim != 1:
        raise ValueError(f"levels {levels.shape} and hours {t.shape} must be 1-D arrays of "
                         "the same length")
    if not (np.all(np.isfinite(levels)) and np.all(np.isfinite(t))) or np.any(t < 0):
        raise ValueError("task levels must be finite dB and durations finite hours >= 0")
    worked = t > 0
    if not np.any(worked):
        return math.nan
    levels, t = levels[worked], t[worked]
    # shift by the loudest level before exponentiating: no overflow for any dB value
    top = float(levels.max())
    energy = float(np.sum(t / T0_8H_H * 10.0 ** (0.1 * (levels - top))))
    return top + 10.0 * math.log10(energy)
