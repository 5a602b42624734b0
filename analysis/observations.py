"""Spot-check surveys of hearing-protector wearing (issue 14 item 4): a surveyor saw a worker
at a post and wrote down whether a protector was worn and whether correctly. The rows come
from CSV or XLSX files (:mod:`.spreadsheets`), are checked one by one against the site
registry, and the good ones are stored as ``schema.OBSERVATIONS`` points (one per worker, post
and local date, at that date's 00:00 in the deployment's time zone); :mod:`.wearing_rate`
computes the correct-wearing rate from them.

Columns (header names in English or Chinese, any case; :data:`ALIASES`): ``date``,
``enterprise``, ``workshop``, ``post``, ``worker`` (the pseudonym), ``wearing``, ``correct``
(worn correctly), ``protector`` (optional). Checks per row, each error naming row and column:

* ``date``: ``YYYY-MM-DD``, ``YYYY/MM/DD``, ``YYYY.MM.DD`` or ``YYYY年M月D日`` (XLSX dates are
  read as dates); not after today (local) and not before :data:`EARLIEST`;
* ``enterprise``: a registry enterprise, by id or by its Chinese or English name;
* ``workshop``: a registry site of that enterprise (id or name), or else a safe id (a workshop
  without a meter need not be in the registry);
* ``post`` and ``worker``: safe ids (``contract.check_id``: 1–64 of A–Z a–z 0–9 _ . -), so a
  worker's real name (Chinese characters) is refused: surveys carry pseudonyms only;
* ``wearing``, ``correct``: 是/否, Y/N, yes/no, 1/0, true/false, √/× (:func:`parse_yes_no`);
  ``correct`` = yes while ``wearing`` = no is refused; ``correct`` may be blank only when not
  wearing (then false);
* ``protector``: free text up to 64 characters.

Duplicates: rows with the same (enterprise, workshop, post, worker, date) are one point; the
first is kept and every later one reported (with "differs" when its answers differ).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import time
import zoneinfo
from collections.abc import Callable, Iterable
from pathlib import Path

from tingbao.collector.schema import observations_query
from tingbao.edge import contract

from .shifts import local_date, local_midnight_ns
from .spreadsheets import (
    Duplicate,
    Row,
    RowError,
    RowProblems,
    collect_rows,
    read_table,
    rejected_rows,
    split_duplicates,
)
from .storage import write_batches

__all__ = ["ALIASES", "COLUMNS", "EARLIEST", "Observation", "ObservationImport",
           "load_observations", "observation_lines", "parse_date",
           "parse_yes_no", "read_observations", "write_observations"]

COLUMNS = ("date", "enterprise", "workshop", "post", "worker", "wearing", "correct")
"""Required columns (``protector`` is optional)."""
ALIASES = {
    "日期": "date", "检查日期": "date", "抽查日期": "date", "观察日期": "date",
    "企业": "enterprise", "用人单位": "enterprise", "单位": "enterprise", "企业名称": "enterprise",
    "enterprise_id": "enterprise",
    "车间": "workshop", "工作场所": "workshop",
    "岗位": "post", "工位": "post", "岗位/工种": "post",
    "工人": "worker", "工人编号": "worker", "劳动者": "worker", "劳动者编号": "worker",
    "化名": "worker", "worker_pseudonym": "worker", "pseudonym": "worker",
    "是否佩戴": "wearing", "佩戴": "wearing", "wearing_yes_no": "wearing", "worn": "wearing",
    "是否正确佩戴": "correct", "正确佩戴": "correct", "worn_correctly": "correct",
    "correctly": "correct",
    "护耳器": "protector", "护听器": "protector", "防护用品": "protector", "耳塞耳罩": "protector",
}
EARLIEST = dt.date(2000, 1, 1)
_YES = {"是", "y", "yes", "1", "true", "t", "√", "✓", "对"}
_NO = {"否", "n", "no", "0", "false", "f", "×", "✗", "x", "错"}
_CN_DATE = re.compile(r"\A(\d{4})年(\d{1,2})月(\d{1,2})日?\Z")
_SEP_DATE = re.compile(r"\A(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]00:00(?::00)?)?\Z")


def parse_yes_no(text: str) -> bool:
    """是/否, Y/N, yes/no, 1/0, true/false, √/× (any case) as a bool; ValueError else."""
    t = text.strip().casefold()
    if t in _YES:
        return True
    if t in _NO:
        return False
    if not t:
        raise ValueError("empty; write 是 or 否 (yes/no)")
    raise ValueError(f"{text!r} is not yes/no; write 是/否, Y/N, 1/0 or true/false")


def parse_date(text: str) -> dt.date:
    """A local date: ``2025-03-04``, ``2025/3/4``, ``2025.03.04``, ``2025年3月4日``."""
    t = text.strip()
    m = _SEP_DATE.match(t) or _CN_DATE.match(t)
    if not m:
        raise ValueError(f"{text!r} is not a date; write YYYY-MM-DD" if t
                         else "empty; write the date YYYY-MM-DD")
    try:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as e:
        raise ValueError(f"{text!r} is not a date ({e})") from None


@dataclasses.dataclass(frozen=True)
class Observation:
    """One checked survey row. ``correct`` is False when not ``wearing``."""

    date: dt.date
    enterprise: str
    workshop: str
    post: str
    worker: str
    wearing: bool
    correct: bool
    protector: str
    row: int

    @property
    def key(self) -> tuple:
        """What makes one point: (enterprise, workshop, post, worker, date)."""
        return (self.enterprise, self.workshop, self.post, self.worker, self.date.isoformat())


@dataclasses.dataclass(frozen=True)
class ObservationImport:
    """The outcome of reading one file: the good ``observations`` (duplicates removed), every
    ``errors`` of rejected rows, the ``duplicates``, the file's ``encoding``/``sheet`` and
    ``notes`` (e.g. mixed encodings)."""

    path: str
    encoding: str
    sheet: str | None
    observations: tuple[Observation, ...]
    errors: tuple[RowError, ...]
    duplicates: tuple[Duplicate, ...]
    notes: tuple[str, ...]
    rows: int

    @property
    def rejected(self) -> tuple[int, ...]:
        return rejected_rows(self.errors)


def _safe_id(what: str, hint: str = "") -> Callable[[str], str]:
    def check(text: str) -> str:
        if not text:
            raise ValueError(f"empty; write the {what}")
        try:
            return contract.check_id(text, what)
        except ValueError as e:
            raise ValueError(f"{e}{hint}") from None
    return check


_check_post = _safe_id("post")
_check_worker = _safe_id("worker pseudonym", "; surveys carry pseudonyms, never names")


def _lookup_tables(reg):
    ents: dict[str, str] = {}
    for e in reg.enterprises:
        for name in (e.id, e.name_zh, e.name_en):
            if name:
                ents[name.strip().casefold()] = e.id
    sites: dict[tuple[str, str], str] = {}
    for s in reg.sites:
        for name in (s.id, s.name_zh, s.name_en):
            if name:
                sites[(s.enterprise, name.strip().casefold())] = s.id
    return ents, sites


def read_observations(path: str | os.PathLike, reg, *, sheet: str | None = None,
                      today: dt.date | None = None) -> ObservationImport:
    """Read and check a survey file against the registry ``reg``; ``today`` (local date of
    the deployment's time zone by default) bounds the dates. Raises spreadsheets.TableError
    when the file as a whole cannot be read (e.g. a required column missing)."""
    tz = zoneinfo.ZoneInfo(reg.deployment.timezone)
    today = today or dt.datetime.now(tz).date()
    table = read_table(path, aliases=ALIASES, required=COLUMNS, sheet=sheet)
    ents, sites = _lookup_tables(reg)
    ent_ids = ", ".join(e.id for e in reg.enterprises)

    def parse(row: Row) -> Observation:
        p = RowProblems(row.number)
        date = p.take("date", parse_date, row["date"])
        if date is not None and date > today:
            p.add("date", f"{date} is in the future (today is {today})")
        elif date is not None and date < EARLIEST:
            p.add("date", f"{date} is before {EARLIEST}: not a survey date")
        ent = ents.get(row["enterprise"].strip().casefold())
        if ent is None:
            p.add("enterprise", (f"unknown enterprise {row['enterprise']!r}; one of {ent_ids}"
                                 if row["enterprise"] else "empty; write the enterprise"))
        workshop = None
        if ent is not None:
            workshop = sites.get((ent, row["workshop"].strip().casefold()))
        if workshop is None:
            workshop = p.take("workshop", _safe_id(
                "workshop", "; use the registry site id or name, or an id"), row["workshop"])
        post = p.take("post", _check_post, row["post"])
        worker = p.take("worker", _check_worker, row["worker"])
        wearing = p.take("wearing", parse_yes_no, row["wearing"])
        correct = None
        if row["correct"].strip():
            correct = p.take("correct", parse_yes_no, row["correct"])
        elif wearing:
            p.add("correct", "empty while wearing; write whether it was worn correctly "
                             "(是/否)")
        else:
            correct = False
        if wearing is False and correct:
            p.add("correct", "worn correctly = yes while wearing = no")
        protector = row.get("protector")
        if len(protector) > 64:
            p.add("protector", f"{len(protector)} characters; at most 64")
        p.check()
        return Observation(date, ent, workshop, post, worker, wearing, bool(correct),
                           protector, row.number)

    checked = collect_rows(table.rows, parse, table.errors)
    kept, dups = split_duplicates(checked.good, key=lambda o: o.key)
    first = {n: o for n, o in kept}
    by_key = {o.key: o for o in first.values()}
    by_row = dict(checked.good)
    dups = [dataclasses.replace(d, key=d.key + ("differs",))
            if _answers(by_key[d.key]) != _answers(by_row[d.row]) else d for d in dups]
    return ObservationImport(table.path, table.encoding, table.sheet,
                             tuple(o for _, o in kept), checked.errors, tuple(dups),
                             table.notes, len(table.rows) + len(table.errors))


def _answers(o: Observation) -> tuple:
    return (o.wearing, o.correct, o.protector)


# ------------------------------------------------------------------------------- storage
def observation_lines(obs: Iterable[Observation], source: str, tz: str, imported_ns: int
                      ) -> list[str]:
    """Line protocol of ``schema.OBSERVATIONS``: tags enterprise, workshop, post, worker;
    fields wearing, correct, protector (absent when blank), source, row, imported_ns; time
    the local date's 00:00 (UTC ns)."""
    from tingbao.collector import schema
    from tingbao.collector.lineprotocol import line

    out = []
    for o in obs:
        tags = dict(zip(schema.OBSERVATION_TAGS, (o.enterprise, o.workshop, o.post, o.worker),
                        strict=True))
        out.append(line(schema.OBSERVATIONS, tags,
                        {"wearing": o.wearing, "correct": o.correct,
                         "protector": o.protector or None, "source": source, "row": o.row,
                         "imported_ns": imported_ns},
                        local_midnight_ns(o.date, tz)))
    return out


def write_observations(writer, imp: ObservationImport, tz: str, *,
                       imported_ns: int | None = None, batch: int = 5000,
                       progress: Callable[[int], None] | None = None) -> int:
    """Write the good observations of ``imp`` into ``RP_FOREVER`` in batches; ``progress``
    is called with each batch's size. Returns the number written."""
    from tingbao.collector import schema

    imported_ns = time.time_ns() if imported_ns is None else imported_ns
    lines = observation_lines(imp.observations, Path(imp.path).name, tz, imported_ns)
    return write_batches(writer, lines, schema.RP_FOREVER, batch, progress)


def load_observations(reader, start_ns: int, end_ns: int, tz: str,
                      enterprises: Iterable[str] | None = None
                      ) -> list[tuple[dt.date, str, str, bool]]:
    """The stored observations as (local date, enterprise, worker, worn correctly)."""
    out = []
    for r in reader.query_rows(observations_query(start_ns, end_ns, enterprises)):
        date = local_date(int(r["time"]), tz)
        out.append((date, r["enterprise"], r["worker"], bool(r["correct"])))
    return out
