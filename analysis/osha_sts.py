"""OSHA 29 CFR 1910.95(g)(10) standard threshold shift (STS) and Appendix F age correction.

* **STS** (g)(10)(i): in either ear, the average change at 2000, 3000 and 4000 Hz relative to
  the baseline audiogram is ≥ 10 dB.
* **Age correction** (g)(10)(ii), Appendix F (non-mandatory): the thresholds of the current
  audiogram are lowered, per frequency, by (Table F-1/F-2 value at the current age − value at
  the baseline age); ages ≤ 20 use the "20 or younger" row, ≥ 60 the "60 or older" row.
* **Recordable** (29 CFR 1904.10): an STS (with or without correction, as the employer
  applies it) and the current average at 2, 3, 4 kHz ≥ 25 dB HL *without* age correction.

Tables and numbers are data (``data/osha_1910_95_appendix_f.toml``, with their sources: both
tables agree cell by cell with an independent STS tool and, at 2, 3 and 4 kHz, with MSHA's
30 CFR 62 Tables 62-3/62-4, except F-2 age 51 at 3 kHz, 12 vs MSHA's 11, kept provisional).
Thresholds: arrays whose last axis is 0.5, 1, 2, 3, 4, 6 kHz (:data:`.gbz49.FREQUENCIES_HZ`),
one row per ear (left, right) or a single ear; dB HL.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tingbao.edge.settings import ConfigError, load_toml

from .gbt7582 import check_sex, data_path
from .gbz49 import FREQUENCIES_HZ

__all__ = ["AppendixF", "StsResult", "age_correction", "appendix_f", "sts"]


@dataclasses.dataclass(frozen=True)
class AppendixF:
    """Tables F-1 (``M``) and F-2 (``F``): rows by age from ``first_age`` (dB), at
    ``frequencies_hz`` (1, 2, 3, 4, 6 kHz); the STS and recordability numbers."""

    frequencies_hz: tuple[int, ...]
    first_age: int
    rows: dict[str, np.ndarray]
    confidence: dict[str, str]
    provisional_ages: dict[str, tuple[int, int]]
    sts_average_db: float
    sts_idx: tuple[int, ...]       # indices of 2, 3, 4 kHz in FREQUENCIES_HZ
    recordable_average_db: float


@functools.cache
def appendix_f() -> AppendixF:
    path = data_path("osha_1910_95_appendix_f.toml")
    d = load_toml(path, "OSHA Appendix F data")
    try:
        rows = {s: np.asarray(d[k]["rows"], dtype=float) for s, k in (("M", "male"),
                                                                      ("F", "female"))}
        out = AppendixF(tuple(d["frequencies_hz"]), int(d["first_age_years"]), rows,
                        {s: d[k]["confidence"] for s, k in (("M", "male"), ("F", "female"))},
                        {s: tuple(d[k]["provisional_ages"]) for s, k in (("M", "male"),
                                                                        ("F", "female"))},
                        float(d["sts_average_db"]),
                        tuple(FREQUENCIES_HZ.index(f) for f in d["sts_frequencies_hz"]),
                        float(d["recordable_average_db"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"malformed ({e!r})", file=path) from None
    if any(r.shape != (41, len(out.frequencies_hz)) for r in rows.values()):
        raise ConfigError("tables F-1/F-2 need 41 rows (ages 20–60) of 5 values", file=path)
    return out


def age_correction(age_years, sex: str) -> np.ndarray:
    """Appendix F values (dB) at 0.5, 1, 2, 3, 4, 6 kHz for ``age_years`` (whole years, floor;
    clamped to 20–60); 0.5 kHz has none (0). Shape: ``age_years`` + (6,)."""
    f = appendix_f()
    table = f.rows[check_sex(sex)]
    age = np.floor(np.asarray(age_years, dtype=float)).astype(int)
    row = table[np.clip(age - f.first_age, 0, len(table) - 1)]
    out = np.zeros(row.shape[:-1] + (len(FREQUENCIES_HZ),))
    out[..., [FREQUENCIES_HZ.index(x) for x in f.frequencies_hz]] = row
    return out


@dataclasses.dataclass(frozen=True)
class StsResult:
    """STS of one comparison, per ear (tuples in the order given, e.g. (left, right)): the
    average change at 2, 3, 4 kHz (dB) without and with age correction, the STS flags, and
    1904.10 recordability (uses the flag of the method the employer applies: ``sts_age``
    when ``age_corrected_policy``)."""

    change_db: tuple[float, ...]
    change_age_db: tuple[float, ...]
    sts: tuple[bool, ...]
    sts_age: tuple[bool, ...]
    current_average_db: tuple[float, ...]
    recordable: tuple[bool, ...]
    age_correction_db: tuple[float, ...]   # the mean correction at 2, 3, 4 kHz subtracted


def sts(baseline_db, current_db, *, baseline_age: float, current_age: float, sex: str,
        age_corrected_policy: bool = False) -> StsResult:
    """STS of ``current_db`` against ``baseline_db`` (dB HL, shape (ears, 6) or (6,)), with
    and without Appendix F age correction (``sex`` M/F, ages in years at each audiogram).
    An ear whose average change is exactly 10 dB has an STS (≥)."""
    f = appendix_f()
    base = np.atleast_2d(np.asarray(baseline_db, dtype=float))
    cur = np.atleast_2d(np.asarray(current_db, dtype=float))
    idx = list(f.sts_idx)
    aging = (age_correction(current_age, sex) - age_correction(baseline_age, sex))[idx]
    change = (cur[:, idx] - base[:, idx]).mean(axis=-1)
    change_age = change - aging.mean()
    flag = change >= f.sts_average_db
    flag_age = change_age >= f.sts_average_db
    avg = cur[:, idx].mean(axis=-1)
    used = flag_age if age_corrected_policy else flag
    rec = used & (avg >= f.recordable_average_db)
    return StsResult(tuple(change.tolist()), tuple(change_age.tolist()),
                     tuple(bool(x) for x in flag), tuple(bool(x) for x in flag_age),
                     tuple(avg.tolist()), tuple(bool(x) for x in rec),
                     tuple([float(aging.mean())] * len(change)))
