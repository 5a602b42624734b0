"""A hostile stream through the real broker: at least 10,000 hypothesis-generated bad
messages interleaved with good ones, published by the device accounts m1 and m2 into one
running collector (known meter: m1 only).

Bad messages are bad by construction — malformed JSON, random bytes, invalid UTF-8, wrong
types, NaN/Infinity tokens, huge strings and payloads, ids with spaces, commas, quotes, ``=``
and newlines (in topics and payloads), unknown schema versions, future and ancient
timestamps, payloads for another meter, unknown meters, unstorable extras, points
InfluxDB refuses — and each has the stage it must be dead-lettered at. A message on a topic
of no data kind (``…/m1/x``, ``…/m1/alerts``) never gets that far: the broker's ACL lets a
device publish only levels, bands, status and events, so it is refused with PUBACK 135
(stage ``broker``). Afterwards:

* the collector is alive and never hit an internal error;
* the multiset of (topic, payload SHA-256, stage) in ``dead_letters`` equals what was
  published as bad: every bad message has exactly one dead letter, with a reason;
* every good message is stored, field for field (hostile but legal strings included), and
  nothing else is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from support.collector import start_collector
from support.mqtt import Publisher
from support.wait import wait_for

from tingbao.collector import lineprotocol as lp
from tingbao.collector.schema import BANDS, DEAD_LETTERS, EVENTS, LEVELS, STATUS
from tingbao.edge import contract

pytestmark = pytest.mark.slow

N_HOSTILE = 10_000
GOOD_EVERY = 3  # a good message after about every third bad one
NOW = time.time_ns()
DAY = 86_400 * 10**9
GOOD_BASE = NOW - DAY  # good intervals start here, one second apart
GOOD_ENTERPRISE = "hostile-good"
BAD_ENTERPRISE = "hostile-bad"
NOMINAL = ["25", "31.5", "40", "50", "63", "80", "100", "125", "160", "200", "250", "315",
           "400", "500", "630", "800", "1000", "1250", "1600", "2000", "2500", "3150", "4000",
           "5000", "6300", "8000", "10000"]

# text that may sit in a topic level (MQTT: no wildcards or separators; the broker refuses
# control characters) and that the dead letter keeps verbatim
TOPIC_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Zl", "Zp"),
                                   blacklist_characters="/+#"), max_size=40)
HOSTILE_CHAR = st.sampled_from([" ", ",", '"', "'", "=", "\\", "é", "听", "🎧", "$", "*", "@"])
# text a good message may carry in a string field: anything but newlines and surrogates
VALUE_TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r")


@dataclasses.dataclass
class Published:
    """What the test sent and expects."""

    good: dict = dataclasses.field(default_factory=dict)  # (measurement, tags, time) -> fields
    bad: Counter = dataclasses.field(default_factory=Counter)  # (topic, sha256, stage)
    categories: Counter = dataclasses.field(default_factory=Counter)
    n_good: int = 0
    n_bad: int = 0
    broker: Counter = dataclasses.field(default_factory=Counter)  # user -> refused by the ACL


# ------------------------------------------------------------------------- valid payloads
# (strategies are built once: building them per draw costs more than drawing from them)
def floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


LEVEL = st.one_of(st.none(), floats(*contract.LEVEL_RANGE_DB))
EA = st.one_of(st.none(), floats(0.0, contract.MAX_EA))
UNIT = floats(0.0, 1.0)
DURATION = floats(0.1, 60.0)
SEQ = st.integers(0, 2**63 - 1)
CHANNEL = st.integers(0, 63)
BOOL = st.booleans()
LABELS = st.lists(st.sampled_from(NOMINAL), min_size=1, max_size=27, unique=True)
FRACTION = st.sampled_from([1, 3])
OFFSET = floats(-1e9, 1e9)
PERCENT = floats(0.0, 100.0)
SHORT_TEXT = st.text(VALUE_TEXT, max_size=60)
EVENT_TEXT = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")  # contract.ID_PATTERN


@st.composite
def levels_payload(draw, meter: str, start_ns: int) -> dict:
    duration = draw(DURATION)
    p = {"schema": "tingbao.levels/1", "meter": meter, "seq": draw(SEQ),
         "channel": draw(CHANNEL), "start_ns": start_ns, "duration_s": duration,
         "ea": draw(EA), "coverage": draw(UNIT) * duration, "overload": draw(BOOL),
         "calibrated": draw(BOOL)}
    for k in contract.LEVEL_FIELDS:
        p[k] = draw(LEVEL)
    return p


@st.composite
def levels_channels_payload(draw, meter: str, start_ns: int) -> dict:
    """The multichannel form: every channel of one interval in one message."""
    duration = draw(DURATION)
    channels = []
    for ch in draw(st.lists(CHANNEL, min_size=1, max_size=8, unique=True)):
        c = {"channel": ch, "ea": draw(EA), "coverage": draw(UNIT) * duration,
             "overload": draw(BOOL)}
        c.update({k: draw(LEVEL) for k in contract.LEVEL_FIELDS})
        channels.append(c)
    return {"schema": "tingbao.levels/1", "meter": meter, "seq": draw(SEQ),
            "start_ns": start_ns, "duration_s": duration, "calibrated": draw(BOOL),
            "channels": channels}


@st.composite
def bands_payload(draw, meter: str, start_ns: int) -> dict:
    labels = draw(LABELS)
    return {"schema": "tingbao.bands/1", "meter": meter, "seq": draw(SEQ),
            "channel": draw(CHANNEL), "start_ns": start_ns, "duration_s": draw(DURATION),
            "fraction": draw(FRACTION), "bands": {b: draw(LEVEL) for b in labels}}


@st.composite
def status_payload(draw, meter: str, time_ns: int) -> dict:
    p = contract.status_payload(meter=meter, time_ns=time_ns, online=draw(BOOL))
    if draw(BOOL):
        p["queue_depth"] = draw(SEQ)
    if draw(BOOL):
        p["clock_offset_s"] = draw(OFFSET)
    if draw(BOOL):
        p["battery"] = draw(PERCENT)
    if draw(BOOL):
        p["fw"] = draw(SHORT_TEXT)
    return p


@st.composite
def events_payload(draw, meter: str, time_ns: int) -> dict:
    p = {"schema": "tingbao.events/1", "meter": meter, "time_ns": time_ns,
         "event": draw(EVENT_TEXT)}
    if draw(BOOL):
        p["detail"] = draw(SHORT_TEXT)
    return p


def quick_payload(kind: str, meter: str, t: int, rng: random.Random) -> dict:
    """A valid payload from a seeded generator: the base a bad message is mutated from (its
    values do not matter, so they need not cost hypothesis draws)."""
    if kind == "levels":
        d = rng.choice([0.1, 1.0, 60.0])
        p = {"schema": "tingbao.levels/1", "meter": meter, "seq": rng.randrange(2**63),
             "channel": rng.randrange(64), "start_ns": t, "duration_s": d,
             "ea": rng.choice([None, rng.uniform(0, 1)]), "coverage": d * rng.random(),
             "overload": rng.random() < 0.5, "calibrated": rng.random() < 0.5}
        p.update({k: rng.choice([None, rng.uniform(0, 200)]) for k in contract.LEVEL_FIELDS})
    elif kind == "bands":
        p = {"schema": "tingbao.bands/1", "meter": meter, "seq": rng.randrange(2**40),
             "channel": rng.randrange(64), "start_ns": t, "duration_s": 1.0,
             "fraction": rng.choice([1, 3]),
             "bands": {b: rng.uniform(0, 200) for b in rng.sample(NOMINAL, 5)}}
    elif kind == "status":
        p = contract.status_payload(meter=meter, time_ns=t, online=True,
                                    queue_depth=rng.randrange(100), clock_offset_s=0.5)
    else:
        p = {"schema": "tingbao.events/1", "meter": meter, "time_ns": t, "event": "restart"}
    return p


BUILDERS = {"levels": levels_payload, "bands": bands_payload, "status": status_payload,
            "events": events_payload}
TIME_FIELD = {"levels": "start_ns", "bands": "start_ns", "status": "time_ns",
              "events": "time_ns"}


def expected_points(kind: str, site: str, p: dict) -> list:
    """[((measurement, tags, time), fields)]: the points a good message must be stored as."""
    if kind == "levels" and "channels" in p:
        shared = {k: v for k, v in p.items() if k != "channels"}
        return [expected_point(kind, site, {**shared, **c}) for c in p["channels"]]
    return [expected_point(kind, site, p)]


def expected_point(kind: str, site: str, p: dict):
    """(measurement, tags, time) and the fields a good one-point message is stored with."""
    tags = {"enterprise": GOOD_ENTERPRISE, "site": site, "meter": p["meter"]}
    if kind in ("levels", "bands"):
        tags["channel"] = str(p["channel"])
    if kind == "levels":
        fields = {k: p[k] for k in (*contract.LEVEL_FIELDS, "ea", "coverage", "duration_s",
                                    "seq", "overload", "calibrated")}
        measurement = LEVELS
    elif kind == "bands":
        fields = {lp.band_field(b): v for b, v in p["bands"].items()}
        fields.update(seq=p["seq"], duration_s=p["duration_s"], fraction=p["fraction"])
        measurement = BANDS
    else:
        fields = {k: v for k, v in p.items() if k not in ("schema", "meter", "time_ns")}
        measurement = STATUS if kind == "status" else EVENTS
    return (measurement, tuple(sorted(tags.items())), p[TIME_FIELD[kind]]), fields


KIND = st.sampled_from(tuple(BUILDERS))  # the kinds this stream builds (not protection)
SITE = st.sampled_from(["s1", "site.2", "S_3-x"])


@st.composite
def good_message(draw, index: int):
    kind = draw(KIND)
    site = draw(SITE)
    t = GOOD_BASE + index * 10**9
    if kind == "levels" and draw(BOOL):
        return kind, site, draw(levels_channels_payload("m1", t))
    p = draw(BUILDERS[kind]("m1", t))
    return kind, site, p


# --------------------------------------------------------------------------- bad payloads
@dataclasses.dataclass
class Bad:
    user: str
    topic: str
    raw: bytes
    category: str
    stage: str


WRONG = {
    "level": ["80", [], {}, True, False],
    "number": ["1", None, [], True],
    "integer": ["1", None, 1.5, True, [], 2.0],
    "bool": [0, 1, "true", None, "yes"],
    "schema": [1, None, [], {}],
    "meter": [1, None, [], "M1"],
    "fraction": [2, "3", None, 0, -1, 1.5],
    "bands": [[], "x", None, {}, 5],
    "event": [1, None, "", "x" * 65, []],
}
FIELDS = {
    "levels": {**dict.fromkeys((*contract.LEVEL_FIELDS, "ea"), "level"), "coverage": "number",
               "duration_s": "number", "seq": "integer", "channel": "integer",
               "start_ns": "integer", "overload": "bool", "calibrated": "bool",
               "schema": "schema", "meter": "meter"},
    "bands": {"seq": "integer", "channel": "integer", "start_ns": "integer",
              "duration_s": "number", "fraction": "fraction", "bands": "bands",
              "schema": "schema", "meter": "meter"},
    "status": {"time_ns": "integer", "online": "bool", "schema": "schema", "meter": "meter"},
    "events": {"time_ns": "integer", "event": "event", "schema": "schema", "meter": "meter"},
}
NUMERIC = {
    "levels": [*contract.LEVEL_FIELDS, "ea", "coverage", "duration_s", "seq", "channel",
               "start_ns"],
    "bands": ["seq", "channel", "start_ns", "duration_s", "band"],
    "status": ["time_ns", "queue_depth", "clock_offset_s"],
    "events": ["time_ns"],
}
BAD_SCHEMAS = ["tingbao.{kind}/2", "tingbao.{kind}/0", "tingbao.{kind}/1.0", "tingbao.{kind}/",
               "tingbao.{kind}", "tingbao.{kind}/01", "tingbao.{kind}/v1", "tingbao.noise/1",
               "TINGBAO.{kind}/1", "tingbao.{kind}/1 ", "{kind}/1", ""]
CATEGORIES = ["random_bytes", "truncated", "not_object", "wrong_type", "missing_field",
              "non_finite", "huge_payload", "huge_string", "hostile_meter", "hostile_topic",
              "schema", "wrong_kind", "future", "past", "other_meter", "extra_field",
              "out_of_range", "bad_utf8", "deep_nesting", "bad_kind_topic", "huge_int",
              "unknown_meter", "unstorable_extra", "event_newline", "bad_channels"]


CATEGORY = st.sampled_from(CATEGORIES)
PER_MILLE = st.integers(0, 999)
SEED = st.integers(0, 2**32)


def _encode(p: dict, tokens: dict | None = None) -> bytes:
    text = json.dumps(p, ensure_ascii=False, separators=(",", ":"))
    for sentinel, token in (tokens or {}).items():
        text = text.replace(json.dumps(sentinel), token)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def hostile_id(draw, topic_safe: bool) -> str:
    """A string that is not a valid id (in a topic level, only MQTT-legal characters)."""
    base = draw(TOPIC_TEXT if topic_safe else st.text(max_size=40))
    shape = draw(st.sampled_from(["char", "empty", "long", "leading"]))
    if shape == "empty":
        return ""
    if shape == "long":
        return "a" * draw(st.integers(65, 150))
    if shape == "leading":
        return draw(st.sampled_from(["_", ".", "-"])) + "m1"
    extra = draw(HOSTILE_CHAR if topic_safe else st.one_of(HOSTILE_CHAR, st.sampled_from(
        ["\n", "\r", "\t", "\x00", "/", "+", "#"])))
    pos = draw(st.integers(0, len(base)))
    return base[:pos] + extra + base[pos:]


@st.composite
def bad_message(draw) -> Bad:
    category = draw(CATEGORY)
    if draw(PER_MILLE) in (500, 501, 502):  # rare: each costs a split of a batch
        category = "beyond_retention"
    kind = draw(KIND)
    if category in ("extra_field", "out_of_range", "beyond_retention"):
        kind = draw(st.sampled_from(["levels", "bands"]))
    elif category == "bad_channels":
        kind = "levels"
    elif category == "unstorable_extra":
        kind = "status"
    elif category == "event_newline":
        kind = "events"
    user = "m1"
    p = quick_payload(kind, "m1", NOW - draw(PER_MILLE) * DAY // 100 - 10**9,
                      random.Random(draw(SEED)))
    enterprise, site, meter, topic_kind = BAD_ENTERPRISE, "s1", "m1", kind
    tokens = {}
    raw = None
    stage = "contract"
    tf = TIME_FIELD[kind]

    if category == "random_bytes":
        raw = draw(st.binary(max_size=300))
    elif category == "truncated":
        full = _encode(p)
        raw = full[:draw(st.integers(0, len(full) - 1))]
    elif category == "not_object":
        raw = _encode(draw(st.sampled_from([[p], 1, "x", None, True, 1.5, []])))
    elif category == "wrong_type":
        field = draw(st.sampled_from(sorted(FIELDS[kind])))
        p[field] = draw(st.sampled_from(WRONG[FIELDS[kind][field]]))
    elif category == "missing_field":
        del p[draw(st.sampled_from(sorted(FIELDS[kind])))]
    elif category == "non_finite":
        field = draw(st.sampled_from(NUMERIC[kind]))
        token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]))
        if field == "band":
            p["bands"][next(iter(p["bands"]))] = "__TOKEN__"
        else:
            p[field] = "__TOKEN__"
        tokens["__TOKEN__"] = token
    elif category == "huge_payload":
        p["pad"] = "x" * draw(st.integers(contract.MAX_PAYLOAD_BYTES, 200_000))
    elif category == "huge_string":
        p[draw(st.sampled_from(["meter", "schema"]))] = "m" * draw(st.integers(1000, 60_000))
    elif category == "hostile_meter":
        p["meter"] = draw(hostile_id(topic_safe=False))
    elif category == "hostile_topic":
        if draw(st.booleans()):
            enterprise = draw(hostile_id(topic_safe=True))
        else:
            site = draw(hostile_id(topic_safe=True))
    elif category == "schema":
        p["schema"] = draw(st.sampled_from(BAD_SCHEMAS)).format(kind=kind)
    elif category == "wrong_kind":
        other = draw(st.sampled_from([k for k in contract.KINDS if k != kind]))
        p["schema"] = f"tingbao.{other}/1"
    elif category == "future":
        p[tf] = draw(st.one_of(st.integers(NOW + 3600 * 10**9, 2**63 - 1),
                               st.integers(2**63, 2**80)))
    elif category == "past":
        p[tf] = draw(st.integers(-(2**63), contract.EARLIEST_NS - 1))
    elif category == "other_meter":
        p["meter"] = draw(st.sampled_from(["m2", "M1", "m1 ", " m1", "m10", "m1\n"]))
    elif category == "extra_field":
        key = draw(st.text(max_size=20).filter(lambda k: k not in p))
        p[key] = draw(st.sampled_from([1, "x", None, [], {}]))
    elif category == "out_of_range":
        if kind == "levels":
            field, value = draw(st.sampled_from([
                ("laeq", 200.5), ("lafmax", -0.1), ("ea", -1e-9), ("ea", contract.MAX_EA * 2),
                ("duration_s", 0.05), ("duration_s", 61.0), ("channel", 64), ("channel", -1),
                ("seq", -1), ("coverage", -0.5), ("coverage", 1000.0)]))
        else:
            field, value = draw(st.sampled_from([
                ("fraction", 2), ("channel", 64), ("bands", {"1 kHz": 50.0}),
                ("bands", {"31,5": 50.0}), ("bands", {"": 50.0}), ("bands", {"123456": 1.0}),
                ("bands", {str(f): 50.0 for f in range(65)}), ("bands", {"1000": 201.0})]))
        p[field] = value
    elif category == "bad_utf8":
        full = _encode(p)
        pos = draw(st.integers(0, len(full)))
        raw = full[:pos] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"])) \
            + full[pos:]
    elif category == "deep_nesting":
        depth = draw(st.integers(2_000, 30_000))
        raw = b'{"schema":' + b"[" * depth + b"]" * depth + b"}"
    elif category == "bad_kind_topic":
        topic_kind = draw(st.sampled_from(["alerts", "level", "LEVELS", "levels ", "x", ""]))
        stage = "broker"  # devices may publish the data kinds only (the stack's ACL)
    elif category == "huge_int":
        field = draw(st.sampled_from(NUMERIC[kind][:1] + ["schema"]))
        p[field] = "__TOKEN__"
        tokens["__TOKEN__"] = "7" * draw(st.integers(4_400, 20_000))
    elif category == "unknown_meter":
        user = meter = "m2"
        p["meter"] = "m2"
        stage = "meter"
    elif category == "unstorable_extra":
        if draw(st.booleans()):
            p["battery"] = "__TOKEN__"
            tokens["__TOKEN__"] = draw(st.sampled_from(["1e400", "-1e999"]))
        else:
            key = draw(st.one_of(hostile_id(topic_safe=False), st.just("time"),
                                 st.just("9lives"), st.just("_x")))
            p[key] = 1.0
        stage = "convert"
    elif category == "bad_channels":  # the multichannel levels form, one thing wrong in it
        one = {k: p.pop(k) for k in ("channel", "ea", "coverage", "overload",
                                     *contract.LEVEL_FIELDS)}
        p["channels"] = [dict(one, channel=ch) for ch in (0, 1, 2)]
        c = p["channels"][draw(st.integers(0, 2))]
        fault = draw(st.sampled_from(["duplicate", "not_list", "empty", "too_many", "not_object",
                                      "nan", "range", "unknown", "missing", "top_channel",
                                      "coverage"]))
        if fault == "duplicate":
            c["channel"] = 0 if c["channel"] else 1
        elif fault == "not_list":
            p["channels"] = draw(st.sampled_from([c, "0,1", None, 3]))
        elif fault == "empty":
            p["channels"] = []
        elif fault == "too_many":
            p["channels"] = [dict(one, channel=ch % 64) for ch in range(65)]
        elif fault == "not_object":
            p["channels"][1] = draw(st.sampled_from([[], "x", None, 1.0]))
        elif fault == "nan":
            c[draw(st.sampled_from(["laeq", "ea", "coverage"]))] = "__TOKEN__"
            tokens["__TOKEN__"] = draw(st.sampled_from(["NaN", "Infinity", "-1e999"]))
        elif fault == "range":
            field, value = draw(st.sampled_from([("laeq", 200.5), ("lcpeak", -1), ("ea", -1e-9),
                                                 ("channel", 64), ("channel", 1e6)]))
            c[field] = value
        elif fault == "unknown":
            c[draw(st.sampled_from(["laeq2", "start_ns", "seq", "meter", "x"]))] = 1
        elif fault == "missing":
            del c[draw(st.sampled_from(["channel", "ea", "coverage", "overload", "laf90"]))]
        elif fault == "top_channel":
            p["channel"] = 0  # one record and many at once
        else:
            c["coverage"] = p["duration_s"] * 2 + 1
    elif category == "event_newline":
        text = draw(st.text(VALUE_TEXT, max_size=30))
        pos = draw(st.integers(0, len(text)))
        p["event"] = text[:pos] + draw(st.sampled_from(["\n", "\r", "\r\n"])) + text[pos:]
        stage = "contract"  # event names are ids (the line protocol would refuse it too)
    elif category == "beyond_retention":
        p[tf] = draw(st.integers(contract.EARLIEST_NS, NOW - 400 * DAY))
        stage = "store"
    if raw is None:
        raw = _encode(p, tokens)
    topic = "/".join(["tingbao/v1", enterprise, site, meter, topic_kind])
    # the construction must be right: the contract refuses exactly the 'contract' ones
    try:
        contract.validate(topic, raw)
        refused = False
    except ValueError:
        refused = True
    assert refused == (stage in ("contract", "broker")), (category, topic, raw[:300])
    return Bad(user, topic, raw, category, stage)


# -------------------------------------------------------------------------------- the test
def test_hostile_stream_is_dead_lettered_and_good_messages_are_stored(stack, tmp_path):
    c = start_collector(stack, tmp_path, client_id="hostile", group="g-hostile",
                        known_meters=("m1",), batch_size=500, batch_ms=100, settle_ms=1000)
    pubs = {"m1": Publisher(stack, "m1"), "m2": Publisher(stack, "m2")}
    sent = Published()
    try:
        @settings(max_examples=N_HOSTILE, deadline=None, database=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(st.data())
        def publish_some(data):
            bad = data.draw(bad_message())
            pubs[bad.user].publish(bad.topic, bad.raw)
            sha = hashlib.sha256(bad.raw).hexdigest()
            if bad.stage == "broker":
                sent.broker[bad.user] += 1
            else:
                sent.bad[(bad.topic, sha, bad.stage)] += 1
            sent.categories[bad.category] += 1
            sent.n_bad += 1
            if data.draw(st.integers(0, GOOD_EVERY - 1)) == 0:
                kind, site, p = data.draw(good_message(sent.n_good))
                pubs["m1"].publish(contract.topic(GOOD_ENTERPRISE, site, "m1", kind), p)
                for key, fields in expected_points(kind, site, p):
                    sent.good[key] = fields
                sent.n_good += 1

        started = time.monotonic()
        while sent.n_bad < N_HOSTILE:
            publish_some()
        for user, pub in pubs.items():
            pub.wait(120, refused=sent.broker[user])
        published = time.monotonic() - started
        n_dead = sent.n_bad - sum(sent.broker.values())
        total = n_dead + sent.n_good
        wait_for(lambda: c.counters()["written"] + c.counters()["rejected"] >= total, 150,
                 f"{total} messages stored or dead-lettered")
        counters = c.counters()
        print(f"\npublished in {published:.1f} s, all stored {time.monotonic() - started:.1f} s "
              f"after the start; {sent.n_bad} bad + {sent.n_good} good messages; categories: "
              f"{dict(sent.categories)}; collector: {json.dumps(counters)}")

        # never crashed, nothing counted twice
        assert c.is_alive() and counters["internal_errors"] == 0
        assert counters["received"] == total and counters["acked"] == total
        assert counters["rejected"] == n_dead and counters["written"] == sent.n_good
        assert sent.broker["m1"] + sent.broker["m2"] > 0  # refused by the ACL, never stored
        assert counters["dead_letter_failed"] == 0
        assert len(set(sent.categories)) >= len(CATEGORIES)

        # every bad message has exactly one dead letter, at the right stage, with a reason
        r = stack.influx()
        dead = r.query_rows(f"SELECT topic, payload_sha256, stage, reason FROM {DEAD_LETTERS} "
                            "WHERE collector = 'hostile'")
        assert all(d["reason"] for d in dead)
        got = Counter((d["topic"], d["payload_sha256"], d["stage"]) for d in dead)
        assert got == sent.bad, (got - sent.bad, sent.bad - got)

        # every good message is stored, field for field; no bad one is
        stored = {}
        for measurement in (LEVELS, BANDS, STATUS, EVENTS):
            assert not r.query_rows(f"SELECT * FROM {measurement} WHERE enterprise = "
                                    f"'{BAD_ENTERPRISE}'")
            for row in r.query_rows(f"SELECT * FROM {measurement} WHERE enterprise = "
                                    f"'{GOOD_ENTERPRISE}'"):
                tags = tuple(sorted((k, row[k]) for k in ("enterprise", "site", "meter",
                                                          "channel") if k in row
                                    and row[k] is not None))
                stored[(measurement, tags, row["time"])] = row
        assert set(stored) == set(sent.good)
        for key, fields in sent.good.items():
            row = stored[key]
            for k, v in fields.items():
                assert row.get(k) == v, (key, k, v, row.get(k))
    finally:
        for pub in pubs.values():
            pub.close()
        c.stop()
