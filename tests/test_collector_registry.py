"""The collector takes its known meters from the site registry and follows edits of it while
it runs: on SIGHUP, or when the file changes; a broken edit is refused with its errors and the
registry in force stays (real Mosquitto and InfluxDB)."""

from __future__ import annotations

import os
import signal
import time
import tomllib
from pathlib import Path

import pytest
from support.collector import collector_process
from support.commands import free_port, metrics
from support.configs import write_collector_config, write_toml
from support.mqtt import close, mqtt_client, publish
from support.wait import wait_for

from tingbao.collector import cli, schema
from tingbao.collector.service import Collector
from tingbao.edge import contract

ENT = "reg-ent"


def registry_text(meters: list[str], task_meter: str | None = None) -> str:
    """A small registry: one enterprise, one site, ``meters``, one job at the first meter."""
    lines = ['[regulation]\nprofile = "CN-GBZ"\n',
             f'[[enterprises]]\nid = "{ENT}"\nname_zh = "测试"\nindustry = "machinery"\n'
             'group = "pilot"\nshift = { start = "22:00", hours = 8.0 }\n',
             f'[[sites]]\nid = "press"\nenterprise = "{ENT}"\nname_zh = "冲压"\n']
    for m in meters:
        lines.append(f'[[meters]]\nid = "{m}"\nenterprise = "{ENT}"\nsite = "press"\n'
                     'source = { kind = "synthetic", scene = "stamping" }\n')
    lines.append(f'[[job_types]]\nid = "op"\nenterprise = "{ENT}"\nname_zh = "冲压工"\n'
                 f'tasks = [{{ meter = "{task_meter or meters[0]}", hours = 8.0 }}]\n')
    return "\n".join(lines)


def edit(site: Path, text: str) -> None:
    """Replace the registry file as an editor that saves by rename does."""
    tmp = site.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, site)


def payload(meter: str, seq: int) -> bytes:
    start = time.time_ns() // 10**9 * 10**9 - 5 * 10**9 + seq * 10**6
    p = {"schema": "tingbao.levels/1", "meter": meter, "seq": seq, "channel": 0,
         "start_ns": start, "duration_s": 1.0, "ea": (20e-6) ** 2 * 10 ** 8.5, "coverage": 1.0,
         "overload": False, "calibrated": True}
    p.update(dict.fromkeys(contract.LEVEL_FIELDS, 85.0))
    return contract.encode(p)


def stored(stack, meter: str) -> int:
    rows = stack.influx().query_rows(
        f"SELECT COUNT(seq) FROM {schema.LEVELS} WHERE meter = '{meter}' AND "
        f"enterprise = '{ENT}'")
    return rows[0]["count"] if rows else 0


def dead(stack, meter: str) -> int:
    rows = stack.influx().query_rows(
        f"SELECT COUNT(payload_bytes) FROM {schema.DEAD_LETTERS} WHERE stage = 'meter' AND "
        f"reason =~ /'{meter}'/")
    return rows[0]["count"] if rows else 0


def site_config(stack, tmp_path: Path, site: Path, client_id: str, **kwargs) -> Path:
    """A collector config whose known meters come from ``site`` (the registry)."""
    path = write_collector_config(stack, tmp_path, client_id=client_id, group=client_id,
                                  **kwargs)
    cfg = tomllib.loads(path.read_text())
    del cfg["collector"]["known_meters"]
    cfg["collector"]["site"] = str(site)
    cfg["collector"]["registry_poll_s"] = 0.1  # s: the file is checked often
    write_toml(path, cfg)
    return path


def test_known_meters_follow_the_registry_file(stack, tmp_path):
    site = tmp_path / "site.toml"
    site.write_text(registry_text(["m1"]), encoding="utf-8")
    collector = Collector(cli.load_config(site_config(stack, tmp_path, site, "reg-a")))
    collector.start()
    dev1, dev2 = mqtt_client(stack, "m1"), mqtt_client(stack, "m2")
    try:
        assert collector.ready.wait(10)
        assert collector.known_meters == {"m1"}
        publish(dev1, contract.topic(ENT, "press", "m1", "levels"), payload("m1", 1))
        publish(dev2, contract.topic(ENT, "press", "m2", "levels"), payload("m2", 1))
        wait_for(lambda: stored(stack, "m1") == 1 and dead(stack, "m2") == 1, 20,
                 "m1 stored and m2 dead-lettered as unknown")
        # an accepted edit: m2 is declared; the collector reloads the file by itself
        edit(site, registry_text(["m1", "m2"]))
        wait_for(lambda: collector.counters()["registry"]["reloads"] == 1, 20,
                 "the collector to reload the edited registry")
        assert collector.known_meters == {"m1", "m2"}
        publish(dev2, contract.topic(ENT, "press", "m2", "levels"), payload("m2", 2))
        wait_for(lambda: stored(stack, "m2") == 1, 20, "m2 stored once it is declared")
        # a broken edit (a task at an undeclared meter): refused, the registry in force stays
        edit(site, registry_text(["m1"], task_meter="m9"))
        wait_for(lambda: collector.counters()["registry"]["refused"] >= 1, 20,
                 "the collector to refuse the broken registry")
        reg = collector.counters()["registry"]
        assert "unknown meter" in reg["last_error"] and str(site) in reg["last_error"]
        assert collector.known_meters == {"m1", "m2"}
        publish(dev2, contract.topic(ENT, "press", "m2", "levels"), payload("m2", 3))
        wait_for(lambda: stored(stack, "m2") == 2, 20, "m2 still stored after a broken edit")
    finally:
        close(dev1)
        close(dev2)
        collector.stop()


@pytest.mark.slow  # a collector process: start, subscribe, SIGHUP
def test_sighup_reloads_the_registry_of_a_running_collector(stack, tmp_path):
    site = tmp_path / "site.toml"
    site.write_text(registry_text(["m1"]), encoding="utf-8")
    port = free_port()
    config = site_config(stack, tmp_path, site, "reg-b", metrics_port=port)
    cfg = tomllib.loads(config.read_text())
    cfg["collector"]["registry_poll_s"] = 3600.0  # only SIGHUP can make it read the file
    write_toml(config, cfg)
    proc = collector_process(config, tmp_path / "collector.log")
    try:
        assert metrics(port)["registry"]["meters"] == 1
        site.write_text(registry_text(["m1", "m2"]), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: (metrics(port) or {}).get("registry", {}).get("meters") == 2, 20,
                 "the collector to reload on SIGHUP",
                 detail=lambda: (tmp_path / "collector.log").read_text()[-2000:])
        site.write_text("[[meters]]\nid = 'bad id'\n", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: (metrics(port) or {})["registry"]["refused"] == 1, 20,
                 "the collector to refuse the broken edit")
        m = metrics(port)
        assert m["registry"]["meters"] == 2 and "not a valid id" in m["registry"]["last_error"]
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_broken_registry_stops_the_collector_at_start(stack, tmp_path):
    site = tmp_path / "site.toml"
    site.write_text(registry_text(["m1"], task_meter="m9"), encoding="utf-8")
    with pytest.raises(cli.ConfigError, match=r"tasks\[0\]\.meter = 'm9': unknown meter"):
        cli.load_config(site_config(stack, tmp_path, site, "reg-c"))
