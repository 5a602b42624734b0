"""The :class:`Stack`: one Mosquitto 2 broker and one InfluxDB 1.x server on loopback,
started as child processes and configured for tingbao. It orchestrates the other modules of
the package: ports (:mod:`.processes`), accounts and broker files (:mod:`.accounts`), TLS
(:mod:`.tls`), configs (:mod:`.configs`), the readiness probe (:mod:`.probe`), the database
set-up (:mod:`.influxdb`), and ``state.json`` for ``tingbao stack up`` (read back by
:mod:`.state`).

Ports: a port not given is the one recorded in ``state.json`` by an earlier stack on the
same directory when that is still free, else a free one. One server of a detached stack may
be down while the other runs (a crash, a kill): :meth:`Stack.adopt_running` takes the running
one over from ``state.json`` (pid, left alone) and :meth:`Stack.start` then starts only the
other, on its recorded port with its data (``tingbao stack up`` does this). Start-up waits
(``start_timeout`` seconds, 30 unless told) until the broker accepts the collector account
and InfluxDB answers ``/ping``; on failure the error quotes the server's log. Servers started
without ``detach`` are stopped at interpreter exit if the caller forgot.

InfluxDB is spoken to only through :class:`tingbao.collector.influx.InfluxClient`:
``stack.influx("writer").write(lines)``, ``stack.influx().query_rows(q)``.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import ssl
import time
import weakref
from collections.abc import Iterable
from pathlib import Path

from tingbao.collector import schema
from tingbao.collector.influx import InfluxClient, InfluxError
from tingbao.edge import contract

from . import accounts, configs, influxdb, tls
from .accounts import SERVICE_USERS, Account, Credentials
from .errors import StackError
from .probe import mqtt_connect_code
from .processes import (
    HOST,
    RunningServer,
    Server,
    free_ports,
    mosquitto_version,
    pid_alive,
    port_answers,
    port_free,
    require_tools,
)

_DURATION = re.compile(r"\A(INF|inf|(\d+(ns|us|u|µ|ms|s|m|h|d|w))+)\Z")
"""An InfluxQL duration literal (or INF)."""

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
        http_log: InfluxDB writes one access-log line per HTTP request.
    """

    host = HOST
    database = schema.DATABASE
    rp_levels = schema.RP_LEVELS
    rp_forever = schema.RP_FOREVER

    def __init__(self, data_dir: str | os.PathLike[str], *, mqtt_port: int | None = None,
                 influx_port: int | None = None, tls: bool = False, tls_port: int | None = None,
                 influx_rpc_port: int | None = None, retention: str = schema.DEFAULT_RETENTION,
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
        self._broker: Server | None = None
        self._influx: Server | None = None

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
        account = Account(meter_id, accounts.new_password())
        creds.devices[meter_id] = account
        creds.save(self.credentials_file)
        if self.password_file.exists():
            accounts.mosquitto_passwd(self._tool("mosquitto_passwd"), self.password_file,
                                      account, create=False)
        if self._broker is not None and self._broker.alive:
            self._broker.send(signal.SIGHUP)
            self._wait_mqtt(account, "the reloaded broker accepts the new device account")
        return account

    def add_devices(self, meter_ids: Iterable[str]) -> list[Account]:
        """:meth:`add_device` for several meters, with one broker reload."""
        broker, self._broker = self._broker, None
        try:
            added = [self.add_device(m) for m in meter_ids]
        finally:
            self._broker = broker
        if added and broker is not None and broker.alive:
            broker.send(signal.SIGHUP)
            self._wait_mqtt(added[-1], "the reloaded broker accepts the new device accounts")
        return added

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
            tls.make_certificates(self.tls_dir)
        accounts.write_password_file(
            self._tool("mosquitto_passwd"), self.password_file,
            [creds.mqtt_collector, creds.mqtt_analysis, *creds.devices.values()])
        accounts.write_acl(self.acl_file)
        configs.render_mosquitto(
            self.mqtt_config, host=self.host, mqtt_port=self.mqtt_port,
            password_file=self.password_file, acl_file=self.acl_file,
            persistence_dir=self.mqtt_dir / "data", autosave_interval=self.autosave_interval,
            max_queued_messages=self.max_queued_messages,
            max_inflight_messages=self.max_inflight_messages,
            tls_port=self.tls_port if self.tls else None, tls_dir=self.tls_dir)
        configs.render_influxdb(
            self.influx_config, host=self.host, http_port=self.influx_port,
            rpc_port=self.influx_rpc_port, influx_dir=self.influx_dir, http_log=self.http_log)

    def _tool(self, name: str) -> str:
        return (self._tools or require_tools())[name]

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts the stack's CA (requires ``tls=True``)."""
        if not self.tls or self.ca_file is None:
            raise StackError("this stack has no TLS listener: create it with Stack(tls=True)")
        return tls.client_context(self.ca_file)

    # ------------------------------------------------------------------------------ process
    def start(self, *, detach: bool = False) -> Stack:
        """Generate the configs, start the servers that do not run yet (both, unless one was
        taken over with :meth:`adopt_running`), wait until they answer and set up the
        database, users and retention policies (when InfluxDB was started). ``detach=True``
        starts them in their own sessions so they outlive this process (then stop them with
        :func:`stop_from_state`). On failure, what this call started is stopped again and
        StackError quotes the log; a server it did not start is left alone."""
        self.prepare()
        _LIVE.add(self)
        started: list[Server] = []
        try:
            if self._broker is None or not self._broker.alive:
                self.start_broker(detach=detach)
                started.append(self._broker)
            if self._influx is None or not self._influx.alive:
                self.start_influx(detach=detach)
                started.append(self._influx)
                self._setup_influx()
        except BaseException:
            for server in (self._influx, self._broker):
                if server is not None and (server in started or not server.alive):
                    server.stop()
            raise
        return self

    def adopt_running(self, state: dict) -> dict[str, bool]:
        """Take over the servers that ``state`` (the ``state.json`` of a detached stack on this
        data directory, :func:`.state.load_state`) lists and that still run: this Stack then
        reports them (pid, alive), signals them (a device added reloads the broker) and
        :meth:`start` does not start them again; :meth:`stop_started` leaves them alone.
        Returns ``{"mqtt": adopted, "influxdb": adopted}``."""
        adopted = {}
        for key, name, config, log, cwd in (
                ("mqtt", "mosquitto", self.mqtt_config, self.mqtt_log, self.mqtt_dir),
                ("influxdb", "influxd", self.influx_config, self.influx_log, self.influx_dir)):
            part = state.get(key) or {}
            pid = part.get("pid")
            adopted[key] = bool(pid) and pid_alive(pid, str(config))
            if not adopted[key]:
                continue
            server = RunningServer(name, [name], log, cwd, pid, str(config))
            if key == "mqtt":
                self._broker = server
            else:
                self._influx = server
                try:
                    self._versions["influxdb"] = self.influx(None, timeout=2.0).ping()
                except InfluxError:
                    pass
        return adopted

    def stop_started(self, timeout: float = 10.0) -> None:
        """Stop the servers this Stack started (not those taken over with
        :meth:`adopt_running`)."""
        for server in (self._influx, self._broker):
            if server is not None and not isinstance(server, RunningServer):
                server.stop(timeout)

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
        if self._broker is None or isinstance(self._broker, RunningServer):
            self._broker = Server("mosquitto",
                                  [self._tool("mosquitto"), "-c", str(self.mqtt_config)],
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
        if self._influx is None or isinstance(self._influx, RunningServer):
            self._influx = Server("influxd",
                                  [self._tool("influxd"), "-config", str(self.influx_config)],
                                  self.influx_log, self.influx_dir)
        self._influx.start(detach=detach)
        ping = self.influx(None, timeout=1.0)
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self._versions["influxdb"] = ping.ping()
                return
            except InfluxError:
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
    def influx(self, role: str | Account | None = "reader", db: str = schema.DATABASE, *,
               timeout: float = 10.0) -> InfluxClient:
        """An :class:`~tingbao.collector.influx.InfluxClient` of database ``db`` at
        :attr:`influx_url`, logged in as ``role``: ``admin``, ``writer``, ``reader`` (or an
        :class:`Account`); None gives a client without credentials (InfluxDB answers it
        401, except ``/ping``). ``timeout`` in seconds per request."""
        if role is None:
            return InfluxClient(self.influx_url, db, timeout=timeout)
        account = role if isinstance(role, Account) else self.credentials.influx(role)
        return InfluxClient(self.influx_url, db, account.username, account.password,
                            timeout=timeout)

    def _setup_influx(self) -> None:
        """Create the admin, the database, retention policies and the writer/reader users
        (:func:`.influxdb.set_up`); idempotent."""
        influxdb.set_up(self.influx("admin", ""), self.influx(None, ""), self.credentials,
                        self.retention, influx_dir=self.influx_dir,
                        credentials_file=self.credentials_file)

    # ------------------------------------------------------------------------------ status
    def mosquitto_version(self) -> str | None:
        if "mosquitto" not in self._versions:
            self._versions["mosquitto"] = mosquitto_version(self._tool("mosquitto"))
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
                "url": self.influx_url, "database": schema.DATABASE,
                "retention_policies": {schema.RP_LEVELS: self.retention,
                                       schema.RP_FOREVER: "INF"},
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
