"""The message contract v1: topics, payloads, and validation with reasons."""

import json
import math
import re
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


# ------------------------------------------------------------ the multichannel levels form
def good_channels(n=3):
    import numpy as np

    m = SoundLevelMeter(48_000, channels=n)
    x = np.stack([np.sin(np.arange(48_000) * 0.1) * 0.1 * (k + 1) for k in range(n)], axis=-1)
    recs = m.process(x)[0].records()
    return recs, c.levels_payload_channels(recs, meter="m1", seq=3, start_ns=NOW - 2 * 10**9)


def test_multichannel_payload_validates_and_flattens_to_one_record_per_channel():
    recs, p = good_channels(3)
    msg = c.validate(T, c.encode(p), now_ns=NOW)
    flat = msg.records()
    assert [r["channel"] for r in flat] == [0, 1, 2]
    for r, rec in zip(flat, recs, strict=True):
        assert r["ea"] == rec["ea"] and r["laeq"] == rec["laeq"]
        assert r["seq"] == 3 and r["start_ns"] == NOW - 2 * 10**9 and r["meter"] == "m1"
        single = c.levels_payload(rec, meter="m1", seq=3, start_ns=NOW - 2 * 10**9)
        assert r == single  # the same record as the one-channel form
    # channel 1 is 6 dB above channel 0 (twice the amplitude)
    assert abs(flat[1]["laeq"] - flat[0]["laeq"] - 20 * math.log10(2)) < 0.01


def test_one_channel_message_is_its_own_record():
    p = good_levels()
    assert c.validate(T, c.encode(p), now_ns=NOW).records() == [p]


def _with(p, fn):
    fn(p)
    return c.encode(p)


@pytest.mark.parametrize("mutate, reason", [
    (lambda p: p["channels"][1].update(channel=0), "channels[1]: field 'channel' = 0 appears"),
    (lambda p: p.update(channels=[]), "list of 1-64"),
    (lambda p: p.update(channels={"0": {}}), "list of 1-64"),
    (lambda p: p.update(channels=[dict(p["channels"][0], channel=k % 64) for k in range(65)]),
     "list of 1-64"),
    (lambda p: p["channels"].__setitem__(2, "x"), "channels[2] is not an object"),
    (lambda p: p["channels"][0].update(laeq=201.0), "channels[0]: field 'laeq'"),
    (lambda p: p["channels"][2].update(channel=64), "channels[2]: field 'channel'"),
    (lambda p: p["channels"][1].update(coverage=5.0), "channels[1]: field 'coverage'"),
    (lambda p: p["channels"][1].pop("overload"), "channels[1]: field 'overload'"),
    (lambda p: p["channels"][1].update(seq=4), "channels[1]: unknown field(s) ['seq']"),
    (lambda p: p.update(channel=0), "unknown field(s) ['channel']"),
    (lambda p: p.pop("calibrated"), "field 'calibrated'"),
])
def test_bad_multichannel_payloads_are_refused_with_the_channel_named(mutate, reason):
    _, p = good_channels(3)
    with pytest.raises(c.ContractError, match=re.escape(reason)):
        c.validate(T, _with(p, mutate), now_ns=NOW)


# ---------------------------------------------------------------------------------- receipts
RT = c.receipts_topic("e1", "s1", "m1")


def good_receipt(**over):
    p = c.receipts_payload(meter="m1", time_ns=NOW, collector="c-1", seqs=[1, 2, 3, 7],
                           refused=[5])
    p.update(over)
    return p


def test_receipt_builds_validates_and_merges_ranges():
    assert RT == "tingbao/v1/e1/s1/m1/receipts"
    p = good_receipt()
    assert p["seqs"] == [[1, 3], [7, 7]] and p["refused"] == [[5, 5]]
    assert p["schema"] == "tingbao.receipts/1"
    msg = c.validate_receipts(RT, c.encode(p), now_ns=NOW)
    assert msg.topic.meter == "m1" and msg.topic.kind == "receipts"
    assert c.seq_ranges([5, 1, 2, 3, 3]) == [[1, 3], [5, 5]]
    assert "refused" not in c.receipts_payload(meter="m1", time_ns=NOW, collector="c",
                                               seqs=[[1, 4]])
    # a receipt is not data: the data validation refuses its topic, and it is no KIND
    assert "receipts" not in c.KINDS
    with pytest.raises(c.ContractError, match="topic kind"):
        c.validate(RT, c.encode(p))
    with pytest.raises(c.ContractError):
        c.topic("e1", "s1", "m1", "receipts")
    with pytest.raises(ValueError, match="at most"):
        c.receipts_payload(meter="m1", time_ns=NOW, collector="c",
                           seqs=list(range(1, 2 * c.MAX_RECEIPT_RANGES + 3, 2)))


BIG = 2**63


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda p: p.update(schema="tingbao.receipts/2"), "schema"),
        (lambda p: p.update(schema="tingbao.levels/1"), "schema"),
        (lambda p: p.pop("schema"), "schema"),
        (lambda p: p.update(meter="m2"), "does not match"),
        (lambda p: p.pop("meter"), "does not match"),
        (lambda p: p.update(collector="c 1"), "not a valid id"),
        (lambda p: p.update(collector=None), "not a valid id"),
        (lambda p: p.pop("time_ns"), "'time_ns' is missing"),
        (lambda p: p.update(time_ns=NOW + 10**13), "plausible range"),
        (lambda p: p.update(time_ns=5), "plausible range"),
        (lambda p: p.update(time_ns=1.5e18), "integer"),
        (lambda p: p.pop("seqs"), "'seqs' is missing"),
        (lambda p: p.update(seqs="1-3"), "list of"),
        (lambda p: p.update(seqs=[[1, 3, 4]]), "first, last"),
        (lambda p: p.update(seqs=[[1]]), "first, last"),
        (lambda p: p.update(seqs=[3]), "first, last"),
        (lambda p: p.update(seqs=[[0, 3]]), "integer 1.."),
        (lambda p: p.update(seqs=[[-5, 3]]), "integer 1.."),
        (lambda p: p.update(seqs=[[1, BIG]]), "integer 1.."),
        (lambda p: p.update(seqs=[[1.0, 3]]), "integer 1.."),
        (lambda p: p.update(seqs=[[True, 3]]), "integer 1.."),
        (lambda p: p.update(seqs=[["1", 3]]), "integer 1.."),
        (lambda p: p.update(seqs=[[4, 3]]), "first > last"),
        (lambda p: p.update(seqs=[[7, 8], [1, 3]]), "sorted"),
        (lambda p: p.update(seqs=[[1, 3], [3, 4]]), "sorted"),
        (lambda p: p.update(refused=[[2, 2]]), "overlap"),
        (lambda p: p.update(refused="x"), "list of"),
        (lambda p: p.update(seqs=[], refused=[]), "1-1000 ranges"),
        (lambda p: (p.update(seqs=[[i, i] for i in range(1, 2 * 1001, 2)]), p.pop("refused")),
         "1-1000 ranges"),
        (lambda p: p.update(extra=1), "unknown field"),
    ])
def test_bad_receipts_are_refused_with_their_reason(mutate, reason):
    p = good_receipt()
    mutate(p)
    with pytest.raises(c.ContractError, match=reason):
        c.validate_receipts(RT, c.encode(p), now_ns=NOW)


@pytest.mark.parametrize("raw, reason", [
    (b"{", "not JSON"), (b"\xff", "not UTF-8"), (b"[]", "not a JSON object"),
    (b'{"seqs": NaN}', "NaN"), (b" " * (c.MAX_PAYLOAD_BYTES + 1), "exceeds"),
    (b'{"schema": "tingbao.receipts/1", "seqs": [[1, ' + b"9" * 5000 + b"]]}", "number"),
])
def test_receipt_payloads_that_are_not_json_objects_are_refused(raw, reason):
    with pytest.raises(c.ContractError, match=reason):
        c.validate_receipts(RT, raw, now_ns=NOW)


@pytest.mark.parametrize("topic", ["tingbao/v1/e1/s1/m1/levels", "tingbao/v1/e1/s1/m 1/receipts",
                                   "tingbao/v1/e1/s1/receipts", "tingbao/v2/e1/s1/m1/receipts",
                                   "tingbao/v1/e1/s1/m1/receipts/x"])
def test_receipts_on_other_topics_are_refused(topic):
    with pytest.raises(c.ContractError):
        c.validate_receipts(topic, c.encode(good_receipt()), now_ns=NOW)


def test_deep_nesting_is_refused_before_parsing():
    # 30 000 nested arrays would make the JSON decoder recurse 30 000 times in a worker
    # thread; the contract refuses more than MAX_JSON_DEPTH (32) levels, strings excepted
    deep = b'{"schema":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    with pytest.raises(c.ContractError, match="deeper than 32 levels"):
        c.validate("tingbao/v1/e/s/m1/levels", deep, NOW)
    at_limit = b'{"x":' + b"[" * 31 + b"]" * 31 + b"}"  # 32 levels with the object
    assert not c._too_deep(at_limit)
    assert c._too_deep(b'{"x":' + b"[" * 32 + b"]" * 32 + b"}")
    in_a_string = b'{"x":"' + b"[" * 100 + b'"}'  # brackets inside a string do not nest
    assert not c._too_deep(in_a_string)
