"""``tingbao demo``: the whole system on one machine, from the site registry.

The local stack (Mosquitto + InfluxDB), one edge agent per synthetic meter of one enterprise
of the registry (real-time factory scenes), a collector that takes its known meters from the
same registry (and reloads it when the file changes), and a table, refreshed every 2 s, of
what arrived in InfluxDB: each post's latest LAeq,1s, LAFmax and LCpeak, the exposure so far
as LEX,8h, the projected LEX,8h of the enterprise's shift and its GBZ/T 229.4 grade
(:mod:`tingbao.analysis`). The live page of a later issue replaces the table.

The registry is the one source of truth: meters, their MQTT accounts, the collector's known
meters, the shift length and the regulatory profile all come from it (default: the packaged
``configs/site.example.toml``; ``--site FILE`` for another). Everything runs under
``--data-dir`` (default ``var/demo``) and stops on Ctrl-C or after ``--duration`` seconds; the
stored levels stay there (``tingbao stack up --data-dir var/demo/stack`` brings the database
back).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="the demo: stack, simulated meters, collector, levels "
                                    "arriving in InfluxDB")
    p.add_argument("--duration", type=float, default=120.0,
                   help="seconds to run (default 120; 0 = until Ctrl-C)")
    p.add_argument("--data-dir", default=os.path.join("var", "demo"))
    p.add_argument("--site", default=None, metavar="FILE",
                   help="site registry (default: the packaged configs/site.example.toml)")
    p.add_argument("--enterprise", default=None, metavar="ID",
                   help="whose meters to simulate (default: the first enterprise with "
                        "synthetic meters)")
    p.set_defaults(func=run)


def example_site() -> Path:
    """The packaged example registry."""
    return Path(str(resources.files("tingbao.configs") / "site.example.toml"))


def _python_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from tingbao.edge.cli.main import main; "
            "sys.exit(main(sys.argv[1:]))", *args]


def _write(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return str(path)


def _toml(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)  # a TOML basic string


def agent_config(d: Path, stack, meter, seed: int, duration_s: float) -> str:
    """The agent TOML of one synthetic meter of the registry."""
    pw = _write(d / f"{meter.id}.password", stack.mqtt_account(meter.id).password)
    return _write(d / f"agent-{meter.id}.toml", f"""
[meter]
id = {_toml(meter.id)}
enterprise = {_toml(meter.enterprise)}
site = {_toml(meter.site)}
interval_s = 1.0
[source]
kind = "synthetic"
profile = {_toml(meter.source.scene)}
seed = {seed}
duration_s = {max(duration_s, 60.0) + 30.0}
realtime = true
[mqtt]
host = {_toml(stack.host)}
port = {stack.mqtt_port}
password_file = {_toml(pw)}
[outbox]
path = {_toml(str(d / f'outbox-{meter.id}.sqlite'))}
[status]
every_s = 5.0
""")


def collector_config(d: Path, stack, site: Path, metrics_port: int) -> str:
    """The collector TOML: the stack's accounts, known meters from the registry ``site``."""
    m = _write(d / "collector-mqtt.password", stack.mqtt_account("collector").password)
    w, r = stack.influx_account("writer"), stack.influx_account("reader")
    wp = _write(d / "influx-writer.password", w.password)
    rp = _write(d / "influx-reader.password", r.password)
    return _write(d / "collector.toml", f"""
[mqtt]
host = {_toml(stack.host)}
port = {stack.mqtt_port}
username = "collector"
password_file = {_toml(m)}
client_id = "demo-collector"
[influx]
url = {_toml(stack.influx_url)}
username = {_toml(w.username)}
password_file = {_toml(wp)}
[collector]
site = {_toml(str(site))}
metrics_port = {metrics_port}
[rollups]
username = {_toml(r.username)}
password_file = {_toml(rp)}
""")


def rows(stack, enterprise: str) -> dict[tuple[str, str], dict]:
    """Latest levels and the exposure of the last hour per (meter, channel), from InfluxDB."""
    from tingbao.collector import schema

    answer = stack.influx("reader").query_rows(schema.latest_levels(enterprise=enterprise))
    return {(r["meter"], r["channel"]): r for r in answer}


def run(args) -> int:
    from tingbao.analysis.gbzt189_8 import lex_8h, projected_lex_8h
    from tingbao.analysis.gbzt229_4 import grade
    from tingbao.collector.registry import load_registry
    from tingbao.collector.stack import Stack, free_ports

    site = Path(args.site).resolve() if args.site else example_site()
    registry = load_registry(site)
    candidates = [e for e in registry.enterprises
                  if any(m.source.kind == "synthetic" for m in registry.meters_of(e.id))]
    if args.enterprise is not None:
        candidates = [e for e in candidates if e.id == args.enterprise]
        if not candidates:
            raise ValueError(f"--enterprise {args.enterprise!r}: no enterprise with synthetic "
                             f"meters of that id in {site}")
    if not candidates:
        raise ValueError(f"{site} declares no meter with a synthetic source to simulate")
    ent = candidates[0]
    meters = [m for m in registry.meters_of(ent.id) if m.source.kind == "synthetic"]
    shift_s = ent.shift.hours * 3600.0
    profile = registry.profile

    d = Path(args.data_dir).resolve()
    (d / "agents").mkdir(parents=True, exist_ok=True)
    stack = Stack(d / "stack")
    print(f"听保 tingbao demo — {ent.name_zh} ({ent.id}), {len(meters)} simulated meters, "
          f"registry {site}; starting the local stack in {d / 'stack'} …", flush=True)
    stack.start()
    procs: list[subprocess.Popen] = []
    stopping = {"now": False}

    def on_signal(signum, frame):
        stopping["now"] = True

    old = signal.signal(signal.SIGTERM, on_signal)
    logs = []
    try:
        stack.add_devices(sorted(registry.meter_ids))  # every meter of the registry
        port = free_ports(1)[0]
        log = open(d / "collector.log", "ab")  # noqa: SIM115 (closed in finally)
        logs.append(log)
        procs.append(subprocess.Popen(_python_cmd("collector", "--config",
                                                  collector_config(d, stack, site, port)),
                                      stdout=log, stderr=log))
        _wait_metrics(port, procs[0], d / "collector.log")
        for seed, meter in enumerate(meters, start=1):
            cfg = agent_config(d / "agents", stack, meter, seed, args.duration)
            alog = open(d / "agents" / f"{meter.id}.log", "ab")  # noqa: SIM115
            logs.append(alog)
            procs.append(subprocess.Popen(_python_cmd("agent", "--config", cfg),
                                          stdout=alog, stderr=alog))
        print(f"MQTT broker  mqtt://{stack.host}:{stack.mqtt_port}   InfluxDB  "
              f"{stack.influx_url} (db tingbao)   collector metrics "
              f"http://127.0.0.1:{port}/metrics", flush=True)
        for m in meters:
            print(f"  meter {m.id:10s} {m.site:10s} scene '{m.source.scene}': {m.position_zh} / "
                  f"{m.position_en}")
        print(f"levels stored in InfluxDB (每2秒刷新 refreshed every 2 s; Ctrl-C to stop). "
              f"Projected LEX,8h: the {ent.shift.hours:g} h shift at the level so far; grade "
              f"per {profile.id} (GBZ/T 229.4-2012)\n"
              f"{'meter 测点':11s} {'s':>5s} {'LAeq,1s':>8s} {'LAFmax':>7s} {'LCpeak':>7s} "
              f"{'EA Pa²s':>9s} {'LEX,8h so far':>13s} {'projected':>9s}  等级 grade",
              flush=True)
        t0 = time.monotonic()
        while not stopping["now"] and (args.duration <= 0
                                       or time.monotonic() - t0 < args.duration):
            time.sleep(2.0)  # the refresh period of the table
            try:
                latest = rows(stack, ent.id)
            except Exception as e:  # a passing hiccup of the database; the demo goes on
                print(f"(query failed: {e})", flush=True)
                continue
            for m in meters:
                r = latest.get((m.id, "0"))
                if not r:
                    print(f"{m.id:11s} waiting for the first interval …", flush=True)
                    continue
                ea, covered = float(r["ea"] or 0.0), float(r["coverage"] or 0.0)
                projected = projected_lex_8h(ea, covered, shift_s)
                g = grade(projected, profile)
                print(f"{m.id:11s} {covered:5.0f} {r['laeq']:8.1f} {r['lafmax']:7.1f} "
                      f"{r['lcpeak']:7.1f} {ea:9.3f} {_num(lex_8h(ea)):>13s} "
                      f"{_num(projected):>9s}  {g.label if g else ''}", flush=True)
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
        for f in logs:
            f.close()
        stack.stop()
        print(f"stopped; data and logs are in {d}")
    return 0


def _num(x: float) -> str:
    return f"{x:.1f}" if math.isfinite(x) else "—"


def _wait_metrics(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    """Wait until the collector serves /metrics with ``subscribed: true`` (it then receives
    what the meters publish), or fail with its log."""
    import json
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=1.0) as resp:
                if json.loads(resp.read()).get("subscribed"):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    tail = log.read_text(encoding="utf-8", errors="replace")[-2000:] if log.exists() else ""
    from tingbao.edge.cli.main import CliError

    raise CliError(f"the collector did not subscribe within {timeout:g} s; its log:\n{tail}")
