"""The site registry: the example loads; every kind of error names the file, the table entry
and the key and says what to do; a running watcher picks up an edit and refuses a broken one;
regulatory profiles are data."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import pytest
from support.wait import wait_for

from tingbao.collector.registry import (
    ConfigError,
    RegistryWatcher,
    load_registry,
    profile,
    profile_ids,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "configs" / "site.example.toml"


def test_the_example_loads_and_is_the_single_source_of_meters():
    reg = load_registry(EXAMPLE)
    assert reg.profile.id == "CN-GBZ"
    assert len(reg.enterprises) == 3 and {e.group for e in reg.enterprises} == {
        "pilot", "comparison"}
    assert "hl-stp-01" in reg.meter_ids and len(reg.meter_ids) == len(reg.meters) == 11
    assert reg.meter("hl-mch-01").pa_per_unit == (20.0, 19.6)
    jiamei = reg.enterprise("dg-jiamei")
    assert jiamei.shift.hours == 10.0 and jiamei.shift.start == "07:30"
    for job in reg.job_types:  # task hours fill the shift
        assert sum(t.hours for t in job.tasks) == pytest.approx(
            reg.enterprise(job.enterprise).shift.hours)
    assert len(reg.digest) == 64


def _edit(tmp_path, old: str, new: str, count: int = 1) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text, old
    path = tmp_path / "site.toml"
    path.write_text(text.replace(old, new, count), encoding="utf-8")
    return path


@pytest.mark.parametrize("old, new, entry, key, says", [
    # an unknown meter in a task
    ('{ meter = "hl-mch-01", hours = 6.5', '{ meter = "hl-mch-09", hours = 6.5',
     "[[job_types]] #2 'cnc-operator'", "tasks[0].meter", "= 'hl-mch-09': unknown meter"),
    # a duplicate meter id anywhere in the deployment (here in another enterprise)
    ('id = "jm-cut-01"', 'id = "hl-stp-01"', "[[meters]] #6 'hl-stp-01'", "id",
     "duplicate meter id"),
    # shift hours outside 0–24
    ("shift = { start = \"07:30\", hours = 10.0", "shift = { start = \"07:30\", hours = 25.0",
     "[[enterprises]] #2 'dg-jiamei' shift", "hours", "must be in"),
    # task hours that do not add up to the shift
    ('{ meter = "hl-asm-01", hours = 7.0', '{ meter = "hl-asm-01", hours = 6.0',
     "[[job_types]] #4 'assembler'", "tasks", "add up to 7 h but the shift"),
    # an unknown scene
    ('scene = "grinding" }', 'scene = "press_line" }', "[[meters]] #4 'hl-grd-01'",
     "source.scene", "= 'press_line': unknown scene"),
    # an unknown profile
    ('profile = "CN-GBZ"', 'profile = "CN-GBZ-2019"', "regulation", "profile",
     "unknown regulatory profile"),
    # a meter in a site that its enterprise does not have
    ('site = "panel"\nposition_zh = "电子开料锯上料位"', 'site = "pressing"\nposition_zh = "x"',
     "[[meters]] #6 'jm-cut-01'", "site", "no such site in enterprise 'dg-jiamei'"),
    # a wrong type and an unknown key
    ("channels = 2 ", 'channels = "2" ', "[[meters]] #3 'hl-mch-01'", "channels", "expected int"),
    ("impulsive = true\nsource = { kind = \"synthetic\", scene = \"stamping\" }",
     "impulsiv = true\nsource = { kind = \"synthetic\", scene = \"stamping\" }",
     "[[meters]] #1 'hl-stp-01'", None, "unknown key(s) ['impulsiv']"),
    # a task at a meter of another enterprise
    ('{ meter = "jm-edg-01", hours = 8.5', '{ meter = "hl-asm-01", hours = 8.5',
     "[[job_types]] #6 'edge-bander'", "tasks[0].meter", "belongs to enterprise 'fs-hongli'"),
    # a dose/TWA profile in force; a profile named twice side by side
    ('profile = "CN-GBZ"', 'profile = "OSHA"', "regulation", "profile",
     "cannot be the profile in force"),
    ('profiles = ["CN-GBZ", "OSHA", "NIOSH", "EU-2003-10-EC"]',
     'profiles = ["CN-GBZ", "OSHA", "OSHA"]', "analysis", "profiles", "names a profile twice"),
    # workdays that do not match days_per_week
    ("shift = { start = \"07:30\", hours = 10.0", "shift = { start = \"07:30\", workdays = "
     "[1, 2, 3], hours = 10.0", "[[enterprises]] #2 'dg-jiamei' shift", "workdays",
     "name 3 days but days_per_week"),
])
def test_errors_name_file_entry_and_key(tmp_path, old, new, entry, key, says):
    path = _edit(tmp_path, old, new)
    with pytest.raises(ConfigError) as e:
        load_registry(path)
    err = e.value
    text = str(err)
    assert err.file == str(path) and text.startswith(f"{path}: ")
    assert err.entry == entry and err.key == key, (err.entry, err.key, text)
    assert (entry if entry.startswith("[") else f"[{entry}]") in text and says in text
    if key is not None:
        assert key in text


def test_errors_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"declare it in \[\[meters\]\] or name one of"):
        load_registry(_edit(tmp_path, '{ meter = "hl-mch-01", hours = 6.5',
                            '{ meter = "nope", hours = 6.5'))
    with pytest.raises(ConfigError, match="one of CN-GBZ"):
        load_registry(_edit(tmp_path, 'profile = "CN-GBZ"', 'profile = "X"'))
    with pytest.raises(ConfigError, match="no such site registry file"):
        load_registry(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[deployment\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_registry(tmp_path / "bad.toml")


def test_workdays_default_from_monday_or_as_given():
    reg = load_registry(EXAMPLE)
    six = next(e for e in reg.enterprises if e.shift.days_per_week == 6)
    assert six.shift.weekdays == {1, 2, 3, 4, 5, 6}  # Monday … Saturday
    assert six.shift.works_on(dt.date(2026, 11, 28)) and not six.shift.works_on(
        dt.date(2026, 11, 29))  # Saturday yes, Sunday no


def test_profiles_are_dated_data():
    assert {"CN-GBZ", "OSHA", "NIOSH", "EU-2003-10-EC"} <= set(profile_ids())
    cn = profile("CN-GBZ")
    # GBZ/T 229.4-2012: I 85 ≤ L < 90, II 90 ≤ L < 94, III 94 ≤ L < 100, IV ≥ 100; 80 noise work
    assert [(g.code, g.from_db) for g in cn.grades] == [
        ("I", 85.0), ("II", 90.0), ("III", 94.0), ("IV", 100.0)]
    assert cn.noise_work_db == 80.0 and cn.lex_limit_db == 85.0 and cn.exchange_rate_db == 3.0
    # GBZ 2.2-2007 impulse peak limits by impulses per day
    assert [(p.max_impulses_per_day, p.limit_db) for p in cn.peak_limits] == [
        (100, 140.0), (1000, 130.0), (10000, 120.0)]
    assert cn.week_divisor_days == 5 and cn.checked.isoformat() == "2026-11-29"
    osha = profile("OSHA")
    assert (osha.lex_limit_db, osha.exchange_rate_db, osha.threshold_db,
            osha.action_level_db) == (90.0, 5.0, 80.0, 85.0)
    eu = profile("EU-2003-10-EC")
    assert (eu.lower_action_db, eu.action_level_db, eu.lex_limit_db) == (80.0, 85.0, 87.0)
    assert (eu.lower_action_peak_db, eu.action_peak_db, eu.peak_ceiling_db) == (
        135.0, 137.0, 140.0)
    with pytest.raises(ConfigError, match="unknown regulatory profile"):
        profile("GBZ-1995")


def test_hot_reload_takes_an_edit_and_refuses_a_broken_one(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    changes = []
    done = threading.Event()

    def on_change(new, old):
        changes.append((sorted(new.meter_ids - old.meter_ids),
                        sorted(old.meter_ids - new.meter_ids)))
        done.set()

    watcher = RegistryWatcher(path, on_change=on_change, poll_s=0.05).start()
    try:
        assert "ht-pol-01" in watcher.current.meter_ids
        # an edit: a meter renamed (and the job that uses it follows)
        text = path.read_text(encoding="utf-8").replace("ht-pol-01", "ht-pol-02")
        path.write_text(text, encoding="utf-8")
        wait_for(done.is_set, 10, "the watcher to accept the edit", interval=0.02)
        assert changes == [(["ht-pol-02"], ["ht-pol-01"])]
        assert "ht-pol-02" in watcher.current.meter_ids and watcher.reloads == 1
        # a broken edit: refused with its errors, the registry in force stays
        good = watcher.current
        path.write_text(text.replace('{ meter = "ht-prs-01", hours = 7.0',
                                     '{ meter = "ht-prs-09", hours = 7.0'), encoding="utf-8")
        wait_for(lambda: watcher.refused == 1, 10, "the watcher to refuse the broken edit",
                 interval=0.02)
        assert watcher.current is good
        assert "tasks[0].meter = 'ht-prs-09': unknown meter" in watcher.last_error
        assert str(path) in watcher.last_error
        # a touch without a change is no reload; SIGHUP-style request reloads a fixed file
        path.write_text(text, encoding="utf-8")
        os.utime(path)
        wait_for(lambda: watcher.last_error is None or watcher.refused > 1, 10,
                 "the watcher to read the fixed file", interval=0.02)
        assert watcher.current.digest == good.digest and watcher.reloads == 1
        watcher.request_reload()
        assert len(changes) == 1
    finally:
        watcher.stop()
