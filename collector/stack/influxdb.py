"""The stack's InfluxDB set-up, through the project's one InfluxDB client
(:class:`tingbao.collector.influx.InfluxClient`):

* the first admin ``tingbao_admin``: InfluxDB 1.x with ``auth-enabled`` lets a client without
  credentials create it while no user exists (it answers 401/403 to ``SHOW USERS`` until
  then); when users exist and the stored admin password does not open it, set-up stops
  with what to do;
* the database ``tingbao`` with the retention policies ``levels_1s`` (default; its duration
  is set again at every start, e.g. ``90d``) and ``forever`` (INF, for the minute rollups);
* ``tingbao_writer`` (WRITE) and ``tingbao_reader`` (READ), whose passwords are set again at
  every start from ``credentials.toml``.

Every step is idempotent. Names come from :mod:`tingbao.collector.schema`.

Also here: :func:`stack_error`, which turns the client's typed errors into the stack's.
"""

from __future__ import annotations

from pathlib import Path

from tingbao.collector.influx import ConfigError, InfluxClient, InfluxError
from tingbao.collector.schema import DATABASE, RP_FOREVER, RP_LEVELS

from .accounts import Credentials
from .errors import InfluxUnreachable, StackError


def stack_error(what: str, e: InfluxError) -> StackError:
    """The StackError for a failed request: ``"{what} (HTTP status): message"``, or
    InfluxUnreachable (also an OSError) when InfluxDB did not answer at all."""
    if e.status is None:
        return InfluxUnreachable(f"{what}: {e.message}")
    return StackError(f"{what} (HTTP {e.status}): {e.message}")


def set_up(admin: InfluxClient, anonymous: InfluxClient, creds: Credentials, retention: str,
           *, influx_dir: Path, credentials_file: Path) -> None:
    """Create (or update) the admin, the database, its retention policies (``retention``:
    an InfluxQL duration for ``levels_1s``) and the writer/reader users. ``admin`` is a
    client logged in as ``creds.influx_admin``, ``anonymous`` one without credentials;
    ``influx_dir`` and ``credentials_file`` are named in the error messages."""
    account = creds.influx_admin
    try:
        admin.query("SHOW USERS", epoch=None)
    except InfluxError as e:
        # 403: "create admin user first or disable authentication"
        if not (isinstance(e, ConfigError) and e.status in (401, 403)):
            raise stack_error("InfluxDB could not answer SHOW USERS", e) from e
        try:
            anonymous.query(f"CREATE USER {account.username} WITH PASSWORD "
                            f"'{account.password}' WITH ALL PRIVILEGES", epoch=None)
        except InfluxError as e2:
            raise StackError(
                f"InfluxDB in {influx_dir} already has users, and the admin password "
                f"in {credentials_file} does not open it ({e2}); restore the credentials "
                f"file or delete {influx_dir} to start with an empty database") from e2

    def q(text: str) -> list[dict]:
        try:
            return admin.query_rows(text, epoch=None)
        except InfluxError as e:
            raise stack_error(f"InfluxDB query {text!r} failed", e) from e

    q(f"CREATE DATABASE {DATABASE}")
    rps = {row["name"] for row in q(f"SHOW RETENTION POLICIES ON {DATABASE}")}
    verb = "ALTER" if RP_LEVELS in rps else "CREATE"
    repl = "" if verb == "ALTER" else " REPLICATION 1"
    q(f"{verb} RETENTION POLICY {RP_LEVELS} ON {DATABASE} DURATION {retention}{repl} "
      "DEFAULT")
    if RP_FOREVER not in rps:
        q(f"CREATE RETENTION POLICY {RP_FOREVER} ON {DATABASE} DURATION INF REPLICATION 1")
    users = {row["user"] for row in q("SHOW USERS")}
    for user, privilege in ((creds.influx_writer, "WRITE"), (creds.influx_reader, "READ")):
        if user.username in users:
            q(f"SET PASSWORD FOR {user.username} = '{user.password}'")
        else:
            q(f"CREATE USER {user.username} WITH PASSWORD '{user.password}'")
        q(f"REVOKE ALL ON {DATABASE} FROM {user.username}")
        q(f"GRANT {privilege} ON {DATABASE} TO {user.username}")

