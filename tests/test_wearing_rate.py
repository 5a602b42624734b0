"""analysis/wearing_rate.py without a database: the intervals against published values and
scipy, milestones at their edge, clustered intervals wider than the naive one, periods, the
DiD and its wild cluster bootstrap against statsmodels, and coverage over repeated simulated
pilots (tests/support/pilot.py; the measured coverage is printed with -s)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from scipy.stats import binomtest
from support.pilot import TRUE_DID_PP, TRUE_RATES, mean_rate, simulate

from tingbao.analysis import action_plan
from tingbao.analysis import wearing_rate as wr
from tingbao.analysis.shifts import local_midnight_ns

# Newcombe RG (1998), "Two-sided confidence intervals for the single proportion: comparison of
# seven methods", Stat Med 17:857–872, Table I, 95 % intervals to 4 decimals: method 3
# (Wilson score, no continuity correction) and method 5 (Clopper–Pearson "exact").
NEWCOMBE = [  # x, n, Wilson (lo, hi), Clopper–Pearson (lo, hi)
    (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
    (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
    (0, 20, (0.0000, 0.1611), (0.0000, 0.1684)),
    (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
]


@pytest.mark.parametrize("x, n, wilson, exact", NEWCOMBE)
def test_single_enterprise_intervals_against_newcombe_and_scipy(x, n, wilson, exact):
    w = wr.single_rate(x, n, "wilson")
    cp = wr.single_rate(x, n, "beta")
    assert (w.lo95, w.hi95) == pytest.approx(wilson, abs=5e-5)
    assert (cp.lo95, cp.hi95) == pytest.approx(exact, abs=5e-5)
    # independent implementation: scipy's binomtest
    sw = binomtest(x, n).proportion_ci(0.95, "wilson")
    se = binomtest(x, n).proportion_ci(0.95, "exact")
    assert (w.lo95, w.hi95) == pytest.approx((sw.low, sw.high), abs=1e-12)
    assert (cp.lo95, cp.hi95) == pytest.approx((se.low, se.high), abs=1e-12)
    # one-sided 95 % lower bound = lower end of the two-sided 90 % interval of the method
    assert w.lower95 == pytest.approx(binomtest(x, n).proportion_ci(0.90, "wilson").low,
                                      abs=1e-12)
    assert cp.lower95 == pytest.approx(binomtest(x, n).proportion_ci(0.90, "exact").low,
                                       abs=1e-12)
    assert w.lower95 >= w.lo95 and w.rate == x / n


def test_milestone_judged_by_the_lower_bound():
    plan = action_plan.milestones()
    assert {y: m.rate for y, m in plan.items()} == {2023: 0.65, 2024: 0.70, 2025: 0.80}
    assert action_plan.load_plan().baseline_rate == pytest.approx(0.537)
    # 2025, milestone 80 %: 332 of 400 = 83.0 % is above it, but its one-sided 95 % Wilson
    # lower bound is 79.69 % (scipy binomtest 90 % two-sided: 0.79691) → not met;
    # 334 of 400 = 83.5 %, lower bound 80.22 % → met
    below, above = wr.single_rate(332, 400), wr.single_rate(334, 400)
    assert below.lower95 == pytest.approx(0.79691, abs=1e-5)
    assert wr.judge(below, 2025, plan) == (0.80, False)
    assert wr.judge(above, 2025, plan) == (0.80, True)
    # the edge itself: a milestone equal to the bound is met, one 1e-9 above is not
    edge = {2025: action_plan.Milestone(2025, below.lower95, "test")}
    assert wr.judge(below, 2025, edge)[1] is True
    edge = {2025: action_plan.Milestone(2025, below.lower95 + 1e-9, "test")}
    assert wr.judge(below, 2025, edge)[1] is False
    assert wr.judge(below, 2026, plan) == (None, None)  # no milestone after the plan


def test_one_plan_serves_the_statistics_and_the_views():
    # pilot_results (the page, the board, the report) reads the same plan data in per cent:
    # baseline 0.537 → 53.7 %; milestones 0.65/0.70/0.80 → 65/70/80 %; a registry with other
    # steps (2026: 0.6) wins in both; and the views load no numpy through it
    import subprocess
    import sys

    from tingbao.analysis import pilot_results as pr
    from tingbao.collector.registry.site import registry_from_mapping

    assert (pr.BASELINE.value_pct, pr.BASELINE.year) == (53.7, 2020)
    ent = {"id": "e1", "name_zh": "甲", "industry": "machinery", "group": "pilot"}
    for dep, want in (({}, {2023: 65.0, 2024: 70.0, 2025: 80.0}),
                      ({"wearing_rate_milestones": [0.6], "milestone_years": [2026]},
                       {2026: 60.0})):
        reg = registry_from_mapping({"deployment": {"timezone": "Asia/Shanghai", **dep},
                                     "enterprises": [ent]})
        assert pr.milestones(reg) == want
        assert {y: 100 * m.rate for y, m in action_plan.milestones(reg).items()} == \
            pytest.approx(want)
    out = subprocess.run([sys.executable, "-c", "import sys, tingbao.analysis.pilot_results;"
                          " print('numpy' in sys.modules)"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_anova_icc_and_design_effect_by_hand():
    # 3 clusters of 10: 2, 5, 8 worn. p_i = .2, .5, .8, p̄ = .5, N = 30, k = 3, n0 = 10
    # MSB = 10·(.09 + 0 + .09)/2 = 0.9; MSW = 10·(.16 + .25 + .16)/27 = 0.21111
    # ICC = (0.9 − 0.21111)/(0.9 + 9·0.21111) = 0.68889/2.8 = 0.246032
    icc = wr.anova_icc([2, 5, 8], [10, 10, 10])
    assert float(icc) == pytest.approx(0.68889 / 2.8, rel=1e-4)
    d = wr.design_effect_rate([2, 5, 8], [10, 10, 10])
    # Deff = 1 + 9·0.246032 = 3.21429; Wilson of 15/Deff of 30/Deff = 4.667 of 9.333
    assert float(d["deff"]) == pytest.approx(1 + 9 * 0.68889 / 2.8, rel=1e-4)
    from statsmodels.stats.proportion import proportion_confint

    # 3 clusters → t with 2 df: effective counts × (z/t_{2,.975})² = (1.959964/4.302653)²
    # = 0.207504 (Korn & Graubard's df-adjusted effective n), then Wilson
    adj = (1.959964 / 4.302653) ** 2
    want = proportion_confint(15 / float(d["deff"]) * adj, 30 / float(d["deff"]) * adj,
                              method="wilson")
    assert (float(d["lo95"]), float(d["hi95"])) == pytest.approx(want, abs=1e-5)
    # no between-cluster variation (all clusters 50 %): ICC 0 (truncated), Deff 1
    assert float(wr.anova_icc([5, 5, 5], [10, 10, 10])) == 0.0
    # all 0: both mean squares 0 → ICC 0, not NaN
    assert float(wr.anova_icc([0, 0], [10, 10])) == 0.0


def test_clustered_interval_wider_than_naive_when_icc_positive():
    # 8 enterprises of 40 with rates 20 % … 90 %: strong clustering (ICC ≈ 0.4)
    x = np.array([8, 12, 16, 20, 24, 28, 32, 36])
    n = np.full(8, 40)
    naive = wr.single_rate(int(x.sum()), int(n.sum()))
    gee = wr.clustered_rate(x, n, "gee_bias_reduced")
    de = wr.clustered_rate(x, n, "design_effect")
    assert gee.method == "gee_bias_reduced" and de.method == "design_effect"
    assert de.icc > 0.2 and de.deff > 5
    for e in (gee, de):
        assert e.hi95 - e.lo95 > 2 * (naive.hi95 - naive.lo95)
        assert e.lo95 < 0.55 < e.hi95 and e.clusters == 8
    # equal cluster sizes: the GEE estimate is the pooled rate 176/320 = 55 %
    assert gee.rate == pytest.approx(0.55, abs=1e-6)


def test_fallbacks_say_why():
    one = wr.clustered_rate([30], [40])
    assert one.method == "wilson" and "one cluster" in one.note
    allone = wr.clustered_rate([40, 40, 40], [40, 40, 40])
    assert allone.method == "design_effect" and "all 0 or all 1" in allone.note
    assert allone.rate == 1.0 and allone.hi95 == pytest.approx(1.0)


def test_periods_and_local_midnight():
    d = dt.date(2025, 8, 31)
    assert [wr.period_key(d, k) for k in ("year", "quarter", "month")] == [
        "2025", "2025-Q3", "2025-08"]
    assert wr.period_days("2025-Q4") == (dt.date(2025, 10, 1), dt.date(2026, 1, 1))
    assert wr.period_days("2025-12") == (dt.date(2025, 12, 1), dt.date(2026, 1, 1))
    # 2025-07-01 00:00 in Shanghai (UTC+8) = 2025-06-30 16:00 UTC = 1751299200 s
    assert wr.period_start("2025-Q3", "Asia/Shanghai") == 1_751_299_200 * 10**9
    with pytest.raises(ValueError, match="not YYYY"):
        wr.period_first_day("2025-Q5")


def _did_arrays(worn):
    """Flatten (enterprise, period, worker) booleans into the DiD's rows."""
    ents, periods, workers = worn.shape
    ent = np.repeat(np.arange(ents), periods * workers)
    post = np.tile(np.repeat([0, 1], workers), ents)
    return worn.ravel().astype(float), ent, post


def test_bootstrap_se_equals_statsmodels_and_null_p():
    sim = simulate(1, pilots=5, comparisons=5, workers=30, seed=3)
    y, ent, post = _did_arrays(sim.worn[0])
    pilot = (ent < 5).astype(float)
    d = wr.difference_in_differences(y, pilot, post, ent, draws=999, seed=1)
    assert d.method == "wild_cluster_bootstrap" and d.weights == "webb"  # 10 ≤ 12 clusters
    # the bootstrap's CR1 standard error is statsmodels' cluster-robust one
    X = np.column_stack([np.ones_like(y), pilot, post, pilot * post])
    wb = wr.wild_cluster_bootstrap(X, y, ent, 3, draws=999, seed=1, weights="webb")
    assert 100 * wb["se"] == pytest.approx(d.se_pp, rel=1e-9)
    assert (wb["lo"] * 100, wb["hi"] * 100) == pytest.approx((d.lo_pp, d.hi_pp))
    # the DiD is the difference of the four cell means (OLS of a saturated model)
    cells = (d.pilot_follow - d.pilot_base) - (d.comparison_follow - d.comparison_base)
    assert d.did_pp == pytest.approx(cells, abs=1e-9)
    assert d.lo_pp < d.did_pp < d.hi_pp
    # 30 or more enterprises: cluster-robust t, no bootstrap
    sim = simulate(1, pilots=15, comparisons=15, workers=10, seed=4)
    y, ent, post = _did_arrays(sim.worn[0])
    d = wr.difference_in_differences(y, (ent < 15).astype(float), post, ent)
    assert d.method == "cluster_robust" and (d.lo_pp, d.hi_pp) == (d.cr_lo_pp, d.cr_hi_pp)


def test_coverage_over_repeated_pilots(capsys):
    """300 simulated pilots (8 + 8 enterprises, 40 workers each per period, enterprise effect
    σ = 0.5 on the logit): each enterprise's Wilson and Clopper–Pearson intervals cover its
    true rate, the design-effect and GEE intervals of a group cover the group's
    population-average truth (55 %, 78 %, 60 %), the one-sided lower bound lies below the truth,
    and the DiD interval covers +18 points, at their stated level (t with G − 1 df). Binomial
    standard error of a coverage of 95 % over R replicates: √(.95·.05/R) = 1.26 points at
    R = 300 (the per-enterprise coverage pools 300 × 16 × 2 intervals)."""
    R = 300
    sim = simulate(R, seed=11)
    assert mean_rate(np.log(0.55 / 0.45), 0.0) == pytest.approx(0.55)  # σ = 0 sanity
    x = sim.worn.sum(axis=-1)
    n = np.full(x.shape, sim.worn.shape[-1])
    report = {}
    for method in ("wilson", "beta"):
        lo, hi = wr.proportion_interval(x, n, method)
        report[method] = np.mean((lo <= sim.p) & (sim.p <= hi))
    truth_base = TRUE_RATES[("pilot", "base")]
    truth_follow = TRUE_RATES[("pilot", "follow")]
    d = wr.design_effect_rate(x[:, :8, 1], n[:, :8, 1])
    report["design_effect"] = np.mean((d["lo95"] <= truth_follow) & (truth_follow <= d["hi95"]))
    report["design_effect_lower"] = np.mean(d["lower95"] <= truth_follow)
    gee = [wr.gee_rate(x[r, 8:, 0], n[r, 8:, 0]) for r in range(150)]
    report["gee"] = np.mean([e.lo95 <= truth_base <= e.hi95 for e in gee])
    report["gee_lower"] = np.mean([e.lower95 <= truth_base for e in gee])
    cover = []
    for r in range(100):
        y, ent, post = _did_arrays(sim.worn[r])
        did = wr.difference_in_differences(y, (ent < 8).astype(float), post, ent, draws=499,
                                           seed=r)
        cover.append(did.lo_pp <= TRUE_DID_PP <= did.hi_pp)
    report["did_wild_cluster_bootstrap"] = np.mean(cover)
    with capsys.disabled():
        print("\nmeasured coverage:", {k: round(float(v), 3) for k, v in report.items()})
    # Wilson and Clopper–Pearson: 9600 intervals; CP is conservative (≥ 95 %)
    assert 0.935 <= report["wilson"] <= 0.965
    assert 0.945 <= report["beta"] <= 0.985
    # 8 clusters: with t_{7} instead of z both clustered intervals reach their level (with z
    # they covered 92.0 % / 90.7 % here). Measured over seeds 11–16 (R = 300, GEE 150): design
    # effect 93.3–97.0 % (mean 95.4), its lower bound 92.3–96.3 % (94.7), GEE 93.3–99.3 %
    # (96.7), its lower bound 92.7–98.0 % (95.3). Accept 95 % − 2 binomial SE: 92.5 % at
    # R = 300 (SE 1.26), 91.5 % at 150 (SE 1.78)
    assert report["design_effect"] >= 0.925 and report["design_effect_lower"] >= 0.925
    assert report["gee"] >= 0.915 and report["gee_lower"] >= 0.915
    # DiD over 100 pilots: SE 2.2 points; at least 88 %
    assert report["did_wild_cluster_bootstrap"] >= 0.88


def test_edge_worker_days_and_time_share(tmp_path):
    from support.pilot import registry_toml

    from tingbao.collector.registry import load_registry

    site = tmp_path / "site.toml"
    site.write_text(registry_toml(tmp_path, pilots=1, comparisons=1), "utf-8")
    reg = load_registry(site)
    day = local_midnight_ns(dt.date(2025, 5, 6), "Asia/Shanghai")
    rows = [  # worn_s / assessed_s: 0.95 ✓, 0.90 ✓ (at the edge), 0.85 ✗, too short
        {"time": day, "enterprise": "pe01", "worker": "a", "worn_s": 27360.0,
         "assessed_s": 28800.0},
        {"time": day, "enterprise": "pe01", "worker": "b", "worn_s": 25920.0,
         "assessed_s": 28800.0},
        {"time": day, "enterprise": "pe01", "worker": "c", "worn_s": 24480.0,
         "assessed_s": 28800.0},
        {"time": day, "enterprise": "pe01", "worker": "d", "worn_s": 3000.0,
         "assessed_s": 3000.0},  # 50 min assessed < 1 h: not a worker-day
    ]
    units, times = wr.edge_worker_days(rows, "Asia/Shanghai")
    assert [(u[0], u[2], u[3]) for u in units] == [
        (dt.date(2025, 5, 6), "a", True), (dt.date(2025, 5, 6), "b", True),
        (dt.date(2025, 5, 6), "c", False)]
    shares = wr.time_shares(times, reg, by="enterprise", period="month")
    # (27360 + 25920 + 24480) / (3 · 28800) = 77760 / 86400 = 0.9
    assert shares == {("pe01", "2025-05"): pytest.approx(0.9)}
    (row,) = wr.rates(units, reg, by="enterprise", period="month", source="edge",
                      time_shares=shares)
    assert (row.estimate.x, row.estimate.n, row.estimate.method) == (2, 3, "wilson")
    assert row.time_share == pytest.approx(0.9) and row.milestone == 0.80


# ------------------------------------------------------------------ review of issue 14, round 2
def _mancl_derouen_se(x, n, b, rho, scale):
    """Independent Mancl–DeRouen (2001) bias-reduced sandwich SE of the logit intercept of an
    exchangeable GEE, written out cluster by cluster (reviewer's script s1.py): bread Σ D'V⁻¹D,
    meat Σ D'V⁻¹(I − H)⁻¹ r r'(I − H)⁻ᵀV⁻¹D with H = D (Σ D'V⁻¹D)⁻¹ D'V⁻¹."""
    from scipy.special import expit

    mu = expit(b)
    blocks = []
    for a, m in zip(x, n, strict=True):
        D = mu * (1 - mu) * np.ones((m, 1))
        A = np.sqrt(mu * (1 - mu)) * np.eye(m)
        V = A @ ((1 - rho) * np.eye(m) + rho * np.ones((m, m))) @ A * scale
        blocks.append((D, np.linalg.inv(V), np.r_[np.ones(a), np.zeros(m - a)] - mu))
    bread_inv = np.linalg.inv(sum(D.T @ Vi @ D for D, Vi, _ in blocks))
    meat = 0
    for D, Vi, r in blocks:
        H = D @ bread_inv @ D.T @ Vi
        u = D.T @ Vi @ np.linalg.solve(np.eye(len(r)) - H, r)
        meat = meat + np.outer(u, u)
    return float(np.sqrt((bread_inv @ meat @ bread_inv)[0, 0]))


def test_gee_interval_never_collapses_below_independence():
    # 6 enterprises, each 1 worn of 2 (what the demo's edge worker-days gave): every cluster's
    # score sum is 0, so the bias-reduced sandwich is ~0 and the interval had zero width
    # (50.0 … 50.0 %). Floored at the independence SE of the logit, 1/√(N p(1−p)) =
    # 1/√(12 · 0.25) = 0.5774, with t_5 (0.975) = 2.5706: logit interval 0 ± 1.4841 →
    # expit → 18.48 % … 81.52 %; one-sided t_5 (0.95) = 2.0150 → lower 0.2393 → 23.81 %.
    from scipy.special import expit

    e = wr.clustered_rate([1] * 6, [2] * 6)
    assert e.method == "gee_bias_reduced" and e.rate == pytest.approx(0.5)
    se = 1 / np.sqrt(12 * 0.25)
    assert e.lo95 == pytest.approx(expit(-2.570582 * se), abs=1e-6)
    assert e.hi95 == pytest.approx(expit(2.570582 * se), abs=1e-6)
    assert e.lower95 == pytest.approx(expit(-2.015048 * se), abs=1e-6)
    assert (round(e.lo95, 4), round(e.lower95, 4)) == (0.1848, 0.2381)
    assert "floored" in e.note


def test_gee_interval_uses_t_with_clusters_minus_one_df():
    import statsmodels.api as sm
    from scipy.special import expit
    from scipy.stats import t

    # 5 enterprises (G = 5 → 4 df): t_{4, .975} = 2.776445, t_{4, .95} = 2.131847 against
    # z = 1.959964 / 1.644854: the old normal interval was about 30 % too narrow on the logit
    x, n = np.array([3, 8, 5, 10, 1]), np.array([10, 12, 8, 15, 6])
    e = wr.gee_rate(x, n)
    y = np.concatenate([np.r_[np.ones(a), np.zeros(m - a)] for a, m in zip(x, n, strict=True)])
    res = sm.GEE(y, np.ones((len(y), 1)), groups=np.repeat(np.arange(5), n),
                 family=sm.families.Binomial(),
                 cov_struct=sm.cov_struct.Exchangeable()).fit(cov_type="bias_reduced")
    b, rho = float(res.params[0]), float(np.ravel(res.cov_struct.dep_params)[0])
    se = _mancl_derouen_se(x, n, b, rho, float(res.scale))
    assert se == pytest.approx(float(res.bse[0]), rel=1e-6)  # statsmodels' bias_reduced SE
    assert t.ppf(0.975, 4) == pytest.approx(2.776445, abs=1e-6)
    assert (e.lo95, e.hi95) == pytest.approx(
        (expit(b - 2.776445 * se), expit(b + 2.776445 * se)), abs=1e-6)
    assert e.lower95 == pytest.approx(expit(b - 2.131847 * se), abs=1e-6)
    assert e.rate == pytest.approx(expit(b), abs=1e-12)


def _wilson_with(p, n, c):
    """The Wilson score interval with critical value ``c`` (written out: Wilson 1927):
    (p + c²/2n ∓ c·√(p(1 − p)/n + c²/4n²)) / (1 + c²/n)."""
    centre, half = p + c * c / (2 * n), c * np.sqrt(p * (1 - p) / n + c * c / (4 * n * n))
    return (centre - half) / (1 + c * c / n), (centre + half) / (1 + c * c / n)


def test_design_effect_interval_uses_t_with_clusters_minus_one_df():
    # 3 clusters of 10 (2, 5, 8 worn): Deff = 3.21429, effective 4.667 of 9.333 (test above);
    # G = 3 → 2 df: the score interval with t_{2, .975} = 4.302653 (95 %) and t_{2, .95} =
    # 2.919986 (one-sided) in place of z = 1.959964 / 1.644854
    d = wr.design_effect_rate([2, 5, 8], [10, 10, 10])
    n_eff = 30 / float(d["deff"])
    lo, hi = _wilson_with(0.5, n_eff, 4.302653)
    assert (float(d["lo95"]), float(d["hi95"])) == pytest.approx((lo, hi), abs=1e-6)
    assert float(d["lower95"]) == pytest.approx(_wilson_with(0.5, n_eff, 2.919986)[0],
                                                abs=1e-6)
    # by hand: c² = 18.5128; (0.5 + 18.5128/18.6667 − 4.302653·√(0.25/9.3333 + 18.5128/348.44))
    # / (1 + 18.5128/9.3333) = (1.49176 − 4.302653·0.282694) / 2.98352 = 0.27542 / 2.98352
    assert float(d["lo95"]) == pytest.approx(0.09231, abs=5e-5)


def _beta_binomial(R, G, m, p, icc, seed):
    """R data sets of G enterprises × m observations, enterprise rates Beta with mean p and
    intra-cluster correlation icc (a = p(1 − icc)/icc, b = (1 − p)(1 − icc)/icc)."""
    rng = np.random.default_rng(seed)
    a, b = p * (1 - icc) / icc, (1 - p) * (1 - icc) / icc
    n = np.full((R, G), m)
    return rng.binomial(n, rng.beta(a, b, (R, G))), n


def test_few_enterprises_one_sided_bound_not_liberal(capsys):
    """The reviewer's s4.py: p = 70 %, ICC 0.1, 30 observations per enterprise. With the normal
    quantile the one-sided 95 % lower bound exceeded the truth in 8 % (GEE, 4 enterprises) and
    8.7 % (design effect) of the data sets. Binomial SE of a 5 % rate: √(.05·.95/R) = 1.26
    points at R = 300 (GEE), 0.34 points at R = 4000 (design effect, vectorised)."""
    out = {}
    for G in (4, 6, 10):
        x, n = _beta_binomial(4000, G, 30, 0.7, 0.1, seed=G)
        d = wr.design_effect_rate(x, n)
        out[f"de_{G}"] = float(np.mean(d["lower95"] > 0.7))
        out[f"de95_{G}"] = float(np.mean((d["lo95"] <= 0.7) & (0.7 <= d["hi95"])))
        gee = [wr.clustered_rate(x[r], n[r]) for r in range(300)]
        out[f"gee_{G}"] = float(np.mean([e.lower95 > 0.7 for e in gee]))
        out[f"gee95_{G}"] = float(np.mean([e.lo95 <= 0.7 <= e.hi95 for e in gee]))
    with capsys.disabled():
        print("\nP(lower95 > truth) and 95 % coverage:", {k: round(v, 3) for k, v in out.items()})
    # measured with t_{G−1} (G = 4, 6, 10): design effect 4.3 / 5.3 / 5.6 %, GEE 3.0 / 4.0 /
    # 5.0 %; with z they were 10.1 / 8.5 / 7.5 % and 7.0 / 5.7 / 6.7 % on these data sets.
    # Accept 5 % + 2 SE for the design effect (5.7 %) and 6.5 % for GEE (5 % + 1.2 SE: the
    # normal-quantile interval fails it at G = 4 and 10)
    for G in (4, 6, 10):
        assert out[f"de_{G}"] <= 0.057 and out[f"gee_{G}"] <= 0.065
        assert out[f"de95_{G}"] >= 0.943 and out[f"gee95_{G}"] >= 0.925


def test_did_without_variation_never_reports_p_zero():
    # s2.py: 8 enterprises × 40, every observation worn: DiD 0, se 0 → t = 0/0; the old code
    # counted mean(|t*| ≥ NaN) = 0 and reported p = 0 with the interval [0, 0]
    ent = np.repeat(np.arange(8), 40)
    pilot = (ent < 4).astype(float)
    post = np.tile(np.r_[np.zeros(20), np.ones(20)], 8)
    for bootstrap in (True, False):
        d = wr.difference_in_differences(np.ones(320), pilot, post, ent, draws=99,
                                         bootstrap=bootstrap)
        assert d.did_pp == pytest.approx(0.0, abs=1e-9) and d.p == 1.0 and d.cr_p == 1.0
        assert np.isnan(d.lo_pp) and np.isnan(d.hi_pp) and "no variation" in d.note
        assert "cannot be inverted" in d.note
    # varying y but no residual: pilots 0 → 1, comparisons 0 → 0 in every enterprise; the DiD
    # is 100 points exactly, se = 0: no test is possible, p NaN (not 0), no interval
    y = pilot * post
    d = wr.difference_in_differences(y, pilot, post, ent, draws=99)
    assert d.did_pp == pytest.approx(100.0) and np.isnan(d.p) and np.isnan(d.lo_pp)
    assert "standard error" in d.note
    lines = wr.did_lines(d, "2024", "2025", "Asia/Shanghai", 0)
    assert " p=" not in lines[0] and ",p=" not in lines[0] and "lo_pp" not in lines[0]
    # the command's outputs: JSON stays JSON (NaN → null) and the table says why there is
    # no test instead of printing "+nan"
    import argparse
    import json

    from tingbao.analysis.cli import wearing_rate as cli

    row = {"baseline": "2024", "followup": "2025",
           **{k: cli._finite(getattr(d, k)) for k in cli.DID_COLUMNS[2:]}}
    assert row["p"] is None and row["lo_pp"] is None and row["did_pp"] == pytest.approx(100)
    json.loads(json.dumps(row, allow_nan=False))
    text = cli.table([], row, argparse.Namespace(by="group", period="year"))
    assert "+nan" not in text and "p = nan" not in text and "p = —" in text
    assert "standard error" in text


def test_single_enterprise_rate_keeps_enterprise_count_and_names_worker_clusters(tmp_path):
    from support.pilot import registry_toml

    from tingbao.collector.registry import load_registry

    site = tmp_path / "site.toml"
    site.write_text(registry_toml(tmp_path, pilots=1, comparisons=1), "utf-8")
    reg = load_registry(site)
    # pe01: 5 workers seen 4 times each (worker i wears on i of 4 visits … 0, 1, 2, 3, 4):
    # 10 of 20, clustered by the 5 workers; stored clusters = 1 enterprise (schema
    # WEARING_RATE "clusters (enterprises)", the pilot page's 企业数), workers in the note
    day = dt.date(2025, 3, 3)
    units = [(day, "pe01", f"w{i}", k < i) for i in range(5) for k in range(4)]
    (row,) = wr.rates(units, reg, by="enterprise", period="year")
    e = row.estimate
    assert (e.x, e.n, e.clusters) == (10, 20, 1)
    assert "5 workers" in e.note
    direct = wr.clustered_rate([0, 1, 2, 3, 4], [4, 4, 4, 4, 4])
    assert direct.clusters == 5 and (e.lo95, e.hi95) == (direct.lo95, direct.hi95)


def test_all_worn_across_enterprises_is_not_treated_as_independent():
    # 2 enterprises × 500, every one worn: the old fallback (Wilson of 1000 of 1000) gave
    # lower95 = 1000/(1000 + 1.644854²) = 0.9973 and met any milestone. Now each enterprise
    # counts once (ICC taken as 1, Deff = m̄ = 500): Clopper–Pearson of 2 of 2, one-sided
    # lower bound 0.05^(1/2) = 0.22361, two-sided 0.025^(1/2) = 0.15811
    for method in wr.GROUP_METHODS:
        e = wr.clustered_rate([500, 500], [500, 500], method)
        assert e.rate == 1.0 and e.hi95 == 1.0 and e.deff == pytest.approx(500)
        assert e.lower95 == pytest.approx(0.05 ** 0.5, abs=1e-9)
        assert e.lo95 == pytest.approx(0.025 ** 0.5, abs=1e-9)
        assert "all 0 or all 1" in e.note
        assert wr.judge(e, 2025, action_plan.milestones())[1] is False
    # all 0 across 4 enterprises of 30: upper 1 − 0.025^(1/4) = 0.60237, lower 0
    e = wr.clustered_rate([0, 0, 0, 0], [30, 30, 30, 30])
    assert (e.lo95, e.lower95) == (0.0, 0.0) and e.hi95 == pytest.approx(1 - 0.025 ** 0.25)
