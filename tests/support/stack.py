"""Fixtures that start the real server stack (Mosquitto 2 + InfluxDB 1.x) for tests, and the
InfluxDB helpers. A pytest plugin (``pytest_plugins`` in tests/conftest.py).

Fixtures:

* ``stack`` (module scope): a running :class:`tingbao.collector.stack.Stack` in a temporary
  directory, with the TLS listener and two device accounts ``m1`` and ``m2``. Tests must
  leave it running (use ``fresh_stack`` to kill or restart parts).
* ``fresh_stack`` (function scope): the same, without TLS, for a single test that may stop,
  kill and restart the broker or the database.

Tests using either are marked ``stack`` (tests/conftest.py). When mosquitto,
mosquitto_passwd or influxd is missing, the fixtures FAIL (not skip) with the text
``apt-get install mosquitto mosquitto-clients influxdb``.

InfluxDB is reached only through the project's client: ``stack.influx(role)`` is an
:class:`~tingbao.collector.influx.InfluxClient` of the database as ``reader``, ``writer`` or
``admin``; :func:`influx_query` and :func:`influx_write` are shorthands. Errors are the
client's typed ones (``ConfigError`` for 401/403/404, ``TransientError`` when the server is
down, ``DataError`` for refused data or queries).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tingbao.collector.stack import Stack, StackError

DEVICES = ("m1", "m2")
"""Device accounts (meter ids) made in every test stack."""


def start_stack(data_dir: Path, *, tls: bool = False, devices=DEVICES, **kwargs) -> Stack:
    """Start a Stack in ``data_dir`` with device accounts; ``pytest.fail`` (with the install
    hint) when it cannot start."""
    stack = Stack(data_dir, tls=tls, **kwargs)
    try:
        stack.prepare()
        stack.add_devices(devices)
        stack.start()
    except StackError as e:
        stack.stop()
        pytest.fail(str(e), pytrace=False)
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """A running stack (TLS listener on, devices ``m1``, ``m2``) shared by a test module."""
    s = start_stack(tmp_path_factory.mktemp("stack"), tls=True)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def fresh_stack(tmp_path) -> Iterator[Stack]:
    """A running stack of its own (no TLS, devices ``m1``, ``m2``) for a test that kills or
    restarts parts of it."""
    s = start_stack(tmp_path / "stack")
    try:
        yield s
    finally:
        s.stop()


# ------------------------------------------------------------------------------ InfluxDB
def influx_query(stack: Stack, q: str, user: str = "reader", *, epoch: str | None = None
                 ) -> list[dict]:
    """Run InfluxQL as ``user`` (``reader``, ``writer`` or ``admin``) on the database;
    returns the rows of all series as dicts of column -> value, with the series' GROUP BY
    tags merged in (and ``"_measurement"`` naming the series). Raises the client's typed
    errors. Times are RFC 3339 strings unless ``epoch="ns"`` (integer ns)."""
    rows = []
    for series in stack.influx(user).query(q, epoch=epoch):
        extra = {"_measurement": series.name, **series.tags}
        rows += [{**extra, **row} for row in series.rows]
    return rows


def influx_write(stack: Stack, lines: str | Iterable[str], user: str = "writer",
                 rp: str | None = None) -> None:
    """Write line protocol (a string or an iterable of lines, ns precision) to the database,
    into retention policy ``rp`` (None: the default one)."""
    stack.influx(user).write(lines, rp=rp)
