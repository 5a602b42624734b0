"""InfluxDB line protocol: escaping, value formatting, and the points a validated contract
message becomes.

One line is ``measurement[,tag=value...] field=value[,field=value...] time_ns``. What was
checked on InfluxDB 1.6.7 (and is kept to what 2.x/3.x document as well):

* measurement: ``,`` and space are escaped with a backslash; a leading ``#`` would turn the
  line into a comment, so it is refused;
* tag keys, tag values and field keys: ``,``, ``=`` and space are escaped; backslashes are
  written as they are (InfluxDB does not unescape ``\\\\``), which makes a backslash at the end
  of a name or in front of ``,`` ``=`` space ambiguous: such names are refused;
* string field values: in double quotes, with ``"`` and ``\\`` escaped;
* newlines (``\\n``, ``\\r``) end a line and are refused everywhere (1.6.7 happens to accept
  them inside quoted strings; other parsers do not);
* floats are written as Python's shortest round-trip ``repr`` (``1e-10``, ``1.5e+20``): line
  protocol reads exponents and Go's ``ParseFloat`` rounds correctly, so the stored value is
  the same double; NaN and infinities cannot be stored and are refused;
* integers end in ``i`` and must fit int64; booleans are ``true`` / ``false``; the
  timestamp is integer nanoseconds (``precision=ns``);
* ``time`` is not allowed as a tag or field key; an empty tag value is refused (InfluxDB
  would silently drop the tag).

Anything refused raises :class:`LineProtocolError` with the reason; the collector turns it
into a dead letter. Contract messages map to points as follows (identity = measurement, tag
set and timestamp, so a re-delivered message overwrites the same point):

=========  ================  ==========================================  ============
kind       measurement       tags                                        time
=========  ================  ==========================================  ============
levels     ``levels``        enterprise, site, meter, channel            ``start_ns``
bands      ``bands``         enterprise, site, meter, channel            ``start_ns``
status     ``meter_status``  enterprise, site, meter                     ``time_ns``
events     ``meter_events``  enterprise, site, meter                     ``time_ns``
protection ``protection``    enterprise, site, meter, worker             ``start_ns``
=========  ================  ==========================================  ============
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping

from tingbao.edge import contract

from . import schema

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_SERIES_KEY_BYTES = 65_535
"""InfluxDB refuses a measurement plus tag set longer than this."""

MAX_EXTRA_FIELDS = 32
MAX_EXTRA_STRING = 1024
EXTRA_KEY = re.compile(r"\A[A-Za-z][A-Za-z0-9_]{0,63}\Z")
"""Extra fields of ``status`` and ``events`` payloads (the contract lets them carry small,
documented extras) are stored when their key matches this and at most
:data:`MAX_EXTRA_FIELDS` are present; strings are cut to :data:`MAX_EXTRA_STRING`
characters."""

INT_FIELDS = frozenset({"seq", "queue_depth", "input_overflows", "in_flight", "published",
                        "refused"})
"""Counters stored as integers (the edge agent's status counters; an integral float such as
``3.0`` is accepted as 3); every other number is stored as a float, so that ``80`` and
``80.5`` in two messages never make a field-type conflict."""

_NEWLINES = ("\n", "\r")
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})


class LineProtocolError(ValueError):
    """A value that line protocol cannot carry unchanged; the text says which and why."""


def _check_name(value, what: str, specials: str) -> str:
    if not isinstance(value, str):
        raise LineProtocolError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise LineProtocolError(f"{what} is empty")
    if any(c in value for c in _NEWLINES):
        raise LineProtocolError(f"{what} {value[:60]!r} contains a newline")
    if value.endswith("\\") or any(f"\\{c}" in value for c in specials):
        raise LineProtocolError(f"{what} {value[:60]!r} has a backslash at its end or before "
                                f"one of {specials!r}, which line protocol cannot carry")
    _check_utf8(value, what)
    return value


def _check_utf8(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise LineProtocolError(f"{what} {value[:60]!r} is not valid Unicode") from None


def escape_measurement(name: str) -> str:
    """A measurement name escaped for line protocol (``,`` and space)."""
    if not isinstance(name, str):
        raise LineProtocolError(f"measurement must be a string, got {type(name).__name__}")
    return _escape_measurement(name)


@functools.lru_cache(maxsize=4096)
def _escape_measurement(name: str) -> str:
    _check_name(name, "measurement", ", ")
    if name.startswith("#"):
        raise LineProtocolError(f"measurement {name[:60]!r} starts with '#' (a comment line)")
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(name: str, what: str = "key") -> str:
    """A tag key, tag value or field key escaped for line protocol (``,``, ``=``, space)."""
    if not isinstance(name, str):
        raise LineProtocolError(f"{what} must be a string, got {type(name).__name__}")
    return _escape_key(name, what)


@functools.lru_cache(maxsize=65536)  # the same few names recur in every point
def _escape_key(name: str, what: str) -> str:
    return _check_name(name, what, ",= ").translate(_KEY_ESCAPES)


def escape_string(value: str) -> str:
    """A string field value in double quotes, ``"`` and ``\\`` escaped."""
    if not isinstance(value, str):
        raise LineProtocolError(f"string field value must be a string, got "
                                f"{type(value).__name__}")
    if any(c in value for c in _NEWLINES):
        raise LineProtocolError(f"string value {value[:60]!r} contains a newline")
    _check_utf8(value, "string value")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_value(value) -> str:
    """A field value: bool → ``true``/``false``, int → ``123i``, float → shortest round-trip
    decimal, str → quoted string. Raises LineProtocolError for NaN, infinities, integers
    outside int64 and other types."""
    t = type(value)
    if t is float:  # the common case first
        if not math.isfinite(value):
            raise LineProtocolError(f"float {value!r} cannot be stored (not finite)")
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise LineProtocolError(f"integer {value} does not fit in 64 bits")
        return f"{int(value)}i"
    if isinstance(value, float):
        return format_value(float(value))
    if isinstance(value, str):
        return escape_string(value)
    raise LineProtocolError(f"field value of type {type(value).__name__} cannot be stored")


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, object],
         time_ns: int) -> str:
    """One line of line protocol. Tags are sorted by key (what InfluxDB prefers); fields
    whose value is None are left out, and at least one must remain."""
    if isinstance(time_ns, bool) or not isinstance(time_ns, int):
        raise LineProtocolError(f"timestamp must be integer nanoseconds, got {time_ns!r}")
    if not INT64_MIN <= time_ns <= INT64_MAX:
        raise LineProtocolError(f"timestamp {time_ns} does not fit in 64 bits")
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise LineProtocolError(f"tag {key!r} = {value!r}: tag keys and values must be "
                                    "strings")
    series = _series(measurement, tuple(sorted(tags.items())))
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        if key == "time":
            raise LineProtocolError("'time' cannot be a field key")
        parts.append(f"{escape_key(key, 'field key')}={format_value(value)}")
    if not parts:
        raise LineProtocolError(f"point of {measurement!r} has no fields")
    return f"{series} {','.join(parts)} {time_ns}"


@functools.lru_cache(maxsize=65536)
def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """Escaped ``measurement,tag=value,...`` (tags already sorted)."""
    head = [escape_measurement(measurement)]
    for key, value in tags:
        if key == "time":
            raise LineProtocolError("'time' cannot be a tag key")
        head.append(f"{escape_key(key, 'tag key')}={escape_key(value, f'tag {key!r}')}")
    series = ",".join(head)
    if len(series.encode("utf-8")) > MAX_SERIES_KEY_BYTES:
        raise LineProtocolError(f"series key of {len(series)} characters is too long")
    return series


# ------------------------------------------------------------------- contract messages
def _tags(msg: contract.Message, *, channel: int | None = None) -> dict[str, str]:
    t = msg.topic
    tags = {"enterprise": t.enterprise, "site": t.site, "meter": t.meter}
    if channel is not None:
        tags["channel"] = str(int(channel))
    return tags


def _float(value):
    return None if value is None else float(value)


def levels_lines(msg: contract.Message) -> list[str]:
    """The ``levels`` points of a validated levels message, one per channel record: all
    levels, ``ea``, ``coverage``, ``duration_s`` as floats, ``seq`` as integer, ``overload``
    and ``calibrated`` as booleans, and the impulse counts (when the record has
    ``impulses``) as one integer field per threshold (:func:`schema.impulse_field`:
    ``imp_120``, ``imp_137p5``); time = interval start."""
    out = []
    for p in msg.records():
        fields: dict[str, object] = {k: _float(p.get(k)) for k in contract.LEVEL_FIELDS}
        fields.update(ea=_float(p.get("ea")), coverage=_float(p["coverage"]),
                      duration_s=_float(p["duration_s"]), seq=int(p["seq"]),
                      overload=bool(p["overload"]), calibrated=bool(p["calibrated"]))
        imp = p.get("impulses")
        if imp is not None:
            for t, n in zip(imp["thresholds_db"], imp["counts"], strict=True):
                fields[schema.impulse_field(t)] = int(n)
        out.append(line(schema.LEVELS, _tags(msg, channel=p["channel"]), fields,
                        int(p["start_ns"])))
    return out


def band_field(label: str) -> str:
    """The field name of a band label: ``"1000"`` → ``b1000``, ``"31.5"`` → ``b31_5``."""
    return "b" + label.replace(".", "_")


def bands_line(msg: contract.Message) -> str:
    """The ``bands`` point: LZeq per band as ``b<label>`` floats, plus ``seq``,
    ``duration_s`` and ``fraction`` (1 or 3); time = interval start."""
    p = msg.payload
    fields: dict[str, object] = {band_field(k): _float(v) for k, v in p["bands"].items()}
    fields.update(seq=int(p["seq"]), duration_s=_float(p["duration_s"]),
                  fraction=int(p["fraction"]))
    return line(schema.BANDS, _tags(msg, channel=p["channel"]), fields, int(p["start_ns"]))


def _extras(p: dict, skip: set[str]) -> dict[str, object]:
    """Typed fields from the free-form part of a status/events payload."""
    keys = [k for k in p if k not in skip]
    if len(keys) > MAX_EXTRA_FIELDS:
        raise LineProtocolError(f"{len(keys)} extra fields; at most {MAX_EXTRA_FIELDS} are "
                                "stored")
    out: dict[str, object] = {}
    for k in keys:
        if not EXTRA_KEY.match(k):
            raise LineProtocolError(f"extra field name {k[:40]!r} is not a plain name "
                                    "(letter, then letters, digits, _)")
        v = p[k]
        if v is None:
            continue
        if isinstance(v, bool):
            out[k] = v
        elif k in INT_FIELDS and isinstance(v, int | float):
            if isinstance(v, float) and not v.is_integer():
                raise LineProtocolError(f"field {k!r} = {v!r} must be an integer count")
            out[k] = int(v)
        elif isinstance(v, int | float):
            if not math.isfinite(float(v)):
                raise LineProtocolError(f"field {k!r} is not a finite number")
            out[k] = float(v)
        elif isinstance(v, str):
            out[k] = v[:MAX_EXTRA_STRING]
        else:  # objects and arrays: compact JSON text (never holds a raw newline)
            out[k] = json.dumps(v, separators=(",", ":"), ensure_ascii=False,
                                allow_nan=False)[:MAX_EXTRA_STRING]
    return out


def status_line(msg: contract.Message) -> str:
    """The ``meter_status`` point: ``online`` and the payload's other small fields
    (integers for counters, floats for other numbers, strings, JSON text for objects);
    time = ``time_ns``."""
    p = msg.payload
    fields = {"online": bool(p["online"]), **_extras(p, {"schema", "meter", "time_ns",
                                                         "online"})}
    return line(schema.STATUS, _tags(msg), fields, int(p["time_ns"]))


def events_line(msg: contract.Message) -> str:
    """The ``meter_events`` point: ``event`` (string) and the payload's other small fields;
    time = ``time_ns``."""
    p = msg.payload
    fields = {"event": p["event"], **_extras(p, {"schema", "meter", "time_ns", "event"})}
    return line(schema.EVENTS, _tags(msg), fields, int(p["time_ns"]))


def attenuation_field(fc: float) -> str:
    """The field of a band's measured attenuation: 1000 → ``att_1000``, 31.5 → ``att_31p5``
    (:data:`schema.PROTECTION`)."""
    whole, tenth = divmod(round(float(fc) * 10), 10)
    return f"att_{whole}" + (f"p{tenth}" if tenth else "")


def protection_line(msg: contract.Message) -> str:
    """The ``protection`` point (:data:`schema.PROTECTION`, tags
    :data:`schema.PROTECTION_TAGS`): ``outer_laeq``, ``inner_laeq``, ``att_a``,
    ``required_db``, ``coverage``, ``duration_s``, ``worn_s``, ``assessed_s`` as floats,
    ``state`` and ``protector`` as strings, ``seq`` as integer, ``calibrated`` as boolean,
    ``att_<fc>`` per band (null values left out); time = interval start."""
    p = msg.payload
    tags = {**_tags(msg), "worker": p["worker"]}
    fields: dict[str, object] = {k: _float(p[k]) for k in (
        "outer_laeq", "inner_laeq", "att_a", "required_db", "coverage", "duration_s",
        "worn_s", "assessed_s")}
    fields.update(state=str(p["state"]), protector=str(p["protector"]), seq=int(p["seq"]),
                  calibrated=bool(p["calibrated"]))
    for fc, v in zip(p["bands"]["fc"], p["bands"]["att"], strict=True):
        fields[attenuation_field(fc)] = _float(v)
    return line(schema.PROTECTION, tags, fields, int(p["start_ns"]))


_BY_KIND = {"levels": levels_lines, "bands": lambda m: [bands_line(m)],
            "status": lambda m: [status_line(m)], "events": lambda m: [events_line(m)],
            "protection": lambda m: [protection_line(m)]}


def message_lines(msg: contract.Message) -> list[str]:
    """The lines a validated message is stored as: one per channel record for ``levels``,
    one for the other kinds."""
    try:
        return _BY_KIND[msg.topic.kind](msg)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, LineProtocolError):
            raise
        raise LineProtocolError(f"cannot convert {msg.topic.kind} message: "
                                f"{type(e).__name__}: {e}") from e
