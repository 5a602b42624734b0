"""A durable on-disk queue of the records an edge agent has measured and no collector has
yet receipted as stored (SQLite, stdlib only).

Why a database and not a file of lines: SQLite commits are atomic and, in WAL mode with
``synchronous=FULL``, durable once the commit returns (the write-ahead log is fsynced on every
commit). A process killed at any instant (SIGKILL, power loss) leaves either the whole
transaction or none of it: there are no torn records to repair, and the next open replays or
discards the log by itself.

Layout::

    records(seq INTEGER PRIMARY KEY, topic TEXT, payload BLOB, created_ns INTEGER,
            sends INTEGER, due_ns INTEGER)
    meta(key TEXT PRIMARY KEY, value)        -- 'next_seq', 'meter', 'schema'

``seq`` is the per-meter sequence number of the message contract. The next one is kept in
``meta`` and advanced in the same transaction as the insert, so it keeps increasing across
restarts even when every record was acknowledged and deleted (an ``AUTOINCREMENT`` rowid would
too, but the contract's number must also be *inside* the payload, which is written in the same
statement). ``created_ns`` is the wall clock (UTC ns) of the append; the publisher uses it to
tell live records from the backlog.

``sends`` counts the broker's successful PUBACKs of the record and ``due_ns`` (UTC ns) is when
it may be sent again: 0 for a record never sent, else the time of the last PUBACK plus the
resend delay, which doubles with every unreceipted send up to :data:`RESEND_BACKOFF_MAX`
times the first (:meth:`mark_sent`). Both are on disk, so a record sent just before a restart
is resent once its delay is over, not at once and not never. A receipt
(:meth:`apply_receipt`) deletes only records with ``sends > 0``: seqs this agent sent and the
broker accepted. Schema 1 files (without the two columns) are upgraded on open.

One :class:`Outbox` object may be shared by threads (the measuring loop appends, the
publisher reads and acknowledges): a lock serialises the use of its one connection. Only one
process should open a given file at a time (one agent per meter); a second reader (a test, a
diagnostic tool) may open it read-only thanks to WAL.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from typing import NamedTuple

from . import contract

__all__ = ["Outbox", "OutboxError", "Record"]

SCHEMA_VERSION = 2

RESEND_BACKOFF_MAX = 16
"""An unreceipted record's resend delay doubles per send up to this many times the first
(60 s → at most 16 min): a long InfluxDB outage does not make every agent re-queue its whole
outbox in the broker every minute."""


class OutboxError(RuntimeError):
    """The outbox file cannot be used (wrong meter, unreadable, from a newer version)."""


class Record(NamedTuple):
    """One queued message: ``seq`` (contract sequence number), ``topic``, ``payload``
    (encoded JSON bytes, ``seq`` included), ``created_ns`` (UTC ns of the append) and
    ``sends`` (how often the broker accepted it so far)."""

    seq: int
    topic: str
    payload: bytes
    created_ns: int
    sends: int = 0


class Outbox:
    """A durable queue of encoded messages with a per-meter sequence number.

    Parameters
    ----------
    path : str or path-like
        SQLite file; created (with its directory) if missing.
    meter : str, optional
        Meter id the outbox belongs to. Recorded on first use; opening an outbox of another
        meter raises :class:`OutboxError` (two meters must never share sequence numbers).

    A record is durable once :meth:`append` / :meth:`append_many` returns. It leaves the queue
    only through :meth:`apply_receipt` (a collector stored it) or :meth:`ack` /
    :meth:`ack_many` (the publisher without receipts).
    """

    def __init__(self, path, meter: str | None = None):
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        self._lock = threading.RLock()
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=10.0)
        except sqlite3.Error as e:
            raise OutboxError(f"outbox {self.path}: cannot open ({e})") from e
        self._db = db
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"outbox {self.path}: the file system does not allow SQLite's "
                                  f"WAL mode (got {mode!r}); put the outbox on a local disk")
            db.execute("PRAGMA synchronous=FULL")
            with self._transaction():
                db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value)")
                db.execute("CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, "
                           "topic TEXT NOT NULL, payload BLOB NOT NULL, "
                           "created_ns INTEGER NOT NULL, "
                           "sends INTEGER NOT NULL DEFAULT 0, "
                           "due_ns INTEGER NOT NULL DEFAULT 0)")
                db.execute("CREATE INDEX IF NOT EXISTS records_created ON records(created_ns)")
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', 1)")
                schema = self._meta("schema")
                if int(schema) > SCHEMA_VERSION:
                    raise OutboxError(f"outbox {self.path} was written by a newer tingbao "
                                      f"(schema {schema}); upgrade this agent")
                columns = {r[1] for r in db.execute("PRAGMA table_info(records)")}
                for col in ("sends", "due_ns"):  # schema 1: records were never marked sent
                    if col not in columns:
                        db.execute(f"ALTER TABLE records ADD COLUMN {col} INTEGER NOT NULL "
                                   "DEFAULT 0")
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
                if meter is not None:
                    contract.check_id(meter, "meter")
                    owner = self._meta("meter")
                    if owner is None:
                        db.execute("INSERT INTO meta VALUES ('meter', ?)", (meter,))
                    elif owner != meter:
                        raise OutboxError(
                            f"outbox {self.path} belongs to meter {owner!r}, not {meter!r}: "
                            "give each meter its own [outbox] path")
                self._next = int(self._meta("next_seq"))
        except sqlite3.DatabaseError as e:
            db.close()
            raise OutboxError(f"outbox {self.path}: not a usable SQLite database ({e}); move "
                              "it aside to start a new queue") from e
        except BaseException:
            db.close()
            raise
        self.meter = meter if meter is not None else self._meta("meter")

    # ------------------------------------------------------------------ helpers
    def _meta(self, key: str):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    class _Tx:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                self.db.execute("COMMIT")
            else:
                self.db.execute("ROLLBACK")

    def _transaction(self):
        return Outbox._Tx(self._db)

    def _check_open(self):
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is closed")

    def _relaxed(self, write) -> int:
        """Run ``write(db)`` committed without waiting for the disk (``synchronous=NORMAL``
        for its statements: atomic, but a power cut may undo the last ones); returns how
        many rows it changed. For bookkeeping whose loss only makes a record go out once
        more: acknowledgements, send marks, receipts."""
        with self._lock:
            self._check_open()
            before = self._db.total_changes
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                write(self._db)
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            return self._db.total_changes - before

    # ------------------------------------------------------------------ writing
    def append(self, topic: str, payload: dict) -> int:
        """Queue one message: set ``payload['seq']`` to the next sequence number, encode it
        (:func:`contract.encode`) and store it durably. Returns the seq. ``payload`` is not
        modified."""
        return self.append_many([(topic, payload)])[0]

    def append_many(self, items: Iterable[tuple[str, dict]], *,
                    created_ns: int | None = None) -> list[int]:
        """Queue several messages (e.g. the records of one interval) in one transaction:
        all or none are stored. Returns their seqs, consecutive, in order. ``created_ns``
        (UTC ns) overrides the append time, e.g. to import old records as backlog."""
        items = list(items)
        if not items:
            return []
        now = time.time_ns() if created_ns is None else int(created_ns)
        with self._lock:
            self._check_open()
            seq0 = self._next
            rows = []
            for i, (topic, payload) in enumerate(items):
                if not isinstance(payload, dict):
                    raise TypeError("payload must be a dict (the message before encoding)")
                rows.append((seq0 + i, str(topic), contract.encode({**payload, "seq": seq0 + i}),
                             now))
            with self._transaction():
                self._db.executemany("INSERT INTO records (seq, topic, payload, created_ns) "
                                     "VALUES (?, ?, ?, ?)", rows)
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'",
                                 (seq0 + len(rows),))
            self._next = seq0 + len(rows)
            return [r[0] for r in rows]

    def ack(self, seq: int) -> bool:
        """Remove the record ``seq`` (its delivery was confirmed). Returns whether it was
        still queued."""
        return self.ack_many([seq]) == 1

    def ack_many(self, seqs: Iterable[int]) -> int:
        """Remove several records in one transaction; returns how many were queued.

        Acknowledgements are committed without waiting for the disk (:meth:`_relaxed`).
        Losing an ack only means the record is sent once more, which the contract makes
        harmless, and it lets the publisher acknowledge thousands of PUBACKs per second
        instead of one per fsync."""
        seqs = [int(s) for s in seqs]
        if not seqs:
            return 0

        def delete(db):
            for i in range(0, len(seqs), 500):  # one statement (one transaction) per 500
                part = seqs[i : i + 500]
                db.execute(f"DELETE FROM records WHERE seq IN ({','.join('?' * len(part))})",
                           part)
        return self._relaxed(delete)

    def mark_sent(self, seqs: Iterable[int], now_ns: int, resend_after_ns: int) -> int:
        """The broker accepted these records (PUBACK): count the send and make each due again
        ``resend_after_ns`` × 2^(earlier sends) (at most :data:`RESEND_BACKOFF_MAX` ×) after
        ``now_ns`` unless a receipt deletes it first. Committed like :meth:`ack_many` (a
        mark lost to a power cut only makes the record due at once). Returns how many were
        still queued."""
        seqs = [int(s) for s in seqs]
        if not seqs:
            return 0
        cap = RESEND_BACKOFF_MAX.bit_length() - 1

        def mark(db):
            for i in range(0, len(seqs), 500):
                part = seqs[i : i + 500]
                db.execute(f"UPDATE records SET due_ns = ? + ? * (1 << MIN(sends, {cap})), "
                           f"sends = sends + 1 WHERE seq IN ({','.join('?' * len(part))})",
                           [int(now_ns), int(resend_after_ns), *part])
        return self._relaxed(mark)

    def apply_receipt(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Delete the records with a seq in the inclusive ``ranges`` that were sent (the
        broker accepted them at least once: ``sends > 0``). Records never sent, or no longer
        queued, are left alone: a receipt for them (forged, for another outbox, replayed)
        deletes nothing. Returns how many were deleted. Committed like :meth:`ack_many`."""
        ranges = [(int(a), int(b)) for a, b in ranges]
        if not ranges:
            return 0
        def delete(db):
            with self._transaction():
                db.executemany("DELETE FROM records WHERE seq BETWEEN ? AND ? AND sends > 0",
                               ranges)
        return self._relaxed(delete)

    # ------------------------------------------------------------------ reading
    def oldest(self, n: int, after_seq: int = 0, due_ns: int | None = None) -> list[Record]:
        """Up to ``n`` records with seq > ``after_seq``, oldest (lowest seq) first; with
        ``due_ns`` only those due by then (never sent, or their resend time passed)."""
        due = "" if due_ns is None else " AND due_ns <= ?"
        args = (int(after_seq),) + (() if due_ns is None else (int(due_ns),)) + (int(n),)
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                f"SELECT seq, topic, payload, created_ns, sends FROM records WHERE seq > ?{due} "
                "ORDER BY seq LIMIT ?", args).fetchall()
        return [Record(s, t, bytes(p), c, n) for s, t, p, c, n in rows]

    def sent_state(self, seq: int) -> tuple[int, int] | None:
        """``(sends, due_ns)`` of a queued record, or None (for tests and diagnostics)."""
        with self._lock:
            self._check_open()
            row = self._db.execute("SELECT sends, due_ns FROM records WHERE seq = ?",
                                   (int(seq),)).fetchone()
        return None if row is None else (row[0], row[1])

    def awaiting(self) -> int:
        """Queued records that were sent (accepted by the broker) and wait for a receipt."""
        with self._lock:
            self._check_open()
            return int(self._db.execute("SELECT COUNT(*) FROM records WHERE sends > 0"
                                        ).fetchone()[0])

    def newest_since(self, created_ns: int, n: int, after_seq: int = 0,
                     due_ns: int | None = None) -> list[Record]:
        """Up to ``n`` records appended at or after ``created_ns`` (UTC ns) with seq >
        ``after_seq`` (and due by ``due_ns``, when given), lowest seq first: the live
        records."""
        with self._lock:
            self._check_open()
            first = self._db.execute(  # the index: only the recent rows are read
                "SELECT MIN(seq) FROM records INDEXED BY records_created WHERE created_ns >= ?",
                (int(created_ns),)).fetchone()[0]
            if first is None:
                return []
            due = "" if due_ns is None else " AND due_ns <= ?"
            rows = self._db.execute(
                "SELECT seq, topic, payload, created_ns, sends FROM records WHERE seq >= ? "
                f"AND seq > ? AND created_ns >= ?{due} ORDER BY seq LIMIT ?",
                (first, int(after_seq), int(created_ns),
                 *(() if due_ns is None else (int(due_ns),)), int(n))).fetchall()
        return [Record(s, t, bytes(p), c, n) for s, t, p, c, n in rows]

    def get(self, seq: int) -> Record | None:
        """The record ``seq``, or None if it is not queued."""
        with self._lock:
            self._check_open()
            row = self._db.execute("SELECT seq, topic, payload, created_ns, sends FROM records "
                                   "WHERE seq = ?", (int(seq),)).fetchone()
        return None if row is None else Record(row[0], row[1], bytes(row[2]), row[3], row[4])

    def seqs(self) -> list[int]:
        """All queued seqs, ascending (for tests and diagnostics)."""
        with self._lock:
            self._check_open()
            return [r[0] for r in self._db.execute("SELECT seq FROM records ORDER BY seq")]

    def depth(self) -> int:
        """Number of queued records."""
        with self._lock:
            self._check_open()
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    @property
    def next_seq(self) -> int:
        """The seq the next append will get."""
        return self._next

    @property
    def last_seq(self) -> int:
        """The seq of the last record ever appended (0 if none)."""
        return self._next - 1

    def check(self) -> list[str]:
        """SQLite's integrity check plus the contract's: every payload is JSON whose ``seq``
        equals its row's, and no row's seq reaches ``next_seq``. Returns the problems found
        (an empty list when the queue is sound)."""
        import json

        problems = []
        with self._lock:
            self._check_open()
            res = [r[0] for r in self._db.execute("PRAGMA integrity_check")]
            if res != ["ok"]:
                problems += res
            for seq, payload in self._db.execute("SELECT seq, payload FROM records"):
                try:
                    if json.loads(bytes(payload))["seq"] != seq:
                        problems.append(f"record {seq}: payload seq differs")
                except (ValueError, KeyError, TypeError) as e:
                    problems.append(f"record {seq}: payload unreadable ({e})")
                if seq >= self._next:
                    problems.append(f"record {seq} is not below next_seq {self._next}")
        return problems

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Checkpoint the log and close the file. Safe to call more than once."""
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # a reader holds the log; the next open checkpoints it
            self._db.close()
            self._db = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db is None else f"depth={self.depth()}"
        return f"Outbox({self.path!r}, next_seq={self._next}, {state})"

