"""Accounts of the stack: user names, random passwords, ``credentials.toml``, and the
broker's password file and ACL.

MQTT (Mosquitto):

* ``collector`` and ``analysis`` read ``tingbao/v1/#`` (also as ``$share/GROUP/…``) and
  write ``tingbao/v1/+/alerts``; ``analysis`` also writes fit-test records,
  ``tingbao/v1/+/fittests`` (a fit-test station is given the analysis account for now);
* ``collector`` also writes receipts, ``tingbao/v1/+/+/+/receipts``;
* a device's user name is its meter id; it may only write ``tingbao/v1/+/+/{meter}/{kind}``
  for the data kinds (levels, bands, status, events, protection: never receipts) and read
  only its own receipts ``tingbao/v1/+/+/{meter}/receipts`` (topics:
  :mod:`tingbao.edge.contract`);
* anonymous clients are refused (``allow_anonymous false`` in the broker config).

InfluxDB: ``tingbao_admin`` (all privileges), ``tingbao_writer`` (WRITE on the database),
``tingbao_reader`` (READ); :mod:`.influxdb` creates them.

Passwords are 24 URL-safe characters (18 random bytes, 144 bits) made with :mod:`secrets`
at the first start and kept in ``DATA_DIR/credentials.toml`` (mode 0600); the broker's
password file holds only their PBKDF2 hashes, made by ``mosquitto_passwd``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import tomllib
from collections.abc import Iterable
from pathlib import Path

from .errors import StackError

MQTT_COLLECTOR = "collector"
MQTT_ANALYSIS = "analysis"
SERVICE_USERS = (MQTT_COLLECTOR, MQTT_ANALYSIS)
"""MQTT user names reserved for services (no meter may be called so)."""
INFLUX_ADMIN = "tingbao_admin"
INFLUX_WRITER = "tingbao_writer"
INFLUX_READER = "tingbao_reader"


@dataclasses.dataclass(frozen=True)
class Account:
    """A user name and password (MQTT or InfluxDB)."""

    username: str
    password: str

    def __iter__(self):  # allows ``user, password = account``
        return iter((self.username, self.password))


def new_password() -> str:
    """A fresh random password: 24 characters of A-Z a-z 0-9 - _ (144 bits)."""
    return secrets.token_urlsafe(18)


@dataclasses.dataclass
class Credentials:
    """All passwords of a stack, as stored in ``credentials.toml``."""

    mqtt_collector: Account
    mqtt_analysis: Account
    devices: dict[str, Account]
    influx_admin: Account
    influx_writer: Account
    influx_reader: Account

    def mqtt(self, username: str) -> Account:
        """The MQTT account ``collector``, ``analysis`` or a device (meter id)."""
        if username == MQTT_COLLECTOR:
            return self.mqtt_collector
        if username == MQTT_ANALYSIS:
            return self.mqtt_analysis
        try:
            return self.devices[username]
        except KeyError:
            raise StackError(f"no MQTT account {username!r}: add it with "
                             f"Stack.add_device({username!r})") from None

    def influx(self, role: str) -> Account:
        """The InfluxDB account for ``role`` in ``admin``, ``writer``, ``reader`` (or its
        full user name)."""
        table = {"admin": self.influx_admin, "writer": self.influx_writer,
                 "reader": self.influx_reader}
        table.update({a.username: a for a in table.values()})
        try:
            return table[role]
        except KeyError:
            raise StackError(f"no InfluxDB role {role!r}: one of admin, writer, reader") from None

    @classmethod
    def generate(cls) -> Credentials:
        return cls(
            mqtt_collector=Account(MQTT_COLLECTOR, new_password()),
            mqtt_analysis=Account(MQTT_ANALYSIS, new_password()),
            devices={},
            influx_admin=Account(INFLUX_ADMIN, new_password()),
            influx_writer=Account(INFLUX_WRITER, new_password()),
            influx_reader=Account(INFLUX_READER, new_password()),
        )

    @classmethod
    def load(cls, path: Path) -> Credentials:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            services = data["mqtt"]["services"]
            influx = data["influxdb"]
            return cls(
                mqtt_collector=Account(MQTT_COLLECTOR, services[MQTT_COLLECTOR]),
                mqtt_analysis=Account(MQTT_ANALYSIS, services[MQTT_ANALYSIS]),
                devices={k: Account(k, v) for k, v in data["mqtt"].get("devices", {}).items()},
                influx_admin=Account(INFLUX_ADMIN, influx[INFLUX_ADMIN]),
                influx_writer=Account(INFLUX_WRITER, influx[INFLUX_WRITER]),
                influx_reader=Account(INFLUX_READER, influx[INFLUX_READER]),
            )
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as e:
            raise StackError(f"cannot read credentials from {path}: {e}; restore the file or "
                             "start over with a new data directory") from e

    def save(self, path: Path) -> None:
        """Write the TOML file with mode 0600 (atomically)."""
        def q(s: str) -> str:
            return json.dumps(s)  # a TOML basic string for our plain ids and passwords

        lines = [
            "# tingbao stack credentials: generated at the first `tingbao stack up` and reused",
            "# by later ones. Keep secret. Deleting it makes the existing InfluxDB data",
            "# unreachable with new passwords.",
            "",
            "[mqtt.services]",
            f"{MQTT_COLLECTOR} = {q(self.mqtt_collector.password)}",
            f"{MQTT_ANALYSIS} = {q(self.mqtt_analysis.password)}",
            "",
            "[mqtt.devices]  # user name = meter id",
            *(f"{q(k)} = {q(a.password)}" for k, a in sorted(self.devices.items())),
            "",
            "[influxdb]",
            *(f"{a.username} = {q(a.password)}"
              for a in (self.influx_admin, self.influx_writer, self.influx_reader)),
            "",
        ]
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


# ------------------------------------------------------------------------ broker files
def mosquitto_passwd(tool: str, password_file: Path, account: Account, *,
                     create: bool) -> None:
    """Add (or replace) ``account`` in the broker's password file with ``mosquitto_passwd``
    (path ``tool``); ``create=True`` starts a new file."""
    argv = [tool, *(["-c"] if create else []), "-b", str(password_file),
            account.username, account.password]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise StackError(f"mosquitto_passwd failed for {account.username!r} (exit "
                         f"{done.returncode}): {(done.stderr or done.stdout).strip()}")


def write_password_file(tool: str, password_file: Path, accounts: Iterable[Account]) -> None:
    """Write the broker's password file anew with ``accounts`` (mode 0600)."""
    if password_file.exists():
        password_file.unlink()
    for i, account in enumerate(accounts):
        mosquitto_passwd(tool, password_file, account, create=(i == 0))
    os.chmod(password_file, 0o600)


DEVICE_KINDS = ("levels", "bands", "status", "events", "protection")
"""What a device may publish (:data:`tingbao.edge.contract.KINDS`; not ``receipts``)."""


def acl_text() -> str:
    """The broker's ACL: what the service accounts and the devices may read and write."""
    device_lines = "".join(f"pattern write tingbao/v1/+/+/%u/{k}\n" for k in DEVICE_KINDS)
    device_lines += "pattern read tingbao/v1/+/+/%u/receipts\n"
    return f"""\
# Mosquitto ACL generated by tingbao stack (see collector/stack/accounts.py). Topics:
# edge/contract.py.

# collectors: read every meter's messages (also through $share/GROUP/...), publish alerts
# and the receipts of what they stored
user {MQTT_COLLECTOR}
topic read tingbao/v1/#
topic write tingbao/v1/+/alerts
topic write tingbao/v1/+/+/+/receipts

# analysis: reads the live stream (receipts too), publishes alerts; fit-test records
# (analysis/fit_test_import.py) may be published with it on tingbao/v1/{{enterprise}}/fittests
user {MQTT_ANALYSIS}
topic read tingbao/v1/#
topic write tingbao/v1/+/alerts
topic write tingbao/v1/+/fittests

# devices: the user name is the meter id; a device may publish only its own meter's data
# kinds (never receipts) and read only its own receipts
{device_lines}"""


def write_acl(acl_file: Path) -> None:
    """Write :func:`acl_text` to ``acl_file`` (mode 0600)."""
    acl_file.write_text(acl_text(), encoding="utf-8")
    os.chmod(acl_file, 0o600)
