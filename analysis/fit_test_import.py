"""Fit tests into the store: CSV files (``tingbao fit-tests import``) and an MQTT listener
(``tingbao fit-tests listen``), both through one check (:func:`tingbao.analysis.fit_tests.
parse_record`) and one writer (:func:`store`), and the listing (``tingbao fit-tests list``).

* **CSV** (UTF-8, UTF-8 with BOM, GBK/GB18030; read by :mod:`tingbao.analysis.spreadsheets`,
  which also reads XLSX): every row is checked; a bad row is reported with its row number and
  column and left out, the good rows are stored. A row repeating an earlier row of the file
  (same record) is reported as a duplicate and stored once; a record already stored (a file
  imported twice) is reported too and not stored again.
* **MQTT**: a fit-test system publishes one record per message, JSON, QoS 1, on
  ``tingbao/v1/{enterprise}/fittests`` (:data:`TOPIC_FILTER`; the broker's ACL lets the
  ``analysis`` account publish there, ``collector/stack/accounts.py``). The listener
  subscribes as ``analysis`` with a persistent session, checks the message, stores it and only
  then acknowledges it. A refused message (not JSON, not an object, a bad record, an unknown
  enterprise) is stored as a dead letter (``schema.DEAD_LETTERS``, stage ``fit_test``) with
  the reason, and acknowledged.

**Storage** (``schema.FIT_TESTS``, retention policy ``forever``): a test is a point at its
date's local midnight (the deployment's time zone) plus its index among that enterprise's tests
of the day (ns), tags ``enterprise``, ``worker``, ``protector``, ``method``, and the fields of
the schema: the PARs, ``att_<fc>`` (finite values only; the raw ones are in ``record``),
``job``, ``exposure_db``, ``limit_db``, ``passed``, ``cautions`` (JSON list of codes),
``source`` (``csv`` or ``mqtt``) and ``record`` (the checked record, canonical JSON: what
duplicates are recognised by).

**Exposure.** A record without ``exposure_db`` that names a ``job`` is judged against that
job's stored LEX,8h (the ``exposure`` point of the profile in force, latest shift on or
before the test date, :func:`job_lex`); without either it is stored unjudged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tingbao.collector import schema
from tingbao.collector.deadletter import DeadLetter, safe_tag
from tingbao.collector.influx import InfluxClient
from tingbao.collector.lineprotocol import line
from tingbao.edge import contract

from .fit_tests import (
    COLUMN_ALIASES,
    REQUIRED,
    FitResult,
    FitTest,
    assess,
    parse_record,
    problems_text,
)
from .shifts import local_days
from .spreadsheets import (
    Duplicate,
    RowError,
    RowInvalid,
    TableError,
    collect_rows,
    read_table,
    rejected_rows,
    split_duplicates,
)

__all__ = ["DEAD_LETTER_STAGE", "TOPIC_FILTER", "FitTestListener", "ImportOutcome",
           "Stored", "handle_message", "import_file", "job_lex", "read_fit_tests", "store",
           "topic"]

log = logging.getLogger("tingbao.fit_tests")

TOPIC_FILTER = contract.FIT_TESTS_TOPIC_FILTER
"""The topic filter of fit-test records (one level: the enterprise)."""
DEAD_LETTER_STAGE = schema.STAGE_FIT_TEST
"""``stage`` tag of a refused fit-test message's dead letter."""
topic = contract.fit_tests_topic
"""``tingbao/v1/{enterprise}/fittests`` (:func:`tingbao.edge.contract.fit_tests_topic`)."""


# ------------------------------------------------------------------------------- store
def job_lex(reader: InfluxClient, enterprise: str, job: str, date: dt.date, profile_id: str,
            timezone: str) -> float | None:
    """The LEX,8h (dB(A)) of ``job``'s latest stored shift starting before the end of local
    ``date`` (the ledger's ``exposure`` point of ``profile_id``), or None."""
    end = local_days(date, date, timezone).end_ns
    rows = reader.query_rows(schema.job_lex_latest(enterprise, job, profile_id, end))
    v = rows[0].get(schema.LEX_8H) if rows else None
    return None if v is None else float(v)


def _stored_records(reader: InfluxClient, enterprise: str, day: schema.Period) -> list[str]:
    rows = reader.query_rows(schema.fit_test_records(enterprise, day))
    return [r.get(schema.FIT_TEST_RECORD) for r in rows]


def _fields(r: FitResult, source: str) -> dict:
    t = r.test
    fields = {"par_left": t.par_left, "par_right": t.par_right,
              "par_binaural": t.par_binaural, "par_u": t.par_u, "job": t.job,
              "exposure_db": r.exposure_db, "limit_db": r.limit_db, "passed": r.passed,
              "cautions": json.dumps([c.code for c in r.cautions]), "source": source,
              "record": t.as_json()}
    for fc, v in t.bands.items():
        if math.isfinite(v):
            fields[f"att_{fc}"] = v
    return {k: v for k, v in fields.items() if v is not None}


@dataclasses.dataclass(frozen=True)
class Stored:
    """What :func:`store` did: the results written, and those already in the store (same
    record on the same day) that it left alone."""

    written: tuple[FitResult, ...]
    already: tuple[FitResult, ...]


def assess_all(reader: InfluxClient | None, reg, tests: Iterable[FitTest]) -> list[FitResult]:
    """Judge each test in the profile in force; a test naming a job but no exposure gets the
    job's stored LEX,8h (:func:`job_lex`) when ``reader`` is given, asked once per
    (enterprise, job, date) of the call."""
    prof = reg.profile
    lex: dict[tuple[str, str, dt.date], float | None] = {}
    out = []
    for t in tests:
        exposure = None
        if t.exposure_db is None and t.job is not None and reader is not None:
            key = (t.enterprise, t.job, t.date)
            if key not in lex:
                lex[key] = job_lex(reader, *key, prof.id, reg.deployment.timezone)
            exposure = lex[key]
        out.append(assess(t, prof, exposure_db=exposure))
    return out


def store(reader: InfluxClient, writer: InfluxClient, reg, results: Sequence[FitResult],
          source: str) -> Stored:
    """Write ``results`` as ``fit_tests`` points (module docstring), skipping records already
    stored on their day; ``reader`` reads the day's existing tests, ``writer`` writes."""
    tz = reg.deployment.timezone
    by_day: dict[tuple[str, dt.date], list[FitResult]] = {}
    for r in results:
        by_day.setdefault((r.test.enterprise, r.test.date), []).append(r)
    lines, written, already = [], [], []
    for (ent, date), group in by_day.items():
        day = local_days(date, date, tz)
        start = day.start_ns
        existing = _stored_records(reader, ent, day)
        seen = set(existing)
        index = len(existing)
        for r in group:
            rec = r.test.as_json()
            if rec in seen:
                already.append(r)
                continue
            seen.add(rec)
            tags = {"enterprise": ent, "worker": r.test.worker, "protector": r.test.protector,
                    "method": r.test.method}
            lines.append(line(schema.FIT_TESTS, tags, _fields(r, source), start + index))
            index += 1
            written.append(r)
    if lines:
        writer.write(lines, rp=schema.RP_FOREVER)
    return Stored(tuple(written), tuple(already))


# ------------------------------------------------------------------------------- CSV
@dataclasses.dataclass(frozen=True)
class ImportOutcome:
    """A file imported: ``stored`` (row number, result), ``errors`` of the refused rows,
    ``duplicates`` within the file, ``already`` the row numbers whose record was stored
    before, and the file's ``encoding`` and ``notes``."""

    path: str
    encoding: str
    stored: tuple[tuple[int, FitResult], ...]
    errors: tuple[RowError, ...]
    duplicates: tuple[Duplicate, ...]
    already: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def rejected_rows(self) -> tuple[int, ...]:
        return rejected_rows(self.errors)


def import_file(path: str | Path, reg, reader: InfluxClient, writer: InfluxClient, *,
                enterprise: str | None = None, today: dt.date | None = None,
                progress: bool = False) -> ImportOutcome:
    """Import a CSV (or XLSX) of fit tests (module docstring). ``enterprise``: for files
    without an enterprise column (it must be a registry enterprise; so must every row's).
    ``progress``: a tqdm bar on stderr over the rows. Raises
    :class:`~tingbao.analysis.spreadsheets.TableError` when the file as a whole cannot be
    read (encoding, a required column missing)."""
    known = {e.id for e in reg.enterprises}
    if enterprise is not None and enterprise not in known:
        raise ValueError(f"unknown enterprise {enterprise!r}; one of {', '.join(sorted(known))}")
    table = read_table(path, aliases=COLUMN_ALIASES, required=REQUIRED)
    if enterprise is None and "enterprise" not in table.columns:
        raise TableError(f"{Path(path).name}: no enterprise column; give the enterprise to "
                         "import for (--enterprise ID)")
    today = today or dt.date.today()
    rows = table.rows
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, unit="row", file=sys.stderr, disable=not sys.stderr.isatty())

    def parse(row) -> FitTest:
        t = parse_record(row.values, row=row.number, enterprise=enterprise, today=today)
        if t.enterprise not in known:
            raise RowInvalid([RowError(row.number, "enterprise", f"{t.enterprise!r} is not "
                                       f"in the registry; one of {', '.join(sorted(known))}")])
        return t

    checked = collect_rows(rows, parse, table.errors)
    kept, dups = split_duplicates(checked.good, key=lambda t: t.as_json())
    results = assess_all(reader, reg, [t for _, t in kept])
    outcome = store(reader, writer, reg, results, "csv")
    already_ids = {id(r) for r in outcome.already}
    numbered = list(zip((n for n, _ in kept), results, strict=True))
    return ImportOutcome(str(path), table.encoding,
                         tuple((n, r) for n, r in numbered if id(r) not in already_ids),
                         checked.errors, tuple(dups),
                         tuple(n for n, r in numbered if id(r) in already_ids), table.notes)


# ------------------------------------------------------------------------------- MQTT
def dead_letter_line(reason: str, topic_: str, payload: bytes, received_ns: int,
                     collector: str) -> str:
    """A ``dead_letters`` point of stage :data:`DEAD_LETTER_STAGE`, kind ``other``
    (:meth:`tingbao.collector.deadletter.DeadLetter.to_line`)."""
    return DeadLetter(DEAD_LETTER_STAGE, reason, topic_, payload, received_ns,
                      safe_tag(collector)).to_line()


@dataclasses.dataclass(frozen=True)
class Handled:
    """What became of one message: ``stored`` (a result written), ``duplicate`` (already
    stored) or ``refused`` (a dead letter, ``reason``)."""

    outcome: str
    result: FitResult | None = None
    reason: str = ""


def handle_message(reg, reader: InfluxClient, writer: InfluxClient, topic_: str,
                   payload: bytes, *, collector: str = "fit-tests",
                   received_ns: int | None = None, today: dt.date | None = None) -> Handled:
    """Check, judge and store one MQTT message, or store its dead letter (module
    docstring). InfluxDB errors propagate (the caller does not acknowledge then)."""
    received_ns = received_ns or time.time_ns()
    known = {e.id for e in reg.enterprises}

    def refuse(reason: str) -> Handled:
        writer.write([dead_letter_line(reason, topic_, payload, received_ns, collector)])
        log.warning("fit test refused on %s: %s", topic_, reason)
        return Handled("refused", reason=reason)

    ent = contract.fit_tests_enterprise(topic_)
    if ent not in known:
        return refuse(f"topic {topic_!r}: enterprise {ent!r} is not in the registry")
    if len(payload) > contract.MAX_PAYLOAD_BYTES:
        return refuse(f"payload of {len(payload)} bytes: at most "
                      f"{contract.MAX_PAYLOAD_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        return refuse(f"not UTF-8 JSON: {e}")
    if not isinstance(obj, dict):
        return refuse(f"a fit-test message is a JSON object, not {type(obj).__name__}")
    try:
        t = parse_record(obj, enterprise=ent, today=today or dt.date.today())
    except RowInvalid as e:
        return refuse(problems_text(e))
    (result,) = assess_all(reader, reg, [t])
    done = store(reader, writer, reg, [result], "mqtt")
    return Handled("stored" if done.written else "duplicate", result)


class FitTestListener:
    """Subscribes to :data:`TOPIC_FILTER` (QoS 1, persistent session, manual
    acknowledgement) on ``endpoint`` (``collector.registry.connect.MqttEndpoint``) and
    handles each message with :func:`handle_message`; the PUBACK follows the write. A message
    whose storage failed (InfluxDB down) is not acknowledged: the broker delivers it again
    after a reconnect. ``on_handled(Handled)`` is called after each message."""

    def __init__(self, reg, endpoint, reader: InfluxClient, writer: InfluxClient, *,
                 client_id: str = "tingbao-fit-tests",
                 on_handled: Callable[[Handled], None] | None = None):
        from paho.mqtt import client as mqtt

        self.reg, self.reader, self.writer = reg, reader, writer
        self.on_handled = on_handled
        self.ready = threading.Event()
        self.client_id = client_id
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        if endpoint.username is not None:
            c.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.ca_file:
            c.tls_set(ca_certs=endpoint.ca_file)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c
        self.endpoint = endpoint

    def _on_connect(self, c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the fit-test listener: %s", reason_code)
            return
        c.subscribe(TOPIC_FILTER, qos=1)

    def _on_subscribe(self, c, userdata, mid, reason_codes, properties):
        if all(not rc.is_failure for rc in reason_codes):
            self.ready.set()
        else:
            log.error("subscription to %s refused: %s", TOPIC_FILTER, reason_codes)

    def _on_message(self, c, userdata, msg):
        try:
            h = handle_message(self.reg, self.reader, self.writer, msg.topic,
                               bytes(msg.payload), collector=self.client_id)
        except Exception as e:  # noqa: BLE001 — InfluxDB down or a bug: do not acknowledge
            log.error("fit test on %s not stored (will come again): %s", msg.topic, e)
            return
        c.ack(msg.mid, msg.qos)
        if self.on_handled is not None:
            self.on_handled(h)

    def start(self, session_expiry_s: int = 86_400) -> None:
        """Connect in the background (reconnecting by itself)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(session_expiry_s)
        self.client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=60,
                                  clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


# ------------------------------------------------------------------------------- list
def read_fit_tests(reader: InfluxClient, enterprise: str, start: dt.date, end: dt.date,
                   timezone: str) -> list[dict]:
    """The stored fit tests of ``enterprise`` with local dates in [start, end], oldest
    first: rows with the tags and fields of ``schema.FIT_TESTS`` and ``time`` (ns)."""
    q = schema.fit_tests_query(enterprise, local_days(start, end, timezone))
    out = [{k: v for k, v in r.items() if v is not None} for r in reader.query_rows(q)]
    out.sort(key=lambda r: int(r["time"]))
    return out
