"""The project's own server stack: a Mosquitto 2 broker and an InfluxDB 1.x database, started
as child processes with configs generated from the templates in :mod:`tingbao.configs`
(ARCHITECTURE.md, "Where are the servers started?").

Everything lives under one data directory::

    DATA_DIR/credentials.toml       random passwords, made at the first start (mode 0600)
    DATA_DIR/state.json             pids and ports of a running stack (written by the CLI)
    DATA_DIR/mosquitto/             mosquitto.conf, passwd, acl, data/ (persistence), .log
    DATA_DIR/influxdb/              influxdb.conf, meta/, data/, wal/, influxd.log
    DATA_DIR/tls/                   ca.crt, server.crt and keys (only with ``tls=True``)

Accounts:

* MQTT ``collector`` and ``analysis``: read ``tingbao/v1/#`` (also as ``$share/…``), write
  ``tingbao/v1/+/alerts``. Devices: user name = meter id, may only write
  ``tingbao/v1/+/+/{meter}/#``. Anonymous clients are refused.
* InfluxDB ``tingbao_admin`` (all privileges), ``tingbao_writer`` (WRITE on ``tingbao``),
  ``tingbao_reader`` (READ on ``tingbao``). Retention policies ``levels_1s`` (default,
  duration configurable, 90 days unless told) and ``forever`` (for rollups); the names come
  from :mod:`tingbao.collector.schema`.

One job per module:

* :mod:`.core` — :class:`Stack`, which orchestrates the others;
* :mod:`.accounts` — accounts, passwords, ``credentials.toml``, the broker's password file
  and ACL;
* :mod:`.tls` — the CA and server certificate (openssl);
* :mod:`.configs` — ``mosquitto.conf`` and ``influxdb.conf`` from the packaged templates;
* :mod:`.processes` — finding and supervising the server processes, ports, pids, logs;
* :mod:`.probe` — the MQTT readiness probe;
* :mod:`.influxdb` — admin, database, retention policies and users, through
  :class:`tingbao.collector.influx.InfluxClient`;
* :mod:`.state` — ``state.json`` of a stack started elsewhere (status, stop);
* :mod:`.errors` — StackError and InfluxUnreachable.

Example::

    with Stack(tmp_path) as stack:
        stack.add_device("m1")
        stack.influx("writer").write(["levels,meter=m1 ea=0.5"])
        print(stack.mqtt_port, stack.influx_url, stack.credentials.influx_writer)

This package re-exports everything the single module ``stack.py`` offered, so
``from tingbao.collector.stack import …`` keeps working. ``SBIN_DIRS`` here is the one in
force: :func:`require_tools` reads it from this package when it is called.
"""

from __future__ import annotations

from tingbao.collector.schema import DATABASE, DEFAULT_RETENTION, RP_FOREVER, RP_LEVELS

from .accounts import (
    INFLUX_ADMIN,
    INFLUX_READER,
    INFLUX_WRITER,
    MQTT_ANALYSIS,
    MQTT_COLLECTOR,
    SERVICE_USERS,
    Account,
    Credentials,
)
from .configs import CONFIG_DIR
from .core import Stack
from .errors import InfluxUnreachable, StackError
from .probe import mqtt_connect_code
from .processes import (
    HOST,
    INSTALL_HINT,
    SBIN_DIRS,
    free_ports,
    pid_alive,
    port_answers,
    port_free,
    require_tools,
    tail,
)
from .state import load_state, status_from_state, stop_from_state

__all__ = [
    "CONFIG_DIR", "DATABASE", "DEFAULT_RETENTION", "HOST", "INFLUX_ADMIN", "INFLUX_READER",
    "INFLUX_WRITER", "INSTALL_HINT", "MQTT_ANALYSIS", "MQTT_COLLECTOR", "RP_FOREVER",
    "RP_LEVELS", "SBIN_DIRS", "SERVICE_USERS", "Account", "Credentials", "InfluxUnreachable",
    "Stack", "StackError", "free_ports", "load_state", "mqtt_connect_code", "pid_alive",
    "port_answers", "port_free", "require_tools", "status_from_state", "stop_from_state",
    "tail",
]
