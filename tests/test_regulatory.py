"""The regulatory arithmetic beside GBZ/T 229.4: OSHA 29 CFR 1910.95 dose and TWA (Table
G-16a, Appendix A), NIOSH with the same functions, GBZ 2.2-2007 weekly exposure and impulse
peak limits, the provisional GBZ/T 229.4 impulse grades, EU 2003/10/EC Article 3 statuses,
and task-based LEX,8h (GBZ/T 189.8). Each test states its arithmetic."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tingbao.analysis import dosimeters, eu_2003_10, gbz2_2, osha_1910_95
from tingbao.analysis.gbzt189_8 import lex_8h, lex_8h_from_tasks
from tingbao.analysis.gbzt229_4 import PROVISIONAL_NOTE, impulse_grade
from tingbao.collector.registry import profile

OSHA = profile("OSHA")
NIOSH = profile("NIOSH")
CN = profile("CN-GBZ")
EU = profile("EU-2003-10-EC")
P0 = 20e-6


# ------------------------------------------------------------------------------ OSHA / NIOSH
@pytest.mark.parametrize("level, hours", [(80, 32.0), (85, 16.0), (90, 8.0), (95, 4.0),
                                          (100, 2.0), (105, 1.0), (110, 0.5), (115, 0.25),
                                          (120, 0.125)])
def test_table_g16a_reference_durations(level, hours):
    # T = 8 / 2^((L - 90)/5): Table G-16a prints 32, 16, 8, 4, 2, 1, 0.5, 0.25, 0.125 h
    assert osha_1910_95.allowed_time_h(level, 90.0, 5.0) == pytest.approx(hours, rel=1e-12)


def test_allowed_time_is_vectorised():
    t = osha_1910_95.allowed_time_h(np.array([[90.0, 95.0], [100.0, 85.0]]), 90.0, 5.0)
    assert t.shape == (2, 2) and np.allclose(t, [[8, 4], [2, 16]], rtol=1e-12)


def test_osha_mixed_level_shift():
    # 2 h at 95 (T = 4 h) + 4 h at 90 (T = 8 h) + 2 h at 85 (T = 16 h):
    # D = 100 (2/4 + 4/8 + 2/16) = 50 + 50 + 12.5 = 112.5 %;
    # TWA = 16.61 lg 1.125 + 90 = 16.61 · 0.05115 + 90 = 90.85 dB(A)
    d = osha_1910_95.dose_pct([95, 90, 85], [2, 4, 2], criterion_db=90, exchange_db=5,
                              threshold_db=80)
    assert d == pytest.approx(112.5, rel=1e-12)
    assert osha_1910_95.dose_from_profile([95, 90, 85], [2, 4, 2], OSHA) == pytest.approx(
        112.5, rel=1e-12)
    twa = osha_1910_95.twa_db(d, 90, 5)
    assert twa == pytest.approx(16.61 * math.log10(1.125) + 90, abs=1e-4)
    assert round(twa, 2) == 90.85
    # levels below the 80 dB(A) threshold add nothing: 2 more hours at 79.9 and 60
    d2 = osha_1910_95.dose_from_profile([95, 90, 85, 79.9, 60], [2, 4, 2, 2, 6], OSHA)
    assert d2 == pytest.approx(112.5, rel=1e-12)
    # at exactly 80 dB(A) it counts: 8 h at 80 = 8/32 = 25 %
    assert osha_1910_95.dose_from_profile([80.0], [8.0], OSHA) == pytest.approx(25.0)


def test_osha_dose_twa_correspondence():
    # 50 % ↔ 85 dB(A) (the action level): 16.61 lg 0.5 + 90 = 90 − 5.0 = 85.0
    assert osha_1910_95.twa_db(50.0, 90, 5) == pytest.approx(85.0, abs=1e-12)
    assert osha_1910_95.twa_db(100.0, 90, 5) == pytest.approx(90.0, abs=1e-12)
    # 200 % ↔ 95; 8 h at a constant L reads back L: 8/T(L) = 2^((L − 90)/5)
    assert osha_1910_95.twa_db(200.0, 90, 5) == pytest.approx(95.0, abs=1e-12)
    for level in (81.3, 92.0, 104.7):
        d = osha_1910_95.dose_from_profile([level], [8.0], OSHA)
        assert osha_1910_95.twa_db(d, 90, 5) == pytest.approx(level, abs=1e-9)
    assert math.isnan(osha_1910_95.twa_db(0.0, 90, 5))


def test_niosh_with_the_same_functions():
    # NIOSH REL: 85 dB(A) for 8 h = 100 %; 88 dB(A) for 4 h = 4/(8/2^(3/3)) = 100 %
    assert osha_1910_95.dose_from_profile([85.0], [8.0], NIOSH) == pytest.approx(100.0)
    assert osha_1910_95.dose_from_profile([88.0], [4.0], NIOSH) == pytest.approx(100.0)
    # NIOSH's printed TWA is 10 lg(D/100) + 85; tingbao uses 3/lg 2 = 9.966: at D = 1 000 %
    # 95.0 (printed) vs 85 + 9.966 = 94.966, 0.034 dB apart; at 100 % both are 85
    assert osha_1910_95.twa_db(1000.0, 85, 3) == pytest.approx(85 + 3 / math.log10(2),
                                                               abs=1e-12)
    assert 95.0 - osha_1910_95.twa_db(1000.0, 85, 3) == pytest.approx(0.034, abs=0.0005)
    c = osha_1910_95.criterion(NIOSH)
    assert (c.criterion_db, c.exchange_db, c.criterion_h) == (85.0, 3.0, 8.0)


def test_dose_input_checks():
    with pytest.raises(ValueError, match="shape"):
        osha_1910_95.dose_pct([90, 95], [1.0], criterion_db=90, exchange_db=5)
    with pytest.raises(ValueError):
        osha_1910_95.dose_pct([90], [-1.0], criterion_db=90, exchange_db=5)


# ------------------------------------------------------------------- GBZ 2.2-2007 / 189.8
def test_task_based_lex():
    # 4 h at 88 + 4 h at 80: 10 lg(0.5·10^8.8 + 0.5·10^8.0) = 85.63 dB(A) (noise-standards.md
    # example 85.6), the same as the energy sum of EA = Σ p0² 10^(0.1 L) T
    assert lex_8h_from_tasks([88.0, 80.0], [4.0, 4.0]) == pytest.approx(85.6286, abs=1e-4)
    ea = sum(P0**2 * 10 ** (0.1 * level) * 4 * 3600 for level in (88.0, 80.0))
    assert lex_8h_from_tasks([88.0, 80.0], [4.0, 4.0]) == pytest.approx(lex_8h(ea), abs=1e-9)
    # 4 h at 90 and nothing else: 90 + 10 lg(4/8) = 86.99; a 0 h task adds nothing
    assert lex_8h_from_tasks([90.0, 120.0], [4.0, 0.0]) == pytest.approx(
        90 + 10 * math.log10(0.5), abs=1e-12)
    assert math.isnan(lex_8h_from_tasks([90.0], [0.0]))


def test_lex_w_for_weeks_that_are_not_five_days():
    # six days at 85: 10 lg(6·10^8.5 / 5) = 85 + 10 lg 1.2 = 85.79 dB(A)
    assert gbz2_2.lex_w([85.0] * 6, CN) == pytest.approx(85 + 10 * math.log10(1.2), abs=1e-12)
    assert round(gbz2_2.lex_w([85.0] * 6, CN), 2) == 85.79
    # a 3-day week at 85: 85 + 10 lg(3/5) = 82.78 dB(A)
    assert round(gbz2_2.lex_w([85.0] * 3, CN), 2) == 82.78
    # three days at 88, 86, 90: 10 lg((6.3096 + 3.9811 + 10.0)·10^8 / 5) = 10 lg(4.0581·10^8)
    # = 86.08 dB(A)
    want = 10 * math.log10((10**8.8 + 10**8.6 + 10**9.0) / 5)
    assert gbz2_2.lex_w([88.0, 86.0, 90.0], CN) == pytest.approx(want, abs=1e-12)
    assert round(want, 2) == 86.08
    # five days at L gives L (the divisor is the week's 5 days)
    assert gbz2_2.lex_w([87.0] * 5) == pytest.approx(87.0, abs=1e-12)
    with pytest.raises(ValueError, match="at most 7"):
        gbz2_2.lex_w([85.0] * 8)
    with pytest.raises(ValueError):
        gbz2_2.lex_w([85.0, float("nan")])
    with pytest.raises(ValueError, match="week_divisor_days"):
        gbz2_2.lex_w([85.0], OSHA)
    assert math.isnan(gbz2_2.lex_w([]))


@pytest.mark.parametrize("n, limit", [(0, 140.0), (1, 140.0), (100, 140.0), (101, 130.0),
                                      (1000, 130.0), (1001, 120.0), (10000, 120.0),
                                      (10001, None)])
def test_gbz_2_2_peak_limit_by_impulse_count(n, limit):
    # GBZ 2.2-2007: n ≤ 100 → 140; 100 < n ≤ 1 000 → 130; 1 000 < n ≤ 10 000 → 120; beyond
    # the table no limit (None)
    assert gbz2_2.peak_limit_db(n, CN) == limit


def test_peak_check_margin_weighting_and_beyond_the_table():
    # 128 dB with 500 impulses: limit 130, margin 130 − 128 = 2 dB, not exceeded
    c = gbz2_2.peak_check(128.0, 500, CN)
    assert (c.limit_db, c.exceeded, c.margin_db) == (130.0, False, 2.0)
    # C weighting at confidence L: a note in Chinese then English
    assert (c.weighting, c.weighting_confidence) == ("C", "L")
    assert c.provisional and "未经确认" in c.provisional[0] and "not confirmed" in c.provisional[0]
    # at the limit it counts as reached: 130 with 500 impulses, margin 0
    assert gbz2_2.peak_check(130.0, 500, CN).exceeded
    # 10 001 impulses: no limit, treated as exceeded, flagged
    b = gbz2_2.peak_check(100.0, 10_001, CN)
    assert (b.limit_db, b.exceeded, b.margin_db) == (None, True, None)
    assert gbz2_2.BEYOND_TABLE_NOTE in b.provisional and "10 000" in gbz2_2.BEYOND_TABLE_NOTE
    # EU: one ceiling whatever the count (140 dB(C)), weighting confirmed: no note
    e = gbz2_2.peak_check(139.0, 50_000, EU)
    assert (e.limit_db, e.exceeded, e.margin_db, e.provisional) == (140.0, False, 1.0, ())
    assert gbz2_2.peak_check(float("nan"), 10, CN) is None
    with pytest.raises(ValueError):
        gbz2_2.peak_limit_db(-1, CN)


@pytest.mark.parametrize("peak, n, code", [
    # n ≤ 100 (limit 140): I 140.0–142.5, II 142.5–145.0, III 145.0–147.5, IV ≥ 147.5
    (139.9, 100, "0"), (140.0, 100, "I"), (142.4, 100, "I"), (142.5, 100, "II"),
    (144.9, 50, "II"), (145.0, 50, "III"), (147.4, 1, "III"), (147.5, 1, "IV"),
    # 100 < n ≤ 1 000 (limit 130): the same steps above 130
    (129.9, 101, "0"), (130.0, 101, "I"), (132.5, 1000, "II"), (135.0, 500, "III"),
    (137.5, 1000, "IV"),
    # 1 000 < n ≤ 10 000 (limit 120)
    (119.9, 1001, "0"), (120.0, 10000, "I"), (122.5, 10000, "II"), (127.5, 5000, "IV"),
    # beyond the table: not graded
    (110.0, 10001, "beyond"),
])
def test_provisional_impulse_grades_at_the_edges(peak, n, code):
    g = impulse_grade(peak, n, CN)
    assert g.code == code
    assert g.provisional is True and PROVISIONAL_NOTE in g.notes
    if code not in ("0", "beyond"):
        assert g.above_limit_db == pytest.approx(peak - gbz2_2.peak_limit_db(n, CN))
        assert g.label.endswith("（暂定 provisional）")


def test_impulse_grade_data_is_marked_provisional():
    assert CN.impulse_grades_provisional is True
    assert [(g.code, g.above_limit_db) for g in CN.impulse_grades] == [
        ("I", 0.0), ("II", 2.5), ("III", 5.0), ("IV", 7.5)]
    assert impulse_grade(None, 10, CN) is None
    with pytest.raises(ValueError, match="no impulse-noise grades"):
        impulse_grade(140.0, 10, OSHA)


# --------------------------------------------------------------------- EU 2003/10/EC
@pytest.mark.parametrize("lex, status", [(79.9, "below"), (80.0, "lower_action"),
                                         (84.9, "lower_action"), (85.0, "action"),
                                         (86.9, "action"), (87.0, "exceeded")])
def test_eu_lex_statuses(lex, status):
    # Art. 3: lower action 80, upper action 85, limit 87 dB(A); reached values count
    c = eu_2003_10.classify(lex)
    assert (c.lex_status, c.status, c.peak_status) == (status, status, None)
    # no protector known: the limit was checked on the unprotected level, and it says so
    assert not c.limit_under_protector and eu_2003_10.UNPROTECTED_NOTE in c.notes


@pytest.mark.parametrize("peak, status", [(134.9, "below"), (135.0, "lower_action"),
                                          (136.9, "lower_action"), (137.0, "action"),
                                          (139.9, "action"), (140.0, "exceeded")])
def test_eu_peak_statuses(peak, status):
    # Art. 3: peaks 135 / 137 / 140 dB(C); a quiet LEX,8h so the peak decides
    c = eu_2003_10.classify(70.0, peak)
    assert (c.peak_status, c.status) == (status, status)


def test_eu_limit_applies_under_the_protector():
    # 95 dB(A) unprotected, 78 under the protector: above the upper action value (action
    # values ignore protectors) but the limit is kept (78 < 87)
    c = eu_2003_10.classify(95.0, 138.0, protected_lex_db=78.0, protected_peak_db=120.0)
    assert (c.lex_status, c.peak_status, c.status) == ("action", "action", "action")
    assert c.limit_under_protector and c.notes == ()
    # 90 under the protector: exceeded
    assert eu_2003_10.classify(95.0, protected_lex_db=90.0).status == "exceeded"
    # a protected LEX but an unprotected peak: the peak's limit check is flagged
    c = eu_2003_10.classify(95.0, 141.0, protected_lex_db=78.0)
    assert c.peak_status == "exceeded" and not c.limit_under_protector


# ---------------------------------------------------------------------- virtual dosimeters
def _ea(levels_hours):
    """A-weighted exposure (Pa²·s) of (level dB(A), hours) pairs: Σ p0² 10^(0.1 L) · 3600 T."""
    return sum(P0**2 * 10 ** (0.1 * level) * 3600 * h for level, h in levels_hours)


def _niosh_fraction(levels_hours):
    """NIOSH dose fraction by hand: Σ T / (8 / 2^((L − 85)/3))."""
    return sum(h / (8 / 2 ** ((level - 85) / 3)) for level, h in levels_hours)


def test_dosimeters_side_by_side_for_the_worked_shift():
    # 2 h at 95 + 4 h at 90 + 2 h at 85 dB(A), fully covered.
    # CN-GBZ / EU: LEX,8h = 10 lg(0.25·10^9.5 + 0.5·10^9 + 0.25·10^8.5) = 10 lg(1.3696·10^9)
    # = 91.37 dB(A); CN dose 100·10^(0.1(91.37 − 85)) = 433 %, EU 100·10^(0.1(91.37 − 87)) =
    # 273 %. OSHA: 112.5 %, TWA 90.85. NIOSH: 0.25·2^(10/3) + 0.5·2^(5/3) + 0.25 = 4.357 →
    # 435.7 %, TWA 85 + 9.966 lg 4.357 = 91.37 (3 dB vs 10 lg 2 dB: within 0.05 of the LEX).
    shift = [(95.0, 2.0), (90.0, 4.0), (85.0, 2.0)]
    lex = 10 * math.log10(0.25 * 10**9.5 + 0.5 * 10**9.0 + 0.25 * 10**8.5)
    sums = dosimeters.PostSums(_ea(shift), 28_800.0, 28_800.0, 125.0, 128.0, {120.0: 40},
                               {"OSHA": 1.125, "NIOSH": _niosh_fraction(shift)})
    by_id = {v.profile: v for v in dosimeters.views(sums)}
    assert set(by_id) == {"CN-GBZ", "OSHA", "NIOSH", "EU-2003-10-EC"}
    cn, eu, osha, niosh = (by_id[i] for i in ("CN-GBZ", "EU-2003-10-EC", "OSHA", "NIOSH"))
    assert cn.lex_8h_db == pytest.approx(lex, abs=1e-9) and round(lex, 2) == 91.37
    assert cn.twa_db is None and cn.level_db == cn.lex_8h_db
    assert cn.dose_pct == pytest.approx(100 * 10 ** (0.1 * (lex - 85)), rel=1e-9)
    assert round(cn.dose_pct) == 433
    assert (cn.status, cn.grade.code, cn.limit_db, cn.lower_action_db) == (
        "exceeded", "II", 85.0, 80.0)
    # 40 impulses (≤ 100): limit 140, peak 125 C below it; impulse grade 0 but provisional
    assert (cn.peak_limit_db, cn.peak_exceeded, cn.n_impulses) == (140.0, False, 40)
    assert cn.impulse_grade.code == "0" and cn.impulse_grade.provisional
    assert eu.dose_pct == pytest.approx(100 * 10 ** (0.1 * (lex - 87)), rel=1e-9)
    assert (eu.status, eu.action_db, eu.peak_limit_db) == ("exceeded", 85.0, 140.0)
    assert any("hearing-protector" in n for n in eu.notes)
    assert osha.dose_pct == pytest.approx(112.5, rel=1e-12)
    assert osha.lex_8h_db is None and round(osha.twa_db, 2) == 90.85
    assert (osha.status, osha.limit_db, osha.action_db) == ("exceeded", 90.0, 85.0)
    assert niosh.dose_pct == pytest.approx(435.7, abs=0.05)
    assert niosh.twa_db == pytest.approx(85 + 3 / math.log10(2) * math.log10(4.357), abs=0.001)
    assert abs(niosh.twa_db - lex) < 0.05


@pytest.mark.parametrize("level, cn, eu, osha, niosh", [
    # 8 h at L. CN: 噪声作业 80 → lower_action, limit 85. EU: 80 / 85 / 87.
    # OSHA: action 85 (50 %), PEL 90; levels < 80 add no dose. NIOSH: REL 85 only.
    (79.0, "below", "below", "below", "below"),
    (82.0, "lower_action", "lower_action", "below", "below"),
    (86.0, "exceeded", "action", "action", "exceeded"),
    (88.0, "exceeded", "exceeded", "action", "exceeded"),
    (91.0, "exceeded", "exceeded", "exceeded", "exceeded"),
])
def test_dosimeter_statuses_for_a_steady_shift(level, cn, eu, osha, niosh):
    # OSHA fraction 2^((L − 90)/5) if L ≥ 80 (else 0: no TWA, status below);
    # NIOSH 2^((L − 85)/3) (no threshold)
    doses = {"NIOSH": 2 ** ((level - 85) / 3)}
    if level >= 80:
        doses["OSHA"] = 2 ** ((level - 90) / 5)
    else:
        doses["OSHA"] = 0.0
    sums = dosimeters.PostSums(_ea([(level, 8.0)]), 28_800.0, 28_800.0, None, None, {}, doses)
    by_id = {v.profile: v for v in dosimeters.views(sums)}
    got = tuple(by_id[i].status for i in ("CN-GBZ", "EU-2003-10-EC", "OSHA", "NIOSH"))
    assert got == (cn, eu, osha, niosh)
    for v in by_id.values():  # a steady 8 h shift reads back its level, whatever the metric
        if v.profile != "OSHA" or level >= 80:
            assert v.level_db == pytest.approx(level, abs=1e-9)
    if level < 80:
        assert by_id["OSHA"].dose_pct == 0 and math.isnan(by_id["OSHA"].twa_db)
        assert any("threshold" in n for n in by_id["OSHA"].notes)


def test_dosimeter_projection_of_short_coverage_and_missing_data():
    # 4 h measured at 88 dB(A) of an 8 h shift: projected LEX,8h 88 (the rest as loud);
    # OSHA's 4 h dose 4/(8/2^(-2/5)) = 0.3789 is doubled to 75.8 %, TWA 88.
    frac = 4 / (8 / 2 ** (-2 / 5))
    sums = dosimeters.PostSums(_ea([(88.0, 4.0)]), 14_400.0, 28_800.0, dose_sums={"OSHA": frac})
    cn = dosimeters.view(sums, "CN-GBZ")
    osha = dosimeters.view(sums, "OSHA")
    assert cn.lex_8h_db == pytest.approx(88.0, abs=1e-9)
    assert osha.dose_pct == pytest.approx(200 * frac, rel=1e-12)
    assert osha.twa_db == pytest.approx(88.0, abs=1e-9)
    assert any("coverage 50.0 %" in n for n in cn.notes)
    # no impulse count: the GBZ 2.2 peak limit is not checked, and it says so
    assert cn.peak_exceeded is None and any("no impulse count" in n for n in cn.notes)
    # NIOSH without its dose sum: no dose, no TWA, a note
    niosh = dosimeters.view(sums, "NIOSH")
    assert math.isnan(niosh.dose_pct) and niosh.status is None
    assert any("no NIOSH dose sum" in n for n in niosh.notes)
    # nothing covered: no level, no status
    empty = dosimeters.view(dosimeters.PostSums(0.0, 0.0, 28_800.0), "CN-GBZ")
    assert empty.status is None and math.isnan(empty.level_db)
    with pytest.raises(ValueError):
        dosimeters.PostSums(1.0, 1.0, 0.0)


def test_dosimeter_peaks():
    quiet = _ea([(70.0, 8.0)])
    # CN: 135 dB(C) with 500 impulses (limit 130): exceeded → status exceeded although the
    # LEX,8h is 70; provisional impulse grade III (135 − 130 = 5.0 dB)
    cn = dosimeters.view(dosimeters.PostSums(quiet, 28_800.0, 28_800.0, 135.0, 139.0,
                                             {120.0: 500, 130.0: 20}), "CN-GBZ")
    assert (cn.peak_limit_db, cn.peak_exceeded, cn.status) == (130.0, True, "exceeded")
    assert cn.impulse_grade.code == "III" and cn.impulse_grade.provisional
    assert any("provisional" in n for n in cn.notes) and any("≥ 120 dB" in n for n in cn.notes)
    # more than 10 000 impulses: no limit in GBZ 2.2, treated as exceeded
    many = dosimeters.view(dosimeters.PostSums(quiet, 28_800.0, 28_800.0, 115.0, 118.0,
                                               {120.0: 12_000}), "CN-GBZ")
    assert (many.peak_limit_db, many.peak_exceeded) == (None, True)
    assert gbz2_2.BEYOND_TABLE_NOTE in many.notes
    # a profile whose peak weighting is Z reads LZpeak (139 → within 140)
    cn_z = dataclasses.replace(CN, peak_weighting="Z")
    z = dosimeters.view(dosimeters.PostSums(quiet, 28_800.0, 28_800.0, 135.0, 139.0,
                                            {120.0: 50}), cn_z)
    assert (z.peak_db, z.peak_weighting, z.peak_exceeded) == (139.0, "Z", False)
    # EU: 136 dB(C) reaches the lower peak action value (135) with a quiet LEX
    eu = dosimeters.view(dosimeters.PostSums(quiet, 28_800.0, 28_800.0, 136.0, 139.0),
                         "EU-2003-10-EC")
    assert (eu.status, eu.peak_exceeded) == ("lower_action", False)
    # OSHA: the 140 dB ceiling whatever the count
    osha = dosimeters.view(dosimeters.PostSums(quiet, 28_800.0, 28_800.0, 141.0, 143.0,
                                               dose_sums={"OSHA": 0.0}), "OSHA")
    assert (osha.peak_limit_db, osha.peak_exceeded, osha.status) == (140.0, True, "exceeded")


def test_post_sums_from_the_schema_combiners():
    # add_sums / add_peaks entries → PostSums: imp_120 = 12 and imp_137p5 = 2 impulses become
    # {120.0: 12, 137.5: 2}; the GBZ 2.2 count is the lowest threshold's (12 ≤ 100 → 140 dB)
    energy = {"ea": _ea([(85.0, 8.0)]), "coverage": 28_800.0, "n": 28_800}
    peaks = {"lcpeak": 131.0, "lzpeak": 133.0, "lafmax": 101.0, "imp_120": 12, "imp_137p5": 2}
    sums = dosimeters.PostSums.from_store(energy, peaks, 28_800.0)
    assert dict(sums.impulse_counts) == {120.0: 12, 137.5: 2}
    cn = dosimeters.view(sums, "CN-GBZ")
    assert (cn.n_impulses, cn.peak_limit_db, cn.peak_db) == (12, 140.0, 131.0)
    assert cn.lex_8h_db == pytest.approx(85.0, abs=1e-9) and cn.status == "exceeded"


# ------------------------------------------------------- one impulse count n, one coverage rule
@pytest.mark.parametrize("counts, want", [
    # every impulse the edge counted is one of the day: the count at the lowest threshold
    ({110.0: 5000, 120.0: 50}, (5000, 110.0)),
    ({120.0: 12, 137.5: 2}, (12, 120.0)),
    ({140.0: 3, 120.0: 40, 130.0: 7}, (40, 120.0)),  # order of the mapping does not matter
    ({120.0: 0}, (0, 120.0)),  # counted, none: n = 0 (not unknown)
    ({}, (None, None)),  # the edge did not count: n unknown
])
def test_impulse_count_is_the_count_at_the_lowest_threshold(counts, want):
    assert gbz2_2.impulse_count(counts) == want
    with pytest.raises(ValueError):
        gbz2_2.impulse_count({120.0: -1})
    with pytest.raises(ValueError):
        gbz2_2.impulse_count({120.0: 2.5})


def test_the_same_counts_give_the_same_n_everywhere():
    # {110: 5000, 120: 50}: the edge counted 5000 impulses from 110 dB, 50 of them reached
    # 120 dB. n = 5000 (not 50): 1 000 < 5000 ≤ 10 000 → peak limit 120 dB, so a day's
    # LCpeak of 125 dB exceeds it by 5 dB (with n = 50 it would have been within 140 dB).
    counts = {110.0: 5000, 120.0: 50}
    n, threshold = gbz2_2.impulse_count(counts)
    assert (n, threshold) == (5000, 110.0)
    assert gbz2_2.peak_limit_db(n, CN) == 120.0
    quiet = _ea([(70.0, 8.0)])
    # directly, and from the store's field names (imp_110 = 5000, imp_120 = 50, add_peaks)
    direct = dosimeters.PostSums(quiet, 28_800.0, 28_800.0, 125.0, 127.0, counts)
    stored = dosimeters.PostSums.from_store(
        {"ea": quiet, "coverage": 28_800.0}, {"lcpeak": 125.0, "lzpeak": 127.0,
                                              "imp_110": 5000, "imp_120": 50}, 28_800.0)
    for sums in (direct, stored):
        assert gbz2_2.impulse_count(sums.impulse_counts) == (n, threshold)
        for v in dosimeters.views(sums):  # every profile reads the same n
            assert v.n_impulses == n
        cn = dosimeters.view(sums, "CN-GBZ")
        assert (cn.peak_limit_db, cn.peak_exceeded, cn.status) == (120.0, True, "exceeded")
        assert any("≥ 110 dB" in x for x in cn.notes)
        # the provisional impulse grade reads the same n: 125 − 120 = 5.0 dB above the limit
        assert cn.impulse_grade.above_limit_db == pytest.approx(5.0)
        assert impulse_grade(125.0, n, CN).code == cn.impulse_grade.code
    # no counts: n unknown everywhere, the GBZ 2.2 limit is not checked
    none = dosimeters.PostSums(quiet, 28_800.0, 28_800.0, 125.0, 127.0, {})
    assert gbz2_2.impulse_count(none.impulse_counts) == (None, None)
    assert all(v.n_impulses is None for v in dosimeters.views(none))
    assert dosimeters.view(none, "CN-GBZ").peak_exceeded is None


def test_views_follow_the_coverage_rule_of_the_profile_in_force():
    # 4 h measured at 88 dB(A) of an 8 h shift: coverage 14 400 / 28 800 = 0.5.
    # EA = p0² · 10^8.8 · 14 400 s; OSHA's dose sum of those 4 h: 4 / (8 / 2^((88 − 90)/5))
    # = 0.5 · 2^−0.4 = 2^−1.4 = 0.37893.
    ea = _ea([(88.0, 4.0)])
    frac = 2 ** -1.4
    sums = dosimeters.PostSums(ea, 14_400.0, 28_800.0, dose_sums={"OSHA": frac})
    # Below min_coverage 0.8: measured energy only (a lower bound).
    # CN: LEX,8h = 10 lg(EA / (p0² · 28 800)) = 88 + 10 lg 0.5 = 84.99 dB(A); dose
    # 100 · 10^(0.1 (84.99 − 85)) = 100 · 0.5 · 10^0.3 = 99.76 % (half the extended 199.5 %);
    # lower_action (80 ≤ 84.99 < 85).
    # OSHA: dose 100 · 2^−1.4 = 37.89 % unscaled, TWA = 90 + 16.61 lg 0.3789 = 90 − 7 = 83.0.
    cn, osha = dosimeters.views(sums, ["CN-GBZ", "OSHA"], min_coverage=0.8)
    low = 88.0 + 10 * math.log10(0.5)
    assert cn.lex_8h_db == pytest.approx(low, abs=1e-9) and round(low, 2) == 84.99
    assert cn.dose_pct == pytest.approx(50 * 10**0.3, rel=1e-9) and round(cn.dose_pct, 2) == 99.76
    assert cn.status == "lower_action"
    assert osha.dose_pct == pytest.approx(100 * frac, rel=1e-12)
    assert round(osha.dose_pct, 2) == 37.89
    assert osha.twa_db == pytest.approx(83.0, abs=1e-9)
    note = dosimeters.LOW_COVERAGE_NOTE.format(coverage_pct=50.0, min_pct=80.0)
    for v in (cn, osha):
        assert note in v.notes and "覆盖率" in note and "lower bound" in note
        assert "coverage 50.0 % below 80 %" in note
        assert not any("taken as loud" in x for x in v.notes)
    # the same as the profile in force computes it (analysis/exposure.py post_lex)
    from tingbao.analysis.exposure import post_lex

    assert post_lex(ea, 14_400.0, 28_800.0, 0.8).lex_8h == pytest.approx(cn.lex_8h_db, abs=1e-9)
    # At or above min_coverage (0.5 is reached: the edge is inclusive, as in post_lex; and
    # 0.3): extended to the shift as now. CN: LEX,8h = LAeq 88 + 10 lg(8 h / 8 h) = 88.0,
    # dose 100 · 10^0.3 = 199.5 %; OSHA: dose 2 · 37.89 = 75.79 %, TWA 88.0.
    for min_cov in (0.5, 0.3, 0.0):
        cn, osha = dosimeters.views(sums, ["CN-GBZ", "OSHA"], min_coverage=min_cov)
        assert cn.lex_8h_db == pytest.approx(88.0, abs=1e-9)
        assert cn.dose_pct == pytest.approx(100 * 10**0.3, rel=1e-9)
        assert osha.dose_pct == pytest.approx(200 * frac, rel=1e-12)
        assert osha.twa_db == pytest.approx(88.0, abs=1e-9)
        assert any("coverage 50.0 % of the shift" in x for x in cn.notes)
        assert not any("lower bound" in x for x in cn.notes + osha.notes)
        assert post_lex(ea, 14_400.0, 28_800.0, min_cov).lex_8h == pytest.approx(
            cn.lex_8h_db, abs=1e-9)
    # nothing measured stays no data on both sides; a min_coverage that is not a fraction
    # is refused
    empty = dosimeters.PostSums(0.0, 0.0, 28_800.0)
    assert math.isnan(dosimeters.view(empty, "CN-GBZ", min_coverage=0.8).level_db)
    with pytest.raises(ValueError):
        dosimeters.view(sums, "CN-GBZ", min_coverage=80.0)
