"""``tingbao demo``: the whole backbone on one machine — the local stack (Mosquitto + InfluxDB),
three simulated meters (edge agents on synthetic factory scenes, in real time), one collector —
and a table of the levels as they arrive in InfluxDB.

Everything runs under ``--data-dir`` (default ``var/demo``) and stops on Ctrl-C or after
``--duration`` seconds. The stored levels stay there for a look afterwards
(``tingbao stack up --data-dir var/demo`` brings the database back).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .stack import Stack, free_ports

ENTERPRISE = "gd-demo-0001"
METERS = [  # (meter id, site, scene profile, seed, position)
    ("press-01", "stamping-hall", "stamping", 1, "冲压车间 1号冲床旁 / beside press 1"),
    ("grind-01", "finishing", "grinding", 2, "打磨工位 / grinding bench"),
    ("line-01", "assembly", "mixed", 3, "装配线 / assembly line"),
]

GRADES = [(100, "IV 极重危害 extreme"), (94, "III 重度危害 severe"), (90, "II 中度危害 moderate"),
          (85, "I 轻度危害 mild"), (80, "噪声作业 noise work")]


def grade(lex: float | None) -> str:
    """GBZ/T 229.4-2012 grade of an LEX,8h in dB(A) (colour of the live table)."""
    if lex is None:
        return ""
    for lo, name in GRADES:
        if lex >= lo:
            return name
    return "— below 80 dB(A)"


def register(sub) -> None:
    p = sub.add_parser("demo", help="the demo: stack, three simulated meters, collector, "
                                    "levels arriving in InfluxDB")
    p.add_argument("--duration", type=float, default=120.0,
                   help="seconds to run (default 120; 0 = until Ctrl-C)")
    p.add_argument("--data-dir", default=os.path.join("var", "demo"))
    p.set_defaults(func=run)


def _python_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from tingbao.edge.cli.main import main; "
            "sys.exit(main(sys.argv[1:]))", *args]


def _write(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def _agent_config(d: Path, stack: Stack, meter: str, site: str, profile: str, seed: int,
                  duration: float) -> str:
    pw = _write(d / f"{meter}.password", stack.mqtt_account(meter).password)
    return _write(d / f"agent-{meter}.toml", f"""
[meter]
id = "{meter}"
enterprise = "{ENTERPRISE}"
site = "{site}"
interval = 1.0
[source]
kind = "synthetic"
profile = "{profile}"
seed = {seed}
duration = {max(duration, 60.0) + 30.0}
realtime = true
[mqtt]
host = "{stack.host}"
port = {stack.mqtt_port}
password_file = "{pw}"
[outbox]
path = "{d / f'outbox-{meter}.sqlite'}"
[status]
every_s = 5.0
""")


def _collector_config(d: Path, stack: Stack, metrics_port: int) -> str:
    m = _write(d / "collector-mqtt.password", stack.mqtt_account("collector").password)
    w = stack.influx_account("writer")
    r = stack.influx_account("reader")
    wp = _write(d / "influx-writer.password", w.password)
    rp = _write(d / "influx-reader.password", r.password)
    known = json.dumps([m_[0] for m_ in METERS])
    return _write(d / "collector.toml", f"""
[mqtt]
host = "{stack.host}"
port = {stack.mqtt_port}
username = "collector"
password_file = "{m}"
client_id = "demo-collector"
[influx]
url = "{stack.influx_url}"
username = "{w.username}"
password_file = "{wp}"
[collector]
known_meters = {known}
metrics_port = {metrics_port}
[rollups]
username = "{r.username}"
password_file = "{rp}"
""")


def _latest(stack: Stack) -> dict[str, dict]:
    q = ('SELECT LAST(laeq) AS laeq, LAST(lafmax) AS lafmax, LAST(lcpeak) AS lcpeak, '
         'COUNT(ea) AS n, SUM(ea) AS ea FROM levels WHERE time > now() - 1h GROUP BY meter')
    out: dict[str, dict] = {}
    ans = stack.influx_query(q)
    for series in ans.get("results", [{}])[0].get("series", []) or []:
        cols, vals = series["columns"], series["values"][0]
        out[series["tags"]["meter"]] = dict(zip(cols, vals, strict=True))
    return out


def run(args) -> int:
    from tingbao.edge.levels import lex_8h

    d = Path(args.data_dir).resolve()
    (d / "agents").mkdir(parents=True, exist_ok=True)
    stack = Stack(d / "stack")
    print(f"听保 tingbao demo — starting the local stack in {d / 'stack'} …", flush=True)
    stack.start()
    procs: list[subprocess.Popen] = []
    stopping = {"now": False}

    def on_signal(signum, frame):
        stopping["now"] = True

    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.add_devices([m[0] for m in METERS])
        port = free_ports(1)[0]
        log = open(d / "collector.log", "ab")
        procs.append(subprocess.Popen(_python_cmd("collector", "--config",
                                                  _collector_config(d, stack, port)),
                                      stdout=log, stderr=log))
        time.sleep(2.0)  # let the collector take its subscription before meters publish
        for meter, site, profile, seed, _pos in METERS:
            cfg = _agent_config(d / "agents", stack, meter, site, profile, seed, args.duration)
            alog = open(d / "agents" / f"{meter}.log", "ab")
            procs.append(subprocess.Popen(_python_cmd("agent", "--config", cfg),
                                          stdout=alog, stderr=alog))
        print(f"MQTT broker  mqtt://{stack.host}:{stack.mqtt_port}   InfluxDB  "
              f"{stack.influx_url} (db tingbao)   collector metrics "
              f"http://127.0.0.1:{port}/metrics", flush=True)
        for meter, site, profile, _seed, pos in METERS:
            print(f"  meter {meter:9s} {site:14s} scene '{profile}': {pos}")
        print("levels stored in InfluxDB (每2秒刷新 refreshed every 2 s; Ctrl-C to stop):\n"
              f"{'meter 测点':11s} {'n':>5s} {'LAeq,1s':>8s} {'LAFmax':>7s} {'LCpeak':>7s} "
              f"{'EA Pa²s':>9s} {'LEX,8h so far':>13s} {'projected':>9s}  "
              "等级 grade (projected LEX,8h for an 8 h shift like this)",
              flush=True)
        t0 = time.monotonic()
        while not stopping["now"] and (args.duration <= 0
                                       or time.monotonic() - t0 < args.duration):
            time.sleep(2.0)
            try:
                latest = _latest(stack)
            except Exception as e:  # a passing hiccup of the database; the demo goes on
                print(f"(query failed: {e})", flush=True)
                continue
            for meter, *_ in METERS:
                r = latest.get(meter)
                if not r:
                    print(f"{meter:11s} waiting for the first interval …", flush=True)
                    continue
                lex = float(lex_8h(r["ea"]))
                # the shift so far, extended to 8 h at the same LAeq: EA × 28800 s / time so far
                projected = float(lex_8h(r["ea"] * 28_800.0 / r["n"]))
                print(f"{meter:11s} {r['n']:5d} {r['laeq']:8.1f} {r['lafmax']:7.1f} "
                      f"{r['lcpeak']:7.1f} {r['ea']:9.3f} {lex:13.1f} {projected:9.1f}  "
                      f"{grade(projected)}", flush=True)
            print(flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        for p in procs[1:] + procs[:1]:  # agents first, then the collector
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        stack.stop()
        print(f"stopped; data and logs are in {d}")
    return 0
