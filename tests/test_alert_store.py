"""The alert lifecycle on the real stack (Mosquitto + InfluxDB): open → acknowledged →
resolved stored as one ``alerts`` point per change (read back with InfluxQL) and published on
``tingbao/v1/{enterprise}/alerts`` (received by a subscriber logged in as ``collector``), in
order; the deterministic id; opening twice is a no-op; refused transitions; hostile text;
list filters; a publication refused by the broker keeps the stored change; and
``tingbao alerts list|show|ack|resolve`` as a child process."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from support.commands import run_tingbao
from support.mqtt import close, drain, mqtt_client, subscribe

from tingbao.analysis.alert_store import (
    Alert,
    AlertStore,
    InvalidTransition,
    NotPublished,
    PublishError,
    UnknownAlert,
    alert_id,
    decode_text,
    encode_text,
    mqtt_publisher,
)
from tingbao.collector import schema
from tingbao.collector.registry import load_registry
from tingbao.collector.registry.connect import MqttEndpoint, mqtt_endpoint
from tingbao.edge import contract

S = 1_000_000_000
T0 = 1_796_004_000 * S  # 2026-11-30T02:00:00Z = 10:00 in Asia/Shanghai


def make_alert(enterprise: str, **over) -> Alert:
    kw = dict(enterprise=enterprise, rule="lex_projected", shift_date="2026-11-30",
              profile="CN-GBZ", severity="warning",
              text_zh="预计 LEX,8h 达 88.2 dB(A)，超过 85 dB(A) 限值",
              text_en="projected LEX,8h 88.2 dB(A) exceeds the 85 dB(A) limit",
              evidence={"lex_projected_db": 88.2, "limit_db": 85.0,
                        "period_ns": [T0 - 7200 * S, T0], "meter": "m1", "calibrated": True},
              raised_ns=T0, meter="m1", channel=0)
    kw.update(over)
    return Alert(**kw)


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory) -> Path:
    """A registry (Asia/Shanghai) whose [stack] is the test stack, with state.json written
    as `tingbao stack up` leaves it."""
    stack.write_state()
    path = tmp_path_factory.mktemp("site") / "site.toml"
    enterprises = "".join(
        f'[[enterprises]]\nid = "{e}"\nname_zh = "企业{i}"\nindustry = "machinery"\n'
        f'group = "pilot"\n' for i, e in enumerate(("al-life", "al-cli", "al-list")))
    path.write_text(f'[deployment]\ntimezone = "Asia/Shanghai"\n[stack]\ndata_dir = '
                    f'"{stack.data_dir}"\n' + enterprises, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def publisher(stack, site):
    """(publish, close) of the `analysis` account, found through the registry."""
    endpoint = mqtt_endpoint(load_registry(site), stack_dir=stack.data_dir)
    assert endpoint.username == "analysis"
    publish, close_ = mqtt_publisher(endpoint, timeout=5.0)
    yield publish
    close_()


@pytest.fixture
def store(stack, publisher) -> AlertStore:
    return AlertStore(stack.influx("reader"), stack.influx("writer"), publisher)


def listener(stack, enterprise: str):
    """A subscriber of the enterprise's alerts, logged in as `collector`."""
    client = mqtt_client(stack, "collector")
    assert subscribe(client, contract.alerts_topic(enterprise)) == [1]
    return client


def points(stack, aid: str) -> list[dict]:
    return stack.influx("reader").query_rows(
        f"SELECT * FROM {schema.source(schema.ALERTS, schema.RP_FOREVER)} WHERE "
        f"{schema.where_tags([('id', aid)])}")


# ------------------------------------------------------------------------------ pure
def test_id_is_the_sha256_of_the_identity():
    # sha256("al|lex_projected|m1|0||2026-11-30|CN-GBZ|0") computed here with hashlib, the
    # absent job as the empty string; an enterprise-level alert has "" for meter and channel
    a = make_alert("al")
    expected = hashlib.sha256(b"al|lex_projected|m1|0||2026-11-30|CN-GBZ|0").hexdigest()[:16]
    assert a.id == expected == alert_id("al", "lex_projected", "m1", 0, None, "2026-11-30",
                                        "CN-GBZ", 0)
    offline = make_alert("al", rule="meter_offline", meter=None, channel=None, job="welder",
                         occurrence=2)
    assert offline.id == hashlib.sha256(
        b"al|meter_offline|||welder|2026-11-30|CN-GBZ|2").hexdigest()[:16]
    # text, severity, evidence and time are not part of the identity; the occurrence is
    again = make_alert("al", severity="critical", text_en="other", evidence={}, raised_ns=T0 + 1)
    assert again.id == a.id != make_alert("al", occurrence=1).id
    assert len({make_alert("al", profile=p).id for p in ("CN-GBZ", "OSHA", "NIOSH")}) == 3


@pytest.mark.parametrize("over, message", [
    ({"severity": "high"}, "severity"), ({"shift_date": "2026-13-01"}, "not a date"),
    ({"shift_date": "30.11.2026"}, "YYYY-MM-DD"), ({"meter": None}, "needs its meter"),
    ({"channel": True}, "channel"), ({"evidence": {"x": float("nan")}}, "JSON"),
    ({"evidence": {"x": "y" * 20000}}, "bytes"), ({"text_zh": " \n"}, "empty"),
    ({"text_en": "a\x00b"}, r"U\+0000"), ({"rule": "lex projected"}, "rule"),
    ({"raised_ns": 1.5e18}, "raised_ns"), ({"occurrence": -1}, "occurrence"),
])
def test_alert_refuses_bad_fields(over, message):
    with pytest.raises(ValueError, match=message):
        make_alert("al", **over)


def test_free_text_encoding_is_reversible():
    # backslash first: "\\n" (backslash, n) and "\n" (line feed) must stay apart
    for text in ["a\nb", "a\\nb", "\\", "\\\\n\n", "x\r\n\ty", "无换行"]:
        stored = encode_text(text)
        assert "\n" not in stored and "\r" not in stored
        assert decode_text(stored) == text
    assert encode_text("a\\nb") == "a\\\\nb" and encode_text("a\nb") == "a\\nb"


# ------------------------------------------------------------------------- lifecycle
def test_open_ack_resolve_is_stored_and_published_in_order(stack, store):
    # three changes → three points (one per state tag) and three messages, in the order made:
    # open at raised_ns = T0, acknowledged at T0 + 300 s, resolved at T0 + 3600 s
    sub = listener(stack, "al-life")
    try:
        a = make_alert("al-life")
        assert store.open(a) is True
        s1 = store.acknowledge(a.id, "张工 (EHS)", "已通知班组长检查耳罩佩戴", now_ns=T0 + 300 * S)
        s2 = store.resolve(a.id, "李经理", "press 3 enclosure closed; LEX back to 83 dB(A)",
                           now_ns=T0 + 3600 * S)
        msgs = drain(sub, wait=1.0)
    finally:
        close(sub)

    assert s1.state == "acknowledged" and s1.acknowledged_by == "张工 (EHS)"
    assert s2.state == "resolved" and s2.resolved_ns == T0 + 3600 * S
    assert s2.acknowledged_ns == T0 + 300 * S and s2.acknowledged_note == "已通知班组长检查耳罩佩戴"
    assert s2.alert == a and s2.opened_ns == T0

    rows = sorted(points(stack, a.id), key=lambda r: r["time"])
    assert [(r["state"], r["time"]) for r in rows] == [
        ("open", T0), ("acknowledged", T0 + 300 * S), ("resolved", T0 + 3600 * S)]
    for r in rows:  # every point carries the whole alert
        assert (r["enterprise"], r["id"], r["rule"], r["meter"], r["channel"]) == (
            "al-life", a.id, "lex_projected", "m1", "0")
        assert (r["shift_date"], r["profile"], r["severity"]) == ("2026-11-30", "CN-GBZ",
                                                                   "warning")
        assert r["text_zh"] == a.text_zh and r["text_en"] == a.text_en
        assert json.loads(r["evidence"]) == a.evidence and r["raised_ns"] == T0
        assert r.get("job") is None and r["occurrence"] == 0
    assert [(r["who"], r["note"]) for r in rows] == [
        ("tingbao", ""), ("张工 (EHS)", "已通知班组长检查耳罩佩戴"),
        ("李经理", "press 3 enclosure closed; LEX back to 83 dB(A)")]

    assert {m.topic for m in msgs} == {"tingbao/v1/al-life/alerts"}
    assert {m.qos for m in msgs} == {1} and not any(m.retain for m in msgs)
    got = [json.loads(m.payload) for m in msgs]
    assert [(p["state"], p["time_ns"], p["who"]) for p in got] == [
        ("open", T0, "tingbao"), ("acknowledged", T0 + 300 * S, "张工 (EHS)"),
        ("resolved", T0 + 3600 * S, "李经理")]
    for p in got:
        assert p["schema"] == "tingbao.alerts/1" and p["id"] == a.id
        assert (p["enterprise"], p["rule"], p["meter"], p["channel"], p["job"]) == (
            "al-life", "lex_projected", "m1", 0, None)
        assert (p["shift_date"], p["profile"], p["severity"]) == ("2026-11-30", "CN-GBZ",
                                                                   "warning")
        assert p["text_zh"] == a.text_zh and p["evidence"] == a.evidence
    assert [(t.state, t.time_ns) for t in store.history(a.id)] == [
        ("open", T0), ("acknowledged", T0 + 300 * S), ("resolved", T0 + 3600 * S)]


def test_opening_the_same_alert_twice_stores_and_publishes_once(stack, store):
    # the second open() of the same id (a back-fill run again, even with a later raised_ns
    # and another text) is refused: 1 point, 1 message
    sub = listener(stack, "al-twice")
    try:
        a = make_alert("al-twice", rule="dose_50")
        assert store.open(a) is True
        assert store.open(dataclasses.replace(a, raised_ns=T0 + 60 * S, text_en="again")) is False
        store.acknowledge(a.id, "ops", "seen", now_ns=T0 + 120 * S)
        assert store.open(a) is False  # not in any state
        got = [json.loads(m.payload) for m in drain(sub, wait=1.0)]
    finally:
        close(sub)
    assert [p["state"] for p in got] == ["open", "acknowledged"]
    assert sorted(r["state"] for r in points(stack, a.id)) == ["acknowledged", "open"]
    # the next occurrence (after a hold-off) is another alert
    b = make_alert("al-twice", rule="dose_50", occurrence=1, raised_ns=T0 + 7200 * S)
    assert b.id != a.id and store.open(b) is True
    assert store.get(b.id).state == "open"


def test_transitions_the_lifecycle_does_not_allow_are_refused(stack, store):
    a = make_alert("al-refuse", rule="peak_exceeded", severity="critical")
    store.open(a)
    with pytest.raises(InvalidTransition, match="earlier than its last one"):
        store.acknowledge(a.id, "ops", "clock behind", now_ns=T0 - S)
    # open → resolved directly is allowed; no acknowledgement in the state or history
    s = store.resolve(a.id, "ops", "false alarm: calibrator tone", now_ns=T0 + 10 * S)
    assert s.state == "resolved" and s.acknowledged_ns is None and s.acknowledged_by is None
    assert [t.state for t in store.history(a.id)] == ["open", "resolved"]
    with pytest.raises(InvalidTransition, match="already resolved.*cannot acknowledge"):
        store.acknowledge(a.id, "ops", "late", now_ns=T0 + 20 * S)
    with pytest.raises(InvalidTransition, match="already resolved.*cannot resolve"):
        store.resolve(a.id, "ops", "twice", now_ns=T0 + 20 * S)

    b = make_alert("al-refuse", rule="overload")
    store.open(b)
    store.acknowledge(b.id, "ops", "ok", now_ns=T0 + 10 * S)
    with pytest.raises(InvalidTransition, match="already acknowledged.*only be resolved"):
        store.acknowledge(b.id, "ops", "again", now_ns=T0 + 20 * S)
    for who, note, message in [("", "x", "who is empty"), ("ops", "  ", "note is empty"),
                               ("a\nb", "x", "who contains a line break"),
                               ("x" * 201, "x", "at most 200"), ("ops", "y" * 2001, "at most 2000"),
                               ("ops", "bell \x07", r"U\+0007"), ("ops", "ls\u2028", r"U\+2028")]:
        with pytest.raises(ValueError, match=message):
            store.resolve(b.id, who, note, now_ns=T0 + 30 * S)
    with pytest.raises(UnknownAlert, match="no alert 0123456789abcdef"):
        store.acknowledge("0123456789abcdef", "ops", "x")
    with pytest.raises(UnknownAlert, match="not an alert id"):
        store.get("' OR 1=1 --")
    # 2 + 2 points: none of the refused changes was stored
    assert len(points(stack, a.id)) == 2 and len(points(stack, b.id)) == 2


def test_hostile_who_and_note_round_trip_exactly(stack, store):
    # quotes, backslashes (also before n and at the end), line breaks, tabs, CJK, emoji, and
    # line-protocol specials (, = space); stored, read back and published unchanged
    who = 'O\'Brien "Bob" \\ 王 五, x=1 \\'
    note = 'line 1\nline 2\r\n\t"quoted" \\n is not a newline; C:\\temp\\ 噪声 🎧 a=b,c d\\'
    text_zh = "第一行\n第二行 \\ \"引号\""
    sub = listener(stack, "al-hostile")
    try:
        a = make_alert("al-hostile", text_zh=text_zh,
                       evidence={"note": note, "k\"ey": ["\\", "\n", 1e-300, 2**53]})
        store.open(a)
        s = store.acknowledge(a.id, who, note, now_ns=T0 + S)
        got = [json.loads(m.payload) for m in drain(sub, wait=1.0)]
    finally:
        close(sub)
    again = store.get(a.id)
    assert (again.acknowledged_by, again.acknowledged_note) == (who, note) == (
        s.acknowledged_by, s.acknowledged_note)
    assert again.text_zh == text_zh and again.evidence == a.evidence and again.alert == a
    (ack,) = [r for r in points(stack, a.id) if r["state"] == "acknowledged"]
    assert ack["who"] == who and decode_text(ack["note"]) == note
    assert "\n" not in ack["note"] and ack["note"] == encode_text(note)
    assert [(p["who"], p["note"]) for p in got][1] == (who, note)
    assert got[0]["text_zh"] == text_zh and got[0]["evidence"] == a.evidence


def test_list_filters_by_enterprise_state_rule_meter_and_time(stack, store):
    # 8 alerts: 2 enterprises × rules × meters, raised an hour apart; states set below.
    # Each expectation is the same filter in plain Python over what was opened.
    made = []
    for i, (ent, rule, meter) in enumerate([
            ("al-list", "lex_projected", "m1"), ("al-list", "dose_100", "m1"),
            ("al-list", "lex_projected", "m2"), ("al-list", "meter_offline", None),
            ("al-list2", "lex_projected", "m1"), ("al-list", "coverage_low", "m2"),
            ("al-list", "lex_projected", "m1"), ("al-list2", "dose_100", "m2")]):
        a = make_alert(ent, rule=rule, meter=meter, channel=None if meter is None else 0,
                       occurrence=i, raised_ns=T0 + i * 3600 * S)
        store.open(a)
        made.append(a)
    state = {a.id: "open" for a in made}
    for a in made[1:3]:
        store.acknowledge(a.id, "ops", "ack", now_ns=a.raised_ns + 60 * S)
        state[a.id] = "acknowledged"
    for a in (made[2], made[4], made[5]):
        store.resolve(a.id, "ops", "done", now_ns=a.raised_ns + 120 * S)
        state[a.id] = "resolved"

    def expect(ent=None, st=None, rule=None, meter=None, since=None, until=None):
        out = [a.id for a in made
               if ent in (None, a.enterprise) and st in (None, state[a.id])
               and rule in (None, a.rule) and meter in (None, a.meter)
               and (since is None or a.raised_ns >= since)
               and (until is None or a.raised_ns < until)]
        return sorted(out, key=lambda i: -next(a.raised_ns for a in made if a.id == i))

    def ids(**kw):
        return [s.id for s in store.list(**kw)]

    mine = set(state)  # other tests' alerts are in other enterprises
    assert [i for i in ids(enterprise="al-list")] == expect("al-list")
    assert len(expect("al-list")) == 6
    assert [i for i in ids(state="resolved") if i in mine] == expect(st="resolved")
    assert len(expect(st="resolved")) == 3
    assert ids(enterprise="al-list", state="open") == expect("al-list", "open")
    assert ids(enterprise="al-list", state="acknowledged") == [made[1].id]
    assert ids(enterprise="al-list", rule="lex_projected") == expect("al-list",
                                                                      rule="lex_projected")
    assert ids(enterprise="al-list", rule="lex_projected") == [made[6].id, made[2].id,
                                                               made[0].id]
    assert ids(enterprise="al-list", meter="m2") == [made[5].id, made[2].id]
    assert ids(enterprise="al-list2") == [made[7].id, made[4].id]
    # opened in [T0 + 2 h, T0 + 6 h): alerts i = 2, 3, 4, 5 (raised at T0 + i h); 4 is
    # al-list2's, and alert 6 at T0 + 6 h is outside the half-open window
    window = dict(since=T0 + 2 * 3600 * S, until=T0 + 6 * 3600 * S)
    assert ids(enterprise="al-list", since_ns=window["since"], until_ns=window["until"]) == \
        expect("al-list", **window) == [made[5].id, made[3].id, made[2].id]
    assert ids(enterprise="al-list", limit=2) == [made[6].id, made[5].id]
    listed = {s.id: s for s in store.list(enterprise="al-list")}
    assert listed[made[3].id].meter is None and listed[made[3].id].channel is None
    assert listed[made[2].id].resolved_by == "ops" and listed[made[2].id].acknowledged_note == "ack"


def test_a_refused_publication_keeps_the_stored_change(stack, store):
    # a device account (m1) may not write alerts: the broker answers PUBACK 135, the change
    # is stored all the same; republish() with the analysis account sends it
    device = MqttEndpoint(stack.host, stack.mqtt_port, "m1", stack.mqtt_account("m1").password)
    publish, close_ = mqtt_publisher(device, timeout=5.0)
    sub = listener(stack, "al-refused")
    try:
        with pytest.raises(PublishError, match="refused the message.*135"):
            publish(contract.alerts_topic("al-refused"), b"{}")
        bad = AlertStore(stack.influx("reader"), stack.influx("writer"), publish)
        a = make_alert("al-refused")
        with pytest.raises(NotPublished) as caught:
            bad.open(a)
        assert caught.value.state.state == "open" and caught.value.state.alert == a
        assert isinstance(caught.value.__cause__, PublishError)
        with pytest.raises(NotPublished) as caught:
            bad.acknowledge(a.id, "ops", "seen", now_ns=T0 + S)
        assert caught.value.state.state == "acknowledged"
        assert sorted(r["state"] for r in points(stack, a.id)) == ["acknowledged", "open"]
        assert drain(sub, wait=0.5) == []
        assert store.republish(a.id).state == "acknowledged"
        (msg,) = drain(sub, wait=1.0)
        assert json.loads(msg.payload)["state"] == "acknowledged"
    finally:
        close(sub)
        close_()
    # nobody listening on a port: publish gives up after its timeout
    nowhere = MqttEndpoint(stack.host, 1, "analysis", "x")
    publish, close_ = mqtt_publisher(nowhere, timeout=0.5)
    try:
        with pytest.raises(PublishError, match="not connected"):
            publish(contract.alerts_topic("al-refused"), b"{}")
    finally:
        close_()


# ------------------------------------------------------------------------------ CLI
def test_cli_lists_acknowledges_and_resolves(stack, site, store):
    # two alerts: the CLI acknowledges then resolves the first (2 messages), and resolves the
    # second directly; a third change of the first and an unknown id exit with status 2
    a = make_alert("al-cli", text_zh="噪声剂量已达 100%\n请立即撤离")
    b = make_alert("al-cli", rule="meter_offline", meter=None, channel=None,
                   severity="critical", raised_ns=T0 + 3600 * S,
                   text_zh="测点离线", text_en="meter offline")
    store.open(a)
    store.open(b)
    base = ["alerts", "--config", site, "--stack", stack.data_dir]

    out = run_tingbao(*base, "list", "--enterprise", "al-cli")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["编号", "id", "状态", "state", "规则", "rule", "测点/通道",
                                "meter/ch", "班次日期", "shift", "date", "级别", "severity",
                                "内容", "text_zh", "处理人", "who"]
    assert lines[2].startswith(b.id) and lines[3].startswith(a.id)  # newest first
    assert "待处理 open" in lines[3] and "m1/0" in lines[3] and "噪声剂量已达 100% 请立即撤离" \
        in lines[3]
    assert "—" in lines[2] and "严重 critical" in lines[2]

    sub = listener(stack, "al-cli")
    try:
        ack = run_tingbao(*base, "ack", a.id, "--who", "张工", "--note", "已撤离\n复测中")
        assert ack.returncode == 0, ack.stderr
        assert "已确认 acknowledged" in ack.stdout and "张工: 已撤离" in ack.stdout
        res = run_tingbao("alerts", "resolve", b.id, "--who", "ops", "--note", "power back",
                          "--config", site, "--stack", stack.data_dir)  # options after too
        assert res.returncode == 0, res.stderr
        assert "resolved without acknowledgement" in res.stdout
        got = [json.loads(m.payload) for m in drain(sub, wait=1.0)]
    finally:
        close(sub)
    assert [(p["id"], p["state"], p["who"], p["note"]) for p in got] == [
        (a.id, "acknowledged", "张工", "已撤离\n复测中"), (b.id, "resolved", "ops", "power back")]
    assert store.get(a.id).acknowledged_note == "已撤离\n复测中"

    res = run_tingbao(*base, "resolve", a.id, "--who", "李", "--note", "done")
    assert res.returncode == 0, res.stderr
    again = run_tingbao(*base, "ack", a.id, "--who", "李", "--note", "late")
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.count("\n") == 1 and "already resolved" in again.stderr \
        and "raises a new alert" in again.stderr
    unknown = run_tingbao(*base, "resolve", "ffffffffffffffff", "--who", "x", "--note", "y")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "no alert ffffffffffffffff" in unknown.stderr and "alerts list" in unknown.stderr

    js = run_tingbao(*base, "list", "--enterprise", "al-cli", "--format", "json",
                     "--state", "resolved", "--since", "2026-11-30")
    assert js.returncode == 0, js.stderr
    objs = [json.loads(x) for x in js.stdout.splitlines()]
    assert [(o["id"], o["state"]) for o in objs] == [(b.id, "resolved"), (a.id, "resolved")]
    assert objs[1]["acknowledged_by"] == "张工" and objs[1]["resolved_by"] == "李"
    # local dates of Asia/Shanghai: T0 is 2026-11-30 10:00 there; nothing opened on 12-01
    later = run_tingbao(*base, "list", "--enterprise", "al-cli", "--since", "2026-12-01")
    assert later.returncode == 0 and "no alerts match" in later.stdout
    show = run_tingbao(*base, "show", a.id)
    assert show.returncode == 0 and "2026-11-30 10:00:00+08:00" in show.stdout
    assert [ln.split()[2] for ln in show.stdout.splitlines() if ln.startswith("    2026")] == [
        "open", "acknowledged", "resolved"]
