"""Dead letters: messages the collector could not store as data, kept with the reason.

A dead letter is a point of measurement ``dead_letters`` in InfluxDB (and, when configured,
one JSON object per line in a local file). The raw payload is hostile by assumption, so it
never enters line protocol as text: only its base64 (first :data:`RAW_LIMIT_INFLUX`
bytes), its length and its SHA-256 are stored. Reason and topic are made printable
(control characters such as newlines become ``\\n`` / ``\\x1b`` escapes, lone surrogates
``\\udcxx``) and cut to a bounded length, so a dead letter always makes valid line protocol.

Point layout::

    dead_letters,collector=<client id>,kind=<levels|bands|status|events|other>,stage=<stage>
        reason="…",topic="…",payload_b64="…",payload_bytes=123i,payload_truncated=false,
        payload_sha256="…"  <receive time, ns, unique per collector>

``stage`` says where the message failed: ``contract`` (:func:`contract.validate`),
``meter`` (not a known meter), ``convert`` (valid, but not representable in line protocol),
``store`` (InfluxDB refused the point; the reason is InfluxDB's message), ``internal`` (a
bug in the collector, reason = the exception), ``audio`` (``tingbao import``: the interval's
audio held corrupt samples, NaN or infinite), ``fit_test`` (``tingbao fit-tests listen``,
``analysis/fit_test_import.py``: a fit-test message that is not JSON, not a valid record or of
an enterprise not in the registry; its ``kind`` is ``other``).

A re-delivered bad message (collector stopped after storing its dead letter, before the
acknowledgement reached the broker) makes a second dead letter: dead letters are stored
at least once; ``payload_sha256`` tells duplicates apart.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path

from tingbao.edge import contract

from . import schema
from .lineprotocol import line

MEASUREMENT = schema.DEAD_LETTERS
STAGES = schema.DEAD_LETTER_STAGES
"""The ``stage`` values :meth:`DeadLetter.to_line` keeps (another becomes ``internal``)."""
RAW_LIMIT_INFLUX = 4096
"""Bytes of the raw payload kept (base64) in InfluxDB."""
RAW_LIMIT_FILE = contract.MAX_PAYLOAD_BYTES
"""Bytes of the raw payload kept (base64) in the JSONL file and in memory (a longer payload
breaks the contract by its size alone)."""
REASON_LIMIT = 1000
TOPIC_LIMIT = 300

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text, limit: int) -> str:
    """``text`` as a single printable line of at most ``limit`` characters (plus a ``…``
    marker when cut): control characters escaped, lone surrogates escaped."""
    if not isinstance(text, str):
        text = repr(text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)
    return text if len(text) <= limit else text[:limit] + "…"


class UniqueClock:
    """Nanosecond timestamps that never repeat in this process, so two dead letters received
    in the same nanosecond do not overwrite each other in InfluxDB."""

    def __init__(self):
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self, now_ns: int | None = None) -> int:
        with self._lock:
            t = time.time_ns() if now_ns is None else now_ns
            self._last = t if t > self._last else self._last + 1
            return self._last


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One rejected message: where and why it failed, what it was, when it arrived.

    ``payload`` is kept up to :data:`RAW_LIMIT_FILE` bytes; ``size`` and ``sha256`` describe
    the whole payload (pass them when only a prefix is at hand)."""

    stage: str
    reason: str
    topic: str
    payload: bytes
    received_ns: int
    collector: str
    size: int = -1
    sha256: str = ""

    def __post_init__(self):
        if self.size < 0:
            object.__setattr__(self, "size", len(self.payload))
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.payload).hexdigest())
        if len(self.payload) > RAW_LIMIT_FILE:
            object.__setattr__(self, "payload", bytes(self.payload[:RAW_LIMIT_FILE]))

    @property
    def kind(self) -> str:
        """The topic's kind if it is one of the contract's, else ``other``."""
        last = self.topic.rsplit("/", 1)[-1]
        return last if last in contract.KINDS else "other"

    def to_line(self) -> str:
        """The ``dead_letters`` point (always valid line protocol)."""
        raw = self.payload[:RAW_LIMIT_INFLUX]
        tags = {"collector": self.collector, "kind": self.kind,
                "stage": self.stage if self.stage in STAGES else "internal"}
        fields = {
            "reason": printable(self.reason, REASON_LIMIT),
            "topic": printable(self.topic, TOPIC_LIMIT),
            "payload_b64": base64.b64encode(raw).decode("ascii"),
            "payload_bytes": self.size,
            "payload_truncated": len(raw) < self.size,
            "payload_sha256": self.sha256,
        }
        return line(MEASUREMENT, tags, fields, self.received_ns)

    def to_json(self) -> str:
        """One JSON line for the local dead-letter file."""
        raw = self.payload[:RAW_LIMIT_FILE]
        return json.dumps({
            "received_ns": self.received_ns,
            "received": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.received_ns / 1e9))
            + f".{self.received_ns % 1_000_000_000:09d}Z",
            "collector": self.collector, "stage": self.stage,
            "reason": printable(self.reason, 4 * REASON_LIMIT),
            "topic": printable(self.topic, 4 * TOPIC_LIMIT),
            "payload_b64": base64.b64encode(raw).decode("ascii"),
            "payload_bytes": self.size,
            "payload_truncated": len(raw) < self.size,
            "payload_sha256": self.sha256,
        }, ensure_ascii=False)


def safe_tag(value: str) -> str:
    """A collector id made safe as a tag value (anything outside ``A-Za-z0-9_.-`` → ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:64] or "collector"


class DeadLetterFile:
    """Appends dead letters as JSON lines to a local file; :meth:`append` returns after the
    lines are on disk (flush + fsync)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        text = "".join(d.to_json() + "\n" for d in letters)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict]:
        """All records of the file (for tests and tools)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                return [json.loads(s) for s in f if s.strip()]
        except FileNotFoundError:
            return []
