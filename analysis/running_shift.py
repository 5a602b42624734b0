"""The running shift's dose so far and projected LEX,8h (GBZ/T 189.8-2007 clause 3: LEX,8h
= 10 lg(EA,Te / (p0² · T0))), the arithmetic of the analysis service's in-shift rules
(``analysis/analyzer.py`` ``Analyzer.in_shift``), as plain functions so that the live page
shows exactly what the early warning decides on.

* dose so far, % = 100 · EA,so far / (p0² · T0 · 10^(Llimit/10)): the fraction of the daily
  allowance (the profile's LEX,8h limit over T0 = 8 h) used so far;
* projected LEX,8h = 10 lg((EA,so far + p0² · 10^(Lrecent/10) · Trest) / (p0² · T0)): the
  energy so far plus the rest of the shift at the recent level (LAeq over ``[analysis]
  recent_s``).
"""

from __future__ import annotations

import math

from tingbao.edge.levels import P0_SQUARED, T0_8H

__all__ = ["dose_pct", "projected_lex_8h"]


def dose_pct(ea_so_far_pa2s: float, limit_db: float) -> float:
    """Dose so far in % of the daily allowance: 100 · EA (Pa²·s) / (p0² · 28 800 s ·
    10^(``limit_db``/10)), ``limit_db`` the LEX,8h limit in dB(A)."""
    return 100.0 * ea_so_far_pa2s / (P0_SQUARED * T0_8H * 10 ** (limit_db / 10))


def projected_lex_8h(ea_so_far_pa2s: float, recent_laeq_db: float, remaining_s: float
                     ) -> float:
    """LEX,8h in dB(A) if the ``remaining_s`` seconds left of the shift are as loud as
    ``recent_laeq_db`` (dB(A); NaN: nothing more is added) after ``ea_so_far_pa2s`` Pa²·s.
    NaN when there is no energy at all."""
    rest = (P0_SQUARED * 10 ** (recent_laeq_db / 10) * max(remaining_s, 0.0)
            if math.isfinite(recent_laeq_db) else 0.0)
    total = ea_so_far_pa2s + rest
    if not total > 0:
        return math.nan
    return 10 * math.log10(total / (P0_SQUARED * T0_8H))
