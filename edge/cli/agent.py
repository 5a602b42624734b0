"""``tingbao agent --config FILE``: run the edge agent of one meter (source → meter → outbox →
MQTT) until the source ends, ``--duration`` seconds of audio were measured, or SIGINT/SIGTERM
asks it to stop (then the partial interval is flushed and the PUBACKs in flight awaited)."""

from __future__ import annotations

import json
import logging
import signal
import sys

from .main import CliError


def register(sub) -> None:
    p = sub.add_parser(
        "agent",
        help="run the edge agent of one meter: levels into a durable outbox, then MQTT",
        description="Measure audio (live input, a recording, or a synthetic scene) with the "
        "IEC 61672-1 meter and publish one levels message per interval and channel over MQTT "
        "v5 (QoS 1), through a durable on-disk outbox that survives broker outages and "
        "restarts. See configs/agent.example.toml for the configuration.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="agent configuration (TOML)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="stop after S seconds of audio (default: until the source ends or a "
                        "signal)")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO")
    p.set_defaults(func=run)


def run(args) -> int:
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.duration is not None and not args.duration > 0:
        raise ValueError(f"--duration {args.duration}: must be > 0 s")
    from ..agent import Agent, load_config  # numpy/scipy: imported only when run
    from ..outbox import OutboxError

    try:
        agent = Agent(load_config(args.config))
    except OutboxError as e:
        raise CliError(str(e)) from None

    def on_signal(signum, frame):
        if agent.stopping:  # a second signal: stop now, the outbox is durable anyway
            raise KeyboardInterrupt
        logging.getLogger("tingbao.edge.agent").info(
            "%s: stopping (flushing the open interval, waiting for PUBACKs)",
            signal.Signals(signum).name)
        agent.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = agent.run(until=args.duration)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    print(json.dumps(summary), flush=True)
    return 0
