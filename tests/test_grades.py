"""GBZ/T 229.4-2012 grades and projected LEX,8h (GBZ/T 189.8-2007), checked against the
standard's own band edges and an independent computation from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tingbao.analysis.gbzt189_8 import laeq, lex_8h, projected_lex_8h
from tingbao.analysis.gbzt229_4 import grade
from tingbao.collector.registry import profile

P0 = 20e-6


@pytest.mark.parametrize("lex, code, noise_work", [
    (79.9, "0", False), (80.0, "0", True), (84.9, "0", True), (84.99, "0", True),
    (85.0, "I", True), (89.9, "I", True), (89.99, "I", True), (90.0, "II", True),
    (93.9, "II", True), (93.99, "II", True), (94.0, "III", True), (99.9, "III", True),
    (99.99, "III", True), (100.0, "IV", True), (130.0, "IV", True),
])
def test_grade_edges_of_gbzt_229_4(lex, code, noise_work):
    g = grade(lex)
    assert (g.code, g.noise_work, g.profile) == (code, noise_work, "CN-GBZ")


def test_grade_names_and_no_data():
    assert grade(96.0).label == "III 重度危害 severe hazard"
    assert grade(82.0).label == "噪声作业 noise work"
    assert grade(60.0).label == "—"
    assert grade(float("nan")) is None and grade(None) is None
    # a profile without grades (OSHA) grades nothing
    assert grade(105.0, profile("OSHA")).code == "0"


def test_lex_and_projection_against_the_definition():
    # 4 h at 88 dB(A) + 4 h at 80 dB(A) → LEX,8h 85.6 dB(A) (noise-standards.md example)
    ea = sum(P0**2 * 10 ** (0.1 * L) * 4 * 3600 for L in (88.0, 80.0))
    assert lex_8h(ea) == pytest.approx(85.6, abs=0.05)
    # 2 h measured at 91 dB(A) in a 10 h shift: the shift at that level
    ea_2h = P0**2 * 10 ** 9.1 * 7200
    expected = 10 * math.log10(10 ** 9.1 * 36000 / 28800)
    assert projected_lex_8h(ea_2h, 7200.0, 36000.0) == pytest.approx(expected, abs=1e-9)
    assert laeq(ea_2h, 7200.0) == pytest.approx(91.0, abs=1e-9)
    # the projection uses covered seconds, not a count of intervals: 10 s intervals
    rng = np.random.default_rng(1)
    levels = rng.uniform(80, 95, 360)
    ea_iv = P0**2 * 10 ** (0.1 * levels) * 10.0
    direct = 10 * math.log10(np.mean(10 ** (0.1 * levels)))  # 8 h at the same energy mean
    assert projected_lex_8h(float(ea_iv.sum()), 3600.0) == pytest.approx(direct, abs=1e-9)
    assert math.isnan(projected_lex_8h(0.0, 0.0))
    with pytest.raises(ValueError):
        projected_lex_8h(1.0, 1.0, 0.0)
