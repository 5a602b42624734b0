"""Protection at the ear end to end: a protection-mode agent (in process, real outbox and
MQTT) → Mosquitto → collector → InfluxDB → analysis.wear_time → wear_daily. A 32-minute
stretch of a shift: 1 min plug in, 30 min removed, 1 min plug in."""

from __future__ import annotations

import datetime as dt

import numpy as np
from scipy import signal
from support.collector import start_collector
from support.configs import make_config
from support.stack import influx_query
from support.wait import wait_for

from tingbao.analysis import wear_time
from tingbao.collector.schema import PROTECTION, RP_FOREVER, WEAR_DAILY
from tingbao.edge.agent import Agent
from tingbao.edge.sources.chunk import Chunk

FS = 44_100
TZ = "Asia/Shanghai"
WORN_S, REMOVED_S = 60, 1800


class ShiftSource:
    """Two channels (outer, inner) from a 10 s pink-noise loop at ~95 dB(A): the inner one
    through a plug filter (20 dB flat + low-pass 800 Hz), equal to the outer one while the
    plug is out. Generated per block, memory flat."""

    def __init__(self):
        w = np.random.default_rng(7).standard_normal(10 * FS)
        x = signal.lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                           [1, -2.494956002, 2.017265875, -0.522189400], w)
        self.outer = x / np.sqrt(np.mean(x**2)) * 1.0  # ~94 dB re 20 µPa unweighted
        plug = signal.butter(2, 800, "lowpass", fs=FS, output="sos")
        self.inner = signal.sosfilt(plug, np.tile(self.outer, 2))[10 * FS:] * 0.1
        self.samplerate, self.channels = float(FS), 2
        self.duration = float(2 * WORN_S + REMOVED_S)

    def __iter__(self):
        for k in range(round(self.duration / 10)):
            t = 10 * k
            inner = self.outer if WORN_S <= t < WORN_S + REMOVED_S else self.inner
            yield Chunk(np.stack([self.outer, inner], axis=1))


def test_a_30_minute_removal_reaches_wear_daily_within_one_interval(stack, tmp_path):
    # the shift runs 09:00-09:32 local time yesterday (a whole local date, closed)
    day = (dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8)))
           - dt.timedelta(days=1)).date()
    start = dt.datetime.combine(day, dt.time(9), dt.timezone(dt.timedelta(hours=8)))
    start_ns = int(start.timestamp()) * 10**9
    collector = start_collector(stack, tmp_path / "col", client_id="prot-col")
    try:
        # raw units = Pa; full scale 100 Pa (134 dB peak) so the ~94 dB signal does not clip
        cfg = make_config(tmp_path, stack, meter={"mode": "protection", "pa_per_unit": 1.0,
                                                  "full_scale": 100.0},
                          source={"channels": 2},
                          mqtt={"backlog_per_s": 5000.0, "window": 1000})
        cfg["protection"] = {"required_attenuation_db": 15.0, "worker": "w-0042",
                             "protector": "foam-plug-a"}
        agent = Agent(cfg, source=ShiftSource(), stream_start_ns=start_ns)
        summary = agent.run()
        n = 2 * WORN_S + REMOVED_S
        assert summary["intervals"] == n
        q = f"SELECT COUNT(seq) FROM {PROTECTION} WHERE worker = 'w-0042'"
        wait_for(lambda: (influx_query(stack, q) or [{}])[0].get("count") == n, 60,
                 f"{n} protection points stored")
        days = wear_time.close_day(stack.influx("reader"), stack.influx("writer"), "acme",
                                   day, TZ)
        assert len(days) == 1
        rows = influx_query(stack, f'SELECT * FROM "{RP_FOREVER}"."{WEAR_DAILY}"')
        assert len(rows) == 1
        r = rows[0]
        # 1800 s removed of 1920 s assessed: within one interval (1 s) at each end of the
        # removal; worn 120 s, share 120/1920 = 6.25 %; the first second (filters settling)
        # may read otherwise
        assert abs(r["removed_s"] - REMOVED_S) <= 1.0 + 1e-6
        assert abs(r["worn_s"] - 2 * WORN_S) <= 2.0 + 1e-6
        assert abs(r["assessed_s"] - n) <= 1.0 + 1e-6
        assert r["share"] == r["worn_s"] / r["assessed_s"]
        assert r["worker"] == "w-0042" and r["meter"] == "m1"
    finally:
        collector.stop()
