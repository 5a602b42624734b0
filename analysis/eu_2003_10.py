"""Directive 2003/10/EC (noise at work) Article 3: exposure limit values and exposure action
values, applied to a day's LEX,8h (dB(A)) and highest C-weighted peak (dB(C) re 20 µPa).

============================  ==============  ==================
                              LEX,8h, dB(A)   peak, dB(C)
============================  ==============  ==================
lower exposure action value   80              135 (112 Pa)
upper exposure action value   85              137 (140 Pa)
exposure limit value          87              140 (200 Pa)
============================  ==============  ==================

The numbers are the ``EU-2003-10-EC`` profile's (``lower_action_db``, ``action_level_db``,
``lex_limit_db``; ``lower_action_peak_db``, ``action_peak_db``, ``peak_ceiling_db``).
Article 3(2): the action values ignore hearing protectors; the limit values apply to the
worker's effective exposure, under the protector. Until protectors are recorded
(``protected_lex_db`` / ``protected_peak_db`` None), the limit is checked against the
unprotected level, which can only overstate the exposure: :class:`EuExposure` says so
(``limit_under_protector`` False and a note).

Edges: a value reached counts (≥), as Articles 6(1)(b) and 7(3) word the upper action value
("matches or exceeds"); at the limit value itself tingbao reports ``"exceeded"`` (Article
3(2)'s "shall not be exceeded" would let exactly 87.0 pass: one value of a continuum, counted
on the side of the worker, as GBZ/T 229.4 counts LEX,8h = 85.0 as grade I).
"""

from __future__ import annotations

import dataclasses
import math

from tingbao.collector.registry.profiles import Profile, profile

__all__ = ["EU_PROFILE", "STATUSES", "EuExposure", "classify", "classify_protected", "status_of",
           "worst"]

EU_PROFILE = "EU-2003-10-EC"

STATUSES = ("below", "lower_action", "action", "exceeded")
"""Exposure statuses from the lowest to the highest: below the lower action value, at or
above it, at or above the upper action value (or the action level of profiles with only one),
at or above the limit value."""

UNPROTECTED_NOTE = ("尚无护听器数据：限值按未佩戴护听器的接触水平核查（可能高估）/ no hearing-"
                    "protector data yet: the limit value is checked against the unprotected "
                    "level (Art. 3(2) applies it under the protector; this can only overstate)")
"""The note of an :class:`EuExposure` whose limit check had no protected level."""


def worst(*statuses: str | None) -> str | None:
    """The highest of ``statuses`` in the order of :data:`STATUSES` (None ignored)."""
    given = [s for s in statuses if s is not None]
    return max(given, key=STATUSES.index) if given else None


def status_of(level_db: float | None, *, lower_action_db: float | None,
              action_db: float | None, limit_db: float | None,
              limit_level_db: float | None = None) -> str | None:
    """The status (:data:`STATUSES`) of ``level_db`` (dB) against the action values; the
    limit ``limit_db`` is checked against ``limit_level_db`` when given (the protected
    level), else against ``level_db``. Edges inclusive. None for no level. A value given as
    None is skipped (a profile with one action level has no lower one)."""
    if level_db is None or not math.isfinite(float(level_db)):
        return None
    level = float(level_db)
    under = level if limit_level_db is None else float(limit_level_db)
    if limit_db is not None and math.isfinite(under) and under >= limit_db:
        return "exceeded"
    if action_db is not None and level >= action_db:
        return "action"
    if lower_action_db is not None and level >= lower_action_db:
        return "lower_action"
    return "below"


@dataclasses.dataclass(frozen=True)
class EuExposure:
    """Article 3 status of one day: ``lex_status`` of LEX,8h, ``peak_status`` of the peak
    (None without a peak), ``status`` the worse of the two (:data:`STATUSES`).
    ``limit_under_protector`` is True only when every limit check used a protected level;
    ``notes`` (Chinese / English) say what a report must print."""

    lex_db: float
    peak_db: float | None
    protected_lex_db: float | None
    protected_peak_db: float | None
    lex_status: str | None
    peak_status: str | None
    status: str | None
    limit_under_protector: bool
    profile: str
    notes: tuple[str, ...] = ()


def classify(lex_8h_db: float, peak_db: float | None = None, *,
             protected_lex_db: float | None = None, protected_peak_db: float | None = None,
             prof: Profile | str | None = None) -> EuExposure:
    """Article 3 status of a day's LEX,8h ``lex_8h_db`` (dB(A)) and highest peak ``peak_db``
    (dB(C)), with the levels under the hearing protector, ``protected_lex_db`` (dB(A)) and
    ``protected_peak_db`` (dB(C)), when known. Profile ``prof`` (default
    ``EU-2003-10-EC``) gives the six values; see the module docstring for the edges."""
    p = prof if isinstance(prof, Profile) else profile(prof or EU_PROFILE)
    lex_status = status_of(lex_8h_db, lower_action_db=p.lower_action_db,
                           action_db=p.action_level_db, limit_db=p.lex_limit_db,
                           limit_level_db=protected_lex_db)
    has_peak = peak_db is not None and math.isfinite(float(peak_db))
    peak_status = status_of(peak_db, lower_action_db=p.lower_action_peak_db,
                            action_db=p.action_peak_db, limit_db=p.peak_ceiling_db,
                            limit_level_db=protected_peak_db)
    under = protected_lex_db is not None and (not has_peak or protected_peak_db is not None)
    notes = () if under else (UNPROTECTED_NOTE,)
    return EuExposure(float(lex_8h_db), float(peak_db) if has_peak else None,
                      protected_lex_db, protected_peak_db, lex_status, peak_status,
                      worst(lex_status, peak_status), under, p.id, notes)


def classify_protected(lex_8h_db: float, attenuation_db: float, peak_db: float | None = None,
                       *, prof: Profile | str | None = None) -> EuExposure:
    """Article 3 status with the limit value checked under the hearing protector: the
    protected LEX,8h is ``lex_8h_db`` − ``attenuation_db`` (dB(A); the derated attenuation
    LA − L'A of :class:`tingbao.analysis.gbt23466.Protected`, by the octave-band, HML or SNR
    method of ISO 4869-2). The action values stay on the unprotected level (Article 3(2)). A
    protector's attenuation of peaks is not catalogued, so a peak's limit check stays
    unprotected and says so (the note of :func:`classify`)."""
    att = float(attenuation_db)
    if not math.isfinite(att):
        raise ValueError(f"attenuation {attenuation_db!r} dB is not a number")
    return classify(lex_8h_db, peak_db, protected_lex_db=float(lex_8h_db) - att, prof=prof)
