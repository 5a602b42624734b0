"""Line protocol: escaping of hostile strings, exact floats, the points of each message kind,
and a round trip through the real InfluxDB (the ``stack`` fixture) that must give back every
string and number unchanged."""

from __future__ import annotations

import math
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tingbao.collector import lineprotocol as lp
from tingbao.collector.deadletter import DeadLetter, printable
from tingbao.collector.schema import BANDS, DEAD_LETTERS, EVENTS, LEVELS, STATUS
from tingbao.edge import contract
from tingbao.edge.contract import ContractError

NOW = time.time_ns()

HOSTILE = [
    "plain", "with space", "with,comma", "with=equals", 'with"quote', "with'apostrophe",
    "back\\slash", "a\\\\double", "\\leading", "mid\\dle\\x", "tab\there", "unicode 听保 é ß",
    "emoji 🎧", "all , = \" ' \\x mixed", "#hash", "x" * 300, "=", ",", " ", '"', "'",
    "null\x00byte",
]
"""Strings every name and value position must carry unchanged."""

REFUSED_NAMES = ["", "new\nline", "carriage\rreturn", "trailing\\", "\\", "a\\,b", "a\\=b",
                 "a\\ b", "lone\udc80surrogate"]
"""Names line protocol cannot carry unambiguously (see the module docstring)."""


# ------------------------------------------------------------------------------- escaping
def test_escaping_of_each_position():
    assert lp.escape_measurement("a b,c=d") == "a\\ b\\,c=d"
    assert lp.escape_key("a b,c=d") == "a\\ b\\,c\\=d"
    assert lp.escape_key("x\\y") == "x\\y"  # a lone backslash is kept as it is
    assert lp.escape_string('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert lp.escape_string("") == '""'


@pytest.mark.parametrize("bad", REFUSED_NAMES)
def test_names_that_cannot_round_trip_are_refused(bad):
    with pytest.raises(lp.LineProtocolError):
        lp.escape_key(bad)
    with pytest.raises(lp.LineProtocolError):
        lp.line("m", {"t": bad}, {"f": 1.0}, 1)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "bad\udc80"])
def test_string_values_with_newlines_are_refused(bad):
    with pytest.raises(lp.LineProtocolError, match="newline|Unicode"):
        lp.escape_string(bad)


def test_measurement_rules():
    with pytest.raises(lp.LineProtocolError, match="comment"):
        lp.escape_measurement("#levels")
    with pytest.raises(lp.LineProtocolError):
        lp.escape_measurement("levels\\")
    assert lp.escape_measurement("x=y") == "x=y"  # '=' needs no escape in a measurement


def test_values_and_types():
    assert lp.format_value(True) == "true" and lp.format_value(False) == "false"
    assert lp.format_value(3) == "3i" and lp.format_value(-(2**63)) == f"{-(2**63)}i"
    assert lp.format_value(80.0) == "80.0" and lp.format_value(4e-10) == "4e-10"
    assert lp.format_value(1.5e20) == "1.5e+20"
    for bad in (math.nan, math.inf, -math.inf, 2**63, [1], {"a": 1}, None, b"x"):
        with pytest.raises(lp.LineProtocolError):
            lp.format_value(bad)


def test_line_sorts_tags_drops_none_and_refuses_reserved_names():
    s = lp.line("m", {"z": "1", "a": "2"}, {"f": 1.0, "g": None, "s": "x"}, 5)
    assert s == 'm,a=2,z=1 f=1.0,s="x" 5'
    with pytest.raises(lp.LineProtocolError, match="no fields"):
        lp.line("m", {}, {"f": None}, 5)
    with pytest.raises(lp.LineProtocolError, match="time"):
        lp.line("m", {}, {"time": 1.0}, 5)
    with pytest.raises(lp.LineProtocolError, match="time"):
        lp.line("m", {"time": "x"}, {"f": 1.0}, 5)
    with pytest.raises(lp.LineProtocolError, match="strings"):
        lp.line("m", {"t": 3}, {"f": 1.0}, 5)
    with pytest.raises(lp.LineProtocolError, match="timestamp"):
        lp.line("m", {}, {"f": 1.0}, 1.5)
    with pytest.raises(lp.LineProtocolError, match="64 bits"):
        lp.line("m", {}, {"f": 1.0}, 2**63)


@settings(max_examples=500, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_reads_back_as_the_same_double(x):
    text = lp.format_value(x)
    assert struct.pack("<d", float(text)) == struct.pack("<d", x)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_either_refused_or_escaped_without_raw_separators(s):
    try:
        out = lp.line("m", {"t": s}, {"k": s}, 1)
    except lp.LineProtocolError:
        return
    assert "\n" not in out and "\r" not in out
    head, _, _ = out.partition(" k=")  # the first unescaped space ends the tag set
    assert head.startswith("m,t=")


# ------------------------------------------------------------------------- message points
def _msg(kind: str, payload: dict, enterprise="e1", site="s1", meter="m1"):
    return contract.validate(contract.topic(enterprise, site, meter, kind),
                             contract.encode(payload), now_ns=NOW)


def levels_payload(**over):
    p = {"schema": "tingbao.levels/1", "meter": "m1", "seq": 7, "channel": 1,
         "start_ns": NOW - 10**9, "duration_s": 1, "ea": 4e-10, "coverage": 1.0,
         "overload": False, "calibrated": True, "laeq": 80, "lceq": 81.5, "lcpeak": 110.25,
         "lzpeak": None, "lafmax": 88.0, "lasmax": 86.0, "lafmin": 70.0, "laf5": 87.0,
         "laf10": 86.5, "laf50": 84.0, "laf90": 81.0, "laf95": 80.5}
    p.update(over)
    return p


def test_levels_point():
    (line,) = lp.message_lines(_msg("levels", levels_payload()))
    head, fields, ts = line.split(" ")
    assert head == f"{LEVELS},channel=1,enterprise=e1,meter=m1,site=s1"
    assert ts == str(NOW - 10**9)
    f = dict(kv.split("=") for kv in fields.split(","))
    assert f["laeq"] == "80.0"  # an integer level is stored as a float (no type conflicts)
    assert f["ea"] == "4e-10" and f["duration_s"] == "1.0" and f["seq"] == "7i"
    assert f["overload"] == "false" and f["calibrated"] == "true"
    assert "lzpeak" not in f  # null: no field
    assert set(f) == {*contract.LEVEL_FIELDS, "ea", "coverage", "duration_s", "seq",
                      "overload", "calibrated"} - {"lzpeak"}


def test_multichannel_levels_give_one_point_per_channel():
    one = levels_payload()
    shared = {k: one[k] for k in ("schema", "meter", "seq", "start_ns", "duration_s",
                                  "calibrated")}
    chans = [{k: v for k, v in levels_payload(channel=ch, laeq=70 + ch).items()
              if k not in shared} for ch in (0, 5)]
    lines = lp.message_lines(_msg("levels", {**shared, "channels": chans}))
    assert [ln.split(" ")[0] for ln in lines] == [
        f"{LEVELS},channel=0,enterprise=e1,meter=m1,site=s1",
        f"{LEVELS},channel=5,enterprise=e1,meter=m1,site=s1"]
    assert "laeq=70.0," in lines[0] and "laeq=75.0," in lines[1]
    # each is the line the one-channel form of the same record gives
    (single,) = lp.message_lines(_msg("levels", levels_payload(channel=5, laeq=75)))
    assert lines[1] == single


def test_bands_point_names_fields_by_band():
    p = {"schema": "tingbao.bands/1", "meter": "m1", "seq": 3, "channel": 0,
         "start_ns": NOW - 10**9, "duration_s": 1.0, "fraction": 3,
         "bands": {"31.5": 40.0, "1000": 60.5, "8000": None}}
    (line,) = lp.message_lines(_msg("bands", p))
    assert line.startswith(f"{BANDS},channel=0,enterprise=e1,meter=m1,site=s1 ")
    assert "b31_5=40.0" in line and "b1000=60.5" in line and "b8000" not in line
    assert "fraction=3i" in line and "seq=3i" in line
    assert lp.band_field("31.5") == "b31_5"


def test_status_and_events_points_type_their_extras():
    p = {"schema": "tingbao.status/1", "meter": "m1", "time_ns": NOW, "online": True,
         "queue_depth": 5, "clock_offset_s": 0, "battery": 80, "fw": 'v1 "beta", x=1',
         "calibration": {"ok": True, "db": 94.0}, "published": 12.0, "refused": 0}
    (line,) = lp.message_lines(_msg("status", p))
    assert line.startswith(f"{STATUS},enterprise=e1,meter=m1,site=s1 online=true,")
    assert "queue_depth=5i" in line and "clock_offset_s=0.0" in line
    assert "published=12i" in line and "refused=0i" in line
    assert "battery=80.0" in line and 'fw="v1 \\"beta\\", x=1"' in line
    assert 'calibration="{\\"ok\\":true,\\"db\\":94.0}"' in line
    e = {"schema": "tingbao.events/1", "meter": "m1", "time_ns": NOW, "event": "calibrated"}
    (line,) = lp.message_lines(_msg("events", e))
    assert line == f'{EVENTS},enterprise=e1,meter=m1,site=s1 event="calibrated" {NOW}'


@pytest.mark.parametrize("extra", ['"a b": 1', '"x": 1e400', f'"{"k" * 70}": 1',
                                   '"published": 1.5', '"in_flight": 1e400',
                                   ",".join(f'"f{i}": {i}' for i in range(40))])
def test_unstorable_status_extras_are_refused(extra):
    raw = (f'{{"schema": "tingbao.status/1", "meter": "m1", "time_ns": {NOW}, '
           f'"online": true, {extra}}}').encode()
    msg = contract.validate(contract.topic("e1", "s1", "m1", "status"), raw, now_ns=NOW)
    with pytest.raises(lp.LineProtocolError):
        lp.message_lines(msg)


def test_event_with_a_newline_is_refused():
    # The contract refuses it first; the line protocol would refuse it too (defence in depth).
    e = {"schema": "tingbao.events/1", "meter": "m1", "time_ns": NOW, "event": "a\nb"}
    with pytest.raises(ContractError, match="event"):
        _msg("events", e)
    with pytest.raises(lp.LineProtocolError, match="newline"):
        lp.line(EVENTS, {"meter": "m1"}, {"event": "a\nb"}, NOW)


def test_dead_letter_line_survives_any_payload_and_reason():
    nasty = 'r\n"\\, =\x00\x1b\u2028' + "\udc80"
    d = DeadLetter("contract", nasty * 500, "tingbao/v1/e e/s,s/m=1/levels\n", b"\x00\xff" * 5000,
                   NOW, "c1")
    line = d.to_line()
    assert "\n" not in line and line.startswith(f"{DEAD_LETTERS},collector=c1,kind=other,")
    assert "payload_bytes=10000i" in line and "payload_truncated=true" in line
    assert printable("a\nb\x1b", 10) == "a\\nb\\x1b"


# ------------------------------------------------------------------- the real InfluxDB
def test_hostile_strings_round_trip_through_influxdb(stack):
    """Every string of HOSTILE as measurement, tag key, tag value, field key and string field
    value, and extreme floats, are written to InfluxDB and read back unchanged."""
    writer, reader = stack.influx("writer"), stack.influx("reader")
    t0 = NOW - 3600 * 10**9
    # (-0.0 is stored, but InfluxDB's JSON answer writes it as 0: the sign is lost there)
    floats = [4e-10, 1.5e20, 5e-324, 1.7976931348623157e308, 1e-300, 0.1 + 0.2, 1 / 3,
              123456789.123456789, -2.5e-300]
    lines = []
    for i, s in enumerate(HOSTILE):
        lines.append(lp.line("rt_tags", {"k": s, s: "v"}, {s: s, "i": i, "x": floats[i % 9]},
                             t0 + i))
    writer.write(lines)
    rows = reader.query_rows('SELECT * FROM "rt_tags"')
    assert len(rows) == len(HOSTILE)
    for row in rows:
        i = row["i"]
        s = HOSTILE[i]
        assert row["time"] == t0 + i
        assert row["k"] == s
        assert row[f"{s}_1" if s in ("k", "i", "x") else s] in (s, "v")
        assert struct.pack("<d", row["x"]) == struct.pack("<d", floats[i % 9])
    # string field values and field keys, separately (one series per hostile string)
    for s in HOSTILE[:8]:
        writer.write([lp.line(f"rt {s}", {"tag": s}, {"value": s}, t0)])
        got = reader.query_rows(f'SELECT "value", "tag" FROM "{_ident(f"rt {s}")}"')
        assert got == [{"time": t0, "value": s, "tag": s}], s


def _ident(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=30))
def test_random_text_round_trips_through_influxdb(stack, s):
    writer, reader = stack.influx("writer"), stack.influx("reader")
    try:
        line = lp.line("rt_random", {"k": s}, {"v": s}, NOW)
    except lp.LineProtocolError:
        return
    writer.write([line])
    values = {r["k"]: r["v"] for r in reader.query_rows('SELECT "v", "k" FROM "rt_random"')}
    assert values[s] == s


def test_message_points_read_back_exactly(stack):
    writer, reader = stack.influx("writer"), stack.influx("reader")
    p = levels_payload(meter="m1", start_ns=NOW - 5 * 10**9, ea=1.2345678901234567e-3,
                       laeq=84.123456789)
    writer.write(lp.message_lines(_msg("levels", p, enterprise="rt-e")))
    (row,) = reader.query_rows(f"SELECT * FROM {LEVELS} WHERE enterprise = 'rt-e'")
    assert row["time"] == p["start_ns"] and row["channel"] == "1"
    assert row["ea"] == p["ea"] and row["laeq"] == p["laeq"] and row["seq"] == 7
    assert row.get("lzpeak") is None and row["overload"] is False
