"""``tingbao collector --config FILE``: run the collector (MQTT → InfluxDB) until SIGTERM.

The configuration is TOML (see ``configs/collector.example.toml``); :func:`load_config`
turns it into a :class:`~tingbao.collector.service.Config` and says clearly what is wrong
(unknown sections and keys, wrong types, out-of-range values, unreadable password files).
Passwords are never in the file itself: ``password_file`` names a file holding just the
password (relative paths are relative to the config file).
"""

from __future__ import annotations

import logging
import signal
import tomllib
from pathlib import Path

from tingbao.edge import contract

from .service import (
    CollectorSettings,
    Config,
    InfluxSettings,
    MqttSettings,
    RollupSettings,
)

log = logging.getLogger("tingbao.collector")


class ConfigError(ValueError):
    """A configuration that cannot work; the text names the file, section and key."""


# ---------------------------------------------------------------------------- validation
def _int(lo: int, hi: int):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"must be an integer, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be in {lo}..{hi}, got {v}")
        return v
    return check


def _float(lo: float, hi: float):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"must be a number, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"must be in {lo:g}..{hi:g}, got {v}")
        return float(v)
    return check


def _str(v):
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"must be a non-empty string, got {v!r}")
    return v


def _opt_str(v):
    if not isinstance(v, str):
        raise ValueError(f"must be a string, got {v!r}")
    return v or None


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def _group(v):
    _str(v)
    if any(c in v for c in "/+#") or len(v) > 64:
        raise ValueError(f"must be at most 64 characters without / + #, got {v!r}")
    return v


def _client_id(v):
    _str(v)
    if len(v.encode()) > 128 or not v.isprintable() or any(c in v for c in "/+#"):
        raise ValueError(f"must be 1-128 printable characters without / + #, got {v!r}")
    return v


def _url(v):
    _str(v)
    if not v.startswith(("http://", "https://")):
        raise ValueError(f"must be an http(s):// URL, got {v!r}")
    if "@" in v.split("//", 1)[1].split("/", 1)[0]:
        raise ValueError("must not hold credentials: use username and password_file")
    return v


def _meters(v):
    if not isinstance(v, list):
        raise ValueError(f"must be a list of meter ids, got {v!r}")
    try:
        return tuple(contract.check_id(m, "meter") for m in v)
    except contract.ContractError as e:
        raise ValueError(str(e)) from None


SCHEMA = {
    "mqtt": (MqttSettings, {
        "host": _str, "port": _int(1, 65535), "username": _str, "password_file": "path",
        "group": _group, "client_id": _client_id, "receive_maximum": _int(1, 65535),
        "session_expiry_s": _int(0, 2**32 - 1), "keepalive_s": _int(5, 65535),
        "ca_file": "path",
    }),
    "influx": (InfluxSettings, {
        "url": _url, "db": _str, "username": _str, "password_file": "path",
        "retention": _opt_str, "timeout_s": _float(0.1, 600),
    }),
    "collector": (CollectorSettings, {
        "batch_size": _int(1, 100_000), "batch_ms": _int(1, 600_000),
        "known_meters": _meters, "accept_any_meter": _bool, "metrics_port": _int(0, 65535),
        "deadletter_file": "path", "retry_cap_s": _float(0.1, 3600),
        "stop_timeout_s": _float(0.0, 3600),
    }),
    "rollups": (RollupSettings, {
        "enabled": _bool, "retention": _opt_str, "username": _str, "password_file": "path",
        "settle_ms": _int(0, 3_600_000), "catchup_minutes": _int(0, 525_600),
    }),
}


def _read_password(path: Path, where: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{where}: cannot read password file {path}: {e.strerror or e}"
                          ) from None
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError(f"{where}: password file {path} is empty")
    return password


def config_from_mapping(data: dict, base_dir: str | Path = ".", source: str = "config"
                        ) -> Config:
    """Build and check a Config from parsed TOML; paths are relative to ``base_dir``."""
    base = Path(base_dir)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: not a table")
    unknown = set(data) - set(SCHEMA)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; known: "
                          f"{', '.join(f'[{s}]' for s in SCHEMA)}")
    sections = {}
    for name, (cls, keys) in SCHEMA.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        bad = set(table) - set(keys)
        if bad:
            raise ConfigError(f"{source}: [{name}] has unknown key(s) {sorted(bad)}; known: "
                              f"{', '.join(keys)}")
        values = {}
        for key, value in table.items():
            where = f"{source}: [{name}] {key}"
            check = keys[key]
            if check == "path":
                if not isinstance(value, str):
                    raise ConfigError(f"{where}: must be a file path string, got {value!r}")
                if not value:
                    continue
                path = base / Path(value).expanduser()
                if key == "password_file":
                    values["password"] = _read_password(path, where)
                else:
                    values[key] = str(path)
                continue
            try:
                values[key] = check(value)
            except ValueError as e:
                raise ConfigError(f"{where}: {e}") from None
        if values.get("username") and "password" not in values:
            raise ConfigError(f"{source}: [{name}] username needs password_file")
        sections[name] = cls(**values)
    config = Config(**sections)
    c = config.collector
    if not c.known_meters and not c.accept_any_meter:
        raise ConfigError(f"{source}: [collector] lists no known_meters; list the meter ids "
                          "(known_meters = [\"m1\", …]) or set accept_any_meter = true")
    if c.known_meters and c.accept_any_meter:
        raise ConfigError(f"{source}: [collector] has both known_meters and "
                          "accept_any_meter = true; choose one")
    if config.mqtt.receive_maximum < c.batch_size:
        log.warning("%s: [mqtt] receive_maximum %d < [collector] batch_size %d: batches "
                    "never fill and are flushed every batch_ms", source,
                    config.mqtt.receive_maximum, c.batch_size)
    return config


def load_config(path: str | Path) -> Config:
    """Read and check a collector TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read collector config {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"collector config {path} is not valid TOML: {e}") from None
    return config_from_mapping(data, path.parent, str(path))


# ----------------------------------------------------------------------------------- CLI
def register(sub) -> None:
    p = sub.add_parser(
        "collector",
        help="store meter messages from MQTT in InfluxDB (validate, batch, dead-letter)",
        description="Subscribe to tingbao/v1/+/+/+/+ through an MQTT v5 shared subscription, "
        "validate every message against the contract, write InfluxDB line protocol in "
        "batches and acknowledge each message only after InfluxDB stored it. Bad messages "
        "go to the dead_letters measurement with the reason. Stops cleanly on SIGTERM.",
    )
    p.add_argument("--config", required=True, metavar="FILE",
                   help="TOML configuration (see configs/collector.example.toml)")
    p.add_argument("--check", action="store_true",
                   help="only check the configuration and exit")
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

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    collector.run()
    return 0
