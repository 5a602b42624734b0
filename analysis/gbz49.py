"""GBZ 49-2014 职业性噪声聋的诊断 (diagnosis of occupational noise-induced deafness), the
screening side of it (clauses 3–4 and Annex A):

* per ear, the speech-frequency weighted value (语频听阈加权值)
  ``0.9·mean(HL 0.5, 1, 2 kHz) + 0.1·HL 4 kHz`` (dB HL);
* the binaural high-frequency threshold average (双耳高频平均听阈, HFTA) of 3, 4 and 6 kHz over
  both ears;
* both from thresholds corrected for age and sex per GB/T 7582 (:mod:`.gbt7582`): GBZ 49
  subtracts the age-group correction (:func:`tingbao.analysis.gbt7582.group_correction`);
  ``correction="formula"`` subtracts α(Y − 18)² at the exact age instead, ``"none"`` nothing;
* **suspected occupational noise deafness** (for referral to diagnosis): HFTA ≥ 40 dB with
  ≥ 3 years of noise work;
* the **grade** by the better ear's weighted value: mild 26–40, moderate 41–55, severe ≥ 56
  dB HL. The standard prints integer edges; a weighted value is rarely whole, so tingbao reads
  them as mild 25 < v ≤ 40, moderate 40 < v ≤ 55, severe v > 55 (no gaps; for whole values the
  same as printed). A grade belongs to a suspected case; :func:`assess` gives ``none``
  otherwise, and :func:`grade_of` grades any value.

The numbers are data (``data/gbz49_2014.toml``, with sources and confidence). Thresholds are
arrays whose last axis is the audiogram frequencies 0.5, 1, 2, 3, 4, 6 kHz
(:data:`FREQUENCIES_HZ`), left and right ear separately; everything broadcasts.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tingbao.edge.settings import ConfigError, load_toml

from .gbt7582 import check_sex, data_path, group_correction, median_age_shift

__all__ = ["CORRECTIONS", "FREQUENCIES_HZ", "GRADES", "Gbz49", "Gbz49Result", "assess",
           "corrected", "grade_of", "hfta", "rules", "speech_value"]

FREQUENCIES_HZ = (500, 1000, 2000, 3000, 4000, 6000)
"""The audiogram frequencies of an occupational exam, the last axis of every threshold array."""
GRADES = ("none", "mild", "moderate", "severe")
CORRECTIONS = ("group", "formula", "none")
ROUND_DECIMALS = 6
"""Weighted values and averages are rounded to 1e-6 dB, so that binary floating point never
moves a value that is exactly on an edge (0.9·55 + 0.1·55 = 55.000000000000007) into the
next grade."""


@dataclasses.dataclass(frozen=True)
class Gbz49:
    """The numbers of ``data/gbz49_2014.toml`` [gbz49]."""

    speech_idx: tuple[int, ...]
    speech_weight: float
    high_weight_idx: int
    high_weight: float
    high_idx: tuple[int, ...]
    suspected_hfta_db: float
    suspected_noise_years: float
    noise_work_lex_db: float
    grade_names: tuple[str, ...]
    grade_names_zh: tuple[str, ...]
    grade_above_db: tuple[float, ...]


def _idx(freqs) -> tuple[int, ...]:
    try:
        return tuple(FREQUENCIES_HZ.index(int(f)) for f in freqs)
    except ValueError:
        raise ValueError(f"frequencies {list(freqs)} not among {FREQUENCIES_HZ}") from None


@functools.cache
def rules() -> Gbz49:
    """The shipped GBZ 49 numbers; ConfigError when the file is bad."""
    path = data_path("gbz49_2014.toml")
    try:
        g = load_toml(path, "GBZ 49 data")["gbz49"]
        out = Gbz49(_idx(g["speech_frequencies_hz"]), float(g["speech_weight"]),
                    _idx([g["high_weight_frequency_hz"]])[0], float(g["high_weight"]),
                    _idx(g["high_frequencies_hz"]), float(g["suspected_hfta_db"]),
                    float(g["suspected_noise_years"]), float(g["noise_work_lex_db"]),
                    tuple(g["grade_names"]), tuple(g["grade_names_zh"]),
                    tuple(float(x) for x in g["grade_above_db"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"malformed [gbz49] ({e!r})", file=path) from None
    if out.grade_names != GRADES[1:] or list(out.grade_above_db) != sorted(out.grade_above_db):
        raise ConfigError("[gbz49] grades must be mild, moderate, severe with rising edges",
                          file=path)
    return out


def corrected(thresholds_db, age_years, sex: str, correction: str = "group") -> np.ndarray:
    """``thresholds_db`` (dB HL, last axis :data:`FREQUENCIES_HZ`) minus the age/sex effect:
    ``group`` GBZ 49's age-group table, ``formula`` α(Y − 18)² at the exact age, ``none``."""
    t = np.asarray(thresholds_db, dtype=float)
    check_sex(sex)
    if correction == "group":
        return t - group_correction(age_years, sex)
    if correction == "formula":
        return t - median_age_shift(age_years, sex, FREQUENCIES_HZ)
    if correction == "none":
        return t
    raise ValueError(f"correction {correction!r}: one of {', '.join(CORRECTIONS)}")


def speech_value(ear_db) -> np.ndarray:
    """The speech-frequency weighted value of one ear, dB HL: 0.9·mean(0.5, 1, 2 kHz) +
    0.1·4 kHz (shape: the leading axes of ``ear_db``)."""
    r = rules()
    e = np.asarray(ear_db, dtype=float)
    v = (r.speech_weight * e[..., list(r.speech_idx)].mean(axis=-1)
         + r.high_weight * e[..., r.high_weight_idx])
    return np.round(v, ROUND_DECIMALS)


def hfta(left_db, right_db) -> np.ndarray:
    """The binaural high-frequency threshold average: the mean of 3, 4, 6 kHz of both ears, dB
    HL."""
    r = rules()
    idx = list(r.high_idx)
    both = np.concatenate([np.asarray(left_db, dtype=float)[..., idx],
                           np.asarray(right_db, dtype=float)[..., idx]], axis=-1)
    return np.round(both.mean(axis=-1), ROUND_DECIMALS)


def grade_of(value_db) -> np.ndarray:
    """GBZ 49 grade names of weighted values (dB HL): ``none`` ≤ 25 < ``mild`` ≤ 40 <
    ``moderate`` ≤ 55 < ``severe``."""
    edges = np.asarray(rules().grade_above_db)
    k = np.searchsorted(edges, np.asarray(value_db, dtype=float), side="left")
    return np.asarray(GRADES)[k]


@dataclasses.dataclass(frozen=True)
class Gbz49Result:
    """GBZ 49 screening of one audiogram (dB HL, after the age/sex ``correction``)."""

    hfta_db: float
    speech_left_db: float
    speech_right_db: float
    better_ear_db: float
    suspected: bool
    grade: str
    correction: str
    noise_years: float | None

    @property
    def grade_zh(self) -> str:
        r = rules()
        return "无" if self.grade == "none" else r.grade_names_zh[r.grade_names.index(self.grade)]


def assess(left_db, right_db, *, age_years: float, sex: str, noise_years: float | None,
           correction: str = "group") -> Gbz49Result:
    """GBZ 49 for one audiogram: thresholds of each ear (dB HL at :data:`FREQUENCIES_HZ`), the
    worker's age (years) and sex, years of noise work (None: unknown, never suspected)."""
    r = rules()
    left = corrected(left_db, age_years, sex, correction)
    right = corrected(right_db, age_years, sex, correction)
    h = float(hfta(left, right))
    sl, sr = float(speech_value(left)), float(speech_value(right))
    better = min(sl, sr)
    suspected = (noise_years is not None and noise_years >= r.suspected_noise_years
                 and h >= r.suspected_hfta_db)
    grade = str(grade_of(better)) if suspected else "none"
    return Gbz49Result(h, sl, sr, better, bool(suspected), grade, correction, noise_years)
