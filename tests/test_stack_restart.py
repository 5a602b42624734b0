"""Restart one server of a detached stack: ``tingbao stack status`` says which is down,
``tingbao stack up`` starts only that one (same port, same data, the running one keeps its
pid) and ``state.json`` lists the new pid. Real Mosquitto and InfluxDB processes, no mocks."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from support.commands import run_tingbao
from support.wait import wait_for

from tingbao.collector.schema import DATABASE, RP_LEVELS
from tingbao.collector.stack import Stack, load_state, mqtt_connect_code, pid_alive
from tingbao.edge.cli.main import main

NAMES = {"mqtt": "mosquitto", "influxdb": "influxd"}


def _status(data, capsys) -> tuple[int, dict, str]:
    code = main(["stack", "status", "--data-dir", str(data)])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["influxdb", "mqtt"])
def test_up_restarts_only_the_server_that_is_down(tmp_path, capsys, victim):
    data = tmp_path / "stack"
    other = "mqtt" if victim == "influxdb" else "influxdb"
    up = run_tingbao("stack", "up", "--detach", "--data-dir", str(data), "--device", "m7",
                     "--retention", "30d")
    assert up.returncode == 0, up.stderr
    try:
        before = load_state(data)
        stack = Stack(data, mqtt_port=before["mqtt"]["port"],
                      influx_port=before["influxdb"]["port"])  # clients only: no start
        stack.influx("writer").write(f"restart,probe=1 v=42 {time.time_ns() - 10**9}")

        pid = before[victim]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid, before[victim]["config"]), 10, f"{victim} gone")

        code, state, err = _status(data, capsys)
        assert code == 1 and state["down"] == [victim], state
        assert not state[victim]["alive"] and state[other]["alive"], state
        assert f"{NAMES[victim]}: DOWN" in err and f"{NAMES[other]}: running" in err, err

        # both running: refused; one down: only that one is started
        assert main(["stack", "up", "--detach", "--data-dir", str(data)]) == 0
        err = capsys.readouterr().err
        assert f"{NAMES[other]} runs already (pid {before[other]['pid']}): left alone" in err
        assert f"{NAMES[victim]} is down: starting it on port {before[victim]['port']}" in err

        code, state, err = _status(data, capsys)
        assert code == 0 and state["down"] == [], (state, err)
        assert state[other]["pid"] == before[other]["pid"]  # left alone
        assert state[victim]["pid"] != pid and pid_alive(state[victim]["pid"],
                                                          state[victim]["config"])
        for key in ("mqtt", "influxdb"):
            assert state[key]["port"] == before[key]["port"] and state[key]["answers"]
        assert state["influxdb"]["retention_policies"][RP_LEVELS] == "30d"
        assert load_state(data)[victim]["pid"] == state[victim]["pid"]  # state.json updated

        # same data, same accounts
        rows = stack.influx().query_rows("SELECT v FROM restart")
        assert [r["v"] for r in rows] == [42]
        assert mqtt_connect_code(stack.host, stack.mqtt_port, *stack.mqtt_account("m7")) == 0
        retention = stack.influx("admin").query_rows(f"SHOW RETENTION POLICIES ON {DATABASE}")
        assert {r["name"]: r["duration"] for r in retention}[RP_LEVELS].startswith("720h")

        assert main(["stack", "up", "--detach", "--data-dir", str(data)]) == 2
        assert "already runs" in capsys.readouterr().err
    finally:
        down = run_tingbao("stack", "down", "--data-dir", str(data))
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout) == {"influxdb": "stopped", "mqtt": "stopped"}


@pytest.mark.slow
def test_status_with_both_down_and_up_starts_both(tmp_path, capsys):
    """``stack down`` then ``status``: both DOWN (exit 1); ``up`` starts both again on the
    recorded ports with the data kept."""
    data = tmp_path / "stack"
    assert main(["stack", "up", "--detach", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    before = load_state(data)
    try:
        assert main(["stack", "down", "--data-dir", str(data)]) == 0
        capsys.readouterr()
        code, state, err = _status(data, capsys)
        assert code == 1 and sorted(state["down"]) == ["influxdb", "mqtt"]
        assert "mosquitto: DOWN" in err and "influxd: DOWN" in err
        assert main(["stack", "up", "--detach", "--data-dir", str(data)]) == 0
        capsys.readouterr()
        code, state, err = _status(data, capsys)
        assert code == 0 and state["down"] == [], err
        for key in ("mqtt", "influxdb"):
            assert state[key]["port"] == before[key]["port"]
    finally:
        main(["stack", "down", "--data-dir", str(data)])
