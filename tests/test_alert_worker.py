"""Seams of issue 14 tidied into the schema, the contract and the alert store: the worker in
an alert's identity (ids of alerts without one unchanged; old points without the ``worker``
tag still read; ``tingbao alerts list --worker`` and ``show``), the fit-test dead-letter stage
kept by the dead-letter writer, the fit-test topic in the contract, and the ``time_share`` /
``note`` fields of ``wearing_rate`` points."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support.commands import run_tingbao

from tingbao.analysis.alert_store import Alert, AlertStore, alert_id
from tingbao.analysis.wearing_rate import Estimate, RateRow, rate_lines
from tingbao.collector import schema
from tingbao.collector.deadletter import DeadLetter
from tingbao.collector.lineprotocol import line
from tingbao.edge import contract

S = 1_000_000_000
T0 = 1_796_004_000 * S  # 2026-11-30T02:00:00Z = 10:00 in Asia/Shanghai
ENT = "aw-ent"


def worker_alert(**over) -> Alert:
    kw = dict(enterprise=ENT, rule="exam_overdue", shift_date="2026-01-10", profile="CN-GBZ",
              severity="warning", text_zh="劳动者 w-7 职业健康检查已逾期",
              text_en="worker w-7: hearing exam overdue", evidence={"worker": "w-7"},
              raised_ns=T0, job="press", worker="w-7")
    kw.update(over)
    return Alert(**kw)


# ------------------------------------------------------------------------------ pure
def test_worker_is_part_of_the_id_only_when_set():
    # without a worker: sha256("aw-ent|exam_overdue|||press|2026-01-10|CN-GBZ|0"), the hash
    # alerts always had; with one, "|w-7" appended to the same text
    base = "aw-ent|exam_overdue|||press|2026-01-10|CN-GBZ|0"
    plain = worker_alert(worker=None)
    assert plain.id == hashlib.sha256(base.encode()).hexdigest()[:16]
    assert plain.id == alert_id(ENT, "exam_overdue", None, None, "press", "2026-01-10",
                                "CN-GBZ", 0)
    a = worker_alert()
    assert a.id == hashlib.sha256((base + "|w-7").encode()).hexdigest()[:16] != plain.id
    assert worker_alert(worker="w-8").id != a.id  # two workers, one job, one exam day
    with pytest.raises(ValueError, match="worker"):
        worker_alert(worker="张三")  # a real name is not a pseudonym id


def test_fit_test_dead_letter_keeps_its_stage():
    # the stage was unknown to DeadLetter.to_line before (it stored "internal"); an unknown
    # stage still does
    d = DeadLetter(schema.STAGE_FIT_TEST, "not JSON", contract.fit_tests_topic("e1"), b"{",
                   T0, "fit-tests")
    assert ",stage=fit_test " in d.to_line() and ",kind=other," in d.to_line()
    other = DeadLetter("nonsense", "x", "t", b"", T0, "c").to_line()
    assert ",stage=internal " in other


def test_fit_test_topic():
    assert contract.fit_tests_topic("e1") == "tingbao/v1/e1/fittests"
    assert contract.FIT_TESTS_TOPIC_FILTER == "tingbao/v1/+/fittests"
    assert contract.fit_tests_enterprise("tingbao/v1/e1/fittests") == "e1"
    for bad in ("tingbao/v1/e1/alerts", "tingbao/v1/e1/s/fittests", "tingbao/v2/e1/fittests"):
        assert contract.fit_tests_enterprise(bad) is None
    with pytest.raises(ValueError):
        contract.fit_tests_topic("a/b")


def test_rate_lines_carry_time_share_and_note():
    # 40 of 50 worker-days worn (80 %); worn 90 000 s of 100 000 s assessed = 90 %
    est = Estimate(50, 40, 0.8, 0.67, 0.89, 0.69, "design_effect", clusters=3,
                   note="design effect instead of GEE: singular")
    edge = RateRow("group", "pilot", "2026", "edge", est, None, None, time_share=0.9)
    plain = RateRow("group", "pilot", "2026", "observed",
                    Estimate(50, 40, 0.8, 0.67, 0.89, 0.69, "wilson"), None, None)
    with_share, without = rate_lines([edge, plain], "Asia/Shanghai", T0)
    assert "time_share=90.0," in with_share
    assert 'note="design effect instead of GEE: singular"' in with_share
    assert "time_share" not in without and "note=" not in without


# ------------------------------------------------------------------------------ store
@pytest.fixture(scope="module")
def site(stack, tmp_path_factory) -> Path:
    stack.write_state()
    path = tmp_path_factory.mktemp("site") / "site.toml"
    path.write_text(f'[deployment]\ntimezone = "Asia/Shanghai"\n[stack]\ndata_dir = '
                    f'"{stack.data_dir}"\n[[enterprises]]\nid = "{ENT}"\nname_zh = "企业"\n'
                    'industry = "machinery"\ngroup = "pilot"\n', encoding="utf-8")
    return path


def test_worker_stored_listed_and_shown(stack, site):
    store = AlertStore(stack.influx("reader"), stack.influx("writer"))
    a, b = worker_alert(), worker_alert(worker="w-8", raised_ns=T0 + S)
    assert store.open(a) and store.open(b)
    assert store.get(a.id).worker == "w-7" and store.get(a.id).alert == a
    # a point of the layout before the worker tag (an enterprise-level alert): reads as no
    # worker, under the id it always had
    old = worker_alert(worker=None, rule="meter_offline", job=None, raised_ns=T0 + 2 * S)
    stack.influx("writer").write([line(schema.ALERTS, {
        "enterprise": ENT, "id": old.id, "rule": "meter_offline", "state": "open"}, {
        "shift_date": old.shift_date, "profile": old.profile, "severity": old.severity,
        "text_zh": old.text_zh, "text_en": old.text_en, "evidence": json.dumps(old.evidence),
        "who": "tingbao", "note": "", "raised_ns": old.raised_ns, "occurrence": 0},
        old.raised_ns)], rp=schema.RP_FOREVER)
    got = store.get(old.id)
    assert got.worker is None and got.alert == old
    assert [s.id for s in store.list(enterprise=ENT, worker="w-7")] == [a.id]

    base = ["alerts", "--config", site, "--stack", stack.data_dir]
    ls = run_tingbao(*base, "list", "--enterprise", ENT, "--worker", "w-8", "--format", "json")
    assert ls.returncode == 0, ls.stderr
    (row,) = [json.loads(x) for x in ls.stdout.splitlines()]
    assert (row["id"], row["worker"], row["job"]) == (b.id, "w-8", "press")
    table = run_tingbao(*base, "list", "--enterprise", ENT)
    assert table.returncode == 0, table.stderr
    assert "worker w-7 (job press)" in table.stdout
    show = run_tingbao(*base, "show", a.id)
    assert show.returncode == 0, show.stderr
    assert "劳动者 worker w-7" in show.stdout
