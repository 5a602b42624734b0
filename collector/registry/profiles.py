"""Regulatory profiles: every limit, grade edge, exchange rate and method of a regulation as a
named, dated setting (ARCHITECTURE.md, "Regulatory profiles are data").

A profile is a TOML file in ``data/profiles/`` (shipped as package data). A revised standard
becomes a new file, not a code change; the site registry names the profile in force
(``[regulation] profile``), and analysis reads its numbers from here. Shipped:

* ``CN-GBZ`` (default): GBZ 2.2-2007 (LEX,8h limit 85 dB(A), 3 dB exchange, impulse peak
  limits 140/130/120 dB for ≤ 100 / 1 000 / 10 000 impulses a day), GBZ/T 229.4-2012 grades
  (I 85 ≤ L < 90, II 90 ≤ L < 94, III 94 ≤ L < 100, IV ≥ 100 dB(A); 噪声作业 from 80),
  GBZ/T 189.8-2007 and GB/T 21230-2014 (= ISO 9612:2009) for measurement and uncertainty;
  GBZ/T 229.4-2012 impulse grades (2.5 dB steps above the peak limit) as PROVISIONAL data
  (not confirmed; ``impulse_grades_provisional``: reports must say so);
* ``OSHA`` (29 CFR 1910.95: PEL 90, action level 85, 5 dB exchange, 80 dB threshold);
* ``NIOSH`` (REL 85, 3 dB exchange, 140 dB peak ceiling);
* ``EU-2003-10-EC`` (action values 80 and 85, limit 87 dB(A) under the protector; peaks 135,
  137, 140 dB(C)).

Every profile also says how hearing protectors are judged (GB/T 23466-2009,
``analysis/gbt23466.py``): ``protector_derating`` (none for CN-GBZ and the EU, as the
standards print it; ``osha``; ``niosh``; ``snr_0_6``, the 1999 Ministry of Health rule, is an
option), ``protector_action_db`` and ``protector_bands`` (the adequacy bands of the protected
level) and ``dual_protection_bonus_db`` (plug + muff: the higher attenuation + 5 dB).

Numbers and their confidence come from ``../shared/reference/noise-standards.md`` (section
checked 2026-11-29); each file says so line by line.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from importlib import resources
from pathlib import Path

from tingbao.edge.settings import ConfigError, Section, load_toml, section_from_mapping, setting

__all__ = ["DEFAULT_PROFILE", "DERATING_RULES", "Grade", "ImpulseGrade", "PeakLimit", "Profile",
           "ProtectorBand", "profile", "profile_ids"]

DEFAULT_PROFILE = "CN-GBZ"
DERATING_RULES = ("none", "snr_0_6", "osha", "niosh")
"""Field derating of a protector's laboratory attenuation (``protector_derating``): ``none``
(GB/T 23466-2009 as printed), ``snr_0_6`` (the 1999 Ministry of Health workplace
hearing-protection rule: SNR × 0.6), ``osha`` ((NRR − 7)/2), ``niosh`` (by type: muffs −25 %,
formable plugs −50 %, other plugs −70 %); the numbers are in ``analysis/data/protectors.toml``
(:mod:`tingbao.analysis.gbt23466`)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Grade(Section):
    """One hazard grade: it holds from ``from_db`` (dB(A), inclusive) up to the next grade's
    lower edge (exclusive)."""

    code: str = setting()
    from_db: float = setting(unit="dB(A)", lo=0.0, hi=200.0)
    name_zh: str = setting()
    name_en: str = setting()


@dataclasses.dataclass(frozen=True, kw_only=True)
class PeakLimit(Section):
    """Peak limit for a number of impulses per working day (GBZ 2.2-2007 impulse noise)."""

    max_impulses_per_day: int = setting(lo=1)
    limit_db: float = setting(unit="dB", lo=0.0, hi=200.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImpulseGrade(Section):
    """One impulse-noise hazard grade (GBZ/T 229.4-2012, impulse noise): it holds from
    ``above_limit_db`` dB above the GBZ 2.2 peak limit for the day's impulse count (inclusive)
    up to the next grade's edge (exclusive)."""

    code: str = setting()
    above_limit_db: float = setting(unit="dB", lo=0.0, hi=60.0)
    name_zh: str = setting()
    name_en: str = setting()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProtectorBand(Section):
    """One adequacy band of the protected level L'A (GB/T 23466-2009 / EN 458): it holds from
    ``below_action_db`` dB below the profile's ``protector_action_db`` (inclusive) up to the
    next band's lower edge (the first band: up to the action level itself, inclusive). Above
    the action level the protection is insufficient, below the last band over-protective."""

    code: str = setting(choices=("acceptable", "good"))
    below_action_db: float = setting(unit="dB", lo=0.0, hi=60.0)
    name_zh: str = setting()
    name_en: str = setting()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Profile(Section):
    """A regulatory profile (see the module docstring). Levels in dB re 20 µPa; A-weighted
    unless the name says otherwise."""

    id: str = setting()
    name_zh: str = setting()
    name_en: str = setting()
    standards: tuple[str, ...] = setting()
    in_force_from: dt.date = setting()
    checked: dt.date = setting()
    lex_limit_db: float = setting(unit="dB(A)", lo=40.0, hi=140.0)
    exchange_rate_db: float = setting(unit="dB", choices=(3.0, 4.0, 5.0))
    threshold_db: float = setting(0.0, unit="dB(A)", lo=0.0, hi=140.0)
    exposure_metric: str = setting("lex_8h", choices=("lex_8h", "twa"))
    """How the regulation states a day's exposure: ``lex_8h`` (the energy sum, 10 lg 2 dB
    exchange, no threshold) or ``twa`` (a dosimeter's dose with the profile's threshold and
    exchange rate, and the TWA of that dose: OSHA, NIOSH)."""
    action_level_db: float | None = setting(None, unit="dB(A)", lo=40.0, hi=140.0)
    lower_action_db: float | None = setting(None, unit="dB(A)", lo=40.0, hi=140.0)
    noise_work_db: float | None = setting(None, unit="dB(A)", lo=40.0, hi=140.0)
    week_divisor_days: int | None = setting(None, lo=1, hi=7)
    uncertainty_method: str | None = setting(None)
    peak_weighting: str = setting("C", choices=("C", "Z"))
    peak_weighting_confidence: str = setting("L", choices=("H", "M", "L"))
    peak_ceiling_db: float | None = setting(None, unit="dB", lo=100.0, hi=200.0)
    action_peak_db: float | None = setting(None, unit="dB", lo=100.0, hi=200.0)
    lower_action_peak_db: float | None = setting(None, unit="dB", lo=100.0, hi=200.0)
    grades: tuple[Grade, ...] = setting(())
    peak_limits: tuple[PeakLimit, ...] = setting(())
    impulse_grades: tuple[ImpulseGrade, ...] = setting(())
    impulse_grades_provisional: bool = setting(True)
    protector_derating: str = setting("none", choices=DERATING_RULES)
    """How a protector's laboratory attenuation is derated for the field
    (:data:`DERATING_RULES`); every protected level names the rule it used."""
    protector_action_db: float | None = setting(None, unit="dB(A)", lo=40.0, hi=140.0)
    """L_act of the adequacy bands of the protected level (GB/T 23466-2009: 85 dB(A))."""
    protector_bands: tuple[ProtectorBand, ...] = setting(())
    dual_protection_bonus_db: float = setting(5.0, unit="dB", lo=0.0, hi=20.0)
    """Plug and muff worn together count as the higher attenuation plus this (GB/T 23466)."""

    def __post_init__(self):
        edges = [g.from_db for g in self.grades]
        if edges != sorted(edges) or len(set(edges)) != len(edges):
            raise ConfigError(f"grade edges {edges} must rise strictly", entry=self.id,
                              key="grades")
        counts = [p.max_impulses_per_day for p in self.peak_limits]
        if counts != sorted(counts) or len(set(counts)) != len(counts):
            raise ConfigError(f"impulse counts {counts} must rise strictly", entry=self.id,
                              key="peak_limits")
        steps = [g.above_limit_db for g in self.impulse_grades]
        if steps != sorted(steps) or len(set(steps)) != len(steps):
            raise ConfigError(f"impulse grade edges {steps} must rise strictly",
                              entry=self.id, key="impulse_grades")
        below = [b.below_action_db for b in self.protector_bands]
        if below != sorted(below) or len(set(below)) != len(below):
            raise ConfigError(f"protector band edges {below} dB below the action level must "
                              "rise strictly", entry=self.id, key="protector_bands")
        if self.protector_bands and self.protector_action_db is None:
            raise ConfigError("protector_bands are edges below protector_action_db: give it",
                              entry=self.id, key="protector_action_db")
        if self.impulse_grades and not self.peak_limits:
            raise ConfigError("impulse grades are steps above the peak limits: give "
                              "peak_limits too", entry=self.id, key="impulse_grades")


def _data_dir() -> Path:
    return Path(str(resources.files("tingbao.collector.registry") / "data" / "profiles"))


@functools.cache
def _all() -> dict[str, Profile]:
    out = {}
    for path in sorted(_data_dir().glob("*.toml")):
        data = load_toml(path, "regulatory profile")
        try:
            p = section_from_mapping(Profile, data, f"profile {path.stem}", path.parent)
        except ConfigError as e:
            raise e.in_file(path) from None
        if p.id != path.stem:
            raise ConfigError(f"id {p.id!r} differs from the file name", file=path)
        out[p.id] = p
    return out


def profile_ids() -> tuple[str, ...]:
    """The ids of the shipped profiles."""
    return tuple(_all())


def profile(profile_id: str = DEFAULT_PROFILE) -> Profile:
    """The profile ``profile_id``; :class:`ConfigError` naming the known ones otherwise."""
    try:
        return _all()[profile_id]
    except KeyError:
        raise ConfigError(f"unknown regulatory profile {profile_id!r}; one of "
                          f"{', '.join(_all())}") from None
