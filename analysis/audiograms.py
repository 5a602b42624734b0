"""Pure-tone audiograms imported from the spreadsheets occupational health exams produce (issue
14 item 6): CSV (UTF-8, UTF-8 with BOM, GBK/GB18030) or XLSX, read by
:mod:`.spreadsheets`, checked row by row, the good rows written to
:data:`tingbao.collector.schema.AUDIOGRAMS`.

**Columns** (header names in English or Chinese, any case; :data:`ALIASES`): ``worker``
(pseudonym, 工号/劳动者), ``enterprise`` (企业), ``date`` (检查日期), ``age`` (年龄), ``sex``
(性别: M/F, 男/女), thresholds ``l_500`` … ``l_6000`` and ``r_500`` … ``r_6000`` (dB HL; also
``左耳500Hz``, ``Left 500`` …) — all required — and the optional ``job`` (工种, a job type id),
``noise_years`` (接噪工龄, years of noise work), ``baseline`` (基线: yes/no, 是/否, 1/0; empty =
no) and ``kind`` (检查类型: pre_placement 上岗前, periodic 在岗期间, post_employment 离岗时,
emergency 应急, other).

**Row checks** (every problem of a row is reported, naming the row and the column; the other
rows are kept): ids (:func:`tingbao.edge.contract.check_id`; an enterprise the registry does
not know); the date (``YYYY-MM-DD``, ``YYYY/MM/DD``, ``YYYY.MM.DD`` or ``YYYYMMDD``; not in the
future, not before 1950); the age (whole years, 16 (the minimum working age in China) to 100:
a younger worker or an absurd age is a typing error to check); the sex; each threshold a
number within −10…120 dB HL (an audiometer's range; "NR"/no response must be entered as
the limit the audiometer reached); noise years 0 ≤ y ≤ age − 14. **Duplicates**: one worker of
one enterprise has one audiogram per date (the store keeps one point per worker and day): a
later row with the same (enterprise, worker, date) is reported as a duplicate of the first
and not stored.

An audiogram is stored at its exam date's 00:00 in the deployment's time zone (the schema's
"local date" convention); importing the same file again rewrites the same points.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.lineprotocol import line
from tingbao.edge import contract

from .gbz49 import FREQUENCIES_HZ
from .shifts import local_date, local_midnight_ns
from .spreadsheets import (
    Duplicate,
    Row,
    RowError,
    RowProblems,
    Table,
    collect_rows,
    read_table,
    rejected_rows,
    split_duplicates,
)
from .storage import write_batches

__all__ = ["ALIASES", "Audiogram", "AudiogramImport", "KINDS", "MAX_AGE", "MIN_AGE",
           "THRESHOLD_RANGE_DB", "THRESHOLD_COLUMNS", "lines", "parse_audiograms",
           "read_audiograms", "write_audiograms"]

MIN_AGE = 16
"""Youngest plausible worker (China's minimum working age), years."""
MAX_AGE = 100
"""Oldest plausible age; above it the row has a typing error."""
THRESHOLD_RANGE_DB = (-10.0, 120.0)
"""Hearing threshold levels an audiometer reports, dB HL (inclusive)."""
EARLIEST_DATE = dt.date(1950, 1, 1)
THRESHOLD_COLUMNS = tuple(f"{ear}_{f}" for ear in "lr" for f in FREQUENCIES_HZ)
REQUIRED = ("worker", "enterprise", "date", "age", "sex", *THRESHOLD_COLUMNS)
KINDS = {"pre_placement": "pre_placement", "上岗前": "pre_placement",
         "periodic": "periodic", "在岗期间": "periodic", "在岗": "periodic",
         "post_employment": "post_employment", "离岗时": "post_employment",
         "离岗": "post_employment",
         "emergency": "emergency", "应急": "emergency", "other": "other", "其他": "other"}
_SEX = {"m": "M", "male": "M", "男": "M", "f": "F", "female": "F", "女": "F"}
_YES = {"yes", "y", "true", "1", "是", "基线"}
_NO = {"", "no", "n", "false", "0", "否"}


def _threshold_aliases() -> dict[str, str]:
    out = {}
    for ear, zh, en in (("l", "左", "left"), ("r", "右", "right")):
        for f in FREQUENCIES_HZ:
            col = f"{ear}_{f}"
            k = f // 1000 if f % 1000 == 0 else f / 1000
            for name in (f"{zh}耳{f}Hz", f"{zh}耳{f}", f"{zh}{f}", f"{zh}{f}Hz", f"{en} {f}",
                         f"{en}_{f}hz", f"{en} {f} Hz", f"{ear}{f}", f"{ear} {k}k",
                         f"{zh}耳{k}k"):
                out[name] = col
    return out


ALIASES = {
    "worker": "worker", "pseudonym": "worker", "worker_pseudonym": "worker", "工号": "worker",
    "劳动者": "worker", "劳动者编号": "worker", "假名": "worker", "编号": "worker",
    "enterprise": "enterprise", "企业": "enterprise", "单位": "enterprise",
    "用人单位": "enterprise", "date": "date", "日期": "date", "检查日期": "date",
    "exam_date": "date", "age": "age", "年龄": "age", "sex": "sex", "gender": "sex",
    "性别": "sex", "job": "job", "工种": "job", "noise_years": "noise_years",
    "接噪工龄": "noise_years", "噪声工龄": "noise_years", "接害工龄": "noise_years",
    "baseline": "baseline", "基线": "baseline", "kind": "kind", "检查类型": "kind",
    "类型": "kind", **_threshold_aliases()}
"""Header names (normalised by :func:`tingbao.analysis.spreadsheets.normalise_header`) →
columns."""


@dataclasses.dataclass(frozen=True)
class Audiogram:
    """One checked audiogram. Thresholds in dB HL at :data:`.gbz49.FREQUENCIES_HZ` (0.5–6 kHz),
    ``left`` and ``right``; ``noise_years`` None when not given; ``row`` its spreadsheet row
    and ``source`` its file name (0 and "" when built in code)."""

    enterprise: str
    worker: str
    date: dt.date
    age: int
    sex: str
    left: tuple[float, ...]
    right: tuple[float, ...]
    job: str | None = None
    noise_years: float | None = None
    baseline: bool = False
    kind: str | None = None
    source: str = ""
    row: int = 0

    def time_ns(self, timezone: str) -> int:
        """UTC ns of the exam date's 00:00 in ``timezone``."""
        return local_midnight_ns(self.date, timezone)

    def fields(self) -> dict:
        """The fields of its :data:`~tingbao.collector.schema.AUDIOGRAMS` point."""
        out: dict[str, object] = {"age": int(self.age), "sex": self.sex, "job": self.job,
                                  "noise_years": None if self.noise_years is None
                                  else float(self.noise_years),
                                  "baseline": bool(self.baseline), "kind": self.kind}
        for ear, values in (("l", self.left), ("r", self.right)):
            out.update({f"{ear}_{f}": float(v) for f, v in zip(FREQUENCIES_HZ, values,
                                                               strict=True)})
        out["source"] = self.source or None
        out["row"] = int(self.row) if self.row else None
        return out


@dataclasses.dataclass(frozen=True)
class AudiogramImport:
    """What a file gave: the ``good`` audiograms (duplicates removed), ``errors`` of the
    rejected rows (each naming row, column and reason), the ``duplicates`` (later rows of a
    worker, enterprise and date already seen), and the ``table`` (encoding, notes)."""

    good: tuple[Audiogram, ...]
    errors: tuple[RowError, ...]
    duplicates: tuple[Duplicate, ...]
    table: Table

    @property
    def rejected_rows(self) -> tuple[int, ...]:
        return rejected_rows(self.errors)


# ----------------------------------------------------------------------------- parsing
def _date(text: str) -> dt.date:
    t = text.strip()
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(t, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)" if t else "missing")


def _number(text: str) -> float:
    if not text.strip():
        raise ValueError("missing")
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{text!r} is not a number")
    return v


def _id(what: str):
    def check(text: str) -> str:
        if not text:
            raise ValueError("missing")
        return contract.check_id(text, what)
    return check


def parse_row(row: Row, *, enterprises: Sequence[str] | None = None,
              today: dt.date | None = None, source: str = "") -> Audiogram:
    """One spreadsheet row as an :class:`Audiogram`; raises
    :class:`~tingbao.analysis.spreadsheets.RowInvalid` with every problem of the row."""
    p = RowProblems(row.number)
    worker = p.take("worker", _id("worker"), row["worker"])
    ent = p.take("enterprise", _id("enterprise"), row["enterprise"])
    if ent is not None and enterprises is not None and ent not in enterprises:
        p.add("enterprise", f"unknown enterprise {ent!r} (not in the registry: "
                            f"{', '.join(enterprises)})")
    date = p.take("date", _date, row["date"])
    today = today or dt.date.today()
    if date is not None and date > today:
        p.add("date", f"{date} is in the future")
    elif date is not None and date < EARLIEST_DATE:
        p.add("date", f"{date} is before {EARLIEST_DATE}")
    age_v = p.take("age", _number, row["age"])
    age = None
    if age_v is not None:
        if age_v != int(age_v):
            p.add("age", f"{row['age']} is not whole years")
        elif age_v < MIN_AGE:
            p.add("age", f"age {int(age_v)} is under {MIN_AGE} (the minimum working age); "
                         "check the row")
        elif age_v > MAX_AGE:
            p.add("age", f"age {int(age_v)} is not plausible (over {MAX_AGE})")
        else:
            age = int(age_v)
    sex = _SEX.get(row["sex"].strip().casefold())
    if sex is None:
        p.add("sex", f"{row['sex']!r} is not a sex (M/F, 男/女)" if row["sex"] else "missing")
    lo, hi = THRESHOLD_RANGE_DB
    values = {}
    for col in THRESHOLD_COLUMNS:
        v = p.take(col, _number, row[col])
        if v is not None and not lo <= v <= hi:
            p.add(col, f"{v:g} dB HL is outside {lo:g}…{hi:g} dB HL")
        values[col] = v
    job = row.get("job").strip() or None
    if job is not None:
        job = p.take("job", _id("job"), job)
    ny = None
    if row.get("noise_years").strip():
        ny = p.take("noise_years", _number, row.get("noise_years"))
        if ny is not None and ny < 0:
            p.add("noise_years", f"{ny:g} years is negative")
        elif ny is not None and age is not None and ny > age - 14:
            p.add("noise_years", f"{ny:g} years of noise work at age {age} is not possible")
    base_text = row.get("baseline").strip().casefold()
    baseline = base_text in _YES
    if not baseline and base_text not in _NO:
        p.add("baseline", f"{row.get('baseline')!r} is not yes/no (是/否)")
    kind_text = row.get("kind").strip()
    kind = KINDS.get(kind_text.casefold(), KINDS.get(kind_text)) if kind_text else None
    if kind_text and kind is None:
        p.add("kind", f"{kind_text!r}: one of pre_placement, periodic, post_employment, "
                      "emergency, other (上岗前/在岗期间/离岗时/应急)")
    p.check()
    return Audiogram(ent, worker, date, age, sex,
                     tuple(values[f"l_{f}"] for f in FREQUENCIES_HZ),
                     tuple(values[f"r_{f}"] for f in FREQUENCIES_HZ), job, ny, baseline, kind,
                     source, row.number)


def parse_audiograms(path: str | os.PathLike, *, enterprises: Sequence[str] | None = None,
                     today: dt.date | None = None, sheet: str | None = None
                     ) -> AudiogramImport:
    """Read and check an audiogram file (module docstring). A file-level problem (unreadable,
    a required column missing) raises :class:`~tingbao.analysis.spreadsheets.TableError`
    naming the missing columns; row problems are in the result."""
    table = read_table(path, aliases=ALIASES, required=REQUIRED, sheet=sheet)
    name = Path(path).name
    checked = collect_rows(table.rows, lambda r: parse_row(r, enterprises=enterprises,
                                                           today=today, source=name),
                           table.errors)
    kept, dups = split_duplicates(checked.good, lambda a: (a.enterprise, a.worker,
                                                           a.date.isoformat()))
    return AudiogramImport(tuple(a for _, a in kept), checked.errors, tuple(dups), table)


# ------------------------------------------------------------------------------ storage
def lines(audiograms: Iterable[Audiogram], timezone: str) -> list[str]:
    """Line protocol of :data:`~tingbao.collector.schema.AUDIOGRAMS` points."""
    return [line(schema.AUDIOGRAMS, {"enterprise": a.enterprise, "worker": a.worker},
                 a.fields(), a.time_ns(timezone)) for a in audiograms]


def write_audiograms(writer: InfluxClient, audiograms: Sequence[Audiogram], timezone: str,
                     *, batch: int = 5000, progress: Callable[[int], None] | None = None
                     ) -> int:
    """Store the audiograms (retention policy ``forever``) ``batch`` per request
    (:func:`.storage.write_batches`; ``progress`` gets each batch's size); returns how
    many."""
    return write_batches(writer, lines(audiograms, timezone), schema.RP_FOREVER, batch,
                         progress)


def read_audiograms(reader: InfluxClient, timezone: str, *, enterprise: str | None = None,
                    worker: str | None = None) -> list[Audiogram]:
    """The stored audiograms (of ``enterprise`` / ``worker`` when given), by worker then date."""
    out = []
    for r in reader.query_rows(schema.audiograms_query(enterprise=enterprise, worker=worker)):
        day = local_date(int(r["time"]), timezone)
        out.append(Audiogram(
            r["enterprise"], r["worker"], day, int(r["age"]), r["sex"],
            tuple(float(r[f"l_{f}"]) for f in FREQUENCIES_HZ),
            tuple(float(r[f"r_{f}"]) for f in FREQUENCIES_HZ), r.get("job") or None,
            None if r.get("noise_years") is None else float(r["noise_years"]),
            bool(r.get("baseline")), r.get("kind") or None, r.get("source") or "",
            int(r.get("row") or 0)))
    out.sort(key=lambda a: (a.enterprise, a.worker, a.date))
    return out
