"""Where the servers of a deployment are: the InfluxDB client and the MQTT account a
server-side command (``tingbao analyze``, ``exposure``, ``alerts``, ``import``, ``report``)
uses, from the site registry.

A registry with ``[influx]`` / ``[mqtt]`` tables names its servers (the keys of the
collector's tables, passwords in ``password_file``). Without them the deployment runs the
local stack of ``[stack] data_dir`` (``tingbao stack up``): its ``state.json`` gives the
ports and its ``credentials.toml`` the accounts, by role (InfluxDB ``reader`` or
``writer``; MQTT ``analysis``). ``stack_dir`` overrides ``[stack] data_dir`` (the demo runs
its stack under its own directory).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..influx import InfluxClient
from ..schema import DATABASE
from ..stack.accounts import MQTT_ANALYSIS, Credentials
from ..stack.state import load_state
from .site import Registry

__all__ = ["MqttEndpoint", "influx_client", "mqtt_endpoint"]


@dataclasses.dataclass(frozen=True)
class MqttEndpoint:
    """A broker and the account to log in with (``ca_file``: TLS with this CA)."""

    host: str
    port: int
    username: str | None
    password: str | None = dataclasses.field(repr=False, default=None)
    ca_file: str | None = None


def _stack_dir(reg: Registry, stack_dir: str | os.PathLike | None) -> Path:
    return Path(stack_dir if stack_dir is not None else reg.stack.data_dir)


def influx_client(reg: Registry, role: str = "reader", *,
                  stack_dir: str | os.PathLike | None = None,
                  timeout: float | None = None) -> InfluxClient:
    """The :class:`InfluxClient` of the deployment's database, logged in for ``role``
    (``reader`` or ``writer``; a registry's ``[influx]`` has one account for both)."""
    if role not in ("reader", "writer"):
        raise ValueError(f"role {role!r}: reader or writer")
    if reg.influx is not None:
        i = reg.influx
        return InfluxClient(i.url, i.db, i.username, i.password,
                            timeout=timeout or i.timeout_s)
    d = _stack_dir(reg, stack_dir)
    state = load_state(d)  # StackError saying `tingbao stack up --data-dir …` when absent
    account = Credentials.load(Path(state.get("credentials_file") or d / "credentials.toml")
                               ).influx(role)
    return InfluxClient(state["influxdb"]["url"], state["influxdb"].get("database", DATABASE),
                        account.username, account.password, timeout=timeout or 10.0)


def mqtt_endpoint(reg: Registry, *, stack_dir: str | os.PathLike | None = None
                  ) -> MqttEndpoint:
    """The broker and the ``analysis`` account (it may publish ``tingbao/v1/+/alerts``)."""
    if reg.mqtt is not None:
        m = reg.mqtt
        return MqttEndpoint(m.host, m.port, m.username, m.password, m.ca_file)
    d = _stack_dir(reg, stack_dir)
    state = load_state(d)
    account = Credentials.load(Path(state.get("credentials_file") or d / "credentials.toml")
                               ).mqtt(MQTT_ANALYSIS)
    return MqttEndpoint(state.get("host", "127.0.0.1"), state["mqtt"]["port"],
                        account.username, account.password)
