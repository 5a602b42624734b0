"""The one settings loader (edge/settings.py): declared keys, types, ranges, nested tables,
password files, renamed keys, and errors that name the file, section and key."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from tingbao.collector.settings import load_config as load_collector
from tingbao.edge.agent_settings import check_config
from tingbao.edge.settings import (
    ConfigError,
    Section,
    from_mapping,
    load,
    section_from_mapping,
    setting,
)


@dataclasses.dataclass(frozen=True)
class Inner(Section):
    hours: float = setting(unit="h", lo=0.0, hi=24.0)
    meter: str | None = setting(None)


@dataclasses.dataclass(frozen=True)
class Part(Section):
    count: int = setting(3, lo=1, hi=10)
    level_db: float = setting(85.0, unit="dB", renamed_from={"level_dba": 1})
    wait_s: float = setting(0.2, unit="s", renamed_from={"wait_ms": 1e-3})
    mode: str = setting("a", choices=("a", "b"))
    path: str | None = setting(None, path=True)
    secret_file: str | None = setting(None, path=True, password_into="secret")
    secret: str | None = setting(None, internal=True)
    inner: Inner | None = setting(None)
    tasks: tuple[Inner, ...] = setting(())
    gains: float | tuple[float, ...] = setting(1.0, lo=0.0)


@dataclasses.dataclass(frozen=True)
class Root(Section):
    part: Part


def test_values_defaults_paths_passwords_and_nesting(tmp_path):
    (tmp_path / "pw").write_text("s3cret\nignored second line\n")
    got = from_mapping(Root, {"part": {
        "count": 5, "level_db": 90, "path": "sub/x.db", "secret_file": "pw",
        "inner": {"hours": 2}, "tasks": [{"hours": 1, "meter": "m1"}, {"hours": 7}],
        "gains": [1, 2.5]}}, base_dir=tmp_path)
    p = got.part
    assert (p.count, p.level_db, p.wait_s, p.mode) == (5, 90.0, 0.2, "a")
    assert isinstance(p.level_db, float) and p.path == str(tmp_path / "sub" / "x.db")
    assert p.secret == "s3cret" and p["count"] == 5
    assert p.inner == Inner(hours=2.0) and p.tasks[0].meter == "m1" and p.gains == (1.0, 2.5)
    assert from_mapping(Root, {}).part == Part()


def test_renamed_keys_are_read_scaled_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="tingbao.settings"):
        p = from_mapping(Root, {"part": {"wait_ms": 250, "level_dba": 80.0}}).part
    assert p.wait_s == pytest.approx(0.25) and p.level_db == 80.0
    assert "wait_ms is now wait_s (value × 0.001)" in caplog.text
    with pytest.raises(ConfigError, match=r"\[part\] wait_ms: give wait_s only"):
        from_mapping(Root, {"part": {"wait_ms": 250, "wait_s": 0.3}})


@pytest.mark.parametrize("table, says", [
    ({"cont": 1}, "[part] has unknown key(s) ['cont']"),
    ({"count": "5"}, "[part] count = '5': expected int"),
    ({"count": True}, "[part] count = True: expected int"),
    ({"count": 11}, "[part] count = 11: must be in 1..10"),
    ({"level_db": float("nan")}, "[part] level_db = nan: must be"),
    ({"mode": "c"}, "[part] mode = 'c': one of a, b"),
    ({"inner": 3}, "[part] inner = 3: expected a table"),
    ({"inner": {"hours": 25}}, "[part inner] hours = 25: must be in 0..24 h"),
    ({"tasks": [{"hours": 1}, {"minutes": 3}]}, "[part tasks[1]] has unknown key(s)"),
    ({"inner": {}}, "[part inner] hours is required"),
    ({"gains": [1, -1]}, "[part] gains = [1, -1]: must be ≥ 0"),
    ({"secret_file": "nope"}, "cannot read password file"),
])
def test_errors_name_section_and_key(table, says, tmp_path):
    with pytest.raises(ConfigError) as e:
        from_mapping(Root, {"part": table}, base_dir=tmp_path)
    assert says in str(e.value)
    assert e.value.entry is not None and e.value.entry.startswith("part")


def test_file_errors_name_the_file(tmp_path):
    (tmp_path / "c.toml").write_text("[part]\ncount = 0\n")
    with pytest.raises(ConfigError) as e:
        load(Root, tmp_path / "c.toml")
    assert str(e.value).startswith(f"{tmp_path / 'c.toml'}: [part] count = 0")
    assert (e.value.file, e.value.entry, e.value.key) == (str(tmp_path / "c.toml"), "part",
                                                          "count")
    (tmp_path / "bad.toml").write_text("[part\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(Root, tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="unknown section"):
        from_mapping(Root, {"other": {}})
    with pytest.raises(ConfigError, match="no such configuration file"):
        load(Root, tmp_path / "missing.toml")
    assert section_from_mapping(Inner, {"hours": 1}, "x", tmp_path).hours == 1.0


def test_configs_written_before_the_renames_still_load(tmp_path):
    """The agent's and the collector's old key names (before the unit suffixes)."""
    (tmp_path / "pw").write_text("pw\n")
    agent = check_config({
        "meter": {"id": "m1", "enterprise": "e", "site": "s", "interval": 0.5},
        "source": {"kind": "synthetic", "duration": 10.0, "samplerate": 44100},
        "mqtt": {"password_file": str(tmp_path / "pw"), "keepalive": 60, "backlog_rate": 50},
        "outbox": {"path": str(tmp_path / "o.sqlite")}})
    assert (agent.meter.interval_s, agent.source.duration_s, agent.source.samplerate_hz,
            agent.mqtt.keepalive_s, agent.mqtt.backlog_per_s) == (0.5, 10.0, 44100.0, 60, 50.0)
    (tmp_path / "c.toml").write_text(
        '[collector]\nbatch_ms = 300\nknown_meters = ["m1"]\n[rollups]\nsettle_ms = 1500\n')
    c = load_collector(tmp_path / "c.toml")
    assert c.collector.batch_s == pytest.approx(0.3) and c.rollups.settle_s == 1.5
