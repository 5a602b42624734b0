"""The exposure ledger: a closed shift's results written back to InfluxDB, each enterprise's
days linked by a hash chain so that a report can prove the exposure it prints was not edited
afterwards (``tingbao verify``).

Layout (:mod:`tingbao.collector.schema`, retention policy ``forever``):

* ``exposure`` points (tags ``enterprise``, ``kind``, ``meter``/``channel`` or ``job``,
  ``profile``), all at the shift's start time — one day's *records*;
* one ``exposure_chain`` point per (enterprise, shift date), at the same time, with fields
  ``date``, ``n`` (records), ``records_sha256``, ``prev`` and ``hash``.

**The hash.** Each record is put in a canonical form: JSON of ``{"measurement", "tags",
"fields", "time"}`` with sorted keys, no blanks, every number as ``repr(float(x))`` (InfluxDB
answers ``85`` for a float field written as ``85.0``, and every float round-trips exactly
through its JSON), booleans and strings as they are, empty tags dropped. The day's
``records_sha256`` is the SHA-256 of its records' canonical lines, sorted, joined by ``\\n``.
The chain point's ``hash`` = SHA-256 of ``"tingbao-exposure-v1\\n{enterprise}\\n{date}\\n
{records_sha256}\\n{prev}"``, where ``prev`` is the hash of the enterprise's previous chain
point (the latest before it; days without a shift are not in the chain) and 64 zeros for the
first. Editing, adding or deleting any record of any day, or any chain point, breaks the
chain from that day on; :func:`verify` finds the first break.

What the chain does not stop: someone with write access who recomputes the whole chain after
an edit. The report prints the head hash, so a head kept outside (a printed or mailed report)
anchors everything before it.

A day is closed once: closing it again with the same records is a no-op; with different
records it raises :class:`AlreadyClosed` unless ``redo`` (a back-fill with late data), which
rewrites that day. Whenever a day is written before days already chained (a redo, or a gap
back-filled late), every later day is re-linked, and the outcome says which.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence

from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.lineprotocol import line

__all__ = ["AlreadyClosed", "ChainBreak", "GENESIS", "Record", "chain", "close_day", "head",
           "is_closed", "read_records", "records_sha256", "verify"]

GENESIS = "0" * 64
VERSION = "tingbao-exposure-v1"


class AlreadyClosed(RuntimeError):
    """The day is in the chain with other records; close it with ``redo`` to rewrite."""


@dataclasses.dataclass(frozen=True)
class Record:
    """One ``exposure`` point: its tags (non-empty strings), fields and time (UTC ns)."""

    tags: Mapping[str, str]
    fields: Mapping[str, object]
    time_ns: int

    def canonical(self) -> str:
        fields = {}
        for k, v in self.fields.items():
            if v is None:
                continue
            if isinstance(v, bool) or isinstance(v, str):
                fields[k] = v
            else:
                fields[k] = repr(float(v))
        tags = {k: v for k, v in self.tags.items() if v}
        return json.dumps({"measurement": schema.EXPOSURE, "tags": tags, "fields": fields,
                           "time": int(self.time_ns)}, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":"))


def records_sha256(records: Sequence[Record]) -> str:
    """SHA-256 (hex) of the records' canonical lines, sorted and joined by newlines."""
    text = "\n".join(sorted(r.canonical() for r in records))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chain_hash(enterprise: str, date: str, records_hash: str, prev: str) -> str:
    text = f"{VERSION}\n{enterprise}\n{date}\n{records_hash}\n{prev}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _chain_where(enterprise: str) -> str:
    return schema.where_tags([("enterprise", enterprise)])


def _chain_points(client: InfluxClient, enterprise: str, *, after_ns: int | None = None,
                  before_ns: int | None = None, at_ns: int | None = None,
                  newest_first: bool = False, limit: int | None = None) -> list[dict]:
    """Chain points of ``enterprise`` (fields ``date``, ``n``, ``records_sha256``, ``prev``,
    ``hash`` and ``time``) after, before or at a time, oldest first unless asked."""
    cond = [_chain_where(enterprise)]
    for op, t in ((">", after_ns), ("<", before_ns), ("=", at_ns)):
        if t is not None:
            cond.append(f"time {op} {int(t)}")
    q = (f"SELECT \"date\", \"n\", \"records_sha256\", \"prev\", \"hash\" FROM "
         f"{schema.source(schema.EXPOSURE_CHAIN, schema.RP_FOREVER)} WHERE "
         f"{' AND '.join(cond)} ORDER BY time {'DESC' if newest_first else 'ASC'}"
         + (f" LIMIT {int(limit)}" if limit else ""))
    return client.query_rows(q)


def _chain_at(client: InfluxClient, enterprise: str, time_ns: int) -> dict | None:
    rows = _chain_points(client, enterprise, at_ns=time_ns)
    return rows[0] if rows else None


def _previous(client: InfluxClient, enterprise: str, time_ns: int) -> dict | None:
    rows = _chain_points(client, enterprise, before_ns=time_ns, newest_first=True, limit=1)
    return rows[0] if rows else None


def read_records(client: InfluxClient, enterprise: str, time_ns: int) -> list[Record]:
    """The ``exposure`` points of ``enterprise`` at ``time_ns`` (one day's records), as
    stored."""
    q = (f"SELECT * FROM {schema.source(schema.EXPOSURE, schema.RP_FOREVER)} WHERE "
         f"{_chain_where(enterprise)} AND time = {int(time_ns)} GROUP BY *")
    out = []
    for s in client.query(q):
        tags = {k: v for k, v in s.tags.items() if v}
        for row in s.rows:
            fields = {k: v for k, v in row.items() if k != "time" and v is not None}
            out.append(Record(tags, fields, int(row["time"])))
    return out


def _lines(records: Sequence[Record]) -> list[str]:
    return [line(schema.EXPOSURE, {k: v for k, v in r.tags.items() if v}, r.fields,
                 r.time_ns) for r in records]


def _chain_line(enterprise: str, date: str, time_ns: int, n: int, rh: str, prev: str,
                h: str) -> str:
    return line(schema.EXPOSURE_CHAIN, {"enterprise": enterprise},
                {"date": date, "n": n, "records_sha256": rh, "prev": prev, "hash": h},
                time_ns)


@dataclasses.dataclass(frozen=True)
class Closed:
    """What :func:`close_day` did: ``written`` (False: already closed with these records),
    the day's chain ``hash``, and the later days it re-linked (``redo``)."""

    enterprise: str
    date: str
    hash: str
    written: bool
    relinked: tuple[str, ...] = ()


def close_day(reader: InfluxClient, writer: InfluxClient, enterprise: str, date: str,
              time_ns: int, records: Sequence[Record], *, redo: bool = False) -> Closed:
    """Write one day's ``records`` (all at ``time_ns``) and its chain point (``reader``
    reads the chain, ``writer`` writes; one account may be both)."""
    client = reader
    for r in records:
        if r.time_ns != time_ns or r.tags.get("enterprise") != enterprise:
            raise ValueError("every record of a day has the day's time and enterprise")
    rh = records_sha256(records)
    existing = _chain_at(client, enterprise, time_ns)
    if existing is not None:
        stored = read_records(client, enterprise, time_ns)
        if existing.get("records_sha256") == rh and records_sha256(stored) == rh:
            return Closed(enterprise, date, existing["hash"], False)
        if not redo:
            raise AlreadyClosed(
                f"{enterprise} {date} is already closed (chain {existing['hash'][:12]}…) "
                "with other records; back-fill with --redo to rewrite it and re-link the "
                "days after it")
        writer.query(f"DELETE FROM {schema.quote_ident(schema.EXPOSURE)} WHERE "
                     f"{_chain_where(enterprise)} AND time = {int(time_ns)}")
    prev_row = _previous(client, enterprise, time_ns)
    prev = prev_row["hash"] if prev_row else GENESIS
    h = chain_hash(enterprise, date, rh, prev)
    writer.write(_lines(records) + [_chain_line(enterprise, date, time_ns, len(records), rh,
                                                prev, h)], rp=schema.RP_FOREVER)
    relinked = []
    # days after this one (a redo, or a day closed late: a back-fill of a gap) link to it
    for later in _chain_points(client, enterprise, after_ns=time_ns):
        nh = chain_hash(enterprise, later["date"], later["records_sha256"], h)
        writer.write([_chain_line(enterprise, later["date"], int(later["time"]),
                                  int(later["n"]), later["records_sha256"], h, nh)],
                     rp=schema.RP_FOREVER)
        relinked.append(later["date"])
        h = nh
    return Closed(enterprise, date, chain_hash(enterprise, date, rh, prev), True,
                  tuple(relinked))


@dataclasses.dataclass(frozen=True)
class ChainBreak:
    """Where the chain breaks: the day, and why (records edited, link broken, …)."""

    date: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Verified:
    """The outcome of :func:`verify`: days checked, the head (last hash), the breaks."""

    enterprise: str
    days: int
    head: str | None
    head_date: str | None
    breaks: tuple[ChainBreak, ...]

    @property
    def ok(self) -> bool:
        return not self.breaks


def verify(client: InfluxClient, enterprise: str) -> Verified:
    """Recompute every day's records hash and chain link of ``enterprise`` from the store."""
    prev = GENESIS
    breaks = []
    points = _chain_points(client, enterprise)
    for p in points:
        date = p.get("date")
        stored = read_records(client, enterprise, int(p["time"]))
        rh = records_sha256(stored)
        chained_n = p.get("n")
        if rh != p.get("records_sha256") or chained_n is None or len(stored) != int(chained_n):
            breaks.append(ChainBreak(date, f"records differ from those chained ({len(stored)} "
                                           f"stored, {p.get('n')} chained): edited after "
                                           "closing"))
        if p.get("prev") != prev:
            breaks.append(ChainBreak(date, "link to the previous day is broken (a day was "
                                           "removed, inserted or re-chained)"))
        if chain_hash(enterprise, date, p.get("records_sha256") or "", p.get("prev") or "") \
                != p.get("hash"):
            breaks.append(ChainBreak(date, "the chain point's own hash is wrong"))
        prev = p.get("hash") or ""
    # records of days that have no chain point at all (written around the ledger)
    chained = {int(p["time"]) for p in points}
    orphans = client.query_rows(
        f"SELECT \"date\" FROM {schema.source(schema.EXPOSURE, schema.RP_FOREVER)} WHERE "
        f"{_chain_where(enterprise)}")
    seen = set()
    for r in orphans:
        t = int(r["time"])
        if t not in chained and t not in seen:
            seen.add(t)
            breaks.append(ChainBreak(str(r.get("date")), "records without a chain point"))
    last = points[-1] if points else None
    return Verified(enterprise, len(points), last.get("hash") if last else None,
                    last.get("date") if last else None, tuple(breaks))


def chain(reader: InfluxClient, enterprise: str) -> list[dict]:
    """Every chain point of ``enterprise``, oldest first: ``date``, ``time`` (the shift's
    start, ns, where that day's records are), ``n``, ``records_sha256``, ``prev``, ``hash``."""
    return _chain_points(reader, enterprise)


def is_closed(reader: InfluxClient, enterprise: str, time_ns: int) -> bool:
    """Whether the day of ``enterprise`` at ``time_ns`` has a chain point."""
    return _chain_at(reader, enterprise, time_ns) is not None


def head(client: InfluxClient, enterprise: str) -> tuple[str, str] | None:
    """(date, hash) of the newest chain point of ``enterprise``: what a report cites."""
    rows = _chain_points(client, enterprise)
    return (rows[-1]["date"], rows[-1]["hash"]) if rows else None
