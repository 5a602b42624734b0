"""The message contract between edge agents and collectors, version 1 (ARCHITECTURE.md,
"Where is a message validated?").

Topics::

    tingbao/v1/{enterprise}/{site}/{meter}/{kind}     kind in levels, bands, status, events,
                                                      protection
    tingbao/v1/{enterprise}/{site}/{meter}/receipts   collector → that meter's agent
    tingbao/v1/{enterprise}/alerts
    tingbao/v1/{enterprise}/fittests                  a fit-test system → analysis

Payloads are UTF-8 JSON objects with a ``schema`` of the form ``tingbao.<kind>/<version>``, the
``meter`` id (which must equal the topic's), and for interval records the interval start in UTC
nanoseconds ``start_ns``, its length ``duration_s`` and a per-meter, monotonically increasing
sequence number ``seq``. An interval is identified by (meter, channel, start_ns): re-sending it
overwrites the same InfluxDB point, so retries never double-count exposure.

Levels are dB re 20 µPa (``null`` when the interval had no valid audio), ``ea`` is the
A-weighted sound exposure in Pa²·s (energy adds; decibels do not), ``coverage`` the seconds
of valid audio in the interval.

Impulse counts (optional, per channel): ``"impulses": {"thresholds_db": [120, 130, 135,
137, 140], "counts": [3, 1, 0, 0, 0]}`` — the number of C-weighted peak events that started
in the interval at or above each threshold (dB re 20 µPa; the counting rule is in
:mod:`tingbao.edge.impulses`: an impulse starts at the first sample with |p_C| ≥ threshold
after at least the refractory time, 0.5 s by default, below it). ``thresholds_db`` holds
1 … :data:`MAX_IMPULSE_THRESHOLDS` strictly increasing numbers within
:data:`LEVEL_RANGE_DB`, each a multiple of 0.1 dB (:func:`check_impulse_thresholds`);
``counts`` as many integers 0 … :data:`MAX_IMPULSES_PER_S` × ``duration_s`` + 1. A payload
without ``impulses`` (an older agent, counting switched off, an interval without valid audio)
is valid; the collector stores each count as the integer field ``imp_<threshold>``
(``imp_120``, ``imp_137p5``: :func:`tingbao.collector.schema.impulse_field`).

A ``levels`` message holds one channel (``channel`` and the level fields at the top) or, from
a multichannel device, every channel of one interval: ``channels`` is a list of 1–64 objects,
each with ``channel``, ``ea``, ``coverage``, ``overload`` and the level fields, beside the
shared ``seq``, ``start_ns``, ``duration_s`` and ``calibrated``. The two forms store the same
points (one per channel); the second costs the broker and the collector one message per
interval instead of one per channel. :meth:`Message.records` gives either as flat records.

:func:`validate` is what a collector runs on every message: it returns a normalised
:class:`Message` or raises :class:`ContractError` whose text says what is wrong. It never
trusts the payload: size, JSON, types, finite numbers, plausible ranges, known schema,
safe identifiers and timestamps are all checked.

**Protection** (``tingbao/v1/{enterprise}/{site}/{meter}/protection``, schema
``tingbao.protection/1``): one interval of a two-microphone agent measuring a hearing
protector at the ear (:mod:`tingbao.edge.protection`)::

    {"schema": "tingbao.protection/1", "meter": "ear-07", "seq": 12,
     "start_ns": 1764633600000000000, "duration_s": 1.0, "calibrated": true,
     "worker": "w-0042", "protector": "foam-plug-a", "coverage": 1.0,
     "outer_laeq": 95.1, "inner_laeq": 68.3, "att_a": 26.8, "required_db": 15.0,
     "state": "worn", "worn_s": 1.0, "assessed_s": 1.0,
     "bands": {"fc": [63, 125, 250, 500, 1000, 2000, 4000, 8000],
               "att": [20.1, 20.3, 21.0, 22.4, 25.9, 33.0, 38.2, 41.0]}}

``worker`` and ``protector`` are ids (the worker a pseudonym); levels in dB re 20 µPa within
:data:`LEVEL_RANGE_DB` or ``null``; ``att_a`` (= outer_laeq − inner_laeq within 0.02 dB when
all three are given) and the band attenuations in :data:`ATTENUATION_RANGE_DB` or ``null``;
``required_db`` 0 … 60; ``state`` one of :data:`PROTECTION_STATES`; the seconds satisfy
0 ≤ ``worn_s`` ≤ ``assessed_s`` ≤ ``coverage`` ≤ ``duration_s``, with ``worn_s`` =
``assessed_s`` for worn and voice, ``worn_s`` = 0 for removed and poor_fit, ``assessed_s``
= 0 for quiet and no_audio, and the three levels given whenever the state was assessed.
``bands`` holds two arrays of equal length 1 … 10: ``fc`` the octave bands' nominal
frequencies (Hz, from :data:`OCTAVE_BANDS_HZ`, strictly increasing) and ``att`` their
attenuations. :func:`protection_payload` builds one. Protection shares the meter's ``seq``
with levels and bands and is receipted like them.

**Receipts** (``tingbao/v1/{enterprise}/{site}/{meter}/receipts``, schema
``tingbao.receipts/1``) go the other way: a collector publishes one (QoS 1, not retained) per
meter per batch it stored, after InfluxDB accepted the batch and the batch was
acknowledged. They are not data: :data:`KINDS` (what devices publish and collectors store)
does not hold ``receipts``; only collectors may write the topic and only the meter itself may
read it (the stack's ACL). Payload::

    {"schema": "tingbao.receipts/1", "meter": "m1", "time_ns": 1764633600000000000,
     "collector": "tingbao-collector-1", "seqs": [[1, 40], [42, 42]], "refused": [[41, 41]]}

``seqs`` are inclusive ranges of the meter's ``seq`` numbers (levels and bands share one
sequence per meter) whose messages are now stored in InfluxDB; ``refused`` (optional) the
ranges whose messages the collector refused and stored as dead letters (with their raw
payload): they will never be stored as data, so the agent may drop them instead of resending
them forever. Both lists are sorted, their ranges do not overlap (within a list or across
the two), every bound is an integer 1 … 2⁶³−1 with first ≤ last, and together they hold 1 …
:data:`MAX_RECEIPT_RANGES` ranges. :func:`receipts_payload` builds one,
:func:`validate_receipts` checks one (what an agent runs on every receipt), and
:func:`seq_ranges` merges seqs into ranges.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time

VERSION = 1
TOPIC_ROOT = "tingbao/v1"
KINDS = ("levels", "bands", "status", "events", "protection")
"""What devices publish and collectors store (``receipts`` is not one of them)."""
RECEIPTS = "receipts"
"""The kind of the receipts topic (collector → agent)."""
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_RECEIPT_RANGES = 1000
"""Most ranges (``seqs`` and ``refused`` together) in one receipt; a collector splits
larger ones. 1000 ranges of 19-digit bounds stay under :data:`MAX_PAYLOAD_BYTES`."""

ID_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # \Z: no trailing newline
"""Enterprise, site and meter ids: 1–64 of letters, digits, ``_ . -``, not starting with a
symbol. Excludes MQTT wildcards and separators, spaces, commas, quotes, ``=`` and newlines,
so an id is safe as a topic level, a file name and an InfluxDB tag value."""

LEVEL_FIELDS = ("laeq", "lceq", "lcpeak", "lzpeak", "lafmax", "lasmax", "lafmin",
                "laf5", "laf10", "laf50", "laf90", "laf95")
"""Level fields of a ``levels`` record, dB re 20 µPa."""

LEVEL_RANGE_DB = (0.0, 200.0)
"""Plausible range of any level, dB re 20 µPa (below the threshold of any microphone chain
or above the pressure of a detonation at the ear means a broken chain or a forged message)."""

IMPULSE_THRESHOLDS_DB = (120.0, 130.0, 135.0, 137.0, 140.0)
"""Default impulse thresholds of the edge, dB re 20 µPa C-weighted peak (the GBZ 2.2-2007
peak limits 120, 130, 140 and the EU 2003/10/EC peak action values 135, 137); the counts at
these thresholds are also summed into the minute rollups."""
MAX_IMPULSE_THRESHOLDS = 16
"""Most impulse thresholds of one channel record."""
MAX_IMPULSES_PER_S = 100
"""Impulses can start at most once per refractory time (≥ 0.01 s at the edge): a count
above this rate × ``duration_s`` + 1 is forged or broken."""

PROTECTION_STATES = ("worn", "removed", "poor_fit", "voice", "quiet", "no_audio")
"""States of a ``protection`` interval (decided in :mod:`tingbao.edge.protection`)."""
ASSESSED_STATES = ("worn", "voice", "removed", "poor_fit")
"""Protection states whose valid seconds count as assessed (``assessed_s`` = coverage; the
others, quiet and no_audio, have ``assessed_s`` = 0)."""
WORN_STATES = ("worn", "voice")
"""Protection states whose assessed seconds all count as worn (``worn_s`` = ``assessed_s``;
the other assessed states have ``worn_s`` = 0)."""
ATTENUATION_RANGE_DB = (-60.0, 100.0)
"""Plausible measured attenuation outer − inner, dB: bone conduction caps what any protector
can achieve near 40–50 dB, and a voice or the open ear's resonance makes the inner level at
most some tens of dB higher than the outer one; beyond is a broken chain or a forgery."""
OCTAVE_BANDS_HZ = (31.5, 63.0, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0)
"""Nominal octave-band midband frequencies a ``protection`` record may carry, Hz."""

MAX_EA = (20e-6) ** 2 * 10 ** (LEVEL_RANGE_DB[1] / 10) * 60.0
"""Largest plausible A-weighted exposure of one interval: 200 dB for 60 s, Pa²·s."""

EARLIEST_NS = 946_684_800_000_000_000  # 2000-01-01T00:00:00Z
FUTURE_TOLERANCE_S = 300.0
"""How far in the future an interval may start before it is refused (clock skew), seconds."""


class ContractError(ValueError):
    """A message that breaks the contract; the text is the reason recorded in the dead
    letter."""


def check_id(value, what: str = "id") -> str:
    """Return ``value`` if it is a safe id (:data:`ID_PATTERN`), else raise ContractError."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        shown = repr(value)[:80]
        raise ContractError(f"{what} {shown} is not a valid id (1-64 of A-Z a-z 0-9 _ . -)")
    return value


def check_impulse_thresholds(values) -> tuple[float, ...]:
    """``values`` as a tuple of floats if they are valid impulse thresholds (dB re 20 µPa):
    0 … :data:`MAX_IMPULSE_THRESHOLDS` numbers (not booleans), finite, within
    :data:`LEVEL_RANGE_DB`, each a multiple of 0.1 dB (so that each has its own field name),
    strictly increasing; else raise ContractError saying why. An empty sequence is valid here
    (counting switched off); a payload's ``thresholds_db`` must hold at least one."""
    if not isinstance(values, list | tuple):
        raise ContractError("impulse thresholds must be a list of numbers (dB)")
    if len(values) > MAX_IMPULSE_THRESHOLDS:
        raise ContractError(f"{len(values)} impulse thresholds: at most "
                            f"{MAX_IMPULSE_THRESHOLDS}")
    out = []
    lo, hi = LEVEL_RANGE_DB
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ContractError(f"impulse threshold {str(v)[:40]!r} is not a number")
        v = float(v)
        if not math.isfinite(v):
            raise ContractError(f"impulse threshold {v!r} is not finite")
        if not lo <= v <= hi:
            raise ContractError(f"impulse threshold {v:g} dB is outside {lo:g}..{hi:g} dB")
        if abs(v * 10.0 - round(v * 10.0)) > 1e-6:
            raise ContractError(f"impulse threshold {v!r} dB is not a multiple of 0.1 dB")
        if out and v <= out[-1]:
            raise ContractError("impulse thresholds must be strictly increasing, got "
                                f"{out[-1]:g} then {v:g}")
        out.append(round(v, 1))
    return tuple(out)


def topic(enterprise: str, site: str, meter: str, kind: str) -> str:
    """The topic of a meter's messages of ``kind``."""
    if kind not in KINDS:
        raise ContractError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    return "/".join([TOPIC_ROOT, check_id(enterprise, "enterprise"), check_id(site, "site"),
                     check_id(meter, "meter"), kind])


def receipts_topic(enterprise: str, site: str, meter: str) -> str:
    """The topic of a meter's receipts (collectors write it, only that meter reads it)."""
    return "/".join([TOPIC_ROOT, check_id(enterprise, "enterprise"), check_id(site, "site"),
                     check_id(meter, "meter"), RECEIPTS])


def alerts_topic(enterprise: str) -> str:
    """The topic of an enterprise's alerts."""
    return f"{TOPIC_ROOT}/{check_id(enterprise, 'enterprise')}/alerts"


FIT_TESTS = "fittests"
"""Last level of the topic of an enterprise's individual fit-test records (one JSON record
per message, ``analysis/fit_test_import.py``)."""
FIT_TESTS_TOPIC_FILTER = f"{TOPIC_ROOT}/+/{FIT_TESTS}"
"""The topic filter of every enterprise's fit-test records (one level: the enterprise)."""


def fit_tests_topic(enterprise: str) -> str:
    """The topic of an enterprise's fit-test records: ``tingbao/v1/{enterprise}/fittests``."""
    return f"{TOPIC_ROOT}/{check_id(enterprise, 'enterprise')}/{FIT_TESTS}"


def fit_tests_enterprise(name: str) -> str | None:
    """The enterprise part of a fit-test topic (not checked as an id), or None when ``name``
    is not ``tingbao/v1/<one level>/fittests``."""
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) == 4 and "/".join(parts[:2]) == TOPIC_ROOT and parts[3] == FIT_TESTS:
        return parts[2]
    return None


@dataclasses.dataclass(frozen=True)
class TopicParts:
    enterprise: str
    site: str
    meter: str
    kind: str


def parse_topic(name: str, kinds: tuple[str, ...] = KINDS) -> TopicParts:
    """Split a meter topic into its parts, or raise ContractError (its kind must be one of
    ``kinds``)."""
    if not isinstance(name, str) or len(name) > 512:
        raise ContractError("topic is not a string of at most 512 characters")
    parts = name.split("/")
    if len(parts) != 6 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise ContractError(f"topic {name[:120]!r} is not {TOPIC_ROOT}/<enterprise>/<site>/"
                            "<meter>/<kind>")
    if parts[5] not in kinds:
        raise ContractError(f"topic kind {parts[5][:40]!r} is not one of {', '.join(kinds)}")
    return TopicParts(check_id(parts[2], "enterprise"), check_id(parts[3], "site"),
                      check_id(parts[4], "meter"), parts[5])


# ---------------------------------------------------------------------------------- building
def _channel_part(record: dict) -> dict:
    """The per-channel fields of a ``levels`` payload from one record of
    :meth:`IntervalLevels.records`."""
    out = {"channel": int(record.get("channel", 0)), "ea": record["ea"],
           "coverage": float(record["coverage"]), "overload": bool(record["overload"])}
    for k in LEVEL_FIELDS:
        out[k] = record.get(k)
    imp = record.get("impulses")
    if imp is not None:
        out["impulses"] = {"thresholds_db": [float(t) for t in imp["thresholds_db"]],
                           "counts": [int(c) for c in imp["counts"]]}
    return out


def levels_payload(record: dict, *, meter: str, seq: int, start_ns: int,
                   calibrated: bool = True) -> dict:
    """A ``levels`` payload from one record of :meth:`IntervalLevels.records` (whose ``start``
    is relative) with the absolute interval start ``start_ns`` (UTC ns) and sequence ``seq``."""
    return {"schema": f"tingbao.levels/{VERSION}", "meter": meter, "seq": int(seq),
            "start_ns": int(start_ns), "duration_s": float(record["duration"]),
            "calibrated": bool(calibrated), **_channel_part(record)}


def levels_payload_channels(records: list[dict], *, meter: str, seq: int, start_ns: int,
                            calibrated: bool = True) -> dict:
    """One ``levels`` payload for every channel of an interval (the multichannel form), from
    the records of one interval of :meth:`IntervalLevels.records`."""
    if not records:
        raise ValueError("no records")
    return {"schema": f"tingbao.levels/{VERSION}", "meter": meter, "seq": int(seq),
            "start_ns": int(start_ns), "duration_s": float(records[0]["duration"]),
            "calibrated": bool(calibrated), "channels": [_channel_part(r) for r in records]}


def bands_payload(record: dict, *, meter: str, seq: int, start_ns: int, fraction: int) -> dict:
    """A ``bands`` payload: LZeq per band (dB re 20 µPa) keyed by nominal midband label."""
    return {"schema": f"tingbao.bands/{VERSION}", "meter": meter, "seq": int(seq),
            "channel": int(record.get("channel", 0)), "start_ns": int(start_ns),
            "duration_s": float(record["duration"]), "fraction": int(fraction),
            "bands": dict(record["bands"])}


def protection_payload(record: dict, *, meter: str, seq: int, start_ns: int, worker: str,
                       protector: str, calibrated: bool = True) -> dict:
    """A ``protection`` payload from one record of
    :meth:`tingbao.edge.protection.ProtectionIntervals.records` (whose ``start`` is relative)
    with the absolute interval start ``start_ns`` (UTC ns), ``seq``, the worker's pseudonym
    and the protector's id."""
    return {"schema": f"tingbao.protection/{VERSION}", "meter": meter, "seq": int(seq),
            "start_ns": int(start_ns), "duration_s": float(record["duration"]),
            "calibrated": bool(calibrated), "worker": check_id(worker, "worker"),
            "protector": check_id(protector, "protector"),
            "coverage": float(record["coverage"]), "outer_laeq": record["outer_laeq"],
            "inner_laeq": record["inner_laeq"], "att_a": record["att_a"],
            "required_db": float(record["required_db"]), "state": str(record["state"]),
            "worn_s": float(record["worn_s"]), "assessed_s": float(record["assessed_s"]),
            "bands": {"fc": [float(f) for f in record["bands"]["fc"]],
                      "att": list(record["bands"]["att"])}}


def status_payload(*, meter: str, time_ns: int, online: bool, **extra) -> dict:
    """A ``status`` payload: ``online``, and e.g. ``queue_depth``, ``calibration``,
    ``input_overflows``, ``clock_offset_s``."""
    return {"schema": f"tingbao.status/{VERSION}", "meter": meter, "time_ns": int(time_ns),
            "online": bool(online), **extra}


def seq_ranges(seqs) -> list[list[int]]:
    """Merge seq numbers into sorted inclusive ranges: ``[5, 1, 2, 3, 3]`` → ``[[1, 3],
    [5, 5]]``."""
    out: list[list[int]] = []
    for s in sorted(set(int(x) for x in seqs)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


def receipts_payload(*, meter: str, time_ns: int, collector: str, seqs, refused=()) -> dict:
    """A ``receipts`` payload: ``seqs`` (and ``refused``) as seq numbers or ranges are merged
    with :func:`seq_ranges`; ``refused`` is left out when empty. At most
    :data:`MAX_RECEIPT_RANGES` ranges (split the seqs over several receipts beyond)."""
    def ranges(x):
        x = list(x)
        if x and isinstance(x[0], list | tuple):
            return seq_ranges(s for a, b in x for s in range(int(a), int(b) + 1))
        return seq_ranges(x)

    p = {"schema": f"tingbao.{RECEIPTS}/{VERSION}", "meter": check_id(meter, "meter"),
         "time_ns": int(time_ns), "collector": check_id(collector, "collector"),
         "seqs": ranges(seqs)}
    bad = ranges(refused)
    if bad:
        p["refused"] = bad
    if len(p["seqs"]) + len(bad) > MAX_RECEIPT_RANGES:
        raise ValueError(f"{len(p['seqs']) + len(bad)} ranges: at most {MAX_RECEIPT_RANGES} "
                         "in one receipt")
    return p


def encode(payload: dict) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are refused (they are not JSON)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


# -------------------------------------------------------------------------------- validation
@dataclasses.dataclass(frozen=True)
class Message:
    """A validated message: where it came from and its normalised payload."""

    topic: TopicParts
    schema: str
    payload: dict

    def records(self) -> list[dict]:
        """The ``levels`` records of the message, one flat dict per channel (the payload itself
        for the one-channel form)."""
        p = self.payload
        if "channels" not in p:
            return [p]
        shared = {k: v for k, v in p.items() if k != "channels"}
        return [{**shared, **ch} for ch in p["channels"]]


def _number(p: dict, key: str, lo: float, hi: float, *, nullable: bool = False,
            integer: bool = False):
    if key not in p:
        raise ContractError(f"field {key!r} is missing")
    v = p[key]
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ContractError(f"field {key!r} must be a number, got {type(v).__name__}")
    if integer and not isinstance(v, int):
        raise ContractError(f"field {key!r} must be an integer")
    if isinstance(v, float) and not math.isfinite(v):
        raise ContractError(f"field {key!r} is not finite")
    if not lo <= v <= hi:
        lo_s, hi_s = (f"{b:.0f}" if abs(b) >= 1e6 else f"{b:g}" for b in (lo, hi))
        raise ContractError(f"field {key!r} = {v!r} is outside the plausible range "
                            f"{lo_s}..{hi_s}")
    return v


def _bool(p: dict, key: str) -> bool:
    v = p.get(key)
    if not isinstance(v, bool):
        raise ContractError(f"field {key!r} must be true or false")
    return v


def _interval(p: dict, now_ns: int, *, channel: bool = True) -> None:
    _number(p, "seq", 0, 2**63 - 1, integer=True)
    if channel:
        _number(p, "channel", 0, 63, integer=True)
    _number(p, "start_ns", EARLIEST_NS, now_ns + FUTURE_TOLERANCE_S * 1e9, integer=True)
    _number(p, "duration_s", 0.1 - 1e-9, 60.0 + 1e-9)


_CHANNEL_LEVEL_KEYS = frozenset({"channel", "ea", "coverage", "overload", "impulses",
                                 *LEVEL_FIELDS})
_LEVELS_KEYS = frozenset({"schema", "meter", "seq", "start_ns", "duration_s", "calibrated",
                          *_CHANNEL_LEVEL_KEYS})
_LEVELS_MULTI_KEYS = frozenset({"schema", "meter", "seq", "start_ns", "duration_s",
                                "calibrated", "channels"})


def _channel_levels(c: dict, duration_s: float) -> None:
    """The per-channel part of a ``levels`` record (at the top, or one of ``channels``)."""
    _number(c, "coverage", 0.0, duration_s + 1e-6)
    _number(c, "ea", 0.0, MAX_EA, nullable=True)
    for k in LEVEL_FIELDS:
        _number(c, k, *LEVEL_RANGE_DB, nullable=True)
    _bool(c, "overload")
    if "impulses" in c:
        _impulses(c["impulses"], duration_s)


def _impulses(v, duration_s: float) -> None:
    """The optional ``impulses`` object of a channel record (see the module docstring)."""
    if not isinstance(v, dict) or set(v) != {"thresholds_db", "counts"}:
        raise ContractError("field 'impulses' must be an object with exactly "
                            "'thresholds_db' and 'counts'")
    try:
        thresholds = check_impulse_thresholds(v["thresholds_db"])
    except ContractError as e:
        raise ContractError(f"field 'impulses': {e}") from None
    if not thresholds:
        raise ContractError("field 'impulses': 'thresholds_db' is empty")
    counts = v["counts"]
    if not isinstance(counts, list) or len(counts) != len(thresholds):
        raise ContractError(f"field 'impulses': 'counts' must be a list of "
                            f"{len(thresholds)} integers, one per threshold")
    most = math.floor(MAX_IMPULSES_PER_S * duration_s) + 1
    for t, n in zip(thresholds, counts, strict=True):
        if type(n) is not int:
            raise ContractError(f"field 'impulses': count at {t:g} dB "
                                f"{str(n)[:40]!r} is not an integer")
        if not 0 <= n <= most:
            raise ContractError(f"field 'impulses': count at {t:g} dB = {n} is outside "
                                f"0..{most} (at most {MAX_IMPULSES_PER_S} per second)")


def _levels(p: dict, now_ns: int) -> frozenset:
    """Check a ``levels`` payload of either form; return its allowed top-level keys."""
    if "channels" not in p:
        _interval(p, now_ns)
        _channel_levels(p, p["duration_s"])
        _bool(p, "calibrated")
        return _LEVELS_KEYS
    _interval(p, now_ns, channel=False)
    _bool(p, "calibrated")
    chans = p["channels"]
    if not isinstance(chans, list) or not 0 < len(chans) <= 64:
        raise ContractError("field 'channels' must be a list of 1-64 channel records")
    seen = set()
    for i, c in enumerate(chans):
        if not isinstance(c, dict):
            raise ContractError(f"channels[{i}] is not an object")
        try:
            ch = _number(c, "channel", 0, 63, integer=True)
            if ch in seen:
                raise ContractError(f"field 'channel' = {ch} appears twice")
            seen.add(ch)
            _channel_levels(c, p["duration_s"])
        except ContractError as e:
            raise ContractError(f"channels[{i}]: {e}") from None
        extra = set(c) - _CHANNEL_LEVEL_KEYS
        if extra:
            raise ContractError(f"channels[{i}]: unknown field(s) {sorted(extra)[:5]!r}")
    return _LEVELS_MULTI_KEYS


_PROTECTION_KEYS = frozenset({"schema", "meter", "seq", "start_ns", "duration_s", "calibrated",
                              "worker", "protector", "coverage", "outer_laeq", "inner_laeq",
                              "att_a", "required_db", "state", "worn_s", "assessed_s",
                              "bands"})
_SECONDS_TOLERANCE = 1e-6


def _protection(p: dict, now_ns: int) -> None:
    """Check a ``protection`` payload (see the module docstring)."""
    _interval(p, now_ns, channel=False)
    _bool(p, "calibrated")
    check_id(p.get("worker"), "worker")
    check_id(p.get("protector"), "protector")
    duration = p["duration_s"]
    tol = _SECONDS_TOLERANCE
    coverage = _number(p, "coverage", 0.0, duration + tol)
    outer = _number(p, "outer_laeq", *LEVEL_RANGE_DB, nullable=True)
    inner = _number(p, "inner_laeq", *LEVEL_RANGE_DB, nullable=True)
    att = _number(p, "att_a", *ATTENUATION_RANGE_DB, nullable=True)
    _number(p, "required_db", 0.0, 60.0)
    state = p.get("state")
    if not isinstance(state, str) or state not in PROTECTION_STATES:
        raise ContractError(f"field 'state' = {str(state)[:40]!r} is not one of "
                            f"{', '.join(PROTECTION_STATES)}")
    worn = _number(p, "worn_s", 0.0, duration + tol)
    assessed = _number(p, "assessed_s", 0.0, duration + tol)
    if not worn <= assessed + tol or not assessed <= coverage + tol:
        raise ContractError(f"seconds must satisfy worn_s <= assessed_s <= coverage, got "
                            f"{worn!r}, {assessed!r}, {coverage!r}")
    assessed_state = state in ASSESSED_STATES
    if state in WORN_STATES and abs(worn - assessed) > tol:
        raise ContractError(f"state {state!r} counts every assessed second as worn, got "
                            f"worn_s {worn!r} and assessed_s {assessed!r}")
    if assessed_state and state not in WORN_STATES and worn > tol:
        raise ContractError(f"state {state!r} has no worn seconds, got worn_s {worn!r}")
    if not assessed_state and assessed > tol:
        raise ContractError(f"state {state!r} is not assessed, got assessed_s {assessed!r}")
    if assessed_state and None in (outer, inner, att):
        raise ContractError(f"state {state!r} needs outer_laeq, inner_laeq and att_a")
    if None not in (outer, inner, att) and abs(outer - inner - att) > 0.02:
        raise ContractError(f"att_a = {att!r} is not outer_laeq - inner_laeq = "
                            f"{outer - inner:.2f}")
    bands = p.get("bands")
    if not isinstance(bands, dict) or set(bands) != {"fc", "att"}:
        raise ContractError("field 'bands' must be an object with exactly 'fc' and 'att'")
    fc, values = bands["fc"], bands["att"]
    if not isinstance(fc, list) or not 0 < len(fc) <= len(OCTAVE_BANDS_HZ):
        raise ContractError(f"field 'bands': 'fc' must be a list of 1-{len(OCTAVE_BANDS_HZ)} "
                            "octave-band frequencies")
    if not isinstance(values, list) or len(values) != len(fc):
        raise ContractError(f"field 'bands': 'att' must be a list of {len(fc)} values, one "
                            "per band of 'fc'")
    for f in fc:
        if isinstance(f, bool) or not isinstance(f, int | float) or f not in OCTAVE_BANDS_HZ:
            raise ContractError(f"field 'bands': {str(f)[:20]!r} is not an octave band's "
                                "nominal frequency in Hz")
    if any(b <= a for a, b in zip(fc, fc[1:], strict=False)):
        raise ContractError("field 'bands': 'fc' must be strictly increasing")
    for f, v in zip(fc, values, strict=True):
        try:
            _number({"att": v}, "att", *ATTENUATION_RANGE_DB, nullable=True)
        except ContractError as e:
            raise ContractError(f"field 'bands': band {f:g} Hz: {e}") from None


def validate(topic_name: str, raw: bytes, now_ns: int | None = None) -> Message:
    """Check one MQTT message against the contract; return it normalised or raise
    :class:`ContractError` with the reason."""
    parts = parse_topic(topic_name)
    p = _json_object(raw)
    schema = p.get("schema")
    if not isinstance(schema, str):
        raise ContractError("field 'schema' is missing")
    kind, _, version = schema.removeprefix("tingbao.").partition("/")
    if not schema.startswith("tingbao.") or kind not in KINDS:
        raise ContractError(f"unknown schema {schema[:60]!r}")
    if version != str(VERSION):
        raise ContractError(f"unsupported schema version {schema[:60]!r} (this collector "
                            f"reads version {VERSION})")
    if kind != parts.kind:
        raise ContractError(f"schema {schema!r} sent on a {parts.kind!r} topic")
    if p.get("meter") != parts.meter:
        raise ContractError(f"payload meter {str(p.get('meter'))[:80]!r} does not match the "
                            f"topic's {parts.meter!r}")
    now_ns = time.time_ns() if now_ns is None else now_ns
    if kind == "levels":
        allowed = _levels(p, now_ns)
    elif kind == "bands":
        _interval(p, now_ns)
        if type(p.get("fraction")) is not int or p["fraction"] not in (1, 3):
            raise ContractError("field 'fraction' must be 1 or 3")
        bands = p.get("bands")
        if not isinstance(bands, dict) or not 0 < len(bands) <= 64:
            raise ContractError("field 'bands' must be an object of 1-64 bands")
        for label in bands:
            if not re.fullmatch(r"[1-9][0-9]{0,4}(\.[0-9])?", label):
                raise ContractError(f"band label {label[:20]!r} is not a frequency in Hz")
            _number(bands, label, *LEVEL_RANGE_DB, nullable=True)
        allowed = {"schema", "meter", "seq", "channel", "start_ns", "duration_s", "fraction",
                   "bands"}
    elif kind == "protection":
        _protection(p, now_ns)
        allowed = _PROTECTION_KEYS
    elif kind == "status":
        _number(p, "time_ns", EARLIEST_NS, now_ns + FUTURE_TOLERANCE_S * 1e9, integer=True)
        _bool(p, "online")
        for k in ("queue_depth", "input_overflows"):
            if k in p:
                _number(p, k, 0, 2**63 - 1, integer=True)
        if "clock_offset_s" in p:
            _number(p, "clock_offset_s", -1e9, 1e9)
        allowed = None  # status may carry extra, small, documented fields
    else:  # events
        _number(p, "time_ns", EARLIEST_NS, now_ns + FUTURE_TOLERANCE_S * 1e9, integer=True)
        if not isinstance(p.get("event"), str) or not ID_PATTERN.match(p["event"]):
            raise ContractError("field 'event' must be a short id (1-64 of A-Z a-z 0-9 _ . -)")
        allowed = None
    if allowed is not None:
        extra = set(p) - allowed
        if extra:
            raise ContractError(f"unknown field(s) {sorted(extra)[:5]!r}")
    return Message(parts, schema, p)


MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a payload may have (the contract's own go 3 deep).
Deeper payloads are refused before they are parsed: the JSON decoder recurses once per level,
and a hostile ``[[[[…]]]]`` of thousands of levels, parsed in a service's worker thread,
exhausts its stack (a RecursionError at best; with a garbage-collector callback running at
that depth, a fatal "Cannot recover from stack overflow" that aborts the process)."""

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")


def _too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``raw`` nests arrays/objects deeper than ``limit`` (strings skipped). Cheap:
    a count first; only a payload with more brackets than ``limit`` is looked at, by removing
    its strings, keeping its brackets and peeling the innermost pairs ``limit`` times."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        peeled = _INNERMOST_PAIR.sub(b"", brackets)  # one level per pass, not two
        if peeled == brackets:
            return False  # unbalanced or mixed: the decoder says what is wrong
        brackets = peeled
        if not brackets:
            return False
    return bool(brackets) and (b"[]" in brackets or b"{}" in brackets)


def _json_object(raw) -> dict:
    """The payload as a JSON object (size, UTF-8, nesting, JSON, no NaN), or ContractError."""
    if not isinstance(raw, bytes | bytearray):
        raise ContractError("payload is not bytes")
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if _too_deep(bytes(raw)):
        raise ContractError(f"payload nests arrays or objects deeper than {MAX_JSON_DEPTH} "
                            "levels")
    try:
        p = json.loads(bytes(raw).decode("utf-8"), parse_constant=_refuse_constant)
    except ContractError:  # NaN or Infinity, refused by _refuse_constant
        raise
    except UnicodeDecodeError as e:
        raise ContractError(f"payload is not UTF-8: {e.reason}") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise ContractError(f"payload is not JSON: {str(e)[:120]}") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ContractError(f"payload holds an unreadable number: {str(e)[:120]}") from None
    if not isinstance(p, dict):
        raise ContractError("payload is not a JSON object")
    return p


_RECEIPTS_KEYS = frozenset({"schema", "meter", "time_ns", "collector", "seqs", "refused"})


def _ranges(p: dict, key: str) -> list[tuple[int, int]]:
    v = p[key]
    if not isinstance(v, list):
        raise ContractError(f"field {key!r} must be a list of [first, last] ranges")
    out = []
    for i, r in enumerate(v):
        if not isinstance(r, list) or len(r) != 2:
            raise ContractError(f"{key}[{i}] must be [first, last]")
        for b in r:
            if type(b) is not int or not 1 <= b <= 2**63 - 1:
                raise ContractError(f"{key}[{i}] bound {str(b)[:40]!r} is not an integer "
                                    "1..9223372036854775807")
        if r[0] > r[1]:
            raise ContractError(f"{key}[{i}] = {r!r}: first > last")
        out.append((r[0], r[1]))
    return out


def validate_receipts(topic_name: str, raw: bytes, now_ns: int | None = None) -> Message:
    """Check a receipt (topic ``…/{meter}/receipts``, schema ``tingbao.receipts/1``) as
    strictly as :func:`validate` checks data: size, JSON, schema version, ids, the payload's
    meter equal to the topic's, ``time_ns`` plausible, ``seqs`` / ``refused`` sorted,
    non-overlapping ranges of integers 1 … 2⁶³−1, 1 … :data:`MAX_RECEIPT_RANGES` of them, no
    unknown field. Returns the :class:`Message` (ranges as given) or raises
    :class:`ContractError`."""
    parts = parse_topic(topic_name, (RECEIPTS,))
    p = _json_object(raw)
    schema = p.get("schema")
    if schema != f"tingbao.{RECEIPTS}/{VERSION}":
        raise ContractError(f"schema {str(schema)[:60]!r} is not 'tingbao.{RECEIPTS}/{VERSION}'")
    if p.get("meter") != parts.meter:
        raise ContractError(f"payload meter {str(p.get('meter'))[:80]!r} does not match the "
                            f"topic's {parts.meter!r}")
    now_ns = time.time_ns() if now_ns is None else now_ns
    _number(p, "time_ns", EARLIEST_NS, now_ns + FUTURE_TOLERANCE_S * 1e9, integer=True)
    check_id(p.get("collector"), "collector")
    if "seqs" not in p:
        raise ContractError("field 'seqs' is missing")
    ranges = _ranges(p, "seqs") + (_ranges(p, "refused") if "refused" in p else [])
    if not 0 < len(ranges) <= MAX_RECEIPT_RANGES:
        raise ContractError(f"a receipt holds 1-{MAX_RECEIPT_RANGES} ranges, not "
                            f"{len(ranges)}")
    for key in ("seqs", "refused"):
        own = _ranges(p, key) if key in p else []
        if any(b[0] <= a[1] for a, b in zip(own, own[1:], strict=False)):
            raise ContractError(f"field {key!r}: ranges must be sorted and must not overlap")
    both = sorted(ranges)
    if any(b[0] <= a[1] for a, b in zip(both, both[1:], strict=False)):
        raise ContractError("fields 'seqs' and 'refused' overlap")
    extra = set(p) - _RECEIPTS_KEYS
    if extra:
        raise ContractError(f"unknown field(s) {sorted(extra)[:5]!r}")
    return Message(parts, schema, p)


def _refuse_constant(name: str):
    raise ContractError(f"payload holds {name}, which is not a number in JSON")
