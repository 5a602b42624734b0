"""``tingbao stack up|down|status``: run the local Mosquitto + InfluxDB stack
(:mod:`tingbao.collector.stack`).

``up`` stays in the foreground until Ctrl-C (or SIGTERM) and then stops both servers; with
``--detach`` it leaves them running in their own sessions and returns. Either way it writes
``DATA_DIR/state.json`` (pids, ports, paths), which ``down`` and ``status`` read.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from tingbao.collector.schema import DEFAULT_RETENTION

from .stack import (
    Stack,
    StackError,
    load_state,
    pid_alive,
    status_from_state,
    stop_from_state,
    tail,
)

DEFAULT_DATA_DIR = "var/stack"


class CliError(ValueError):
    """An error the user can fix (a stack already running, an unreadable site file, a
    StackError). A ValueError, so the ``tingbao`` dispatcher prints it as one line and exits
    with 2, without this module importing the edge's CLI layer (as collector/cli.py's
    ConfigError)."""


def register(sub) -> None:
    p = sub.add_parser(
        "stack",
        help="start, stop or inspect the local MQTT broker + InfluxDB stack",
        description="Run Mosquitto 2 and InfluxDB 1.x on loopback with configs generated from "
        "configs/*.template, password-protected accounts for the collector, analysis and each "
        "meter, and the tingbao database with its retention policies.",
    )
    actions = p.add_subparsers(dest="stack_action", metavar="ACTION", required=True)

    up = actions.add_parser("up", help="start the stack (foreground until Ctrl-C, or --detach)")
    _data_dir(up)
    up.add_argument("--retention", default=DEFAULT_RETENTION, metavar="DURATION",
                    help="how long 1-second levels are kept: an InfluxQL duration such as "
                    f"90d, 26w or INF (default {DEFAULT_RETENTION})")
    up.add_argument("--tls", action="store_true",
                    help="also open an MQTT-over-TLS listener with a self-signed CA "
                    "(DATA_DIR/tls/ca.crt)")
    up.add_argument("--detach", action="store_true",
                    help="leave the servers running in the background and return")
    up.add_argument("--mqtt-port", type=int, metavar="PORT",
                    help="MQTT port (default: the previous one if free, else a free one)")
    up.add_argument("--tls-port", type=int, metavar="PORT", help="MQTT-over-TLS port")
    up.add_argument("--influx-port", type=int, metavar="PORT",
                    help="InfluxDB HTTP port (default: the previous one if free, else a free one)")
    up.add_argument("--device", action="append", default=[], metavar="METER_ID",
                    help="create an MQTT account for this meter (repeatable)")
    up.add_argument("--site", metavar="SITE_TOML",
                    help="create MQTT accounts for all meters of a site registry "
                    "(like configs/site.example.toml)")

    down = actions.add_parser("down", help="stop the stack listed in DATA_DIR/state.json")
    _data_dir(down)
    down.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                      help="wait this long after SIGTERM before SIGKILL (default 10)")

    status = actions.add_parser("status", help="print the stack's state as JSON")
    _data_dir(status)
    p.set_defaults(func=run)


def _data_dir(parser) -> None:
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, metavar="DIR",
                        help=f"configs, data, logs and credentials (default {DEFAULT_DATA_DIR})")


def run(args) -> int:
    try:
        if args.stack_action == "up":
            return _up(args)
        if args.stack_action == "down":
            outcome = stop_from_state(args.data_dir, timeout=args.timeout)
            print(json.dumps(outcome))
            return 0
        state = status_from_state(args.data_dir)
        print(json.dumps(state, indent=2, ensure_ascii=False))
        running = state["mqtt"]["alive"] and state["influxdb"]["alive"]
        return 0 if running else 1
    except StackError as e:
        raise CliError(str(e)) from e


def site_meters(path: str | Path) -> list[str]:
    """The meter ids of a site registry file (checked by :mod:`tingbao.collector.registry`:
    a broken file is refused with its errors, a ConfigError naming file, entry and key)."""
    from .registry import load_registry

    registry = load_registry(path)
    if not registry.meters:
        raise CliError(f"site file {path} declares no [[meters]]")
    return sorted(registry.meter_ids)


def _running(data_dir: str) -> bool:
    try:
        state = load_state(data_dir)
    except StackError:
        return False
    return any(pid_alive(state.get(k, {}).get("pid"), state.get(k, {}).get("config"))
               for k in ("mqtt", "influxdb"))


def _up(args) -> int:
    if _running(args.data_dir):
        raise CliError(f"a stack already runs in {args.data_dir} (see `tingbao stack status "
                       f"--data-dir {args.data_dir}`); stop it with `tingbao stack down "
                       f"--data-dir {args.data_dir}`")
    devices = list(args.device)
    if args.site:
        devices += site_meters(args.site)
    stack = Stack(args.data_dir, mqtt_port=args.mqtt_port, influx_port=args.influx_port,
                  tls=args.tls, tls_port=args.tls_port, retention=args.retention)
    stack.prepare()
    stack.add_devices(dict.fromkeys(devices))
    if not args.detach:
        # a SIGTERM (e.g. from a service manager) stops the stack like Ctrl-C
        signal.signal(signal.SIGTERM, _interrupt)
    stack.start(detach=args.detach)
    try:
        state_file = stack.write_state()
        _print_summary(stack, state_file)
        if args.detach:
            print(f"stop it with: tingbao stack down --data-dir {args.data_dir}", flush=True)
            return 0
        print("running; Ctrl-C stops it", flush=True)
        while True:
            time.sleep(0.5)
            for name, server, log in (("mosquitto", stack._broker, stack.mqtt_log),
                                      ("influxd", stack._influx, stack.influx_log)):
                if not server.alive:
                    raise CliError(f"{name} exited unexpectedly (code {server.proc.returncode})"
                                   f"; last lines of {log}:\n{tail(log)}")
    except KeyboardInterrupt:
        print("stopping …", file=sys.stderr, flush=True)
        return 0
    finally:
        if not args.detach:
            stack.stop()
            _mark_stopped(stack.state_file)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _mark_stopped(state_file: Path) -> None:
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        state["stopped_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        state_file.write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
    except (OSError, ValueError):
        pass


def _print_summary(stack: Stack, state_file: Path) -> None:
    st = stack.status()
    mq, fx = st["mqtt"], st["influxdb"]
    lines = [
        f"MQTT broker     {stack.host}:{stack.mqtt_port}   (mosquitto {mq['version']}, "
        f"pid {mq['pid']})",
    ]
    if stack.tls:
        lines.append(f"MQTT over TLS   {stack.host}:{stack.tls_port}   CA {stack.ca_file}")
    lines += [
        f"InfluxDB        {stack.influx_url}   database {stack.database}, retention "
        f"{stack.rp_levels}={stack.retention} (default), {stack.rp_forever}=INF "
        f"(influxdb {fx['version']}, pid {fx['pid']})",
        f"credentials     {stack.credentials_file}",
        f"state           {state_file}",
        f"logs            {stack.mqtt_log}",
        f"                {stack.influx_log}",
    ]
    print("\n".join(lines), flush=True)
