"""Virtual dosimeters: one post's shift read, side by side, as a dosimeter set to each
regulatory profile would read it (commercial dosimeters run two to four such "virtual
dosimeters" on one microphone, e.g. OSHA PEL, OSHA HC, NIOSH and an ISO/EU setting).

The input is a shift's sums from the store (:class:`PostSums`): the A-weighted exposure
``SUM(ea)`` and ``SUM(coverage)`` (:func:`tingbao.collector.schema.exposure_sums`), the
highest peaks and the impulse counts (:func:`tingbao.collector.schema.period_peaks`), and per
profile stated as a dose the dose sum of the 1 s levels
(:func:`tingbao.collector.schema.dose_sums`). The output is one :class:`ProfileView` per
profile (:func:`views`, every shipped profile unless told):

* ``exposure_metric = "lex_8h"`` (CN-GBZ: GBZ 2.2-2007 / GBZ/T 189.8-2007 / GBZ/T 229.4-2012;
  EU 2003/10/EC Art. 3): 3 dB exchange, no threshold, so LEX,8h comes from the energy sum and
  the dose is 100 · 10^(0.1 (LEX,8h − limit)) %;
* ``exposure_metric = "twa"`` (OSHA 29 CFR 1910.95, NIOSH 98-126): the dose is the store's
  dose sum (a threshold and a 5 dB exchange cannot be derived from an energy sum) and the TWA
  is the dose's (:func:`tingbao.analysis.osha_1910_95.twa_db`).

Coverage, by the rule of the profile in force (:func:`tingbao.analysis.exposure.post_lex`,
``[analysis] extrapolate_min_coverage``, passed as ``min_coverage``): with coverage =
covered / shift ≥ ``min_coverage`` both readings are of the covered seconds, extended to the
shift (``shift_s``) as if the uncovered time were as loud (GBZ/T 189.8 projection,
:func:`tingbao.analysis.gbzt189_8.projected_lex_8h`; the dose scaled by shift / coverage),
and a view says so in its notes when coverage is short of the shift. Below ``min_coverage``
only the measured exposure counts, a lower bound: LEX,8h = 10 lg(EA / (p0² · 8 h))
(:func:`~tingbao.analysis.gbzt189_8.lex_8h`), the dose is the dose sum of the measured
seconds unscaled, and the notes say so (:data:`LOW_COVERAGE_NOTE`). The default
``min_coverage = 0`` always extends.

Impulses: the n of the GBZ 2.2 peak table is :func:`tingbao.analysis.gbz2_2.impulse_count`
of the shift's counts (the count at the lowest threshold the edge counted).

Statuses (:data:`tingbao.analysis.eu_2003_10.STATUSES`, edges inclusive): ``below``;
``lower_action`` at the profile's lower action value (EU 80 dB(A)) or, for CN-GBZ, at 噪声作业
(LEX,8h ≥ 80, GBZ/T 229.4-2012; GBZ 188 hearing checks every two years); ``action`` at the
(upper) action level (EU 85, OSHA 85 TWA = 50 % dose); ``exceeded`` at the limit (CN 85, EU 87
under the protector, OSHA 90, NIOSH 85) or when the peak reaches its limit. None without data
(a dose of 0 %, nothing at or above the threshold, is ``below``).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Iterable, Mapping

from tingbao.analysis import eu_2003_10, gbz2_2
from tingbao.analysis.gbzt189_8 import lex_8h, projected_lex_8h
from tingbao.analysis.gbzt229_4 import HazardGrade, ImpulseHazardGrade, grade, impulse_grade
from tingbao.analysis.osha_1910_95 import criterion, twa_db
from tingbao.collector import schema
from tingbao.collector.registry.profiles import Profile, profile, profile_ids

__all__ = ["LOW_COVERAGE_NOTE", "PostSums", "ProfileView", "dose_queries", "view", "views"]

LOW_COVERAGE_NOTE = ("覆盖率 {coverage_pct:.1f}% 不足 {min_pct:g}%，仅计已测能量（下限）/ coverage "
                     "{coverage_pct:.1f} % below {min_pct:g} % of the shift: measured "
                     "exposure only (a lower bound)")
"""The note of a view whose coverage is below ``min_coverage``; :func:`view` fills in
``coverage_pct`` and ``min_pct`` (%)."""


@dataclasses.dataclass(frozen=True)
class PostSums:
    """One post's (meter, channel's) shift as the store sums it.

    ``ea_pa2s``: SUM(ea), A-weighted sound exposure, Pa²·s; ``coverage_s``: SUM(coverage),
    seconds of valid audio; ``shift_s``: the shift's duration Te, s; ``lcpeak_max_db`` and
    ``lzpeak_max_db``: the highest C- and Z-weighted peaks, dB re 20 µPa (None if unknown);
    ``impulse_counts``: impulses counted in the shift by counting threshold, ``{C-peak
    threshold dB: count}`` (the edge's ``imp_…`` fields); ``dose_sums``: ``{profile id: dose
    fraction}`` from :func:`tingbao.collector.schema.dose_sums` for the profiles stated as a
    dose (1.0 = 100 %, over the covered seconds). Mappings are copied read-only."""

    ea_pa2s: float
    coverage_s: float
    shift_s: float
    lcpeak_max_db: float | None = None
    lzpeak_max_db: float | None = None
    impulse_counts: Mapping[float, int] = dataclasses.field(default_factory=dict)
    dose_sums: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.shift_s > 0:
            raise ValueError(f"shift duration must be > 0 s, got {self.shift_s!r}")
        if not self.coverage_s >= 0 or not self.ea_pa2s >= 0:
            raise ValueError("coverage (s) and exposure (Pa²·s) must be >= 0")
        counts = {float(k): int(v) for k, v in self.impulse_counts.items()}
        if any(v < 0 for v in counts.values()):
            raise ValueError(f"impulse counts must be >= 0, got {counts}")
        object.__setattr__(self, "impulse_counts", types.MappingProxyType(counts))
        object.__setattr__(self, "dose_sums", types.MappingProxyType(
            {str(k): float(v) for k, v in self.dose_sums.items()}))

    @classmethod
    def from_store(cls, energy: Mapping, peaks: Mapping | None, shift_s: float,
                   dose_sums: Mapping[str, float] | None = None) -> PostSums:
        """The sums of one (meter, channel) as the schema's combiners give them: ``energy``
        an entry of :func:`~tingbao.collector.schema.add_sums` (``ea``, ``coverage``),
        ``peaks`` one of :func:`~tingbao.collector.schema.add_peaks` (``lcpeak``, ``lzpeak``,
        ``imp_<threshold>``; None if not read), ``dose_sums`` {profile id: the ``dose`` column
        of that profile's :func:`dose_queries` statement for this series}."""
        peaks = peaks or {}
        counts = {t: int(peaks[name])
                  for t, name in schema.impulse_thresholds(peaks).items()}
        return cls(float(energy.get("ea") or 0.0), float(energy.get("coverage") or 0.0),
                   shift_s, peaks.get("lcpeak"), peaks.get("lzpeak"), counts,
                   dict(dose_sums or {}))

    @property
    def coverage(self) -> float:
        """Covered fraction of the shift, min(coverage_s, shift_s) / shift_s (0 … 1)."""
        return min(self.coverage_s, self.shift_s) / self.shift_s

    @property
    def projection(self) -> float:
        """shift / coverage: the factor that extends the covered seconds to the shift (NaN
        without coverage)."""
        return self.shift_s / self.coverage_s if self.coverage_s > 0 else math.nan

    def peak_db(self, weighting: str) -> float | None:
        """The highest peak of ``weighting`` ``"C"`` or ``"Z"``, dB re 20 µPa."""
        return {"C": self.lcpeak_max_db, "Z": self.lzpeak_max_db}[weighting]


@dataclasses.dataclass(frozen=True)
class ProfileView:
    """One virtual dosimeter: the shift under one profile. Levels in dB(A) re 20 µPa, peaks in
    dB re 20 µPa (``peak_weighting``), dose in %. ``lex_8h_db`` for profiles stated as LEX,8h,
    ``twa_db`` for those stated as a dose (the other is None); ``level_db`` is whichever the
    profile states. ``lower_action_db`` / ``action_db`` are None where the profile has none.
    ``peak_exceeded`` is None when the peak or (for a table by impulse count) the count is
    unknown. ``grade`` / ``impulse_grade`` for profiles with GBZ/T 229.4 grades (the impulse
    grade is provisional). ``notes``: what a report must print beside it (Chinese / English).
    """

    profile: str
    exposure_metric: str
    level_db: float
    lex_8h_db: float | None
    twa_db: float | None
    dose_pct: float
    limit_db: float
    lower_action_db: float | None
    action_db: float | None
    status: str | None
    peak_db: float | None
    peak_weighting: str
    peak_limit_db: float | None
    peak_exceeded: bool | None
    n_impulses: int | None
    grade: HazardGrade | None = None
    impulse_grade: ImpulseHazardGrade | None = None
    notes: tuple[str, ...] = ()


def _coverage_note(sums: PostSums, extend: bool, min_coverage: float) -> str | None:
    pct = 100.0 * sums.coverage
    if sums.coverage_s <= 0:
        return "无有效测量数据 / no valid audio in the shift"
    if not extend:
        return LOW_COVERAGE_NOTE.format(coverage_pct=pct, min_pct=100.0 * min_coverage)
    if sums.coverage_s < sums.shift_s:
        return (f"覆盖率 {pct:.1f}%：未覆盖时段按已测水平外推至整个班次 / coverage {pct:.1f} % of "
                "the shift: the uncovered time is taken as loud as the measured time")
    return None


def view(sums: PostSums, prof: Profile | str, *, min_coverage: float = 0.0) -> ProfileView:
    """The shift ``sums`` under profile ``prof`` (see the module docstring). ``min_coverage``
    (fraction of the shift, 0 … 1; the profile in force's ``[analysis]
    extrapolate_min_coverage``): with coverage ≥ it the readings are extended to the shift
    (dose × shift / coverage), below it they count the measured exposure only (a lower
    bound, said in the notes)."""
    p = prof if isinstance(prof, Profile) else profile(prof)
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be a fraction 0 … 1, got {min_coverage!r}")
    extend = sums.coverage >= min_coverage
    notes = [n for n in (_coverage_note(sums, extend, min_coverage),) if n]
    limit = p.lex_limit_db
    if p.exposure_metric == "twa":
        if p.id in sums.dose_sums and sums.coverage_s > 0:
            dose = 100.0 * sums.dose_sums[p.id] * (sums.projection if extend else 1.0)
        else:
            dose = math.nan
            if sums.coverage_s > 0:
                notes.append(f"缺少 {p.id} 剂量累计（schema.dose_sums）/ no {p.id} dose sum from "
                             "the store (schema.dose_sums)")
        twa = twa_db(dose, limit, p.exchange_rate_db)  # NaN for no dose
        lex, level = None, twa
        if dose == 0:
            notes.append(f"无高于阈值 {p.threshold_db:g} dB(A) 的声级 / no level at or above the "
                         f"{p.threshold_db:g} dB(A) threshold: dose 0 %, no TWA")
    else:
        if sums.coverage_s <= 0:
            lex = math.nan
        elif extend:
            lex = projected_lex_8h(sums.ea_pa2s, sums.coverage_s, sums.shift_s)
        else:  # the measured energy alone over 8 h: a lower bound
            lex = lex_8h(sums.ea_pa2s)  # NaN for no energy
        dose = 100.0 * 10.0 ** (0.1 * (lex - limit)) if math.isfinite(lex) else math.nan
        twa, level = None, lex

    lower = p.lower_action_db if p.lower_action_db is not None else p.noise_work_db
    peak = sums.peak_db(p.peak_weighting)
    has_peak = peak is not None and math.isfinite(peak)
    n, count_threshold = gbz2_2.impulse_count(sums.impulse_counts)
    if p.lower_action_peak_db is not None or p.action_peak_db is not None:  # EU Art. 3
        eu = eu_2003_10.classify(level, peak if has_peak else None, prof=p)
        status = eu.status if math.isfinite(level) or has_peak else None
        notes += eu.notes
        peak_limit = p.peak_ceiling_db
        peak_exceeded = (eu.peak_status == "exceeded") if has_peak else None
    else:
        status = eu_2003_10.status_of(level, lower_action_db=lower, action_db=p.action_level_db,
                                      limit_db=limit) if math.isfinite(level) else None
        if dose == 0:  # measured, and nothing at or above the threshold
            status = "below"
        peak_limit, peak_exceeded = None, None
        if p.peak_limits and n is None:
            notes.append("缺少脉冲次数，无法确定峰值限值 / no impulse count: the GBZ 2.2 peak "
                         "limit depends on it and is not checked")
        else:
            check = gbz2_2.peak_check(peak if has_peak else None, n or 0, p)
            peak_limit = gbz2_2.peak_limit_db(n or 0, p)
            if check is not None:
                peak_exceeded = check.exceeded
                notes += check.provisional
        if peak_exceeded:
            status = eu_2003_10.worst(status, "exceeded")
    if p.peak_limits and count_threshold is not None:
        notes.append(f"脉冲次数按 C 计权峰值 ≥ {count_threshold:g} dB 计 / impulses counted at "
                     f"C-weighted peaks ≥ {count_threshold:g} dB")

    hazard = grade(lex, p) if p.grades and lex is not None else None
    imp = (impulse_grade(peak, n, p) if p.impulse_grades and has_peak and n is not None
           else None)
    if imp is not None:
        notes += [x for x in imp.notes if x not in notes]
    return ProfileView(p.id, p.exposure_metric, level, lex, twa, dose, limit, lower,
                       p.action_level_db, status, peak if has_peak else None, p.peak_weighting,
                       peak_limit, peak_exceeded, n, hazard, imp, tuple(dict.fromkeys(notes)))


def dose_queries(period: schema.Period, profiles: Iterable[str] | None = None, *,
                 enterprise: str | None = None, meters: Iterable[str] | None = None,
                 levels_rp: str | None = None) -> dict[str, str]:
    """{profile id: InfluxQL} of :func:`tingbao.collector.schema.dose_sums` with each
    profile's criterion level, exchange rate and threshold, for the profiles of ``profiles``
    (default every shipped one) that state exposure as a dose (``exposure_metric = "twa"``).
    Each answer has a ``dose`` column (fraction) per (meter, channel)."""
    out = {}
    for pid in profile_ids() if profiles is None else profiles:
        p = profile(pid)
        if p.exposure_metric == "twa":
            c = criterion(p)
            out[p.id] = schema.dose_sums(period, criterion_db=c.criterion_db,
                                         exchange_db=c.exchange_db,
                                         threshold_db=c.threshold_db, enterprise=enterprise,
                                         meters=meters, levels_rp=levels_rp)
    return out


def views(sums: PostSums, profiles: Iterable[str] | None = None, *,
          min_coverage: float = 0.0) -> tuple[ProfileView, ...]:
    """:func:`view` of ``sums`` under each profile id of ``profiles`` (default every shipped
    profile, :func:`~tingbao.collector.registry.profiles.profile_ids`: CN-GBZ, EU, NIOSH,
    OSHA), in that order, each with the coverage rule ``min_coverage`` of the profile in
    force."""
    return tuple(view(sums, pid, min_coverage=min_coverage)
                 for pid in (profile_ids() if profiles is None else profiles))
