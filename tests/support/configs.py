"""Configuration files for the processes a test starts: the agent's and the collector's, for
the test stack (:mod:`support.stack`). Password files are written next to them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from support.stack import DEVICES
from tingbao.collector.schema import DATABASE

ENT, SITE = "acme", "press"
"""Enterprise and site of the agents' topics."""


def write_toml(path: Path, cfg: dict) -> str:
    """A flat TOML file of ``cfg`` (sections of strings, numbers, booleans and lists of
    those); returns its path as a string."""
    lines = []
    for section, keys in cfg.items():
        lines.append(f"[{section}]")
        for k, v in keys.items():
            lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# ---------------------------------------------------------------------------------- agent
def make_config(tmp_path: Path, stack, *, account=None, tls=False, **over) -> dict:
    """An agent configuration for the test stack; ``over`` maps section -> keys to change
    (the meter id defaults to m1, the MQTT account to the meter id)."""
    meter = over.get("meter", {}).get("id", "m1")
    account = account or meter
    pw = tmp_path / f"{account}.password"
    pw.write_text(stack.mqtt_account(account).password + "\n")
    cfg = {
        "meter": {"id": meter, "enterprise": ENT, "site": SITE, "interval_s": 1.0},
        "source": {"kind": "synthetic", "profile": "stamping", "seed": 3, "duration_s": 30.0,
                   "realtime": False},
        "mqtt": {"host": stack.host, "port": stack.mqtt_port, "username": account,
                 "password_file": str(pw), "reconnect_max_s": 1.0, "drain_s": 5.0},
        "outbox": {"path": str(tmp_path / f"outbox-{meter}.sqlite")},
        "status": {"every_s": 1.0},
    }
    if tls:
        cfg["mqtt"].update(port=stack.tls_port, ca_file=str(stack.ca_file))
    for section, keys in over.items():
        cfg[section].update(keys)
    return cfg


# ------------------------------------------------------------------------------ collector
def write_collector_config(stack, directory: Path, *, client_id: str, group: str | None = None,
                           known_meters=DEVICES, accept_any_meter: bool = False,
                           batch_size: int = 200, batch_ms: int = 50,
                           receive_maximum: int = 1000, metrics_port: int = 0,
                           deadletter_file: str = "", rollups: bool = True,
                           settle_ms: int = 100, catchup_minutes: int = 0,
                           retry_cap_s: float = 1.0) -> Path:
    """A collector TOML file ``{client_id}.toml`` in ``directory`` for ``stack`` (password
    files next to it); returns its path. The defaults make a quick collector (50 ms batches,
    rollups 100 ms after a minute, no catch-up, retries at most 1 s apart); ``group`` None
    leaves the collector's default shared-subscription group."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, password in (("mqtt.pw", stack.mqtt_account("collector").password),
                           ("writer.pw", stack.influx_account("writer").password),
                           ("reader.pw", stack.influx_account("reader").password)):
        (directory / name).write_text(password + "\n")
        os.chmod(directory / name, 0o600)
    mqtt = {"host": stack.host, "port": stack.mqtt_port, "username": "collector",
            "password_file": "mqtt.pw"}
    if group is not None:
        mqtt["group"] = group
    mqtt.update(client_id=client_id, receive_maximum=receive_maximum)
    collector = {"batch_size": batch_size, "batch_s": batch_ms / 1000.0}
    if accept_any_meter:
        collector["accept_any_meter"] = True
    else:
        collector["known_meters"] = list(known_meters)
    collector.update(metrics_port=metrics_port, deadletter_file=deadletter_file,
                     retry_cap_s=retry_cap_s)
    cfg = {
        "mqtt": mqtt,
        "influx": {"url": stack.influx_url, "db": DATABASE,
                   "username": stack.influx_account("writer").username,
                   "password_file": "writer.pw"},
        "collector": collector,
        "rollups": {"enabled": rollups, "username": stack.influx_account("reader").username,
                    "password_file": "reader.pw", "settle_s": settle_ms / 1000.0,
                    "catchup_minutes": catchup_minutes},
    }
    path = directory / f"{client_id}.toml"
    write_toml(path, cfg)
    return path
