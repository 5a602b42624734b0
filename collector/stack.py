"""The project's own server stack: a Mosquitto 2 broker and an InfluxDB 1.x database, started
as child processes with configs generated from ``configs/*.template`` (DESIGN.md, "Real
components, started by the project itself").

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
  duration configurable, 90 days unless told) and ``forever`` (for rollups).

Example::

    with Stack(tmp_path) as stack:
        stack.add_device("m1")
        print(stack.mqtt_port, stack.influx_url, stack.credentials.influx_writer)
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import string
import subprocess
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Iterable
from pathlib import Path

from tingbao.edge import contract

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
"""Where the config templates are (the repository's ``configs/``; fine for an editable
install)."""

INSTALL_HINT = "apt-get install mosquitto mosquitto-clients influxdb"
HOST = "127.0.0.1"
DATABASE = "tingbao"
RP_LEVELS = "levels_1s"
RP_FOREVER = "forever"
MQTT_COLLECTOR = "collector"
MQTT_ANALYSIS = "analysis"
SERVICE_USERS = (MQTT_COLLECTOR, MQTT_ANALYSIS)
INFLUX_ADMIN = "tingbao_admin"
INFLUX_WRITER = "tingbao_writer"
INFLUX_READER = "tingbao_reader"
DEFAULT_RETENTION = "90d"
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
"""Searched after PATH for the servers (Debian installs mosquitto in /usr/sbin, which a
normal user's PATH may lack)."""
_DURATION = re.compile(r"\A(INF|inf|(\d+(ns|us|u|µ|ms|s|m|h|d|w))+)\Z")


class StackError(RuntimeError):
    """The stack cannot be set up, started or stopped; the text says what to do."""


@dataclasses.dataclass(frozen=True)
class Account:
    """A user name and password (MQTT or InfluxDB)."""

    username: str
    password: str

    def __iter__(self):  # allows ``user, password = account``
        return iter((self.username, self.password))


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
            mqtt_collector=Account(MQTT_COLLECTOR, _password()),
            mqtt_analysis=Account(MQTT_ANALYSIS, _password()),
            devices={},
            influx_admin=Account(INFLUX_ADMIN, _password()),
            influx_writer=Account(INFLUX_WRITER, _password()),
            influx_reader=Account(INFLUX_READER, _password()),
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


def _password() -> str:
    return secrets.token_urlsafe(18)  # 24 chars of A-Z a-z 0-9 - _


def require_tools() -> dict[str, str]:
    """Paths of ``mosquitto``, ``mosquitto_passwd`` and ``influxd``; raises StackError naming
    the packages to install when one is missing."""
    found, missing = {}, []
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    for tool in ("mosquitto", "mosquitto_passwd", "influxd"):
        where = shutil.which(tool, path=path)
        if where is None:
            missing.append(tool)
        else:
            found[tool] = where
    if missing:
        raise StackError(f"{', '.join(missing)} not found: the tingbao stack needs Mosquitto 2 "
                         f"and InfluxDB 1.x; install them with: {INSTALL_HINT}")
    return found


def free_ports(n: int, host: str = HOST, exclude: Iterable[int] = ()) -> list[int]:
    """``n`` distinct TCP ports free on ``host`` right now, none in ``exclude`` (held open
    together while picking, so they differ)."""
    socks, ports, exclude = [], [], set(exclude)
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
            port = s.getsockname()[1]
            if port not in exclude:
                ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_answers(port: int, host: str = HOST, timeout: float = 1.0,
                 ssl_context: ssl.SSLContext | None = None) -> bool:
    """Whether a TCP connect to ``host:port`` (and a TLS handshake, given ``ssl_context``)
    succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if ssl_context is not None:
                with ssl_context.wrap_socket(sock, server_hostname=host):
                    pass
            return True
    except OSError:  # ssl.SSLError is an OSError
        return False


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file (or a note that there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def mqtt_connect_code(host: str, port: int, username: str | None, password: str | None,
                      *, timeout: float = 2.0, ssl_context: ssl.SSLContext | None = None,
                      server_hostname: str | None = None) -> int:
    """Send an MQTT 3.1.1 CONNECT and return the CONNACK return code (0 accepted, 4 bad user
    name or password, 5 not authorised); raises OSError when nothing answers. A plain socket,
    no client library: this is the readiness probe."""
    def field(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    flags = 0x02  # clean session
    payload = field(f"tingbao-probe-{secrets.token_hex(4)}".encode())
    if username is not None:
        flags |= 0x80
        payload += field(username.encode())
        if password is not None:
            flags |= 0x40
            payload += field(password.encode())
    body = field(b"MQTT") + bytes([4, flags]) + (10).to_bytes(2, "big") + payload
    length, n = b"", len(body)
    while True:
        digit, n = n % 128, n // 128
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            break
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = (ssl_context.wrap_socket(raw, server_hostname=server_hostname or host)
                if ssl_context else raw)
        sock.settimeout(timeout)
        sock.sendall(b"\x10" + length + body)
        ack = b""
        while len(ack) < 4:
            chunk = sock.recv(4 - len(ack))
            if not chunk:
                raise ConnectionError("broker closed the connection before CONNACK")
            ack += chunk
        if ack[0] != 0x20:
            raise ConnectionError(f"unexpected answer to CONNECT: {ack!r}")
        if ack[3] == 0:
            sock.sendall(b"\xe0\x00")  # DISCONNECT
        return ack[3]


def _proc_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (``Z`` zombie), or None when there is no such
    process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int | None, must_contain: str | None = None) -> bool:
    """Whether process ``pid`` runs (not a zombie) and, if given, its command line contains
    ``must_contain`` (guards against a recycled pid)."""
    if not pid:
        return False
    state = _proc_state(pid)
    if state is None or state in "ZX":
        return False
    if must_contain is not None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        return must_contain in cmdline
    return True


class _Server:
    """One server process: started with its output appended to a log file, stopped with
    SIGTERM then SIGKILL. ``pid`` may also name a process this object did not start (from
    state.json)."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path):
        self.name, self.argv, self.log, self.cwd = name, argv, log, cwd
        self.proc: subprocess.Popen | None = None
        self.detached = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, detach: bool = False) -> None:
        if self.alive:
            raise StackError(f"{self.name} runs already (pid {self.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"\n--- tingbao stack: starting {' '.join(self.argv)}\n".encode())
            out.flush()
            try:
                self.proc = subprocess.Popen(
                    self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=detach, close_fds=True)
            except OSError as e:
                raise StackError(f"cannot start {self.argv[0]}: {e}; {INSTALL_HINT}") from e
        self.detached = detach

    def send(self, sig: int) -> None:
        if self.alive:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Stop with ``sig`` (SIGTERM), then SIGKILL after ``timeout`` seconds; returns the
        exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def failure(self, what: str) -> StackError:
        code = self.proc.poll() if self.proc else None
        exited = f" ({self.name} exited with code {code})" if code is not None else ""
        return StackError(f"{what}{exited}; last lines of {self.log}:\n{tail(self.log)}")


_LIVE: weakref.WeakSet[Stack] = weakref.WeakSet()


@atexit.register
def _stop_children() -> None:  # do not leave attached servers behind if the caller forgot
    for stack in list(_LIVE):
        try:
            stack._stop_attached()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


class Stack:
    """A Mosquitto broker and an InfluxDB server on loopback, configured for tingbao.

    Args:
        data_dir: directory for configs, data, logs and credentials (created; reused by later
            stacks on the same directory, which keep the passwords and the data).
        mqtt_port: plain MQTT listener port; a free one if None (the previous one recorded in
            ``state.json`` when that is still free).
        influx_port: InfluxDB HTTP port; a free one if None (likewise).
        tls: also open an MQTT-over-TLS listener (``tls_port``) with a self-signed CA
            (``ca_file``) and server certificate made with ``openssl``.
        tls_port: port for that listener; free if None.
        influx_rpc_port: InfluxDB RPC (backup) port; free if None.
        retention: duration of the default retention policy ``levels_1s`` (an InfluxQL
            duration such as ``90d``, ``26w``, or ``INF``).
        autosave_interval: seconds between broker persistence saves (a SIGKILL loses at
            most this much accepted QoS 1 traffic; a clean stop loses nothing).
        max_inflight_messages: the broker's ``max_inflight_messages``.
        max_queued_messages: the broker's per-client queue limit (QoS 1 messages).
        start_timeout: seconds to wait for each server to answer after it is started.
    """

    host = HOST
    database = DATABASE
    rp_levels = RP_LEVELS
    rp_forever = RP_FOREVER

    def __init__(self, data_dir: str | os.PathLike[str], *, mqtt_port: int | None = None,
                 influx_port: int | None = None, tls: bool = False, tls_port: int | None = None,
                 influx_rpc_port: int | None = None, retention: str = DEFAULT_RETENTION,
                 autosave_interval: int = 5, max_inflight_messages: int = 1000,
                 max_queued_messages: int = 1_000_000, start_timeout: float = 30.0,
                 http_log: bool = False):
        if not _DURATION.match(retention):
            raise StackError(f"retention {retention!r} is not an InfluxQL duration "
                             "(e.g. 90d, 26w, 2160h or INF)")
        self.data_dir = Path(data_dir).resolve()
        self.tls = tls
        self.retention = retention
        self.autosave_interval = int(autosave_interval)
        self.max_inflight_messages = int(max_inflight_messages)
        self.max_queued_messages = int(max_queued_messages)
        self.start_timeout = float(start_timeout)
        self.http_log = http_log
        self._tools: dict[str, str] | None = None
        self._credentials: Credentials | None = None
        self._versions: dict[str, str | None] = {}

        self.mqtt_dir = self.data_dir / "mosquitto"
        self.influx_dir = self.data_dir / "influxdb"
        self.tls_dir = self.data_dir / "tls"
        self.credentials_file = self.data_dir / "credentials.toml"
        self.state_file = self.data_dir / "state.json"
        self.mqtt_config = self.mqtt_dir / "mosquitto.conf"
        self.password_file = self.mqtt_dir / "passwd"
        self.acl_file = self.mqtt_dir / "acl"
        self.mqtt_log = self.mqtt_dir / "mosquitto.log"
        self.influx_config = self.influx_dir / "influxdb.conf"
        self.influx_log = self.influx_dir / "influxd.log"
        previous = self._previous_ports()
        wanted = {"mqtt": mqtt_port, "influx": influx_port, "rpc": influx_rpc_port,
                  "tls": tls_port if tls else 0}
        for key, port in wanted.items():
            old = previous.get(key)
            if port is None and old and port_free(old):
                wanted[key] = old
        spare = iter(free_ports(sum(1 for p in wanted.values() if p is None),
                                exclude=[p for p in wanted.values() if p]))
        ports = {k: (p if p is not None else next(spare)) for k, p in wanted.items()}
        self.mqtt_port: int = ports["mqtt"]
        self.influx_port: int = ports["influx"]
        self.influx_rpc_port: int = ports["rpc"]
        self.tls_port: int | None = ports["tls"] or None

        self.ca_file: Path | None = self.tls_dir / "ca.crt" if tls else None
        self._broker: _Server | None = None
        self._influx: _Server | None = None

    # ------------------------------------------------------------------ addresses, accounts
    @property
    def influx_url(self) -> str:
        """Base URL of the InfluxDB HTTP API, e.g. ``http://127.0.0.1:8086``."""
        return f"http://{self.host}:{self.influx_port}"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.host}:{self.mqtt_port}"

    @property
    def credentials(self) -> Credentials:
        """All passwords (generated and saved to ``credentials.toml`` on first use)."""
        if self._credentials is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if self.credentials_file.exists():
                self._credentials = Credentials.load(self.credentials_file)
            else:
                self._credentials = Credentials.generate()
                self._credentials.save(self.credentials_file)
        return self._credentials

    def mqtt_account(self, username: str) -> Account:
        """MQTT account ``collector``, ``analysis`` or a device's (meter id)."""
        return self.credentials.mqtt(username)

    def influx_account(self, role: str = "reader") -> Account:
        """InfluxDB account for ``admin``, ``writer`` or ``reader``."""
        return self.credentials.influx(role)

    def add_device(self, meter_id: str) -> Account:
        """Create (or return the existing) MQTT account of a device; its user name is the meter
        id, and it may only publish below ``tingbao/v1/+/+/{meter_id}/``. When the broker runs,
        it is reloaded (SIGHUP) and this returns once the new account can connect."""
        contract.check_id(meter_id, "meter")
        if meter_id in SERVICE_USERS:
            raise StackError(f"meter id {meter_id!r} is reserved for a service account; "
                             "choose another meter id")
        creds = self.credentials
        account = creds.devices.get(meter_id)
        if account is not None:
            return account
        account = Account(meter_id, _password())
        creds.devices[meter_id] = account
        creds.save(self.credentials_file)
        if self.password_file.exists():
            self._passwd(account, create=False)
        if self._broker is not None and self._broker.alive:
            self._broker.send(signal.SIGHUP)
            self._wait_mqtt(account, "the reloaded broker accepts the new device account")
        return account

    def add_devices(self, meter_ids: Iterable[str]) -> list[Account]:
        """:meth:`add_device` for several meters, with one broker reload."""
        broker, self._broker = self._broker, None
        try:
            accounts = [self.add_device(m) for m in meter_ids]
        finally:
            self._broker = broker
        if accounts and broker is not None and broker.alive:
            broker.send(signal.SIGHUP)
            self._wait_mqtt(accounts[-1], "the reloaded broker accepts the new device accounts")
        return accounts

    # ------------------------------------------------------------------------ configuration
    def prepare(self) -> None:
        """Check the tools, make directories, credentials, TLS files, configs, password file
        and ACL (all idempotent; called by :meth:`start`)."""
        self._tools = require_tools()
        for d in (self.mqtt_dir / "data", self.influx_dir / "meta", self.influx_dir / "data",
                  self.influx_dir / "wal"):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        creds = self.credentials
        if self.tls:
            self._make_tls()
        self._write_password_file(creds)
        self._write_acl()
        self._render("mosquitto.conf.template", self.mqtt_config, self._mqtt_values())
        self._render("influxdb.conf.template", self.influx_config, {
            "host": self.host, "rpc_port": self.influx_rpc_port, "http_port": self.influx_port,
            "meta_dir": self.influx_dir / "meta", "data_dir": self.influx_dir / "data",
            "wal_dir": self.influx_dir / "wal",
            "http_log_enabled": "true" if self.http_log else "false",
        })

    def _mqtt_values(self) -> dict:
        tls_listener = ""
        if self.tls:
            tls_listener = "\n".join([
                "# MQTT over TLS (server certificate signed by the stack's own CA)",
                f"listener {self.tls_port} {self.host}",
                f"cafile {self.tls_dir / 'ca.crt'}",
                f"certfile {self.tls_dir / 'server.crt'}",
                f"keyfile {self.tls_dir / 'server.key'}",
                "tls_version tlsv1.2",
            ])
        user_line = ""
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            user_line = ("# running as root: stay root (else mosquitto drops to the user "
                         "'mosquitto', which cannot read this data directory)\nuser root\n")
        return {
            "password_file": self.password_file, "acl_file": self.acl_file,
            "user_line": user_line, "persistence_dir": self.mqtt_dir / "data",
            "autosave_interval": self.autosave_interval,
            "max_queued_messages": self.max_queued_messages,
            "max_inflight_messages": self.max_inflight_messages,
            "mqtt_port": self.mqtt_port, "host": self.host, "tls_listener": tls_listener,
        }

    @staticmethod
    def _render(template: str, target: Path, values: dict) -> None:
        src = CONFIG_DIR / template
        try:
            text = src.read_text(encoding="utf-8")
        except OSError as e:
            raise StackError(f"config template {src} is missing ({e}); the stack needs the "
                             "repository's configs/ directory (an editable install)") from e
        try:
            rendered = string.Template(text).substitute({k: str(v) for k, v in values.items()})
        except (KeyError, ValueError) as e:
            raise StackError(f"template {src} has an unknown placeholder: {e}") from e
        target.write_text(rendered, encoding="utf-8")

    def _passwd(self, account: Account, *, create: bool) -> None:
        tool = (self._tools or require_tools())["mosquitto_passwd"]
        argv = [tool, *(["-c"] if create else []), "-b", str(self.password_file),
                account.username, account.password]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise StackError(f"mosquitto_passwd failed for {account.username!r} (exit "
                             f"{done.returncode}): {(done.stderr or done.stdout).strip()}")

    def _write_password_file(self, creds: Credentials) -> None:
        accounts = [creds.mqtt_collector, creds.mqtt_analysis, *creds.devices.values()]
        if self.password_file.exists():
            self.password_file.unlink()
        for i, account in enumerate(accounts):
            self._passwd(account, create=(i == 0))
        os.chmod(self.password_file, 0o600)

    def _write_acl(self) -> None:
        text = f"""\
# Mosquitto ACL generated by tingbao stack (see collector/stack.py). Topics: edge/contract.py.

# collectors: read every meter's messages (also through $share/GROUP/...), publish alerts
user {MQTT_COLLECTOR}
topic read tingbao/v1/#
topic write tingbao/v1/+/alerts

# analysis: reads the live stream, publishes alerts
user {MQTT_ANALYSIS}
topic read tingbao/v1/#
topic write tingbao/v1/+/alerts

# devices: the user name is the meter id; a device may publish only its own meter's topics
pattern write tingbao/v1/+/+/%u/#
"""
        self.acl_file.write_text(text, encoding="utf-8")
        os.chmod(self.acl_file, 0o600)

    def _make_tls(self) -> None:
        """A CA and a server certificate for 127.0.0.1/localhost, made once with openssl."""
        d = self.tls_dir
        if all((d / f).exists() for f in ("ca.crt", "server.crt", "server.key")):
            return
        openssl = shutil.which("openssl")
        if openssl is None:
            raise StackError("openssl not found (needed for the TLS listener): "
                             "apt-get install openssl")
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        ext = d / "server.ext"
        ext.write_text("basicConstraints = critical, CA:FALSE\n"
                       "keyUsage = critical, digitalSignature, keyEncipherment\n"
                       "extendedKeyUsage = serverAuth\n"
                       "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
                       "subjectKeyIdentifier = hash\n"
                       "authorityKeyIdentifier = keyid, issuer\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        steps = [
            [openssl, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "3650", "-subj", "/O=tingbao/CN=tingbao stack CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash"],
            [openssl, "req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/O=tingbao/CN=localhost"],
            [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "825", "-sha256",
             "-extfile", "server.ext"],
        ]
        for argv in steps:
            done = subprocess.run(argv, cwd=d, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                raise StackError(f"openssl failed making the TLS certificates (exit "
                                 f"{done.returncode}): {done.stderr.strip()[-1000:]}")
        for key in ("ca.key", "server.key"):
            os.chmod(d / key, 0o600)

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts the stack's CA (requires ``tls=True``)."""
        if not self.tls or self.ca_file is None:
            raise StackError("this stack has no TLS listener: create it with Stack(tls=True)")
        return ssl.create_default_context(cafile=str(self.ca_file))

    # ------------------------------------------------------------------------------ process
    def start(self, *, detach: bool = False) -> Stack:
        """Generate the configs, start both servers, wait until they answer and set up the
        database, users and retention policies. ``detach=True`` starts them in their own
        sessions so they outlive this process (then stop them with :func:`stop_from_state`).
        On failure, what was started is stopped again and StackError quotes the log."""
        self.prepare()
        _LIVE.add(self)
        try:
            self.start_broker(detach=detach)
            self.start_influx(detach=detach)
            self._setup_influx()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both servers: SIGTERM (mosquitto then saves its persistence file), then
        SIGKILL after ``timeout`` seconds."""
        self.stop_influx(timeout)
        self.stop_broker(timeout)

    def _stop_attached(self) -> None:
        for server in (self._influx, self._broker):
            if server is not None and not server.detached:
                server.stop(5.0)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start_broker(self, *, detach: bool = False) -> None:
        """Start mosquitto (again) on the same port with the same data; waits until it accepts
        the collector account."""
        if not self.mqtt_config.exists():
            self.prepare()
        tools = self._tools or require_tools()
        if self._broker is None:
            self._broker = _Server("mosquitto", [tools["mosquitto"], "-c", str(self.mqtt_config)],
                                   self.mqtt_log, self.mqtt_dir)
        self._broker.start(detach=detach)
        self._wait_mqtt(self.credentials.mqtt_collector,
                        f"mosquitto answers on {self.host}:{self.mqtt_port}")
        if self.tls:
            self._wait_mqtt(self.credentials.mqtt_collector,
                            f"mosquitto answers over TLS on {self.host}:{self.tls_port}",
                            tls=True)

    def stop_broker(self, timeout: float = 10.0) -> None:
        """Stop mosquitto cleanly (SIGTERM: persistent sessions and queued QoS 1 messages are
        saved)."""
        if self._broker is not None:
            self._broker.stop(timeout)

    def kill_broker(self) -> None:
        """Kill mosquitto with SIGKILL (a crash: what arrived since the last autosave is
        lost)."""
        if self._broker is not None:
            self._broker.stop(10.0, sig=signal.SIGKILL)

    def restart_broker(self, timeout: float = 10.0) -> None:
        self.stop_broker(timeout)
        self.start_broker()

    def start_influx(self, *, detach: bool = False) -> None:
        """Start influxd (again) on the same port with the same data; waits for ``/ping``."""
        if not self.influx_config.exists():
            self.prepare()
        tools = self._tools or require_tools()
        if self._influx is None:
            self._influx = _Server("influxd",
                                   [tools["influxd"], "-config", str(self.influx_config)],
                                   self.influx_log, self.influx_dir)
        self._influx.start(detach=detach)
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                status, headers, _ = self.influx_request("GET", "/ping", auth=None, timeout=1.0)
                if status == 204:
                    self._versions["influxdb"] = headers.get("X-Influxdb-Version")
                    return
            except OSError:
                pass
            if not self._influx.alive or time.monotonic() > deadline:
                raise self._influx.failure(
                    f"influxd did not answer GET {self.influx_url}/ping within "
                    f"{self.start_timeout:g} s")
            time.sleep(0.05)

    def stop_influx(self, timeout: float = 10.0) -> None:
        if self._influx is not None:
            self._influx.stop(timeout)

    def kill_influx(self) -> None:
        if self._influx is not None:
            self._influx.stop(10.0, sig=signal.SIGKILL)

    def restart_influx(self, timeout: float = 10.0) -> None:
        self.stop_influx(timeout)
        self.start_influx()

    def _wait_mqtt(self, account: Account, what: str, *, tls: bool = False) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = "no answer"
        port, context = (self.tls_port, self.ssl_context()) if tls else (self.mqtt_port, None)
        while True:
            try:
                code = mqtt_connect_code(self.host, port, *account, timeout=1.0,
                                         ssl_context=context)
                if code == 0:
                    return
                last = f"CONNACK code {code} for user {account.username!r}"
            except OSError as e:
                last = str(e)
            if not self._broker.alive or time.monotonic() > deadline:
                raise self._broker.failure(f"waited {self.start_timeout:g} s until {what}: "
                                           f"{last}")
            time.sleep(0.02)

    # ---------------------------------------------------------------------------- InfluxDB
    def influx_request(self, method: str, path: str, *, params: dict | None = None,
                       body: bytes | None = None, auth: str | Account | None = "reader",
                       timeout: float = 10.0) -> tuple[int, dict, bytes]:
        """One HTTP request to InfluxDB (no proxy, Basic auth with the account of role
        ``auth``); returns (status, headers, body) for any status."""
        url = self.influx_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, data=body, method=method)
        if auth is not None:
            account = auth if isinstance(auth, Account) else self.credentials.influx(auth)
            token = base64.b64encode(f"{account.username}:{account.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        if body is not None and method == "POST" and path == "/query":
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def influx_query(self, q: str, *, user: str | Account = "reader", db: str | None = DATABASE,
                     post: bool | None = None, epoch: str | None = None) -> dict:
        """Run InfluxQL ``q`` and return the decoded JSON answer; raises StackError on an HTTP
        or statement error. Statements that change things (CREATE, GRANT, …) are POSTed."""
        params = {"q": q}
        if db:
            params["db"] = db
        if epoch:
            params["epoch"] = epoch
        if post is None:
            post = not q.lstrip().upper().startswith(("SELECT", "SHOW"))
        if post:
            status, _, raw = self.influx_request(
                "POST", "/query", body=urllib.parse.urlencode(params).encode(), auth=user)
        else:
            status, _, raw = self.influx_request("GET", "/query", params=params, auth=user)
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            answer = {"error": raw.decode("utf-8", "replace")}
        errors = [answer.get("error")] + [r.get("error") for r in answer.get("results", [])]
        errors = [e for e in errors if e]
        if status != 200 or errors:
            raise StackError(f"InfluxDB query {q!r} failed (HTTP {status}): "
                             f"{'; '.join(errors) or raw[:200]!r}")
        return answer

    def influx_write(self, lines: str | bytes | Iterable[str], *, user: str | Account = "writer",
                     rp: str | None = None, precision: str = "ns") -> None:
        """Write line protocol to the ``tingbao`` database (retention policy ``rp``, default
        the database default); raises StackError unless InfluxDB answers 204."""
        if isinstance(lines, str):
            body = lines.encode()
        elif isinstance(lines, bytes):
            body = lines
        else:
            body = "\n".join(lines).encode()
        params = {"db": DATABASE, "precision": precision}
        if rp:
            params["rp"] = rp
        status, _, raw = self.influx_request("POST", "/write", params=params, body=body,
                                             auth=user)
        if status != 204:
            raise StackError(f"InfluxDB write failed (HTTP {status}): "
                             f"{raw.decode('utf-8', 'replace').strip()}")

    def _setup_influx(self) -> None:
        """Create the admin (InfluxDB lets the first admin be created without auth), the
        database, retention policies and the writer/reader users; idempotent."""
        creds = self.credentials
        admin = creds.influx_admin
        status, _, raw = self.influx_request("GET", "/query", params={"q": "SHOW USERS"},
                                             auth=admin)
        if status in (401, 403):  # 403: "create admin user first or disable authentication"
            status, _, raw = self.influx_request(
                "POST", "/query", auth=None, body=urllib.parse.urlencode({
                    "q": f"CREATE USER {admin.username} WITH PASSWORD "
                         f"'{admin.password}' WITH ALL PRIVILEGES"}).encode())
            if status != 200 or b'"error"' in raw:
                raise StackError(
                    f"InfluxDB in {self.influx_dir} already has users, and the admin password "
                    f"in {self.credentials_file} does not open it (HTTP {status}: "
                    f"{raw[:200]!r}); restore the credentials file or delete {self.influx_dir} "
                    "to start with an empty database")
        elif status != 200:
            raise StackError(f"InfluxDB answered HTTP {status} to SHOW USERS: {raw[:200]!r}")

        def q(text: str) -> dict:
            return self.influx_query(text, user=admin, db=None, post=True)

        q(f"CREATE DATABASE {DATABASE}")
        rps = {row[0] for row in _values(q(f"SHOW RETENTION POLICIES ON {DATABASE}"))}
        verb = "ALTER" if RP_LEVELS in rps else "CREATE"
        repl = "" if verb == "ALTER" else " REPLICATION 1"
        q(f"{verb} RETENTION POLICY {RP_LEVELS} ON {DATABASE} DURATION {self.retention}{repl} "
          "DEFAULT")
        if RP_FOREVER not in rps:
            q(f"CREATE RETENTION POLICY {RP_FOREVER} ON {DATABASE} DURATION INF REPLICATION 1")
        users = {row[0] for row in _values(q("SHOW USERS"))}
        for account, privilege in ((creds.influx_writer, "WRITE"),
                                   (creds.influx_reader, "READ")):
            if account.username in users:
                q(f"SET PASSWORD FOR {account.username} = '{account.password}'")
            else:
                q(f"CREATE USER {account.username} WITH PASSWORD '{account.password}'")
            q(f"REVOKE ALL ON {DATABASE} FROM {account.username}")
            q(f"GRANT {privilege} ON {DATABASE} TO {account.username}")

    # ------------------------------------------------------------------------------ status
    def mosquitto_version(self) -> str | None:
        if "mosquitto" not in self._versions:
            self._versions["mosquitto"] = _mosquitto_version(
                (self._tools or require_tools())["mosquitto"])
        return self._versions["mosquitto"]

    def status(self) -> dict:
        """Ports, pids, liveness and versions, e.g. ``status()["mqtt"]["alive"]``."""
        broker, influx = self._broker, self._influx
        return {
            "data_dir": str(self.data_dir),
            "host": self.host,
            "credentials_file": str(self.credentials_file),
            "mqtt": {
                "port": self.mqtt_port, "tls_port": self.tls_port,
                "ca_file": str(self.ca_file) if self.ca_file else None,
                "pid": broker.pid if broker else None,
                "alive": bool(broker and broker.alive),
                "answers": port_answers(self.mqtt_port, self.host, 0.5),
                "version": self.mosquitto_version(),
                "config": str(self.mqtt_config), "log": str(self.mqtt_log),
                "detached": bool(broker and broker.detached),
            },
            "influxdb": {
                "port": self.influx_port, "rpc_port": self.influx_rpc_port,
                "url": self.influx_url, "database": DATABASE,
                "retention_policies": {RP_LEVELS: self.retention, RP_FOREVER: "INF"},
                "pid": influx.pid if influx else None,
                "alive": bool(influx and influx.alive),
                "answers": port_answers(self.influx_port, self.host, 0.5),
                "version": self._versions.get("influxdb"),
                "config": str(self.influx_config), "log": str(self.influx_log),
                "detached": bool(influx and influx.detached),
            },
        }

    def write_state(self) -> Path:
        """Write :meth:`status` (plus the start time) to ``state.json``; returns its path."""
        state = self.status()
        state["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        tmp = self.state_file.with_name("state.json.tmp")
        tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_file)
        return self.state_file

    def _previous_ports(self) -> dict[str, int]:
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
            return {"mqtt": state["mqtt"]["port"], "tls": state["mqtt"].get("tls_port"),
                    "influx": state["influxdb"]["port"],
                    "rpc": state["influxdb"].get("rpc_port")}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def __repr__(self) -> str:
        return (f"Stack({str(self.data_dir)!r}, mqtt={self.host}:{self.mqtt_port}, "
                f"influx={self.influx_url})")


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _values(answer: dict) -> list[list]:
    rows = []
    for result in answer.get("results", []):
        for series in result.get("series", []) or []:
            rows.extend(series.get("values", []) or [])
    return rows


def _mosquitto_version(binary: str) -> str | None:
    try:
        out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"mosquitto version (\S+)", out)
    return m.group(1) if m else None


# ------------------------------------------------------------- a stack started elsewhere
def load_state(data_dir: str | os.PathLike[str]) -> dict:
    """The ``state.json`` of a stack started with ``tingbao stack up``; raises StackError when
    there is none."""
    path = Path(data_dir) / "state.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StackError(f"no stack state in {path}: start one with "
                         f"`tingbao stack up --data-dir {data_dir}`") from None
    except (OSError, ValueError) as e:
        raise StackError(f"cannot read {path}: {e}") from e


def status_from_state(data_dir: str | os.PathLike[str]) -> dict:
    """``state.json`` with, for each server, whether its pid is alive (and is that server)
    and whether its port answers now."""
    state = load_state(data_dir)
    for key in ("mqtt", "influxdb"):
        part = state.get(key, {})
        part["alive"] = pid_alive(part.get("pid"), part.get("config"))
        part["answers"] = port_answers(part.get("port") or 0, state.get("host", HOST), 0.5)
        if key == "mqtt" and part.get("tls_port") and part.get("ca_file"):
            try:
                context = ssl.create_default_context(cafile=part["ca_file"])
            except OSError:
                context = None
            part["tls_answers"] = context is not None and port_answers(
                part["tls_port"], state.get("host", HOST), 0.5, ssl_context=context)
    return state


def stop_from_state(data_dir: str | os.PathLike[str], timeout: float = 10.0) -> dict:
    """Stop the servers listed in ``state.json`` (SIGTERM, SIGKILL after ``timeout``
    seconds). Returns ``{"mqtt": outcome, "influxdb": outcome}`` with outcome one of
    ``stopped``, ``killed``, ``not running``."""
    state = load_state(data_dir)
    outcome = {}
    for key in ("influxdb", "mqtt"):
        part = state.get(key, {})
        pid, config = part.get("pid"), part.get("config")
        if not pid_alive(pid, config):
            outcome[key] = "not running"
            continue
        os.kill(pid, signal.SIGTERM)
        outcome[key] = "stopped"
        deadline = time.monotonic() + timeout
        while pid_alive(pid, config):
            if time.monotonic() > deadline:
                if outcome[key] == "killed":
                    raise StackError(f"{key} (pid {pid}) survives SIGKILL; look at it with "
                                     f"`ps -p {pid} -o pid,stat,cmd`")
                os.kill(pid, signal.SIGKILL)
                outcome[key] = "killed"
                deadline = time.monotonic() + 10.0
            time.sleep(0.05)
    state["stopped_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path = Path(data_dir) / "state.json"
    path.write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return outcome
