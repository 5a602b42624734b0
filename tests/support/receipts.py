"""What the receipts tests share: an agent run in a thread, a receipt as a collector would
publish it, and a broker crash timed against its last save."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from support.wait import hold, wait_for
from tingbao.edge import contract


class AgentThread:
    """``Agent(cfg).run()`` in a thread: ``agent`` (its publisher, outbox), ``result`` (the
    summary once it returned), ``join``."""

    def __init__(self, cfg: dict):
        from tingbao.edge.agent import Agent

        self.agent = Agent(cfg)
        self.result: dict = {}
        self.thread = threading.Thread(target=lambda: self.result.update(self.agent.run()),
                                       daemon=True)
        self.thread.start()

    @property
    def publisher(self):
        return self.agent.publisher

    def stats(self) -> dict:
        """The publisher's counters (``queue_depth`` from the summary once the run ended and
        closed the outbox)."""
        from tingbao.edge.outbox import OutboxError

        try:
            return self.agent.publisher.stats()
        except OutboxError:  # closed: the run is over
            self.thread.join(10)
            p = self.agent.publisher
            return {"published": p.published, "receipted": p.receipted,
                    "dead_lettered": p.dead_lettered, "receipts_refused": p.receipts_refused,
                    "resent": p.resent, "unheard": p.unheard, "refused": p.refused,
                    "queue_depth": self.result["queue_depth"]}

    def join(self, timeout: float) -> dict:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the agent did not end: {self.stats()}"
        return self.result

    def stop(self, timeout: float = 30.0) -> None:
        self.agent.stop()
        self.thread.join(timeout)


def receipt(meter: str, seqs=(), refused=(), collector: str = "test-collector") -> bytes:
    """An encoded receipt for ``meter`` (ranges or seqs), as a collector publishes it."""
    return contract.encode(contract.receipts_payload(meter=meter, time_ns=time.time_ns(),
                                                     collector=collector, seqs=seqs,
                                                     refused=refused))


def broker_db(stack) -> Path:
    """The broker's persistence file (written at every autosave)."""
    return stack.mqtt_dir / "data" / "mosquitto.db"


def kill_broker_after_save(stack, after_s: float = 4.0, timeout: float = 30.0) -> None:
    """Wait for the broker's next autosave (its persistence file changes), then SIGKILL it
    ``after_s`` seconds later: what it accepted in those seconds lives only in its memory."""
    db = broker_db(stack)

    def stamp():
        try:
            st = db.stat()
            return st.st_mtime_ns, st.st_size, st.st_ino
        except FileNotFoundError:
            return None

    before = stamp()
    wait_for(lambda: stamp() is not None and stamp() != before, timeout,
             "the broker's next autosave", interval=0.02)
    hold(after_s, f"the crash comes {after_s} s after the broker's last save")
    stack.kill_broker()


def receipting(client):
    """Make an MQTT client of the ``collector`` account (:func:`support.mqtt.mqtt_client`)
    answer every message carrying a ``seq`` with a receipt for it, before its own
    ``on_message`` sees it: a stand-in for a collector where a test is about the agent's
    MQTT side (pacing, outages, refusals), not about storage. (The agent keeps a record until
    a receipt covers it; tests/test_receipts.py runs real collectors.) Returns the client."""
    import json

    inner = client.on_message

    def on_message(c, userdata, message):
        parts = message.topic.split("/")
        if len(parts) == 6 and parts[5] != contract.RECEIPTS:
            try:
                seq = json.loads(message.payload).get("seq")
            except (ValueError, AttributeError):
                seq = None
            if type(seq) is int and seq >= 1:
                c.publish(contract.receipts_topic(*parts[2:5]),
                          receipt(parts[4], seqs=[seq]), qos=1)
        inner(c, userdata, message)

    client.on_message = on_message
    return client
