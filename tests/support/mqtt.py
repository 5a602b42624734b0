"""MQTT clients on the test stack's broker (paho-mqtt 2.x, MQTT v5).

* :func:`mqtt_client`: a connected client whose received messages queue up in
  ``client.tb_messages``, with :func:`publish` (returns the PUBACK reason code),
  :func:`subscribe` (returns the granted reason codes), :func:`drain` and :func:`close`;
* :class:`Publisher`: a device that keeps up to 1000 QoS 1 messages in flight, for tests that
  publish many messages quickly.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time

from support.wait import wait_for
from tingbao.edge import contract


class MqttRefused(ConnectionError):
    """The broker refused the connection; ``reason_code`` is the CONNACK reason code (MQTT v5:
    134 bad user name or password, 135 not authorized)."""

    def __init__(self, reason_code: int, text: str):
        super().__init__(f"MQTT connection refused: {reason_code} {text}")
        self.reason_code = reason_code


def mqtt_client(stack, user: str | None, password: str | None = None,
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
    # paho's network thread sleeps out the reconnect delay (1 s by default) before it sees
    # loop_stop(): a refused or lost connection would cost every close() a second
    client.reconnect_delay_set(min_delay=0.1, max_delay=1)
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
    wait_for(lambda: info.mid in client.tb_pubacks, timeout, f"the PUBACK for {topic}",
             interval=0.005)
    return client.tb_pubacks.pop(info.mid).value


def subscribe(client, topic_filter: str, qos: int = 1, timeout: float = 5.0) -> list[int]:
    """Subscribe and wait for SUBACK; returns its reason codes (0–2 granted QoS, 135 not
    authorized)."""
    _, mid = client.subscribe(topic_filter, qos=qos)
    wait_for(lambda: mid in client.tb_subacks, timeout, f"the SUBACK for {topic_filter}",
             interval=0.005)
    return [rc.value for rc in client.tb_subacks.pop(mid)]


def drain(client, wait: float = 0.3) -> list:
    """The messages received so far, waiting ``wait`` seconds after the last one."""
    out = []
    while True:
        try:
            out.append(client.tb_messages.get(timeout=wait))
        except queue.Empty:
            return out


class Publisher:
    """A device's MQTT v5 client that keeps up to 1000 QoS 1 messages in flight (paho's
    default of 20 would make the publisher the bottleneck)."""

    def __init__(self, stack, user: str):
        from paho.mqtt import client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"pub-{user}-{secrets.token_hex(4)}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, stack.mqtt_account(user).password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.refused: list[int] = []
        self.client.on_publish = self._on_publish
        self.client.connect(stack.host, stack.mqtt_port, keepalive=30)
        self.client.loop_start()
        self.infos = []

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if reason_code.is_failure:
            self.refused.append(reason_code.value)

    def publish(self, topic: str, payload: bytes | dict, qos: int = 1):
        if isinstance(payload, dict):
            payload = contract.encode(payload)
        info = self.client.publish(topic, payload, qos=qos)
        self.infos.append(info)
        return info

    def wait(self, timeout: float = 60.0, refused: int = 0) -> None:
        """Wait until the broker acknowledged everything published so far; exactly
        ``refused`` of them must have been refused as not authorized (135)."""
        deadline = time.monotonic() + timeout
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "broker did not acknowledge a publish"
        self.infos = []
        assert len(self.refused) == refused and set(self.refused) <= {135}, \
            f"broker refused {len(self.refused)} publishes, not {refused}: {self.refused[:5]}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
