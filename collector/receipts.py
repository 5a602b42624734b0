"""Receipts: once a batch is stored in InfluxDB and acknowledged, tell each meter's agent which
of its records are stored, so that it can delete them from its outbox (the agent keeps every
record until then; see :mod:`tingbao.edge.publisher`).

:class:`Receipts` is an ``on_stored`` hook of :class:`~.delivery.Delivery` (the receipts seam
its docstring describes). Per meter of the batch it publishes one receipt (QoS 1, not
retained) on ``tingbao/v1/{enterprise}/{site}/{meter}/receipts`` through the collector's MQTT
session (:meth:`.mqtt_input.MqttInput.publish`; paho's publish is thread-safe, the worker
thread calls it). The payload (:func:`tingbao.edge.contract.receipts_payload`)::

    {"schema": "tingbao.receipts/1", "meter": "m1", "time_ns": …, "collector": "c1",
     "seqs": [[1, 40], [42, 42]], "refused": [[41, 41]]}

* ``seqs``: the ``seq`` of every ``levels`` and ``bands`` message of the batch that InfluxDB
  stored, merged into inclusive ranges. ``status`` and ``events`` carry no seq and are not
  receipted (the agent does not queue them).
* ``refused``: the seqs of messages the collector dead-lettered (contract, unknown meter,
  conversion, or refused by InfluxDB): they will never be stored as data, and their raw
  payload is in the dead letter, so the agent drops them instead of resending them forever.
  The seq of a message that failed the contract is read from its payload when it is a JSON
  object with an integer ``seq`` ≥ 1 on a ``levels`` or ``bands`` topic with valid ids;
  otherwise it cannot be receipted (the agent never sends such a message).
  A seq both stored and refused in one batch (two deliveries) counts as stored.
* More than :data:`~tingbao.edge.contract.MAX_RECEIPT_RANGES` ranges for one meter are split
  over several receipts.

Receipts are best effort: one that is lost (collector or broker crash before it is sent)
only means the agent sends those records again after its resend time, and the rewrite
overwrites the same points. Counted: ``receipts_sent`` (messages), ``receipts_failed``
(paho refused to queue one).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tingbao.edge import contract

if TYPE_CHECKING:
    from .metrics import Metrics
    from .validation import Entry

log = logging.getLogger("tingbao.collector.receipts")

RECEIPTED_KINDS = ("levels", "bands", "protection")
"""Kinds whose messages carry the agent's outbox ``seq``."""


def collector_id(client_id: str) -> str:
    """The ``collector`` field of a receipt: the MQTT client id when it is a valid id."""
    return client_id if contract.ID_PATTERN.match(client_id or "") else "collector"


def _seq_of_refused(entry: Entry) -> tuple[tuple[str, str, str], int] | None:
    """(enterprise, site, meter), seq of a dead-lettered message, when both can be read."""
    parts = entry.inbound.topic.split("/")
    if len(parts) != 6 or parts[5] not in RECEIPTED_KINDS or \
            not all(contract.ID_PATTERN.match(x) for x in parts[2:5]):
        return None
    seq = entry.seq
    if seq is None:
        if entry.inbound.size > contract.MAX_PAYLOAD_BYTES:
            return None
        try:
            p = json.loads(entry.inbound.payload)
        except (ValueError, RecursionError):
            return None
        seq = p.get("seq") if isinstance(p, dict) else None
    if type(seq) is not int or not 1 <= seq <= 2**63 - 1:
        return None
    return (parts[2], parts[3], parts[4]), seq


class Receipts:
    """The ``on_stored`` hook that publishes receipts: ``publish(topic, payload) -> bool``
    queues one QoS 1 message (False: it could not)."""

    def __init__(self, publish: Callable[[str, bytes], bool], metrics: Metrics,
                 collector: str):
        self.publish = publish
        self.metrics = metrics
        self.collector = collector_id(collector)

    def __call__(self, batch: list[Entry]) -> None:
        stored: dict[tuple[str, str, str], set[int]] = {}
        refused: dict[tuple[str, str, str], set[int]] = {}
        for e in batch:
            if e.dead is None:
                seq = e.seq
                if seq is None or seq < 1:
                    continue
                parts = e.inbound.topic.split("/")
                stored.setdefault((parts[2], parts[3], parts[4]), set()).add(seq)
            else:
                found = _seq_of_refused(e)
                if found is not None:
                    refused.setdefault(found[0], set()).add(found[1])
        now = time.time_ns()
        counts = self.metrics.counts
        for key in stored.keys() | refused.keys():
            ok = contract.seq_ranges(stored.get(key, ()))
            bad = contract.seq_ranges(refused.get(key, set()) - stored.get(key, set()))
            ranges = [("seqs", r) for r in ok] + [("refused", r) for r in bad]
            topic = contract.receipts_topic(*key)
            for i in range(0, len(ranges), contract.MAX_RECEIPT_RANGES):
                part = ranges[i:i + contract.MAX_RECEIPT_RANGES]
                payload = contract.receipts_payload(
                    meter=key[2], time_ns=now, collector=self.collector,
                    seqs=[r for k, r in part if k == "seqs"],
                    refused=[r for k, r in part if k == "refused"])
                if self.publish(topic, contract.encode(payload)):
                    counts["receipts_sent"] += 1
                else:
                    counts["receipts_failed"] += 1
