"""``tingbao collector --config FILE``: run the collector (MQTT → InfluxDB) until SIGTERM.

The configuration is declared in :mod:`tingbao.collector.settings` (see
``configs/collector.example.toml``) and read by the one settings loader, whose
:class:`~tingbao.edge.settings.ConfigError` names the file, section and key. With
``[collector] site``, SIGHUP (or an edit of the file) makes the running collector read the
site registry again; a broken edit is refused with its errors and the registry in force
stays.
"""

from __future__ import annotations

import logging
import signal

from .settings import Config, ConfigError, config_from_mapping, load_config

__all__ = ["Config", "ConfigError", "config_from_mapping", "load_config", "register", "run"]

log = logging.getLogger("tingbao.collector")


def register(sub) -> None:
    p = sub.add_parser(
        "collector",
        help="store meter messages from MQTT in InfluxDB (validate, batch, dead-letter)",
        description="Subscribe to tingbao/v1/+/+/+/+ through an MQTT v5 shared subscription, "
        "validate every message against the contract, write InfluxDB line protocol in "
        "batches and acknowledge each message only after InfluxDB stored it. Bad messages "
        "go to the dead_letters measurement with the reason. Stops cleanly on SIGTERM; "
        "SIGHUP reloads the site registry.",
    )
    p.add_argument("--config", required=True, metavar="FILE",
                   help="TOML configuration (see configs/collector.example.toml)")
    p.add_argument("--check", action="store_true",
                   help="only check the configuration (and the site registry) and exit")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    if args.check:
        print(f"{args.config}: configuration OK")
        return 0
    from .service import Collector

    collector = Collector(config)

    def on_signal(signum, frame):
        log.info("signal %d: stopping", signum)
        collector.request_stop()

    def on_hangup(signum, frame):
        collector.reload_registry()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    collector.run()
    return 0
