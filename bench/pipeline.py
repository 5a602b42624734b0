"""Throughput and latency of the delivery backbone: simulated meters → real Mosquitto → two
collectors → real InfluxDB.

Not a test: it prints figures; its last line is one JSON object with ``records_per_s``
(sustained, stored), ``p50_latency_s`` and ``p99_latency_s`` (interval end → stored in
InfluxDB), ``lost``, ``duplicated`` and more.

Set-up: ``--meters`` simulated multichannel meters (default 200), each with its own device
account and MQTT connection, each publishing one ``levels`` record per channel
(``--channels``, default 50) at the end of every 1 s interval, in real time, for
``--seconds`` (default 30); spread over ``--publishers`` processes. ``--collectors`` collector
processes (default 2) share the subscription. Offered load = meters × channels records/s.
With ``--form channels`` (default) a meter sends every channel of an interval in one message,
as the agent of a multichannel device does; ``--form single`` sends one message per channel.

Figures: ``records_per_s`` = records stored / (time the last record was stored − time the
first interval ended); latency per record = the collector's write-acknowledged time − the
interval end, from the collectors' latency histograms; ``lost`` = expected − stored points;
``receipts_per_s`` = receipt messages the collectors published per wall second (one per
meter per stored batch; the simulated meters do not subscribe to them, so the broker drops
them after the collectors paid for them). ``cpu_cores`` = CPU seconds per wall second of
InfluxDB, Mosquitto and the collectors
while the run lasted (what bounds it, of the machine's cores); ``duplicated`` = stored
points beyond the expected ones (InfluxDB keeps one point per
(meter, channel, start), so a re-delivery overwrites; ``redelivered`` counts those).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def publisher_child(args) -> int:
    """Publish for meters [first, first+count) in real time; print a JSON summary."""
    import paho.mqtt.client as mqtt

    from tingbao.edge import contract

    creds = json.loads(args.creds)
    clients = []
    acked = [0]
    refused = [0]

    def on_publish(client, userdata, mid, reason_code, properties):
        if reason_code.is_failure:
            refused[0] += 1
        else:
            acked[0] += 1

    for meter, password in creds:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{meter}",
                        protocol=mqtt.MQTTv5)
        c.username_pw_set(meter, password)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.on_publish = on_publish
        c.connect(args.host, args.port, keepalive=60)
        c.loop_start()
        clients.append((meter, c, contract.topic("bench", "s1", meter, "levels")))
    seq = 0
    t0 = args.t0
    sent = 0
    for k in range(args.seconds):
        end = t0 + (k + 1)
        delay = end - time.time()
        if delay > 0:
            time.sleep(delay)
        start_ns = int((end - 1.0) * 1e9)
        seq += 1
        for meter, c, topic in clients:
            recs = [{"channel": ch, "duration": 1.0, "ea": 0.2512 + ch * 1e-4, "coverage": 1.0,
                     "overload": False, "laeq": 84.0, "lceq": 86.0, "lcpeak": 110.0,
                     "lzpeak": 111.0, "lafmax": 88.0, "lasmax": 86.0, "lafmin": 80.0,
                     "laf5": 87.0, "laf10": 86.5, "laf50": 84.0, "laf90": 81.0, "laf95": 80.5}
                    for ch in range(args.channels)]
            if args.form == "channels":  # what a multichannel agent sends
                payloads = [contract.levels_payload_channels(recs, meter=meter, seq=seq,
                                                             start_ns=start_ns)]
            else:  # one message per channel
                payloads = [contract.levels_payload(r, meter=meter, seq=seq, start_ns=start_ns)
                            for r in recs]
            for p in payloads:
                c.publish(topic, contract.encode(p), qos=1)
                sent += 1
    deadline = time.time() + 120
    while acked[0] + refused[0] < sent and time.time() < deadline:
        time.sleep(0.05)
    for _, c, _ in clients:  # disconnect first: loop_stop alone waits out a select timeout
        c.disconnect()
    for _, c, _ in clients:
        c.loop_stop()
    print(json.dumps({"sent": sent, "acked": acked[0], "refused": refused[0]}))
    return 0


def percentile_from_hist(edges_ms, counts, q):
    total = sum(counts)
    if total == 0:
        return None
    target = q / 100 * total
    run = 0
    for edge, n in zip(edges_ms, counts, strict=True):
        run += n
        if run >= target:
            return edge / 1000.0
    return edges_ms[-1] / 1000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=200)
    ap.add_argument("--channels", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--collectors", type=int, default=2)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--form", choices=("channels", "single"), default="channels",
                    help="one levels message per meter and interval holding every channel "
                         "(what a multichannel agent sends; default) or one per channel")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--creds", help=argparse.SUPPRESS)
    ap.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return publisher_child(args)

    from tingbao.collector.schema import EA, LEVELS, quote_ident, source, where_tags
    from tingbao.collector.stack import Stack

    tmp = Path(tempfile.mkdtemp(prefix="tingbao-bench-"))
    meters = [f"b{i:04d}" for i in range(args.meters)]
    expected = args.meters * args.channels * args.seconds
    stack = Stack(tmp / "stack")
    stack.start()
    procs: list[subprocess.Popen] = []
    try:
        accounts = stack.add_devices(meters)
        col_user, col_pw = stack.mqtt_account("collector")
        w_user, w_pw = stack.influx_account("writer")
        r_user, r_pw = stack.influx_account("reader")
        (tmp / "mqtt.pw").write_text(col_pw)
        (tmp / "influx.pw").write_text(w_pw)
        (tmp / "reader.pw").write_text(r_pw)
        metrics_ports = []
        from tingbao.collector.stack import free_ports

        for i, port in enumerate(free_ports(args.collectors)):
            cfg = tmp / f"collector{i}.toml"
            cfg.write_text(
                f'[mqtt]\nhost = "127.0.0.1"\nport = {stack.mqtt_port}\n'
                f'username = "{col_user}"\npassword_file = "{tmp / "mqtt.pw"}"\n'
                f'client_id = "bench-collector-{i}"\nreceive_maximum = 5000\n'
                f'[influx]\nurl = "{stack.influx_url}"\nusername = "{w_user}"\n'
                f'password_file = "{tmp / "influx.pw"}"\n'
                f'[collector]\nbatch_size = 5000\nbatch_s = 0.1\naccept_any_meter = true\n'
                f'metrics_port = {port}\n'
                f'[rollups]\nusername = "{r_user}"\npassword_file = "{tmp / "reader.pw"}"\n')
            metrics_ports.append(port)
            procs.append(subprocess.Popen([sys.executable, "-m", "tingbao.edge.cli.main",
                                           "collector", "--config", str(cfg)],
                                          stdout=subprocess.DEVNULL,
                                          stderr=open(tmp / f"collector{i}.log", "w")))
        wait_metrics(metrics_ports)
        st = stack.status()
        watched = {"influxdb": [st["influxdb"]["pid"]], "mosquitto": [st["mqtt"]["pid"]],
                   "collectors": [p.pid for p in procs]}
        cpu0 = {k: sum(cpu_s(p) for p in v) for k, v in watched.items()}
        t0 = float(int(time.time()) + 3)
        pubs = []
        per = -(-args.meters // args.publishers)
        for j in range(args.publishers):
            chunk = [(a.username, a.password) for a in accounts[j * per : (j + 1) * per]]
            if not chunk:
                continue
            pubs.append(subprocess.Popen(
                [sys.executable, __file__, "--child", "--creds", json.dumps(chunk),
                 "--port", str(stack.mqtt_port), "--t0", str(t0), "--seconds",
                 str(args.seconds), "--channels", str(args.channels), "--form", args.form],
                stdout=subprocess.PIPE, text=True))
        print(f"offered load {args.meters * args.channels} records/s for {args.seconds} s "
              f"({expected} records), {args.collectors} collectors", file=sys.stderr)
        # Wait until the collectors have written everything (or stopped making progress);
        # the publishers' own shutdown (50 MQTT clients each) must not count in the span.
        last, still, t_done = -1, 0.0, None
        while True:
            m = [metrics(p) for p in metrics_ports]
            written = sum(x.get("written_levels", x.get("written", 0)) for x in m)
            if written >= expected:
                t_done = time.time()
                break
            if written == last:
                still += 0.5
                if still > 20:
                    break
            else:
                still, last = 0.0, written
            time.sleep(0.5)
        wall = time.time() - t0
        cpu = {k: round((sum(cpu_s(p) for p in v) - cpu0[k]) / wall, 2)
               for k, v in watched.items()}
        pub_out = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in pubs]
        m = [metrics(p) for p in metrics_ports]
        rows = stack.influx("reader").query_rows(
            f"SELECT COUNT({quote_ident(EA)}) FROM {source(LEVELS)} WHERE "
            f"{where_tags([('enterprise', 'bench')])}")
        stored = sum(int(r["count"]) for r in rows)
        first_end = t0 + 1
        hist = merge_hists(m)
        span = (t_done or time.time()) - first_end
        result = {
            "records_per_s": round(stored / span, 1) if span > 0 else None,
            "p50_latency_s": percentile_from_hist(*hist, 50) if hist else None,
            "p99_latency_s": percentile_from_hist(*hist, 99) if hist else None,
            "lost": max(expected - stored, 0),
            "duplicated": max(stored - expected, 0),
            "redelivered": max(sum(x.get("written_levels", 0) for x in m) - expected, 0),
            "expected": expected,
            "stored": stored,
            "offered_records_per_s": args.meters * args.channels,
            "meters": args.meters,
            "channels": args.channels,
            "form": args.form,
            "offered_messages_per_s": args.meters * (1 if args.form == "channels"
                                                     else args.channels),
            "collectors": args.collectors,
            "publish_acked": sum(p["acked"] for p in pub_out),
            "publish_refused": sum(p["refused"] for p in pub_out),
            "rejected": sum(x.get("rejected", 0) for x in m),
            "receipts_sent": sum(x.get("receipts_sent", 0) for x in m),
            "receipts_per_s": round(sum(x.get("receipts_sent", 0) for x in m) / wall, 1),
            "cpu_cores": cpu,
        }
        print(json.dumps(result))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        stack.stop()
    return 0


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a live process (Linux /proc), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, TypeError, IndexError, ValueError):
        return 0.0


def metrics(port: int) -> dict:
    """A collector's ``GET /metrics`` (its own HTTP endpoint, not InfluxDB); {} if none."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        return {}


def wait_metrics(ports, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(metrics(p).get("subscribed") for p in ports):
            return
        time.sleep(0.2)
    raise RuntimeError("collectors did not subscribe in time; see their logs")


def merge_hists(ms):
    edges, counts = None, None
    for m in ms:
        h = m.get("latency_hist")
        if not h:
            continue
        if edges is None:
            edges, counts = list(h["edges_ms"]), list(h["counts"])
        else:
            counts = [a + b for a, b in zip(counts, h["counts"], strict=True)]
    return (edges, counts) if edges else None


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(main())
