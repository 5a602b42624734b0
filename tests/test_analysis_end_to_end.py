"""A synthetic shift of known exposure through every real part: a recording → `tingbao agent`
→ Mosquitto → `tingbao collector` → InfluxDB → the analysis (in-shift tick, then `tingbao
analyze --from/--to`) → the ledger and the alerts → `tingbao alerts ack/resolve`.

Time is compressed, not faked: the enterprise's shift lasts 0.05 h (180 s) and the levels are
raised by 10 lg(8 h / 0.05 h) = 22.04 dB, so that the shift's LEX,8h is the one of the
reference example, 4 h at 88 dB(A) + 4 h at 80 dB(A) = 85.6 dB(A):
LEX,8h = 10 lg[(90 s·10^(11.004) + 90 s·10^(10.204)) / 28 800 s] = 85.63 dB(A).
The recording is stamped at the shift's start three days ago (the agent's file source with
``start_time``), so the whole shift is back-filled through the live path.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import zoneinfo

import numpy as np
import pytest
import soundfile as sf
from support.collector import collector_process
from support.commands import free_port, run_tingbao, tingbao
from support.configs import ENT, SITE, make_config, write_collector_config, write_toml
from support.mqtt import close, mqtt_client, subscribe
from support.stack import influx_query
from support.wait import wait_for

from tingbao.analysis import ledger
from tingbao.analysis.alert_store import AlertStore, mqtt_publisher
from tingbao.analysis.analyzer import Analyzer
from tingbao.analysis.shifts import shift_window
from tingbao.collector import schema
from tingbao.collector.registry import load_registry
from tingbao.collector.registry.connect import mqtt_endpoint
from tingbao.edge import contract

TZ = "Asia/Shanghai"
FS = 48000
PA_PER_UNIT = 30.0
RAISE_DB = 10 * math.log10(8 / 0.05)  # 22.04 dB: 8 h of exposure in 180 s
L1, L2 = 88.0 + RAISE_DB, 80.0 + RAISE_DB
LEX_WANT = 10 * math.log10(0.5 * 10**8.8 + 0.5 * 10**8.0)  # 85.63 dB(A)
DATE = (dt.datetime.now(zoneinfo.ZoneInfo(TZ)) - dt.timedelta(days=3)).date()
NS = 10**9


def site_toml(stack_dir) -> str:
    return f"""
[deployment]
timezone = "{TZ}"
[stack]
data_dir = "{stack_dir}"
[analysis]
holdoff_s = 600
recent_s = 30
[[enterprises]]
id = "{ENT}"
name_zh = "示例冲压厂"
industry = "machinery"
group = "pilot"
shift = {{ start = "10:00", hours = 0.05, days_per_week = 7 }}
[[sites]]
id = "{SITE}"
enterprise = "{ENT}"
name_zh = "冲压车间"
[[meters]]
id = "m1"
enterprise = "{ENT}"
site = "{SITE}"
pa_per_unit = {PA_PER_UNIT}
calibrated = 2026-10-01
"""


def tone(level_db: float, seconds: float) -> np.ndarray:
    """A 1 kHz sine of ``level_db`` dB re 20 µPa (A-weighting at 1 kHz: 0 dB) in units of
    ``PA_PER_UNIT`` Pa: amplitude = √2 · p_rms / S."""
    t = np.arange(int(seconds * FS)) / FS
    amp = math.sqrt(2) * 20e-6 * 10 ** (level_db / 20) / PA_PER_UNIT
    return (amp * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def test_a_known_shift_through_the_whole_system(stack, tmp_path):
    stack.write_state()
    site = tmp_path / "site.toml"
    site.write_text(site_toml(stack.data_dir), encoding="utf-8")
    reg = load_registry(site)
    w = shift_window(reg.enterprise(ENT), DATE, TZ)
    assert w.length_s == 180.0
    sf.write(tmp_path / "shift.wav", np.concatenate([tone(L1, 90), tone(L2, 90)]), FS,
             subtype="FLOAT")
    cfg = make_config(tmp_path, stack, meter={"id": "m1", "pa_per_unit": PA_PER_UNIT})
    cfg["source"] = {"kind": "file", "path": str(tmp_path / "shift.wav"),
                     "start_time": w.local_start().isoformat()}
    agent_cfg = write_toml(tmp_path / "agent.toml", cfg)
    col = collector_process(write_collector_config(
        stack, tmp_path / "collector", client_id="e2e-analysis", metrics_port=free_port(),
        settle_ms=500, catchup_minutes=0), tmp_path / "collector.log")
    listener = mqtt_client(stack, "collector")
    try:
        subscribe(listener, contract.alerts_topic(ENT))
        agent = tingbao("agent", "--config", agent_cfg, log=tmp_path / "agent.log")
        assert agent.wait(120) == 0, (tmp_path / "agent.log").read_text()[-3000:]

        def minutes():
            return influx_query(stack, f"SELECT SUM(n) AS n FROM "
                                       f"{schema.source(schema.LEVELS_1M, schema.RP_FOREVER)}"
                                       f" WHERE meter = 'm1'")
        wait_for(lambda: (minutes() or [{}])[0].get("n") == 180, 60,
                 "180 intervals stored and rolled up into 3 minutes", interval=0.5)

        # in the shift, 60 s after its start: the early warning, before the shift ends
        publish, close_pub = mqtt_publisher(mqtt_endpoint(reg))
        try:
            reader, writer = stack.influx("reader"), stack.influx("writer")
            an = Analyzer(reg, reader, writer, AlertStore(reader, writer, publish))
            now = w.period.start_ns + 60 * NS
            an.in_shift(w, now)
        finally:
            close_pub()
        store = AlertStore(reader, writer)
        warning = store.list(enterprise=ENT, rule="lex_projected")
        assert len(warning) == 1 and warning[0].evidence["now_ns"] < w.period.end_ns
        # 60 s at L1 so far, the last 30 s at L1, the rest (120 s) at L1: LEX,8h = 88.0
        assert warning[0].evidence["projected_lex_8h"] == pytest.approx(88.0, abs=0.05)
        message = listener.tb_messages.get(timeout=10)
        got = json.loads(message.payload)
        assert message.topic == contract.alerts_topic(ENT)
        assert got["state"] == "open" and got["id"] in {a.id for a in store.list(
            enterprise=ENT)}

        # the shift is over: back-fill closes it through the command
        r = run_tingbao("analyze", "--config", site, "--from", DATE.isoformat(), "--to",
                        DATE.isoformat(), "--no-mqtt", timeout=120)
        assert r.returncode == 0, r.stderr
        recs = ledger.read_records(reader, ENT, w.period.start_ns)
        post = next(x for x in recs if x.tags.get("kind") == "post"
                    and x.tags.get("profile") == "CN-GBZ")
        assert post.fields["lex_8h"] == pytest.approx(LEX_WANT, abs=0.05)
        assert post.fields["grade"] == "I" and post.fields["coverage"] == pytest.approx(1.0)
        assert ledger.verify(reader, ENT).ok
        exceed = store.list(enterprise=ENT, rule="lex_exceeded")
        assert len(exceed) == 1, exceed  # exactly one exceedance alert at the shift's end

        # an inspector acknowledges and resolves it; every state is in InfluxDB
        aid = exceed[0].id
        for action, note in (("ack", "已通知车间主任 / workshop head told"),
                             ("resolve", "已更换隔声罩 / enclosure replaced")):
            r = run_tingbao("alerts", "--config", site, action, aid, "--who", "张检查员",
                            "--note", note)
            assert r.returncode == 0, r.stderr
        states = [row["state"] for row in influx_query(
            stack, f"SELECT * FROM {schema.source(schema.ALERTS, schema.RP_FOREVER)} WHERE "
                   f"\"id\" = '{aid}'")]
        assert sorted(states) == ["acknowledged", "open", "resolved"]
        final = store.get(aid)
        assert final.state == "resolved" and final.resolved_by == "张检查员"
    finally:
        close(listener)
        col.terminate()
        col.wait(30)
