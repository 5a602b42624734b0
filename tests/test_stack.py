"""The real server stack (collector/stack): Mosquitto 2 and InfluxDB 1.x processes on
loopback, their accounts and ACLs, persistence across restarts, TLS and the CLI. No mocks."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
from pathlib import Path

import pytest
from support.commands import run_tingbao
from support.mqtt import MqttRefused, close, drain, mqtt_client, publish, subscribe
from support.stack import influx_query, influx_write

from tingbao.collector import stack as stack_mod
from tingbao.collector.influx import ConfigError, TransientError
from tingbao.collector.registry import load_registry
from tingbao.collector.schema import RP_FOREVER, RP_LEVELS
from tingbao.collector.stack import Stack, StackError, mqtt_connect_code
from tingbao.collector.stack_cli import site_meters
from tingbao.edge.cli.main import main

NOT_AUTHORIZED = 135  # MQTT v5 reason code
ACCEPTED = (0, 16)  # success, or success with no matching subscribers


def test_stack_starts_and_answers(stack):
    st = stack.status()
    for part in ("mqtt", "influxdb"):
        assert st[part]["alive"] and st[part]["answers"], st
    assert st["mqtt"]["version"].startswith("2.")
    assert st["influxdb"]["version"].startswith("1.")
    assert stack.influx(None).ping()  # answers without credentials, with its version
    assert mqtt_connect_code(stack.host, stack.mqtt_port, *stack.mqtt_account("collector")) == 0
    # secrets are private; the broker config says what the deployment relies on
    assert stat.S_IMODE(os.stat(stack.credentials_file).st_mode) == 0o600
    conf = stack.mqtt_config.read_text()
    for line in ("per_listener_settings false", "allow_anonymous false", "persistence true",
                 "max_queued_messages 1000000", f"listener {stack.mqtt_port} 127.0.0.1"):
        assert line in conf.splitlines()
    acl = stack.acl_file.read_text().splitlines()
    assert "pattern write tingbao/v1/+/+/%u/levels" in acl
    assert "pattern read tingbao/v1/+/+/%u/receipts" in acl
    assert not any(line.startswith("pattern write") and line.endswith(("/#", "/receipts"))
                   for line in acl)


@pytest.mark.parametrize("user, password", [(None, None), ("collector", "wrong"),
                                            ("m1", "wrong"), ("nobody", "x")])
def test_mqtt_refuses_anonymous_and_wrong_passwords(stack, user, password):
    with pytest.raises(MqttRefused) as refused:
        mqtt_client(stack, user, password)
    assert refused.value.reason_code == NOT_AUTHORIZED  # mosquitto 2.0.11 answers 135 to both


def test_devices_publish_only_their_own_meter(stack):
    collector = mqtt_client(stack, "collector")
    m1 = mqtt_client(stack, "m1")
    try:
        assert subscribe(collector, "$share/collectors/tingbao/v1/+/+/+/+") == [1]
        assert publish(m1, "tingbao/v1/e1/s1/m1/levels", b"own") in ACCEPTED
        assert publish(m1, "tingbao/v1/e1/s1/m2/levels", b"forged") == NOT_AUTHORIZED
        assert publish(m1, "tingbao/v1/e1/alerts", b"forged alert") == NOT_AUTHORIZED
        # the collector may not impersonate a meter either
        assert publish(collector, "tingbao/v1/e1/s1/m1/levels", b"forged") == NOT_AUTHORIZED
        got = [(m.topic, m.payload) for m in drain(collector)]
        assert got == [("tingbao/v1/e1/s1/m1/levels", b"own")]
        # a device can subscribe but is not allowed to read anything
        assert subscribe(m1, "tingbao/v1/#") == [1]
        assert publish(m1, "tingbao/v1/e1/s1/m1/status", b"x") in ACCEPTED
        assert drain(m1, 0.2) == []
    finally:
        close(collector)
        close(m1)


def test_receipts_only_collectors_write_and_only_their_meter_reads(stack):
    collector = mqtt_client(stack, "collector")
    analysis = mqtt_client(stack, "analysis")
    m1, m2 = mqtt_client(stack, "m1"), mqtt_client(stack, "m2")
    try:
        for c in (m1, m2, analysis):
            assert subscribe(c, "tingbao/v1/#") == [1]
        assert publish(collector, "tingbao/v1/e1/s1/m1/receipts", b"r1") in ACCEPTED
        assert publish(collector, "tingbao/v1/e1/s1/m2/receipts", b"r2") in ACCEPTED
        # devices may write no receipts at all, their own meter's neither; nor analysis
        assert publish(m1, "tingbao/v1/e1/s1/m1/receipts", b"forged") == NOT_AUTHORIZED
        assert publish(m2, "tingbao/v1/e1/s1/m1/receipts", b"forged") == NOT_AUTHORIZED
        assert publish(analysis, "tingbao/v1/e1/s1/m1/receipts", b"forged") == NOT_AUTHORIZED
        # devices publish only the data kinds
        for kind in ("levels", "bands", "status", "events"):
            assert publish(m1, f"tingbao/v1/e1/s1/m1/{kind}", b"x") in ACCEPTED
        assert publish(m1, "tingbao/v1/e1/s1/m1/other", b"x") == NOT_AUTHORIZED
        # each meter reads its own receipts only; analysis reads all of them
        assert [(m.topic, m.payload) for m in drain(m1)] == [
            ("tingbao/v1/e1/s1/m1/receipts", b"r1")]
        assert [(m.topic, m.payload) for m in drain(m2)] == [
            ("tingbao/v1/e1/s1/m2/receipts", b"r2")]
        got = [m.payload for m in drain(analysis) if m.topic.endswith("/receipts")]
        assert sorted(got) == [b"r1", b"r2"]
    finally:
        for c in (collector, analysis, m1, m2):
            close(c)


def test_services_publish_alerts_and_read_the_stream(stack):
    analysis = mqtt_client(stack, "analysis")
    collector = mqtt_client(stack, "collector")
    try:
        assert subscribe(analysis, "tingbao/v1/+/alerts") == [1]
        assert publish(collector, "tingbao/v1/e1/alerts", b"collector alert") in ACCEPTED
        assert publish(analysis, "tingbao/v1/e2/alerts", b"analysis alert") in ACCEPTED
        got = sorted(m.payload for m in drain(analysis))
        assert got == [b"analysis alert", b"collector alert"]
    finally:
        close(analysis)
        close(collector)


def test_device_added_while_running(stack):
    account = stack.add_device("m3-live")
    assert stack.add_device("m3-live") == account  # idempotent
    m3 = mqtt_client(stack, "m3-live")
    try:
        assert publish(m3, "tingbao/v1/e1/s1/m3-live/levels", b"x") in ACCEPTED
        assert publish(m3, "tingbao/v1/e1/s1/m1/levels", b"x") == NOT_AUTHORIZED
    finally:
        close(m3)
    with pytest.raises(ValueError):
        stack.add_device("bad/id")
    with pytest.raises(StackError, match="reserved"):
        stack.add_device("collector")


def test_influx_accounts(stack):
    line = "stack_test,meter=m1 ea=0.5"
    anonymous = stack.influx(None)  # no credentials: 401 Unauthorized
    with pytest.raises(ConfigError) as refused:
        anonymous.write([line])
    assert refused.value.status == 401
    with pytest.raises(ConfigError) as refused:
        anonymous.query("SHOW MEASUREMENTS")
    assert refused.value.status == 401
    influx_write(stack, [line])  # writer
    with pytest.raises(ConfigError, match="HTTP 403"):
        influx_query(stack, "SELECT * FROM stack_test", user="writer")
    rows = influx_query(stack, "SELECT ea, meter FROM stack_test", user="reader")
    assert [(r["meter"], r["ea"]) for r in rows] == [("m1", 0.5)]
    with pytest.raises(ConfigError, match="HTTP 403"):
        influx_write(stack, [line], user="reader")
    # retention policies: levels_1s (90 days) is the default, forever keeps rollups
    rps = {r["name"]: r for r in influx_query(stack, "SHOW RETENTION POLICIES", user="admin")}
    assert rps[RP_LEVELS]["duration"] == "2160h0m0s" and rps[RP_LEVELS]["default"]
    assert rps[RP_FOREVER]["duration"] == "0s" and not rps[RP_FOREVER]["default"]
    influx_write(stack, ["stack_rollup,meter=m1 ea=1.5 0"], rp=RP_FOREVER)  # 1970 is kept
    rows = influx_query(stack, f'SELECT ea FROM "{RP_FOREVER}".stack_rollup')
    assert [r["ea"] for r in rows] == [1.5]


def test_tls_listener(stack):
    assert stack.tls_port and stack.ca_file.exists()
    collector = mqtt_client(stack, "collector", tls=True)
    m1 = mqtt_client(stack, "m1", tls=True)
    try:
        assert subscribe(collector, "tingbao/v1/#") == [1]
        assert publish(m1, "tingbao/v1/e1/s1/m1/levels", b"over tls") in ACCEPTED
        assert [m.payload for m in drain(collector)] == [b"over tls"]
    finally:
        close(collector)
        close(m1)
    # a client that does not trust the stack's CA cannot connect
    with pytest.raises(ssl.SSLCertVerificationError):
        mqtt_connect_code(stack.host, stack.tls_port, *stack.mqtt_account("m1"),
                          ssl_context=ssl.create_default_context())


@pytest.mark.slow
def test_broker_restart_keeps_queued_qos1_for_offline_session(fresh_stack):
    s = fresh_stack
    port = s.mqtt_port
    # clean_start=False already on the first connect: mosquitto 2.0.11 writes a session to
    # disk only if its last CONNECT had clean start false (session expiry alone is not enough)
    sub = mqtt_client(s, "collector", client_id="collector-a", clean_start=False,
                      session_expiry=3600)
    assert subscribe(sub, "$share/collectors/tingbao/v1/+/+/+/levels") == [1]
    close(sub)  # offline; the session and its subscription stay
    m1 = mqtt_client(s, "m1")
    try:
        assert publish(m1, "tingbao/v1/e1/s1/m1/levels", b"queued while offline") in ACCEPTED
    finally:
        close(m1)
    s.stop_broker()  # SIGTERM: mosquitto saves its in-memory database
    assert not s.status()["mqtt"]["alive"]
    s.start_broker()
    assert s.mqtt_port == port and s.status()["mqtt"]["alive"]
    sub = mqtt_client(s, "collector", client_id="collector-a", clean_start=False,
                      session_expiry=3600)
    try:
        assert [m.payload for m in drain(sub, 1.0)] == [b"queued while offline"]
    finally:
        close(sub)


@pytest.mark.slow
def test_influx_kill_and_restart_keeps_data_and_accounts(fresh_stack):
    s = fresh_stack
    influx_write(s, ["kill_test,meter=m2 ea=2.0"])
    s.kill_influx()  # SIGKILL: the WAL is fsynced on every write
    assert not s.status()["influxdb"]["alive"]
    with pytest.raises(TransientError):  # unreachable
        influx_query(s, "SELECT * FROM kill_test")
    s.start_influx()
    assert [r["ea"] for r in influx_query(s, "SELECT ea FROM kill_test")] == [2.0]
    # a later stack on the same directory reuses ports, passwords and data
    s.stop()
    again = Stack(s.data_dir, retention="30d")
    assert again.credentials == s.credentials
    try:
        again.start()
        assert [r["ea"] for r in influx_query(again, "SELECT ea FROM kill_test")] == [2.0]
        rps = {r["name"]: r for r in influx_query(again, "SHOW RETENTION POLICIES", "admin")}
        assert rps[RP_LEVELS]["duration"] == "720h0m0s"
        assert mqtt_connect_code(again.host, again.mqtt_port, *again.mqtt_account("m2")) == 0
    finally:
        again.stop()


def test_start_failure_quotes_the_log(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        s = Stack(tmp_path / "stack", mqtt_port=busy.getsockname()[1], start_timeout=5)
        with pytest.raises(StackError, match="(?s)mosquitto.*last lines of .*mosquitto.log"):
            s.start()
    assert not s.status()["influxdb"]["alive"]


def test_missing_servers_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(stack_mod, "SBIN_DIRS", ())
    with pytest.raises(StackError, match="apt-get install mosquitto mosquitto-clients influxdb"):
        Stack(tmp_path / "stack").start()


@pytest.mark.slow
def test_cli_up_detach_status_down(tmp_path, capsys):
    data = tmp_path / "var" / "stack"
    site = stack_mod.CONFIG_DIR / "site.example.toml"
    up = run_tingbao("stack", "up", "--detach", "--data-dir", str(data), "--device", "m7",
                     "--site", str(site), "--retention", "30d", "--tls")
    try:
        assert up.returncode == 0, up.stderr
        assert "InfluxDB" in up.stdout and "credentials" in up.stdout
        status = run_tingbao("stack", "status", "--data-dir", str(data))
        assert status.returncode == 0, status.stderr
        state = json.loads(status.stdout)
        for part in ("mqtt", "influxdb"):
            assert state[part]["alive"] and state[part]["answers"], state
        assert state["mqtt"]["tls_answers"], state
        creds = Path(state["credentials_file"]).read_text()
        assert '"m7"' in creds and '"hl-stp-01"' in creds
        # in-process from here on (each `tingbao` start costs about 2 s of imports)
        assert main(["stack", "up", "--detach", "--data-dir", str(data)]) == 2
        assert "already runs" in capsys.readouterr().err
    finally:
        down = run_tingbao("stack", "down", "--data-dir", str(data))
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout) == {"influxdb": "stopped", "mqtt": "stopped"}
    assert main(["stack", "status", "--data-dir", str(data)]) == 1  # 1: not running
    state = json.loads(capsys.readouterr().out)
    assert not state["mqtt"]["alive"] and not state["influxdb"]["alive"]
    assert not state["mqtt"]["answers"] and not state["influxdb"]["answers"]


def test_site_example_is_consistent():
    """configs/site.example.toml (as shipped in the package) passes the site registry's checks
    (safe ids, references that resolve, job hours that fill the shift: tests/test_registry.py
    tests each rule), covers the three key industries, and ``stack up --site`` makes one
    account per meter of it."""
    path = stack_mod.CONFIG_DIR / "site.example.toml"
    registry = load_registry(path)
    assert {e.industry_zh for e in registry.enterprises} == {"机械", "轻工", "建材"}
    assert site_meters(path) == sorted(m.id for m in registry.meters)
    for m in registry.meters:
        gains = m.pa_per_unit
        assert len(gains) == m.channels if isinstance(gains, tuple) else m.channels >= 1
    for job in registry.job_types:
        for task in job.tasks:
            assert task.meter is not None or 40.0 <= task.laeq_db <= 140.0
