"""The broker's and the database's config files, rendered from the templates shipped as
package data in :mod:`tingbao.configs` (``mosquitto.conf.template``,
``influxdb.conf.template``).

Templates are :class:`string.Template` text: ``${name}`` is filled in, ``$$`` is a literal
``$``; an unknown placeholder is a StackError. They are read with
:func:`importlib.resources.files`, so an installed tingbao (wheel, not only an editable
checkout) finds them.
"""

from __future__ import annotations

import importlib.resources
import os
import string
from importlib.resources.abc import Traversable
from pathlib import Path

from .errors import StackError

TEMPLATES = "tingbao.configs"
"""The package holding the templates."""

CONFIG_DIR = Path(str(importlib.resources.files(TEMPLATES)))
"""The directory of :mod:`tingbao.configs` (``configs/`` of a checkout, or
``site-packages/tingbao/configs``), for callers that want a path, e.g. to
``site.example.toml``. The stack itself reads templates through :func:`template`."""


def template(name: str) -> Traversable:
    """The template (or example) ``name`` in :mod:`tingbao.configs`."""
    return importlib.resources.files(TEMPLATES).joinpath(name)


def render(name: str, target: Path, values: dict) -> None:
    """Write template ``name`` to ``target`` with ``${key}`` replaced by ``str(values[key])``."""
    src = template(name)
    try:
        text = src.read_text(encoding="utf-8")
    except OSError as e:
        raise StackError(f"config template {name} is missing from the package data "
                         f"{TEMPLATES} ({e}); reinstall tingbao") from e
    try:
        rendered = string.Template(text).substitute({k: str(v) for k, v in values.items()})
    except (KeyError, ValueError) as e:
        raise StackError(f"template {src} has an unknown placeholder: {e}") from e
    target.write_text(rendered, encoding="utf-8")


def render_mosquitto(target: Path, *, host: str, mqtt_port: int, password_file: Path,
                     acl_file: Path, persistence_dir: Path, autosave_interval: int,
                     max_queued_messages: int, max_inflight_messages: int,
                     tls_port: int | None = None, tls_dir: Path | None = None) -> None:
    """``mosquitto.conf``: one plain listener on ``host:mqtt_port``, and with ``tls_port`` a
    TLS listener using ``tls_dir``'s ca.crt, server.crt and server.key (TLS 1.2 or later).
    ``autosave_interval`` is in seconds; the message limits are counts per client. Run as
    root, the broker is told to stay root (it would otherwise switch to the user
    ``mosquitto``, which cannot read the data directory)."""
    tls_listener = ""
    if tls_port:
        if tls_dir is None:
            raise ValueError("a TLS listener needs tls_dir")
        tls_listener = "\n".join([
            "# MQTT over TLS (server certificate signed by the stack's own CA)",
            f"listener {tls_port} {host}",
            f"cafile {tls_dir / 'ca.crt'}",
            f"certfile {tls_dir / 'server.crt'}",
            f"keyfile {tls_dir / 'server.key'}",
            "tls_version tlsv1.2",
        ])
    user_line = ""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        user_line = ("# running as root: stay root (else mosquitto drops to the user "
                     "'mosquitto', which cannot read this data directory)\nuser root\n")
    render("mosquitto.conf.template", target, {
        "password_file": password_file, "acl_file": acl_file,
        "user_line": user_line, "persistence_dir": persistence_dir,
        "autosave_interval": int(autosave_interval),
        "max_queued_messages": int(max_queued_messages),
        "max_inflight_messages": int(max_inflight_messages),
        "mqtt_port": mqtt_port, "host": host, "tls_listener": tls_listener,
    })


def render_influxdb(target: Path, *, host: str, http_port: int, rpc_port: int,
                    influx_dir: Path, http_log: bool = False) -> None:
    """``influxdb.conf``: HTTP API on ``host:http_port`` with authentication, the RPC
    (backup) service on ``host:rpc_port``, ``meta/``, ``data/`` and ``wal/`` below
    ``influx_dir``, and one access-log line per request if ``http_log``."""
    render("influxdb.conf.template", target, {
        "host": host, "rpc_port": rpc_port, "http_port": http_port,
        "meta_dir": influx_dir / "meta", "data_dir": influx_dir / "data",
        "wal_dir": influx_dir / "wal",
        "http_log_enabled": "true" if http_log else "false",
    })
