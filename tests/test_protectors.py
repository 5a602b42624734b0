"""Hearing protectors: ISO 4869-2:2018 methods against the standard's worked example (Annexes
B–D), GB/T 23466-2009 bands at their edges, the derating rules, plug + muff, the catalogue's
consistency, the EU limit under the protector, and the service on a real InfluxDB (bands
summed by InfluxDB, 1/3 octaves into octaves, a job's protected LEX,8h)."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from support.commands import run_tingbao

from tingbao.analysis import eu_2003_10, iso4869_2
from tingbao.analysis.gbt23466 import (
    Spectrum,
    catalogue,
    derating_rule,
    effective_level,
    protected_exposure,
    rank_protectors,
    verdict,
)
from tingbao.collector import schema
from tingbao.collector.lineprotocol import line
from tingbao.collector.registry.profiles import profile

# ISO 4869-2:2018 Annexes B–D (noise-standards.md, "Checked 2026-11-29")
OCTAVES = (75.0, 84.0, 86.0, 88.0, 97.0, 99.0, 97.0, 96.0)  # 63 Hz … 8 kHz, dB
APV84 = (4.1, 6.4, 10.8, 15.0, 18.8, 23.4, 31.4, 28.9)
LA, LC = 104.0, 103.0


def annex():
    return catalogue()["iso4869-2-annex"]


# ------------------------------------------------------------------------ ISO 4869-2
def test_octave_band_method_annex_b():
    # L_f + A_f − APV_f, written out: 75−26.2−4.1 = 44.7; 84−16.1−6.4 = 61.5;
    # 86−8.6−10.8 = 66.6; 88−3.2−15.0 = 69.8; 97+0−18.8 = 78.2; 99+1.2−23.4 = 76.8;
    # 97+1.0−31.4 = 66.6; 96−1.1−28.9 = 66.0 → 10 lg Σ 10^(x/10) = 81.40 (annex: 81.4 → 81)
    terms = [44.7, 61.5, 66.6, 69.8, 78.2, 76.8, 66.6, 66.0]
    by_hand = 10 * math.log10(math.fsum(10 ** (x / 10) for x in terms))
    assert by_hand == pytest.approx(81.40, abs=0.005)
    assert iso4869_2.octave_band_level(OCTAVES, APV84) == pytest.approx(by_hand, abs=1e-9)
    # the spectrum's own LA/LC round to the annex's 104 and 103
    s = Spectrum.from_octaves(OCTAVES)
    assert round(s.la_db) == 104 and round(s.lc_db) == 103
    got = effective_level(annex(), s, method="octave_band")
    assert got.level_db == pytest.approx(by_hand, abs=1e-9)
    assert (got.method, got.derating, round(got.level_db)) == ("octave_band", "none", 81)


def test_hml_method_annex_c_d_at_most_2():
    # d = LC − LA = 103 − 104 = −1 ≤ 2: PNR = M − (H − M)/4·(d − 2) = 18 − 6/4·(−3)
    # = 18 + 4.5 = 22.5; L'A = 104 − 22.5 = 81.5 (annex: 81.5 → 82)
    assert iso4869_2.pnr(24, 18, 13, LC - LA) == 22.5
    assert iso4869_2.hml_level(LA, LC, 24, 18, 13) == 81.5
    got = effective_level(annex(), Spectrum(LA, LC), method="hml")
    assert (got.level_db, got.method) == (81.5, "hml")
    # d = 2 exactly: both branches give M: PNR = 18
    assert iso4869_2.pnr(24, 18, 13, 2.0) == 18.0


def test_hml_method_above_2():
    # LA 95, LC 101: d = 6 > 2: PNR = M − (M − L)/8·(d − 2) = 18 − 5/8·4 = 18 − 2.5 = 15.5;
    # L'A = 95 − 15.5 = 79.5
    assert iso4869_2.pnr(24, 18, 13, 6.0) == 15.5
    assert iso4869_2.hml_level(95.0, 101.0, 24, 18, 13) == 79.5
    # just above the branch point, d = 2.4: PNR = 18 − 5/8·0.4 = 17.75 (the H branch would
    # give 18 − 6/4·0.4 = 17.4: the branches differ, so the right one was taken)
    assert iso4869_2.pnr(24, 18, 13, 2.4) == pytest.approx(17.75, abs=1e-12)


def test_hml_rounds_h_m_l_before_use():
    # 23.6 → 24, 18.4 → 18, 12.5 → 13 (halves up): the annex's 22.5 again at d = −1; unrounded
    # it would be 18.4 − (23.6 − 18.4)/4·(−3) = 18.4 + 3.9 = 22.3
    assert iso4869_2.pnr(23.6, 18.4, 12.5, -1.0) == 22.5


def test_snr_method_annex_d():
    # L'A = LC − SNR = 103 − 21 = 82
    assert iso4869_2.snr_level(LC, 21) == 82.0
    got = effective_level(annex(), Spectrum(LA, LC), method="snr")
    assert (got.level_db, got.attenuation_db) == (82.0, 22.0)


def test_snr_from_apv_reproduces_the_printed_ratings():
    # clause 8.2, pink noise (equal octaves): SNR = LC − L'A. For the annex's APV84:
    # LC of 8 × 100 dB with C_f = 100 + 10 lg Σ 10^(C_f/10) = 108.43; L'A = 87.28 → 21.15 → 21,
    # the SNR the annex prints. Every catalogue entry with octave data must round to its SNR.
    c_part = 10 * math.log10(math.fsum(10 ** (c / 10) for c in iso4869_2.C_WEIGHTING_DB))
    a_part = 10 * math.log10(math.fsum(10 ** ((a - v) / 10) for a, v in
                                       zip(iso4869_2.A_WEIGHTING_DB, APV84, strict=True)))
    assert iso4869_2.snr_from_apv(APV84) == pytest.approx(c_part - a_part, abs=1e-9)
    assert iso4869_2.round_rating(iso4869_2.snr_from_apv(APV84)) == 21
    for p in catalogue().values():
        if p.has_octaves:
            assert iso4869_2.round_rating(iso4869_2.snr_from_apv(p.apv(1.0))) == p.snr_db, p.id


def test_apv_alpha_table_and_datasheet_apv():
    # α: 84 % → 1.00, 98 % → 2.00 (clause 5); UltraFit m_f − 1.0·s_f = the datasheet's APV
    assert iso4869_2.alpha_for(84) == 1.0 and iso4869_2.alpha_for(98) == 2.0
    with pytest.raises(ValueError, match="one of"):
        iso4869_2.alpha_for(85)
    uf = catalogue()["3m-ear-ultrafit"]
    assert uf.apv(1.0) == pytest.approx([23.2, 22.0, 22.7, 26.9, 27.3, 32.8, 38.3, 38.4])
    # 29.2 − 2·6.0 = 17.2 at 63 Hz for α = 2.00 (98 %)
    assert uf.apv(iso4869_2.alpha_for(98))[0] == pytest.approx(17.2)
    with pytest.raises(ValueError, match="α = 1 only"):
        annex().apv(0.84)  # the annex prints APV84 only


def test_octaves_from_thirds_by_energy():
    # three equal thirds of 80 dB make an octave of 80 + 10 lg 3 = 84.77 dB; a missing third
    # leaves its octave out
    thirds = {lbl: 80.0 for lbls in iso4869_2.THIRDS_OF_OCTAVE.values() for lbl in lbls}
    octs = iso4869_2.octaves_from_thirds(thirds)
    assert octs[1000] == pytest.approx(80 + 10 * math.log10(3), abs=1e-12)
    del thirds["1250"]
    assert 1000 not in iso4869_2.octaves_from_thirds(thirds)


# ------------------------------------------------------------------------ GB/T 23466
@pytest.mark.parametrize("level,code", [
    (85.01, "insufficient"), (85.0, "acceptable"), (84.99, "acceptable"),
    (80.01, "acceptable"), (80.0, "acceptable"), (79.99, "good"),
    (75.01, "good"), (75.0, "good"), (74.99, "acceptable"),
    (70.01, "acceptable"), (70.0, "acceptable"), (69.99, "over_protection")])
def test_gbt23466_bands_at_their_edges(level, code):
    # > 85 insufficient; 80 ≤ L ≤ 85 acceptable; 75 ≤ L < 80 good; 70 ≤ L < 75 acceptable;
    # < 70 over-protection (CN-GBZ: L_act = 85, edges 5/10/15 dB below it)
    v = verdict(level, "CN-GBZ")
    assert v.code == code and v.action_db == 85.0
    assert v.adequate == (code in ("good", "acceptable"))
    assert verdict(float("nan")) is None


def test_profiles_name_their_derating_rule():
    # CN-GBZ applies SNR as printed (GB/T 23466); OSHA and NIOSH their own rules
    assert profile("CN-GBZ").protector_derating == "none"
    assert profile("OSHA").protector_derating == "osha"
    assert profile("NIOSH").protector_derating == "niosh"
    assert profile("CN-GBZ").dual_protection_bonus_db == 5.0


def test_each_derating_rule():
    s = Spectrum(LA, LC)
    plug = annex()  # filed as a non-formable earplug
    # none: LC − SNR = 103 − 21 = 82
    assert effective_level(plug, s, derating="none", method="snr").level_db == 82.0
    # 1999 MoH rule: LC − 0.6·SNR = 103 − 12.6 = 90.4
    got = effective_level(plug, s, derating="snr_0_6", method="snr")
    assert got.level_db == pytest.approx(90.4) and got.derating == "snr_0_6"
    # OSHA: LA − (SNR − 7)/2 = 104 − 7 = 97 (needs no LC)
    assert effective_level(plug, Spectrum(LA), derating="osha").level_db == 97.0
    # NIOSH, other plug keeps 30 %: 103 − 0.3·21 = 96.7; formable foam keeps 50 %:
    # 103 − 0.5·35 = 85.5; earmuff keeps 75 %: 103 − 0.75·32 = 79
    assert effective_level(plug, s, derating="niosh", method="snr").level_db == \
        pytest.approx(96.7)
    foam, muff = catalogue()["foam-plug-illustrative"], catalogue()["earmuff-illustrative"]
    assert effective_level(foam, s, derating="niosh", method="snr").level_db == \
        pytest.approx(85.5)
    assert effective_level(muff, s, derating="niosh", method="snr").level_db == \
        pytest.approx(79.0)
    # spectral methods keep the fraction of their attenuation: HML 22.5 × 0.6 = 13.5 →
    # 104 − 13.5 = 90.5; OSHA on HML keeps 50 %: 104 − 11.25 = 92.75
    assert effective_level(plug, s, derating="snr_0_6", method="hml").level_db == 90.5
    assert effective_level(plug, s, derating="osha", method="hml").level_db == 92.75
    assert derating_rule("niosh").kept_for(muff) == 0.75
    with pytest.raises(ValueError, match="unknown derating rule"):
        derating_rule("half")


def test_plug_and_muff_together():
    # SNR method, LA 104 / LC 103: foam plug att = 104 − (103 − 35) = 36, muff att =
    # 104 − (103 − 32) = 33 → higher + 5 = 41 → L'A = 104 − 41 = 63
    foam, muff = catalogue()["foam-plug-illustrative"], catalogue()["earmuff-illustrative"]
    got = effective_level((foam, muff), Spectrum(LA, LC), method="snr")
    assert got.attenuation_db == 41.0 and got.level_db == 63.0
    assert got.protectors == ("foam-plug-illustrative", "earmuff-illustrative")
    assert got.provisional and any("illustrative" in n for n in got.notes)
    with pytest.raises(ValueError, match="earplug and an earmuff"):
        effective_level((foam, annex()), Spectrum(LA, LC))


def test_best_method_falls_back_octave_hml_snr():
    p = annex()
    assert effective_level(p, Spectrum.from_octaves(OCTAVES)).method == "octave_band"
    assert effective_level(p, Spectrum(LA, LC)).method == "hml"
    with pytest.raises(ValueError, match="no ISO 4869-2 method"):
        effective_level(p, Spectrum(LA))  # neither bands nor LC, no OSHA allowance
    # protected exposure: LEX 95 under the HML attenuation 22.5 → 72.5
    assert protected_exposure(95.0, effective_level(p, Spectrum(LA, LC))) == 72.5


def test_ranking_of_adequate_protectors():
    # On the annex spectrum each catalogue entry's octave-band L'A = LA − (LA − L'A):
    # only verdicts good/acceptable are listed, good first, then nearest 77.5 dB(A).
    s = Spectrum.from_octaves(OCTAVES)
    ranked = rank_protectors(s, "CN-GBZ")
    levels = {r.protector.id: r.protected.level_db for r in ranked}
    for pid, p in catalogue().items():
        lvl = effective_level(p, s).level_db
        assert (pid in levels) == (70.0 <= lvl <= 85.0), (pid, lvl)
    assert "alpine-partyplug" not in levels  # L'A ≈ 88 dB(A): insufficient
    keys = [(r.verdict.code != "good", abs(r.protected.level_db - 77.5)) for r in ranked]
    assert keys == sorted(keys) and ranked


def test_eu_limit_checked_under_the_protector():
    # LEX 95: unprotected the 87 limit is exceeded; under the annex protector by HML
    # (22.5 dB) 72.5 < 87: the status is the upper action value (action values ignore HPDs)
    got = eu_2003_10.classify_protected(95.0, 22.5)
    assert (got.lex_status, got.limit_under_protector, got.protected_lex_db) == \
        ("action", True, 72.5)
    # a weak fit (7 dB): 95 − 7 = 88 ≥ 87 → exceeded under the protector
    assert eu_2003_10.classify_protected(95.0, 7.0).lex_status == "exceeded"
    # exactly 87.0 under the protector counts as exceeded (module docstring of eu_2003_10)
    assert eu_2003_10.classify_protected(90.0, 3.0).lex_status == "exceeded"


# ------------------------------------------------------------------------ the service
S = 1_000_000_000


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory):
    stack.write_state()
    path = tmp_path_factory.mktemp("site") / "site.toml"
    path.write_text(f'''
[deployment]
timezone = "Asia/Shanghai"
[stack]
data_dir = "{stack.data_dir}"
[[enterprises]]
id = "pe"
name_zh = "护听企业"
industry = "machinery"
group = "pilot"
[[sites]]
id = "w1"
enterprise = "pe"
name_zh = "车间"
[[meters]]
id = "pe-third"
enterprise = "pe"
site = "w1"
[[meters]]
id = "pe-lc"
enterprise = "pe"
site = "w1"
[[job_types]]
id = "press"
enterprise = "pe"
name_zh = "冲压工"
protector = {{ type = "earplug", catalogue = ["iso4869-2-annex"] }}
tasks = [{{ meter = "pe-third", hours = 4.0 }}, {{ meter = "pe-lc", hours = 3.0 }},
         {{ laeq_db = 70.0, hours = 1.0, what = "break" }}]
''', encoding="utf-8")
    return path


def test_service_on_the_store(stack, site):
    # Shift 2026-11-30 08:00 Asia/Shanghai = 00:00Z. Post pe-third has 1/3-octave bands: in
    # each octave the three thirds are OCTAVE − 10 lg 3 (so they add up to the annex octave),
    # in two halves of 60 s at ±1 dB around it: energy mean of +1/−1 dB is
    # 10 lg((10^0.1 + 10^−0.1)/2) = +0.0432 dB above, and InfluxDB must give exactly that.
    # Post pe-lc has no bands, only 1 s lceq of 103 dB (HML applies there); pe-third has
    # both.
    from tingbao.analysis.protection_exposure import compute
    from tingbao.collector.registry import load_registry

    reg = load_registry(site)
    t0 = 1_795_996_800 * S  # 2026-11-30T00:00:00Z
    tags = {"enterprise": "pe", "site": "w1", "meter": "pe-third", "channel": "0"}
    lines = []
    for half, delta in ((0, +1.0), (1, -1.0)):
        fields = {"seq": half, "duration_s": 60.0, "fraction": 3}
        for fc, labels in iso4869_2.THIRDS_OF_OCTAVE.items():
            level = OCTAVES[iso4869_2.OCTAVE_BANDS_HZ.index(fc)] - 10 * math.log10(3) + delta
            for lbl in labels:
                fields["b" + lbl] = level
        lines.append(line(schema.BANDS, tags, fields, t0 + half * 60 * S))
    for m in ("pe-lc", "pe-third"):
        lines += [line(schema.LEVELS, {**tags, "meter": m}, {"lceq": 103.0, "laeq": 104.0,
                                                             "coverage": 1.0, "seq": i},
                       t0 + i * S) for i in range(30)]
    stack.influx("writer").write(lines)
    # the ledger's exposure points of the closed day (only the fields read here)
    tasks = [{"hours": 4.0, "laeq": 104.0, "meter": "pe-third", "channel": 0, "what": ""},
             {"hours": 3.0, "laeq": 104.0, "meter": "pe-lc", "channel": 0, "what": ""},
             {"hours": 1.0, "laeq": 70.0, "meter": None, "channel": None, "what": "break"}]
    ex = [line(schema.EXPOSURE, {"enterprise": "pe", "kind": "post", "meter": m,
                                 "channel": "0", "profile": "CN-GBZ"},
               {"laeq": 104.0, "lex_8h": 104.0}, t0) for m in ("pe-third", "pe-lc")]
    ex.append(line(schema.EXPOSURE, {"enterprise": "pe", "kind": "job", "job": "press",
                                     "profile": "CN-GBZ"},
                   {"lex_8h": 103.4, "tasks": json.dumps(tasks)}, t0))
    stack.influx("writer").write(ex, rp=schema.RP_FOREVER)

    day = compute(stack.influx("reader"), reg, "pe", dt.date(2026, 11, 30))
    posts = {p.meter: p for p in day.posts}
    third = posts["pe-third"].spectrum
    up = 10 * math.log10((10 ** 0.1 + 10 ** -0.1) / 2)  # 0.0432 dB
    assert third.fraction == 3
    assert third.octave_db == pytest.approx([o + up for o in OCTAVES], abs=1e-6)
    assert posts["pe-lc"].spectrum.lc_db == pytest.approx(103.0, abs=1e-9)
    assert posts["pe-lc"].spectrum.octave_db is None
    assert posts["pe-third"].ranked  # the annex spectrum has adequate protectors
    (job,) = day.jobs
    # task 1 (octave band): att = LA_oct − L'A_oct of the shifted spectrum = 22.62 dB (a
    # uniform +0.043 dB shift cancels); task 2 (HML, d = −1): 22.5; the break is declared,
    # no LC: unprotected (flagged). Protected LEX = 10 lg(4/8·10^(8.138) + 3/8·10^(8.15)
    # + 1/8·10^(7.0))
    att1 = iso4869_2.a_weighted(OCTAVES) - iso4869_2.octave_band_level(OCTAVES, APV84)
    by_hand = 10 * math.log10(4 / 8 * 10 ** ((104 - att1) / 10)
                              + 3 / 8 * 10 ** ((104 - 22.5) / 10) + 1 / 8 * 10 ** 7.0)
    assert job.protected_lex_db == pytest.approx(by_hand, abs=1e-6)
    assert job.methods == ("octave_band", "hml") and job.derating == "none"
    assert "declared_unprotected" in job.flags
    assert job.verdict.code == verdict(by_hand).code == "acceptable"
    # EU 2003/10/EC: 103.4 dB(A) unprotected is past the upper action value 85 (Art. 3(1)(b));
    # the 87 dB(A) limit value is checked under the protector, by_hand < 87: "action", not
    # "exceeded"
    assert by_hand < 87.0 and job.eu_status == "action"
    # every method that fits all measured tasks, side by side (the octave-band method does
    # not: pe-lc has no bands): HML 22.5 dB on both tasks; SNR 104 − (103 − 21) = 22 dB
    def lex(att):
        return 10 * math.log10(7 / 8 * 10 ** ((104 - att) / 10) + 1 / 8 * 10 ** 7.0)

    assert job.by_method == pytest.approx({"hml": lex(22.5), "snr": lex(22.0)}, abs=1e-9)

    # the command prints the same numbers: tingbao protectors --format json
    done = run_tingbao("protectors", "--config", site, "--stack", stack.data_dir, "--date",
                       "2026-11-30", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(r) for r in done.stdout.splitlines()]
    (j,) = [r for r in rows if r["kind"] == "job"]
    assert (j["protected_lex_8h"], j["derating"], j["verdict"], j["methods"], j["eu_status"]) \
        == (round(by_hand, 1), "none", "acceptable", "octave_band,hml", "action")
    assert j["lex_hml"] == round(lex(22.5), 1) and "lex_octave_band" not in j
    third_row = next(r for r in rows if r.get("meter") == "pe-third")
    assert third_row["bands"] == "1/3" and third_row["adequate"]

