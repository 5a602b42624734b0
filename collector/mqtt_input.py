"""The collector's MQTT side: one paho MQTT v5 session that receives the stream and sends
the acknowledgements, and the bounded inbox that hands each delivery to the worker.

::

    broker ──PUBLISH (QoS 1)──▶ paho network thread ──Inbox──▶ worker thread (delivery.py)
           ◀──PUBACK────────── MqttInput.ack(), called by the worker once InfluxDB stored it

* **Persistent session**: a stable client id, ``clean_start=False`` and a long session
  expiry, so messages wait in the broker while the collector is down or InfluxDB is.
* **Shared subscriptions** ``$share/<group>/tingbao/v1/+/+/+/<kind>``, one per data kind
  (levels, bands, status, events; :data:`SUBSCRIPTIONS`): several collectors with the same
  group split the stream. Not ``…/+/+/+/+``: that would bring the collectors their own
  receipts (``…/receipts``, :mod:`.receipts`), which are not data; the old filter is
  unsubscribed at every connect (a persistent session of an older collector holds it), and a
  receipt that still arrives is acknowledged and dropped (``receipts_ignored``).
  ``retainHandling=2``: no retained messages at subscribe.
* **Manual acknowledgement**: paho's ``manual_ack=True``; the MQTT v5 Receive Maximum
  bounds how many unacknowledged messages the broker sends, which is the back-pressure.
  The :class:`Inbox` is bounded as well and makes paho stop reading the socket when full
  (Mosquitto before 2.0.13 does not hold to the Receive Maximum under a live stream).
* **Keep-alive**: a long MQTT keep-alive and TCP keep-alive probes (:func:`tcp_keepalive`),
  so a collector busy catching up is not disconnected while a dead broker still is.
* **Reconnects**: paho reconnects by itself (1 s to 30 s apart). Every connect and
  disconnect starts a new *generation*; each delivery carries the generation that brought
  it, and a PUBACK is only sent on that connection (:meth:`MqttInput.ack`): packet ids
  belong to one connection, and after a reconnect the broker re-delivers what was not
  acknowledged, whose rewrite overwrites the same points.
* **Offline group members**: Mosquitto 2.0 keeps sharing messages round-robin with a
  member whose persistent session is offline (seen: 50 of 100 queued for a stopped
  collector). Nothing is lost while it comes back within ``session_expiry_s`` with the
  same ``client_id``, but its share waits until then; a collector taken out of service for
  good must first be drained, or its queued share is dropped when the session expires. A
  queued share that the broker drops (that, or a broker crash before its autosave) is not
  lost data: the agents keep every record until a receipt (:mod:`.receipts`) and send it
  again after their resend time.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Iterable

from paho.mqtt import client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tingbao.edge import contract

from .deadletter import RAW_LIMIT_FILE
from .metrics import Every, Metrics

log = logging.getLogger("tingbao.collector.mqtt")

SUBSCRIPTION = "tingbao/v1/+/+/+/+"
"""The shape of the topics the collector stores (enterprise/site/meter/kind). Collectors
before receipts subscribed to it as ``$share/<group>/`` + this; it is unsubscribed at
connect."""
SUBSCRIPTIONS = tuple(f"tingbao/v1/+/+/+/{kind}" for kind in contract.KINDS)
"""The filters subscribed (as ``$share/<group>/`` + each): one per data kind."""
INBOX_MAX_BYTES = 64 * 1024 * 1024
"""Received messages waiting for the worker are bounded to this many bytes (and to twice the
Receive Maximum in number)."""


@dataclasses.dataclass
class Inbound:
    """One delivery from the broker."""

    mid: int
    qos: int
    topic: str
    payload: bytes  # at most RAW_LIMIT_FILE bytes are kept of an oversized payload
    received_ns: int
    arrived: float  # time.monotonic()
    generation: int  # which connection delivered it
    size: int = -1  # length of the whole payload
    sha256: str = ""  # of the whole payload, when it was cut


class Inbox:
    """The FIFO from paho's network thread to the worker, bounded in messages and bytes.

    A full inbox makes :meth:`put` wait, so paho stops reading the socket (TCP
    back-pressure; the broker keeps the rest). This matters because Mosquitto before 2.0.13
    does not hold to the Receive Maximum under a live stream (its send quota leaks: seen
    46,000 unacknowledged messages against a Receive Maximum of 100 on 2.0.11). While it
    waits, ``on_wait`` runs (the collector sends the worker's PUBACKs from there, so
    acknowledgements and the broker's keep-alive do not stall)."""

    def __init__(self, max_items: int, max_bytes: int):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: collections.deque[Inbound] = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self.waited_s = 0.0  # how long the network thread waited for room, in total
        self.wait_max_s = 0.0

    def put(self, item: Inbound, give_up: threading.Event, on_wait=None) -> bool:
        size = len(item.payload) + 200
        started = None
        with self._cond:
            while self._items and (len(self._items) >= self.max_items
                                   or self._bytes + size > self.max_bytes):
                if give_up.is_set():
                    return False
                started = started or time.monotonic()
                if on_wait is not None:
                    self._cond.release()
                    try:
                        on_wait()
                    finally:
                        self._cond.acquire()
                self._cond.wait(0.05)
            self._items.append(item)
            self._bytes += size
            self._cond.notify_all()
        if started is not None:
            self.waited_s += time.monotonic() - started
            self.wait_max_s = max(self.wait_max_s, time.monotonic() - started)
        return True

    def get(self, timeout: float) -> Inbound | None:
        """The oldest item, waiting up to ``timeout`` seconds; None if there is none."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._bytes -= len(item.payload) + 200
            self._cond.notify_all()
            return item

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def stats(self) -> dict:
        """What ``GET /metrics`` shows of the inbox: its fill and the back-pressure time."""
        return {"queued": len(self), "queued_bytes": self._bytes,
                "inbox_capacity": self.max_items,
                "backpressure_s": round(self.waited_s, 3),
                "backpressure_max_s": round(self.wait_max_s, 3)}


def tcp_keepalive(client, userdata, sock) -> None:
    """Detect a dead broker connection at the TCP level within about a minute.

    MQTT's own keep-alive is in-band: paho drops the connection when a PINGRESP does not
    arrive within ``keepalive_s`` of its PINGREQ, and under back-pressure (the collector not
    reading while it catches up, with thousands of messages queued ahead of the PINGRESP)
    it would drop healthy connections. So the MQTT keep-alive is long (300 s by default)
    and TCP keep-alive probes plus ``TCP_USER_TIMEOUT`` catch dead peers instead."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3),
                            ("TCP_USER_TIMEOUT", 60_000)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except (OSError, AttributeError) as e:  # e.g. a TLS socket wrapper without setsockopt
        log.debug("TCP keep-alive not set: %s", e)


class MqttInput:
    """The collector's MQTT v5 session: puts every delivery into ``inbox`` (waiting while it
    is full, until ``stop`` is set) and acknowledges on request.

    Counts ``connects``, ``disconnects``, ``redelivered`` (DUP flag set), ``acked`` and
    ``stale_unacked`` into ``metrics``; ``ready`` is set while subscribed."""

    def __init__(self, inbox: Inbox, metrics: Metrics, stop: threading.Event, *,
                 host: str, port: int, client_id: str, group: str,
                 username: str | None = None, password: str | None = None,
                 ca_file: str | None = None, receive_maximum: int = 1000,
                 session_expiry_s: int = 7 * 24 * 3600, keepalive_s: int = 300):
        self.inbox = inbox
        self.metrics = metrics
        self.host, self.port, self.client_id = host, port, client_id
        self.subscription = f"$share/{group}/tingbao/v1/+/+/+/{{{','.join(contract.KINDS)}}}"
        """What is subscribed, for logs (one filter per kind, :attr:`subscriptions`)."""
        self.subscriptions = [f"$share/{group}/{f}" for f in SUBSCRIPTIONS]
        self._old_subscription = f"$share/{group}/{SUBSCRIPTION}"
        self.receive_maximum = receive_maximum
        self.session_expiry_s = session_expiry_s
        self.keepalive_s = keepalive_s
        self.ready = threading.Event()  # connected and subscribed
        self.generation = 0  # counts connects and disconnects: which connection is current
        self.connected = False
        self._stop = stop
        self._ack_lock = threading.Lock()  # generation, connected and the PUBACKs they allow
        self._warn = Every(10.0)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if username is not None:
            client.username_pw_set(username, password)
        if ca_file:
            client.tls_set(ca_certs=ca_file)
        client.reconnect_delay_set(1, 30)
        client.on_socket_open = tcp_keepalive
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client

    # ------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Connect in the background (paho's network thread; it reconnects by itself)."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(self.session_expiry_s)
        props.ReceiveMaximum = int(self.receive_maximum)
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s,
                                  clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect (the session and its unacknowledged messages stay in the broker)."""
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # ------------------------------------------------------------------ acknowledgements
    def ack(self, items: Iterable[Inbound]) -> None:
        """PUBACK each delivery, in order, on the connection that delivered it. A delivery of
        an earlier connection is skipped (``stale_unacked``): its packet id means nothing to
        the current one, and the broker delivers it again on the new connection."""
        counts = self.metrics.counts
        with self._ack_lock:
            for item in items:
                if item.generation != self.generation or not self.connected:
                    counts["stale_unacked"] += 1  # re-delivered on the new connection
                    continue
                if item.qos > 0:
                    self.client.ack(item.mid, item.qos)
                    counts["acked"] += 1

    def publish(self, topic: str, payload: bytes) -> bool:
        """Queue one QoS 1 message (not retained) on this session, from any thread (the
        worker publishes receipts); paho sends it now or after the reconnection. Returns
        False when paho refused to queue it."""
        info = self.client.publish(topic, payload, qos=1)
        return info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)

    def drop_connection(self) -> None:
        """Drop the connection (paho reconnects by itself): MQTT 5 re-delivers unacknowledged
        messages only on a new connection."""
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError as e:
                log.debug("shutting the MQTT socket down failed: %s", e)

    def _send_acks(self) -> None:
        """Write queued PUBACKs (and anything else paho has queued) from paho's own thread
        while it waits for room in the inbox."""
        try:
            self.client.loop_write()
        except Exception as e:  # the network loop handles a broken socket itself
            log.debug("writing acknowledgements while waiting failed: %s", e)

    # --------------------------------------------------------------- paho's callbacks
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.metrics.last_error = f"MQTT connection refused: {reason_code}"
            if self._warn("connect"):
                log.error("broker %s:%s refused the connection: %s", self.host, self.port,
                          reason_code)
            return
        with self._ack_lock:
            self.generation += 1
            self.connected = True
        self.metrics.counts["connects"] += 1
        log.info("connected to %s:%s as %r (session present: %s); subscribing to %s",
                 self.host, self.port, self.client_id, flags.session_present,
                 self.subscription)
        # retainHandling=2: no retained messages at subscribe (Mosquitto < 2.0.13 sends them
        # to shared subscriptions, and every reconnect would store them again)
        client.subscribe([(f, SubscribeOptions(qos=1, retainHandling=2))
                          for f in self.subscriptions])
        client.unsubscribe(self._old_subscription)  # harmless when the session has none

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._ack_lock:
            self.generation += 1
            self.connected = False
        self.ready.clear()
        self.metrics.counts["disconnects"] += 1
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            self.metrics.last_error = f"subscription to {self.subscription} refused: {bad[0]}"
            log.error("%s (is the MQTT account allowed to read tingbao/v1/#?)",
                      self.metrics.last_error)
            return
        self.ready.set()

    def _on_message(self, client, userdata, message):
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = bytes(message._topic).decode("utf-8", "backslashreplace")
        if topic.endswith("/" + contract.RECEIPTS):  # not data: an older subscription's
            if message.qos > 0:  # on the connection that delivered it: this one
                client.ack(message.mid, message.qos)
            self.metrics.counts["receipts_ignored"] += 1
            return
        payload = message.payload
        size, digest = len(payload), ""
        if size > contract.MAX_PAYLOAD_BYTES:  # refused for its size alone: keep a prefix
            digest = hashlib.sha256(payload).hexdigest()
            payload = payload[:RAW_LIMIT_FILE]
        item = Inbound(message.mid, message.qos, topic, bytes(payload), time.time_ns(),
                       time.monotonic(), self.generation, size, digest)
        if message.dup:
            self.metrics.counts["redelivered"] += 1
        self.inbox.put(item, self._stop, on_wait=self._send_acks)
