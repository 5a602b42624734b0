"""GB/T 7582-2004 (= ISO 7029:2000, identical adoption), 声学 听阈与年龄关系的统计分布: the
median age effect on the hearing threshold of otologically normal persons (clause 4),

    ΔH_md(Y) = α·(Y − 18)²  dB,  Y = age in years, 18 ≤ Y ≤ 70,

relative to the median threshold at 18, with α per frequency and sex (clause 4, Table 1).
GBZ 49-2014 corrects a worker's audiogram by it before judging noise deafness, from a table of
age groups (20–29 … 70 and over) whose values are the formula at each group's first age,
rounded (:func:`group_correction`; ``data/gbt7582_iso7029.toml`` carries both α and that
table, with their sources and confidence).

Units: ages in years, frequencies in Hz, thresholds and shifts in dB HL. Sex is ``"M"`` or
``"F"``. Functions take numpy arrays and broadcast; nothing loops per value.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from pathlib import Path

import numpy as np

from tingbao.edge.settings import ConfigError, load_toml

__all__ = ["AGE_GROUP_FREQUENCIES_HZ", "AgeModel", "SEXES", "age_model", "group_correction",
           "median_age_shift"]

SEXES = ("M", "F")
AGE_GROUP_FREQUENCIES_HZ = (500, 1000, 2000, 3000, 4000, 6000)
"""The frequencies of GBZ 49's age-group table (those of an occupational audiogram)."""


def data_path(name: str) -> Path:
    """A file of ``tingbao/analysis/data``."""
    return Path(str(resources.files("tingbao.analysis") / "data" / name))


@dataclasses.dataclass(frozen=True)
class AgeModel:
    """The numbers of ``data/gbt7582_iso7029.toml``: α (dB/year²) per frequency and sex, the
    reference age 18, the valid ages, and GBZ 49's age-group table (dB) with its first ages."""

    standard: str
    frequencies_hz: np.ndarray
    alpha: dict[str, np.ndarray]
    reference_age: float
    valid_ages: tuple[float, float]
    group_frequencies_hz: np.ndarray
    group_first_ages: np.ndarray
    group_table: dict[str, np.ndarray]   # sex → (groups, frequencies) dB
    confidence: str

    def alpha_at(self, sex: str, frequencies_hz) -> np.ndarray:
        """α of ``sex`` at ``frequencies_hz`` (each must be one of the table's)."""
        return self.alpha[check_sex(sex)][_columns(self.frequencies_hz, frequencies_hz)]


def check_sex(sex: str) -> str:
    if sex not in SEXES:
        raise ValueError(f"sex {sex!r}: M or F")
    return sex


def _columns(have: np.ndarray, want) -> np.ndarray:
    want = np.atleast_1d(np.asarray(want, dtype=float))
    idx = np.searchsorted(have, want)
    idx = np.clip(idx, 0, len(have) - 1)
    bad = have[idx] != want
    if bad.any():
        raise ValueError(f"frequency {want[bad][0]:g} Hz is not in the table "
                         f"({', '.join(f'{f:g}' for f in have)} Hz)")
    return idx


@functools.cache
def age_model() -> AgeModel:
    """The shipped model (``data/gbt7582_iso7029.toml``); ConfigError when the file is bad."""
    path = data_path("gbt7582_iso7029.toml")
    d = load_toml(path, "GB/T 7582 data")
    try:
        a, g = d["alpha"], d["age_groups"]
        freqs = np.asarray(a["frequencies_hz"], dtype=float)
        alpha = {"M": np.asarray(a["male"], dtype=float), "F": np.asarray(a["female"], dtype=float)}
        gf = np.asarray(g["frequencies_hz"], dtype=float)
        ages = np.asarray(g["first_age_years"], dtype=float)
        table = {"M": np.asarray(g["male"], dtype=float), "F": np.asarray(g["female"], dtype=float)}
        lo, hi = d["valid_ages_years"]
        model = AgeModel(d["standard"], freqs, alpha, float(d["reference_age_years"]),
                         (float(lo), float(hi)), gf, ages, table, d["confidence"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"malformed ({e!r})", file=path) from None
    if any(v.shape != freqs.shape for v in alpha.values()) or any(
            t.shape != (len(ages), len(gf)) for t in table.values()):
        raise ConfigError("the α rows or the age-group table do not match their frequencies",
                          file=path)
    return model


def median_age_shift(age_years, sex: str, frequencies_hz=AGE_GROUP_FREQUENCIES_HZ
                     ) -> np.ndarray:
    """ΔH_md = α·(Y − 18)² in dB at ``frequencies_hz`` (shape: ``age_years`` broadcast against
    the frequencies on a new last axis). Ages below 18 give 0 (the model's reference age);
    ages above 70 raise ValueError (outside ISO 7029's range: say how to judge that worker)."""
    m = age_model()
    age = np.asarray(age_years, dtype=float)
    if np.any(age > m.valid_ages[1]):
        raise ValueError(f"age {float(np.max(age)):g} is above {m.valid_ages[1]:g}, the end of "
                         f"{m.standard}'s age model")
    years = np.maximum(age - m.reference_age, 0.0)[..., None]
    return m.alpha_at(sex, frequencies_hz) * years ** 2


def group_correction(age_years, sex: str) -> np.ndarray:
    """GBZ 49's age correction (dB, to subtract) at 0.5, 1, 2, 3, 4, 6 kHz from the age-group
    table: the group whose first age is the largest ≤ the age (70 and over: the last); below
    the first group (20), none. Shape: ``age_years`` + (6,)."""
    m = age_model()
    age = np.asarray(age_years, dtype=float)
    group = np.searchsorted(m.group_first_ages, age, side="right") - 1
    table = m.group_table[check_sex(sex)]
    out = table[np.clip(group, 0, len(table) - 1)]
    return np.where((group >= 0)[..., None], out, 0.0)
