"""The collector's configuration (``tingbao collector --config collector.toml``), declared.

Every key with its type, unit, range and default is a field below; the one loader
:mod:`tingbao.edge.settings` reads and checks it, and :func:`check_rules` holds what no single
key can say. ``configs/collector.example.toml`` shows every key with a comment. Passwords never
go in the file: each ``password_file`` names a file holding only the password.

Which meters are stored: ``[collector] site`` names the site registry (the single source of
truth; :mod:`tingbao.collector.registry`), whose meters are the known ones and which the
running collector reloads on SIGHUP or when the file changes. ``known_meters`` (a fixed list)
and ``accept_any_meter`` (demo and bench only) remain for deployments without a registry;
exactly one of the three is given.

Renamed for consistent unit suffixes (old names still read, scaled, with a warning):
``batch_ms`` → ``batch_s``, ``settle_ms`` → ``settle_s``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from tingbao.edge import contract
from tingbao.edge.settings import ConfigError, Section, from_mapping, load_toml, setting

from . import schema

__all__ = ["CollectorSettings", "Config", "ConfigError", "InfluxSettings", "MqttSettings",
           "RollupSettings", "check_rules", "config_from_mapping", "load_config"]

log = logging.getLogger("tingbao.collector")


def _group(v: str) -> str:
    if not v.strip() or any(c in v for c in "/+#") or len(v) > 64:
        raise ValueError(f"must be at most 64 characters without / + #, got {v!r}")
    return v


def _client_id(v: str) -> str:
    if (not v.strip() or len(v.encode()) > 128 or not v.isprintable()
            or any(c in v for c in "/+#")):
        raise ValueError(f"must be 1-128 printable characters without / + #, got {v!r}")
    return v


def _url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError(f"must be an http(s):// URL, got {v!r}")
    if "@" in v.split("//", 1)[1].split("/", 1)[0]:
        raise ValueError("must not hold credentials: use username and password_file")
    return v


def _nonempty(v: str) -> str:
    if not v.strip():
        raise ValueError("must be a non-empty string")
    return v


def _meters(v: tuple) -> tuple:
    return tuple(contract.check_id(m, "meter") for m in v)  # a ContractError is a ValueError


def _optional(v: str) -> str | None:
    return v or None


@dataclasses.dataclass
class MqttSettings(Section):
    """``[mqtt]``: the broker and this collector's session."""

    host: str = setting("127.0.0.1", check=_nonempty)
    port: int = setting(1883, lo=1, hi=65535)
    username: str | None = setting(None, check=_nonempty)
    password_file: str | None = setting(None, path=True, password_into="password")
    password: str | None = setting(None, internal=True)
    group: str = setting("tingbao-collectors", check=_group)
    client_id: str = setting("tingbao-collector-1", check=_client_id)
    receive_maximum: int = setting(1000, lo=1, hi=65535, unit="messages")
    session_expiry_s: int = setting(7 * 24 * 3600, lo=0, hi=2**32 - 1, unit="s")
    keepalive_s: int = setting(300, lo=5, hi=65535, unit="s")
    ca_file: str | None = setting(None, path=True)


@dataclasses.dataclass
class InfluxSettings(Section):
    """``[influx]``: the database the points go to."""

    url: str = setting("http://127.0.0.1:8086", check=_url)
    db: str = setting(schema.DATABASE, check=_nonempty)
    username: str | None = setting(None, check=_nonempty)
    password_file: str | None = setting(None, path=True, password_into="password")
    password: str | None = setting(None, internal=True)
    retention: str | None = setting(None, check=_optional,
                                    doc="retention policy of the points; empty = default")
    timeout_s: float = setting(10.0, lo=0.1, hi=600.0, unit="s")


@dataclasses.dataclass
class CollectorSettings(Section):
    """``[collector]``: batching, which meters, metrics, dead letters."""

    batch_size: int = setting(500, lo=1, hi=100_000, unit="lines")
    batch_s: float = setting(0.2, lo=0.001, hi=600.0, unit="s", renamed_from={"batch_ms": 1e-3})
    site: str | None = setting(None, path=True, doc="the site registry: its meters are known")
    known_meters: tuple[str, ...] = setting((), check=_meters)
    accept_any_meter: bool = setting(False)
    metrics_port: int = setting(0, lo=0, hi=65535)
    deadletter_file: str | None = setting(None, path=True)
    retry_cap_s: float = setting(10.0, lo=0.1, hi=3600.0, unit="s")
    stop_timeout_s: float = setting(10.0, lo=0.0, hi=3600.0, unit="s")
    registry_poll_s: float = setting(2.0, lo=0.1, hi=3600.0, unit="s")


@dataclasses.dataclass
class RollupSettings(Section):
    """``[rollups]``: 1-minute rollups (need an account that may read)."""

    enabled: bool = setting(True)
    retention: str | None = setting(schema.RP_FOREVER, check=_optional)
    username: str | None = setting(None, check=_nonempty)
    password_file: str | None = setting(None, path=True, password_into="password")
    password: str | None = setting(None, internal=True)
    settle_s: float = setting(1.0, lo=0.0, hi=3600.0, unit="s",
                              renamed_from={"settle_ms": 1e-3})
    catchup_minutes: int = setting(60, lo=0, hi=525_600, unit="min")


@dataclasses.dataclass
class Config(Section):
    """Everything :class:`~tingbao.collector.service.Collector` needs."""

    mqtt: MqttSettings = dataclasses.field(default_factory=MqttSettings)
    influx: InfluxSettings = dataclasses.field(default_factory=InfluxSettings)
    collector: CollectorSettings = dataclasses.field(default_factory=CollectorSettings)
    rollups: RollupSettings = dataclasses.field(default_factory=RollupSettings)


def check_rules(config: Config) -> Config:
    """The rules across keys."""
    for name in ("mqtt", "influx", "rollups"):
        section = getattr(config, name)
        if section.username and section.password is None:
            raise ConfigError("username needs password_file", entry=name)
    c = config.collector
    given = [k for k, v in (("site", c.site), ("known_meters", c.known_meters),
                            ("accept_any_meter", c.accept_any_meter)) if v]
    if not given:
        raise ConfigError("lists no known_meters; name the site registry (site = "
                          "\"site.toml\"), list the meter ids (known_meters = [\"m1\", …]) or "
                          "set accept_any_meter = true", entry="collector")
    if len(given) > 1:
        raise ConfigError(f"has {' and '.join(given)}; choose one", entry="collector")
    if c.site is not None:
        from .registry import load_registry

        load_registry(c.site)  # refuse a broken registry at start, with its own errors
    if config.mqtt.receive_maximum < c.batch_size:
        log.warning("[mqtt] receive_maximum %d < [collector] batch_size %d: batches never fill "
                    "and are flushed every batch_s", config.mqtt.receive_maximum, c.batch_size)
    return config


def config_from_mapping(data: dict, base_dir: str | Path = ".", source: str = "config"
                        ) -> Config:
    """Build and check a Config from parsed TOML; paths are relative to ``base_dir``."""
    try:
        return check_rules(from_mapping(Config, data, base_dir=base_dir))
    except ConfigError as e:
        raise e.in_file(source) from None


def load_config(path: str | Path) -> Config:
    """Read and check a collector TOML file (errors name the file, section and key)."""
    path = Path(path)
    return config_from_mapping(load_toml(path, "collector configuration"), path.parent,
                               str(path))
