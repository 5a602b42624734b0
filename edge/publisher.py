"""Sends the outbox to the MQTT broker (paho-mqtt 2.x, MQTT v5, QoS 1), and a retained status.

Delivery rule (``receipts=True``, the default): a record leaves the
:class:`~tingbao.edge.outbox.Outbox` only when a collector's **receipt** covers its seq: the
collector publishes one on ``tingbao/v1/{enterprise}/{site}/{meter}/receipts`` (see
:mod:`tingbao.edge.contract`) once InfluxDB stored the record, and the publisher subscribes to
that topic (QoS 1) on every connection. The broker's PUBACK only paces the flow (at most
``window`` records in flight) and marks the record sent, on disk
(:meth:`~tingbao.edge.outbox.Outbox.mark_sent`). A sent record with no receipt
``resend_after_s`` seconds later (60 s by default; the delay doubles with each unreceipted
send, up to 16 ×) is sent again (counted as ``resent``): that covers a broker that crashed
with the record in memory, a collector that never got it, and a PUBACK that said success
because some other subscriber (say the ``analysis`` account) matched while no collector ran.
Sending twice is harmless (a point is identified by (meter, channel, start)).

A receipt is applied only to seqs this agent sent and the broker accepted (PUBACK success,
``sends > 0`` in the outbox) and still holds. A receipt that is malformed
(:func:`~tingbao.edge.contract.validate_receipts`), for another meter (its payload's meter,
or its topic, not this agent's), or for seqs never sent deletes nothing; the malformed and
foreign ones are counted as ``receipts_refused``. A replayed receipt deletes nothing either,
by construction: the seqs it names were deleted by the first one, and seqs are never reused
by an outbox. Ranges in a receipt's ``refused`` list are records the collector refused (they
are stored as dead letters, with their raw payload): they are deleted as well and counted as
``dead_lettered``, instead of being resent forever. Only collectors may publish receipts
(the stack's ACL), so a device cannot forge them for another meter.

With ``receipts=False`` (``[mqtt] receipts = false``: for collectors older than receipts)
the rule is the one before receipts: a record leaves the outbox when the broker's PUBACK for
it arrives with a success reason code, and a broker that crashes before saving loses it.

Both ways: a PUBACK with a reason code ≥ 128 (e.g. 135,
not authorized: the device account may not publish on that topic) is a refusal: the record is
kept, the refusal is logged as an error and counted (:attr:`Publisher.refused`), and the record
is offered again after a back-off (30 s, doubling to 10 min), so a corrected ACL lets it
through without a restart. A PUBACK with reason code 16 (no matching subscribers: no
collector holds a subscription, e.g. just after a broker crash that lost the collectors'
shared subscription) is not a delivery either: nobody will store the record, so it stays
in the outbox and is offered again after 1 s, doubling to 30 s (counted as ``unheard``),
until a collector is there to receive it (with receipts this is only an early hint: it is
resent sooner than ``resend_after_s``). Messages in flight when the connection drops stay
in paho's session and are re-sent (DUP) after the reconnection; a record sent twice is
harmless, since an interval is identified by (meter, channel, start_ns) and overwrites
itself downstream.

Sending policy (one sender thread; the measuring loop never waits for the network):

* at most ``window`` records are in flight (sent, PUBACK not yet received);
* **live** records, appended within the last ``live_s`` seconds, are sent at once, lowest
  seq first, whenever the connection is up — after an outage the current data is on the
  dashboards within a round trip;
* the **backlog** (everything older: what piled up during an outage, what a previous run
  left) is sent oldest first at no more than ``backlog_rate`` messages per second (a token
  bucket), and it may fill at most three quarters of the window, so the live stream is never
  starved and the broker and collectors are not flooded when a fleet reconnects at once.

Status: every ``status_every_s`` seconds (and at once after each connection) a retained QoS 1
``status`` message: ``online``, ``queue_depth``, ``in_flight``, ``published``, ``refused``,
``receipted``, ``dead_lettered``, ``receipts_refused``, ``resent`` (with receipts),
``software``, and whatever the agent adds (calibration state, ``input_overflows``,
``clock_offset_s`` from its clock check, :mod:`tingbao.edge.clock`). The last will, set
before every connection attempt, is the same topic with ``online: false`` (retained, QoS 1);
a graceful stop publishes it explicitly before disconnecting.
"""

from __future__ import annotations

import collections
import logging
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from . import contract
from .outbox import Outbox, Record

__all__ = ["Publisher", "software_version"]

log = logging.getLogger("tingbao.edge.publisher")

REFUSED_RETRY_S = (30.0, 600.0)
"""Back-off of a refused record before it is offered again: first and largest delay, s."""

UNHEARD_RETRY_S = (1.0, 30.0)
"""Back-off of a record nobody subscribed to (PUBACK 16) before it is offered again, s."""

NO_MATCHING_SUBSCRIBERS = 16
"""MQTT v5 PUBACK reason code: accepted, but no subscription matched."""

def software_version() -> str:
    """The installed tingbao version, e.g. ``'0.1.0'``."""
    try:
        from importlib.metadata import version

        return version("tingbao")
    except Exception:  # not installed as a distribution (a bare checkout)
        return "0+unknown"


class Publisher:
    """Publish an :class:`Outbox` over MQTT v5 with QoS 1, in background threads.

    Parameters
    ----------
    outbox : Outbox
        The queue to send; the publisher acknowledges (deletes) what the broker accepted.
    meter, enterprise, site : str
        The meter's identity (contract ids); the status and last-will topic is
        ``tingbao/v1/{enterprise}/{site}/{meter}/status``.
    host, port : str, int
        The broker.
    username, password : str, optional
        The device account.
    ca_file : str, optional
        CA certificate(s) in PEM; when given the connection uses TLS and checks the broker's
        certificate and host name.
    client_id : str, optional
        MQTT client id; default ``tingbao-agent-{meter}``.
    window : int
        Largest number of records in flight (sent, PUBACK pending).
    backlog_rate : float
        Largest rate of backlog (non-live) records, messages per second.
    live_s : float
        Records appended within this many seconds are live and skip the backlog's pacing.
    keepalive : int
        MQTT keep-alive, seconds.
    reconnect_s : (float, float)
        First and largest delay between reconnection attempts, seconds (doubling).
    status_every_s : float
        Period of the retained status message, seconds.
    status_extra : callable, optional
        Returns a dict of extra status fields (called from the sender thread).
    receipts : bool
        Keep every record until a collector's receipt covers it (default); False deletes
        a record at the broker's PUBACK (collectors without receipts).
    resend_after_s : float
        With receipts: a sent record with no receipt after this many seconds is sent again
        (the delay doubles per unreceipted send, up to 16 ×).
    """

    def __init__(self, outbox: Outbox, *, meter: str, enterprise: str, site: str,
                 host: str = "127.0.0.1", port: int = 1883, username: str | None = None,
                 password: str | None = None, ca_file: str | None = None,
                 client_id: str | None = None, window: int = 100, backlog_rate: float = 200.0,
                 live_s: float = 10.0, keepalive: int = 30,
                 reconnect_s: tuple[float, float] = (1.0, 30.0), status_every_s: float = 5.0,
                 status_extra: Callable[[], dict] | None = None, receipts: bool = True,
                 resend_after_s: float = 60.0):
        if window < 1:
            raise ValueError(f"window must be ≥ 1 message, got {window}")
        if not backlog_rate > 0:
            raise ValueError(f"backlog_rate must be > 0 messages/s, got {backlog_rate}")
        self.outbox = outbox
        self.meter = contract.check_id(meter, "meter")
        self.status_topic = contract.topic(enterprise, site, meter, "status")
        self.receipts_topic = contract.receipts_topic(enterprise, site, meter)
        self.receipts = bool(receipts)
        if not resend_after_s > 0:
            raise ValueError(f"resend_after_s must be > 0 s, got {resend_after_s}")
        self.resend_after_s = float(resend_after_s)
        self.host, self.port = host, int(port)
        self.window = int(window)
        self._window = self.window  # the window in force (the broker may ask for less)
        self.backlog_rate = float(backlog_rate)
        self.live_s = float(live_s)
        self.status_every_s = float(status_every_s)
        self.status_extra = status_extra
        self.software = software_version()

        # counters (read them any time; written by the sender thread)
        self.published = 0  # records acknowledged with success (PUBACK)
        self.receipted = 0  # records deleted because a receipt said stored
        self.dead_lettered = 0  # records deleted because a receipt said refused
        self.receipts_in = 0  # receipts applied
        self.receipts_refused = 0  # receipts refused (malformed, another meter's)
        self.resent = 0  # records sent again for want of a receipt
        self.refused = 0  # PUBACKs with a failure reason code
        self.unheard = 0  # PUBACKs 16: no matching subscribers (kept and offered again)
        self._unheard_seqs: set[int] = set()  # held for that reason (not done: keep trying)
        self.sent = 0  # PUBLISH packets handed to paho for records (re-sends included)
        self.connects = 0
        self.last_refusal: tuple[int, str, str] | None = None  # (seq, topic, reason)

        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._acks: collections.deque = collections.deque()  # (mid, reason code) from paho
        self._receipts: collections.deque = collections.deque()  # (topic, payload) from paho
        self._mid_seq: dict[int, int] = {}  # in flight: paho mid -> seq
        self._busy: set[int] = set()  # seqs in flight or acknowledged but not yet deleted
        self._refused_until: dict[int, tuple[float, float]] = {}  # seq -> (retry at, delay)
        self._live_floor = 0  # live records with seq <= this were already considered
        self._cursor = 0  # the backlog scan has considered seq <= this in the current round
        self._round_start = 0.0
        self._tokens = 0.0
        self._status_due = 0.0
        self._threads: list[threading.Thread] = []

        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or
                        f"tingbao-agent-{meter}", protocol=mqtt.MQTTv5)
        if username is not None:
            c.username_pw_set(username, password)
        if ca_file:
            c.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED,
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.max_inflight_messages_set(self.window + 10)  # + room for status messages
        c.reconnect_delay_set(min_delay=max(1, round(reconnect_s[0])),
                              max_delay=max(1, round(reconnect_s[1])))
        c.on_pre_connect = self._on_pre_connect
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self._keepalive = int(keepalive)
        self.client = c

    # ------------------------------------------------------------------ paho callbacks
    # These run in paho's network thread: they only record facts and wake the sender.
    def _on_pre_connect(self, client, userdata) -> None:
        will = contract.status_payload(meter=self.meter, time_ns=time.time_ns(), online=False,
                                       software=self.software)
        client.will_set(self.status_topic, contract.encode(will), qos=1, retain=True)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s:%s refused the connection: %s (check the account and "
                      "password of meter %s)", self.host, self.port, reason_code, self.meter)
            return
        self.connects += 1
        # MQTT v5: the broker's Receive Maximum bounds our unacknowledged QoS 1 PUBLISHes
        rmax = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
        self._window = min(self.window, max(1, int(rmax) - 5)) if rmax else self.window
        log.info("connected to %s:%s (%s)", self.host, self.port,
                 "first connection" if self.connects == 1 else f"reconnection {self.connects}")
        self._status_due = 0.0
        if self.receipts:  # on every connection: the session may be a new one
            client.subscribe(self.receipts_topic, qos=1)
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        log.warning("cannot reach the broker at %s:%s; retrying with back-off", self.host,
                    self.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and not self._stopping.is_set():
            log.warning("lost the broker at %s:%s (%s); measuring goes on into the outbox "
                        "(%d in flight will be re-sent)", self.host, self.port, reason_code,
                        len(self._mid_seq))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.append((mid, reason_code))
        # Wake the sender once a quarter of the window came back, or the last one: one
        # outbox transaction and one refill per batch, not per PUBACK.
        self._wake.set()

    def _on_message(self, client, userdata, message) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "?"
        if len(self._receipts) < 10_000:  # bounded: a flood is refused, not queued
            self._receipts.append((topic, bytes(message.payload)))
        else:
            self.receipts_refused += 1
        self._wake.set()

    # ------------------------------------------------------------------ control
    @property
    def connected(self) -> bool:
        """True while a connection to the broker is up."""
        return self._connected.is_set()

    @property
    def in_flight(self) -> int:
        """Records sent whose PUBACK has not arrived yet."""
        return len(self._mid_seq)

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start sending."""
        if self._threads:
            raise RuntimeError("the publisher is already started")
        self.client.connect_async(self.host, self.port, keepalive=self._keepalive)
        self.client.loop_start()
        self._threads = [threading.Thread(target=self._sender, name="tingbao-sender",
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def wake(self) -> None:
        """Tell the sender that records were appended (it also looks every 50 ms)."""
        self._wake.set()

    def idle(self) -> bool:
        """True when nothing is in flight and every queued record was refused or sent (a
        record nobody subscribed to is not done: it waits for a collector)."""
        return not self._mid_seq and not self._acks and \
            self.outbox.depth() <= len(self._refused_until) - len(self._unheard_seqs)

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for :meth:`idle`; returns whether it was reached."""
        deadline = time.monotonic() + timeout
        while True:
            if self.idle():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop gracefully: wait up to ``timeout`` seconds for the queue to drain and the
        PUBACKs in flight, publish the status ``online: false``, disconnect. What is not
        acknowledged stays in the outbox for the next start. Returns whether it drained."""
        drained = self.wait_idle(timeout) if self._threads else self.idle()
        self._stopping.set()
        self._wake.set()
        for t in self._threads:
            if t.name == "tingbao-sender":
                t.join(timeout=5.0)
        if self._connected.is_set():
            p = contract.status_payload(meter=self.meter, time_ns=time.time_ns(), online=False,
                                        **self._status_fields())
            info = self.client.publish(self.status_topic, contract.encode(p), qos=1,
                                       retain=True)
            try:
                info.wait_for_publish(timeout=min(2.0, max(timeout, 0.1)))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()
        self._process_acks()
        return drained

    def stats(self) -> dict:
        """Counters: published, refused, unheard, receipted, dead_lettered, receipts,
        receipts_refused, resent, sent, in_flight, queue_depth, connects, connected."""
        return {"published": self.published, "refused": self.refused,
                "unheard": self.unheard, "receipted": self.receipted,
                "dead_lettered": self.dead_lettered, "receipts": self.receipts_in,
                "receipts_refused": self.receipts_refused, "resent": self.resent,
                "sent": self.sent,
                "in_flight": self.in_flight, "queue_depth": self.outbox.depth(),
                "connects": self.connects, "connected": self.connected}

    # ------------------------------------------------------------------ sender thread
    def _sender(self) -> None:
        last = time.monotonic()
        while not self._stopping.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            now = time.monotonic()
            self._tokens = min(self._tokens + (now - last) * self.backlog_rate,
                               max(1.0, self.backlog_rate * 0.1))
            last = now
            try:
                self._process_acks()
                self._process_receipts()
                if self._connected.is_set():
                    self._send_live()
                    self._send_backlog(now)
                    if now >= self._status_due:
                        self._status_due = now + self.status_every_s
                        self._publish_status()
            except Exception:  # keep sending whatever happens; the outbox keeps the data
                log.exception("sender error (will retry)")
                time.sleep(0.5)
        self._process_acks()

    def _process_acks(self) -> None:
        done = []
        while self._acks:
            mid, rc = self._acks.popleft()
            seq = self._mid_seq.pop(mid, None)
            if seq is None:
                continue  # a status message
            if rc.is_failure:
                self._refuse(seq, rc)
                self._busy.discard(seq)
            elif rc.value == NO_MATCHING_SUBSCRIBERS:
                self._unheard(seq)
                self._busy.discard(seq)
            else:
                done.append(seq)
        if done:
            if self.receipts:  # sent: it waits for its receipt (or its resend time)
                self.outbox.mark_sent(done, time.time_ns(), int(self.resend_after_s * 1e9))
            else:
                self.outbox.ack_many(done)
            for seq in done:
                self._refused_until.pop(seq, None)
                self._unheard_seqs.discard(seq)
            self._busy.difference_update(done)
            self.published += len(done)

    def _process_receipts(self) -> None:
        if not self._receipts:
            return
        batch = []
        while self._receipts:
            batch.append(self._receipts.popleft())
        # paho's thread queued every PUBACK before the receipts that followed it: take
        # them in first, so that a receipt finds its records marked sent
        self._process_acks()
        ok: list = []
        bad: list = []
        for topic, raw in batch:
            try:
                if topic != self.receipts_topic:
                    raise contract.ContractError(f"topic {topic[:120]!r} is not this meter's "
                                                 f"receipts topic {self.receipts_topic!r}")
                p = contract.validate_receipts(topic, raw).payload
            except ValueError as e:  # ContractError is one
                self.receipts_refused += 1
                if self.receipts_refused <= 10 or self.receipts_refused % 1000 == 0:
                    log.warning("receipt refused (it deletes nothing): %s (%d so far)", e,
                                self.receipts_refused)
                continue
            self.receipts_in += 1
            ok += p["seqs"]
            bad += p.get("refused", ())
            if "refused" in p:
                log.error("collector %s refused record(s) %s of meter %s (stored as dead "
                          "letters with their reason); they leave the outbox",
                          p["collector"], p["refused"][:5], self.meter)
        # one transaction for all the receipts at hand
        self.receipted += self.outbox.apply_receipt(ok)
        self.dead_lettered += self.outbox.apply_receipt(bad)
        if self._refused_until and (ok or bad):
            ranges = sorted(ok + bad)
            for seq in [s for s in self._refused_until
                        if any(a <= s <= b for a, b in ranges)]:
                if self.outbox.get(seq) is None:
                    self._refused_until.pop(seq, None)
                    self._unheard_seqs.discard(seq)

    def _refuse(self, seq: int, rc) -> None:
        self._unheard_seqs.discard(seq)
        rec = self.outbox.get(seq)
        topic = rec.topic if rec else "?"
        prev = self._refused_until.get(seq)
        delay = REFUSED_RETRY_S[0] if prev is None else min(prev[1] * 2, REFUSED_RETRY_S[1])
        self._refused_until[seq] = (time.monotonic() + delay, delay)
        self.refused += 1
        self.last_refusal = (seq, topic, str(rc))
        if self.refused <= 10 or self.refused % 100 == 0:
            log.error("BROKER REFUSED record seq %d on %s: reason %d %s. It stays in the outbox "
                      "and is offered again in %.0f s. Check that the device account may "
                      "publish under meter %s (ACL). Refusals so far: %d", seq, topic,
                      rc.value, rc, delay, self.meter, self.refused)

    def _unheard(self, seq: int) -> None:
        prev = self._refused_until.get(seq)
        delay = UNHEARD_RETRY_S[0] if prev is None else min(prev[1] * 2, UNHEARD_RETRY_S[1])
        self._refused_until[seq] = (time.monotonic() + delay, delay)
        self.unheard += 1
        self._unheard_seqs.add(seq)
        if self.unheard <= 3 or self.unheard % 1000 == 0:
            log.warning("record seq %d reached the broker but no collector is subscribed "
                        "(PUBACK 16); it stays in the outbox and is offered again in %.0f s "
                        "(%d so far)", seq, delay, self.unheard)

    def _sendable(self, rec: Record, now: float) -> bool:
        if rec.seq in self._busy:
            return False
        held = self._refused_until.get(rec.seq)
        return held is None or now >= held[0]

    def _publish_record(self, rec: Record) -> bool:
        info = self.client.publish(rec.topic, rec.payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("cannot queue seq %d for sending: %s", rec.seq, mqtt.error_string(info.rc))
            return False
        # queued in paho's session (sent now, or after the reconnection if NO_CONN)
        self._mid_seq[info.mid] = rec.seq
        self._busy.add(rec.seq)
        self.sent += 1
        if rec.sends:
            self.resent += 1
        return True

    def _send_live(self) -> None:
        free = self._window - len(self._mid_seq)
        if free <= 0:
            return
        cutoff = time.time_ns() - int(self.live_s * 1e9)
        recs = self.outbox.newest_since(cutoff, free, after_seq=self._live_floor,
                                        due_ns=time.time_ns() if self.receipts else None)
        now = time.monotonic()
        for rec in recs:
            if self._sendable(rec, now) and not self._publish_record(rec):
                return
            self._live_floor = rec.seq

    def _send_backlog(self, now: float) -> None:
        budget = min(int(self._tokens), max(1, self._window * 3 // 4) - len(self._mid_seq))
        if budget <= 0:
            return
        if self._cursor == 0:
            if now - self._round_start < 0.2:
                return  # the last round found the whole queue busy; do not spin
            self._round_start = now
        recs = self.outbox.oldest(budget, after_seq=self._cursor,
                                  due_ns=time.time_ns() if self.receipts else None)
        for rec in recs:
            self._cursor = rec.seq
            if self._sendable(rec, now):
                if not self._publish_record(rec):
                    return
                self._tokens -= 1
        if len(recs) < budget:
            self._cursor = 0  # reached the newest record: the next round starts again

    def _status_fields(self) -> dict:
        fields = {"queue_depth": self.outbox.depth(), "in_flight": len(self._mid_seq),
                  "published": self.published, "refused": self.refused,
                  "software": self.software}
        if self.receipts:
            fields.update(receipted=self.receipted, dead_lettered=self.dead_lettered,
                          receipts_refused=self.receipts_refused, resent=self.resent)
        if self.status_extra is not None:
            try:
                fields.update(self.status_extra())
            except Exception:
                log.exception("status fields could not be gathered")
        return fields

    def _publish_status(self) -> None:
        p = contract.status_payload(meter=self.meter, time_ns=time.time_ns(), online=True,
                                    **self._status_fields())
        self.client.publish(self.status_topic, contract.encode(p), qos=1, retain=True)
