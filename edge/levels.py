"""Level arithmetic: pascals, energies and decibels (IEC 61672-1 clause 3, ISO 1996-1).

Energies add, decibels do not. Everything that crosses a process boundary carries the
sound exposure E = ∫ p² dt in Pa²·s next to the level, so any longer period's level is a sum
(ARCHITECTURE.md, "Where is LEX computed?").
"""

from __future__ import annotations

import numpy as np

P0 = 20e-6
"""Reference sound pressure p0 = 20 µPa (IEC 61672-1 clause 3.2), in Pa."""

P0_SQUARED = P0 * P0
"""p0² in Pa²."""

T0_8H = 28_800.0
"""Reference duration T0 = 8 h for LEX,8h (ISO 9612 clause 3.6, GBZ/T 189.8), in seconds."""


def level_from_mean_square(ms):
    """Level in dB re 20 µPa of a mean-square sound pressure ``ms`` in Pa².

    Zero energy gives ``-inf``; never a warning. Shape is preserved.
    """
    ms = np.asarray(ms, dtype=float)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(ms / P0_SQUARED)


def mean_square_from_level(level):
    """Mean-square sound pressure in Pa² of a level in dB re 20 µPa (inverse of
    :func:`level_from_mean_square`)."""
    return P0_SQUARED * 10.0 ** (0.1 * np.asarray(level, dtype=float))


def leq_from_exposure(exposure, duration):
    """Equivalent continuous level Leq,T in dB re 20 µPa from sound exposure ``exposure``
    (Pa²·s) over ``duration`` seconds (IEC 61672-1 clause 3.9, eq. 3):
    Leq,T = 10 lg(E / (p0² T)). Zero duration gives NaN."""
    exposure = np.asarray(exposure, dtype=float)
    duration = np.asarray(duration, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        safe = np.where(duration > 0, duration, 1.0)
        return np.where(duration > 0, level_from_mean_square(exposure / safe), np.nan)


def exposure_level(exposure):
    """Sound exposure level LE in dB re (20 µPa)²·1 s from E in Pa²·s (IEC 61672-1 clause 3.11)."""
    return level_from_mean_square(np.asarray(exposure, dtype=float) / 1.0)


def lex_8h(exposure):
    """Daily noise exposure level LEX,8h in dB(A) from the A-weighted sound exposure of the
    working day EA,Te in Pa²·s: LEX,8h = 10 lg(EA,Te / (p0² · 28 800 s))
    (GBZ/T 189.8-2007 clause 3; ISO 9612:2009 eq. 4/clause 3.6)."""
    return level_from_mean_square(np.asarray(exposure, dtype=float) / T0_8H)


def energy_sum(levels, axis=None):
    """Energetic sum 10 lg Σ 10^(0.1 L) of levels in dB (e.g. band levels to an overall level)."""
    levels = np.asarray(levels, dtype=float)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.sum(10.0 ** (0.1 * levels), axis=axis))
