"""The collector against the real stack (Mosquitto + InfluxDB from ``support.stack``):
messages of every kind stored exactly, re-deliveries overwrite, refused points split out
into dead letters, 1-minute rollups equal a direct computation, two collectors share a
group, InfluxDB outages and a killed collector lose and duplicate nothing, and the
configuration reports its errors clearly.
"""

from __future__ import annotations

import base64
import math
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.collector import collector_process, start_collector
from support.commands import free_port, metrics
from support.configs import write_collector_config
from support.mqtt import Publisher
from support.rollups import levels_payload
from support.wait import hold, wait_for

from tingbao.collector import cli
from tingbao.collector.deadletter import DeadLetterFile
from tingbao.collector.influx import ConfigError, DataError, InfluxClient, TransientError
from tingbao.collector.rollups import MINUTE_NS, laeq, minute_of
from tingbao.collector.schema import (
    BANDS,
    DATABASE,
    DEAD_LETTERS,
    EVENTS,
    LEVELS,
    LEVELS_1M,
    RP_FOREVER,
    STATUS,
)
from tingbao.collector.service import Collector
from tingbao.edge import contract

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- helpers
def count(stack, q: str) -> int:
    rows = stack.influx().query_rows(q)
    return int(rows[0]["count"]) if rows else 0


def levels_count(stack, enterprise: str) -> int:
    """How many ``levels`` points an enterprise has."""
    return count(stack, f"SELECT COUNT(seq) FROM {LEVELS} WHERE enterprise = '{enterprise}'")


def seq_sum(stack, enterprise: str) -> int:
    """The sum of ``seq`` over an enterprise's ``levels`` points."""
    rows = stack.influx().query_rows(f"SELECT SUM(seq) FROM {LEVELS} WHERE "
                                    f"enterprise = '{enterprise}'")
    return rows[0]["sum"]


def now_s() -> int:
    return time.time_ns() // 10**9 * 10**9


# -------------------------------------------------------------------------- configuration
def test_example_config_loads(tmp_path):
    shutil.copy(REPO / "configs" / "collector.example.toml", tmp_path / "c.toml")
    (tmp_path / "secrets").mkdir()
    for name in ("mqtt-collector", "influx-writer", "influx-reader"):
        (tmp_path / "secrets" / f"{name}.password").write_text(f"pw-{name}\n")
    config = cli.load_config(tmp_path / "c.toml")
    assert config.mqtt.password == "pw-mqtt-collector" and config.mqtt.receive_maximum == 1000
    assert config.influx.password == "pw-influx-writer" and config.influx.retention is None
    assert config.collector.known_meters == ("m1", "m2") and config.collector.batch_s == 0.2
    assert config.rollups.username == "tingbao_reader" and config.rollups.retention == RP_FOREVER
    assert cli.run(type("A", (), {"config": str(tmp_path / "c.toml"), "check": True,
                                  "log_level": "warning"})()) == 0


@pytest.mark.parametrize("edit, message", [
    (("port = 1883", "prot = 1883"), "[mqtt] has unknown key(s) ['prot']"),
    (("port = 1883", 'port = "1883"'), "[mqtt] port = '1883': expected int"),
    (("receive_maximum = 1000", "receive_maximum = 0"), "must be in 1..65535"),
    (("mqtt-collector.password", "missing.password"), "cannot read password file"),
    (('known_meters = ["m1", "m2"]', "known_meters = []"), "lists no known_meters"),
    (('known_meters = ["m1", "m2"]', 'known_meters = ["m 1"]'), "not a valid id"),
    (("# accept_any_meter = true", "accept_any_meter = true"), "choose one"),
    (('url = "http://127.0.0.1:8086"', 'url = "http://u:p@127.0.0.1:8086"'),
     "must not hold credentials"),
    (("[rollups]", "[rollup]"), "unknown section(s) ['rollup']"),
    (('group = "tingbao-collectors"', 'group = "a/b"'), "without / + #"),
    (("batch_size = 500", "batch_size = 500 x"), "not valid TOML"),
])
def test_config_errors_are_clear(tmp_path, edit, message, capsys):
    text = (REPO / "configs" / "collector.example.toml").read_text()
    assert edit[0] in text
    (tmp_path / "c.toml").write_text(text.replace(edit[0], edit[1], 1))
    (tmp_path / "secrets").mkdir()
    for name in ("mqtt-collector", "influx-writer", "influx-reader"):
        (tmp_path / "secrets" / f"{name}.password").write_text("pw\n")
    with pytest.raises(cli.ConfigError) as e:
        cli.load_config(tmp_path / "c.toml")
    assert message in str(e.value) and "c.toml" in str(e.value)
    from tingbao.edge.cli.main import main

    assert main(["collector", "--config", str(tmp_path / "c.toml"), "--check"]) == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------- the client
def test_influx_client_reports_typed_errors(stack):
    writer_account = stack.influx_account("writer")
    w = stack.influx("writer")
    t = now_s() - 60 * 10**9
    w.write([f"client_test,k=v f=1.0 {t}"])
    with pytest.raises(DataError, match="field type conflict") as e:
        w.write([f'client_test,k=v f="text" {t + 1}'])
    assert e.value.status == 400 and "already exists as type float" in e.value.message
    with pytest.raises(DataError, match="unable to parse"):
        w.write(["client_test f="])
    with pytest.raises(ConfigError) as e:
        InfluxClient(stack.influx_url, DATABASE, "tingbao_writer", "wrong").write(
            [f"client_test f=1.0 {t}"])
    assert e.value.status == 401
    with pytest.raises(ConfigError, match="database not found"):
        InfluxClient(stack.influx_url, "nope", *writer_account).write([f"x f=1.0 {t}"])
    with pytest.raises(ConfigError):  # the reader may not write
        stack.influx().write([f"client_test f=1.0 {t}"])
    with pytest.raises(ConfigError):  # the writer may not read
        w.query("SELECT * FROM client_test")
    with pytest.raises(TransientError, match="cannot reach"):
        InfluxClient(f"http://127.0.0.1:{free_port()}", "x", timeout=2).write(["x f=1.0"])
    rows = stack.influx().query_rows("SELECT f FROM client_test WHERE k = 'v'")
    assert rows == [{"time": t, "f": 1.0}]
    with pytest.raises(DataError, match="error parsing query"):
        stack.influx().query("SELECT FROM nothing")
    with pytest.raises(ValueError, match="credentials"):
        InfluxClient("http://u:p@127.0.0.1:1", "db")


# ---------------------------------------------------------------------------- collecting
def test_every_kind_is_stored_and_bad_messages_are_dead_lettered(stack, tmp_path):
    port = free_port()
    dl_file = tmp_path / "dead.jsonl"
    c = start_collector(stack, tmp_path, client_id="kinds", group="g-kinds",
                        known_meters=("m1",), metrics_port=port, deadletter_file=str(dl_file))
    pub, pub2 = Publisher(stack, "m1"), Publisher(stack, "m2")
    try:
        t = now_s() - 30 * 10**9
        lv = levels_payload("m1", 1, t, channel=2)
        lv2 = levels_payload("m1", 2, now_s() - 2 * 10**9)
        bands = {"schema": "tingbao.bands/1", "meter": "m1", "seq": 1, "channel": 0,
                 "start_ns": t, "duration_s": 1.0, "fraction": 1,
                 "bands": {"31.5": 41.25, "1000": 70.0, "16000": None}}
        status = contract.status_payload(meter="m1", time_ns=t, online=True, queue_depth=3,
                                         clock_offset_s=-0.25, note='quoted "x", y=1 \\ z')
        event = {"schema": "tingbao.events/1", "meter": "m1", "time_ns": t,
                 "event": "calibration.check", "note": "calibration, 94 dB = \"ok\""}
        pub.publish(contract.topic("kinds", "s1", "m1", "levels"), lv)
        pub.publish(contract.topic("kinds", "s1", "m1", "levels"), lv2)
        pub.publish(contract.topic("kinds", "s1", "m1", "bands"), bands)
        pub.publish(contract.topic("kinds", "s1", "m1", "status"), status)
        pub.publish(contract.topic("kinds", "s1", "m1", "events"), event)
        pub.publish(contract.topic("kinds", "s1", "m1", "levels"), b'{"schema": not json')
        pub2.publish(contract.topic("kinds", "s1", "m2", "levels"), levels_payload("m2", 1, t))
        pub.wait()
        pub2.wait()
        wait_for(lambda: c.counters()["acked"] >= 7, what="7 acknowledgements")

        r = stack.influx()
        rows = r.query_rows(f"SELECT * FROM {LEVELS} WHERE enterprise = 'kinds' ORDER BY time")
        assert len(rows) == 2
        row = rows[0]
        assert (row["time"], row["meter"], row["site"], row["channel"]) == (t, "m1", "s1", "2")
        for k in (*contract.LEVEL_FIELDS, "ea", "coverage", "duration_s", "seq", "overload",
                  "calibrated"):
            assert row.get(k) == lv[k], k
        (b,) = r.query_rows(f"SELECT * FROM {BANDS} WHERE enterprise = 'kinds'")
        assert (b["b31_5"], b["b1000"], b.get("b16000"), b["fraction"]) == (41.25, 70.0,
                                                                            None, 1)
        (s,) = r.query_rows(f"SELECT * FROM {STATUS} WHERE enterprise = 'kinds'")
        assert (s["online"], s["queue_depth"], s["clock_offset_s"], s["note"]) == (
            True, 3, -0.25, status["note"])
        (e,) = r.query_rows(f"SELECT * FROM {EVENTS} WHERE enterprise = 'kinds'")
        assert e["event"] == event["event"] and e["time"] == t
        assert e["note"] == event["note"]

        dead = r.query_rows(f"SELECT * FROM {DEAD_LETTERS} WHERE collector = 'kinds'")
        assert sorted(d["stage"] for d in dead) == ["contract", "meter"]
        by_stage = {d["stage"]: d for d in dead}
        assert "not JSON" in by_stage["contract"]["reason"]
        assert "unknown meter 'm2'" in by_stage["meter"]["reason"]
        assert by_stage["meter"]["topic"] == "tingbao/v1/kinds/s1/m2/levels"
        assert base64.b64decode(by_stage["contract"]["payload_b64"]) == b'{"schema": not json'
        records = DeadLetterFile(dl_file).read()
        assert sorted(d["stage"] for d in records) == ["contract", "meter"]
        assert {d["payload_sha256"] for d in records} == {d["payload_sha256"] for d in dead}

        m = metrics(port, timeout=5)
        assert m["received"] == 7 and m["written"] == 5 and m["rejected"] == 2
        assert m["acked"] == 7 and m["rejected_by_stage"] == {"contract": 1, "meter": 1}
        assert 0 < m["lag_s"] < 60 and m["batch_latency_s"] > 0
        assert m["written_levels"] == 2 and sum(m["latency_hist"]["counts"]) == 2
        assert len(m["latency_hist"]["counts"]) == len(m["latency_hist"]["edges_ms"])
        # one interval ended 1-2 s ago, the other 29-30 s ago
        assert m["latency_p50_s"] <= 3 and 20 <= m["latency_p99_s"] <= 60
        assert m == {**m, **{k: c.counters()[k] for k in ("received", "written", "acked")}}
        with pytest.raises(urllib.error.HTTPError):  # a raw request on purpose: refused
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    finally:
        pub.close()
        pub2.close()
        c.stop()


def test_redelivery_overwrites_the_same_point(stack, tmp_path):
    c = start_collector(stack, tmp_path, client_id="dup", group="g-dup")
    pub = Publisher(stack, "m1")
    try:
        t0 = now_s() - 600 * 10**9
        payloads = [levels_payload("m1", i, t0 + i * 10**9) for i in range(50)]
        topic = contract.topic("dup", "s1", "m1", "levels")
        for p in payloads:
            pub.publish(topic, p)
        pub.wait()
        wait_for(lambda: c.counters()["acked"] >= 50, what="first delivery")
        q = f"SELECT COUNT(seq), SUM(ea) FROM {LEVELS} WHERE enterprise = 'dup'"
        first = stack.influx().query_rows(q)
        for p in payloads + payloads[:10]:  # everything again, some of it a third time
            pub.publish(topic, p)
        pub.wait()
        wait_for(lambda: c.counters()["acked"] >= 110, what="re-deliveries")
        again = stack.influx().query_rows(q)
        assert first == again and first[0]["count"] == 50
        expected = sum(p["ea"] for p in payloads if p["ea"] is not None)
        assert math.isclose(again[0]["sum"], expected, rel_tol=1e-12)
    finally:
        pub.close()
        c.stop()


def test_points_influxdb_refuses_are_split_out_and_dead_lettered(stack, tmp_path):
    """A field-type conflict refuses one point of a batch: the batch is split, the refused
    message becomes a dead letter with InfluxDB's message, every other one is stored."""
    t = now_s() - 20 * 10**9
    w = stack.influx("writer")
    w.write([f"{STATUS},enterprise=split,meter=m1,site=s1 online=true,battery=80.0 {t}"])
    c = start_collector(stack, tmp_path, client_id="split", group="g-split",
                        batch_size=100, batch_ms=300)
    pub = Publisher(stack, "m1")
    try:
        status_topic = contract.topic("split", "s1", "m1", "status")
        bad = {7, 41, 42}
        for i in range(60):
            battery = "full" if i in bad else 50.0 + i
            pub.publish(status_topic, contract.status_payload(
                meter="m1", time_ns=t + (i + 1) * 10**6, online=True, battery=battery))
            pub.publish(contract.topic("split", "s1", "m1", "levels"),
                        levels_payload("m1", i, t + i * 10**9))
        pub.wait()
        wait_for(lambda: c.counters()["acked"] >= 120, what="120 acknowledgements")
        assert count(stack, f"SELECT COUNT(online) FROM {STATUS} WHERE "
                     "enterprise = 'split'") == 1 + 60 - len(bad)
        assert levels_count(stack, "split") == 60
        dead = stack.influx().query_rows(f"SELECT * FROM {DEAD_LETTERS} WHERE collector = 'split'")
        assert len(dead) == len(bad)
        for d in dead:
            assert d["stage"] == "store" and d["kind"] == "status"
            assert "InfluxDB refused the point" in d["reason"]
            assert "field type conflict" in d["reason"] and "battery" in d["reason"]
        counters = c.counters()
        assert counters["splits"] > 0 and counters["rejected"] == 3
        assert counters["written"] == 117
    finally:
        pub.close()
        c.stop()


def _expected_rollups(payloads, enterprise):
    out = {}
    for p in payloads:
        key = (p["meter"], str(p["channel"]), minute_of(p["start_ns"]))
        agg = out.setdefault(key, {"ea": None, "coverage": 0.0, "n": 0, "lafmax": None,
                                   "lafmin": None, "lcpeak": None})
        agg["n"] += 1
        agg["coverage"] += p["coverage"]
        if p["ea"] is not None:
            agg["ea"] = (agg["ea"] or 0.0) + p["ea"]
        for k, fn in (("lafmax", max), ("lcpeak", max), ("lafmin", min)):
            if p[k] is not None:
                agg[k] = p[k] if agg[k] is None else fn(agg[k], p[k])
    for agg in out.values():
        agg["laeq"] = laeq(agg["ea"], agg["coverage"])
    return out


def _rollups_match(stack, payloads, enterprise) -> bool:
    expected = _expected_rollups(payloads, enterprise)
    rows = stack.influx().query_rows(
        f"SELECT * FROM {RP_FOREVER}.{LEVELS_1M} WHERE enterprise = '{enterprise}'")
    got = {(r["meter"], r["channel"], r["time"]): r for r in rows}
    if set(got) != set(expected):
        return False
    for key, e in expected.items():
        g = got[key]
        if g["n"] != e["n"] or g.get("lafmax") != e["lafmax"] or g.get("lafmin") != e["lafmin"]:
            return False
        if g.get("lcpeak") != e["lcpeak"]:
            return False
        if not math.isclose(g["coverage"], e["coverage"], rel_tol=1e-12):
            return False
        if (g.get("ea") is None) != (e["ea"] is None):
            return False
        if e["ea"] is not None and not (math.isclose(g["ea"], e["ea"], rel_tol=1e-12)
                                        and abs(g["laeq"] - e["laeq"]) < 1e-9):
            return False
    return True


def test_multichannel_messages_store_one_point_per_channel(stack, tmp_path):
    """A multichannel device sends every channel of an interval in one message: each channel
    is its own point (and rollup); a re-delivery overwrites the same points."""
    c = start_collector(stack, tmp_path, client_id="multi", group="g-multi", batch_size=50)
    pub = Publisher(stack, "m1")
    rng = random.Random(11)
    try:
        base = minute_of(time.time_ns()) - 5 * MINUTE_NS + 30 * 10**9
        channels = (0, 3, 7)
        flat, messages = [], []
        for k in range(90):
            recs = [levels_payload("m1", k, base + k * 10**9, rng, channel=ch)
                    for ch in channels]
            flat += recs
            shared = {f: recs[0][f] for f in ("schema", "meter", "seq", "start_ns",
                                              "duration_s", "calibrated")}
            for r in recs:
                r["calibrated"] = shared["calibrated"]  # one flag per message
            messages.append({**shared, "channels": [
                {f: v for f, v in r.items() if f not in shared} for r in recs]})
        topic = contract.topic("multi", "s1", "m1", "levels")
        for m in messages + messages[:10]:  # the first ten twice
            pub.publish(topic, m)
        pub.wait()
        wait_for(lambda: c.counters()["acked"] >= 100, what="100 acknowledgements")
        counters = c.counters()
        assert counters["written"] == 100 and counters["written_levels"] == 300
        assert counters["rejected"] == 0
        assert levels_count(stack, "multi") == 270
        r = stack.influx()
        for ch in channels:
            (row,) = r.query_rows(f"SELECT SUM(ea), COUNT(laeq) FROM {LEVELS} WHERE "
                                  f"enterprise = 'multi' AND channel = '{ch}'")
            mine = [p for p in flat if p["channel"] == ch]
            assert math.isclose(row["sum"], sum(p["ea"] or 0.0 for p in mine), rel_tol=1e-12)
            assert row["count"] == sum(p["laeq"] is not None for p in mine)
        wait_for(lambda: _rollups_match(stack, flat, "multi"), 20, "rollups per channel")
    finally:
        pub.close()
        c.stop()


def test_rollups_equal_a_direct_computation(stack, tmp_path):
    c = start_collector(stack, tmp_path, client_id="roll", group="g-roll", batch_size=100)
    pub1, pub2 = Publisher(stack, "m1"), Publisher(stack, "m2")
    rng = random.Random(7)
    try:
        base = minute_of(time.time_ns()) - 10 * MINUTE_NS + 15 * 10**9  # not minute aligned
        payloads = []
        for pub, meter, channels in ((pub1, "m1", (0, 1)), (pub2, "m2", (0,))):
            for ch in channels:
                for k in range(150):
                    p = levels_payload(meter, k, base + k * 10**9, rng, channel=ch)
                    payloads.append(p)
                    pub.publish(contract.topic("roll", "s1", meter, "levels"), p)
        pub1.wait()
        pub2.wait()
        wait_for(lambda: _rollups_match(stack, payloads, "roll"), 20, "rollups")
        minutes = {minute_of(p["start_ns"]) for p in payloads}
        assert len(minutes) == 3  # 150 s starting at :15 touch three minutes

        # late data for the first minutes, and duplicates: the rollups follow exactly
        late = [levels_payload("m1", 1000 + k, base + k * 10**9 + 500_000_000, rng,
                               duration=0.5) for k in (0, 50)]
        for p in late + payloads[:20]:
            pub1.publish(contract.topic("roll", "s1", "m1", "levels"), p)
        pub1.wait()
        wait_for(lambda: _rollups_match(stack, payloads + late, "roll"), 20, "late rollups")
        assert c.counters()["rollups"]["errors"] == 0
    finally:
        pub1.close()
        pub2.close()
        c.stop()


@pytest.mark.parametrize("n_series", [3, 30])  # per-series statements / one over all series
def test_rollup_task_alone_equals_a_direct_computation(stack, n_series):
    from tingbao.collector.lineprotocol import message_lines
    from tingbao.collector.rollups import Rollups, SeriesKey

    enterprise = f"rollalone{n_series}"
    writer = stack.influx("writer")
    rollups = Rollups(stack.influx(), writer, settle_s=0)
    rng = random.Random(n_series)
    base = minute_of(time.time_ns()) - 30 * MINUTE_NS
    payloads, lines = [], []
    for s in range(n_series):
        meter = f"m{s}"
        for k in range(0, 150, 2):  # every other second of 2.5 minutes
            p = levels_payload(meter, k, base + k * 10**9, rng, channel=s % 3)
            payloads.append(p)
            msg = contract.validate(contract.topic(enterprise, "s1", meter, "levels"),
                                    contract.encode(p))
            lines += message_lines(msg)
            rollups.touch(SeriesKey(enterprise, "s1", meter, str(p["channel"])), p["start_ns"])
    writer.write(lines)
    written = rollups.run_due(force=True)
    assert written >= n_series * 3 and rollups.pending == 0
    assert _rollups_match(stack, payloads, enterprise)


def test_a_live_minute_is_rolled_up_once_it_is_over_and_again_after_late_data(stack):
    """The rollup of a minute waits until the minute is over (+ the settling delay) by the
    collector's clock, however often its seconds arrive; late data recomputes it."""
    from tingbao.collector.lineprotocol import message_lines
    from tingbao.collector.rollups import Rollups, SeriesKey

    enterprise = "rolllive"
    minute = minute_of(time.time_ns()) - 20 * MINUTE_NS
    clock = [minute + 30 * 10**9]  # the collector's wall clock, inside that minute
    writer = stack.influx("writer")
    rollups = Rollups(stack.influx(), writer, settle_s=2.0, clock_ns=lambda: clock[0])
    key = SeriesKey(enterprise, "s1", "m1", "0")
    rng = random.Random(5)

    def store(ps):
        writer.write([ln for p in ps for ln in message_lines(contract.validate(
            contract.topic(enterprise, "s1", "m1", "levels"), contract.encode(p)))])
        for p in ps:
            rollups.touch(key, p["start_ns"])

    first = [levels_payload("m1", k, minute + k * 10**9, rng) for k in range(30)]
    store(first)
    rollups._dirty[(key, minute)] -= 10.0  # quiet for 10 s: only the open minute holds it
    assert rollups.run_due() == 0 and rollups.pending == 1
    clock[0] = minute + MINUTE_NS + 1 * 10**9  # over, but not by the settling delay
    assert rollups.run_due() == 0
    clock[0] = minute + MINUTE_NS + 3 * 10**9
    assert rollups.run_due() == 1 and rollups.pending == 0
    assert _rollups_match(stack, first, enterprise)
    assert rollups.run_due() == 0  # nothing touched it since

    late = [levels_payload("m1", 100 + k, minute + (30 + k) * 10**9, rng) for k in range(30)]
    store(late)
    assert rollups.run_due() == 0  # touched just now: not quiet yet
    rollups._dirty[(key, minute)] -= 10.0
    assert rollups.run_due() == 1
    assert _rollups_match(stack, first + late, enterprise)


def test_two_collectors_split_the_load_without_loss_or_duplicates(stack, tmp_path):
    a = start_collector(stack, tmp_path / "a", client_id="two-a", group="g-two")
    b = start_collector(stack, tmp_path / "b", client_id="two-b", group="g-two")
    pub1, pub2 = Publisher(stack, "m1"), Publisher(stack, "m2")
    try:
        t0 = now_s() - 3000 * 10**9
        n = 1500
        for i in range(n):
            pub, meter = (pub1, "m1") if i % 2 else (pub2, "m2")
            pub.publish(contract.topic("two", "s1", meter, "levels"),
                        levels_payload(meter, i, t0 + i * 10**9))
        pub1.wait()
        pub2.wait()
        wait_for(lambda: a.counters()["acked"] + b.counters()["acked"] >= n, what="all acks")
        ca, cb = a.counters(), b.counters()
        assert ca["written"] > n // 10 and cb["written"] > n // 10, (ca, cb)
        assert ca["written"] + cb["written"] == n and ca["received"] + cb["received"] == n
        assert levels_count(stack, "two") == n
        assert seq_sum(stack, "two") == n * (n - 1) // 2
    finally:
        pub1.close()
        pub2.close()
        a.stop()
        b.stop()


# --------------------------------------------------------------------------- failures
@pytest.mark.slow
def test_influxdb_outage_loses_and_duplicates_nothing(fresh_stack, tmp_path):
    stack = fresh_stack
    c = start_collector(stack, tmp_path, client_id="outage", group="g-outage",
                        batch_size=20, receive_maximum=50, retry_cap_s=0.5)
    pub = Publisher(stack, "m1")
    try:
        t0 = now_s() - 900 * 10**9
        topic = contract.topic("outage", "s1", "m1", "levels")
        for i in range(100):
            pub.publish(topic, levels_payload("m1", i, t0 + i * 10**9))
        pub.wait()
        wait_for(lambda: c.counters()["acked"] >= 100, what="before the outage")
        stack.stop_influx()
        for i in range(100, 400):
            pub.publish(topic, levels_payload("m1", i, t0 + i * 10**9))
        pub.wait()  # the broker holds them: QoS 1, persistent session
        wait_for(lambda: c.counters()["retries"] >= 3, what="retries")
        hold(1.0, "an acknowledgement while InfluxDB is down would show within 1 s")
        during = c.counters()
        assert during["acked"] == 100  # nothing acknowledged while InfluxDB is down
        # What arrived during the outage is held unacknowledged (in the batch in hand or in
        # the inbox), so the broker still owns it. How much arrives is the broker's choice:
        # Mosquitto 2.0.11 does not always keep to the Receive Maximum of 50 (its send quota
        # leaks, fixed in 2.0.13), so the bound asserted is the collector's own inbox.
        held = during["received"] - 100
        assert 0 <= held <= 300 and during["queued"] <= during["inbox_capacity"], during
        assert "cannot reach InfluxDB" in during["last_error"]
        stack.start_influx()
        wait_for(lambda: c.counters()["acked"] >= 400, 30, "acks after the outage")
        assert levels_count(stack, "outage") == 400
        assert seq_sum(stack, "outage") == 400 * 399 // 2
        after = c.counters()
        assert after["written"] == 400 and after["rejected"] == 0
    finally:
        pub.close()
        c.stop()


@pytest.mark.slow
def test_broker_restart_with_a_batch_in_hand(fresh_stack, tmp_path):
    """The broker restarts while the collector holds a batch: that batch is written but not
    acknowledged on the new connection (its packet ids belong to the old one); the broker
    re-delivers it from the persistent session and the rewrite overwrites the same points."""
    stack = fresh_stack
    c = start_collector(stack, tmp_path, client_id="restart", group="g-restart",
                        batch_size=10_000, batch_ms=2500)
    pub = Publisher(stack, "m1")
    try:
        t0 = now_s() - 700 * 10**9
        for i in range(100):
            pub.publish(contract.topic("restart", "s1", "m1", "levels"),
                        levels_payload("m1", i, t0 + i * 10**9))
        pub.wait()
        wait_for(lambda: c.counters()["received"] == 100, what="a batch in hand")
        stack.restart_broker()
        wait_for(lambda: c.counters()["acked"] >= 100, 30, "acks after the restart")
        counters = c.counters()
        assert counters["stale_unacked"] == 100 and counters["connects"] == 2
        assert counters["received"] == 200 and counters["written"] == 200
        assert levels_count(stack, "restart") == 100
    finally:
        pub.close()
        c.stop()


@pytest.mark.slow
def test_collector_killed_mid_batch_then_restarted_loses_nothing(fresh_stack, tmp_path):
    """SIGKILL while a batch is held unacknowledged, messages published while it is down, a
    restart with the same client id (persistent session): every message is stored once.
    Then SIGTERM while a batch is held: it is stored and acknowledged before exit."""
    stack = fresh_stack
    port = free_port()
    log = tmp_path / "collector.log"
    common = dict(client_id="crash", group="g-crash", metrics_port=port)
    holding = write_collector_config(stack, tmp_path / "hold", batch_size=100_000,
                                     batch_ms=600_000, **common)
    normal = write_collector_config(stack, tmp_path / "normal", **common)
    pub = Publisher(stack, "m1")
    topic = contract.topic("crash", "s1", "m1", "levels")
    t0 = now_s() - 1800 * 10**9
    proc = collector_process(holding, log, timeout=20)  # returns once subscribed
    try:
        for i in range(300):
            pub.publish(topic, levels_payload("m1", i, t0 + i * 10**9))
        pub.wait()
        wait_for(lambda: metrics(port)["received"] == 300, what="300 held in a batch")
        assert metrics(port)["acked"] == 0
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert levels_count(stack, "crash") == 0
        for i in range(300, 500):  # while no collector runs
            pub.publish(topic, levels_payload("m1", i, t0 + i * 10**9))
        pub.wait()

        proc = collector_process(normal, log, wait=False)
        wait_for(lambda: (metrics(port) or {}).get("acked", 0) >= 500, 30, "restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert levels_count(stack, "crash") == 500

        # SIGTERM with a held batch: flushed on the way out
        proc = collector_process(holding, log, timeout=20)
        for i in range(500, 600):
            pub.publish(topic, levels_payload("m1", i, t0 + i * 10**9))
        pub.wait()
        wait_for(lambda: metrics(port)["received"] >= 100, what="held batch")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert levels_count(stack, "crash") == 600
        assert seq_sum(stack, "crash") == 600 * 599 // 2
        assert "collector stopped" in log.read_text()
    finally:
        pub.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_stop_without_flush_leaves_messages_in_the_broker(stack, tmp_path):
    """The in-process equivalent of a crash: ``stop(flush=False)`` acknowledges nothing
    more; the next session with the same client id gets those messages again."""
    kwargs = dict(client_id="noflush", group="g-noflush", batch_size=10_000,
                  batch_ms=600_000)
    c = start_collector(stack, tmp_path / "1", **kwargs)
    pub = Publisher(stack, "m1")
    try:
        t0 = now_s() - 2400 * 10**9
        for i in range(80):
            pub.publish(contract.topic("noflush", "s1", "m1", "levels"),
                        levels_payload("m1", i, t0 + i * 10**9))
        pub.wait()
        wait_for(lambda: c.counters()["received"] == 80, what="received")
        c.stop(flush=False)
        assert c.counters()["acked"] == 0
        kwargs.update(batch_size=50, batch_ms=50)
        c = start_collector(stack, tmp_path / "2", **kwargs)
        wait_for(lambda: c.counters()["acked"] >= 80, what="re-delivery")
        assert levels_count(stack, "noflush") == 80
    finally:
        pub.close()
        c.stop()


def test_metrics_are_served_while_running(stack, tmp_path):
    port = free_port()
    c = start_collector(stack, tmp_path, client_id="metrics", group="g-metrics",
                        metrics_port=port)
    try:
        m = metrics(port)
        assert m is not None and m["connected"] and m["subscribed"]
        assert set(m) >= {"received", "written", "rejected", "retries", "acked", "lag_s",
                          "batch_latency_s"}
        assert c.metrics_url == f"http://127.0.0.1:{port}/metrics"
    finally:
        c.stop()
    assert metrics(port) is None


def test_the_collector_does_not_import_audio_packages():
    code = ("import sys, tingbao.collector.service, tingbao.collector.cli; "
            "print(sorted(m for m in ('sounddevice', 'soundfile') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_worker_survives_a_crashing_converter(stack, tmp_path, monkeypatch):
    """A bug in conversion is an 'internal' dead letter, not a dead service."""
    from tingbao.collector import service

    def boom(msg):
        if msg.payload.get("seq") == 3:
            raise RuntimeError("simulated bug")
        return real(msg)

    real = service.message_lines
    monkeypatch.setattr(service, "message_lines", boom)
    c = start_collector(stack, tmp_path, client_id="boom", group="g-boom")
    pub = Publisher(stack, "m1")
    try:
        t0 = now_s() - 1200 * 10**9
        for i in range(6):
            pub.publish(contract.topic("boom", "s1", "m1", "levels"),
                        levels_payload("m1", i, t0 + i * 10**9))
        pub.wait()
        wait_for(lambda: c.counters()["acked"] >= 6, what="acks")
        counters = c.counters()
        assert counters["written"] == 5 and counters["rejected_by_stage"] == {"internal": 1}
        dead = stack.influx().query_rows(f"SELECT reason FROM {DEAD_LETTERS} WHERE "
                                        "collector = 'boom'")
        assert "simulated bug" in dead[0]["reason"]
    finally:
        pub.close()
        c.stop()


@pytest.mark.slow
def test_a_worker_error_reconnects_and_loses_nothing(stack, tmp_path, monkeypatch):
    """An unexpected exception while storing a batch: the batch is dropped unacknowledged,
    the collector reconnects, and the broker delivers those messages again."""
    real = Collector._store
    calls = []

    def flaky(self, batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("simulated bug while storing")
        return real(self, batch)

    monkeypatch.setattr(Collector, "_store", flaky)
    c = start_collector(stack, tmp_path, client_id="flaky", group="g-flaky", batch_ms=300)
    pub = Publisher(stack, "m1")
    try:
        t0 = now_s() - 1300 * 10**9
        for i in range(40):
            pub.publish(contract.topic("flaky", "s1", "m1", "levels"),
                        levels_payload("m1", i, t0 + i * 10**9))
        pub.wait()
        wait_for(lambda: c.counters()["acked"] >= 40, 20, "acks after the reconnect")
        counters = c.counters()
        assert counters["internal_errors"] == 1 and counters["connects"] == 2
        assert counters["redelivered"] >= calls[0]
        assert levels_count(stack, "flaky") == 40
    finally:
        pub.close()
        c.stop()


def test_inbox_bounds_what_waits_in_memory():
    """The inbox between paho's thread and the worker is bounded in messages and bytes:
    a full inbox makes put() wait (TCP back-pressure), calling on_wait meanwhile (where
    the collector keeps sending its PUBACKs), until the worker takes something."""
    from tingbao.collector.service import Inbound, _Inbox

    def item(n: int) -> Inbound:
        return Inbound(n, 1, "t", b"x" * 1000, 0, 0.0, 1)

    inbox = _Inbox(max_items=3, max_bytes=10_000)
    stop = threading.Event()
    for n in range(3):
        assert inbox.put(item(n), stop)
    waits = []
    done = threading.Event()

    def producer():
        inbox.put(item(3), stop, on_wait=lambda: waits.append(1))
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    assert not done.wait(0.3) and waits  # full: the producer waits and keeps calling on_wait
    assert inbox.get(0).mid == 0  # the worker takes one: room for the waiting one
    assert done.wait(2) and [inbox.get(0).mid for _ in range(3)] == [1, 2, 3]
    assert inbox.get(0) is None and inbox.bytes == 0

    small = _Inbox(max_items=100, max_bytes=2_500)  # the byte bound
    assert small.put(item(0), stop) and small.put(item(1), stop)
    stop.set()  # a stopping collector gives up instead of waiting
    assert small.put(item(2), stop) is False and len(small) == 2


def test_threads_are_cleaned_up(stack, tmp_path):
    before = {t.name for t in threading.enumerate()}
    c = start_collector(stack, tmp_path, client_id="threads", group="g-threads",
                        metrics_port=free_port())
    c.stop()

    def left() -> set[str]:
        return {t.name for t in threading.enumerate()} - before

    wait_for(lambda: not {n for n in left() if n.startswith("tingbao")}, 5,
             "the collector's threads to end", detail=left)
