"""Fixtures that start the real server stack (Mosquitto 2 + InfluxDB 1.x) for tests, and small
helpers to talk to it. Registered in conftest.py with ``pytest_plugins = ["fixtures_stack"]``.

Fixtures:

* ``stack`` (module scope): a running :class:`tingbao.collector.stack.Stack` in a temporary
  directory, with the TLS listener and two device accounts ``m1`` and ``m2``. Tests must
  leave it running (use ``fresh_stack`` to kill or restart parts).
* ``fresh_stack`` (function scope): the same, without TLS, for a single test that may stop,
  kill and restart the broker or the database.

When mosquitto, mosquitto_passwd or influxd is missing, the fixtures FAIL (not skip) with
the text ``apt-get install mosquitto mosquitto-clients influxdb``.

Helpers (import them: ``from fixtures_stack import influx_query, mqtt_client``):

* :func:`influx_query` and :func:`influx_write` for InfluxQL and line protocol;
* :func:`mqtt_client` for a connected paho-mqtt MQTT v5 client whose received messages
  queue up in ``client.tb_messages``, with :func:`publish` (returns the PUBACK reason code)
  and :func:`subscribe` (returns the granted reason codes).
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tingbao.collector.stack import Stack, StackError

DEVICES = ("m1", "m2")
"""Device accounts (meter ids) made in every test stack."""


def start_stack(data_dir: Path, *, tls: bool = False, devices=DEVICES, **kwargs) -> Stack:
    """Start a Stack in ``data_dir`` with device accounts; ``pytest.fail`` (with the install
    hint) when it cannot start."""
    stack = Stack(data_dir, tls=tls, **kwargs)
    try:
        stack.prepare()
        stack.add_devices(devices)
        stack.start()
    except StackError as e:
        stack.stop()
        pytest.fail(str(e), pytrace=False)
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """A running stack (TLS listener on, devices ``m1``, ``m2``) shared by a test module."""
    s = start_stack(tmp_path_factory.mktemp("stack"), tls=True)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def fresh_stack(tmp_path) -> Iterator[Stack]:
    """A running stack of its own (no TLS, devices ``m1``, ``m2``) for a test that kills or
    restarts parts of it."""
    s = start_stack(tmp_path / "stack")
    try:
        yield s
    finally:
        s.stop()


# ------------------------------------------------------------------------------ InfluxDB
def influx_query(stack: Stack, q: str, user: str = "reader", *, epoch: str | None = None
                 ) -> list[dict]:
    """Run InfluxQL as ``user`` (``reader``, ``writer`` or ``admin``) on database ``tingbao``;
    returns the rows of all series as dicts of column -> value, with the series' GROUP BY
    tags merged in (and ``"_measurement"`` naming the series). Raises StackError on an HTTP
    or query error. ``epoch="ns"`` gives integer times."""
    answer = stack.influx_query(q, user=user, epoch=epoch)
    rows = []
    for result in answer.get("results", []):
        for series in result.get("series", []) or []:
            columns = series["columns"]
            extra = {"_measurement": series.get("name"), **(series.get("tags") or {})}
            for values in series.get("values", []) or []:
                rows.append({**extra, **dict(zip(columns, values, strict=True))})
    return rows


def influx_write(stack: Stack, lines, user: str = "writer", rp: str | None = None) -> None:
    """Write line protocol (a string or an iterable of lines, ns precision) to ``tingbao``."""
    stack.influx_write(lines, user=user, rp=rp)


# ---------------------------------------------------------------------------------- MQTT
class MqttRefused(ConnectionError):
    """The broker refused the connection; ``reason_code`` is the CONNACK reason code (MQTT v5:
    134 bad user name or password, 135 not authorized)."""

    def __init__(self, reason_code: int, text: str):
        super().__init__(f"MQTT connection refused: {reason_code} {text}")
        self.reason_code = reason_code


def mqtt_client(stack: Stack, user: str | None, password: str | None = None,
                client_id: str | None = None, *, clean_start: bool = True,
                session_expiry: int = 0, tls: bool = False, receive_maximum: int | None = None,
                timeout: float = 5.0):
    """A paho-mqtt 2.x MQTT v5 client connected to the stack's broker, network loop running.

    Args:
        user: user name (``collector``, ``analysis``, a meter id) or None for anonymous.
        password: its password; None takes it from the stack's credentials.
        client_id: the client id (random if None; give one for a persistent session).
        clean_start: MQTT v5 clean start; False resumes a stored session. A session that
            must survive a broker restart needs False on every connect, the first one too:
            mosquitto 2.0.11 saves only sessions whose last CONNECT had clean start false.
        session_expiry: session expiry interval, seconds (0: ends at disconnect).
        tls: connect to the TLS listener, trusting the stack's CA.
        receive_maximum: the client's Receive Maximum (unacknowledged QoS 1 messages the
            broker may send it).
        timeout: seconds to wait for CONNACK.

    Received messages are put in ``client.tb_messages`` (a queue.Queue of paho
    MQTTMessage). Raises :class:`MqttRefused` when the broker refuses. Call
    ``client.disconnect(); client.loop_stop()`` when done (or use :func:`close`).
    """
    from paho.mqtt import client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=client_id or f"test-{secrets.token_hex(4)}",
                         protocol=mqtt.MQTTv5)
    if user is not None:
        if password is None:
            password = stack.mqtt_account(user).password
        client.username_pw_set(user, password)
    if tls:
        client.tls_set_context(stack.ssl_context())
    client.tb_messages = queue.Queue()
    client.tb_pubacks = {}
    client.tb_subacks = {}
    connected = threading.Event()
    outcome = {}

    def on_connect(c, userdata, flags, reason_code, properties):
        outcome["rc"] = reason_code
        connected.set()

    def on_message(c, userdata, message):
        c.tb_messages.put(message)

    def on_publish(c, userdata, mid, reason_code, properties):
        c.tb_pubacks[mid] = reason_code

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        c.tb_subacks[mid] = reason_codes

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_publish = on_publish
    client.on_subscribe = on_subscribe
    props = Properties(PacketTypes.CONNECT)
    if session_expiry:
        props.SessionExpiryInterval = int(session_expiry)
    if receive_maximum:
        props.ReceiveMaximum = int(receive_maximum)
    port = stack.tls_port if tls else stack.mqtt_port
    client.connect(stack.host, port, keepalive=30, clean_start=clean_start, properties=props)
    client.loop_start()
    if not connected.wait(timeout):
        close(client)
        raise TimeoutError(f"no CONNACK from {stack.host}:{port} within {timeout} s")
    rc = outcome["rc"]
    if rc.is_failure:
        close(client)
        raise MqttRefused(rc.value, str(rc))
    return client


def close(client) -> None:
    """Disconnect a client from :func:`mqtt_client` and stop its network thread."""
    try:
        client.disconnect()
    finally:
        client.loop_stop()


def publish(client, topic: str, payload: bytes | str, qos: int = 1, timeout: float = 5.0
            ) -> int:
    """Publish and wait for the broker's answer; returns the PUBACK reason code for QoS 1
    (0 success, 16 no matching subscribers, 135 not authorized), 0 for QoS 0."""
    info = client.publish(topic, payload, qos=qos)
    if qos == 0:
        info.wait_for_publish(timeout)
        return 0
    deadline = time.monotonic() + timeout
    while info.mid not in client.tb_pubacks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no PUBACK for {topic} within {timeout} s")
        time.sleep(0.005)
    return client.tb_pubacks.pop(info.mid).value


def subscribe(client, topic_filter: str, qos: int = 1, timeout: float = 5.0) -> list[int]:
    """Subscribe and wait for SUBACK; returns its reason codes (0–2 granted QoS, 135 not
    authorized)."""
    _, mid = client.subscribe(topic_filter, qos=qos)
    deadline = time.monotonic() + timeout
    while mid not in client.tb_subacks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no SUBACK for {topic_filter} within {timeout} s")
        time.sleep(0.005)
    return [rc.value for rc in client.tb_subacks.pop(mid)]


def drain(client, wait: float = 0.3) -> list:
    """The messages received so far, waiting ``wait`` seconds after the last one."""
    out = []
    while True:
        try:
            out.append(client.tb_messages.get(timeout=wait))
        except queue.Empty:
            return out
