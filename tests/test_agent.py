"""The edge agent against a real Mosquitto (the project's test stack): every interval arrives,
outages and crashes lose nothing, refusals keep the record, the backlog is paced.

Wall time about a minute: short outages (5 s) only; the long ones belong to the end-to-end
suite. The runs in real time (and on live audio) are marked ``slow``. How fast one publisher
empties an outbox, and how soon a live record overtakes a paced backlog, are measured by
bench/agent_publisher.py, not asserted here."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import signal
import socket
import struct
import threading
import time

import numpy as np
import pytest
from support.agent import outbox_depth
from support.commands import free_port, tingbao
from support.configs import ENT, SITE, make_config, write_toml
from support.mqtt import close, drain, mqtt_client, subscribe
from support.receipts import receipting
from support.wait import hold, wait_for

from tingbao.edge import contract
from tingbao.edge.agent import Agent, ConfigError, check_config, load_config
from tingbao.edge.clock import sntp_offset
from tingbao.edge.meter import SoundLevelMeter
from tingbao.edge.outbox import Outbox
from tingbao.edge.publisher import Publisher
from tingbao.edge.sources import SyntheticScene


# ---------------------------------------------------------------------------------- helpers
def subscriber(stack, meter: str, client_id: str | None = None):
    """The collector account on a persistent session (QoS 1) for one meter's data topics,
    answering each record with a receipt (:func:`support.receipts.receipting`): the agent
    keeps a record until a receipt covers it."""
    client_id = client_id or f"col-{secrets.token_hex(4)}"
    c = receipting(mqtt_client(stack, "collector", client_id=client_id, clean_start=False,
                               session_expiry=600))
    for kind in contract.KINDS:
        assert subscribe(c, f"tingbao/v1/{ENT}/{SITE}/{meter}/{kind}", qos=1) == [1]
    c.tb_id = client_id
    return c


def collect(client, done, timeout: float = 20.0) -> list:
    """Messages until ``done(messages)`` holds (or ``timeout`` seconds pass)."""
    out = []
    deadline = time.monotonic() + timeout
    while not done(out) and time.monotonic() < deadline:
        out += drain(client, wait=0.1)
    return out


def records_of(msgs, kinds=("levels", "bands")) -> list[dict]:
    """Validated interval records (contract.validate) among ``msgs``."""
    out = []
    for m in msgs:
        if m.topic.rsplit("/", 1)[1] in kinds:
            out.append(contract.validate(m.topic, m.payload).payload)
    return out


def seqs_of(msgs) -> list[int]:
    return [p["seq"] for p in records_of(msgs)]


def offline(msg) -> bool:
    """A status message ``online: false`` published now (not a retained one from before)."""
    return (msg.topic.endswith("/status") and not msg.retain
            and json.loads(msg.payload)["online"] is False)


# ---------------------------------------------------------------------------------- tests
def test_every_interval_arrives_once_with_its_exposure(stack, tmp_path):
    """30 s of a synthetic scene at full speed over TLS, with octave bands: seq 1..60 (levels
    and bands of 30 intervals) arrive exactly once, validate, are evenly spaced in time, none
    lies in the future, and the sum of EA is what the meter computes on the same scene."""
    sub = subscriber(stack, "m1")
    try:
        cfg = make_config(tmp_path, stack, tls=True, meter={"bands": "octave"})
        summary = Agent(cfg).run()
        end_ns = time.time_ns()
        msgs = collect(sub, lambda m: len(seqs_of(m)) >= 60)
        msgs += drain(sub, wait=0.3)  # anything extra would be a duplicate
    finally:
        close(sub)
    assert summary == {"intervals": 30, "records": 60, "published": 60, "refused": 0,
                       "queue_depth": 0, "drained": True}
    assert sorted(seqs_of(msgs)) == list(range(1, 61))
    levels = sorted(records_of(msgs, ("levels",)), key=lambda p: p["seq"])
    bands = records_of(msgs, ("bands",))
    assert len(levels) == len(bands) == 30
    starts = np.array([p["start_ns"] for p in levels])
    assert np.all(np.diff(starts) == 10**9)
    assert starts[-1] + 10**9 <= end_ns and starts[0] >= end_ns - 60 * 10**9
    assert {p["fraction"] for p in bands} == {1} and "1000" in bands[0]["bands"]
    assert all(p["calibrated"] and p["coverage"] == 1.0 for p in levels)

    scene = SyntheticScene(duration=30.0, seed=3, profile="stamping")
    meter = SoundLevelMeter(scene.samplerate, interval=1.0, pa_per_unit=scene.pa_per_unit)
    direct = [iv for c in scene for iv in meter.process(c.data)]
    expected = np.array([float(iv.ea[0]) for iv in direct])
    got = np.array([p["ea"] for p in levels])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.sum() == pytest.approx(expected.sum(), rel=1e-6)
    assert [p["laeq"] for p in levels] == [round(float(iv.laeq[0]), 2) for iv in direct]

    status = [contract.validate(m.topic, m.payload).payload for m in msgs
              if m.topic.endswith("/status") and not m.retain]
    assert status and status[-1]["online"] is False and status[-1]["queue_depth"] == 0
    assert status[-1]["calibration"] == "synthetic" and status[-1]["published"] == 60


def test_multichannel_device_sends_one_levels_message_per_interval(stack, tmp_path):
    """Three channels: one levels message per interval holds all three, each channel's
    exposure is what the meter computes on that channel."""
    sub = subscriber(stack, "m1")
    try:
        cfg = make_config(tmp_path, stack, source={"duration_s": 10.0, "channels": 3})
        summary = Agent(cfg).run()
        msgs = collect(sub, lambda m: len(seqs_of(m)) >= 10)
        msgs += drain(sub, wait=0.3)
    finally:
        close(sub)
    assert summary["intervals"] == 10 and summary["published"] == 10
    levels = sorted(records_of(msgs, ("levels",)), key=lambda p: p["seq"])
    assert [p["seq"] for p in levels] == list(range(1, 11))
    assert all([c["channel"] for c in p["channels"]] == [0, 1, 2] for p in levels)

    scene = SyntheticScene(duration=10.0, seed=3, profile="stamping", channels=3)
    meter = SoundLevelMeter(scene.samplerate, channels=3, interval=1.0,
                            pa_per_unit=scene.pa_per_unit)
    direct = [iv for c in scene for iv in meter.process(c.data)]
    got = np.array([[c["ea"] for c in p["channels"]] for p in levels])
    np.testing.assert_allclose(got, np.array([iv.ea for iv in direct]), rtol=1e-6)
    assert len({round(x, 9) for x in got[0]}) == 3  # independent noise per channel


@pytest.mark.slow
def test_broker_outage_backlog_drains_without_loss(fresh_stack, tmp_path):
    """The broker stops for 5 s while the agent measures in real time: the outbox grows,
    and after the broker returns every seq arrives (duplicates allowed, losses not)."""
    stack = fresh_stack
    sub = subscriber(stack, "m1")
    cfg = make_config(tmp_path, stack, meter={"interval_s": 0.5},
                      source={"realtime": True, "duration_s": 12.0})
    agent = Agent(cfg)
    result = {}
    runner = threading.Thread(target=lambda: result.update(agent.run()))
    runner.start()
    try:
        got = collect(sub, lambda m: len(seqs_of(m)) >= 3, timeout=10)
        close(sub)  # the persistent session keeps its subscription and queue in the broker
        stack.stop_broker()
        depth0 = agent.outbox.depth()
        hold(5.0, "the outage: the broker stays down for 5 s while the agent measures")
        assert not agent.publisher.connected
        grown = agent.outbox.depth()
        assert grown >= depth0 + 8, (depth0, grown)  # 10 intervals of 0.5 s, all kept
        stack.start_broker()
        sub = subscriber(stack, "m1", client_id=sub.tb_id)  # its receipts end the drain
        runner.join(timeout=30)
        assert not runner.is_alive()
        n = result["records"]
        got += collect(sub, lambda m: set(range(1, n + 1)) <= set(seqs_of(got + m)))
    finally:
        agent.stop()
        runner.join(timeout=30)
        close(sub)
    assert result["intervals"] == 24 and n == 24
    assert set(seqs_of(got)) == set(range(1, n + 1))
    assert result["queue_depth"] == 0 and result["published"] == n
    assert agent.publisher.connects >= 2


@pytest.mark.slow
def test_sigkilled_agent_sends_its_unacknowledged_records_after_restart(fresh_stack, tmp_path):
    """An agent measures with the broker down and is SIGKILLed; its records are in the outbox,
    intact. Restarted with the broker up, it sends them (and new ones, seq going on); killed
    again, the broker publishes its last will (status online: false)."""
    stack = fresh_stack
    cfg = make_config(tmp_path, stack, meter={"interval_s": 0.5},
                      source={"realtime": True, "duration_s": 120.0})
    path = write_toml(tmp_path / "agent.toml", cfg)
    box = cfg["outbox"]["path"]
    stack.stop_broker()
    log = tmp_path / "agent.log"
    first = tingbao("agent", "--config", path, log=log)
    try:
        wait_for(lambda: outbox_depth(box) >= 6, 20, "6 records in the first run's outbox",
                 interval=0.1, detail=lambda: log.read_text()[-2000:])
    finally:
        first.kill()
        first.wait()
    with Outbox(box, meter="m1") as ob:
        assert ob.check() == []
        k = ob.last_seq
        assert ob.seqs() == list(range(1, k + 1))

    stack.start_broker()
    sub = subscriber(stack, "m1")
    second = tingbao("agent", "--config", path, log=log)
    try:
        msgs = collect(sub, lambda m: len({s for s in seqs_of(m) if s > k}) >= 3, timeout=20)
    finally:
        second.kill()
        second.wait()
        err = log.read_text()[-2000:]
    try:
        msgs += collect(sub, lambda m: any(offline(x) for x in m), timeout=5)
    finally:
        close(sub)
    seqs = set(seqs_of(msgs))
    assert set(range(1, k + 1)) <= seqs, err
    assert min(s for s in seqs if s > k) == k + 1  # the sequence went on, no gap, no reuse
    will = [json.loads(m.payload) for m in msgs if offline(m)]
    assert will and will[-1]["meter"] == "m1"


@pytest.mark.slow
def test_sigterm_flushes_the_partial_interval_and_exits_cleanly(stack, tmp_path):
    """``tingbao agent`` stopped with SIGTERM mid-interval: the partial interval is flushed
    (coverage < duration), everything is acknowledged, the status says offline, exit 0."""
    sub = subscriber(stack, "m1")
    cfg = make_config(tmp_path, stack, source={"realtime": True, "duration_s": 60.0})
    proc = tingbao("agent", "--config", write_toml(tmp_path / "agent.toml", cfg))
    try:
        msgs = collect(sub, lambda m: len(seqs_of(m)) >= 2, timeout=20)
        hold(0.4, "the signal must come mid-interval: 0.4 s into the next 1 s interval")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        msgs += collect(sub, lambda m: any(offline(x) for x in m), timeout=5)
    finally:
        proc.kill()
        close(sub)
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["drained"] and summary["queue_depth"] == 0
    levels = sorted(records_of(msgs, ("levels",)), key=lambda p: p["seq"])
    assert [p["seq"] for p in levels] == list(range(1, summary["records"] + 1))
    assert all(p["coverage"] == 1.0 for p in levels[:-1])
    assert 0 < levels[-1]["coverage"] < 1.0 and levels[-1]["duration_s"] == 1.0


@pytest.mark.slow
def test_live_input_is_stamped_from_the_wall_clock(pulse_server, stack, tmp_path):
    """The live source through a private PulseAudio server: a 1 kHz tone at RMS 0.3536 raw
    units with S = 1 Pa/unit reads 84.95 dB; the intervals start at the wall clock of the
    first block and follow each other by exactly 0.5 s; the status counts no overflow."""
    tone = tmp_path / "tone.wav"
    import soundfile as sf

    fs = 48000
    t = np.arange(int(1.5 * fs)) / fs
    sf.write(str(tone), 0.5 * np.sin(2 * np.pi * 1000.0 * t), fs, subtype="FLOAT")
    sub = subscriber(stack, "m1")
    cfg = make_config(tmp_path, stack, meter={"interval_s": 0.5, "pa_per_unit": 1.0},
                      source={"kind": "live", "device": "pulse", "samplerate_hz": 48000},
                      status={"every_s": 0.5})
    del cfg["source"]["profile"], cfg["source"]["seed"], cfg["source"]["duration_s"]
    del cfg["source"]["realtime"]
    agent = Agent(cfg)
    result = {}
    t_start = time.time_ns()
    runner = threading.Thread(target=lambda: result.update(agent.run(until=4.0)))
    runner.start()
    player = None
    try:
        wait_for(lambda: agent.stream_start_ns is not None, 15, "the live stream to start",
                 interval=0.01)
        player = pulse_server.play(tone)
        runner.join(timeout=30)
        msgs = collect(sub, lambda m: len(seqs_of(m)) >= 8, timeout=10)
        msgs += drain(sub, wait=0.3)
    finally:
        agent.stop()
        runner.join(timeout=10)
        close(sub)
        if player is not None:
            player.communicate(timeout=10)
    assert result["intervals"] == 8 and result["drained"]
    levels = sorted(records_of(msgs, ("levels",)), key=lambda p: p["seq"])
    assert len(levels) == 8
    starts = np.array([p["start_ns"] for p in levels])
    assert np.all(np.diff(starts) == 500_000_000)
    assert t_start < starts[0] < agent.stream_start_ns + 1 and starts[0] < t_start + 5 * 10**9
    loud = [p["laeq"] for p in levels if p["laeq"] is not None and p["laeq"] > 80]
    assert loud and max(loud) == pytest.approx(84.95, abs=0.05)
    status = [json.loads(m.payload) for m in msgs if m.topic.endswith("/status") and m.retain
              is False and json.loads(m.payload)["online"]]
    assert status and status[-1]["input_overflows"] == 0
    assert status[-1]["calibration"] == "manual" and status[-1]["source"] == "live"


def test_a_refused_record_is_counted_and_kept(stack, tmp_path, caplog):
    """Device account m1 may not publish under meter m2: every PUBACK says 135 (not
    authorized); the refusals are counted and logged, nothing leaves the outbox. With the
    right account the same outbox is delivered."""
    caplog.set_level(logging.ERROR, logger="tingbao.edge.publisher")
    cfg = make_config(tmp_path, stack, meter={"id": "m2"}, account="m1",
                      source={"duration_s": 3.0}, mqtt={"drain_s": 3.0})
    summary = Agent(cfg).run()
    assert summary["records"] == 3 and summary["refused"] == 3
    assert summary["published"] == 0 and summary["queue_depth"] == 3
    assert summary["drained"] is False
    assert "REFUSED" in caplog.text and "135" in caplog.text
    with Outbox(cfg["outbox"]["path"], meter="m2") as ob:
        assert ob.seqs() == [1, 2, 3]

    sub = subscriber(stack, "m2")
    try:
        good = make_config(tmp_path, stack, meter={"id": "m2"}, source={"duration_s": 2.0})
        summary = Agent(good).run()
        msgs = collect(sub, lambda m: len(seqs_of(m)) >= 5)
    finally:
        close(sub)
    assert summary["published"] == 5 and summary["queue_depth"] == 0
    assert sorted(seqs_of(msgs)) == [1, 2, 3, 4, 5]


def test_backlog_is_paced_and_live_records_jump_the_queue(stack, tmp_path):
    """1000 old records and a backlog rate of 200/s: about 200 go out in the first second,
    while a record appended meanwhile overtakes the backlog still queued."""
    ob = Outbox(tmp_path / "paced.sqlite", meter="m1")
    topic = contract.topic(ENT, SITE, "m1", "events")
    old = time.time_ns() - 3600 * 10**9
    ob.append_many([(topic, {"old": i}) for i in range(1000)], created_ns=old)
    sub = subscriber(stack, "m1")
    live_seen = threading.Event()
    old_received = [0]  # backlog records received so far ...
    old_before_live = []  # ... when the live one arrived

    def on_message(client, userdata, message):
        payload = json.loads(message.payload)
        if payload.get("live"):
            old_before_live.append(old_received[0])
            live_seen.set()
        elif "old" in payload:
            old_received[0] += 1

    sub.on_message = on_message
    receipting(sub)
    pub = Publisher(ob, meter="m1", enterprise=ENT, site=SITE, host=stack.host,
                    port=stack.mqtt_port, username="m1",
                    password=stack.mqtt_account("m1").password, backlog_rate=200.0,
                    status_every_s=60.0)
    try:
        pub.start()
        wait_for(lambda: pub.connected, 10, "the publisher to connect", interval=0.01)
        t_conn = time.monotonic()
        hold(0.5, "the paced backlog drains for 0.5 s before a live record comes")
        sent_before = pub.sent
        live = ob.append(topic, {"live": True})
        pub.wake()
        assert live_seen.wait(5)
        hold(max(0.0, t_conn + 1.0 - time.monotonic()),
             "sent_1s is what the paced backlog sent in its first second")
        sent_1s = pub.sent
    finally:
        pub.stop(timeout=0)
        close(sub)
    # not behind the 800 backlog records still queued (4 s at 200/s): at most 100 of them
    # (0.5 s at 200/s) went out between the live record's append and its arrival
    overtaken_by = old_before_live[0] - sent_before
    assert overtaken_by < 100, (old_before_live, sent_before)
    assert 120 <= sent_1s <= 260, sent_1s  # 200/s, plus a burst of 20 and the live one
    assert ob.get(live) is None  # delivered and acknowledged
    assert 500 < ob.depth() < 850  # the rest of the backlog stays for later
    ob.close()


@pytest.mark.slow  # 5000 records through the broker
def test_an_unpaced_backlog_arrives_complete_through_the_local_broker(stack, tmp_path):
    """One publisher empties an outbox of 5000 records with an unlimited backlog rate (and a
    collector subscribed): every seq arrives. (How fast: bench/agent_publisher.py.)"""
    n = 5000
    ob = Outbox(tmp_path / "fast.sqlite", meter="m1")
    topic = contract.topic(ENT, SITE, "m1", "levels")
    rec = {"channel": 0, "duration": 1.0, "ea": 0.25, "coverage": 1.0, "overload": False,
           **dict.fromkeys(contract.LEVEL_FIELDS, 84.0)}
    now = time.time_ns()
    ob.append_many([(topic, contract.levels_payload(rec, meter="m1", seq=0,
                                                    start_ns=now - (n - i) * 10**9))
                    for i in range(n)], created_ns=now - 3600 * 10**9)
    sub = subscriber(stack, "m1")
    pub = Publisher(ob, meter="m1", enterprise=ENT, site=SITE, host=stack.host,
                    port=stack.mqtt_port, username="m1",
                    password=stack.mqtt_account("m1").password, backlog_rate=1e6,
                    status_every_s=60.0)
    try:
        pub.start()
        wait_for(lambda: pub.connected, 10, "the publisher to connect", interval=0.01)
        assert pub.wait_idle(60)
        msgs = collect(sub, lambda m: len(m) >= n + 1, timeout=20)  # + retained status
    finally:
        pub.stop(timeout=0)
        close(sub)
    assert sorted(seqs_of(msgs)) == list(range(1, n + 1))
    ob.close()


class FakeSntp:
    """A local SNTP server whose clock runs ``skew_s`` ahead of ours."""

    def __init__(self, skew_s: float):
        self.skew_ns = int(skew_s * 1e9)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _ntp(ns: int) -> bytes:
        sec, frac = divmod(ns, 10**9)
        return struct.pack("!II", sec + 2_208_988_800, (frac << 32) // 10**9)

    def _serve(self):
        while True:
            try:
                data, addr = self.sock.recvfrom(512)
            except OSError:
                return
            t = self._ntp(time.time_ns() + self.skew_ns)
            reply = bytes([0x24, 1, 0, 0xEC]) + bytes(20) + data[40:48] + t + t
            self.sock.sendto(reply, addr)

    def close(self):
        self.sock.close()


@pytest.mark.slow
def test_status_reports_clock_offset_and_calibration(stack, tmp_path):
    """A retained status every second: queue depth, calibration, and the local clock's offset
    against the configured SNTP server (here one 2.5 s ahead: offset −2.5 s)."""
    sntp = FakeSntp(2.5)
    try:
        assert sntp_offset("127.0.0.1", sntp.port) == pytest.approx(-2.5, abs=0.05)
        sub = subscriber(stack, "m1")
        cfg = make_config(tmp_path, stack, source={"realtime": True, "duration_s": 2.5},
                          status={"every_s": 0.5, "sntp_server": f"127.0.0.1:{sntp.port}"})
        try:
            Agent(cfg).run()
            msgs = collect(sub, lambda m: any(offline(x) for x in m))
        finally:
            close(sub)
    finally:
        sntp.close()
    status = [contract.validate(m.topic, m.payload).payload for m in msgs
              if m.topic.endswith("/status") and not m.retain]
    online = [s for s in status if s["online"]]
    assert len(online) >= 3
    timed = [s for s in online if "clock_offset_s" in s]
    assert timed and timed[-1]["clock_offset_s"] == pytest.approx(-2.5, abs=0.05)
    assert {"queue_depth", "calibration", "software", "in_flight"} <= set(online[-1])
    assert online[-1]["meter"] == "m1" and online[-1]["calibrated"] is True


# ------------------------------------------------------------------------- configuration
def test_config_errors_name_the_section_and_key(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    base = {"meter": {"id": "m1", "enterprise": "acme", "site": "press"},
            "source": {"kind": "synthetic"},
            "mqtt": {"password_file": str(pw)},
            "outbox": {"path": str(tmp_path / "o.sqlite")}}

    def err(**over) -> str:
        cfg = {k: dict(v) for k, v in base.items()}
        for section, keys in over.items():
            cfg.setdefault(section, {}).update(keys)
        with pytest.raises(ConfigError) as e:
            check_config(cfg)
        return str(e.value)

    ok = check_config(base)
    assert ok["mqtt"]["password"] == "secret" and ok["mqtt"]["username"] == "m1"
    assert ok["mqtt"]["port"] == 1883 and ok["source"]["realtime"] is True
    assert "unknown key(s) ['colour']" in err(meter={"colour": "red"})
    assert "unknown section(s) ['extra']" in err(extra={"a": 1})
    assert "[meter] id 'm 1' is not a valid id" in err(meter={"id": "m 1"})
    assert "[meter] site" in err(meter={"site": "a/b"})
    assert "password_file" in err(mqtt={"password_file": str(tmp_path / "nope")})
    assert "[source] kind = 'usb'" in err(source={"kind": "usb"})
    assert "do not apply to kind = 'synthetic'" in err(source={"path": "x.wav"})
    assert "[source] path" in err(source={"kind": "file", "path": str(tmp_path / "x.wav")})
    assert "[mqtt] port = 'x': expected int" in err(mqtt={"port": "x"})
    assert "expected bool" in err(source={"realtime": 1})
    assert "interval" in err(meter={"interval_s": 120})
    assert "not both" in err(meter={"pa_per_unit": 1.0, "calibration_store": str(tmp_path)})
    cfg = {k: dict(v) for k, v in base.items()}
    del cfg["outbox"]
    with pytest.raises(ConfigError, match=r"\[outbox\] path is required"):
        check_config(cfg)


def test_load_config_resolves_paths_and_the_example_is_valid(tmp_path):
    (tmp_path / "secret").write_text("pw\n")
    (tmp_path / "a.toml").write_text(
        '[meter]\nid = "m1"\nenterprise = "acme"\nsite = "press"\n'
        '[source]\nkind = "file"\npath = "rec.wav"\nstart_time = 2026-11-24T08:00:00+08:00\n'
        '[mqtt]\npassword_file = "secret"\n[outbox]\npath = "q/outbox.sqlite"\n')
    import soundfile as sf

    sf.write(tmp_path / "rec.wav", np.zeros((4800, 1)), 48000)
    cfg = load_config(tmp_path / "a.toml")
    assert cfg["outbox"]["path"] == str(tmp_path / "q" / "outbox.sqlite")
    assert cfg["source"]["start_time"].utcoffset().total_seconds() == 8 * 3600
    (tmp_path / "b.toml").write_text("[meter\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "b.toml")

    example = os.path.join(os.path.dirname(__file__), "..", "configs", "agent.example.toml")
    import tomllib

    with open(example, "rb") as f:
        raw = tomllib.load(f)
    raw["mqtt"]["password_file"] = str(tmp_path / "secret")
    raw["outbox"]["path"] = str(tmp_path / "o.sqlite")
    raw["meter"].pop("calibration_store", None)
    assert check_config(raw)["meter"]["id"] == raw["meter"]["id"]


def test_file_source_intervals_are_stamped_from_start_time(tmp_path):
    """A recording with a given start time: interval starts are that time + i × interval,
    also without a broker (everything stays in the outbox)."""
    import soundfile as sf

    scene = SyntheticScene(duration=3.5, seed=1, profile="steady")
    sf.write(tmp_path / "rec.wav", scene.read_all(), 48000, subtype="FLOAT")
    cfg = {"meter": {"id": "m1", "enterprise": ENT, "site": SITE, "pa_per_unit": 200.0},
           "source": {"kind": "file", "path": str(tmp_path / "rec.wav"),
                      "start_time": "2026-11-24T08:00:00+08:00"},
           "mqtt": {"port": free_port(), "drain_s": 0.5},
           "outbox": {"path": str(tmp_path / "o.sqlite")}}
    summary = Agent(cfg).run()
    assert summary["intervals"] == 4 and summary["queue_depth"] == 4  # the last one partial
    with Outbox(tmp_path / "o.sqlite") as ob:
        ps = [json.loads(r.payload) for r in ob.oldest(10)]
    t0 = int(dt.datetime(2026, 11, 24, tzinfo=dt.UTC).timestamp()) * 10**9
    assert [p["start_ns"] for p in ps] == [t0 + i * 10**9 for i in range(4)]
    assert [p["coverage"] for p in ps] == [1.0, 1.0, 1.0, 0.5]
    assert all(p["calibrated"] for p in ps)


def test_digital_silence_gives_null_levels_that_pass_the_contract(tmp_path):
    """A dead input (zeros, denormal filter residue) would read about −400 dB, which no
    collector accepts: the levels become null, the interval keeps its coverage and exposure,
    the message validates."""
    import soundfile as sf

    residue = 1e-25 * np.sin(2 * np.pi * 1000.0 * np.arange(48000) / 48000)
    sf.write(tmp_path / "zeros.wav", residue, 48000, subtype="FLOAT")
    cfg = {"meter": {"id": "m1", "enterprise": ENT, "site": SITE, "pa_per_unit": 1.0},
           "source": {"kind": "file", "path": str(tmp_path / "zeros.wav")},
           "mqtt": {"port": free_port(), "drain_s": 0.2},
           "outbox": {"path": str(tmp_path / "o.sqlite")}}
    agent = Agent(cfg)
    assert agent.run()["queue_depth"] == 1
    assert agent.out_of_range > 0
    with Outbox(tmp_path / "o.sqlite") as ob:
        (rec,) = ob.oldest(5)
    p = contract.validate(rec.topic, rec.payload).payload
    assert p["laeq"] is None and p["lafmax"] is None and p["coverage"] == 1.0
    assert p["ea"] is not None and p["ea"] < 1e-20
