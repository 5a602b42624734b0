"""ISO 4869-2:2018 (= the method GB/T 23466-2009 selects protectors by): the effective
A-weighted sound pressure level L'A under a hearing protector, by the octave-band, HML and SNR
methods.

* Clause 5, the assumed protection value of each octave band f (63 Hz … 8 kHz):
  APV_f = m_f − α·s_f, m_f and s_f the mean and standard deviation of the protector's
  attenuation (dB), α from the protection performance (:data:`ALPHA`: 84 % → 1.00).
* Clause 6, octave-band method: L'A = 10 lg Σ_f 10^(0.1 (L_f + A_f − APV_f)), L_f the octave
  levels (dB re 20 µPa, unweighted), A_f the A-weighting of the octave's midband
  (:data:`A_WEIGHTING_DB`).
* Clause 7, HML method, with d = LC − LA: d ≤ 2 dB → PNR = M − (H − M)/4·(d − 2); d > 2 dB →
  PNR = M − (M − L)/8·(d − 2); L'A = LA − PNR. H, M and L are used rounded to whole dB, as the
  datasheet prints them (:func:`round_rating`).
* Clause 8, SNR method: L'A = LC − SNR; clause 8.2, the SNR of a protector from its APV_f in
  pink noise (octave levels equal): SNR = LC − L'A (:func:`snr_from_apv`).

Worked example (ISO 4869-2:2018 Annexes B–D; ../shared/reference/noise-standards.md, checked
2026-11-29): octave levels 75, 84, 86, 88, 97, 99, 97, 96 dB, LA 104, LC 103; APV84 4.1, 6.4,
10.8, 15.0, 18.8, 23.4, 31.4, 28.9 dB → octave-band L'A 81.4; H/M/L 24/18/13 → PNR 22.5,
L'A 81.5; SNR 21 → 82.

Arrays are float64 of shape (8,) in the order of :data:`OCTAVE_BANDS_HZ`, or (n, 8) for n
spectra at once. Levels in dB re 20 µPa; attenuations in dB. Derating and the verdict are
GB/T 23466's (:mod:`tingbao.analysis.gbt23466`).
"""

from __future__ import annotations

import math

import numpy as np

from tingbao.edge.levels import energy_sum

__all__ = ["ALPHA", "A_WEIGHTING_DB", "C_WEIGHTING_DB", "OCTAVE_BANDS_HZ", "THIRDS_OF_OCTAVE",
           "a_weighted", "alpha_for", "apv", "c_weighted", "hml_level", "octave_band_level",
           "octaves_from_thirds", "pnr", "round_rating", "snr_from_apv", "snr_level"]

OCTAVE_BANDS_HZ = (63, 125, 250, 500, 1000, 2000, 4000, 8000)
"""Midband frequencies of the eight octave bands of ISO 4869-2 (Hz)."""

A_WEIGHTING_DB = np.array([-26.2, -16.1, -8.6, -3.2, 0.0, 1.2, 1.0, -1.1])
"""A_f: IEC 61672-1 A-weighting at the octave midbands, as ISO 4869-2 tabulates it (dB)."""

C_WEIGHTING_DB = np.array([-0.8, -0.2, 0.0, 0.0, 0.0, -0.2, -0.8, -3.0])
"""C_f: IEC 61672-1 C-weighting at the octave midbands (dB), for LC from octave levels."""

ALPHA = {50: 0.0, 75: 0.67, 80: 0.84, 84: 1.00, 90: 1.28, 95: 1.64, 98: 2.00}
"""ISO 4869-2:2018 clause 5: α by protection performance (% of wearers protected)."""

THIRDS_OF_OCTAVE = {
    63: ("50", "63", "80"), 125: ("100", "125", "160"), 250: ("200", "250", "315"),
    500: ("400", "500", "630"), 1000: ("800", "1000", "1250"),
    2000: ("1600", "2000", "2500"), 4000: ("3150", "4000", "5000"),
    8000: ("6300", "8000", "10000"),
}
"""The nominal labels (IEC 61260-1) of the three 1/3-octave bands that make up each octave."""


def alpha_for(protection_pct: int) -> float:
    """α of ISO 4869-2 clause 5 for a protection performance of ``protection_pct`` % (one of
    the keys of :data:`ALPHA`); ValueError naming them otherwise."""
    try:
        return ALPHA[int(protection_pct)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"protection performance {protection_pct!r} %: one of "
                         f"{', '.join(map(str, ALPHA))}") from None


def apv(mean_db, sd_db, alpha: float = 1.0) -> np.ndarray:
    """APV_f = m_f − α·s_f (dB), shape of ``mean_db`` (8,) or (n, 8)."""
    m = np.asarray(mean_db, dtype=float)
    s = np.asarray(sd_db, dtype=float)
    if m.shape != s.shape or m.shape[-1] != len(OCTAVE_BANDS_HZ):
        raise ValueError(f"mean {m.shape} and sd {s.shape} must both have 8 octave bands")
    return m - float(alpha) * s


def _octaves(levels_db) -> np.ndarray:
    x = np.asarray(levels_db, dtype=float)
    if x.shape[-1] != len(OCTAVE_BANDS_HZ):
        raise ValueError(f"octave levels of shape {x.shape}: the last axis must hold the 8 "
                         f"bands {OCTAVE_BANDS_HZ} Hz")
    return x


def _energy_sum_db(x: np.ndarray) -> np.ndarray | float:
    """:func:`tingbao.edge.levels.energy_sum` over the last axis; a float for one spectrum."""
    out = energy_sum(x, axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def a_weighted(octave_levels_db) -> float | np.ndarray:
    """LA (dB re 20 µPa) of unweighted octave levels (8,) or (n, 8)."""
    return _energy_sum_db(_octaves(octave_levels_db) + A_WEIGHTING_DB)


def c_weighted(octave_levels_db) -> float | np.ndarray:
    """LC (dB re 20 µPa) of unweighted octave levels (8,) or (n, 8)."""
    return _energy_sum_db(_octaves(octave_levels_db) + C_WEIGHTING_DB)


def octave_band_level(octave_levels_db, apv_db) -> float | np.ndarray:
    """ISO 4869-2 clause 6: L'A = 10 lg Σ 10^(0.1 (L_f + A_f − APV_f)), dB(A). Broadcasts:
    (8,) levels with (k, 8) APVs give k protectors' L'A on one spectrum."""
    return _energy_sum_db(_octaves(octave_levels_db) + A_WEIGHTING_DB
                          - _octaves(apv_db))


def round_rating(x: float) -> float:
    """A rating (H, M, L, SNR) rounded to whole dB, halves up, as datasheets print it."""
    return float(math.floor(float(x) + 0.5))


def pnr(h_db: float, m_db: float, l_db: float, lc_minus_la_db: float) -> float:
    """ISO 4869-2 clause 7.3: the predicted noise level reduction PNR (dB) for d = LC − LA
    (dB): d ≤ 2 → M − (H − M)/4·(d − 2); d > 2 → M − (M − L)/8·(d − 2); H, M and L rounded to
    whole dB first (:func:`round_rating`)."""
    h, m, low = (round_rating(v) for v in (h_db, m_db, l_db))
    d = float(lc_minus_la_db)
    if not math.isfinite(d):
        raise ValueError(f"LC − LA = {d!r} dB is not a number")
    if d <= 2.0:
        return m - (h - m) / 4.0 * (d - 2.0)
    return m - (m - low) / 8.0 * (d - 2.0)


def hml_level(la_db: float, lc_db: float, h_db: float, m_db: float, l_db: float) -> float:
    """ISO 4869-2 clause 7.3: L'A = LA − PNR (dB(A)) from the A and C levels (dB)."""
    return float(la_db) - pnr(h_db, m_db, l_db, float(lc_db) - float(la_db))


def snr_level(lc_db: float, snr_db: float) -> float:
    """ISO 4869-2 clause 8.3: L'A = LC − SNR (dB(A)); the SNR is used as printed (whole dB)."""
    return float(lc_db) - float(snr_db)


def snr_from_apv(apv_db) -> float:
    """ISO 4869-2 clause 8.2: the SNR (dB, unrounded) of a protector with assumed protection
    values ``apv_db`` (8,): LC − L'A in pink noise (equal octave levels; the reference level
    cancels). Rounded with :func:`round_rating` it is the printed SNR."""
    pink = np.full(len(OCTAVE_BANDS_HZ), 100.0)
    return float(c_weighted(pink) - octave_band_level(pink, apv_db))


def octaves_from_thirds(thirds_db: dict[str, float | None]) -> dict[int, float]:
    """Octave levels (dB) from 1/3-octave levels keyed by nominal label (``"1000"``): each
    octave is the energy sum of its three thirds (:data:`THIRDS_OF_OCTAVE`); an octave with a
    third missing, None or not finite is left out."""
    out = {}
    for fc, labels in THIRDS_OF_OCTAVE.items():
        vals = [thirds_db.get(label) for label in labels]
        if all(v is not None and math.isfinite(float(v)) for v in vals):
            out[fc] = float(energy_sum(vals))
    return out
