"""The correct-wearing rate of hearing protectors (重点行业劳动者防噪声耳塞或耳罩正确佩戴率) and
the pilot evaluation: the indicator of the hearing-protection action, its milestones
(65 % 2023, 70 % 2024, 80 % 2025; baseline 53.7 % in 2020: ``data/hearing_action_plan.toml``)
and the statistics of ``../shared/reference/noise-standards.md``, "Checked 2026-11-29 / The
pilot statistics". The binomial intervals come from statsmodels; the clustered ones use
statsmodels' estimates with t quantiles (below).

Rates are fractions (0 … 1) in the Python API and percent in the store (``schema.WEARING_RATE``
and ``schema.PILOT_DID`` compare ``lower95`` with ``milestone`` in %).

**One enterprise** (:func:`single_rate`): x of n observations worn correctly, the Wilson
(default) or Clopper–Pearson (``beta``) 95 % interval of
``statsmodels.stats.proportion.proportion_confint``; the one-sided 95 % lower bound is the
lower end of the two-sided 90 % interval of the same method. When a worker is seen more than
once in the period the observations are not independent: the enterprise's rate is then
computed as a group with the workers as clusters (:func:`clustered_rate`).

**A group of enterprises** (industry, pilot/comparison group, all; :func:`clustered_rate`):
workers cluster within enterprises, so

* ``gee_bias_reduced`` (the default): ``statsmodels`` GEE, Binomial family, logit link,
  exchangeable working correlation, intercept only, ``cov_type="bias_reduced"`` (the
  Mancl–DeRouen sandwich for few clusters); the interval is expit(b ± t_{G−1}·se) of the
  intercept b with G clusters, t with G − 1 degrees of freedom (Mancl & DeRouen 2001; Li &
  Redden 2015: the normal quantile is too liberal with few clusters: a one-sided bound above
  the truth 8 % of the time with 4 enterprises), the one-sided bound expit(b − t_{G−1,.95}·se);
  it stays within (0, 1); the rate is the GEE estimate (the pooled x/n when the enterprises
  are equally large);
* ``design_effect``: the pooled rate x/n and the Wilson interval of the effective counts
  x/Deff of n/Deff, Deff = 1 + (m̄ − 1)·ICC, m̄ the mean observations per enterprise, ICC the
  one-way ANOVA estimator for binary data (:func:`anova_icc`, truncated at 0), with the same
  t_{G−1} quantile: the effective counts are multiplied by (z/t_{G−1})² (the
  degrees-of-freedom-adjusted effective sample size of Korn & Graubard 1998, as in R survey's
  ``svyciprop`` and SAS SURVEYFREQ), which makes Wilson's score interval use t_{G−1} in
  place of z and keeps it within [0, 1] also at 0 % and 100 %.

GEE is the default because it needs no estimate of a single ICC that small groups estimate
badly, and its bias-reduced sandwich is the correction meant for few clusters; the design
effect is kept as the alternative (``--method design_effect``) and as the fallback, with the
reason stated, when GEE cannot be used: one enterprise (no between-enterprise variation to
estimate: Wilson), every observation 0 or every one 1 (the logit intercept is infinite and
the data say nothing about the ICC: the worst case ICC = 1, Deff = m̄, so each of the G
clusters counts once, and the Clopper–Pearson interval of 0 of G or G of G; 2 enterprises all
at 100 %: one-sided lower bound 0.05^(1/2) = 22 %, not 99.7 % of the pooled Wilson; the same
for either method), or GEE not converging. tests/test_wearing_rate.py measures both over
repeated simulated pilots.

**Milestones** (:func:`judge`): "met" only when the one-sided 95 % lower bound reaches the
milestone of the period's year; the point estimate is shown beside it. A deployment under
another plan gives its own steps in the registry's ``[deployment]`` (they win when they
differ from the data file's: :func:`.action_plan.milestones`).

**Periods**: ``2025`` (year), ``2025-Q3`` (quarter), ``2025-07`` (month) of the local date of
the observation, in the deployment's time zone (the registry has one for all enterprises); a
period's point is stored at its first local midnight.

**Pilot vs comparison** (:func:`difference_in_differences`): the linear probability model
``worn ~ pilot * post`` by statsmodels OLS with ``cov_type="cluster"`` by enterprise
(``use_t``: t with G − 1 degrees of freedom); the ``pilot:post`` coefficient is the
difference in differences in percentage points. With fewer than :data:`FEW_CLUSTERS`
enterprises in all (the rule: cluster-robust errors need many clusters, MacKinnon & Webb
2017) the interval and p value come from a wild cluster bootstrap instead (WCR: restricted,
the null imposed; the CR1 t statistic; the interval by test inversion), vectorised over the
draws, seeded: Webb's six-point weights when there are at most :data:`WEBB_AT_MOST`
enterprises (Rademacher weights have only 2^G distinct draws), Rademacher otherwise. When
there is no t statistic (every observation the same: p = 1; a cluster-robust standard error of
0 otherwise: p NaN) no interval can be inverted: ``DidResult.note`` says so and the interval
is NaN (not stored), never p = 0.

**Wear time at the edge** (:func:`edge_worker_days`): a worker-day of ``schema.WEAR_DAILY``
counts as worn correctly when ``worn_s / assessed_s`` ≥ ``worn_share_min`` (0.9) and only
days with ``assessed_s`` ≥ ``min_assessed_s`` (1 h) count (data file ``[edge]``: why 0.9 is
explained there); the worker-days are clustered by worker (one enterprise) or enterprise
(groups), and the time share Σ worn_s / Σ assessed_s is shown beside the rate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .action_plan import ActionPlan, Milestone, load_plan, milestones
from .shifts import local_date, local_midnight_ns

__all__ = [
    "DidResult", "Estimate", "FEW_CLUSTERS", "RateRow",
    "WEBB_AT_MOST", "anova_icc", "clustered_rate", "design_effect_rate", "did_lines",
    "difference_in_differences", "edge_worker_days", "gee_rate", "judge",
    "period_key", "period_start", "proportion_interval", "rate_lines",
    "rates", "single_rate", "wild_cluster_bootstrap", "did_from_units",
    "period_days", "time_shares",
]

FEW_CLUSTERS = 30
"""Fewer enterprises than this (pilot and comparison together): the DiD's interval and p value
come from the wild cluster bootstrap rather than the cluster-robust t."""
WEBB_AT_MOST = 12
"""At most this many enterprises: Webb's six-point weights, else Rademacher."""
BOOTSTRAP_DRAWS = 9999
BOOTSTRAP_SEED = 14
"""Default seed of the bootstrap (issue 14): the same data give the same interval."""
SINGLE_METHODS = ("wilson", "beta")
GROUP_METHODS = ("gee_bias_reduced", "design_effect")
SCOPES = ("enterprise", "industry", "group", "all")
PERIODS = ("month", "quarter", "year")


# ------------------------------------------------------------------------------- estimates
@dataclasses.dataclass(frozen=True)
class Estimate:
    """A rate with its intervals (fractions): ``lo95``/``hi95`` two-sided 95 %, ``lower95``
    the one-sided 95 % lower bound; ``method`` one of wilson, beta, gee_bias_reduced,
    design_effect; ``clusters`` the clusters :func:`clustered_rate` used (1 for a plain
    binomial interval); in :func:`rates` it is the number of enterprises, as
    ``schema.WEARING_RATE`` stores it and the pilot page shows it (企业数): one enterprise
    whose workers were the clusters keeps 1 and its ``note`` names the worker count;
    ``deff``/``icc`` when estimated (``icc`` None when assumed); ``note`` why a fallback was
    taken."""

    n: int
    x: int
    rate: float
    lo95: float
    hi95: float
    lower95: float
    method: str
    clusters: int = 1
    deff: float | None = None
    icc: float | None = None
    note: str = ""


def proportion_interval(x, n, method: str = "wilson", alpha: float = 0.05):
    """(lo, hi) of ``statsmodels.stats.proportion.proportion_confint`` (arrays broadcast;
    ``method`` ``wilson`` or ``beta`` = Clopper–Pearson), two-sided 1 − alpha."""
    from statsmodels.stats.proportion import proportion_confint

    if method not in SINGLE_METHODS:
        raise ValueError(f"interval method {method!r}: one of {', '.join(SINGLE_METHODS)}")
    lo, hi = proportion_confint(x, n, alpha=alpha, method=method)
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


def single_rate(x: int, n: int, method: str = "wilson") -> Estimate:
    """One enterprise: x of n worn correctly; 95 % two-sided and one-sided lower bound (the
    lower end of the 90 % two-sided interval of the same ``method``)."""
    x, n = int(x), int(n)
    if not 0 <= x <= n or n == 0:
        raise ValueError(f"{x} of {n}: need 0 <= x <= n and n > 0")
    lo, hi = proportion_interval(x, n, method, 0.05)
    lower, _ = proportion_interval(x, n, method, 0.10)
    return Estimate(n, x, x / n, float(lo), float(hi), float(lower), method)


def anova_icc(x, n):
    """The one-way ANOVA estimator of the intra-cluster correlation of binary outcomes
    (Donner 1986; Ridout, Demétrio & Firth 1999, estimator "ANOVA"), truncated at 0.

    ``x``, ``n``: successes and trials per cluster along the last axis (leading axes are
    independent data sets, so repeated simulations are one call). With k clusters, N = Σ n:
    MSB = Σ n_i (p_i − p̄)² / (k − 1), MSW = Σ n_i p_i (1 − p_i) / (N − k),
    n0 = (N − Σ n_i² / N) / (k − 1), ICC = (MSB − MSW) / (MSB + (n0 − 1) MSW).
    NaN where k < 2; 0 where both mean squares are 0 (all 0 or all 1)."""
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    k = np.sum(n > 0, axis=-1)
    big_n = n.sum(axis=-1)
    p_bar = x.sum(axis=-1) / big_n
    with np.errstate(invalid="ignore", divide="ignore"):
        p_i = np.where(n > 0, x / np.where(n > 0, n, 1), 0.0)
        msb = np.sum(n * (p_i - p_bar[..., None]) ** 2, axis=-1) / (k - 1)
        msw = np.sum(n * p_i * (1 - p_i), axis=-1) / (big_n - k)
        n0 = (big_n - np.sum(n**2, axis=-1) / big_n) / (k - 1)
        icc = (msb - msw) / (msb + (n0 - 1) * msw)
    icc = np.where((msb == 0) & (msw == 0), 0.0, icc)
    icc = np.where(k < 2, np.nan, np.maximum(icc, 0.0))
    return icc


def _t_over_z(k, alpha):
    """(z_{1−alpha/2} / t_{k−1, 1−alpha/2})² per data set (k clusters; NaN where k < 2)."""
    from scipy.stats import norm, t

    k = np.asarray(k, dtype=float)
    with np.errstate(invalid="ignore"):
        tq = t.ppf(1 - alpha / 2, np.where(k >= 2, k - 1, np.nan))
    return (norm.ppf(1 - alpha / 2) / tq) ** 2


def design_effect_rate(x, n, method: str = "wilson"):
    """Pooled rate and the ``method`` interval of the effective counts (module docstring);
    ``x``, ``n`` per cluster along the last axis (vectorised like :func:`anova_icc`).
    Returns dict of arrays: rate, lo95, hi95, lower95, deff, icc.

    With k clusters the effective counts are scaled by (z / t_{k−1})² for each level (the
    degrees-of-freedom-adjusted effective sample size of Korn & Graubard 1998), so that the
    Wilson interval uses the critical value t_{k−1} instead of z. Where every observation is 0
    or every one is 1 the ICC cannot be estimated (the ANOVA estimate is 0): ICC is taken as 1,
    Deff = m̄, and the interval is Clopper–Pearson of the k clusters (0 of k or k of k; no
    variance is estimated, so no t adjustment); ``icc`` is NaN there."""
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    icc = anova_icc(x, n)
    k = np.sum(n > 0, axis=-1)
    big_n, big_x = n.sum(axis=-1), x.sum(axis=-1)
    m_bar = big_n / k
    same = (big_x == 0) | (big_x == big_n)
    icc = np.where(same, np.nan, icc)
    deff = np.where(same, m_bar, 1 + (m_bar - 1) * np.nan_to_num(icc))
    x_eff, n_eff = big_x / deff, big_n / deff
    out = {}
    for alpha, name in ((0.05, "95"), (0.10, "90")):
        df_adjust = _t_over_z(k, alpha)
        lo, hi = proportion_interval(x_eff * df_adjust, n_eff * df_adjust, method, alpha)
        clo, chi = proportion_interval(np.round(x_eff), np.round(n_eff), "beta", alpha)
        out[name] = (np.where(same, clo, lo), np.where(same, chi, hi))
    return {"rate": big_x / big_n, "lo95": out["95"][0], "hi95": out["95"][1],
            "lower95": out["90"][0], "deff": deff, "icc": icc}


def gee_rate(x: Sequence[int], n: Sequence[int]) -> Estimate:
    """GEE (Binomial, exchangeable, intercept only, ``cov_type="bias_reduced"``) over the
    clusters' x of n; raises ValueError when it cannot be fitted (fewer than 2 clusters, all
    0 or all 1, no convergence) so that :func:`clustered_rate` can fall back."""
    import statsmodels.api as sm
    from scipy.special import expit
    from scipy.stats import t as t_dist
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    x = np.asarray(x, dtype=int)
    n = np.asarray(n, dtype=int)
    keep = n > 0
    x, n = x[keep], n[keep]
    if len(n) < 2:
        raise ValueError("one cluster: there is no between-cluster variation to estimate")
    if x.sum() in (0, n.sum()):
        raise ValueError("every observation is the same (all 0 or all 1): the logit is "
                         "infinite")
    groups = np.repeat(np.arange(len(n)), n)
    y = np.concatenate([np.r_[np.ones(a), np.zeros(b - a)] for a, b in zip(x, n, strict=True)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            model = sm.GEE(y, np.ones((len(y), 1)), groups=groups,
                           family=sm.families.Binomial(),
                           cov_struct=sm.cov_struct.Exchangeable())
            res = model.fit(cov_type="bias_reduced")
        except (ConvergenceWarning, np.linalg.LinAlgError, ValueError) as e:
            raise ValueError(f"GEE did not fit ({e})") from None
    # t with G − 1 df on the logit (not statsmodels' normal conf_int: too liberal with few
    # clusters; Mancl & DeRouen 2001 pair their sandwich with t_{G−1}; Li & Redden 2015)
    b, se, df = float(res.params[0]), float(res.bse[0]), len(n) - 1
    # Floor: never narrower than independence (Deff ≥ 1, as the design-effect path clips the
    # ICC at 0). With few clusters whose rates happen to be equal (every enterprise 1 of 2)
    # the cluster score sums are ~0 and the sandwich collapses to se ≈ 0, an interval of zero
    # width; wearing behaviour is not negatively correlated within an enterprise. The
    # independence SE of the logit of a proportion p over N observations is 1/√(N p (1 − p)).
    N, p_hat = int(n.sum()), float(x.sum()) / float(n.sum())
    se_ind = 1.0 / math.sqrt(N * p_hat * (1.0 - p_hat))
    note = ""
    if not se >= se_ind:
        note = (f"the bias-reduced sandwich SE ({se:.3g} on the logit) is below the "
                f"independence SE ({se_ind:.3g}): floored at it (design effect ≥ 1)")
        se = se_ind
    ci95 = b + np.array([-1.0, 1.0]) * t_dist.ppf(0.975, df) * se
    ci90 = b + np.array([-1.0, 1.0]) * t_dist.ppf(0.95, df) * se
    if not np.all(np.isfinite(np.r_[ci95, ci90])):
        raise ValueError("GEE gave no finite interval")
    rho = float(np.asarray(res.cov_struct.dep_params).ravel()[0])
    m_bar = n.mean()
    return Estimate(int(n.sum()), int(x.sum()), float(expit(b)),
                    float(expit(ci95[0])), float(expit(ci95[1])), float(expit(ci90[0])),
                    "gee_bias_reduced", len(n), deff=float(1 + (m_bar - 1) * max(rho, 0.0)),
                    icc=rho, note=note)


def clustered_rate(x: Sequence[int], n: Sequence[int], method: str = "gee_bias_reduced"
                   ) -> Estimate:
    """A rate over clusters (x of n per cluster) with an interval that respects the
    clustering; falls back as the module docstring says, the reason in ``note``."""
    if method not in GROUP_METHODS:
        raise ValueError(f"group method {method!r}: one of {', '.join(GROUP_METHODS)}")
    x = np.asarray(x, dtype=int)
    n = np.asarray(n, dtype=int)
    k = int(np.sum(n > 0))
    if k == 0:
        raise ValueError("no observations")
    if k == 1:
        e = single_rate(int(x.sum()), int(n.sum()))
        return dataclasses.replace(e, note="one cluster: Wilson over its observations")
    note = ""
    if x.sum() in (0, n.sum()):
        note = (f"every observation is the same (all 0 or all 1): ICC taken as 1 (each of "
                f"the {k} clusters counts once), Clopper–Pearson of {k if x.sum() else 0} of "
                f"{k}")
    elif method == "gee_bias_reduced":
        try:
            return gee_rate(x, n)
        except ValueError as e:
            note = f"design effect instead of GEE: {e}"
    d = design_effect_rate(x, n)
    icc = float(d["icc"])
    return Estimate(int(n.sum()), int(x.sum()), float(d["rate"]), float(d["lo95"]),
                    float(d["hi95"]), float(d["lower95"]), "design_effect", k,
                    deff=float(d["deff"]), icc=icc if math.isfinite(icc) else None,
                    note=note)


def judge(e: Estimate, year: int, plan: Mapping[int, Milestone]) -> tuple[float | None,
                                                                          bool | None]:
    """(milestone, met) of the period's ``year``: met when ``lower95`` ≥ the milestone
    (fractions compared after rounding to 1e-12, so a bound exactly on the milestone meets
    it); (None, None) in a year without a milestone."""
    m = plan.get(year)
    if m is None:
        return None, None
    return m.rate, bool(round(e.lower95, 12) >= round(m.rate, 12))


# ------------------------------------------------------------------------------- periods
def period_key(date: dt.date, kind: str) -> str:
    """``2025`` / ``2025-Q3`` / ``2025-07`` of a local date."""
    if kind == "year":
        return f"{date.year}"
    if kind == "quarter":
        return f"{date.year}-Q{(date.month - 1) // 3 + 1}"
    if kind == "month":
        return f"{date.year}-{date.month:02d}"
    raise ValueError(f"period {kind!r}: one of {', '.join(PERIODS)}")


def period_first_day(key: str) -> dt.date:
    """The first local date of a period key."""
    if len(key) == 4 and key.isdigit():
        return dt.date(int(key), 1, 1)
    year, _, rest = key.partition("-")
    if rest.startswith("Q") and rest[1:] in ("1", "2", "3", "4"):
        return dt.date(int(year), 3 * int(rest[1:]) - 2, 1)
    if len(rest) == 2 and rest.isdigit() and 1 <= int(rest) <= 12:
        return dt.date(int(year), int(rest), 1)
    raise ValueError(f"period {key!r} is not YYYY, YYYY-Qn or YYYY-MM")


def period_days(key: str) -> tuple[dt.date, dt.date]:
    """[first, end) local dates of a period key."""
    first = period_first_day(key)
    if len(key) == 4:
        return first, dt.date(first.year + 1, 1, 1)
    months = 3 if "Q" in key else 1
    m = first.month - 1 + months
    return first, dt.date(first.year + m // 12, m % 12 + 1, 1)


def period_start(key: str, tz: str) -> int:
    """UTC ns of a period's first local midnight (the time of its stored point)."""
    return local_midnight_ns(period_first_day(key), tz)


# ------------------------------------------------------------------------------- rates
@dataclasses.dataclass(frozen=True)
class RateRow:
    """One row of ``schema.WEARING_RATE``: scope, key, period, source, the estimate, the
    milestone and verdict, and (source ``edge``) the time share Σ worn_s / Σ assessed_s."""

    scope: str
    key: str
    period: str
    source: str
    estimate: Estimate
    milestone: float | None
    met: bool | None
    time_share: float | None = None


def _scope_key(scope: str, enterprise: str, reg) -> str:
    if scope == "enterprise":
        return enterprise
    if scope == "all":
        return "all"
    e = reg.enterprise(enterprise)
    return e.industry if scope == "industry" else e.group


def rates(units: Iterable[tuple[dt.date, str, str, bool]], reg, *, by: str = "enterprise",
          period: str = "year", source: str = "observed", single_method: str = "wilson",
          group_method: str = "gee_bias_reduced",
          plan: Mapping[int, Milestone] | None = None,
          time_shares: Mapping[tuple[str, str], float] | None = None) -> list[RateRow]:
    """The rates of ``units`` — (local date, enterprise, worker, worn correctly) of each
    observation (source ``observed``) or worker-day (``edge``) — by ``by`` (an enterprise,
    industry, pilot/comparison group or all) and ``period``. Within one enterprise a worker
    counted more than once in a period makes the workers the clusters; across enterprises the
    enterprises are. ``time_shares``: {(key, period): share} shown beside edge rates."""
    if by not in SCOPES:
        raise ValueError(f"--by {by!r}: one of {', '.join(SCOPES)}")
    plan = milestones(reg) if plan is None else plan
    cells: dict[tuple[str, str], dict[str, dict[str, list[int]]]] = {}
    for date, ent, worker, worn in units:
        cell = cells.setdefault((_scope_key(by, ent, reg), period_key(date, period)), {})
        per_worker = cell.setdefault(ent, {})
        acc = per_worker.setdefault(worker, [0, 0])
        acc[0] += int(bool(worn))
        acc[1] += 1
    out = []
    for (key, per), ents in sorted(cells.items()):
        if len(ents) == 1:
            (workers,) = ents.values()
            xs = np.array([a[0] for a in workers.values()])
            ns = np.array([a[1] for a in workers.values()])
            if ns.max() > 1:
                # stored clusters = enterprises (schema.WEARING_RATE, the pilot page's 企业数):
                # 1 here; the worker clusters the interval used are named in the note
                est = clustered_rate(xs, ns, group_method)
                est = dataclasses.replace(
                    est, clusters=1, note=(est.note + "; " if est.note else "")
                    + f"workers counted more than once: clustered by {len(ns)} workers")
            else:
                est = single_rate(int(xs.sum()), int(ns.sum()), single_method)
        else:
            xs = np.array([sum(a[0] for a in w.values()) for w in ents.values()])
            ns = np.array([sum(a[1] for a in w.values()) for w in ents.values()])
            est = clustered_rate(xs, ns, group_method)
        milestone, met = judge(est, period_first_day(per).year, plan)
        share = None if time_shares is None else time_shares.get((key, per))
        out.append(RateRow(by, key, per, source, est, milestone, met, share))
    return out


def edge_worker_days(rows: Iterable[Mapping], tz: str, plan: ActionPlan | None = None
                     ) -> tuple[list[tuple[dt.date, str, str, bool]], list[tuple]]:
    """``schema.WEAR_DAILY`` rows (``time`` ns, ``enterprise``, ``worker``, ``worn_s``,
    ``assessed_s``) as units for :func:`rates` (days with ``assessed_s`` below
    ``min_assessed_s`` left out) and (date, enterprise, worn_s, assessed_s) for the time
    shares. A worker measured by two meters on one day is one worker-day (times added)."""
    plan = plan or load_plan()
    days: dict[tuple[dt.date, str, str], list[float]] = {}
    for r in rows:
        date = local_date(int(r["time"]), tz)
        acc = days.setdefault((date, r["enterprise"], r["worker"]), [0.0, 0.0])
        acc[0] += float(r.get("worn_s") or 0.0)
        acc[1] += float(r.get("assessed_s") or 0.0)
    units, times = [], []
    for (date, ent, worker), (worn, assessed) in sorted(days.items()):
        if assessed < plan.min_assessed_s:
            continue
        units.append((date, ent, worker, worn / assessed >= plan.worn_share_min))
        times.append((date, ent, worn, assessed))
    return units, times


def time_shares(times: Iterable[tuple[dt.date, str, float, float]], reg, *, by: str,
                period: str) -> dict[tuple[str, str], float]:
    """{(key, period): Σ worn_s / Σ assessed_s} of :func:`edge_worker_days`' times."""
    acc: dict[tuple[str, str], list[float]] = {}
    for date, ent, worn, assessed in times:
        a = acc.setdefault((_scope_key(by, ent, reg), period_key(date, period)), [0.0, 0.0])
        a[0] += worn
        a[1] += assessed
    return {k: w / s for k, (w, s) in acc.items() if s > 0}


# ------------------------------------------------------------------------------- DiD
@dataclasses.dataclass(frozen=True)
class DidResult:
    """The pilot:post coefficient (percentage points) with its 95 % interval and p value;
    ``method`` cluster_robust or wild_cluster_bootstrap (``weights``, ``draws``, ``seed``
    then), the cluster-robust numbers always (``cr_lo_pp`` …), the four cell rates (%);
    ``note`` why there is no test (p 1 or NaN, no interval: :func:`difference_in_differences`)."""

    did_pp: float
    lo_pp: float
    hi_pp: float
    p: float
    method: str
    enterprises_pilot: int
    enterprises_comparison: int
    n: int
    pilot_base: float
    pilot_follow: float
    comparison_base: float
    comparison_follow: float
    se_pp: float
    cr_lo_pp: float
    cr_hi_pp: float
    cr_p: float
    weights: str | None = None
    draws: int | None = None
    seed: int | None = None
    note: str = ""


def _design(pilot, post) -> np.ndarray:
    pilot = np.asarray(pilot, dtype=float)
    post = np.asarray(post, dtype=float)
    return np.column_stack([np.ones_like(pilot), pilot, post, pilot * post])


def difference_in_differences(worn, pilot, post, enterprise, *, bootstrap: bool | None = None,
                              draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED,
                              weights: str | None = None) -> DidResult:
    """``worn ~ pilot * post`` (statsmodels OLS, enterprise-clustered, t with G − 1 df) over
    one row per observation (``worn``, ``pilot``, ``post`` 0/1; ``enterprise`` labels).
    ``bootstrap`` None: by the rule (fewer than :data:`FEW_CLUSTERS` enterprises)."""
    import pandas as pd
    import statsmodels.formula.api as smf

    worn = np.asarray(worn, dtype=float)
    pilot = np.asarray(pilot, dtype=float)
    post = np.asarray(post, dtype=float)
    ent = np.asarray(enterprise)
    codes, uniq = pd.factorize(ent)
    ents_pilot = len(set(ent[pilot == 1]))
    ents_comp = len(set(ent[pilot == 0]))
    cells = {}
    for name, mask in (("pilot_base", (pilot == 1) & (post == 0)),
                       ("pilot_follow", (pilot == 1) & (post == 1)),
                       ("comparison_base", (pilot == 0) & (post == 0)),
                       ("comparison_follow", (pilot == 0) & (post == 1))):
        if not mask.any():
            raise ValueError(f"no observation in the cell {name}: the DiD needs pilot and "
                             "comparison enterprises observed in both periods")
        cells[name] = 100 * float(worn[mask].mean())
    if len(uniq) < 3:
        raise ValueError(f"{len(uniq)} enterprises: the DiD needs at least 3 for "
                         "clustered errors")
    frame = pd.DataFrame({"worn": worn, "pilot": pilot, "post": post, "e": codes})
    fit = smf.ols("worn ~ pilot * post", frame).fit(
        cov_type="cluster", cov_kwds={"groups": codes}, use_t=True)
    b = float(fit.params["pilot:post"])
    lo, hi = (float(v) for v in fit.conf_int(alpha=0.05).loc["pilot:post"])
    cr_p = float(fit.pvalues["pilot:post"])
    se = float(fit.bse["pilot:post"])
    if bootstrap is None:
        bootstrap = len(uniq) < FEW_CLUSTERS
    note = _did_untestable(worn, b, se)
    if note:  # no t statistic (0/0 or b/0): never p = 0 from mean(|t*| ≥ NaN)
        p = 1.0 if np.ptp(worn) == 0 else math.nan
        nan = math.nan
        return DidResult(100 * b, nan, nan, p, "wild_cluster_bootstrap" if bootstrap
                         else "cluster_robust", ents_pilot, ents_comp, len(worn),
                         se_pp=100 * se if math.isfinite(se) else nan, cr_lo_pp=nan,
                         cr_hi_pp=nan, cr_p=p, note=note, **cells)
    common = dict(enterprises_pilot=ents_pilot, enterprises_comparison=ents_comp,
                  n=len(worn), se_pp=100 * se, cr_lo_pp=100 * lo, cr_hi_pp=100 * hi,
                  cr_p=cr_p, **cells)
    if not bootstrap:
        return DidResult(100 * b, 100 * lo, 100 * hi, cr_p, "cluster_robust", **common)
    weights = weights or ("webb" if len(uniq) <= WEBB_AT_MOST else "rademacher")
    wb = wild_cluster_bootstrap(_design(pilot, post), worn, codes, 3, draws=draws, seed=seed,
                                weights=weights)
    return DidResult(100 * b, 100 * wb["lo"], 100 * wb["hi"], wb["p"],
                     "wild_cluster_bootstrap", weights=weights, draws=draws, seed=seed,
                     **common)


def _did_untestable(worn: np.ndarray, b: float, se: float) -> str:
    """Why the DiD cannot be tested (empty when it can): every observation the same (the
    four cell means are equal, the DiD is exactly 0: p = 1) or a cluster-robust standard
    error of 0 (below 1e-12 of the 0/1 outcome, i.e. rounding) or not finite (p NaN)."""
    if np.ptp(worn) == 0:
        return ("no variation: every observation is the same, the DiD is 0 and its standard "
                "error 0, so p = 1 and the interval cannot be inverted (no interval)")
    if not math.isfinite(se) or se <= 1e-12 or not math.isfinite(b):
        return (f"standard error {se:.3g}: the residuals are 0 in every enterprise, so there "
                "is no t statistic, p is undefined (NaN) and the interval cannot be inverted "
                "(no interval)")
    return ""


_WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])


def bootstrap_weights(clusters: int, draws: int, kind: str, rng: np.random.Generator
                      ) -> np.ndarray:
    """(clusters, draws) weights: Rademacher ±1 or Webb's six points ±√1.5, ±1, ±√0.5
    (Webb 2014), each equally likely."""
    if kind == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(clusters, draws))
    if kind == "webb":
        return rng.choice(_WEBB, size=(clusters, draws))
    raise ValueError(f"bootstrap weights {kind!r}: rademacher or webb")


def wild_cluster_bootstrap(X: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int, *,
                           draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED,
                           weights: str = "webb", alpha: float = 0.05) -> dict:
    """Wild cluster restricted bootstrap (WCR; Cameron, Gelbach & Miller 2008; MacKinnon &
    Webb 2017) of coefficient ``k`` of the OLS of ``y`` on ``X`` (n × K) with clusters
    ``groups`` (codes 0 … G − 1): the p value of H0 β_k = 0 and the 1 − alpha interval by
    test inversion (the δ whose p value is ≥ alpha), each from the CR1 t statistic
    (the small-sample factor G/(G − 1) · (N − 1)/(N − K) that statsmodels' cluster covariance
    uses). The same draws serve every δ. Vectorised: per draw only G × K numbers are formed
    (the bootstrap coefficients are β̃ + A Σ_g w_g X_g'ũ_g with A = (X'X)⁻¹, and each cluster's
    score is w_g X_g'ũ_g − X_g'X_g (β* − β̃)). Returns {"p", "lo", "hi", "se"} (``se`` the
    CR1 standard error of the estimate); p, lo, hi NaN when that standard error is 0 (≤ 1e-12)
    or not finite: there is no t statistic to compare the draws with."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    groups = np.asarray(groups)
    n, kk = X.shape
    G = int(groups.max()) + 1
    A = np.linalg.inv(X.T @ X)
    a = A[k]
    # per-cluster X_g'X_g a (G × K)
    Ma = np.zeros((G, kk))
    Xa = X @ a
    for j in range(kk):
        Ma[:, j] = np.bincount(groups, X[:, j] * Xa, minlength=G)
    scale = G / (G - 1) * (n - 1) / (n - kk)
    beta = A @ (X.T @ y)
    resid = y - X @ beta
    score_a = np.bincount(groups, Xa * resid, minlength=G)
    se = math.sqrt(scale * np.sum(score_a**2))
    if not se > 1e-12:  # 0 (no residual: t = 0/0 or b/0) or NaN: no test, no inversion
        return {"p": math.nan, "lo": math.nan, "hi": math.nan, "se": se}
    W = bootstrap_weights(G, draws, weights, np.random.default_rng(seed))
    others = [j for j in range(kk) if j != k]
    Xo = X[:, others]

    def p_value(delta: float) -> float:
        yr = y - delta * X[:, k]
        coef, *_ = np.linalg.lstsq(Xo, yr, rcond=None)
        resid_r = yr - Xo @ coef
        S = np.zeros((G, kk))  # X_g' ũ_g
        for j in range(kk):
            S[:, j] = np.bincount(groups, X[:, j] * resid_r, minlength=G)
        delta_beta = A @ (S.T @ W)  # K × B: β* − β̃
        c = W * (S @ a)[:, None] - Ma @ delta_beta  # G × B
        se_star = np.sqrt(scale * np.sum(c**2, axis=0))
        t_star = delta_beta[k] / se_star
        t = (beta[k] - delta) / se
        return float(np.mean(np.abs(t_star) >= abs(t)))

    p0 = p_value(0.0)

    def edge(sign: float) -> float:
        inside, step = float(beta[k]), 2.0 * se
        outside = inside + sign * step
        for _ in range(60):
            if p_value(outside) < alpha:
                break
            inside, step = outside, step * 2
            outside = inside + sign * step
        else:
            return sign * math.inf
        for _ in range(40):  # bisection to 1e-6 (in the outcome's units)
            mid = (inside + outside) / 2
            if p_value(mid) >= alpha:
                inside = mid
            else:
                outside = mid
            if abs(outside - inside) < 1e-6:
                break
        return (inside + outside) / 2

    return {"p": p0, "lo": edge(-1.0), "hi": edge(1.0), "se": se}


# ------------------------------------------------------------------------------- storage
def _pct(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else 100.0 * float(v)


def rate_lines(rows: Iterable[RateRow], tz: str, computed_ns: int) -> list[str]:
    """Line protocol of ``schema.WEARING_RATE`` (rates and the time share in %) at each
    period's start; ``time_share`` only when the row has one (source ``edge``), ``note`` only
    when the estimate fell back (its reason)."""
    from tingbao.collector import schema
    from tingbao.collector.lineprotocol import line

    out = []
    for r in rows:
        e = r.estimate
        fields = {"n": int(e.n), "x": int(e.x), "rate": _pct(e.rate), "lo95": _pct(e.lo95),
                  "hi95": _pct(e.hi95), "lower95": _pct(e.lower95), "method": e.method,
                  "clusters": int(e.clusters),
                  "deff": None if e.deff is None or not math.isfinite(e.deff) else e.deff,
                  "icc": None if e.icc is None or not math.isfinite(e.icc) else e.icc,
                  "milestone": _pct(r.milestone), "met": r.met, "computed_ns": computed_ns,
                  "time_share": _pct(r.time_share), "note": e.note or None}
        tags = dict(zip(schema.WEARING_RATE_TAGS, (r.scope, r.key, r.period, r.source),
                        strict=True))
        out.append(line(schema.WEARING_RATE, tags, fields, period_start(r.period, tz)))
    return out


def did_lines(d: DidResult, baseline: str, followup: str, tz: str, computed_ns: int
              ) -> list[str]:
    """Line protocol of ``schema.PILOT_DID`` at the follow-up period's start."""
    from tingbao.collector import schema
    from tingbao.collector.lineprotocol import line

    fields = {"did_pp": d.did_pp, "lo_pp": d.lo_pp, "hi_pp": d.hi_pp, "p": d.p,
              "method": d.method, "enterprises_pilot": d.enterprises_pilot,
              "enterprises_comparison": d.enterprises_comparison, "n": d.n,
              "pilot_base": d.pilot_base, "pilot_follow": d.pilot_follow,
              "comparison_base": d.comparison_base, "comparison_follow": d.comparison_follow,
              "computed_ns": computed_ns, "note": d.note or None}
    fields = {k: (float(v) if isinstance(v, float) and math.isfinite(v) else v)
              for k, v in fields.items() if not (isinstance(v, float) and not math.isfinite(v))}
    tags = {"baseline": baseline, "followup": followup}
    return [line(schema.PILOT_DID, tags, fields, period_start(followup, tz))]


def did_from_units(units: Iterable[tuple[dt.date, str, str, bool]], reg, baseline: str,
                   followup: str, **kw) -> DidResult:
    """:func:`difference_in_differences` of the observations (local date, enterprise, worker,
    worn correctly) whose date lies in the ``baseline`` or ``followup`` period key (any of
    ``YYYY``, ``YYYY-Qn``, ``YYYY-MM``); pilot = the enterprise's registry group."""
    b0, b1 = period_days(baseline)
    f0, f1 = period_days(followup)
    if not b1 <= f0:
        raise ValueError(f"baseline {baseline} must end before follow-up {followup} starts")
    worn, pilot, post, ent = [], [], [], []
    for date, e, _worker, ok in units:
        if b0 <= date < b1:
            is_post = 0
        elif f0 <= date < f1:
            is_post = 1
        else:
            continue
        worn.append(int(ok))
        pilot.append(int(reg.enterprise(e).group == "pilot"))
        post.append(is_post)
        ent.append(e)
    if not worn:
        raise ValueError(f"no observations in {baseline} or {followup}")
    return difference_in_differences(worn, pilot, post, ent, **kw)
