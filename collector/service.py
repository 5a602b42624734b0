"""The collector service: MQTT (v5 shared subscription) → validation → InfluxDB, with an
acknowledgement only after InfluxDB stored the message (at-least-once, and idempotent
points make it effectively exactly-once for data).

Flow of one message::

    broker ──PUBLISH (QoS 1)──▶ paho network thread ──queue──▶ worker thread
        worker: contract.validate → known meter? → line protocol        (or a dead letter)
                batch of N lines or T ms ──POST /write──▶ InfluxDB ──204──▶ PUBACK each, in order

* **Persistent session**: a stable client id, ``clean_start=False`` and a long session
  expiry, so messages wait in the broker while the collector is down or InfluxDB is.
* **Shared subscription** ``$share/<group>/tingbao/v1/+/+/+/+``: several collectors with
  the same group split the stream.
* **Manual acknowledgement**: paho's ``manual_ack=True``; the MQTT v5 Receive Maximum
  bounds how many unacknowledged messages the broker sends, which is the back-pressure.
* **Retries**: a transient InfluxDB error (down, 5xx, timeout) or a configuration error
  (401/403/404) keeps the batch and retries it with exponential back-off (capped);
  nothing is acknowledged meanwhile. A data error (HTTP 400) splits the batch in halves
  until the refused message is found; it becomes a dead letter with InfluxDB's message,
  and every other message of the batch is stored.
* **Reconnects**: a PUBACK is only sent on the connection that delivered the message; after
  a reconnect the broker re-delivers what was not acknowledged, and the rewrite overwrites
  the same points.
* **Offline group members**: Mosquitto 2.0 keeps sharing messages round-robin with a
  member whose persistent session is offline (seen: 50 of 100 queued for a stopped
  collector). Nothing is lost while it comes back within ``session_expiry_s`` with the
  same ``client_id``, but its share waits until then; a collector taken out of service for
  good must first be drained, or its queued share is lost when the session expires.

Counters (``Collector.counters()`` and ``GET /metrics``): ``received``, ``written`` (data
messages stored; ``written_levels`` the levels records they held, one per channel),
``rejected`` (dead letters stored), ``retries`` (failed write attempts), ``acked`` (PUBACKs
sent), ``lag_s`` (now − end of the newest stored levels interval), ``batch_latency_s``
(arrival of a batch's first message → its acknowledgement), ``latency_hist`` (levels records
by interval end → stored, ``{"edges_ms": [...], "counts": [...]}``, count i = latency ≤ edge
i and > edge i−1) with ``latency_p50_s`` / ``latency_p99_s`` read from it, and more.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import hashlib
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from paho.mqtt import client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from tingbao.edge import contract

from .deadletter import (
    RAW_LIMIT_FILE,
    RAW_LIMIT_INFLUX,
    DeadLetter,
    DeadLetterFile,
    UniqueClock,
    safe_tag,
)
from .influx import ConfigError, DataError, InfluxClient, TransientError
from .lineprotocol import LineProtocolError, message_lines
from .rollups import Rollups, RollupThread, SeriesKey

log = logging.getLogger("tingbao.collector")

SUBSCRIPTION = "tingbao/v1/+/+/+/+"
LATENCY_EDGES_MS = (10, 20, 50, 100, 150, 200, 300, 400, 500, 750, 1000, 1250, 1500, 2000,
                    2500, 3000, 4000, 5000, 7500, 10_000, 15_000, 20_000, 30_000, 60_000,
                    120_000, 300_000, 600_000, 3_600_000, 86_400_000)
"""Upper bucket edges of the end-to-end latency histogram (interval end → stored and
acknowledged), ms; the last bucket also holds everything slower."""
INBOX_MAX_BYTES = 64 * 1024 * 1024
"""Received messages waiting for the worker are bounded to this many bytes (and to twice the
Receive Maximum in number)."""
MAX_BATCH_BYTES = 8 * 1024 * 1024
"""A batch is also written once its line protocol reaches this size (InfluxDB's default
max-body-size is 25 MB)."""


# ------------------------------------------------------------------------------ settings
@dataclasses.dataclass
class MqttSettings:
    """``[mqtt]``: the broker and this collector's session."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    group: str = "tingbao-collectors"
    client_id: str = "tingbao-collector-1"
    receive_maximum: int = 1000
    session_expiry_s: int = 7 * 24 * 3600
    keepalive_s: int = 300
    ca_file: str | None = None


@dataclasses.dataclass
class InfluxSettings:
    """``[influx]``: the database the points go to."""

    url: str = "http://127.0.0.1:8086"
    db: str = "tingbao"
    username: str | None = None
    password: str | None = None
    retention: str | None = None
    timeout_s: float = 10.0


@dataclasses.dataclass
class CollectorSettings:
    """``[collector]``: batching, meters, metrics, dead letters."""

    batch_size: int = 500
    batch_ms: int = 200
    known_meters: tuple[str, ...] = ()
    accept_any_meter: bool = False
    metrics_port: int = 0
    deadletter_file: str | None = None
    retry_cap_s: float = 10.0
    stop_timeout_s: float = 10.0


@dataclasses.dataclass
class RollupSettings:
    """``[rollups]``: 1-minute rollups (need an account that may read)."""

    enabled: bool = True
    retention: str | None = "forever"
    username: str | None = None
    password: str | None = None
    settle_ms: int = 1000
    catchup_minutes: int = 60


@dataclasses.dataclass
class Config:
    """Everything :class:`Collector` needs (``tingbao collector`` reads it from TOML)."""

    mqtt: MqttSettings = dataclasses.field(default_factory=MqttSettings)
    influx: InfluxSettings = dataclasses.field(default_factory=InfluxSettings)
    collector: CollectorSettings = dataclasses.field(default_factory=CollectorSettings)
    rollups: RollupSettings = dataclasses.field(default_factory=RollupSettings)


# ------------------------------------------------------------------------------- records
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


@dataclasses.dataclass
class Entry:
    """One message of a batch: its lines, or its dead letter."""

    inbound: Inbound
    lines: list[str]
    dead: DeadLetter | None = None
    # levels records (one per channel): (series, interval start ns, interval end ns), for
    # rollups, lag and latency
    spans: list[tuple[SeriesKey, int, int]] = dataclasses.field(default_factory=list)


class _Inbox:
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


class _Every:
    """True at most once per ``seconds`` per key (log rate limiting)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._last: dict[str, float] = {}

    def __call__(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.seconds:
            self._last[key] = now
            return True
        return False


def _percentile(counts: list[int], q: float) -> float | None:
    """The q-th percentile of the latency histogram (its bucket's upper edge), seconds."""
    total = sum(counts)
    if not total:
        return None
    run = 0
    for edge, n in zip(LATENCY_EDGES_MS, counts, strict=True):
        run += n
        if run >= q / 100 * total:
            return edge / 1000.0
    return LATENCY_EDGES_MS[-1] / 1000.0


def _tcp_keepalive(client, userdata, sock) -> None:
    """Detect a dead broker connection at the TCP level within about a minute.

    MQTT's own keep-alive is in-band: paho drops the connection when a PINGRESP does not
    arrive within ``keepalive_s`` of its PINGREQ, and under back-pressure (the collector not
    reading while it catches up, with thousands of messages queued ahead of the PINGRESP)
    it would drop healthy connections. So the MQTT keep-alive is long (300 s by default)
    and TCP keep-alive probes plus ``TCP_USER_TIMEOUT`` catch dead peers instead."""
    import socket

    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3),
                            ("TCP_USER_TIMEOUT", 60_000)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except (OSError, AttributeError) as e:  # e.g. a TLS socket wrapper without setsockopt
        log.debug("TCP keep-alive not set: %s", e)


class _Aborted(Exception):
    """A write was given up because the collector is stopping."""


# ------------------------------------------------------------------------------ collector
class Collector:
    """Subscribes, validates, stores, acknowledges. ``start()``/``stop()`` for embedding and
    tests, ``run()`` blocks until ``request_stop()`` (e.g. from a SIGTERM handler)."""

    def __init__(self, config: Config):
        self.config = config
        c = config.collector
        self.batch_size = max(1, int(c.batch_size))
        self.batch_s = max(0.001, c.batch_ms / 1000.0)
        self.known_meters = frozenset(c.known_meters)
        self.collector_tag = safe_tag(config.mqtt.client_id)
        self.writer = InfluxClient(config.influx.url, config.influx.db, config.influx.username,
                                   config.influx.password, config.influx.timeout_s)
        self.deadletter_file = DeadLetterFile(c.deadletter_file) if c.deadletter_file else None
        self.rollups: Rollups | None = None
        if config.rollups.enabled:
            r = config.rollups
            if not r.username:
                log.info("rollups read with the [influx] account, which then needs READ on "
                         "%r as well", config.influx.db)
            reader = InfluxClient(config.influx.url, config.influx.db,
                                  r.username or config.influx.username,
                                  r.password if r.username else config.influx.password,
                                  config.influx.timeout_s)
            self.rollups = Rollups(reader, self.writer, source_rp=config.influx.retention,
                                   target_rp=r.retention, settle_s=r.settle_ms / 1000.0)
        self._inbox = _Inbox(max(2 * config.mqtt.receive_maximum, 2 * self.batch_size, 1000),
                             INBOX_MAX_BYTES)
        # what a dead letter keeps of the raw payload in memory until it is stored
        self._keep_raw = RAW_LIMIT_FILE if self.deadletter_file else RAW_LIMIT_INFLUX
        self._clock = UniqueClock()
        self._stop = threading.Event()  # stop requested
        self._abort = threading.Event()  # give up the batch in hand, do not acknowledge it
        self._flush_on_stop = True
        self._stopped = False
        self._stop_lock = threading.Lock()
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self.ready = threading.Event()  # connected and subscribed
        self._warn = _Every(10.0)
        self._counts: dict[str, float] = dict.fromkeys(
            ("received", "written", "rejected", "retries", "acked", "batches",
             "written_levels", "redelivered", "splits", "stale_unacked",
             "dead_letter_failed",
             "deadletter_file_errors", "internal_errors", "connects", "disconnects"), 0)
        self._by_stage: dict[str, int] = {}
        self._newest_end_ns: int | None = None
        self._latency_counts = [0] * len(LATENCY_EDGES_MS)
        self._batch_latency: float | None = None
        self._batch_latency_max = 0.0
        self._write_latency: float | None = None
        self._write_latency_max = 0.0
        self._started = time.monotonic()
        self._last_error: str | None = None
        self._client = self._make_client()
        self._worker = threading.Thread(target=self._work, name="tingbao-collector",
                                        daemon=True)
        self._rollup_thread = (RollupThread(self.rollups,
                                            catchup_minutes=config.rollups.catchup_minutes)
                               if self.rollups else None)
        self._http: ThreadingHTTPServer | None = None

    # --------------------------------------------------------------------------- MQTT
    def _make_client(self) -> mqtt.Client:
        m = self.config.mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=m.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if m.username is not None:
            client.username_pw_set(m.username, m.password)
        if m.ca_file:
            client.tls_set(ca_certs=m.ca_file)
        client.reconnect_delay_set(1, 30)
        client.on_socket_open = _tcp_keepalive
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(self.config.mqtt.session_expiry_s)
        props.ReceiveMaximum = int(self.config.mqtt.receive_maximum)
        return props

    @property
    def subscription(self) -> str:
        return f"$share/{self.config.mqtt.group}/{SUBSCRIPTION}"

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._last_error = f"MQTT connection refused: {reason_code}"
            if self._warn("connect"):
                log.error("broker %s:%s refused the connection: %s", self.config.mqtt.host,
                          self.config.mqtt.port, reason_code)
            return
        with self._ack_lock:
            self._generation += 1
            self._connected = True
        self._counts["connects"] += 1
        log.info("connected to %s:%s as %r (session present: %s); subscribing to %s",
                 self.config.mqtt.host, self.config.mqtt.port, self.config.mqtt.client_id,
                 flags.session_present, self.subscription)
        # retainHandling=2: no retained messages at subscribe (Mosquitto < 2.0.13 sends them
        # to shared subscriptions, and every reconnect would store them again)
        client.subscribe(self.subscription,
                         options=SubscribeOptions(qos=1, retainHandling=2))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._ack_lock:
            self._generation += 1
            self._connected = False
        self.ready.clear()
        self._counts["disconnects"] += 1
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            self._last_error = f"subscription to {self.subscription} refused: {bad[0]}"
            log.error("%s (is the MQTT account allowed to read tingbao/v1/#?)",
                      self._last_error)
            return
        self.ready.set()

    def _on_message(self, client, userdata, message):
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = bytes(message._topic).decode("utf-8", "backslashreplace")
        payload = message.payload
        size, digest = len(payload), ""
        if size > contract.MAX_PAYLOAD_BYTES:  # refused for its size alone: keep a prefix
            digest = hashlib.sha256(payload).hexdigest()
            payload = payload[:RAW_LIMIT_FILE]
        item = Inbound(message.mid, message.qos, topic, bytes(payload), time.time_ns(),
                       time.monotonic(), self._generation, size, digest)
        if message.dup:
            self._counts["redelivered"] += 1
        self._inbox.put(item, self._stop, on_wait=self._send_acks)

    def _force_reconnect(self) -> None:
        """Drop the connection (paho reconnects by itself): MQTT 5 re-delivers unacknowledged
        messages only on a new connection."""
        import socket

        sock = self._client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError as e:
                log.debug("shutting the MQTT socket down failed: %s", e)

    def _send_acks(self) -> None:
        """Write queued PUBACKs (and anything else paho has queued) from paho's own thread
        while it waits for room in the inbox."""
        try:
            self._client.loop_write()
        except Exception as e:  # the network loop handles a broken socket itself
            log.debug("writing acknowledgements while waiting failed: %s", e)

    # ------------------------------------------------------------------------- lifecycle
    def start(self) -> Collector:
        """Connect (asynchronously; reconnects by itself) and start the worker, rollups and
        the metrics server. Returns at once; ``ready`` is set once subscribed."""
        m = self.config.mqtt
        self._start_metrics()
        self._client.connect_async(m.host, m.port, keepalive=m.keepalive_s, clean_start=False,
                                   properties=self._connect_properties())
        self._client.loop_start()
        self._worker.start()
        if self._rollup_thread:
            self._rollup_thread.start()
        log.info("collector %r started: batches of %d lines or %g ms, %s", m.client_id,
                 self.batch_size, self.batch_s * 1000,
                 "any meter accepted" if self.config.collector.accept_any_meter
                 else f"{len(self.known_meters)} known meters")
        return self

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> None:
        """Start and block until :meth:`request_stop` (or :meth:`stop`), then shut down."""
        self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.stop()

    def stop(self, flush: bool = True, timeout: float | None = None) -> None:
        """Stop: with ``flush`` the messages already received are stored and acknowledged
        first (for at most ``stop_timeout_s``); without it (a simulated crash) nothing more
        is acknowledged and the broker re-delivers those messages to the next session."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        timeout = self.config.collector.stop_timeout_s if timeout is None else timeout
        self._flush_on_stop = flush
        if not flush:
            self._abort.set()
        self._stop.set()
        timer = threading.Timer(timeout, self._abort.set)
        timer.daemon = True
        timer.start()
        try:
            if self._worker.is_alive():
                self._worker.join(timeout + self.config.influx.timeout_s + 1.0)
            if self._rollup_thread and self._rollup_thread.is_alive():
                self._rollup_thread.stop(final=flush)
            try:
                self._client.disconnect()
            finally:
                self._client.loop_stop()
        finally:
            timer.cancel()
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()
        log.info("collector stopped: %s", json.dumps(self.counters()))

    # ---------------------------------------------------------------------------- worker
    def _work(self) -> None:
        batch: list[Entry] = []
        batch_bytes = 0
        deadline = 0.0
        while not self._stop.is_set():
            try:
                timeout = max(0.0, deadline - time.monotonic()) if batch else 0.2
                item = self._inbox.get(min(timeout, 0.2))
                while item is not None:
                    if not batch:
                        deadline = time.monotonic() + self.batch_s
                    entry = self._entry(item)
                    batch.append(entry)
                    batch_bytes += sum(len(ln) for ln in entry.lines)
                    if len(batch) >= self.batch_size or batch_bytes >= MAX_BATCH_BYTES:
                        break
                    item = self._inbox.get(0)
                if batch and (len(batch) >= self.batch_size or batch_bytes >= MAX_BATCH_BYTES
                              or time.monotonic() >= deadline):
                    self._flush(batch)
                    batch, batch_bytes = [], 0
            except Exception:  # a bug must not stop the service
                self._counts["internal_errors"] += 1
                log.exception("collector worker error: %d message(s) not acknowledged; "
                              "reconnecting so that the broker delivers them again",
                              len(batch))
                batch, batch_bytes = [], 0
                self._force_reconnect()
                time.sleep(0.5)
        if self._flush_on_stop and not self._abort.is_set():
            while (item := self._inbox.get(0)) is not None:
                batch.append(self._entry(item))
            for i in range(0, len(batch), self.batch_size):
                if self._abort.is_set():
                    break
                self._flush(batch[i:i + self.batch_size])

    def _entry(self, item: Inbound) -> Entry:
        """Validate and convert one delivery; never raises."""
        self._counts["received"] += 1
        if item.size > contract.MAX_PAYLOAD_BYTES:  # cut in _on_message: refuse by size
            return self._dead(item, "contract", f"payload of {item.size} bytes exceeds "
                              f"{contract.MAX_PAYLOAD_BYTES}")
        try:
            msg = contract.validate(item.topic, item.payload)
        except contract.ContractError as e:
            return self._dead(item, "contract", str(e))
        except ValueError as e:  # e.g. json's "Exceeds the limit (4300 digits)" slips through
            return self._dead(item, "contract", f"payload is not valid: {e}")
        except Exception as e:
            self._counts["internal_errors"] += 1
            log.exception("validation crashed on a message from %r", item.topic[:200])
            return self._dead(item, "internal", f"validation failed: {type(e).__name__}: {e}")
        meter = msg.topic.meter
        if not self.config.collector.accept_any_meter and meter not in self.known_meters:
            return self._dead(item, "meter", f"unknown meter {meter!r}: not in [collector] "
                              "known_meters")
        try:
            lines = message_lines(msg)
        except LineProtocolError as e:
            return self._dead(item, "convert", f"cannot be stored: {e}")
        except Exception as e:
            self._counts["internal_errors"] += 1
            log.exception("conversion crashed on a message from %r", item.topic[:200])
            return self._dead(item, "internal", f"conversion failed: {type(e).__name__}: {e}")
        entry = Entry(item, lines)
        if msg.topic.kind == "levels":
            t, p = msg.topic, msg.payload
            start = int(p["start_ns"])
            end = start + int(round(float(p["duration_s"]) * 1e9))
            entry.spans = [(SeriesKey(t.enterprise, t.site, meter, str(r["channel"])), start, end)
                           for r in msg.records()]
        return entry

    def _dead(self, item: Inbound, stage: str, reason: str) -> Entry:
        size = item.size if item.size >= 0 else len(item.payload)
        digest = item.sha256 or hashlib.sha256(item.payload).hexdigest()
        letter = DeadLetter(stage, reason, item.topic, item.payload[:self._keep_raw],
                            self._clock(item.received_ns), self.collector_tag, size, digest)
        log.debug("dead letter (%s) from %r: %s", stage, item.topic[:200], reason)
        return Entry(item, [letter.to_line()], dead=letter)

    # ----------------------------------------------------------------------------- flush
    def _flush(self, batch: list[Entry]) -> None:
        """Store a batch (retrying, splitting around refused points) and acknowledge it."""
        if not batch:
            return
        t0 = time.monotonic()
        try:
            self._store(batch)
        except _Aborted:
            log.info("stopping: %d message(s) not acknowledged, the broker keeps them",
                     len(batch))
            return
        self._write_latency = time.monotonic() - t0
        self._write_latency_max = max(self._write_latency_max, self._write_latency)
        if self._abort.is_set():
            return
        letters = [e.dead for e in batch if e.dead is not None]
        if letters and self.deadletter_file is not None:
            try:
                self.deadletter_file.append(letters)
            except OSError as e:
                self._counts["deadletter_file_errors"] += 1
                if self._warn("dlfile"):
                    log.error("cannot append to dead-letter file %s: %s",
                              self.deadletter_file.path, e)
        self._ack(batch)
        self._account(batch, letters)
        self._batch_latency = time.monotonic() - batch[0].inbound.arrived
        self._batch_latency_max = max(self._batch_latency_max, self._batch_latency)

    def _store(self, batch: list[Entry]) -> None:
        """Write all entries; on a data error split the batch and turn each refused message
        into a dead letter carrying InfluxDB's message."""
        rp = self.config.influx.retention
        parts = [batch]
        while parts:
            part = parts.pop(0)
            try:
                self._write([ln for e in part for ln in e.lines], rp)
            except DataError as e:
                if len(part) > 1:
                    self._counts["splits"] += 1
                    half = len(part) // 2
                    parts[0:0] = [part[:half], part[half:]]
                    continue
                entry = part[0]
                if entry.dead is None:
                    item = entry.inbound
                    dead = self._dead(item, "store", f"InfluxDB refused the point: {e.message}")
                    entry.lines, entry.dead, entry.spans = dead.lines, dead.dead, []
                    parts.insert(0, [entry])
                else:  # cannot happen with valid dead-letter lines; never loop on it
                    self._counts["dead_letter_failed"] += 1
                    log.error("InfluxDB refused a dead letter (%s); it is only logged: %s",
                              e.message, entry.dead.to_json())
                    entry.lines = []

    def _write(self, lines: list[str], rp: str | None) -> None:
        """One write, retried with exponential back-off on transient and configuration
        errors until it succeeds or the collector aborts."""
        if not lines:
            return
        delay = 0.1
        cap = self.config.collector.retry_cap_s
        while True:
            if self._abort.is_set():
                raise _Aborted
            try:
                self.writer.write(lines, rp=rp)
                return
            except (TransientError, ConfigError) as e:
                self._counts["retries"] += 1
                self._last_error = str(e)
                if self._warn("write"):
                    log.warning("InfluxDB write of %d line(s) failed, retrying in %.1f s "
                                "(messages wait in the broker): %s", len(lines), delay, e)
                if self._abort.wait(delay):
                    raise _Aborted from None
                delay = min(delay * 2, cap)

    def _ack(self, batch: list[Entry]) -> None:
        with self._ack_lock:
            for e in batch:
                item = e.inbound
                if item.generation != self._generation or not self._connected:
                    self._counts["stale_unacked"] += 1  # re-delivered on the new connection
                    continue
                if item.qos > 0:
                    self._client.ack(item.mid, item.qos)
                    self._counts["acked"] += 1

    def _account(self, batch: list[Entry], letters: list[DeadLetter]) -> None:
        self._counts["batches"] += 1
        self._counts["rejected"] += len(letters)
        self._counts["written"] += len(batch) - len(letters)
        for d in letters:
            self._by_stage[d.stage] = self._by_stage.get(d.stage, 0) + 1
        if letters and self._warn("dead"):
            d = letters[-1]
            log.warning("%d message(s) dead-lettered so far; latest from %r (%s): %s",
                        self._counts["rejected"], d.topic[:120], d.stage, d.reason[:300])
        now_ns = time.time_ns()
        last = len(LATENCY_EDGES_MS) - 1
        for e in batch:
            for series, start_ns, end_ns in e.spans:
                self._counts["written_levels"] += 1
                i = bisect.bisect_left(LATENCY_EDGES_MS, (now_ns - end_ns) / 1e6)
                self._latency_counts[min(i, last)] += 1
                if self._newest_end_ns is None or end_ns > self._newest_end_ns:
                    self._newest_end_ns = end_ns
                if self.rollups:
                    self.rollups.touch(series, start_ns)

    # --------------------------------------------------------------------------- metrics
    def counters(self) -> dict:
        """A snapshot of the counters (what ``GET /metrics`` serves)."""
        out: dict = {k: int(v) for k, v in self._counts.items()}
        now = time.time_ns()
        out["lag_s"] = (None if self._newest_end_ns is None
                        else (now - self._newest_end_ns) / 1e9)
        out["batch_latency_s"] = self._batch_latency
        out["batch_latency_max_s"] = self._batch_latency_max
        out["write_latency_s"] = self._write_latency
        counts = list(self._latency_counts)
        out["latency_hist"] = {"edges_ms": list(LATENCY_EDGES_MS), "counts": counts}
        out["latency_p50_s"] = _percentile(counts, 50)
        out["latency_p99_s"] = _percentile(counts, 99)
        out["rejected_by_stage"] = dict(self._by_stage)
        out["queued"] = len(self._inbox)
        out["queued_bytes"] = self._inbox.bytes
        out["inbox_capacity"] = self._inbox.max_items
        out["backpressure_s"] = round(self._inbox.waited_s, 3)
        out["backpressure_max_s"] = round(self._inbox.wait_max_s, 3)
        out["write_latency_max_s"] = self._write_latency_max
        out["connected"] = self._connected
        out["subscribed"] = self.ready.is_set()
        out["uptime_s"] = round(time.monotonic() - self._started, 3)
        out["last_error"] = self._last_error
        if self.rollups:
            out["rollups"] = {"written": self.rollups.written, "pending": self.rollups.pending,
                              "errors": self.rollups.errors, "dropped": self.rollups.dropped,
                              "last_error": self.rollups.last_error}
        return out

    def is_alive(self) -> bool:
        """True while the worker thread runs (it only ends at :meth:`stop`)."""
        return self._worker.is_alive()

    @property
    def metrics_url(self) -> str | None:
        if self._http is None:
            return None
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def _start_metrics(self) -> None:
        port = self.config.collector.metrics_port
        if not port:
            return
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                body = json.dumps(collector.counters()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                log.debug("metrics: " + fmt, *args)

        self._http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="tingbao-metrics",
                         daemon=True).start()
        log.info("metrics on %s", self.metrics_url)
