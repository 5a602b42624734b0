"""Agent → Mosquitto → collector → InfluxDB, all real processes: no interval lost or counted
twice, whatever fails.

Each fault test runs a real-time agent on a synthetic scene, breaks one part for a while, and
then checks in InfluxDB that every interval the agent measured (every ``seq`` its outbox
numbered) is stored exactly once, and that the stored exposure equals what the meter computes
directly from the same audio.

The broker crash with messages inside it (InfluxDB down, or one collector of the group down)
loses nothing because the agent keeps every record until a collector's receipt and sends it
again after ``resend_after_s`` (:mod:`tingbao.collector.receipts`).

All of it is ``slow`` (minutes of real-time runs and outages).
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf
from support.agent import outbox_depth
from support.collector import collector_process
from support.commands import free_port, tingbao
from support.configs import ENT, SITE, make_config, write_collector_config, write_toml
from support.mqtt import mqtt_client, publish
from support.receipts import kill_broker_after_save
from support.rollups import rollups_vs_points
from support.stack import influx_query
from support.wait import hold, wait_for

from tingbao.collector.schema import LEVELS
from tingbao.edge import contract, iec61672
from tingbao.edge.levels import P0, lex_8h
from tingbao.edge.meter import SoundLevelMeter
from tingbao.edge.sources import SyntheticScene

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------------------------- helpers
def collector_config(tmp_path, stack, name="c1"):
    """A collector config for the test stack (the collector's default group, rollups and
    catch-up), with its metrics on a free port."""
    return write_collector_config(stack, tmp_path, client_id=f"e2e-{name}", batch_ms=200,
                                  retry_cap_s=2.0, metrics_port=free_port(),
                                  settle_ms=1000, catchup_minutes=60)


def start_agent(config: str, tmp_path, name="a1") -> subprocess.Popen:
    return tingbao("agent", "--config", config, log=tmp_path / f"{name}.log")


def stop(p: subprocess.Popen, sig=signal.SIGTERM, timeout=30.0) -> int:
    if p.poll() is None:
        p.send_signal(sig)
    return p.wait(timeout)


def stored(stack, meter="m1") -> list[dict]:
    return influx_query(stack, f"SELECT seq, ea, coverage FROM {LEVELS} WHERE "
                               f"meter = '{meter}'", epoch="ns")


def agent_config(tmp_path, stack, seconds: float, realtime: bool = True, seed: int = 11,
                 profile: str = "stamping") -> tuple[str, dict]:
    cfg = make_config(tmp_path, stack, source={"duration_s": seconds, "realtime": realtime,
                                               "seed": seed, "profile": profile})
    return write_toml(tmp_path / "agent.toml", cfg), cfg


def assert_every_interval_once(stack, n_expected: int, meter="m1") -> list[dict]:
    rows = stored(stack, meter)
    seqs = sorted(r["seq"] for r in rows)
    assert len(rows) == n_expected, f"{len(rows)} points stored, {n_expected} measured"
    assert seqs == sorted(set(seqs)), "a sequence number is stored twice"
    times = [r["time"] for r in rows]
    assert len(set(times)) == len(times)
    return rows


def direct_exposure(seconds: float, seed: int, profile: str = "stamping") -> float:
    """EA of the scene computed independently: FFT-domain A weighting of the whole audio."""
    scene = SyntheticScene(duration=seconds, seed=seed, profile=profile)
    x = np.concatenate([c.data[:, 0] for c in scene]) * scene.pa_per_unit
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / scene.samplerate)
    w = np.zeros_like(f)
    w[1:] = 10 ** (iec61672.a_weighting_db(f[1:]) / 10)
    scale = np.where((f > 0) & (f < scene.samplerate / 2), 2.0, 1.0)
    return float(np.sum(spec * w * scale) / len(x) / scene.samplerate)


# ------------------------------------------------------------------------------------ tests
def test_lex_from_stored_exposure_equals_lex_computed_from_the_audio(stack, tmp_path):
    seconds, seed = 60.0, 21
    cfg_path, _ = agent_config(tmp_path, stack, seconds, realtime=False, seed=seed)
    col = collector_process(collector_config(tmp_path, stack), tmp_path / "c1.log")
    try:
        agent = start_agent(cfg_path, tmp_path)
        assert agent.wait(120) == 0
        wait_for(lambda: len(stored(stack)) >= 60, 60, "60 intervals in InfluxDB",
                 interval=0.5)
        rows = assert_every_interval_once(stack, 60)
        total = influx_query(stack, f"SELECT SUM(ea) FROM {LEVELS} WHERE meter = 'm1'"
                             )[0]["sum"]
        assert total == pytest.approx(sum(r["ea"] for r in rows), rel=1e-9)
        lex_stored = float(lex_8h(total))
        lex_direct = float(lex_8h(direct_exposure(seconds, seed)))
        assert lex_stored == pytest.approx(lex_direct, abs=0.05)
        # And an LEX query done entirely in InfluxQL (subquery: LOG10 cannot wrap SUM).
        q = ("SELECT 10*LOG10(s/(0.0000000004*28800)) AS lex FROM (SELECT SUM(ea) AS s FROM "
             f"{LEVELS} WHERE meter = 'm1')")
        assert influx_query(stack, q)[0]["lex"] == pytest.approx(lex_direct, abs=0.05)
    finally:
        stop(col)


def _fault_run(stack, tmp_path, fault, seconds=45.0, seed=5):
    """A real-time agent for ``seconds``; ``fault(col_holder)`` runs once its first 5
    intervals are stored (about 8 s after its start) and returns once the broken part is
    back. Then everything measured must be stored exactly once."""
    cfg_path, cfg = agent_config(tmp_path, stack, seconds, realtime=True, seed=seed)
    col_cfg = collector_config(tmp_path, stack)
    holder = {"col": collector_process(col_cfg, tmp_path / "c1.log"), "cfg": col_cfg}
    try:
        agent = start_agent(cfg_path, tmp_path)
        wait_for(lambda: len(stored(stack)) >= 5, 30, "the agent's first 5 intervals stored "
                 "(the fault strikes mid-run)", interval=0.5)
        fault(holder)
        assert agent.wait(seconds + 90) == 0
        n = int(seconds)
        wait_for(lambda: len(stored(stack)) >= n, 120, f"{n} intervals stored", interval=0.5)
        hold(2, "anything extra (a duplicate point) would show within 2 s")
        rows = assert_every_interval_once(stack, n)
        assert [r["seq"] for r in sorted(rows, key=lambda r: r["time"])] == sorted(
            r["seq"] for r in rows)
        return rows
    finally:
        stop(holder["col"])


def test_broker_killed_for_30_s_loses_nothing(fresh_stack, tmp_path):
    def fault(_):
        fresh_stack.kill_broker()
        hold(30, "the fault: the broker stays dead for 30 s")
        fresh_stack.start_broker()

    _fault_run(fresh_stack, tmp_path, fault, seconds=45.0)


def test_influxdb_stopped_for_30_s_loses_nothing(fresh_stack, tmp_path):
    def fault(_):
        fresh_stack.stop_influx()
        hold(30, "the fault: InfluxDB stays down for 30 s")
        fresh_stack.start_influx()

    _fault_run(fresh_stack, tmp_path, fault, seconds=45.0)


def test_collector_killed_mid_batch_and_restarted_loses_nothing(fresh_stack, tmp_path):
    def fault(h):
        h["col"].kill()  # SIGKILL: whatever batch it held was never acknowledged
        h["col"].wait()
        hold(5, "the fault: no collector runs for 5 s (messages wait in the broker)")
        h["col"] = collector_process(h["cfg"], tmp_path / "c1-again.log")

    _fault_run(fresh_stack, tmp_path, fault, seconds=25.0)


def test_agent_killed_and_restarted_its_outbox_survives(fresh_stack, tmp_path):
    cfg_path, cfg = agent_config(tmp_path, fresh_stack, 20.0, realtime=True, seed=8)
    col = collector_process(collector_config(tmp_path, fresh_stack), tmp_path / "c1.log")
    try:
        fresh_stack.stop_broker()  # so that the first run's records wait in the outbox
        first = start_agent(cfg_path, tmp_path, "a1")
        try:
            wait_for(lambda: outbox_depth(cfg["outbox"]["path"]) >= 10, 30,
                     "10 intervals in the first run's outbox", interval=0.2)
        finally:
            first.kill()
            first.wait()
        fresh_stack.start_broker()
        second = start_agent(cfg_path, tmp_path, "a2")
        assert second.wait(90) == 0
        # The first run measured >= 10 intervals (seq 1..k) and the second 20 more (k+1..k+20).
        rows = wait_for(lambda: (r := stored(fresh_stack)) and max(x["seq"] for x in r) >= 25
                        and len(r) == max(x["seq"] for x in r) and r, 90,
                        "both runs' intervals stored", interval=0.5)
        seqs = sorted(r["seq"] for r in rows)
        assert seqs == list(range(1, len(rows) + 1))
        assert len(rows) >= 28
    finally:
        stop(col)


def test_the_same_message_delivered_twice_is_stored_once(stack, tmp_path):
    col = collector_process(collector_config(tmp_path, stack, name="dup"), tmp_path / "dup.log")
    try:
        dev = mqtt_client(stack, "m2", stack.mqtt_account("m2").password)
        start_ns = (time.time_ns() // 10**9 - 100) * 10**9
        rec = {"channel": 0, "duration": 1.0, "ea": 0.5, "coverage": 1.0, "overload": False,
               "laeq": 87.0}
        payload = contract.encode(contract.levels_payload(rec, meter="m2", seq=1,
                                                          start_ns=start_ns))
        t = contract.topic(ENT, SITE, "m2", "levels")
        for _ in range(3):
            assert publish(dev, t, payload, qos=1) < 128
        wait_for(lambda: stored(stack, "m2"), 30, "the point", interval=0.5)
        # (not a wait on this collector's counters: the shared group may hand a delivery to
        # an earlier test's collector session, which keeps it)
        hold(2, "a second point (a duplicate) would show within 2 s")
        assert len(stored(stack, "m2")) == 1
        s = influx_query(stack, f"SELECT SUM(ea) FROM {LEVELS} WHERE meter = 'm2'")[0]["sum"]
        assert s == pytest.approx(0.5)
        assert float(lex_8h(s)) == pytest.approx(10 * np.log10(0.5 / (P0**2 * 28800)))
    finally:
        stop(col)


@pytest.mark.parametrize("held_by", ["influxdb_down", "collector_down"])
def test_broker_killed_with_messages_inside_loses_nothing(fresh_stack, tmp_path, held_by):
    """The broker is SIGKILLed about 4 s after its last save while messages wait inside it:
    InfluxDB is stopped and both collectors hold unacknowledged messages, or one collector of
    the group is down and its share queues in the broker. What the broker accepted since its
    save is gone from it, but not from the agent: nothing is receipted before InfluxDB stored
    it, so the agent sends it again. Every interval is stored exactly once and SUM(ea) is the
    audio's."""
    stack, seconds, seed = fresh_stack, 40.0, 13
    cfg = make_config(tmp_path, stack, source={"duration_s": seconds, "realtime": True,
                                               "seed": seed, "profile": "stamping"},
                      mqtt={"resend_after_s": 5.0, "drain_s": 150.0})
    cfg_path = write_toml(tmp_path / "agent.toml", cfg)
    old_seconds, old_seed = 150.0, 5
    old_scene = SyntheticScene(duration=old_seconds, seed=old_seed, profile="grinding")
    sf.write(tmp_path / "old.wav", np.concatenate([c.data for c in old_scene]), 48000,
             subtype="FLOAT")
    old_start = (time.time_ns() // 60_000_000_000 - 120) * 60_000_000_000 + 17_000_000_000
    old_cfg = make_config(tmp_path, stack, meter={"id": "m2", "pa_per_unit":
                                                  old_scene.pa_per_unit},
                          mqtt={"resend_after_s": 5.0, "drain_s": 150.0})
    old_cfg["source"] = {"kind": "file", "path": str(tmp_path / "old.wav"),
                         "start_time": dt.datetime.fromtimestamp(
                             old_start / 1e9, dt.UTC).isoformat()}
    cfgs = {name: collector_config(tmp_path, stack, name) for name in ("c1", "c2")}
    cols = {name: collector_process(c, tmp_path / f"{name}.log") for name, c in cfgs.items()}
    agent = old = None
    try:
        agent = start_agent(cfg_path, tmp_path)
        wait_for(lambda: len(stored(stack)) >= 5, 30, "the first 5 intervals stored",
                 interval=0.5)
        if held_by == "influxdb_down":
            stack.stop_influx()
        else:
            cols["c2"].kill()
            cols["c2"].wait()
        # a second meter sends a recording of two hours ago while the fault lasts: its old
        # minutes must be stored once and rolled up like the live ones
        old = start_agent(write_toml(tmp_path / "agent-m2.toml", old_cfg), tmp_path, "a2")
        hold(3, "messages pile up in the collectors or in the broker for c2's session")
        kill_broker_after_save(stack, 4.0)
        stack.start_broker()
        if held_by == "influxdb_down":
            hold(3, "InfluxDB stays down a little longer")
            stack.start_influx()
        else:
            cols["c2"] = collector_process(cfgs["c2"], tmp_path / "c2-again.log")
        assert agent.wait(seconds + 200) == 0, (tmp_path / "a1.log").read_text()[-3000:]
        n = int(seconds)
        wait_for(lambda: len(stored(stack)) >= n, 60, f"{n} intervals stored", interval=0.5)
        hold(2, "anything extra (a duplicate point) would show within 2 s")
        rows = assert_every_interval_once(stack, n)
        total = influx_query(stack, f"SELECT SUM(ea) FROM {LEVELS} WHERE meter = 'm1'"
                             )[0]["sum"]
        scene = SyntheticScene(duration=seconds, seed=seed, profile="stamping")
        meter = SoundLevelMeter(scene.samplerate, interval=1.0, pa_per_unit=scene.pa_per_unit)
        truth = sum(float(iv.ea[0]) for c in scene for iv in meter.process(c.data))
        assert total == pytest.approx(truth, rel=1e-6)
        assert sum(r["ea"] for r in rows) == pytest.approx(truth, rel=1e-6)
        assert float(lex_8h(total)) == pytest.approx(float(lex_8h(direct_exposure(
            seconds, seed))), abs=0.05)
        assert outbox_depth(cfg["outbox"]["path"]) == 0
        summary = json.loads((tmp_path / "a1.log").read_text().strip().splitlines()[-1])
        print(f"\n{held_by}: agent summary {summary}")
        assert summary["drained"] and summary["records"] == n
        # what the crash took from the broker came back from the outbox: sent again
        assert summary["published"] > summary["records"], summary
        # the recording of two hours ago: every interval once, its exposure the audio's
        assert old.wait(200) == 0, (tmp_path / "a2.log").read_text()[-3000:]
        n_old = int(old_seconds)
        wait_for(lambda: len(stored(stack, "m2")) >= n_old, 60, f"{n_old} old intervals",
                 interval=0.5)
        old_rows = assert_every_interval_once(stack, n_old, meter="m2")
        assert min(r["time"] for r in old_rows) == old_start
        meter2 = SoundLevelMeter(48000, interval=1.0, pa_per_unit=old_scene.pa_per_unit)
        old_truth = sum(float(iv.ea[0]) for c in SyntheticScene(
            duration=old_seconds, seed=old_seed, profile="grinding")
            for iv in meter2.process(c.data))
        assert sum(r["ea"] for r in old_rows) == pytest.approx(old_truth, rel=1e-5)
        # the minute rollups equal the 1 s sums, the minutes of two hours ago included
        for m in ("m1", "m2"):
            wait_for(lambda m=m: not rollups_vs_points(stack, m), 90,
                     f"the minute rollups of {m} to equal its 1 s sums",
                     detail=lambda m=m: rollups_vs_points(stack, m)[:5])
    finally:
        if old is not None and old.poll() is None:
            old.kill()
        if agent is not None and agent.poll() is None:
            agent.kill()
        for p in cols.values():
            stop(p)
