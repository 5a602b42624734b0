"""ISO 9612:2009 (= GB/T 21230-2014, 声学 工作场所噪声暴露的测定 工程法, identical adoption):
the daily noise exposure level LEX,8h and its measurement uncertainty (Annex C) for the three
measurement strategies:

* task-based (clause 9, 基于工作任务的测量): the working day split into M tasks, each of
  duration Tm (h) measured with I ≥ 3 samples; :func:`task_based`;
* job-based (clause 10, 基于工种的测量): N ≥ 5 random samples over the job of a homogeneous
  noise exposure group, with a minimum cumulative duration by group size (Table 1,
  :func:`minimum_duration_h`); :func:`job_based`;
* full-day (clause 11, 全天测量): N ≥ 3 whole working days; :func:`full_day`.

Formulas (Annex C; ``../shared/reference/noise-standards.md``, section "Checked 2026-11-29"):

* task-based: Lm = energy mean of the task's samples; LEX,8h = 10 lg Σ (Tm/T0) 10^(0.1 Lm);
  u1a,m = sqrt(Σ (Lm,i − L̄m)² / (I(I − 1))) with L̄m the arithmetic mean of the dB values;
  c1a,m = (Tm/T0) 10^(0.1 (Lm − LEX,8h)); u1b,m = ½(Tmax − Tmin) (h) for a duration range;
  c1b,m = (10/ln 10) c1a,m / Tm (printed 4.34); u² = Σ c1a,m² (u1a,m² + u2,m² + u3²)
  + Σ (c1b,m u1b,m)²;
* job-based and full-day: u1 = sample standard deviation (N − 1) of the N levels;
  u² = (c1u1)² + u2² + u3² with c1·u1 from Table C.4 (:func:`c1u1`); c1u1 > 3.5 dB means the
  measurement plan must be revised;
* U = k·u with k = 1.65 (one-sided 95 % coverage).

Every number of the edition (u2 by instrument, u3, k, the 3.5 dB plan limit, the minimum
sample counts, Table 1 and Table C.4) is data: ``data/iso9612_table_c4.toml``, named by its
``edition`` key (:func:`load_edition`), so that the edition can be a setting of a regulatory
profile (``CN-GBZ`` names GB/T 21230-2014, an alias of ISO 9612:2009 here). Levels are
A-weighted, in dB re 20 µPa; durations in hours; T0 = 8 h.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from tingbao.edge.settings import ConfigError, Section, load_toml, section_from_mapping, setting

__all__ = [
    "DEFAULT_EDITION", "Edition", "Instrument", "TableC4", "TaskSamples", "TaskTerm",
    "Uncertainty", "c1u1", "editions", "full_day", "job_based", "load_edition",
    "minimum_duration_h", "table_c4", "task_based",
]

DEFAULT_EDITION = "ISO 9612:2009"
"""The edition GB/T 21230-2014 adopts, and the one Chinese profiles cite."""

T0_H = 8.0
"""Reference duration T0 of LEX,8h, in hours."""

DB_PER_LN = 10.0 / math.log(10.0)
"""d(10 lg T)/dT · T = 10/ln 10 ≈ 4.343 dB: the sensitivity of a level to a relative change of
duration, printed 4.34 in c1b,m = 4.34 c1a,m / Tm."""

_SAMPLED_STRATEGIES = ("job", "full-day")


# --------------------------------------------------------------------------------------------
# The data of an edition
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Instrument(Section):
    """An instrument type and its standard uncertainty u2 in dB."""

    id: str = setting()
    name_zh: str = setting()
    name_en: str = setting()
    u2_db: float = setting(unit="dB", lo=0.0, hi=10.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DurationBand(Section):
    """One band of Table 1: for a group of up to ``max_workers`` workers (None: no upper
    end) the minimum cumulative duration is ``base_h + per_worker_h · (nG − from_workers)``
    hours."""

    max_workers: int | None = setting(None, lo=1)
    from_workers: int = setting(lo=0)
    base_h: float = setting(unit="h", lo=0.0, hi=100.0)
    per_worker_h: float = setting(unit="h", lo=0.0, hi=10.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableC4Row(Section):
    """One row of Table C.4: c1·u1 in dB for N = ``n`` samples, one value per u1 column."""

    n: int = setting(lo=2)
    full_day_only: bool = setting(False)
    c1u1_db: tuple[float, ...] = setting(unit="dB", lo=0.0, hi=100.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableC4Data(Section):
    """Table C.4 as read from TOML: the u1 columns (dB) and the rows."""

    u1_db: tuple[float, ...] = setting(unit="dB", lo=0.0, hi=20.0)
    rows: tuple[TableC4Row, ...] = setting()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Edition(Section):
    """The numbers of one edition of ISO 9612 (see ``data/iso9612_table_c4.toml``)."""

    edition: str = setting()
    also_known_as: tuple[str, ...] = setting(())
    checked: dt.date = setting()
    coverage_factor_k: float = setting(unit="", lo=1.0, hi=3.0)
    u3_microphone_db: float = setting(unit="dB", lo=0.0, hi=10.0)
    plan_limit_c1u1_db: float = setting(unit="dB", lo=0.0, hi=20.0)
    min_samples_task: int = setting(lo=2)
    min_samples_job: int = setting(lo=2)
    min_days_full_day: int = setting(lo=2)
    instruments: tuple[Instrument, ...] = setting()
    minimum_duration: tuple[DurationBand, ...] = setting()
    table_c4: TableC4Data = setting()

    def __post_init__(self):
        ids = [i.id for i in self.instruments]
        if not ids or len(set(ids)) != len(ids):
            raise ConfigError(f"instrument ids {ids} must be given and distinct",
                              entry=self.edition, key="instruments")
        bands = self.minimum_duration
        tops = [b.max_workers for b in bands[:-1]]
        if (not bands or bands[-1].max_workers is not None or None in tops
                or tops != sorted(tops) or len(set(tops)) != len(tops)):
            raise ConfigError("bands must rise by max_workers, the last one without it",
                              entry=self.edition, key="minimum_duration")
        cols, rows = self.table_c4.u1_db, self.table_c4.rows
        if not cols or list(cols) != sorted(set(cols)) or cols[0] <= 0:
            raise ConfigError(f"u1 columns {cols} must rise strictly from above 0 dB",
                              entry=self.edition, key="table_c4.u1_db")
        ns = [r.n for r in rows]
        if not rows or ns != sorted(set(ns)):
            raise ConfigError(f"row sample counts {ns} must rise strictly",
                              entry=self.edition, key="table_c4.rows")
        for r in rows:
            if len(r.c1u1_db) != len(cols) or list(r.c1u1_db) != sorted(r.c1u1_db):
                raise ConfigError(f"row N = {r.n} must hold {len(cols)} values that do not "
                                  "fall with u1", entry=self.edition, key="table_c4.rows")
        job_rows = [r.n for r in rows if not r.full_day_only]
        if not job_rows or min(job_rows) > self.min_samples_job or ns[0] > self.min_days_full_day:
            raise ConfigError("the table must have rows for the minimum sample counts",
                              entry=self.edition, key="table_c4.rows")

    @property
    def names(self) -> tuple[str, ...]:
        """The edition's name and its aliases (e.g. ``GB/T 21230-2014``)."""
        return (self.edition, *self.also_known_as)

    def instrument(self, instrument_id: str) -> Instrument:
        """The instrument ``instrument_id``; ValueError naming the known ones otherwise."""
        for i in self.instruments:
            if i.id == instrument_id:
                return i
        known = ", ".join(f"{i.id!r} ({i.name_en}, u2 = {i.u2_db:g} dB)" for i in self.instruments)
        raise ValueError(f"unknown instrument {instrument_id!r} for {self.edition}; "
                         f"give one of {known}")


def _data_dir() -> Path:
    return Path(str(resources.files("tingbao.analysis") / "data"))


@functools.cache
def _editions() -> dict[str, Edition]:
    """Every shipped edition by each of its names."""
    out: dict[str, Edition] = {}
    for path in sorted(_data_dir().glob("iso9612*.toml")):
        data = load_toml(path, "ISO 9612 edition")
        try:
            ed = section_from_mapping(Edition, data, f"edition {path.stem}", path.parent)
        except ConfigError as e:
            raise e.in_file(path) from None
        for name in ed.names:
            if name in out:
                raise ConfigError(f"edition name {name!r} is also given by another file",
                                  file=path)
            out[name] = ed
    return out


def editions() -> tuple[str, ...]:
    """The names of the shipped editions, aliases included."""
    return tuple(_editions())


def load_edition(edition: str = DEFAULT_EDITION) -> Edition:
    """The numbers of ISO 9612 edition ``edition`` (by its name, e.g. ``"ISO 9612:2009"``,
    or an alias, ``"GB/T 21230-2014"``). ValueError naming the shipped ones otherwise."""
    try:
        return _editions()[edition]
    except KeyError:
        raise ValueError(f"unknown ISO 9612 edition {edition!r}; shipped: "
                         f"{', '.join(map(repr, editions()))}. A new edition is a new data "
                         "file tingbao/analysis/data/iso9612*.toml") from None


@dataclasses.dataclass(frozen=True, eq=False)
class TableC4:
    """Table C.4 of an edition as read-only numpy arrays: ``n_samples`` (R,) int, the number N
    of samples of each row; ``u1_db`` (C,) the u1 columns in dB; ``c1u1_db`` (R, C) c1·u1 in
    dB; ``full_day_only`` (R,) bool, rows valid for the full-day strategy only."""

    n_samples: np.ndarray
    u1_db: np.ndarray
    c1u1_db: np.ndarray
    full_day_only: np.ndarray
    edition: str


@functools.cache
def table_c4(edition: str = DEFAULT_EDITION) -> TableC4:
    """Table C.4 of ``edition`` as arrays (see :class:`TableC4`)."""
    ed = load_edition(edition)
    rows = ed.table_c4.rows
    arrays = (np.array([r.n for r in rows], dtype=int),
              np.array(ed.table_c4.u1_db, dtype=float),
              np.array([r.c1u1_db for r in rows], dtype=float),
              np.array([r.full_day_only for r in rows], dtype=bool))
    for a in arrays:
        a.setflags(write=False)
    return TableC4(*arrays, edition=ed.edition)


# --------------------------------------------------------------------------------------------
# Table look-ups
# --------------------------------------------------------------------------------------------


def c1u1(n: int, u1_db, *, strategy: str, edition: str = DEFAULT_EDITION):
    """c1·u1 in dB from Table C.4 for ``n`` samples (job-based) or days (full-day) whose
    levels have the sample standard deviation ``u1_db`` (dB; a scalar gives a float, an array
    an array of the same shape).

    Between cells (the standard prints only the grid; this is tingbao's choice):

    * u1 between two columns: linear interpolation in u1; below the first column (0.5 dB)
      linear toward c1u1 = 0 at u1 = 0;
    * N between two rows: the next LOWER tabulated N (fewer samples, larger c1u1: the
      conservative side); N above the last row (30) uses that row.

    ValueError, saying what to do, for ``strategy`` not ``"job"`` or ``"full-day"``, for N
    below the edition's minimum (5 samples job-based, 3 days full-day; rows N = 3 and 4 are
    full-day only), and for u1 above the last column (6.0 dB): the plan must be revised."""
    if strategy not in _SAMPLED_STRATEGIES:
        raise ValueError(f"Table C.4 serves the job-based and full-day strategies "
                         f"(strategy 'job' or 'full-day'), not {strategy!r}; the task-based "
                         "strategy combines per-task terms (task_based)")
    ed, tab = load_edition(edition), table_c4(edition)
    if isinstance(n, bool) or int(n) != n:
        raise ValueError(f"the number of samples must be a whole number, got {n!r}")
    n = int(n)
    minimum = ed.min_samples_job if strategy == "job" else ed.min_days_full_day
    usable = ~tab.full_day_only if strategy == "job" else np.ones_like(tab.full_day_only)
    ns = tab.n_samples[usable]
    row = int(np.searchsorted(ns, n, side="right")) - 1
    if n < minimum or row < 0:
        what = ("samples (job-based)" if strategy == "job" else "full days (full-day)")
        raise ValueError(f"{n} {what} are too few: {ed.edition} needs at least {minimum}; "
                         "measure more before estimating the uncertainty")
    u1 = np.asarray(u1_db, dtype=float)
    if not np.all(np.isfinite(u1)) or np.any(u1 < 0):
        raise ValueError(f"u1 must be a standard deviation ≥ 0 dB, got {u1_db!r}")
    top = tab.u1_db[-1]
    if np.any(u1 > top):
        raise ValueError(f"u1 = {np.max(u1):.2f} dB is beyond Table C.4 (u1 ≤ {top:g} dB): the "
                         "levels spread too widely for this strategy; revise the measurement "
                         "plan (split the group into more homogeneous groups, or measure "
                         "task-based)")
    values = tab.c1u1_db[usable][row]
    out = np.interp(u1, np.concatenate(([0.0], tab.u1_db)), np.concatenate(([0.0], values)))
    return float(out) if out.ndim == 0 else out


def minimum_duration_h(n_workers: int, *, edition: str = DEFAULT_EDITION) -> float:
    """Minimum cumulative duration in hours of the job-based samples of a homogeneous noise
    exposure group of ``n_workers`` workers (Table 1): nG ≤ 5 → 5 h; 6–15 → 5 + 0.5 (nG − 5);
    16–40 → 10 + 0.25 (nG − 15); above 40 → 17 h (or split the group)."""
    if isinstance(n_workers, bool) or int(n_workers) != n_workers or n_workers < 1:
        raise ValueError(f"the group size must be a whole number ≥ 1, got {n_workers!r}")
    n = int(n_workers)
    for band in load_edition(edition).minimum_duration:
        if band.max_workers is None or n <= band.max_workers:
            return band.base_h + band.per_worker_h * (n - band.from_workers)
    raise AssertionError("the last band has no upper end (checked on loading)")


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskSamples:
    """One task m of the task-based strategy: the I sample levels ``levels_db`` (LAeq of each
    sample, dB(A); kept as a tuple), the task's duration ``hours`` (Tm, h, > 0) in the
    nominal day, its range ``hours_range`` (Tmin, Tmax) in h when the duration is uncertain
    (None: known), ``fixed`` when the one level is declared rather than measured (e.g. a
    break room of known, constant level: u1a = 0), and ``instrument`` when this task was
    measured with another instrument than the call's (u2,m; None: the call's)."""

    levels_db: Sequence[float]
    hours: float
    hours_range: tuple[float, float] | None = None
    fixed: bool = False
    instrument: str | None = None

    def __post_init__(self):
        levels = tuple(float(x) for x in np.asarray(self.levels_db, dtype=float).ravel())
        object.__setattr__(self, "levels_db", levels)
        if not levels or not all(math.isfinite(x) for x in levels):
            raise ValueError(f"a task needs finite sample levels in dB, got {self.levels_db!r}")
        if not (math.isfinite(self.hours) and self.hours > 0):
            raise ValueError(f"task duration must be > 0 h, got {self.hours!r}")
        if self.fixed and len(levels) != 1:
            raise ValueError(f"a fixed (declared) task has one level, got {len(levels)}; "
                             "give measured samples with fixed=False")
        if self.hours_range is not None:
            lo, hi = (float(x) for x in self.hours_range)
            if not (0 <= lo <= self.hours <= hi and math.isfinite(hi)):
                raise ValueError(f"duration range {self.hours_range!r} h must hold the task's "
                                 f"{self.hours:g} h: 0 ≤ Tmin ≤ Tm ≤ Tmax")
            object.__setattr__(self, "hours_range", (lo, hi))


@dataclasses.dataclass(frozen=True)
class TaskTerm:
    """One task's share of the task-based uncertainty: its level ``level_db`` (energy mean
    of the samples, dB(A)), ``hours`` Tm, ``n_samples`` I, ``u1a_db`` (dB), the sensitivity
    ``c1a`` (dimensionless), ``u1b_h`` (h), ``c1b_db_per_h`` (dB/h), ``u2_db`` (dB) and
    ``variance_db2`` = c1a²(u1a² + u2² + u3²) [+ (c1b u1b)² when durations count], dB²."""

    level_db: float
    hours: float
    n_samples: int
    fixed: bool
    u1a_db: float
    c1a: float
    u1b_h: float
    c1b_db_per_h: float
    u2_db: float
    variance_db2: float


@dataclasses.dataclass(frozen=True)
class Uncertainty:
    """LEX,8h in dB(A) with its combined standard uncertainty ``u_db`` and expanded
    uncertainty ``U_db`` = k·u (dB, one-sided 95 % for k = 1.65) by ``strategy`` ("task",
    "job" or "full-day"). Contributions: ``u1_db`` (sample standard deviation) and
    ``c1u1_db`` (Table C.4) for job-based and full-day, ``tasks`` for task-based; ``u2_db``
    the instrument's, ``u3_db`` the microphone position's. ``plan_ok`` is False when the
    standard asks for a revised plan (c1u1 > 3.5 dB; a task with fewer than 3 samples);
    ``note`` says how the figure was obtained (Chinese first, then English)."""

    lex_8h_db: float
    u_db: float
    U_db: float
    k: float
    strategy: str
    n_samples: int
    instrument: str
    u2_db: float
    u3_db: float
    plan_ok: bool
    edition: str
    note: str
    u1_db: float | None = None
    c1u1_db: float | None = None
    tasks: tuple[TaskTerm, ...] = ()


# --------------------------------------------------------------------------------------------
# The three strategies
# --------------------------------------------------------------------------------------------


def _energy_mean_db(levels: np.ndarray) -> float:
    """10 lg( (1/N) Σ 10^(0.1 L) ) in dB of 1-D ``levels`` (dB)."""
    top = float(np.max(levels))     # factored out: no overflow for any level
    return top + 10.0 * math.log10(float(np.mean(10.0 ** (0.1 * (levels - top)))))


def _u3(ed: Edition, u3_db: float | None) -> float:
    u3 = ed.u3_microphone_db if u3_db is None else float(u3_db)
    if not (math.isfinite(u3) and u3 >= 0):
        raise ValueError(f"u3 must be ≥ 0 dB, got {u3_db!r}")
    return u3


def task_based(tasks: Sequence[TaskSamples], *, instrument: str = "class1",
               u3_db: float | None = None, include_duration: bool = True,
               edition: str = DEFAULT_EDITION) -> Uncertainty:
    """LEX,8h and its uncertainty by the task-based strategy (clause 9, Annex C) from the
    ``tasks`` of a nominal day (:class:`TaskSamples`: levels in dB(A), durations in h).

    ``instrument`` ("class1", "class2", "personal", or another id of the edition) gives u2
    (a task may name its own); ``u3_db`` defaults to the edition's (1.0 dB);
    ``include_duration`` adds the duration terms Σ (c1b,m u1b,m)² of tasks with a range.

    A task of one sample has no spread to estimate u1a from: refused (ValueError: measure at
    least 3 samples) unless it is ``fixed`` (a declared level), where u1a = 0 and its u2, u3
    are kept (conservative) and the note says the level is declared, not measured. A task
    of 2 samples is computed, but ``plan_ok`` is False (the standard asks for 3)."""
    ed = load_edition(edition)
    tasks = tuple(tasks)
    if not tasks:
        raise ValueError("no tasks: give at least one TaskSamples")
    u2_default = ed.instrument(instrument).u2_db
    u3 = _u3(ed, u3_db)
    for m, t in enumerate(tasks, 1):
        if not isinstance(t, TaskSamples):
            raise ValueError(f"task {m} must be a TaskSamples, got {type(t).__name__}")
        if len(t.levels_db) == 1 and not t.fixed:
            raise ValueError(f"task {m} has one sample: its spread u1a cannot be estimated; "
                             f"measure at least {ed.min_samples_task} samples of the task, or "
                             "mark a declared (not measured) level fixed=True")

    levels = [np.asarray(t.levels_db) for t in tasks]
    level_m = np.array([_energy_mean_db(x) for x in levels])
    hours = np.array([t.hours for t in tasks])
    n_i = np.array([x.size for x in levels])
    u1a = np.array([0.0 if x.size == 1 else
                    math.sqrt(float(np.sum((x - x.mean()) ** 2)) / (x.size * (x.size - 1)))
                    for x in levels])
    u1b = np.array([0.0 if t.hours_range is None else 0.5 * (t.hours_range[1] - t.hours_range[0])
                    for t in tasks])
    u2 = np.array([u2_default if t.instrument is None else ed.instrument(t.instrument).u2_db
                   for t in tasks])

    top = float(np.max(level_m))
    lex = top + 10.0 * math.log10(float(np.sum(hours / T0_H * 10.0 ** (0.1 * (level_m - top)))))
    c1a = hours / T0_H * 10.0 ** (0.1 * (level_m - lex))
    c1b = DB_PER_LN * c1a / hours
    variance = c1a**2 * (u1a**2 + u2**2 + u3**2)
    if include_duration:
        variance = variance + (c1b * u1b) ** 2
    u = math.sqrt(float(np.sum(variance)))

    terms = tuple(TaskTerm(float(level_m[m]), float(hours[m]), int(n_i[m]), tasks[m].fixed,
                           float(u1a[m]), float(c1a[m]), float(u1b[m]), float(c1b[m]),
                           float(u2[m]), float(variance[m])) for m in range(len(tasks)))
    short = [m + 1 for m, t in enumerate(tasks) if not t.fixed and n_i[m] < ed.min_samples_task]
    declared = [m + 1 for m, t in enumerate(tasks) if t.fixed]
    note = [f"基于工作任务的测量（{' / '.join(ed.names)}）：{len(tasks)} 项任务；"
            f"U = {ed.coverage_factor_k:g}·u（单侧 95 %）"
            f"{'，含任务时间不确定度' if include_duration else '，不含任务时间不确定度'}。",
            f"Task-based ({ed.edition}): {len(tasks)} tasks; U = {ed.coverage_factor_k:g}·u "
            f"(one-sided 95 %), duration terms {'included' if include_duration else 'left out'}."]
    if declared:
        note.append(f"任务 {declared} 的声级为给定值而非测量值（u1a = 0）。 Task(s) {declared}: "
                    "the level is declared, not measured (u1a = 0).")
    if short:
        note.append(f"任务 {short} 样本少于 {ed.min_samples_task} 个，须补测。 Task(s) {short} "
                    f"have fewer than {ed.min_samples_task} samples: measure more.")
    return Uncertainty(lex_8h_db=lex, u_db=u, U_db=ed.coverage_factor_k * u,
                       k=ed.coverage_factor_k, strategy="task", n_samples=int(n_i.sum()),
                       instrument=instrument, u2_db=u2_default, u3_db=u3, plan_ok=not short,
                       edition=ed.edition, note=" ".join(note), tasks=terms)


def _sampled(levels_db, te_h: float | None, strategy: str, instrument: str,
             u3_db: float | None, edition: str) -> Uncertainty:
    """Job-based or full-day: the N levels, their energy mean (+ 10 lg(Te/T0) when ``te_h``
    is given), u1 and c1u1 from Table C.4."""
    ed = load_edition(edition)
    u2 = ed.instrument(instrument).u2_db
    u3 = _u3(ed, u3_db)
    levels = np.asarray(levels_db, dtype=float)
    if levels.ndim != 1 or not np.all(np.isfinite(levels)):
        raise ValueError(f"give the sample levels as a 1-D sequence of finite dB values, got "
                         f"shape {levels.shape}")
    if te_h is not None and not (math.isfinite(te_h) and 0 < te_h <= 24):
        raise ValueError(f"the effective working day Te must be in (0, 24] h, got {te_h!r}")
    n = levels.size
    minimum = ed.min_samples_job if strategy == "job" else ed.min_days_full_day
    if n < minimum:
        what = "samples" if strategy == "job" else "full days"
        raise ValueError(f"{n} {what} are too few for the {strategy} strategy of {ed.edition}: "
                         f"measure at least {minimum}")
    laeq = _energy_mean_db(levels)
    lex = laeq if te_h is None else laeq + 10.0 * math.log10(te_h / T0_H)
    u1 = float(np.std(levels, ddof=1))
    c = c1u1(n, u1, strategy=strategy, edition=edition)
    u = math.sqrt(c**2 + u2**2 + u3**2)
    plan_ok = c <= ed.plan_limit_c1u1_db
    k = ed.coverage_factor_k
    if strategy == "job":
        head = [f"基于工种的测量（{' / '.join(ed.names)}）：{n} 个样本，",
                f"Job-based ({ed.edition}): {n} samples, "]
    else:
        head = [f"全天测量（{' / '.join(ed.names)}）：{n} 天，",
                f"Full-day ({ed.edition}): {n} days, "]
    basis_zh = ("各值为 LAeq,Te，LEX,8h = 能量平均 + 10 lg(Te/8 h)" if te_h is not None
                else "各值为日 LEX,8h，取能量平均")
    basis_en = (f"levels are LAeq,Te with Te = {te_h:g} h, LEX,8h = energy mean + 10 lg(Te/8 h)"
                if te_h is not None else "levels are daily LEX,8h, energy-averaged")
    note = [f"{head[0]}u1 = {u1:.2f} dB，c1u1 = {c:.2f} dB"
            f"（表 C.4，u1 线性插值，N 取较小的表列值）；{basis_zh}；U = {k:g}·u（单侧 95 %）。",
            f"{head[1]}u1 = {u1:.2f} dB, c1u1 = {c:.2f} dB (Table C.4, linear in u1, next lower "
            f"tabulated N); {basis_en}; U = {k:g}·u (one-sided 95 %)."]
    if not plan_ok:
        note.append(f"c1u1 > {ed.plan_limit_c1u1_db:g} dB：须修改测量方案（增加样本或拆分人群）。 "
                    f"c1u1 > {ed.plan_limit_c1u1_db:g} dB: the measurement plan must be revised "
                    "(more samples, or split the group).")
    return Uncertainty(lex_8h_db=lex, u_db=u, U_db=k * u, k=k, strategy=strategy, n_samples=n,
                       instrument=instrument, u2_db=u2, u3_db=u3, plan_ok=plan_ok,
                       edition=ed.edition, note=" ".join(note), u1_db=u1, c1u1_db=c)


def job_based(levels_db, te_h: float, *, instrument: str = "class1",
              u3_db: float | None = None, edition: str = DEFAULT_EDITION) -> Uncertainty:
    """LEX,8h and its uncertainty by the job-based strategy (clause 10, Annex C) from N ≥ 5
    sample levels ``levels_db`` (LAeq of each sample, dB(A), shape (N,)) of a job whose
    effective working day is ``te_h`` hours: LAeq,Te = energy mean of the samples,
    LEX,8h = LAeq,Te + 10 lg(Te/8 h), u1 = their sample standard deviation (N − 1),
    u² = (c1u1)² + u2² + u3² (:func:`c1u1`). ``plan_ok`` is False when c1u1 > 3.5 dB.
    Whether the samples reach the minimum cumulative duration is for the plan to check
    (:func:`minimum_duration_h`)."""
    if te_h is None:
        raise ValueError("the job-based strategy needs the effective working day te_h in hours")
    return _sampled(levels_db, float(te_h), "job", instrument, u3_db, edition)


def full_day(levels_db, te_h: float | None = None, *, instrument: str = "class1",
             u3_db: float | None = None, edition: str = DEFAULT_EDITION) -> Uncertainty:
    """LEX,8h and its uncertainty by the full-day strategy (clause 11, Annex C) from N ≥ 3
    whole working days, ``levels_db`` shape (N,) in dB(A). Without ``te_h`` each value is a
    day's LEX,8h and LEX,8h is their energy mean; with ``te_h`` (hours, the same every day)
    each value is the day's LAeq,Te and LEX,8h = energy mean + 10 lg(Te/8 h) (so Annex F).
    u1 is the sample standard deviation (N − 1) of the values as given (either way the
    same); u² = (c1u1)² + u2² + u3². Name the instrument: a full day is usually measured with
    a personal sound exposure meter (``"personal"``, u2 = 1.5 dB), not the class 1 meter of
    the default (the same default as the other strategies)."""
    return _sampled(levels_db, None if te_h is None else float(te_h), "full-day", instrument,
                    u3_db, edition)
