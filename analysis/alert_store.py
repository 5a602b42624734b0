"""Alerts: the store and the lifecycle open → acknowledged → resolved, with who, when and a
note for every change; each change is stored in InfluxDB and published over MQTT.

*When* an alert is raised (edge triggering, the hold-off before a cleared condition may raise
again) is the rule engine's business (``analysis/alert_rules.py``); this module keeps what
it raised and what people did about it.

**Identity.** An alert is one condition (``rule``) of one subject (enterprise; a meter and
channel or a job; a worker, by pseudonym, for the hearing-screening alerts) in one shift
(``shift_date``, local date) under one regulatory profile, raised for the ``occurrence``-th
time in that shift (0 first, 1 after a hold-off, …). Its id is the first 16 hex digits of
SHA-256 over ``"enterprise|rule|meter|channel|job|shift_date|profile|occurrence"`` (an absent
part as the empty string), followed by ``"|worker"`` only when the alert has a worker: the ids
of alerts without one are those they always had. So a back-fill run twice raises the same
ids and :meth:`AlertStore.open` refuses the second time: one alert, stored and published
once.

**Lifecycle.** ``open`` → ``acknowledged`` → ``resolved``, or ``open`` → ``resolved``
directly: resolving an alert nobody acknowledged is allowed (the condition was dealt with; the
history shows that no acknowledgement came first). Anything else (acknowledging a resolved or
acknowledged alert, resolving twice) raises :class:`InvalidTransition`. A change's ``who``
is required: 1–:data:`MAX_WHO` printable characters on one line; its ``note`` 1–
:data:`MAX_NOTE` printable characters, line breaks and tabs allowed. Both are stored and
published exactly as given (quotes, backslashes, CJK, several lines).

**Storage** (:data:`tingbao.collector.schema.ALERTS`, retention policy ``forever``): one
point per state change at the change's time (``open``: the alert's ``raised_ns``), tags
:data:`~tingbao.collector.schema.ALERT_TAGS` (``channel`` as a decimal string; ``meter``
and ``channel`` absent for enterprise- and job-level alerts, ``worker`` absent unless the
alert is about a worker (points stored before the tag existed have none: they read as no
worker), ``state`` the state entered),
fields ``job`` (absent when none), ``shift_date``, ``profile``, ``severity``, ``text_zh``,
``text_en``, ``evidence`` (compact JSON, keys sorted), ``who``, ``note``, ``raised_ns``
(integer) and ``occurrence`` (integer; the id's last part, kept so that a stored alert
rebuilds exactly). Every point carries the whole alert, so a dashboard needs no join. Line
protocol cannot carry a line break in a string, so ``text_zh``, ``text_en`` and ``note``
are stored with ``\\`` → ``\\\\``, line feed → ``\\n``, carriage return → ``\\r``
(:func:`encode_text`, undone by :func:`decode_text`); ``who`` (one line) is stored as it is.
The ``open`` point's ``who`` is :data:`SYSTEM` and its ``note`` empty.

The current state of an alert is the furthest state it has a point of (resolved >
acknowledged > open); the time, who and note of a state are those of its earliest point.
InfluxDB has no transactions: two people acknowledging the same alert in the same second both
pass the check and both points are stored; :meth:`AlertStore.history` shows both, the state
shows the first.

**Publication**: after the point is stored, a JSON payload (:func:`payload`; ``schema``
``tingbao.alerts/1``) on ``tingbao/v1/{enterprise}/alerts`` with QoS 1, not retained
(:func:`tingbao.edge.contract.alerts_topic`). Store first, then publish: a failed
publication never undoes the stored change; it is logged and raised as :class:`NotPublished`
(which carries the stored state), and :meth:`AlertStore.republish` sends the current state
again. Delivery is at least once: a subscriber deduplicates by (``id``, ``state``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable

from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient
from tingbao.collector.lineprotocol import line
from tingbao.edge import contract

__all__ = ["Alert", "AlertState", "AlertStore", "InvalidTransition", "NotPublished",
           "PublishError", "SEVERITIES", "STATES", "SYSTEM", "Transition", "UnknownAlert",
           "alert_id", "decode_text", "encode_text", "mqtt_publisher", "payload"]

log = logging.getLogger("tingbao.analysis.alerts")

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
STATES = (OPEN, ACKNOWLEDGED, RESOLVED)
"""The lifecycle, in order; a later state is never left."""
NEXT_STATES = {OPEN: (ACKNOWLEDGED, RESOLVED), ACKNOWLEDGED: (RESOLVED,), RESOLVED: ()}
SEVERITIES = ("info", "warning", "critical")
SYSTEM = "tingbao"
"""``who`` of the ``open`` point: the analysis service raised it."""
PAYLOAD_SCHEMA = f"tingbao.alerts/{contract.VERSION}"

MAX_WHO = 200
"""Longest ``who``, characters."""
MAX_NOTE = 2000
"""Longest ``note``, characters."""
MAX_TEXT = 2000
"""Longest ``text_zh`` / ``text_en``, characters."""
MAX_EVIDENCE_BYTES = 16 * 1024
"""Longest evidence JSON, bytes (UTF-8): the payload stays far below the contract's
:data:`~tingbao.edge.contract.MAX_PAYLOAD_BYTES`."""
ID_RE = re.compile(r"\A[0-9a-f]{16}\Z")
_DATE_RE = re.compile(r"\A\d{4}-\d{2}-\d{2}\Z")
_ID_CHUNK = 100
"""Ids per query when reading the full points of many alerts."""


# ------------------------------------------------------------------------------- errors
class UnknownAlert(KeyError):
    """No alert with this id is stored (or the text is not an alert id)."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else "unknown alert"


class InvalidTransition(ValueError):
    """A state change the lifecycle does not allow (acknowledging a resolved alert, resolving
    twice), or a change dated before the alert's last one."""


class PublishError(ConnectionError):
    """The broker did not take a message: not connected in time, refused the login, refused
    the message (e.g. 135 not authorized) or sent no PUBACK in time."""


class NotPublished(RuntimeError):
    """The change IS stored in InfluxDB, but publishing it failed; ``state`` is the stored
    :class:`AlertState`, ``__cause__`` the publisher's error. :meth:`AlertStore.republish`
    sends the current state again."""

    def __init__(self, message: str, state: AlertState):
        super().__init__(message)
        self.state = state


# -------------------------------------------------------------------------- free text
_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r"})
_TEXT_UNESCAPE = re.compile(r"\\(.)", re.S)
_UNESCAPED = {"\\": "\\", "n": "\n", "r": "\r"}


def encode_text(text: str) -> str:
    """``text`` with ``\\`` doubled and line feeds / carriage returns written ``\\n`` /
    ``\\r``: a single line that line protocol carries (:func:`decode_text` undoes it)."""
    return text.translate(_TEXT_ESCAPES)


def decode_text(stored: str) -> str:
    """The text :func:`encode_text` was given (an unknown escape is kept as it is)."""
    return _TEXT_UNESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(0)), stored)


def _check_text(value, what: str, limit: int, *, lines: bool) -> str:
    """``value`` if it is 1..limit printable characters (with ``lines``: line breaks and tabs
    allowed too) and not only blanks; else ValueError naming ``what``."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} is empty: say {'who you are' if what == 'who' else 'why'}")
    if len(value) > limit:
        raise ValueError(f"{what} has {len(value)} characters; at most {limit}")
    allowed = "\n\r\t" if lines else ""
    bad = next((c for c in value if not (c.isprintable() or c in allowed)), None)
    if bad is not None:
        kind = "a control or separator character" if lines else \
            "a line break, tab or other unprintable character"
        raise ValueError(f"{what} contains {kind} (U+{ord(bad):04X})")
    return value


# -------------------------------------------------------------------------------- alert
def alert_id(enterprise: str, rule: str, meter: str | None, channel: int | None,
             job: str | None, shift_date: str, profile: str, occurrence: int,
             worker: str | None = None) -> str:
    """First 16 hex digits of SHA-256 of ``"enterprise|rule|meter|channel|job|shift_date|
    profile|occurrence"`` (None as the empty string, channel and occurrence as decimals),
    with ``"|worker"`` appended only when ``worker`` is given (so alerts without a worker keep
    the ids they had before workers were part of the identity)."""
    parts = [enterprise, rule, meter or "", "" if channel is None else str(int(channel)),
             job or "", shift_date, profile, str(int(occurrence))]
    if worker:
        parts.append(worker)
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:16]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Alert:
    """One raised condition, with its evidence and bilingual text (Chinese first).

    Args:
        enterprise: enterprise id.
        rule: the condition, an id such as ``lex_projected``, ``dose_50``, ``dose_100``,
            ``lex_exceeded``, ``peak_exceeded``, ``meter_offline``, ``clock_offset``,
            ``calibration_overdue``, ``calibration_drift``, ``coverage_low``, ``overload``.
        shift_date: local date of the shift, ``YYYY-MM-DD``.
        profile: id of the regulatory profile the rule applied.
        severity: ``info``, ``warning`` or ``critical``.
        text_zh, text_en: what happened and what to do, 1–:data:`MAX_TEXT` characters each.
        evidence: JSON-able mapping (values, period start/end ns, meter, calibration
            state, …); kept as its JSON round trip (tuples become lists, numpy scalars
            Python numbers), at most :data:`MAX_EVIDENCE_BYTES` as JSON.
        raised_ns: when the rule raised it, UTC ns (the ``open`` point's time).
        meter, channel: the post (absent for enterprise- and job-level alerts; a channel
            needs a meter).
        job: the job type id of a job-level alert.
        occurrence: the n-th raise of this condition in this shift (0 first; after a
            hold-off the rule engine raises occurrence 1, 2, …).
        worker: the worker's pseudonym of an alert about one worker (the hearing-screening
            rules ``hearing_suspected``, ``noise_susceptible``, ``hearing_sts``,
            ``exam_overdue``); part of the identity when given.

    Raises ValueError for anything outside these (ids per
    :data:`~tingbao.edge.contract.ID_PATTERN`).
    """

    enterprise: str
    rule: str
    shift_date: str
    profile: str
    severity: str
    text_zh: str
    text_en: str
    evidence: dict = dataclasses.field(hash=False)
    raised_ns: int
    meter: str | None = None
    channel: int | None = None
    job: str | None = None
    occurrence: int = 0
    worker: str | None = None

    def __post_init__(self):
        contract.check_id(self.enterprise, "enterprise")
        contract.check_id(self.rule, "rule")
        contract.check_id(self.profile, "profile")
        if not isinstance(self.shift_date, str) or not _DATE_RE.match(self.shift_date):
            raise ValueError(f"shift_date {self.shift_date!r} is not YYYY-MM-DD")
        try:
            dt.date.fromisoformat(self.shift_date)
        except ValueError:
            raise ValueError(f"shift_date {self.shift_date!r} is not a date") from None
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: one of {', '.join(SEVERITIES)}")
        _check_text(self.text_zh, "text_zh", MAX_TEXT, lines=True)
        _check_text(self.text_en, "text_en", MAX_TEXT, lines=True)
        if not _is_int(self.raised_ns) or self.raised_ns < contract.EARLIEST_NS:
            raise ValueError(f"raised_ns {self.raised_ns!r} is not UTC ns after 2000")
        if self.meter is not None:
            contract.check_id(self.meter, "meter")
        if self.channel is not None:
            if not _is_int(self.channel) or not 0 <= self.channel < 64:
                raise ValueError(f"channel {self.channel!r} is not 0..63")
            if self.meter is None:
                raise ValueError("a channel needs its meter")
        if self.job is not None:
            contract.check_id(self.job, "job")
        if not _is_int(self.occurrence) or self.occurrence < 0:
            raise ValueError(f"occurrence {self.occurrence!r} is not an integer >= 0")
        if self.worker is not None:
            contract.check_id(self.worker, "worker")
        object.__setattr__(self, "evidence", json.loads(_evidence_json(self.evidence)))

    @property
    def id(self) -> str:
        """Deterministic id (:func:`alert_id`): raising the same condition again, e.g. in a
        back-fill, gives the same id."""
        return alert_id(self.enterprise, self.rule, self.meter, self.channel, self.job,
                        self.shift_date, self.profile, self.occurrence, self.worker)


def _evidence_json(evidence) -> str:
    if not isinstance(evidence, dict):
        raise ValueError(f"evidence must be a mapping, got {type(evidence).__name__}")

    def plain(o):  # numpy scalars and arrays, sets of numbers
        if hasattr(o, "tolist"):
            return o.tolist()
        raise TypeError(f"{type(o).__name__} is not JSON")

    try:
        text = json.dumps(evidence, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False, default=plain)
    except (TypeError, ValueError) as e:
        raise ValueError(f"evidence is not JSON-able: {e}") from None
    if len(text.encode("utf-8")) > MAX_EVIDENCE_BYTES:
        raise ValueError(f"evidence has {len(text.encode('utf-8'))} bytes as JSON; at most "
                         f"{MAX_EVIDENCE_BYTES}")
    return text


@dataclasses.dataclass(frozen=True)
class Transition:
    """One stored state change: the state entered, when (UTC ns), who and the note."""

    state: str
    time_ns: int
    who: str
    note: str


@dataclasses.dataclass(frozen=True)
class AlertState(Alert):
    """An alert as stored: its fields, the current ``state``, and when, by whom and with
    which note it was opened, acknowledged and resolved (None: not (yet) in that state; an
    alert resolved without acknowledgement has no ``acknowledged_*``)."""

    state: str = OPEN
    opened_ns: int = 0
    acknowledged_ns: int | None = None
    acknowledged_by: str | None = None
    acknowledged_note: str | None = None
    resolved_ns: int | None = None
    resolved_by: str | None = None
    resolved_note: str | None = None

    @property
    def alert(self) -> Alert:
        """The plain :class:`Alert`."""
        return Alert(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Alert)})

    @property
    def last(self) -> Transition:
        """The change that entered the current state."""
        if self.state == RESOLVED:
            return Transition(RESOLVED, self.resolved_ns, self.resolved_by, self.resolved_note)
        if self.state == ACKNOWLEDGED:
            return Transition(ACKNOWLEDGED, self.acknowledged_ns, self.acknowledged_by,
                              self.acknowledged_note)
        return Transition(OPEN, self.opened_ns, SYSTEM, "")

    def as_dict(self) -> dict:
        """JSON-able dict: ``id`` first, then every field."""
        return {"id": self.id, **dataclasses.asdict(self)}


def payload(alert: Alert, transition: Transition) -> dict:
    """The MQTT payload of one state change (``schema`` ``tingbao.alerts/1``): the alert's
    id and fields (``evidence`` as an object; absent parts, such as ``worker`` of an alert
    about no worker, as null), the state entered,
    ``who``, ``note`` and its time ``time_ns``."""
    return {"schema": PAYLOAD_SCHEMA, "id": alert.id, "state": transition.state,
            "enterprise": alert.enterprise, "rule": alert.rule, "meter": alert.meter,
            "channel": alert.channel, "job": alert.job, "shift_date": alert.shift_date,
            "profile": alert.profile, "severity": alert.severity, "text_zh": alert.text_zh,
            "text_en": alert.text_en, "evidence": alert.evidence, "who": transition.who,
            "note": transition.note, "time_ns": transition.time_ns,
            "raised_ns": alert.raised_ns, "occurrence": alert.occurrence,
            "worker": alert.worker}


# -------------------------------------------------------------------------------- store
_RANK = {s: i for i, s in enumerate(STATES)}


class AlertStore:
    """Alerts in InfluxDB (``reader`` queries, ``writer`` writes) and their publication.

    Args:
        reader, writer: clients of the database (the stack's ``tingbao_reader`` may only
            read, ``tingbao_writer`` only write).
        publish: ``publish(topic, payload_bytes)`` sends one message and returns once the
            broker took it; it raises (or returns False) when it could not
            (:func:`mqtt_publisher` makes one). None: store only, publish nothing.
    """

    def __init__(self, reader: InfluxClient, writer: InfluxClient,
                 publish: Callable[[str, bytes], object] | None = None):
        self.reader = reader
        self.writer = writer
        self.publish = publish
        self._from = schema.source(schema.ALERTS, schema.RP_FOREVER)

    # ------------------------------------------------------------------------ changes
    def open(self, alert: Alert) -> bool:
        """Store the alert as ``open`` (at ``alert.raised_ns``) and publish it. Returns False
        and does nothing when an alert of this id is stored already, in any state (the same
        condition raised again, a back-fill run twice). Raises :class:`NotPublished` when it
        was stored but not published."""
        if not isinstance(alert, Alert):
            raise TypeError(f"open() takes an Alert, not {type(alert).__name__}")
        if isinstance(alert, AlertState):
            alert = alert.alert
        if self._points(alert.id):
            return False
        change = Transition(OPEN, alert.raised_ns, SYSTEM, "")
        self.writer.write(self._line(alert, change), rp=schema.RP_FOREVER)
        log.info("alert %s opened: %s %s %s/%s%s %s", alert.id, alert.enterprise, alert.rule,
                 alert.meter or "-", "-" if alert.channel is None else alert.channel,
                 f" worker {alert.worker}" if alert.worker else "", alert.shift_date)
        self._publish(alert, change, _state_of(alert.id, [(alert, change)]))
        return True

    def acknowledge(self, alert_id: str, who: str, note: str, now_ns: int | None = None
                    ) -> AlertState:
        """``open`` → ``acknowledged`` by ``who`` with ``note`` at ``now_ns`` (UTC ns;
        default now). Returns the new state. Raises :class:`UnknownAlert`,
        :class:`InvalidTransition` (not open), ValueError (who/note), :class:`NotPublished`
        (stored, not published)."""
        return self._change(alert_id, ACKNOWLEDGED, who, note, now_ns)

    def resolve(self, alert_id: str, who: str, note: str, now_ns: int | None = None
                ) -> AlertState:
        """``open`` or ``acknowledged`` → ``resolved`` (resolving without acknowledging is
        allowed: the history shows no acknowledgement). As :meth:`acknowledge` otherwise."""
        return self._change(alert_id, RESOLVED, who, note, now_ns)

    def republish(self, alert_id: str) -> AlertState:
        """Publish the alert's current state again (after :class:`NotPublished`); a
        subscriber that got it before sees the same (id, state, time_ns) twice."""
        state = self.get(alert_id)
        self._publish(state.alert, state.last, state)
        return state

    def _change(self, alert_id: str, new: str, who: str, note: str, now_ns: int | None
                ) -> AlertState:
        _check_text(who, "who", MAX_WHO, lines=False)
        _check_text(note, "note", MAX_NOTE, lines=True)
        now_ns = time.time_ns() if now_ns is None else now_ns
        if not _is_int(now_ns) or now_ns < contract.EARLIEST_NS:
            raise ValueError(f"now_ns {now_ns!r} is not UTC ns after 2000")
        stored = self._stored(alert_id)
        current = _state_of(alert_id, stored)
        if new not in NEXT_STATES[current.state]:
            last = current.last
            when = _utc(last.time_ns)
            if current.state == RESOLVED:
                hint = ("a resolved alert stays resolved; if the condition is back, the rule "
                        "engine raises a new alert")
            else:
                hint = "it can only be resolved now"
            raise InvalidTransition(
                f"alert {alert_id} is already {current.state} (by {last.who}, {when}): cannot "
                f"{'acknowledge' if new == ACKNOWLEDGED else 'resolve'} it; {hint}")
        latest = max(t.time_ns for _, t in stored)
        if now_ns < latest:
            raise InvalidTransition(
                f"alert {alert_id}: the change at {_utc(now_ns)} would be earlier than its "
                f"last one at {_utc(latest)}; check this computer's clock")
        alert = current.alert
        change = Transition(new, now_ns, who, note)
        self.writer.write(self._line(alert, change), rp=schema.RP_FOREVER)
        log.info("alert %s %s by %r", alert_id, new, who)
        state = self.get(alert_id)  # read back: what the store now says
        self._publish(alert, change, state)
        return state

    def _publish(self, alert: Alert, change: Transition, state: AlertState) -> None:
        """Publish a stored change; raise NotPublished (with the stored ``state``) when
        that fails."""
        if self.publish is None:
            return
        topic = contract.alerts_topic(alert.enterprise)
        try:
            ok = self.publish(topic, contract.encode(payload(alert, change)))
        except Exception as e:  # noqa: BLE001 - any publisher failure leaves the store as is
            log.error("alert %s %s is stored but was not published on %s: %s", alert.id,
                      change.state, topic, e)
            raise NotPublished(f"alert {alert.id} {change.state} is stored in InfluxDB but "
                               f"was not published on {topic}: {e}", state) from e
        if ok is False:
            log.error("alert %s %s is stored but the publisher refused it (%s)", alert.id,
                      change.state, topic)
            raise NotPublished(f"alert {alert.id} {change.state} is stored in InfluxDB but "
                               f"the publisher refused it ({topic})", state)

    def _line(self, alert: Alert, change: Transition) -> str:
        tags = {"enterprise": alert.enterprise, "id": alert.id, "rule": alert.rule}
        if alert.meter is not None:
            tags["meter"] = alert.meter
        if alert.channel is not None:
            tags["channel"] = str(alert.channel)
        if alert.worker is not None:
            tags["worker"] = alert.worker
        tags["state"] = change.state
        assert set(tags) <= set(schema.ALERT_TAGS)
        fields: dict[str, object] = {}
        if alert.job is not None:
            fields["job"] = alert.job
        fields.update(shift_date=alert.shift_date, profile=alert.profile,
                      severity=alert.severity, text_zh=encode_text(alert.text_zh),
                      text_en=encode_text(alert.text_en),
                      evidence=_evidence_json(alert.evidence), who=change.who,
                      note=encode_text(change.note), raised_ns=int(alert.raised_ns),
                      occurrence=int(alert.occurrence))
        return line(schema.ALERTS, tags, fields, change.time_ns)

    # -------------------------------------------------------------------------- reads
    def _points(self, alert_id: str) -> list[dict]:
        return self.reader.query_rows(
            f"SELECT * FROM {self._from} WHERE {schema.where_tags([('id', alert_id)])}")

    def _stored(self, alert_id: str) -> list[tuple[Alert, Transition]]:
        """Every stored (alert, change) of the id; :class:`UnknownAlert` when none."""
        if not isinstance(alert_id, str) or not ID_RE.match(alert_id):
            raise UnknownAlert(f"{str(alert_id)[:40]!r} is not an alert id (16 hex digits, "
                               "as `tingbao alerts list` shows them)")
        rows = self._points(alert_id)
        if not rows:
            raise UnknownAlert(f"no alert {alert_id} in the store (`tingbao alerts list` "
                               "shows the stored ones)")
        return [_from_row(r) for r in rows]

    def get(self, alert_id: str) -> AlertState:
        """The alert's current state; :class:`UnknownAlert` when no alert has this id."""
        return _state_of(alert_id, self._stored(alert_id))

    def history(self, alert_id: str) -> list[Transition]:
        """Every stored change of the alert, oldest first (:class:`UnknownAlert` when none)."""
        return sorted((t for _, t in self._stored(alert_id)),
                      key=lambda t: (t.time_ns, _RANK.get(t.state, 0)))

    def list(self, *, enterprise: str | None = None, state: str | None = None,
             rule: str | None = None, meter: str | None = None, since_ns: int | None = None,
             until_ns: int | None = None, limit: int = 200, worker: str | None = None
             ) -> list[AlertState]:
        """Alerts whose current state is ``state`` (any when None), of ``enterprise``,
        ``rule``, ``meter`` and ``worker`` when given, opened (``raised_ns``) in
        [since_ns, until_ns) (UTC ns; open-ended when None); newest opened first, at most
        ``limit``.

        Reads one small row per stored change that matches the tag filters and
        ``since_ns``, then the full points of the chosen alerts only."""
        if state is not None and state not in STATES:
            raise ValueError(f"state {state!r}: one of {', '.join(STATES)}")
        if not _is_int(limit) or limit < 1:
            raise ValueError(f"limit {limit!r} is not a positive integer")
        cond = [schema.where_tags(
            [(k, contract.check_id(v, k)) for k, v in
             (("enterprise", enterprise), ("rule", rule), ("meter", meter),
              ("worker", worker)) if v is not None])]
        if since_ns is not None:  # later changes of an alert opened before are after it too
            cond.append(f"time >= {int(since_ns)}")
        where = " AND ".join(c for c in cond if c)
        # 1: which ids, opened when, in which state (one small field per point)
        rows = self.reader.query_rows(
            f'SELECT "raised_ns", "id", "state" FROM {self._from}'
            + (f" WHERE {where}" if where else ""))
        opened: dict[str, int] = {}
        rank: dict[str, int] = {}
        for r in rows:
            if r["state"] == OPEN:
                opened[r["id"]] = r["time"]
            rank[r["id"]] = max(rank.get(r["id"], 0), _RANK.get(r["state"], 0))
        chosen = [i for i, t in opened.items()
                  if (until_ns is None or t < until_ns)
                  and (state is None or STATES[rank[i]] == state)]
        chosen.sort(key=lambda i: (-opened[i], i))
        chosen = chosen[:limit]
        # 2: the full points of those
        points: dict[str, list] = {}
        for k in range(0, len(chosen), _ID_CHUNK):
            part = chosen[k:k + _ID_CHUNK]
            for r in self.reader.query_rows(
                    f"SELECT * FROM {self._from} WHERE {schema.where_any('id', part)}"):
                points.setdefault(r["id"], []).append(_from_row(r))
        return [_state_of(i, points[i]) for i in chosen if i in points]


def _utc(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def _from_row(r: dict) -> tuple[Alert, Transition]:
    """(alert, change) of one stored point (a row of ``SELECT *``)."""
    channel = r.get("channel")
    alert = Alert(enterprise=r["enterprise"], rule=r["rule"], shift_date=r["shift_date"],
                  profile=r["profile"], severity=r["severity"],
                  text_zh=decode_text(r["text_zh"]), text_en=decode_text(r["text_en"]),
                  evidence=json.loads(r["evidence"]), raised_ns=int(r["raised_ns"]),
                  meter=r.get("meter") or None,
                  channel=None if channel in (None, "") else int(channel),
                  job=r.get("job") or None, occurrence=int(r.get("occurrence") or 0),
                  worker=r.get("worker") or None)
    if alert.id != r["id"]:
        log.warning("stored alert %s does not hash to its id (computed %s): its point was "
                    "edited", r["id"], alert.id)
    change = Transition(r["state"], int(r["time"]), r.get("who") or "",
                        decode_text(r.get("note") or ""))
    return alert, change


def _state_of(alert_id: str, points: Iterable[tuple[Alert, Transition]]) -> AlertState:
    """The current state from an alert's stored points (earliest point of each state)."""
    first: dict[str, tuple[Alert, Transition]] = {}
    for alert, change in sorted(points, key=lambda p: p[1].time_ns):
        if change.state in _RANK:  # a point with another state tag was not written here
            first.setdefault(change.state, (alert, change))
    if not first:
        raise UnknownAlert(f"no alert {alert_id} in the store")
    current = max(first, key=_RANK.__getitem__)
    alert = (first.get(OPEN) or first[current])[0]
    opened = first[OPEN][1].time_ns if OPEN in first else alert.raised_ns
    extra: dict[str, object] = {"state": current, "opened_ns": opened}
    for s, prefix in ((ACKNOWLEDGED, "acknowledged"), (RESOLVED, "resolved")):
        if s in first:
            t = first[s][1]
            extra.update({f"{prefix}_ns": t.time_ns, f"{prefix}_by": t.who,
                          f"{prefix}_note": t.note})
    return AlertState(**{f.name: getattr(alert, f.name) for f in dataclasses.fields(Alert)},
                      **extra)


# ---------------------------------------------------------------------------- publisher
def mqtt_publisher(endpoint, *, timeout: float = 10.0, client_id: str | None = None
                   ) -> tuple[Callable[[str, bytes], None], Callable[[], None]]:
    """``(publish, close)`` over one paho-mqtt 2 MQTT v5 session with ``endpoint``
    (:class:`tingbao.collector.registry.connect.MqttEndpoint`: host, port, the
    ``analysis`` account, TLS with ``ca_file`` when given).

    The session connects in the background and reconnects by itself (1–30 s apart), so a
    broker that is down when the service starts is no error. ``publish(topic, payload)``
    waits up to ``timeout`` seconds for the connection, sends the message with QoS 1 (not
    retained) and waits up to ``timeout`` seconds for its PUBACK; it returns when the broker
    took the message, and raises :class:`PublishError` when the connection did not come up
    (or was refused: the reason is in the text), the broker refused the message (PUBACK
    reason ≥ 128, e.g. 135 not authorized) or no PUBACK came. One message at a time, so
    subscribers see changes in the order they were made. ``close()`` disconnects."""
    from paho.mqtt import client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=client_id or f"tingbao-alerts-{secrets.token_hex(4)}",
                         protocol=mqtt.MQTTv5)
    if endpoint.username is not None:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.ca_file:
        client.tls_set(ca_certs=endpoint.ca_file)
    client.reconnect_delay_set(1, 30)
    cond = threading.Condition()
    status: dict = {"connected": False, "refused": None}
    acks: dict[int, object] = {}  # mid → PUBACK reason code
    abandoned: set[int] = set()
    lock = threading.Lock()  # one publish at a time

    def on_connect(c, userdata, flags, reason_code, properties):
        with cond:
            if reason_code.is_failure:
                status["refused"] = str(reason_code)
                log.error("broker %s:%s refused the alerts publisher: %s", endpoint.host,
                          endpoint.port, reason_code)
            else:
                status.update(connected=True, refused=None)
            cond.notify_all()

    def on_disconnect(c, userdata, flags, reason_code, properties):
        with cond:
            status["connected"] = False
            cond.notify_all()

    def on_publish(c, userdata, mid, reason_code, properties):
        with cond:
            if mid in abandoned:  # its publish() gave up waiting
                abandoned.discard(mid)
            else:
                acks[mid] = reason_code
            cond.notify_all()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish
    client.connect_async(endpoint.host, endpoint.port, keepalive=60)
    client.loop_start()
    where = f"{endpoint.host}:{endpoint.port}"

    def publish(topic: str, data: bytes) -> None:
        with lock:
            with cond:
                if not cond.wait_for(lambda: status["connected"], timeout):
                    why = f" (refused: {status['refused']})" if status["refused"] else ""
                    raise PublishError(f"not connected to the MQTT broker {where} within "
                                       f"{timeout:g} s{why}")
            # not under ``cond``: paho calls on_publish holding its own message lock, which
            # client.publish takes too
            info = client.publish(topic, data, qos=1, retain=False)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise PublishError(f"paho could not send to {where}: "
                                   f"{mqtt.error_string(info.rc)}")
            with cond:  # the PUBACK may be in already: on_publish keeps every mid's answer
                if not cond.wait_for(lambda: info.mid in acks, timeout):
                    abandoned.add(info.mid)
                    raise PublishError(f"no PUBACK from the MQTT broker {where} within "
                                       f"{timeout:g} s for {topic}")
                code = acks.pop(info.mid)
            if getattr(code, "is_failure", False):
                raise PublishError(f"the MQTT broker {where} refused the message on {topic}: "
                                   f"{code} ({getattr(code, 'value', code)})")

    def close() -> None:
        try:
            client.disconnect()
        finally:
            client.loop_stop()

    return publish, close
