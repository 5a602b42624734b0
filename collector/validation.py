"""What one delivery becomes: an :class:`Entry` holding its line protocol, or its dead letter.

::

    Inbound ──contract.validate──▶ known meter? ──line protocol──▶ Entry(lines, spans)
                 │ refused            │ unknown      │ not representable / a bug
                 └────────────────────┴──────────────┴──▶ Entry(dead letter line, dead=…)

:meth:`Validator.entry` never raises: whatever a message holds, it ends as data or as a
dead letter with its stage and reason (``contract``, ``meter``, ``convert``,
``internal``; the InfluxDB output adds ``store`` through :meth:`Validator.dead_letter`
when the database refuses a point). A dead letter is stored like data, in the same batch,
and acknowledged with it, so a bad message never blocks the stream.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from tingbao.edge import contract

from .deadletter import RAW_LIMIT_INFLUX, DeadLetter, UniqueClock
from .lineprotocol import LineProtocolError, message_lines
from .rollups import SeriesKey

if TYPE_CHECKING:
    from .metrics import Metrics
    from .mqtt_input import Inbound

log = logging.getLogger("tingbao.collector.validation")


@dataclasses.dataclass
class Entry:
    """One message of a batch: its lines, or its dead letter."""

    inbound: Inbound
    lines: list[str]
    dead: DeadLetter | None = None
    # levels records (one per channel): (series, interval start ns, interval end ns), for
    # rollups, lag and latency
    spans: list[tuple[SeriesKey, int, int]] = dataclasses.field(default_factory=list)
    # the agent's outbox seq of a levels, bands or protection message (for receipts)
    seq: int | None = None


class Validator:
    """Turns deliveries into entries: validation against the contract, the known-meter
    check, conversion to line protocol (``convert``, :func:`message_lines` by default).

    ``keep_raw`` bytes of a refused payload are kept in memory until its dead letter is
    stored; dead letters are tagged ``collector=<collector_tag>`` and time-stamped with the
    receive time, made unique per collector."""

    def __init__(self, metrics: Metrics, *, known_meters: Iterable[str] = (),
                 accept_any_meter: bool = False, collector_tag: str = "collector",
                 keep_raw: int = RAW_LIMIT_INFLUX,
                 convert: Callable[[contract.Message], list[str]] = message_lines):
        self.metrics = metrics
        self.known_meters = frozenset(known_meters)
        self.known_from = "[collector] known_meters"
        """Where the known meters come from, for the dead letter's reason."""
        self.accept_any_meter = accept_any_meter
        self.collector_tag = collector_tag
        self.keep_raw = keep_raw
        self.convert = convert
        self._clock = UniqueClock()

    def entry(self, item: Inbound) -> Entry:
        """Validate and convert one delivery; never raises."""
        if item.size > contract.MAX_PAYLOAD_BYTES:  # cut on receipt: refuse by size
            return self.dead_letter(item, "contract", f"payload of {item.size} bytes exceeds "
                                    f"{contract.MAX_PAYLOAD_BYTES}")
        try:
            msg = contract.validate(item.topic, item.payload)
        except contract.ContractError as e:
            return self.dead_letter(item, "contract", str(e))
        except ValueError as e:  # e.g. json's "Exceeds the limit (4300 digits)" slips through
            return self.dead_letter(item, "contract", f"payload is not valid: {e}")
        except Exception as e:
            self.metrics.counts["internal_errors"] += 1
            log.exception("validation crashed on a message from %r", item.topic[:200])
            return self.dead_letter(item, "internal",
                                    f"validation failed: {type(e).__name__}: {e}")
        meter = msg.topic.meter
        if not self.accept_any_meter and meter not in self.known_meters:
            return self.dead_letter(item, "meter", f"unknown meter {meter!r}: not in "
                                    f"{self.known_from}")
        try:
            lines = self.convert(msg)
        except LineProtocolError as e:
            return self.dead_letter(item, "convert", f"cannot be stored: {e}")
        except Exception as e:
            self.metrics.counts["internal_errors"] += 1
            log.exception("conversion crashed on a message from %r", item.topic[:200])
            return self.dead_letter(item, "internal",
                                    f"conversion failed: {type(e).__name__}: {e}")
        entry = Entry(item, lines)
        if msg.topic.kind in ("levels", "bands", "protection"):
            entry.seq = msg.payload["seq"]
        if msg.topic.kind == "levels":
            t, p = msg.topic, msg.payload
            start = int(p["start_ns"])
            end = start + int(round(float(p["duration_s"]) * 1e9))
            entry.spans = [(SeriesKey(t.enterprise, t.site, meter, str(r["channel"])), start, end)
                           for r in msg.records()]
        return entry

    def dead_letter(self, item: Inbound, stage: str, reason: str) -> Entry:
        """The entry that stores ``item`` as a dead letter of ``stage`` with ``reason``."""
        size = item.size if item.size >= 0 else len(item.payload)
        digest = item.sha256 or hashlib.sha256(item.payload).hexdigest()
        letter = DeadLetter(stage, reason, item.topic, item.payload[:self.keep_raw],
                            self._clock(item.received_ns), self.collector_tag, size, digest)
        log.debug("dead letter (%s) from %r: %s", stage, item.topic[:200], reason)
        return Entry(item, [letter.to_line()], dead=letter)
