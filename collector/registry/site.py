"""The site registry: what exists in a deployment, loaded from one TOML file and checked.

It is the single source of truth server-side (ARCHITECTURE.md): the collector's known meters,
the stack's per-device MQTT accounts, analysis (shifts, job types, the regulatory profile) and
dashboards all read it. The edge reads only its own agent config. See
``configs/site.example.toml`` for a deployment with every table and key.

Tables: ``[deployment]`` (name, time zone, pilot milestones), ``[regulation]`` (the profile
in force, :mod:`.profiles`), ``[stack]``, ``[[enterprises]]`` (industry, pilot or comparison
group, shift pattern), ``[[sites]]`` (workshops), ``[[meters]]`` (position, channels,
calibration, source), ``[[job_types]]`` (tasks: hours at a meter or at a fixed level, the
protector issued).

Every error names the file, the table entry and the key, and says what to do, e.g.::

    site.toml: [[job_types]] #2 "cnc-operator" tasks[0].meter: unknown meter 'hl-mch-09';
    declare it in [[meters]] or name one of hl-stp-01, …

Rules beyond a single key: ids unique (a meter id across the whole deployment, since it is
also the device's MQTT user name), every reference resolves (a site's enterprise, a meter's
enterprise and site, a task's meter, within the same enterprise), shift hours in (0, 24], a
job's task hours add up to its enterprise's shift (within 1 minute), a synthetic source names
a scene that exists, the profile is known.

Units: levels in dB re 20 µPa (A-weighted where the key says ``laeq``), durations in hours
(``hours``) as GBZ/T 189.8 and ISO 9612 write them, sample rates in Hz.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import re
import zoneinfo
from collections.abc import Iterable
from pathlib import Path

from tingbao.edge import contract
from tingbao.edge.settings import ConfigError, Section, load_toml, section_from_mapping, setting

from ..settings import InfluxSettings, MqttSettings
from .profiles import DEFAULT_PROFILE, Profile, profile, profile_ids

__all__ = ["ConfigError", "Enterprise", "JobType", "Meter", "Registry", "Site", "Task",
           "load_registry", "registry_from_mapping"]

HOURS_TOLERANCE = 1 / 60
"""A job's task hours must add up to the shift within this many hours (1 minute)."""
INDUSTRIES = ("machinery", "light_industry", "building_materials", "other")
GROUPS = ("pilot", "comparison")
SOURCE_KINDS = ("live", "file", "synthetic")
_HHMM = re.compile(r"\A([01]\d|2[0-3]):[0-5]\d\Z")


def _hhmm(v: str) -> str:
    if not _HHMM.match(v):
        raise ValueError("a local time HH:MM, 00:00 … 23:59")
    return v


def _timezone(v: str) -> str:
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("an IANA time zone such as Asia/Shanghai") from None
    return v


# ------------------------------------------------------------------------------- tables
@dataclasses.dataclass(frozen=True, kw_only=True)
class Deployment(Section):
    name_zh: str = setting("tingbao")
    name_en: str = setting("tingbao")
    timezone: str = setting("Asia/Shanghai", check=_timezone)
    wearing_rate_milestones: tuple[float, ...] = setting((0.65, 0.70, 0.80), lo=0.0, hi=1.0)
    milestone_years: tuple[int, ...] = setting((2023, 2024, 2025), lo=2000, hi=2100)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Regulation(Section):
    profile: str = setting(DEFAULT_PROFILE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StackSection(Section):
    data_dir: str = setting("var/stack")
    retention: str = setting("90d")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AnalysisSection(Section):
    """``[analysis]``: how shifts are closed and alerts raised (``tingbao analyze``). Where
    a standard gives no number these are the deployment's choices, each documented."""

    profiles: tuple[str, ...] = setting(("CN-GBZ", "OSHA", "NIOSH", "EU-2003-10-EC"),
                                        doc="regulatory profiles computed side by side")
    extrapolate_min_coverage: float = setting(
        0.8, lo=0.0, hi=1.0, doc="fraction of the shift measured above which LEX is "
        "extrapolated over the gaps (flag kept); below it LEX counts measured energy only")
    coverage_alert_below: float = setting(0.9, lo=0.0, hi=1.0,
                                          doc="device-health alert when a closed shift's "
                                              "coverage is below this fraction")
    instrument: str = setting("class1", choices=("class1", "class2", "personal"),
                              doc="instrument class for the ISO 9612 u2 term")
    recent_s: float = setting(300.0, unit="s", lo=10.0, hi=7200.0,
                              doc="the recent level a projection assumes for the rest of "
                                  "the shift is LAeq over this window")
    holdoff_s: float = setting(900.0, unit="s", lo=0.0, hi=86400.0,
                               doc="a cleared condition may raise again only after this")
    offline_after_s: float = setting(120.0, unit="s", lo=5.0, hi=86400.0,
                                     doc="a meter without any interval for this long is "
                                         "offline")
    clock_offset_max_s: float = setting(2.0, unit="s", lo=0.001, hi=3600.0)
    calibration_interval_days: int = setting(365, unit="d", lo=1, hi=3650,
                                             doc="JJG 188 verification cycle of sound level "
                                                 "meters: one year")
    calibration_drift_max_db: float = setting(0.5, unit="dB", lo=0.0, hi=10.0,
                                              doc="GBZ/T 189.8: a check before and after "
                                                  "measuring differing by more is invalid")
    close_delay_s: float = setting(300.0, unit="s", lo=0.0, hi=86400.0,
                                   doc="a shift is closed this long after its end, so late "
                                       "intervals (agent outbox resends) are in")
    poll_s: float = setting(10.0, unit="s", lo=0.1, hi=3600.0)
    rollup_lag_s: float = setting(300.0, unit="s", lo=0.0, hi=86400.0,
                                  doc="in shift, minutes younger than this are summed from the "
                                      "1 s points: their minute rollup may not be written yet")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Shift(Section):
    """A shift pattern: local start time, length in hours, days worked per week and which
    (``workdays``: ISO weekday numbers, 1 = Monday … 7 = Sunday; by default the first
    ``days_per_week`` days from Monday). A shift starting on a day that is not a workday is
    not a shift: analysis neither closes it nor raises alerts in it."""

    start: str = setting("08:00", check=_hhmm)
    hours: float = setting(8.0, unit="h", lo=1e-6, hi=24.0)
    days_per_week: int = setting(5, lo=1, hi=7)
    workdays: tuple[int, ...] | None = setting(None, lo=1, hi=7)

    def __post_init__(self):
        if self.workdays is not None:
            if len(set(self.workdays)) != len(self.workdays):
                raise ConfigError(f"workdays {list(self.workdays)} repeat a day", key="workdays")
            if len(self.workdays) != self.days_per_week:
                raise ConfigError(f"workdays {list(self.workdays)} name {len(self.workdays)} "
                                  f"days but days_per_week = {self.days_per_week}; set both",
                                  key="workdays")

    @property
    def weekdays(self) -> frozenset[int]:
        """The ISO weekdays worked (1 = Monday)."""
        return frozenset(self.workdays or range(1, self.days_per_week + 1))

    def works_on(self, date: dt.date) -> bool:
        """Whether a shift starts on local ``date``."""
        return date.isoweekday() in self.weekdays

    @property
    def crosses_midnight(self) -> bool:
        h, m = map(int, self.start.split(":"))
        return h + m / 60 + self.hours > 24.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Enterprise(Section):
    id: str = setting(check=contract.check_id)
    name_zh: str = setting()
    name_en: str = setting("")
    industry: str = setting(choices=INDUSTRIES)
    industry_zh: str = setting("")
    city: str = setting("")
    group: str = setting(choices=GROUPS)
    employees: int | None = setting(None, lo=1)
    noise_exposed_workers: int | None = setting(None, lo=0)
    shift: Shift = setting(Shift())


@dataclasses.dataclass(frozen=True, kw_only=True)
class Site(Section):
    id: str = setting(check=contract.check_id)
    enterprise: str = setting(check=contract.check_id)
    name_zh: str = setting()
    name_en: str = setting("")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeterSource(Section):
    """Where a meter's audio comes from: ``live`` (a sounddevice input ``device``),
    ``file`` or ``synthetic`` (the demo's factory ``scene``)."""

    kind: str = setting(choices=SOURCE_KINDS)
    device: str | int | None = setting(None)
    scene: str | None = setting(None)
    path: str | None = setting(None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Meter(Section):
    id: str = setting(check=contract.check_id)
    enterprise: str = setting(check=contract.check_id)
    site: str = setting(check=contract.check_id)
    position_zh: str = setting("")
    position_en: str = setting("")
    samplerate_hz: float = setting(48000.0, unit="Hz", lo=16000.0, hi=384000.0,
                                   renamed_from={"samplerate": 1})
    channels: int = setting(1, lo=1, hi=64)
    pa_per_unit: float | tuple[float, ...] | None = setting(None, unit="Pa per unit", lo=1e-12)
    calibrated: dt.date | None = setting(None)
    typical_laeq_db: float | None = setting(None, unit="dB(A)", lo=0.0, hi=200.0,
                                            renamed_from={"typical_laeq_dba": 1})
    impulsive: bool = setting(False)
    source: MeterSource = setting(MeterSource(kind="live"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Task(Section):
    """Time at one post: at a ``meter`` (its ``channel``) or at a fixed ``laeq_db`` where no
    meter measures (GBZ/T 189.8, ISO 9612 task-based strategy)."""

    hours: float = setting(unit="h", lo=0.0, hi=24.0)
    meter: str | None = setting(None, check=contract.check_id)
    channel: int = setting(0, lo=0, hi=63)
    laeq_db: float | None = setting(None, unit="dB(A)", lo=0.0, hi=200.0,
                                    renamed_from={"laeq_dba": 1})
    what: str = setting("")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Protector(Section):
    """The hearing protector issued for a job (SNR per GB/T 23466 / EN 352). ``catalogue``
    names an entry of the protector catalogue (``analysis/data/protectors.toml``; for
    ``both``, the plug and the muff: ``["plug-id", "muff-id"]``), whose octave-band and H/M/L
    data then give the protected level (``tingbao protectors``; analysis checks the ids).
    ``formable`` (a foam plug rolled before insertion) matters for NIOSH derating only."""

    type: str = setting(choices=("earplug", "earmuff", "both"))
    model: str = setting("")
    snr_db: float | None = setting(None, unit="dB", lo=0.0, hi=60.0)
    catalogue: tuple[str, ...] | None = setting(None, check=lambda v: tuple(
        contract.check_id(x, "catalogue id") for x in v))
    formable: bool | None = setting(None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobType(Section):
    """A job type (工种) with its tasks; the hours add up to its enterprise's shift."""

    id: str = setting(check=contract.check_id)
    enterprise: str = setting(check=contract.check_id)
    name_zh: str = setting()
    name_en: str = setting("")
    workers: int | None = setting(None, lo=0)
    protector: Protector | None = setting(None)
    tasks: tuple[Task, ...] = setting()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Registry:
    """A checked site registry. ``path`` is the file, ``digest`` the SHA-256 of its bytes
    (what a report cites), ``profile`` the regulatory profile in force."""

    path: str | None
    digest: str
    deployment: Deployment
    regulation: Regulation
    stack: StackSection
    analysis: AnalysisSection
    influx: InfluxSettings | None
    mqtt: MqttSettings | None
    enterprises: tuple[Enterprise, ...]
    sites: tuple[Site, ...]
    meters: tuple[Meter, ...]
    job_types: tuple[JobType, ...]

    @property
    def profile(self) -> Profile:
        return profile(self.regulation.profile)

    @property
    def meter_ids(self) -> frozenset[str]:
        """Every meter id (the collector's known meters, the stack's device accounts)."""
        return frozenset(m.id for m in self.meters)

    def meter(self, meter_id: str) -> Meter:
        for m in self.meters:
            if m.id == meter_id:
                return m
        raise KeyError(meter_id)

    def enterprise(self, enterprise_id: str) -> Enterprise:
        for e in self.enterprises:
            if e.id == enterprise_id:
                return e
        raise KeyError(enterprise_id)

    def meters_of(self, enterprise_id: str) -> tuple[Meter, ...]:
        return tuple(m for m in self.meters if m.enterprise == enterprise_id)

    def jobs_of(self, enterprise_id: str) -> tuple[JobType, ...]:
        return tuple(j for j in self.job_types if j.enterprise == enterprise_id)


# ------------------------------------------------------------------------------- loading
def load_registry(path: str | os.PathLike) -> Registry:
    """Read and check a site registry file; :class:`ConfigError` names file, entry, key."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such site registry file (start from configs/site.example.toml)",
                          file=path) from None
    data = load_toml(path, "site registry")
    try:
        return registry_from_mapping(data, source=str(path), base_dir=path.parent,
                                     digest=hashlib.sha256(raw_bytes).hexdigest())
    except ConfigError as e:
        raise e.in_file(path) from None


_ARRAYS = {"enterprises": Enterprise, "sites": Site, "meters": Meter, "job_types": JobType}
_SINGLE = {"deployment": Deployment, "regulation": Regulation, "stack": StackSection,
           "analysis": AnalysisSection}
_OPTIONAL = {"influx": InfluxSettings, "mqtt": MqttSettings}
"""Servers of a deployment that does not run the local stack (``[stack]``): the same keys as
the collector's ``[influx]`` and ``[mqtt]`` (passwords in ``password_file``)."""


def _label(table: str, i: int, entry) -> str:
    ident = entry.get("id") if isinstance(entry, dict) else None
    return f"[[{table}]] #{i + 1}" + (f" {ident!r}" if isinstance(ident, str) else "")


def registry_from_mapping(data: dict, *, source: str | None = None,
                          base_dir: str | os.PathLike = ".", digest: str = "") -> Registry:
    """Check parsed TOML and build a :class:`Registry` (see the module docstring)."""
    base = Path(base_dir)
    known = set(_ARRAYS) | set(_SINGLE) | set(_OPTIONAL)
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown table(s) {sorted(unknown)}; known: "
                          f"{', '.join(sorted(known))}")
    parts: dict = {}
    for name, cls in _SINGLE.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
        parts[name] = section_from_mapping(cls, table, name, base)
    for name, cls in _OPTIONAL.items():
        table = data.get(name)
        if table is not None and not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
        parts[name] = None if table is None else section_from_mapping(cls, table, name, base)
    for name, cls in _ARRAYS.items():
        entries = data.get(name, [])
        if not isinstance(entries, list):
            raise ConfigError(f"{name} must be an array of tables: [[{name}]]")
        items = []
        for i, entry in enumerate(entries):
            label = _label(name, i, entry)
            if not isinstance(entry, dict):
                raise ConfigError(f"{label} must be a table")
            items.append(section_from_mapping(cls, entry, label, base))
        parts[name] = tuple(items)
    reg = Registry(path=source, digest=digest, **parts)
    _check_references(reg)
    return reg


def _unique(items: Iterable, table: str, scope=lambda x: None, what: str = "id") -> None:
    seen: dict = {}
    for i, item in enumerate(items):
        key = (scope(item), item.id)
        if key in seen:
            raise ConfigError(f"= {item.id!r}: duplicate {what} (also {seen[key]}); ids must be "
                              "unique" + ("" if scope(item) is None else " within an enterprise"),
                              entry=f"[[{table}]] #{i + 1} {item.id!r}", key="id")
        seen[key] = f"[[{table}]] #{i + 1}"


def _check_references(reg: Registry) -> None:
    if reg.regulation.profile not in profile_ids():
        raise ConfigError(f"= {reg.regulation.profile!r}: unknown regulatory profile; one of "
                          f"{', '.join(profile_ids())}", entry="regulation", key="profile")
    if reg.profile.exposure_metric == "twa":
        raise ConfigError(f"= {reg.regulation.profile!r}: a profile stated as dose and TWA "
                          "cannot be the profile in force (grades, LEX limits and the ledger "
                          "are LEX,8h); keep it in [analysis] profiles to see it side by side",
                          entry="regulation", key="profile")
    if len(set(reg.analysis.profiles)) != len(reg.analysis.profiles):
        raise ConfigError(f"{list(reg.analysis.profiles)} names a profile twice",
                          entry="analysis", key="profiles")
    for i, pid in enumerate(reg.analysis.profiles):
        if pid not in profile_ids():
            raise ConfigError(f"= {pid!r}: unknown regulatory profile; one of "
                              f"{', '.join(profile_ids())}", entry="analysis",
                              key=f"profiles[{i}]")
    d = reg.deployment
    if len(d.wearing_rate_milestones) != len(d.milestone_years):
        raise ConfigError("wearing_rate_milestones and milestone_years must pair up "
                          f"({len(d.wearing_rate_milestones)} rates, {len(d.milestone_years)} "
                          "years)", entry="deployment", key="wearing_rate_milestones")
    _unique(reg.enterprises, "enterprises")
    _unique(reg.sites, "sites", scope=lambda s: s.enterprise)
    # a meter id is a device's MQTT user name: unique across the whole deployment
    _unique(reg.meters, "meters", what="meter id (a meter id is also the device's MQTT "
            "user name, across the whole deployment)")
    _unique(reg.job_types, "job_types", scope=lambda j: j.enterprise)
    enterprises = {e.id: e for e in reg.enterprises}
    sites = {(s.enterprise, s.id) for s in reg.sites}
    meters = {m.id: m for m in reg.meters}

    def need_enterprise(table: str, i: int, item) -> Enterprise:
        if item.enterprise not in enterprises:
            raise ConfigError(f"= {item.enterprise!r}: unknown enterprise; declare it in "
                              f"[[enterprises]] or name one of {', '.join(enterprises) or '—'}",
                              entry=f"[[{table}]] #{i + 1} {item.id!r}", key="enterprise")
        return enterprises[item.enterprise]

    for i, s in enumerate(reg.sites):
        need_enterprise("sites", i, s)
    from tingbao.edge.sources.synthetic import PROFILES as SCENES

    for i, m in enumerate(reg.meters):
        label = f"[[meters]] #{i + 1} {m.id!r}"
        need_enterprise("meters", i, m)
        if (m.enterprise, m.site) not in sites:
            names = sorted(s for e, s in sites if e == m.enterprise)
            raise ConfigError(f"= {m.site!r}: no such site in enterprise {m.enterprise!r}; "
                              f"declare it in [[sites]] or name one of {', '.join(names) or '—'}",
                              entry=label, key="site")
        if isinstance(m.pa_per_unit, tuple) and len(m.pa_per_unit) != m.channels:
            raise ConfigError(f"has {len(m.pa_per_unit)} values for {m.channels} channel(s); "
                              "give one per channel or a single number", entry=label,
                              key="pa_per_unit")
        src = m.source
        if src.kind == "synthetic":
            if src.scene not in SCENES:
                raise ConfigError(f"= {src.scene!r}: unknown scene; one of {', '.join(SCENES)}",
                                  entry=label, key="source.scene")
        elif src.scene is not None:
            raise ConfigError(f"scene applies to kind = 'synthetic' only (this is "
                              f"{src.kind!r})", entry=label, key="source.scene")
        if src.kind == "file" and not src.path:
            raise ConfigError("path is required for kind = 'file'", entry=label,
                              key="source.path")
    for i, j in enumerate(reg.job_types):
        label = f"[[job_types]] #{i + 1} {j.id!r}"
        ent = need_enterprise("job_types", i, j)
        if not j.tasks:
            raise ConfigError("lists no tasks; give the hours at each meter or level",
                              entry=label, key="tasks")
        for k, t in enumerate(j.tasks):
            key = f"tasks[{k}]"
            if (t.meter is None) == (t.laeq_db is None):
                raise ConfigError("needs either meter (time at a measured post) or laeq_db (a "
                                  "fixed level where no meter measures), not both",
                                  entry=label, key=key)
            if t.meter is not None:
                if t.meter not in meters:
                    raise ConfigError(f"= {t.meter!r}: unknown meter; declare it in [[meters]] "
                                      f"or name one of {', '.join(meters) or '—'}",
                                      entry=label, key=f"{key}.meter")
                if meters[t.meter].enterprise != j.enterprise:
                    raise ConfigError(f"= {t.meter!r}: that meter belongs to enterprise "
                                      f"{meters[t.meter].enterprise!r}, this job to "
                                      f"{j.enterprise!r}", entry=label, key=f"{key}.meter")
                if t.channel >= meters[t.meter].channels:
                    raise ConfigError(f"= {t.channel}: meter {t.meter!r} has "
                                      f"{meters[t.meter].channels} channel(s), 0 … "
                                      f"{meters[t.meter].channels - 1}", entry=label,
                                      key=f"{key}.channel")
        total = sum(t.hours for t in j.tasks)
        if abs(total - ent.shift.hours) > HOURS_TOLERANCE:
            raise ConfigError(f"task hours add up to {total:g} h but the shift of "
                              f"{ent.id!r} is {ent.shift.hours:g} h; make them add up (a "
                              "break is a task too, at its own level)", entry=label,
                              key="tasks")
