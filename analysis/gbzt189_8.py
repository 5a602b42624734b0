"""GBZ/T 189.8-2007 (工作场所物理因素测量 第8部分：噪声) exposure arithmetic over sound exposure
sums, as the store holds them (ISO 9612:2009 = GB/T 21230-2014 clause 3 for the definitions).

Energies add, decibels do not: every function here takes the A-weighted sound exposure EA in
Pa²·s (``SUM(ea)`` from InfluxDB, :func:`tingbao.collector.schema.exposure_sums`) and the time
it covers in seconds, never an average of decibels.
"""

from __future__ import annotations

import math

from tingbao.edge.levels import P0_SQUARED, T0_8H

__all__ = ["laeq", "lex_8h", "projected_lex_8h"]


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
