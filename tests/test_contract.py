"""The message contract v1: topics, payloads, and validation with reasons."""

import json
import time

import pytest

from tingbao.edge import contract as c
from tingbao.edge.meter import SoundLevelMeter

NOW = time.time_ns()


def good_levels(**over):
    rec = {"channel": 0, "duration": 1.0, "ea": 0.25, "coverage": 1.0, "overload": False,
           "laeq": 84.0, "lceq": 86.0, "lcpeak": 110.0, "lzpeak": 111.0, "lafmax": 88.0,
           "lasmax": 86.0, "lafmin": 80.0, "laf5": 87.0, "laf10": 86.5, "laf50": 84.0,
           "laf90": 81.0, "laf95": 80.5}
    p = c.levels_payload(rec, meter="m1", seq=7, start_ns=NOW - 10**9)
    p.update(over)
    return p


T = c.topic("e1", "s1", "m1", "levels")


def test_payload_from_the_meter_validates():
    m = SoundLevelMeter(48_000)
    import numpy as np

    iv = m.process(np.sin(np.arange(48_000) * 0.1) * 0.1)[0]
    rec = iv.records()[0]
    p = c.levels_payload(rec, meter="m1", seq=1, start_ns=NOW - 2 * 10**9)
    msg = c.validate(T, c.encode(p), now_ns=NOW)
    assert msg.topic.meter == "m1" and msg.payload["ea"] == rec["ea"]


def test_topic_round_trip_and_alerts():
    assert T == "tingbao/v1/e1/s1/m1/levels"
    parts = c.parse_topic(T)
    assert (parts.enterprise, parts.site, parts.meter, parts.kind) == ("e1", "s1", "m1",
                                                                       "levels")
    assert c.alerts_topic("e1") == "tingbao/v1/e1/alerts"


@pytest.mark.parametrize("bad", ["m 1", "m,1", 'm"1', "m=1", "m\n1", "m1\n", "m/1", "+", "#", "",
                                 "x" * 65, "_m"])
def test_hostile_ids_are_refused_in_topics(bad):
    with pytest.raises(c.ContractError):
        c.topic("e1", "s1", bad, "levels")


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1,2]", "not a JSON object"),
        (json.dumps({"meter": "m1"}).encode(), "schema"),
        (c.encode(good_levels(schema="tingbao.levels/9")), "unsupported schema version"),
        (c.encode(good_levels(schema="tingbao.noise/1")), "unknown schema"),
        (c.encode(good_levels(schema="tingbao.status/1")), "sent on a 'levels' topic"),
        (c.encode(good_levels(meter="m2")), "does not match"),
        (c.encode(good_levels(laeq=250.0)), "plausible range"),
        (c.encode(good_levels(laeq=-5.0)), "plausible range"),
        (c.encode(good_levels(laeq="85")), "must be a number"),
        (c.encode(good_levels(seq=1.5)), "integer"),
        (c.encode(good_levels(seq=True)), "must be a number"),
        (c.encode(good_levels(start_ns=NOW + 3600 * 10**9)), "start_ns"),
        (c.encode(good_levels(start_ns=10)), "start_ns"),
        (c.encode(good_levels(duration_s=0.0)), "duration_s"),
        (c.encode(good_levels(coverage=2.0)), "coverage"),
        (c.encode(good_levels(ea=-1.0)), "ea"),
        (c.encode(good_levels(overload="no")), "overload"),
        (c.encode(good_levels(sneaky="x")), "unknown field"),
        (c.encode(good_levels()).replace(b'"laeq":84.0', b'"laeq":NaN'), "NaN"),
        (c.encode(good_levels()).replace(b'"laeq":84.0', b'"laeq":Infinity'), "Infinity"),
        (b"{" + b" " * (c.MAX_PAYLOAD_BYTES + 1) + b"}", "exceeds"),
    ],
)
def test_each_bad_payload_is_refused_with_its_reason(raw, reason):
    with pytest.raises(c.ContractError, match=reason):
        c.validate(T, raw, now_ns=NOW)


def test_levels_may_be_null_when_nothing_was_covered():
    p = good_levels(laeq=None, ea=None, coverage=0.0)
    assert c.validate(T, c.encode(p), now_ns=NOW).payload["laeq"] is None


def test_encode_refuses_nan():
    with pytest.raises(ValueError):
        c.encode({"x": float("nan")})


def test_status_and_bands_payloads_validate():
    s = c.status_payload(meter="m1", time_ns=NOW, online=True, queue_depth=3)
    c.validate(c.topic("e1", "s1", "m1", "status"), c.encode(s), now_ns=NOW)
    b = c.bands_payload({"duration": 1.0, "bands": {"31.5": 60.0, "1000": 80.0}},
                        meter="m1", seq=2, start_ns=NOW - 10**9, fraction=3)
    c.validate(c.topic("e1", "s1", "m1", "bands"), c.encode(b), now_ns=NOW)
    b["bands"]["1000; DROP"] = 1.0
    with pytest.raises(c.ContractError, match="band label"):
        c.validate(c.topic("e1", "s1", "m1", "bands"), c.encode(b), now_ns=NOW)


@pytest.mark.parametrize("t", ["tingbao/v2/e1/s1/m1/levels", "tingbao/v1/e1/s1/m1",
                               "tingbao/v1/e1/s1/m1/levels/x", "tingbao/v1/e1/s1/m1/noise",
                               "tingbao/v1/e 1/s1/m1/levels"])
def test_bad_topics_are_refused(t):
    with pytest.raises(c.ContractError):
        c.validate(t, c.encode(good_levels()), now_ns=NOW)


@pytest.mark.parametrize(
    "raw, reason",
    [
        (c.encode(good_levels()).replace(b'"seq":7', b'"seq":' + b"9" * 5000), "number"),
    ],
)
def test_huge_integers_are_a_contract_error_not_a_crash(raw, reason):
    with pytest.raises(c.ContractError, match=reason):
        c.validate(T, raw, now_ns=NOW)


@pytest.mark.parametrize("fraction", [True, 1.0, 2, "3"])
def test_band_fraction_must_be_the_integer_1_or_3(fraction):
    b = c.bands_payload({"duration": 1.0, "bands": {"1000": 80.0}}, meter="m1", seq=2,
                        start_ns=NOW - 10**9, fraction=3)
    b["fraction"] = fraction
    with pytest.raises(c.ContractError, match="fraction"):
        c.validate(c.topic("e1", "s1", "m1", "bands"), c.encode(b), now_ns=NOW)


@pytest.mark.parametrize("label", ["١٠٠٠", "01000", "1000.25", ""])
def test_band_labels_are_ascii_frequencies(label):
    b = c.bands_payload({"duration": 1.0, "bands": {label: 80.0}}, meter="m1", seq=2,
                        start_ns=NOW - 10**9, fraction=3)
    with pytest.raises(c.ContractError, match="band label"):
        c.validate(c.topic("e1", "s1", "m1", "bands"), c.encode(b), now_ns=NOW)
