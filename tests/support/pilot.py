"""A simulated pilot evaluation (issue 14): pilot and comparison enterprises whose true
correct-wearing rates are known — 55 % → 78 % in the pilots, 55 % → 60 % in the comparison,
a true difference in differences of +18 percentage points — with enterprise-level variation,
and spot-check surveys drawn from them, as arrays (for repeated-seed statistics without a
database) or as survey rows (CSV/XLSX files to import).

Enterprise variation: enterprise e of group g in period t wears correctly with probability
p = expit(μ_gt + u_e), u_e ~ N(0, σ²) the same in both periods (a careless enterprise stays
careless). μ_gt is solved so that the *population-average* rate E_u[expit(μ_gt + u)] equals the
stated truth (55 %, 78 %, 60 %): the group's rate is the mean over enterprises drawn from the
population, what a clustered interval and the DiD estimate. The expectation is a
Gauss–Hermite quadrature (numpy.polynomial.hermite_e, 40 nodes).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

TRUE_RATES = {("pilot", "base"): 0.55, ("pilot", "follow"): 0.78,
              ("comparison", "base"): 0.55, ("comparison", "follow"): 0.60}
TRUE_DID_PP = 100 * ((0.78 - 0.55) - (0.60 - 0.55))  # 18.0 points
SIGMA = 0.5
"""Standard deviation of the enterprise effect on the logit scale."""

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(40)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def mean_rate(mu: float, sigma: float = SIGMA) -> float:
    """E[expit(μ + σZ)], Z standard normal."""
    return float(np.sum(_WEIGHTS * expit(mu + sigma * _NODES)))


def logit_mean_for(rate: float, sigma: float = SIGMA) -> float:
    """μ with E[expit(μ + σZ)] = ``rate``."""
    return brentq(lambda m: mean_rate(m, sigma) - rate, -10, 10, xtol=1e-12)


@dataclasses.dataclass(frozen=True)
class Simulated:
    """Repeated pilots as arrays: axis 0 the replicate (seed), axis 1 the enterprise (the first
    ``pilots`` are pilots), axis 2 the period (0 baseline, 1 follow-up), axis 3 the worker.
    ``worn`` booleans; ``p`` each enterprise's true rate (replicate, enterprise, period)."""

    worn: np.ndarray
    p: np.ndarray
    pilots: int

    @property
    def is_pilot(self) -> np.ndarray:
        return np.arange(self.worn.shape[1]) < self.pilots


def simulate(replicates: int, *, pilots: int = 8, comparisons: int = 8, workers: int = 40,
             sigma: float = SIGMA, seed: int = 0) -> Simulated:
    """``replicates`` independent pilots at once (vectorised); ``workers`` observed per
    enterprise and period (different workers each time)."""
    rng = np.random.default_rng(seed)
    ents = pilots + comparisons
    mu = np.empty((ents, 2))
    for e in range(ents):
        g = "pilot" if e < pilots else "comparison"
        mu[e] = [logit_mean_for(TRUE_RATES[(g, "base")], sigma),
                 logit_mean_for(TRUE_RATES[(g, "follow")], sigma)]
    u = rng.normal(0.0, sigma, size=(replicates, ents, 1))
    p = expit(mu[None] + u)
    worn = rng.random((replicates, ents, 2, workers)) < p[..., None]
    return Simulated(worn, p, pilots)


# ------------------------------------------------------------------------------- files
SURVEY_HEADER_ZH = ["日期", "企业", "车间", "岗位", "工人编号", "是否佩戴", "是否正确佩戴",
                    "护耳器"]
SURVEY_HEADER_EN = ["date", "enterprise", "workshop", "post", "worker", "wearing", "correct",
                    "protector"]


def registry_toml(stack_dir, *, pilots: int, comparisons: int, tz: str = "Asia/Shanghai"
                  ) -> str:
    """A site registry of the simulated enterprises ``pe01``… (pilots, machinery) and
    ``ce01``… (comparison, light industry), each with one workshop, no meters."""
    out = [f'[deployment]\ntimezone = "{tz}"\n[stack]\ndata_dir = "{stack_dir}"\n']
    for i in range(pilots + comparisons):
        pilot = i < pilots
        eid = f"pe{i + 1:02d}" if pilot else f"ce{i - pilots + 1:02d}"
        out.append(f'[[enterprises]]\nid = "{eid}"\nname_zh = "模拟企业{eid}"\n'
                   f'industry = "{"machinery" if pilot else "light_industry"}"\n'
                   f'group = "{"pilot" if pilot else "comparison"}"\n'
                   f'[[sites]]\nid = "{eid}-ws1"\nenterprise = "{eid}"\nname_zh = "冲压车间"\n')
    return "\n".join(out)


def enterprise_ids(pilots: int, comparisons: int) -> list[str]:
    return ([f"pe{i + 1:02d}" for i in range(pilots)]
            + [f"ce{i + 1:02d}" for i in range(comparisons)])


def survey_rows(sim: Simulated, replicate: int, dates: tuple[dt.date, dt.date],
                comparisons: int) -> list[list[str]]:
    """Survey rows (Chinese answers 是/否, worker pseudonyms ``w<ent>-<period>-<i>``) of one
    replicate; the baseline's on ``dates[0]``, the follow-up's on ``dates[1]``. A worker who
    does not wear is recorded 否/否; one who wears but not correctly 是/否, and one in ten of
    the workers not wearing correctly is such a badly-worn case."""
    ids = enterprise_ids(sim.pilots, comparisons)
    rows = []
    worn = sim.worn[replicate]
    for e, eid in enumerate(ids):
        for t in (0, 1):
            for w in range(worn.shape[2]):
                ok = bool(worn[e, t, w])
                wearing = ok or (w % 10 == 0)
                rows.append([dates[t].isoformat(), eid, f"{eid}-ws1", "press-1",
                             f"w{eid}-{t}-{w:03d}", "是" if wearing else "否",
                             "是" if ok else "否", "3M 1100" if wearing else ""])
    return rows


def write_csv(path: Path, rows: list[list[str]], *, encoding: str = "utf-8",
              header: list[str] = SURVEY_HEADER_ZH) -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[list[str]], *, header: list[str] = SURVEY_HEADER_ZH,
               sheet: str = "抽查") -> Path:
    """An XLSX with the dates as real Excel dates (what a clerk's sheet holds)."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(header)
    for r in rows:
        ws.append([dt.date.fromisoformat(r[0]), *r[1:]])
    wb.save(path)
    return path
