"""ISO 1999:2013 (= GB/T 14366-2017, 声学 听力保护 噪声所致听力损失的评估), clause 6: the
noise-induced permanent threshold shift (NIPTS) of a population after t years at LEX,8h, and
its combination with the age effect.

* Median (clause 6.3.1, Formula 2): N50 = [u + v·lg(t/t0)]·(LEX,8h − L0)² for LEX,8h > L0 (else
  0), t0 = 1 year, 10 ≤ t ≤ 40 years; for t < 10 years N(t) = N(10 a)·lg(t + 1)/lg(11)
  (Formula 3; below 1 year an extrapolation).
* Fractiles (6.3.2): N_Q = N50 + k·du for Q < 0.5, N50 − k·dl for Q > 0.5, with
  du = [Xu + Yu·lg(t/t0)]·(LEX,8h − L0)², dl = [Xl + Yl·lg(t/t0)]·(LEX,8h − L0)², k the
  standard normal deviate of the fractile (Table 2). Q is the fraction of the population
  whose NIPTS exceeds N_Q (N10 is the upper, worse tenth).
* With age (Formula 1): H' = H + N − H·N/120 (dB; H the age-related threshold, e.g.
  :func:`tingbao.analysis.gbt7582.median_age_shift`).
* A job's exposure over years (:func:`predict_job`): the energy mean of its stored daily
  LEX,8h values, 10 lg(mean 10^(0.1·L)), taken as the long-term LEX,8h.

Coefficients are data (``data/iso1999_2013.toml``: u, v, L0 checked; the spread coefficients
checked against an independent implementation and the Annex D examples; the lower spread
confidence M, Yl at 500 Hz provisional). Levels in dB(A), years in years, shifts in dB;
results are arrays over :data:`FREQUENCIES_HZ` (0.5–6 kHz) broadcast against the inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable

import numpy as np

from tingbao.edge.settings import ConfigError, load_toml

from .gbt7582 import data_path

__all__ = ["FREQUENCIES_HZ", "Iso1999", "JobPrediction", "coefficients", "combine_age",
           "energy_mean_db", "k_of", "n50", "nq", "predict_job", "predict_lex"]

FREQUENCIES_HZ = (500, 1000, 2000, 3000, 4000, 6000)


@dataclasses.dataclass(frozen=True)
class Iso1999:
    """The numbers of ``data/iso1999_2013.toml``; arrays over :data:`FREQUENCIES_HZ`."""

    u: np.ndarray
    v: np.ndarray
    L0: np.ndarray
    Xu: np.ndarray
    Yu: np.ndarray
    Xl: np.ndarray
    Yl: np.ndarray
    q: np.ndarray
    k: np.ndarray
    t0: float
    short_years: float
    divisor_db: float
    provisional: tuple[str, ...]


@functools.cache
def coefficients() -> Iso1999:
    path = data_path("iso1999_2013.toml")
    d = load_toml(path, "ISO 1999 data")
    try:
        c, f = d["coefficients"], d["fractiles"]
        if tuple(c["frequencies_hz"]) != FREQUENCIES_HZ:
            raise ValueError(f"frequencies {c['frequencies_hz']} != {FREQUENCIES_HZ}")
        arr = {k: np.asarray(c[k], dtype=float) for k in ("u", "v", "L0", "Xu", "Yu", "Xl", "Yl")}
        return Iso1999(**arr, q=np.asarray(f["q"], float), k=np.asarray(f["k"], float),
                       t0=float(d["reference_years"]), short_years=float(d["short_exposure_years"]),
                       divisor_db=float(d["age_noise_divisor_db"]),
                       provisional=tuple(c.get("provisional", ())))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"malformed ({e!r})", file=path) from None


def k_of(q: float) -> float:
    """k of fractile ``q`` (0.05–0.95 in steps of 0.05, Table 2; symmetric about 0.5)."""
    c = coefficients()
    qq = min(q, 1.0 - q)
    i = np.flatnonzero(np.isclose(c.q, qq))
    if not 0.0 < q < 1.0 or not len(i):
        raise ValueError(f"fractile {q!r}: one of 0.05, 0.10, … 0.95")
    return float(c.k[i[0]])


def _parts(lex_db, years):
    """(lg term at max(t, 10 a), (L − L0)² clipped at 0, short-exposure factor), broadcast to
    (..., 6)."""
    c = coefficients()
    lex = np.asarray(lex_db, dtype=float)[..., None]
    t = np.asarray(years, dtype=float)[..., None]
    if np.any(t < 0):
        raise ValueError("exposure years must be ≥ 0")
    lg = np.log10(np.maximum(t, c.short_years) / c.t0)
    sq = np.where(lex > c.L0, (lex - c.L0) ** 2, 0.0)
    scale = np.where(t < c.short_years, np.log10(t + 1.0) / math.log10(c.short_years + 1.0),
                     1.0)
    return lg, sq, scale


def n50(lex_db, years) -> np.ndarray:
    """Median NIPTS N50 (dB) at 0.5–6 kHz after ``years`` at ``lex_db`` (LEX,8h, dB(A))."""
    c = coefficients()
    lg, sq, scale = _parts(lex_db, years)
    return scale * (c.u + c.v * lg) * sq


def nq(lex_db, years, q: float) -> np.ndarray:
    """NIPTS (dB) of fractile ``q`` (e.g. 0.10: exceeded by the worst 10 %) at 0.5–6 kHz."""
    c = coefficients()
    k = k_of(q)
    lg, sq, scale = _parts(lex_db, years)
    mid = (c.u + c.v * lg) * sq
    if q < 0.5:
        spread = k * (c.Xu + c.Yu * lg) * sq
    elif q > 0.5:
        spread = -k * (c.Xl + c.Yl * lg) * sq
    else:
        spread = 0.0
    return scale * (mid + spread)


def combine_age(h_db, n_db) -> np.ndarray:
    """H' = H + N − H·N/120 (dB): the threshold from age (``h_db``) and noise (``n_db``)."""
    h = np.asarray(h_db, dtype=float)
    n = np.asarray(n_db, dtype=float)
    return h + n - h * n / coefficients().divisor_db


def energy_mean_db(levels_db: Iterable[float]) -> float:
    """10 lg(mean 10^(0.1·L)) of finite levels (dB); NaN when there is none."""
    x = np.asarray([v for v in levels_db if v is not None and math.isfinite(v)], dtype=float)
    if not x.size:
        return float("nan")
    top = x.max()
    return float(top + 10.0 * np.log10(np.mean(10.0 ** (0.1 * (x - top)))))


@dataclasses.dataclass(frozen=True)
class JobPrediction:
    """ISO 1999 prediction for a job: its long-term ``lex_db`` (energy mean of ``days``
    stored daily LEX,8h), and N50 / N10 (dB at 0.5–6 kHz) after each of ``years``."""

    lex_db: float
    days: int
    years: tuple[float, ...]
    n50_db: np.ndarray    # (len(years), 6)
    n10_db: np.ndarray    # (len(years), 6)

    def as_dict(self) -> dict:
        return {"lex_db": self.lex_db, "days": self.days, "years": list(self.years),
                "frequencies_hz": list(FREQUENCIES_HZ),
                "n50_db": np.round(self.n50_db, 1).tolist(),
                "n10_db": np.round(self.n10_db, 1).tolist()}


def predict_lex(lex_db: float, days: int, years=(10.0, 20.0, 30.0, 40.0)) -> JobPrediction:
    """ISO 1999 N50 and N10 after each of ``years`` (years of exposure) at the long-term
    LEX,8h ``lex_db`` (dB(A)), the energy mean of ``days`` daily values."""
    ys = tuple(float(y) for y in years)
    t = np.asarray(ys)
    lex_t = np.full_like(t, lex_db)
    return JobPrediction(lex_db, days, ys, n50(lex_t, t), nq(lex_t, t, 0.10))


def predict_job(daily_lex_db: Iterable[float], years=(10.0, 20.0, 30.0, 40.0)) -> JobPrediction:
    """ISO 1999 N50 and N10 for a job from its history of daily LEX,8h (dB(A))."""
    levels = [v for v in daily_lex_db if v is not None and math.isfinite(v)]
    lex = energy_mean_db(levels)
    if not levels:
        ys = tuple(float(y) for y in years)
        nan = np.full((len(ys), len(FREQUENCIES_HZ)), np.nan)
        return JobPrediction(lex, 0, ys, nan, nan)
    return predict_lex(lex, len(levels), years)
