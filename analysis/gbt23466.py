"""GB/T 23466-2009 (护听器的选择指南, ≈ EN 458): choosing a hearing protector for a noise, and
whether the level under it is adequate.

**Effective level.** The A-weighted level under a protector, L'A, by the best method the data
allow (ISO 4869-2:2018, :mod:`tingbao.analysis.iso4869_2`): the octave-band method when the
post's octave spectrum and the protector's octave data exist, else HML (needs LA, LC and
H/M/L), else SNR (L'A = LC − SNR). Every :class:`Protected` names the method used and the
derating rule.

**Derating** (the profile's ``protector_derating``; the numbers are the ``[derating.*]``
tables of ``data/protectors.toml``): ``none`` (GB/T 23466 applies the rating as printed);
``snr_0_6`` (the 1999 Ministry of Health workplace hearing-protection rule: SNR × 0.6);
``osha`` ((NRR − 7)/2; no NRR is catalogued, so the SNR takes its place, and the 7 dB C − A
allowance applies to the single-number method only: the spectral methods keep 50 % of their
attenuation); ``niosh`` (muffs keep 75 %, formable plugs 50 %, other plugs 30 %). A rule
scales the attenuation LA − L'A of the spectral methods, and the rating of the SNR method
(L'A = LC − kept × SNR).

**Plug and muff together** count as the higher of the two (derated) attenuations plus the
profile's ``dual_protection_bonus_db`` (GB/T 23466: 5 dB).

**Verdict** of the protected level by the profile's bands around L_act
(``protector_action_db``, 85 dB(A) for CN-GBZ; checked 2026-11-29, H):

=====================  ==================  =====================
L'A, dB(A)             code                 name
=====================  ==================  =====================
L'A > 85               insufficient         保护不足
80 ≤ L'A ≤ 85          acceptable           可接受
75 ≤ L'A < 80          good                 良好 (best)
70 ≤ L'A < 75          acceptable           可接受
L'A < 70               over_protection      过度保护
=====================  ==================  =====================

Exactly 85.0 is acceptable ("> 85 insufficient"), exactly 80.0 and 70.0 acceptable, exactly
75.0 good: each band holds from its lower edge (inclusive).

**Ranking.** For a measured spectrum, the catalogue's protectors whose verdict is good or
acceptable, best first: good before acceptable, then by the distance of L'A from the middle
of the good band (77.5 dB(A) for L_act 85), then by id.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from tingbao.collector.registry.profiles import DERATING_RULES, Profile, profile
from tingbao.edge import contract

from . import iso4869_2

__all__ = ["METHODS", "NO_DERATING_NOTE", "PROVISIONAL_NOTE", "VERDICTS", "DeratingRule",
           "Protected", "Protector", "Ranked", "Spectrum", "Verdict", "catalogue",
           "derating_rule", "effective_level", "protected_exposure", "rank_protectors",
           "verdict"]

METHODS = ("octave_band", "hml", "snr")
"""The ISO 4869-2 methods, best first."""
VERDICTS = ("insufficient", "acceptable", "good", "over_protection")
ADEQUATE = ("good", "acceptable")

NO_DERATING_NOTE = ("按 GB/T 23466-2009 原文未对 SNR 折减；"
                    "现场个体衰减常更低（广东 PAR 中位数 12–17 dB）"
                    " / no derating, as GB/T 23466-2009 prints it; field attenuation is often "
                    "lower (Guangdong PAR medians 12-17 dB)")
PROVISIONAL_NOTE = ("护听器数据为示意值（暂定），须以实际发放产品的 EN 352 数据替换"
                    " / protector data are illustrative (provisional): replace them with "
                    "the issued product's EN 352 data")


# ------------------------------------------------------------------------------- catalogue
@dataclasses.dataclass(frozen=True)
class Protector:
    """One catalogue entry (``data/protectors.toml``). Ratings in dB as printed; octave data
    (8,) in the order of :data:`iso4869_2.OCTAVE_BANDS_HZ`: ``mean_db`` and ``sd_db``, or only
    ``apv_db`` computed with ``apv_alpha``."""

    id: str
    name: str
    type: str
    formable: bool
    snr_db: float | None
    h_db: float | None
    m_db: float | None
    l_db: float | None
    mean_db: tuple[float, ...] | None
    sd_db: tuple[float, ...] | None
    apv_db: tuple[float, ...] | None
    apv_alpha: float | None
    source: str
    provisional: bool

    @property
    def has_octaves(self) -> bool:
        return self.mean_db is not None or self.apv_db is not None

    @property
    def has_hml(self) -> bool:
        return None not in (self.h_db, self.m_db, self.l_db)

    def apv(self, alpha: float = 1.0) -> np.ndarray:
        """APV_f (8,) in dB for ``alpha`` (ISO 4869-2 clause 5); ValueError when only APVs of
        another α are known, or no octave data."""
        if self.mean_db is not None:
            return iso4869_2.apv(self.mean_db, self.sd_db, alpha)
        if self.apv_db is not None and math.isclose(alpha, self.apv_alpha):
            return np.asarray(self.apv_db, dtype=float)
        if self.apv_db is not None:
            raise ValueError(f"protector {self.id!r} has APVs for α = {self.apv_alpha:g} only "
                             f"(asked α = {alpha:g}); give mean_db and sd_db")
        raise ValueError(f"protector {self.id!r} has no octave-band data")


@dataclasses.dataclass(frozen=True)
class DeratingRule:
    """A field-derating rule (``[derating.<id>]`` of the catalogue file): the fraction of the
    rated attenuation ``kept`` (by type for NIOSH) and the C − A allowance subtracted from a
    single-number rating used against dB(A) (OSHA's 7 dB)."""

    id: str
    name_zh: str
    name_en: str
    kept: float | None = None
    kept_earmuff: float | None = None
    kept_formable_earplug: float | None = None
    kept_other_earplug: float | None = None
    spectral_allowance_db: float | None = None

    def kept_for(self, p: Protector) -> float:
        """The fraction of ``p``'s attenuation kept in the field."""
        if self.kept is not None:
            return self.kept
        if p.type == "earmuff":
            return self.kept_earmuff
        return self.kept_formable_earplug if p.formable else self.kept_other_earplug

    @property
    def label(self) -> str:
        return f"{self.name_zh} / {self.name_en}"


def _data_file() -> Path:
    return Path(str(resources.files("tingbao.analysis") / "data" / "protectors.toml"))


def _octave_tuple(entry: Mapping, key: str, where: str) -> tuple[float, ...] | None:
    v = entry.get(key)
    if v is None:
        return None
    if (not isinstance(v, list) or len(v) != 8
            or not all(isinstance(x, int | float) and math.isfinite(x) and -10 <= x <= 80
                       for x in v)):
        raise ValueError(f"{where}: {key} must list 8 numbers (dB, -10 ... 80) for "
                         f"{iso4869_2.OCTAVE_BANDS_HZ} Hz")
    return tuple(float(x) for x in v)


def _rating(entry: Mapping, key: str, where: str) -> float | None:
    v = entry.get(key)
    if v is None:
        return None
    if not isinstance(v, int | float) or not 0 <= v <= 60:
        raise ValueError(f"{where}: {key} = {v!r} must be a number of dB, 0 ... 60")
    return float(v)


def _protector(entry: Mapping, i: int) -> Protector:
    where = f"[[protectors]] #{i + 1} {entry.get('id')!r}"
    known = {"id", "name", "type", "formable", "snr_db", "h_db", "m_db", "l_db", "mean_db",
             "sd_db", "apv_db", "apv_alpha", "source", "provisional"}
    unknown = set(entry) - known
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
    pid = contract.check_id(entry.get("id"), "protector id")
    ptype = entry.get("type")
    if ptype not in ("earplug", "earmuff"):
        raise ValueError(f"{where}: type {ptype!r} must be earplug or earmuff")
    mean, sd = _octave_tuple(entry, "mean_db", where), _octave_tuple(entry, "sd_db", where)
    apv_db = _octave_tuple(entry, "apv_db", where)
    if (mean is None) != (sd is None):
        raise ValueError(f"{where}: give mean_db and sd_db together")
    if sd is not None and min(sd) < 0:
        raise ValueError(f"{where}: sd_db must not be negative")
    if apv_db is not None and entry.get("apv_alpha") is None:
        raise ValueError(f"{where}: apv_db needs apv_alpha (the α it was computed with)")
    p = Protector(pid, str(entry.get("name") or pid), ptype, bool(entry.get("formable", False)),
                  _rating(entry, "snr_db", where), _rating(entry, "h_db", where),
                  _rating(entry, "m_db", where), _rating(entry, "l_db", where), mean, sd,
                  apv_db, None if entry.get("apv_alpha") is None else float(entry["apv_alpha"]),
                  str(entry.get("source") or ""), bool(entry.get("provisional", True)))
    if p.snr_db is None and not p.has_hml and not p.has_octaves:
        raise ValueError(f"{where}: no SNR, H/M/L or octave data: nothing to compute with")
    return p


@functools.cache
def _load(path: str) -> tuple[dict[str, Protector], dict[str, DeratingRule]]:
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: {e}") from None
    protectors: dict[str, Protector] = {}
    for i, entry in enumerate(data.get("protectors", [])):
        p = _protector(entry, i)
        if p.id in protectors:
            raise ValueError(f"{path}: protector id {p.id!r} appears twice")
        protectors[p.id] = p
    rules = {}
    for rid, table in (data.get("derating") or {}).items():
        fields = {f.name for f in dataclasses.fields(DeratingRule)} - {"id"}
        if set(table) - fields:
            raise ValueError(f"{path}: [derating.{rid}] unknown key(s) "
                             f"{sorted(set(table) - fields)}")
        rules[rid] = DeratingRule(rid, **table)
    missing = set(DERATING_RULES) - set(rules)
    if missing:
        raise ValueError(f"{path}: no [derating.*] table for {sorted(missing)}")
    return protectors, rules


def catalogue(path: str | Path | None = None) -> dict[str, Protector]:
    """The protector catalogue by id (default: the shipped ``data/protectors.toml``);
    ValueError naming the entry and key when the file is wrong."""
    return dict(_load(str(path or _data_file()))[0])


def derating_rule(rule_id: str, path: str | Path | None = None) -> DeratingRule:
    """The derating rule ``rule_id`` (one of ``DERATING_RULES``)."""
    rules = _load(str(path or _data_file()))[1]
    try:
        return rules[rule_id]
    except KeyError:
        raise ValueError(f"unknown derating rule {rule_id!r}; one of "
                         f"{', '.join(rules)}") from None


# ------------------------------------------------------------------------------- levels
@dataclasses.dataclass(frozen=True)
class Spectrum:
    """The noise a protector is chosen for: ``la_db`` and ``lc_db`` (dB re 20 µPa, A and C
    weighted; LC None when not measured) and the unweighted octave levels ``octave_db`` (8,)
    63 Hz … 8 kHz (None without band data)."""

    la_db: float
    lc_db: float | None = None
    octave_db: tuple[float, ...] | None = None

    @classmethod
    def from_octaves(cls, octave_db: Sequence[float]) -> Spectrum:
        """LA and LC computed from the octave levels (dB)."""
        o = tuple(float(x) for x in octave_db)
        return cls(iso4869_2.a_weighted(o), iso4869_2.c_weighted(o), o)


@dataclasses.dataclass(frozen=True)
class Protected:
    """The level under protector(s) ``protectors`` (ids; two for plug + muff): ``level_db``
    = L'A (dB(A)), ``attenuation_db`` = LA − L'A after derating, ``method`` (:data:`METHODS`),
    ``derating`` (the rule's id), ``alpha`` (ISO 4869-2 α of the APVs), and the notes a
    report must print (provisional data, no derating)."""

    protectors: tuple[str, ...]
    method: str
    derating: str
    la_db: float
    level_db: float
    attenuation_db: float
    alpha: float
    provisional: bool
    notes: tuple[str, ...] = ()


def _single(p: Protector, s: Spectrum, rule: DeratingRule, alpha: float, method: str) -> float:
    """The derated attenuation LA − L'A (dB) of one protector by ``method``."""
    kept = rule.kept_for(p)
    if method == "octave_band":
        o = np.asarray(s.octave_db, dtype=float)
        lab = iso4869_2.a_weighted(o) - iso4869_2.octave_band_level(o, p.apv(alpha))
        return kept * lab
    if method == "hml":
        return kept * iso4869_2.pnr(p.h_db, p.m_db, p.l_db, s.lc_db - s.la_db)
    if rule.spectral_allowance_db is not None:  # OSHA: (rating − 7) × kept against dB(A)
        return kept * (p.snr_db - rule.spectral_allowance_db)
    return s.la_db - iso4869_2.snr_level(s.lc_db, kept * p.snr_db)


def _feasible(ps: Sequence[Protector], s: Spectrum, rule: DeratingRule, m: str) -> bool:
    """Whether method ``m`` has the data it needs for every protector and this spectrum."""
    if m == "octave_band":
        return s.octave_db is not None and all(p.has_octaves for p in ps)
    if m == "hml":
        return s.lc_db is not None and all(p.has_hml for p in ps)
    if m == "snr":
        return all(p.snr_db is not None for p in ps) and (
            s.lc_db is not None or rule.spectral_allowance_db is not None)
    return False


def _method(ps: Sequence[Protector], s: Spectrum, rule: DeratingRule) -> str | None:
    return next((m for m in METHODS if _feasible(ps, s, rule, m)), None)


def effective_level(protectors: Protector | Sequence[Protector], spectrum: Spectrum, *,
                    derating: str = "none", alpha: float = 1.0, dual_bonus_db: float = 5.0,
                    method: str | None = None) -> Protected:
    """L'A (dB(A)) of ``spectrum`` under one protector or a plug and a muff worn together
    (the higher derated attenuation + ``dual_bonus_db``), by ``method`` or the best the data
    allow (module docstring), derated by rule ``derating``. ValueError when no method fits
    (e.g. neither bands nor LC, or a protector without the method's data)."""
    ps = (protectors,) if isinstance(protectors, Protector) else tuple(protectors)
    if not 1 <= len(ps) <= 2:
        raise ValueError("one protector, or a plug and a muff")
    if len(ps) == 2 and sorted(p.type for p in ps) != ["earmuff", "earplug"]:
        raise ValueError(f"a pair is an earplug and an earmuff, not "
                         f"{' + '.join(p.type for p in ps)}")
    rule = derating_rule(derating)
    m = method or _method(ps, spectrum, rule)
    if m is None or not _feasible(ps, spectrum, rule, m):
        raise ValueError(f"no ISO 4869-2 method {'' if method is None else repr(method) + ' '}"
                         f"fits protector(s) "
                         f"{', '.join(p.id for p in ps)} and this spectrum (octave bands: "
                         f"{'yes' if spectrum.octave_db is not None else 'no'}, LC: "
                         f"{'yes' if spectrum.lc_db is not None else 'no'})")
    atts = [_single(p, spectrum, rule, alpha, m) for p in ps]
    att = max(atts) + (dual_bonus_db if len(ps) == 2 else 0.0)
    notes = []
    if any(p.provisional for p in ps):
        notes.append(PROVISIONAL_NOTE)
    if rule.id == "none":
        notes.append(NO_DERATING_NOTE)
    return Protected(tuple(p.id for p in ps), m, rule.id, float(spectrum.la_db),
                     float(spectrum.la_db) - att, float(att), float(alpha),
                     any(p.provisional for p in ps), tuple(notes))


def protected_exposure(lex_db: float, protected: Protected) -> float:
    """The protected daily exposure, dB(A): LEX,8h minus the attenuation the protector gives
    the post's noise (the attenuation of the spectrum applies to every second of it)."""
    return float(lex_db) - protected.attenuation_db


# ------------------------------------------------------------------------------- verdict
@dataclasses.dataclass(frozen=True)
class Verdict:
    """The GB/T 23466 adequacy of a protected level ``level_db`` (dB(A)) against
    ``action_db``: ``code`` in :data:`VERDICTS`, names in Chinese and English."""

    code: str
    name_zh: str
    name_en: str
    level_db: float
    action_db: float
    profile: str

    @property
    def adequate(self) -> bool:
        return self.code in ADEQUATE

    @property
    def label(self) -> str:
        return f"{self.name_zh} {self.name_en}"


def _profile(prof: Profile | str | None) -> Profile:
    return prof if isinstance(prof, Profile) else profile(prof or "CN-GBZ")


def verdict(level_db: float, prof: Profile | str | None = None) -> Verdict | None:
    """The band of the protected level ``level_db`` (dB(A)) in profile ``prof`` (default
    CN-GBZ; see the module docstring for the edges). None for a level that is not a number.
    ValueError for a profile without protector bands."""
    p = _profile(prof)
    if level_db is None or not math.isfinite(float(level_db)):
        return None
    if p.protector_action_db is None or not p.protector_bands:
        raise ValueError(f"profile {p.id} has no protector_action_db / protector_bands")
    lvl, act = float(level_db), p.protector_action_db
    if lvl > act:
        return Verdict("insufficient", "保护不足", "insufficient protection", lvl, act, p.id)
    for b in p.protector_bands:
        if lvl >= act - b.below_action_db:
            return Verdict(b.code, b.name_zh, b.name_en, lvl, act, p.id)
    return Verdict("over_protection", "过度保护", "over-protection", lvl, act, p.id)


@dataclasses.dataclass(frozen=True)
class Ranked:
    """One adequate protector for a spectrum: its effective level and verdict."""

    protector: Protector
    protected: Protected
    verdict: Verdict


def _good_centre(p: Profile) -> float:
    edges = [0.0] + [b.below_action_db for b in p.protector_bands]
    for lo, b in zip(edges, p.protector_bands, strict=True):
        if b.code == "good":
            return p.protector_action_db - (lo + b.below_action_db) / 2.0
    return p.protector_action_db - edges[-1] / 2.0


def rank_protectors(spectrum: Spectrum, prof: Profile | str | None = None, *,
                    protectors: Iterable[Protector] | None = None, alpha: float = 1.0,
                    derating: str | None = None) -> list[Ranked]:
    """The adequate protectors (verdict good or acceptable) of ``protectors`` (default the
    catalogue) for ``spectrum``, best first (module docstring), each by the best method its
    data allow, derated by ``derating`` (default the profile's rule). Protectors no method
    fits are left out."""
    p = _profile(prof)
    rule = derating or p.protector_derating
    centre = _good_centre(p)
    out = []
    for pr in (catalogue().values() if protectors is None else protectors):
        try:
            got = effective_level(pr, spectrum, derating=rule, alpha=alpha,
                                  dual_bonus_db=p.dual_protection_bonus_db)
        except ValueError:
            continue
        v = verdict(got.level_db, p)
        if v.adequate:
            out.append(Ranked(pr, got, v))
    out.sort(key=lambda r: (r.verdict.code != "good", abs(r.protected.level_db - centre),
                            r.protector.id))
    return out
