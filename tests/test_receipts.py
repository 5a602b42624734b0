"""Receipts on real servers: a record leaves the agent's outbox only once a collector's
receipt says InfluxDB stored it; without one it is sent again; hostile receipts delete
nothing.

Every test has a stack of its own (``fresh_stack``): a collector session left in the broker
by another test would take a share of the stream or answer PUBACKs for nobody."""

from __future__ import annotations

import time

import pytest
from support.collector import start_collector
from support.configs import ENT, SITE, make_config
from support.mqtt import close, drain, mqtt_client, publish, subscribe
from support.receipts import AgentThread, receipt
from support.stack import influx_query
from support.wait import hold, wait_for

from tingbao.collector.schema import LEVELS
from tingbao.edge import contract
from tingbao.edge.outbox import Outbox
from tingbao.edge.publisher import Publisher

NOT_AUTHORIZED = 135


def stored(stack, meter="m1") -> list[dict]:
    return influx_query(stack, f"SELECT seq, ea FROM {LEVELS} WHERE meter = '{meter}'",
                        epoch="ns")


def assert_stored_once(stack, n: int, meter="m1") -> None:
    rows = stored(stack, meter)
    seqs = sorted(r["seq"] for r in rows)
    assert seqs == list(range(1, n + 1)), seqs
    assert len({r["time"] for r in rows}) == n


def test_outbox_keeps_every_record_until_influxdb_stored_it(fresh_stack, tmp_path):
    """InfluxDB down: the broker PUBACKs every record and the collector holds them, yet the
    outbox keeps all of them; InfluxDB back: receipts arrive, the outbox empties, every
    interval is stored once."""
    stack = fresh_stack
    col = start_collector(stack, tmp_path / "col", client_id="rc-1", group="g-rc")
    stack.stop_influx()
    run = None
    try:
        cfg = make_config(tmp_path, stack, source={"duration_s": 10.0},
                          mqtt={"drain_s": 60.0, "resend_after_s": 300.0})
        run = AgentThread(cfg)
        wait_for(lambda: run.stats()["published"] >= 10, 30, "10 records PUBACKed",
                 detail=run.stats)
        hold(1.0, "a receipt (there must be none) would arrive within 1 s")
        st = run.stats()
        assert st["queue_depth"] == 10 and st["receipted"] == 0, st
        assert run.agent.outbox.awaiting() == 10
        assert col.counters()["receipts_sent"] == 0
        stack.start_influx()
        wait_for(lambda: run.stats()["queue_depth"] == 0, 60, "the outbox to empty",
                 detail=run.stats)
        result = run.join(30)
        st = run.stats()
        assert result["drained"] and st["receipted"] == 10 and st["resent"] == 0, st
        assert st["receipts_refused"] == 0 and st["dead_lettered"] == 0
        assert_stored_once(stack, 10)
        assert col.counters()["receipts_sent"] >= 1
        assert col.counters()["receipts_ignored"] == 0  # the collector never got its own
    finally:
        if run is not None:
            run.stop()
        col.stop()


def test_records_nobody_stores_are_resent_until_a_collector_stores_them(fresh_stack,
                                                                         tmp_path):
    """No collector, only the ``analysis`` account subscribed: the broker says success to
    every PUBACK, but nothing is stored, so nothing is receipted: the records stay and are
    sent again after resend_after_s. Once a collector runs they are stored and receipted."""
    stack = fresh_stack
    watcher = mqtt_client(stack, "analysis")
    assert subscribe(watcher, f"tingbao/v1/{ENT}/{SITE}/m1/levels") == [1]
    run = col = None
    try:
        cfg = make_config(tmp_path, stack, source={"duration_s": 4.0},
                          mqtt={"drain_s": 90.0, "resend_after_s": 1.0})
        run = AgentThread(cfg)
        wait_for(lambda: run.stats()["resent"] >= 8, 30, "every record sent twice",
                 detail=run.stats)
        st = run.stats()
        assert st["queue_depth"] == 4 and st["receipted"] == 0 and st["unheard"] == 0, st
        seen = [contract.validate(m.topic, m.payload).payload["seq"] for m in drain(watcher)]
        assert all(seen.count(s) >= 2 for s in (1, 2, 3, 4)), seen
        col = start_collector(stack, tmp_path / "col", client_id="rc-2", group="g-rc")
        wait_for(lambda: run.stats()["queue_depth"] == 0, 60, "the outbox to empty",
                 detail=run.stats)
        assert run.join(30)["drained"]
        assert run.stats()["receipted"] == 4
        assert_stored_once(stack, 4)
    finally:
        if run is not None:
            run.stop()
        if col is not None:
            col.stop()
        close(watcher)


def test_hostile_receipts_delete_nothing(fresh_stack, tmp_path):
    """Records 1-6 sent and PUBACKed (the analysis account subscribed, no collector), 7-8
    never sent (refused by the ACL: meter m2's topic). Receipts forged by a device, malformed,
    for another meter, for seqs never sent, and replayed leave the outbox as it should be;
    only a collector's valid receipt deletes, and only what it names and the agent sent."""
    stack = fresh_stack
    ob = Outbox(tmp_path / "hostile.sqlite", meter="m1")
    own = contract.topic(ENT, SITE, "m1", "levels")
    rec = {"channel": 0, "duration": 1.0, "ea": 0.25, "coverage": 1.0, "overload": False,
           "laeq": 84.0}
    now = time.time_ns()
    ob.append_many([(own, contract.levels_payload(rec, meter="m1", seq=0,
                                                  start_ns=now - (10 - i) * 10**9))
                    for i in range(6)])
    ob.append_many([(contract.topic(ENT, SITE, "m2", "levels"),
                     contract.levels_payload(rec, meter="m1", seq=0, start_ns=now))] * 2)
    watcher = mqtt_client(stack, "analysis")
    assert subscribe(watcher, "tingbao/v1/#") == [1]
    collector = mqtt_client(stack, "collector")
    devices = {m: mqtt_client(stack, m) for m in ("m1", "m2")}
    pub = Publisher(ob, meter="m1", enterprise=ENT, site=SITE, host=stack.host,
                    port=stack.mqtt_port, username="m1",
                    password=stack.mqtt_account("m1").password, status_every_s=60.0,
                    resend_after_s=600.0)
    mine = contract.receipts_topic(ENT, SITE, "m1")
    try:
        pub.start()
        wait_for(lambda: pub.published == 6 and pub.refused == 2, 20,
                 "records 1-6 PUBACKed, 7-8 refused", detail=pub.stats)
        assert [ob.sent_state(s)[0] for s in range(1, 9)] == [1] * 6 + [0] * 2

        def applied_or_refused():
            return pub.receipts_in + pub.receipts_refused

        # forged by a device: the broker refuses them (only collectors write receipts)
        everything = receipt("m1", seqs=[[1, 8]])
        assert publish(devices["m2"], mine, everything) == NOT_AUTHORIZED
        assert publish(devices["m1"], mine, everything) == NOT_AUTHORIZED
        # a device reads no one else's receipts
        assert subscribe(devices["m2"], "tingbao/v1/#") == [1]

        # malformed, or another meter's, published by a (buggy) collector: refused
        bad = [b"not json", b"{}", receipt("m1", seqs=[[1, 8]])[:-1],
               receipt("m1", seqs=[[1, 8]]).replace(b'"tingbao.receipts/1"',
                                                    b'"tingbao.receipts/9"'),
               contract.encode({"schema": "tingbao.receipts/1", "meter": "m1",
                                "time_ns": time.time_ns(), "collector": "c",
                                "seqs": [[5, 8], [1, 3]]}),
               contract.encode({"schema": "tingbao.receipts/1", "meter": "m1",
                                "time_ns": time.time_ns(), "collector": "c",
                                "seqs": [[0, 8]]}),
               receipt("m2", seqs=[[1, 8]])]  # payload meter m2 on m1's topic
        for raw in bad:
            assert publish(collector, mine, raw) == 0
        wait_for(lambda: pub.receipts_refused >= len(bad), 10, "the bad receipts refused",
                 detail=pub.stats)
        # a valid receipt for another meter's topic never reaches m1 (and m2 may read it)
        assert publish(collector, contract.receipts_topic(ENT, SITE, "m2"),
                       receipt("m2", seqs=[[1, 8]])) == 0
        got = drain(devices["m2"], 0.5)
        assert [m.topic for m in got] == [contract.receipts_topic(ENT, SITE, "m2")]
        # for seqs never sent (7, 8: refused by the broker) or never made (9-1000)
        count = applied_or_refused()
        assert publish(collector, mine, receipt("m1", seqs=[[7, 1000]])) == 0
        wait_for(lambda: applied_or_refused() > count, 10, "the receipt for 7-1000")
        hold(0.3, "a deletion would show at once")
        assert ob.seqs() == [1, 2, 3, 4, 5, 6, 7, 8] and pub.receipted == 0

        # a valid receipt deletes what it names and the agent sent: 1-2
        count = applied_or_refused()
        good = receipt("m1", seqs=[[1, 2]])
        assert publish(collector, mine, good) == 0
        wait_for(lambda: applied_or_refused() > count, 10, "the receipt for 1-2")
        assert ob.seqs() == [3, 4, 5, 6, 7, 8] and pub.receipted == 2
        # replayed: its seqs are gone and never reused, so it deletes nothing
        for _ in range(3):
            count = applied_or_refused()
            assert publish(collector, mine, good) == 0
            wait_for(lambda c=count: applied_or_refused() > c, 10, "the replayed receipt")
        assert ob.seqs() == [3, 4, 5, 6, 7, 8] and pub.receipted == 2
        assert ob.next_seq == 9  # a new record gets a new seq, never 1 or 2
        assert pub.receipts_refused == len(bad) and pub.dead_lettered == 0
    finally:
        pub.stop(timeout=0)
        for c in (watcher, collector, *devices.values()):
            close(c)
        ob.close()


@pytest.mark.slow
def test_a_dead_lettered_record_is_receipted_as_refused(fresh_stack, tmp_path):
    """A record the collector refuses (its meter is not known) is stored as a dead letter and
    receipted as ``refused``: the agent drops it and counts it instead of resending it."""
    stack = fresh_stack
    col = start_collector(stack, tmp_path / "col", client_id="rc-3", group="g-rc",
                          known_meters=("m2",))
    run = None
    try:
        cfg = make_config(tmp_path, stack, source={"duration_s": 3.0},
                          mqtt={"drain_s": 30.0, "resend_after_s": 300.0})
        run = AgentThread(cfg)
        assert run.join(40)["drained"]
        st = run.stats()
        assert st["dead_lettered"] == 3 and st["receipted"] == 0 and st["resent"] == 0, st
        assert col.counters()["rejected"] >= 3 and stored(stack) == []  # + its status
    finally:
        if run is not None:
            run.stop()
        col.stop()
