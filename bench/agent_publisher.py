"""How fast one agent's publisher empties its outbox through a real Mosquitto, and how soon a
live record overtakes a paced backlog.

Not a test: it prints figures; its last line is one JSON object. (The agent tests check what
is delivered — every seq once, the live record ahead of the backlog still queued; the speed is
measured here, where a loaded machine does not make a test fail.)

(a) ``--records`` (default 5000) levels records in an outbox, an unlimited backlog rate, the
    collector account subscribed and receipting what it received every 50 ms, as a
    collector does per stored batch (the agent keeps a record until a receipt covers it):
    ``messages_per_s`` from the first send until the outbox is empty (QoS 1, window of
    ``window`` records; ``--no-receipts``: until the last PUBACK, the rule before receipts,
    for comparison); ``throughput_ratio`` = messages_per_s / 1000 (the floor the agent tests
    used to assert: ≥ 1 meets it).
(b) 1000 old records paced at 200/s; after 0.5 s a live record is appended:
    ``live_latency_s`` from the append to its arrival at the subscriber;
    ``live_latency_ratio`` = live_latency_s / 0.5 s (the bound the agent tests used to assert:
    < 1 meets it; behind the backlog it would take about 4 s).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

ENT, SITE = "bench", "s1"
FLOOR_PER_S = 1000.0
"""Messages per second the agent tests once asserted."""
LIVE_BOUND_S = 0.5
"""Live-record latency the agent tests once asserted."""


class Subscriber:
    """The collector account on a persistent QoS 1 session for one meter's topics; counts the
    levels records that arrive and notes when an event with ``"live": true`` does."""

    def __init__(self, stack, meter: str, receipts: bool = True):
        from paho.mqtt import client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.received = 0
        self.receipts = receipts
        self._seqs: list[int] = []
        self._closing = threading.Event()
        self.live_at: float | None = None
        self.live = threading.Event()
        subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                        client_id=f"bench-sub-{secrets.token_hex(4)}", protocol=mqtt.MQTTv5)
        c.username_pw_set("collector", stack.mqtt_account("collector").password)
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        c.connect(stack.host, stack.mqtt_port, keepalive=30, clean_start=False,
                  properties=props)
        c.loop_start()
        c.subscribe(f"tingbao/v1/{ENT}/{SITE}/{meter}/#", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("no SUBACK within 10 s")
        self.client = c
        if receipts:
            threading.Thread(target=self._receipter, daemon=True).start()

    def _receipter(self, every_s: float = 0.05):
        """One receipt per 50 ms for the records received meanwhile (a collector sends one
        per meter per stored batch)."""
        from tingbao.edge import contract

        while not self._closing.wait(every_s):
            seqs, self._seqs = self._seqs, []
            for i in range(0, len(seqs), contract.MAX_RECEIPT_RANGES):
                p = contract.receipts_payload(meter="m1", time_ns=time.time_ns(),
                                              collector="bench",
                                              seqs=seqs[i:i + contract.MAX_RECEIPT_RANGES])
                self.client.publish(contract.receipts_topic(ENT, SITE, "m1"),
                                    contract.encode(p), qos=1)

    def _on_message(self, client, userdata, message):
        if message.topic.endswith("/levels"):
            self.received += 1
            if self.receipts:  # receipted in batches, as a collector does (_receipter)
                self._seqs.append(json.loads(message.payload)["seq"])
        elif self.live_at is None and message.topic.endswith("/events"):
            if json.loads(message.payload).get("live") is True:
                self.live_at = time.monotonic()
                self.live.set()

    def close(self):
        self._closing.set()
        self.client.disconnect()
        self.client.loop_stop()


RECEIPTS = True


def publisher(stack, outbox, backlog_rate: float):
    from tingbao.edge.publisher import Publisher

    return Publisher(outbox, meter="m1", enterprise=ENT, site=SITE, host=stack.host,
                     port=stack.mqtt_port, username="m1",
                     password=stack.mqtt_account("m1").password, backlog_rate=backlog_rate,
                     status_every_s=60.0, receipts=RECEIPTS)


def wait_connected(pub, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pub.connected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the publisher did not connect within {timeout} s")
        time.sleep(0.001)


def throughput(stack, tmp: Path, n: int) -> dict:
    from tingbao.edge import contract
    from tingbao.edge.outbox import Outbox

    ob = Outbox(tmp / "fast.sqlite", meter="m1")
    topic = contract.topic(ENT, SITE, "m1", "levels")
    rec = {"channel": 0, "duration": 1.0, "ea": 0.25, "coverage": 1.0, "overload": False,
           **dict.fromkeys(contract.LEVEL_FIELDS, 84.0)}
    now = time.time_ns()
    ob.append_many([(topic, contract.levels_payload(rec, meter="m1", seq=0,
                                                    start_ns=now - (n - i) * 10**9))
                    for i in range(n)], created_ns=now - 3600 * 10**9)
    sub = Subscriber(stack, "m1", receipts=RECEIPTS)
    pub = publisher(stack, ob, backlog_rate=1e6)
    try:
        pub.start()
        wait_connected(pub)
        t0 = time.monotonic()
        if not pub.wait_idle(120):
            raise RuntimeError("the outbox did not empty within 120 s")
        elapsed = time.monotonic() - t0
        deadline = time.monotonic() + 20
        while sub.received < n and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pub.stop(timeout=0)
        sub.close()
        ob.close()
    rate = n / elapsed
    print(f"(a) one publisher pushed {rate:.0f} messages/s (QoS 1, window {pub.window})",
          file=sys.stderr)
    return {"messages_per_s": round(rate, 1), "throughput_ratio": round(rate / FLOOR_PER_S, 2),
            "records": n, "delivered": sub.received, "window": pub.window}


def live_latency(stack, tmp: Path) -> dict:
    from tingbao.edge import contract
    from tingbao.edge.outbox import Outbox

    ob = Outbox(tmp / "paced.sqlite", meter="m1")
    topic = contract.topic(ENT, SITE, "m1", "events")
    ob.append_many([(topic, {"old": i}) for i in range(1000)],
                   created_ns=time.time_ns() - 3600 * 10**9)
    sub = Subscriber(stack, "m1", receipts=RECEIPTS)
    pub = publisher(stack, ob, backlog_rate=200.0)
    try:
        pub.start()
        wait_connected(pub)
        time.sleep(0.5)  # the paced backlog drains for 0.5 s before the live record comes
        ob.append(topic, {"live": True})
        t_live = time.monotonic()
        pub.wake()
        if not sub.live.wait(10):
            raise RuntimeError("the live record did not arrive within 10 s")
        latency = sub.live_at - t_live
    finally:
        pub.stop(timeout=0)
        sub.close()
        ob.close()
    print(f"(b) a live record arrived {latency * 1000:.0f} ms after its append, ahead of a "
          f"backlog paced at 200/s", file=sys.stderr)
    return {"live_latency_s": round(latency, 4),
            "live_latency_ratio": round(latency / LIVE_BOUND_S, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--no-receipts", action="store_true",
                    help="delete at PUBACK (the rule before receipts), for comparison")
    args = ap.parse_args()
    global RECEIPTS
    RECEIPTS = not args.no_receipts

    from tingbao.collector.stack import Stack, StackError

    tmp = Path(tempfile.mkdtemp(prefix="tingbao-bench-agent-"))
    stack = Stack(tmp / "stack")
    try:
        stack.prepare()
        stack.add_devices(["m1"])
        stack.start()
        result = throughput(stack, tmp, args.records)
        result.update(live_latency(stack, tmp))
    except StackError as e:
        print(e, file=sys.stderr)
        return 2
    finally:
        stack.stop()
    result["receipts"] = RECEIPTS
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
