"""``tingbao stack up|down|status``: run the local Mosquitto + InfluxDB stack
(:mod:`tingbao.collector.stack`).

``up`` stays in the foreground until Ctrl-C (or SIGTERM) and then stops the servers it
started; with ``--detach`` it leaves them running in their own sessions and returns. Either way
it writes ``DATA_DIR/state.json`` (pids, ports, paths), which ``down`` and ``status`` read.

When one server of a detached stack is down (crashed, killed) and the other still runs, ``up``
starts only the one that is down, on the port and with the data recorded in ``state.json``,
and leaves the running one alone (same pid); ``state.json`` then lists the new pid. With both
running it refuses. ``status`` prints the state as JSON (``"down"`` lists the servers that
are not running) and one line per server on stderr; its exit code is 0 when both run, 1 when
one or both are down.
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
from .stack.state import SERVERS, status_lines

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

    up = actions.add_parser("up", help="start the stack (foreground until Ctrl-C, or --detach); "
                            "when one server of it runs already, start only the other")
    _data_dir(up)
    up.add_argument("--retention", metavar="DURATION",
                    help="how long 1-second levels are kept: an InfluxQL duration such as "
                    f"90d, 26w or INF (default {DEFAULT_RETENTION}; when one server still "
                    "runs, the retention recorded in state.json)")
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

    status = actions.add_parser("status", help="print the stack's state as JSON (and one "
                                "line per server on stderr); exit code 1 when one is down")
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
        print(json.dumps(state, indent=2, ensure_ascii=False), flush=True)
        print("\n".join(status_lines(state, args.data_dir)), file=sys.stderr, flush=True)
        return 1 if state["down"] else 0
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


def _running(data_dir: str) -> tuple[dict | None, dict[str, bool]]:
    """The ``state.json`` of an earlier stack on ``data_dir`` (None: there is none) and which
    of its servers still run."""
    try:
        state = load_state(data_dir)
    except StackError:
        return None, {key: False for key, _ in SERVERS}
    return state, {key: pid_alive(state.get(key, {}).get("pid"),
                                  state.get(key, {}).get("config")) for key, _ in SERVERS}


def _partial_stack(args, state: dict, alive: dict[str, bool]) -> Stack:
    """A Stack on the ports, TLS and retention of ``state`` whose running server is taken
    over; a port or TLS option contradicting the running server is refused."""
    mqtt, influx = state.get("mqtt", {}), state.get("influxdb", {})
    given = {"mqtt": [("--mqtt-port", args.mqtt_port, mqtt.get("port")),
                      ("--tls-port", args.tls_port, mqtt.get("tls_port"))],
             "influxdb": [("--influx-port", args.influx_port, influx.get("port"))]}
    for key, name in SERVERS:
        for option, value, recorded in given[key]:
            if alive[key] and value is not None and value != recorded:
                raise CliError(f"{name} runs on port {recorded} (pid {state[key]['pid']}); "
                               f"{option} {value} would need a restart of it: stop the stack "
                               f"first (`tingbao stack down --data-dir {args.data_dir}`)")
    if alive["mqtt"] and args.tls and not mqtt.get("tls_port"):
        raise CliError(f"mosquitto (pid {mqtt['pid']}) runs without a TLS listener; stop the "
                       f"stack first (`tingbao stack down --data-dir {args.data_dir}`)")
    tls = bool(mqtt.get("tls_port")) or args.tls
    recorded_retention = (influx.get("retention_policies") or {}).get(Stack.rp_levels)
    stack = Stack(args.data_dir,
                  mqtt_port=args.mqtt_port or mqtt.get("port"),
                  influx_port=args.influx_port or influx.get("port"),
                  influx_rpc_port=influx.get("rpc_port"), tls=tls,
                  tls_port=args.tls_port or mqtt.get("tls_port"),
                  retention=args.retention or recorded_retention or DEFAULT_RETENTION)
    stack.adopt_running(state)
    for key, name in SERVERS:
        if alive[key]:
            print(f"{name} runs already (pid {state[key]['pid']}): left alone",
                  file=sys.stderr, flush=True)
        else:
            print(f"{name} is down: starting it on port {state[key].get('port')}",
                  file=sys.stderr, flush=True)
    return stack


def _up(args) -> int:
    state, alive = _running(args.data_dir)
    if state is not None and all(alive.values()):
        raise CliError(f"a stack already runs in {args.data_dir} (see `tingbao stack status "
                       f"--data-dir {args.data_dir}`); stop it with `tingbao stack down "
                       f"--data-dir {args.data_dir}`")
    devices = list(args.device)
    if args.site:
        devices += site_meters(args.site)
    if state is not None and any(alive.values()):
        stack = _partial_stack(args, state, alive)
    else:
        stack = Stack(args.data_dir, mqtt_port=args.mqtt_port, influx_port=args.influx_port,
                      tls=args.tls, tls_port=args.tls_port,
                      retention=args.retention or DEFAULT_RETENTION)
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
                    code = server.proc.returncode if server.proc is not None else None
                    raise CliError(f"{name} exited unexpectedly (code {code})"
                                   f"; last lines of {log}:\n{tail(log)}")
    except KeyboardInterrupt:
        print("stopping …", file=sys.stderr, flush=True)
        return 0
    finally:
        if not args.detach:
            stack.stop_started()  # a server taken over from an earlier stack keeps running
            if any(s is not None and s.alive for s in (stack._broker, stack._influx)):
                stack.write_state()
            else:
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
