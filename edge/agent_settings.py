"""The agent's configuration (``tingbao agent --config agent.toml``), declared.

Every key with its type, unit, range and default is a field below; :mod:`tingbao.edge.settings`
reads and checks it. What no single key can say (a source kind's own keys, calibration given
twice, files that must exist) is :func:`check_rules`. ``configs/agent.example.toml`` shows
every key with a comment.

Renamed for consistent unit suffixes (the old names are still read, with a warning):
``[meter] interval`` → ``interval_s``; ``[source] samplerate`` → ``samplerate_hz``,
``duration`` → ``duration_s``; ``[mqtt] keepalive`` → ``keepalive_s``, ``backlog_rate`` →
``backlog_per_s``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import os
from pathlib import Path

from . import contract
from .impulses import DEFAULT_REFRACTORY_S, MIN_REFRACTORY_S
from .settings import ConfigError, Section, from_mapping, load_toml, setting

__all__ = ["AgentConfig", "ConfigError", "check_config", "load_config"]


def _id(what: str):
    """The id check of one key (a ContractError is a ValueError, which the loader reports)."""
    return functools.partial(contract.check_id, what=what)


def _pa_per_unit(v):
    pa = v if isinstance(v, tuple) else (v,)
    if not pa or not all(isinstance(x, int | float) and not isinstance(x, bool)
                         and math.isfinite(x) and x > 0 for x in pa):
        raise ValueError("Pa per raw unit, a number > 0 or one per channel")
    return v


MODES = ("levels", "protection")
"""What the agent measures (``[meter] mode``)."""


def _aware(v: dt.datetime) -> dt.datetime:
    if v.tzinfo is None:
        raise ValueError("needs a date, a time and a UTC offset, e.g. 2026-11-24T08:00:00+08:00")
    return v


@dataclasses.dataclass(frozen=True)
class MeterSection(Section):
    """``[meter]``: who this meter is and how it measures."""

    id: str = setting(check=_id("[meter] id"))
    enterprise: str = setting(check=_id("[meter] enterprise"))
    site: str = setting(check=_id("[meter] site"))
    interval_s: float = setting(1.0, unit="s", lo=0.1, hi=60.0, renamed_from={"interval": 1})
    bands: str | None = setting(None, choices=("third", "octave"))
    pa_per_unit: float | tuple[float, ...] | None = setting(None, unit="Pa per raw unit",
                                                             check=_pa_per_unit)
    calibration_store: str | None = setting(None, path=True)
    full_scale: float = setting(1.0, lo=1e-12, doc="raw value of digital full scale")
    impulse_thresholds_db: tuple[float, ...] = setting(
        contract.IMPULSE_THRESHOLDS_DB, unit="dB", lo=contract.LEVEL_RANGE_DB[0],
        hi=contract.LEVEL_RANGE_DB[1], check=contract.check_impulse_thresholds,
        doc="count C-weighted peak events at or above these levels (re 20 µPa) per interval; "
            "[] switches counting off")
    impulse_refractory_s: float = setting(DEFAULT_REFRACTORY_S, unit="s",
                                          lo=MIN_REFRACTORY_S, hi=10.0,
                                          doc="time below a threshold before a new impulse")
    mode: str = setting("levels", choices=MODES,
                        doc="levels: a sound level meter; protection: two microphones at an "
                            "ear measuring a hearing protector ([protection])")


@dataclasses.dataclass(frozen=True)
class ProtectionSection(Section):
    """``[protection]``: the two-microphone mode (``[meter] mode = "protection"``,
    :mod:`tingbao.edge.protection`)."""

    outer_channel: int = setting(0, lo=0, hi=63, doc="input channel of the microphone "
                                 "outside the protector")
    inner_channel: int = setting(1, lo=0, hi=63, doc="input channel of the microphone "
                                 "under the protector")
    required_attenuation_db: float | None = setting(None, unit="dB", lo=0.0, hi=60.0,
                                                    doc="the post's required attenuation")
    worker: str | None = setting(None, check=_id("[protection] worker"))
    protector: str | None = setting(None, check=_id("[protection] protector"))
    quiet_below_db: float = setting(70.0, unit="dB", lo=0.0, hi=200.0)
    removed_below_db: float = setting(5.0, unit="dB", lo=0.0, hi=60.0)
    hysteresis_db: float = setting(1.0, unit="dB", lo=0.0, hi=20.0)
    voice_max_s: float = setting(120.0, unit="s", lo=0.0)


SOURCE_KINDS = ("live", "file", "synthetic")
KIND_KEYS = {
    "live": {"device", "latency", "samplerate_hz", "channels", "blocksize"},
    "file": {"path", "start_time", "blocksize"},
    "synthetic": {"profile", "seed", "duration_s", "realtime", "samplerate_hz", "channels",
                  "blocksize"},
}
"""The keys of ``[source]`` each kind takes (besides ``kind``)."""


@dataclasses.dataclass(frozen=True)
class SourceSection(Section):
    """``[source]``: where the audio comes from."""

    kind: str = setting(choices=SOURCE_KINDS)
    device: str | int | None = setting(None)
    latency: str | float = setting("high")
    path: str | None = setting(None, path=True)
    start_time: dt.datetime | None = setting(None, check=_aware)
    profile: str = setting("mixed")
    seed: int = setting(0, lo=0)
    duration_s: float = setting(3600.0, unit="s", lo=1e-3, renamed_from={"duration": 1})
    realtime: bool = setting(True)
    samplerate_hz: float = setting(48000.0, unit="Hz", lo=16000.0,
                                   renamed_from={"samplerate": 1})
    channels: int = setting(1, lo=1, hi=64)
    blocksize: int | None = setting(None, lo=1, unit="frames")


@dataclasses.dataclass(frozen=True)
class MqttSection(Section):
    """``[mqtt]``: the broker and this device's account."""

    host: str = setting("127.0.0.1")
    port: int | None = setting(None, lo=1, hi=65535)
    username: str | None = setting(None)
    password_file: str | None = setting(None, path=True, password_into="password")
    password: str | None = setting(None, internal=True)
    ca_file: str | None = setting(None, path=True)
    client_id: str | None = setting(None)
    backlog_per_s: float = setting(200.0, unit="messages/s", lo=0.1,
                                   renamed_from={"backlog_rate": 1})
    window: int = setting(100, lo=1, unit="records in flight")
    live_s: float = setting(10.0, unit="s", lo=0.0)
    keepalive_s: int = setting(30, unit="s", lo=5, hi=65535, renamed_from={"keepalive": 1})
    reconnect_max_s: float = setting(30.0, unit="s", lo=1.0)
    drain_s: float = setting(5.0, unit="s", lo=0.0)
    receipts: bool = setting(True, doc="keep each record until a collector's receipt")
    resend_after_s: float = setting(60.0, unit="s", lo=0.1)


@dataclasses.dataclass(frozen=True)
class OutboxSection(Section):
    """``[outbox]``: the durable queue (SQLite)."""

    path: str = setting(path=True)


@dataclasses.dataclass(frozen=True)
class StatusSection(Section):
    """``[status]``: the retained status message and the clock check."""

    every_s: float = setting(5.0, unit="s", lo=0.5)
    sntp_server: str | None = setting(None, doc="host or host:port")
    sntp_every_s: float = setting(64.0, unit="s", lo=0.5)


@dataclasses.dataclass(frozen=True)
class AgentConfig(Section):
    """A checked agent configuration (every key filled in; paths absolute; the MQTT password
    read from its file)."""

    meter: MeterSection
    source: SourceSection
    mqtt: MqttSection
    outbox: OutboxSection
    status: StatusSection
    protection: ProtectionSection


def check_config(raw, base_dir=None) -> AgentConfig:
    """Check an agent configuration (parsed TOML) and fill in the defaults; relative paths
    are taken from ``base_dir`` (default: the working directory). Raises
    :class:`ConfigError` naming the section and key at fault."""
    if isinstance(raw, AgentConfig):
        return raw
    return check_rules(from_mapping(AgentConfig, raw, base_dir=base_dir), raw)


def load_config(path) -> AgentConfig:
    """Read and check a TOML agent configuration (errors name the file)."""
    path = Path(path)
    raw = load_toml(path, "agent configuration")
    try:
        return check_config(raw, base_dir=path.parent)
    except ConfigError as e:
        raise e.in_file(path) from None


def check_rules(cfg: AgentConfig, raw: dict) -> AgentConfig:
    """The rules across keys; returns the config with derived defaults filled in (port from
    TLS, user name from the meter id)."""
    m, s, q = cfg.meter, cfg.source, cfg.mqtt
    if m.pa_per_unit is not None and m.calibration_store is not None:
        raise ConfigError("give pa_per_unit or calibration_store, not both", entry="meter")
    if m.calibration_store is not None and not os.path.isdir(m.calibration_store):
        raise ConfigError(f"{m.calibration_store}: no such folder (record a check first with: "
                          "tingbao calibrate FILE --meter ID --store DIR)", entry="meter",
                          key="calibration_store")
    given = {_new_name(k) for k in raw.get("source", {})} - {"kind"}
    wrong = given - KIND_KEYS[s.kind]
    if wrong:
        raise ConfigError(f"key(s) {sorted(wrong)} do not apply to kind = {s.kind!r} (it takes "
                          f"{', '.join(sorted(KIND_KEYS[s.kind]))})", entry="source")
    if s.kind == "file":
        if s.path is None:
            raise ConfigError("path is required for kind = 'file'", entry="source")
        if not os.path.isfile(s.path):
            raise ConfigError(f"{s.path}: no such file", entry="source", key="path")
    if s.kind == "synthetic":
        from .sources.synthetic import PROFILES

        if s.profile not in PROFILES:
            raise ConfigError(f"= {s.profile!r}: one of {', '.join(PROFILES)}",
                              entry="source", key="profile")
    if m.mode == "protection":
        pr = cfg.protection
        for key in ("required_attenuation_db", "worker", "protector"):
            if getattr(pr, key) is None:
                raise ConfigError(f"{key} is required with [meter] mode = 'protection'",
                                  entry="protection")
        if pr.outer_channel == pr.inner_channel:
            raise ConfigError("outer_channel and inner_channel must differ",
                              entry="protection")
        top = max(pr.outer_channel, pr.inner_channel)
        if s.kind in ("live", "synthetic") and top >= s.channels:
            raise ConfigError(f"channel {top} needs [source] channels >= {top + 1}",
                              entry="protection")
    if q.ca_file is not None and not os.path.isfile(q.ca_file):
        raise ConfigError(f"{q.ca_file}: no such file", entry="mqtt", key="ca_file")
    return dataclasses.replace(cfg, mqtt=dataclasses.replace(
        q, port=q.port if q.port is not None else (8883 if q.ca_file else 1883),
        username=q.username if q.username is not None else m.id))


_OLD_NAMES = {"samplerate": "samplerate_hz", "duration": "duration_s"}


def _new_name(key: str) -> str:
    return _OLD_NAMES.get(key, key)
