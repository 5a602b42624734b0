"""Individual fit tests: the pass rule at its edge, each caution, the individual effective
exposure with its GB/T 23466 verdict, record checks; CSV import (GBK and UTF-8, a missing
column, impossible values, duplicated rows, a file imported twice) and the MQTT listener on a
real Mosquitto + InfluxDB (one good and one bad record: stored, and a dead letter)."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from support.commands import run_tingbao
from support.mqtt import close, mqtt_client, publish
from support.wait import wait_for

from tingbao.analysis.fit_test_import import (
    DEAD_LETTER_STAGE,
    FitTestListener,
    assess_all,
    import_file,
    read_fit_tests,
    topic,
)
from tingbao.analysis.fit_tests import (
    FitTest,
    assess,
    cautions,
    individual_exposure,
    parse_record,
    passes,
)
from tingbao.analysis.spreadsheets import RowInvalid, TableError
from tingbao.collector import schema
from tingbao.collector.lineprotocol import line
from tingbao.collector.registry import load_registry
from tingbao.collector.registry.connect import mqtt_endpoint

DAY = dt.date(2026, 11, 20)
TODAY = dt.date(2026, 11, 30)


def fit(**kw) -> FitTest:
    base = dict(enterprise="ft", worker="w001", date=DAY, protector="3m-ear-ultrafit",
                method="f_mire", par_binaural=20.0, par_u=3.0)
    base.update(kw)
    return FitTest(**base)


# ------------------------------------------------------------------------------ pure
def test_pass_rule_at_its_edge():
    # PAR − u ≥ exposure − limit: 20 − 3 = 17 ≥ 102 − 85 = 17 → pass (equality passes);
    # exposure 102.1 needs 17.1 → fail
    assert passes(20.0, 3.0, 102.0, 85.0) is True
    assert passes(20.0, 3.0, 102.1, 85.0) is False
    # decimals: 20.1 − 3.1 = 17.0 ≥ 17 (binary rounding must not fail it); 20.1 − 3.2 = 16.9
    assert passes(20.1, 3.1, 102.0, 85.0) is True
    assert passes(20.1, 3.2, 102.0, 85.0) is False
    assert passes(20.0, 3.0, None, 85.0) is None  # no exposure: not judged
    # through assess: the profile's limit (CN-GBZ 85) unless the record gives its own
    r = assess(fit(exposure_db=102.0))
    assert (r.passed, r.limit_db, r.required_par_db) == (True, 85.0, 17.0)
    assert assess(fit(exposure_db=102.0, limit_db=80.0)).passed is False  # needs 22


def test_cautions_each_and_at_their_edges():
    assert cautions(fit()) == ()
    # 125 Hz below 10 dB: 9.9 cautions, 10.0 does not
    assert [c.code for c in cautions(fit(bands={125: 9.9}))] == ["low_125"]
    assert cautions(fit(bands={125: 10.0})) == ()
    # left/right gap ≥ 15 dB: 30 − 15 = 15 cautions, 30 − 15.1 = 14.9 does not
    assert [c.code for c in cautions(fit(par_left=30.0, par_right=15.0))] == \
        ["left_right_gap"]
    assert cautions(fit(par_left=30.0, par_right=15.1)) == ()
    # implausible bands: negative, above 60, not finite; 0 and 60 are plausible
    for bad in (-0.5, 60.5, math.nan, math.inf):
        got = cautions(fit(bands={1000: bad}))
        assert [c.code for c in got] == ["implausible_bands"], bad
    assert cautions(fit(bands={1000: 0.0, 2000: 60.0})) == ()
    # cautions are kept on a passing test, all of them, with bilingual text
    r = assess(fit(par_left=35.0, par_right=18.0, bands={125: 5.0, 4000: 75.0},
                    exposure_db=90.0))
    assert r.passed is True
    assert [c.code for c in r.cautions] == ["low_125", "left_right_gap", "implausible_bands"]
    assert "125 Hz" in str(r.cautions[0]) and "/" in str(r.cautions[0])


def test_individual_effective_exposure_with_verdict():
    # LEX 95 − PAR 17 = 78 → good (75 ≤ L < 80); Guangdong median PAR 12 at LEX 104 → 92 →
    # insufficient; LEX 92 − PAR 22 = 70.0 → acceptable (70 ≤ L < 75)
    lvl, v = individual_exposure(95.0, 17.0)
    assert (lvl, v.code) == (78.0, "good")
    assert individual_exposure(104.0, 12.0)[1].code == "insufficient"
    assert individual_exposure(92.0, 22.0)[1].code == "acceptable"
    r = assess(fit(par_binaural=17.0), exposure_db=95.0)  # the job's stored LEX
    assert (r.effective_db, r.verdict.code, r.exposure_db) == (78.0, "good", 95.0)


def test_parse_record_checks_every_field():
    t = parse_record({"worker": "w1", "date": "2026/11/20", "protector": "p1",
                      "method": "F-MIRE", "par_binaural": "18.5", "par_u": "2",
                      "par_left": "20", "par_right": "", "att_125": "nan"},
                     enterprise="ft", today=TODAY)
    assert (t.method, t.par_binaural, t.par_right, t.date) == ("f_mire", 18.5, None, DAY)
    assert math.isnan(t.bands[125])  # kept: a caution, not an error
    for text, code in (("REAT", "reat"), ("loudness balance", "loudness_balance"),
                       ("响度平衡", "loudness_balance")):
        assert parse_record({"worker": "w", "date": "2026-11-20", "protector": "p",
                             "method": text, "par_binaural": 1, "par_u": 0},
                            enterprise="ft").method == code
    with pytest.raises(RowInvalid) as e:
        parse_record({"worker": "bad id!", "date": "2026-12-25", "protector": "p",
                      "method": "guess", "par_binaural": "75", "par_u": "-1"},
                     row=7, enterprise="ft", today=TODAY)
    cols = {x.column for x in e.value.errors}
    assert cols == {"worker", "date", "method", "par_binaural", "par_u"}
    assert all(x.row == 7 for x in e.value.errors)
    assert any("impossible" in x.reason for x in e.value.errors)


# ------------------------------------------------------------------------------ store
@pytest.fixture(scope="module")
def site(stack, tmp_path_factory):
    stack.write_state()
    path = tmp_path_factory.mktemp("site") / "site.toml"
    path.write_text(f'''
[deployment]
timezone = "Asia/Shanghai"
[stack]
data_dir = "{stack.data_dir}"
[[enterprises]]
id = "ft"
name_zh = "试点企业"
industry = "machinery"
group = "pilot"
[[enterprises]]
id = "ft-mqtt"
name_zh = "试点企业二"
industry = "machinery"
group = "pilot"
''', encoding="utf-8")
    # the job "press" of ft has a closed shift on DAY with LEX,8h 96.0 (the ledger's point)
    start = int(dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC).timestamp()) * 10**9
    stack.influx("writer").write([line(schema.EXPOSURE, {
        "enterprise": "ft", "kind": "job", "job": "press", "profile": "CN-GBZ"},
        {"lex_8h": 96.0}, start)], rp=schema.RP_FOREVER)
    return path


class CountingReader:
    """A real InfluxDB reader that records the queries it is asked."""

    def __init__(self, reader):
        self.reader, self.queries = reader, []

    def query_rows(self, q: str):
        self.queries.append(q)
        return self.reader.query_rows(q)


def test_assess_all_asks_each_job_day_once(stack, site):
    # four tests name job "press" of ft: three on DAY, one on DAY + 1 → two (enterprise, job,
    # date) keys, two queries; the latest press shift before the end of either day is the one
    # of DAY, LEX 96. A test with its own exposure (100) asks nothing. PAR 20 − u 3 = 17 ≥
    # 96 − 85 = 11 → pass; LEX − PAR = 96 − 20 = 76
    reg = load_registry(site)
    reader = CountingReader(stack.influx("reader"))
    later = DAY + dt.timedelta(days=1)
    tests = [fit(worker=w, job="press") for w in ("w1", "w2", "w3")]
    tests += [fit(worker="w4", job="press", date=later), fit(job="press", exposure_db=100.0)]
    got = assess_all(reader, reg, tests)
    assert len(reader.queries) == 2
    assert [r.exposure_db for r in got] == [96.0, 96.0, 96.0, 96.0, 100.0]
    assert all(r.passed and r.effective_db == 76.0 for r in got[:4])


HEADER_ZH = "劳动者,日期,护听器,方法,左耳PAR,右耳PAR,双耳PAR,不确定度,att_125,工种,接触水平\n"
ROWS = [
    "w001,2026-11-20,3m-ear-ultrafit,F-MIRE,22,21,21.5,3,18,,100",   # 2 good, passes
    "w002,2026-11-20,3m-ear-ultrafit,REAT,30,12,14,3,8,press,",      # 3 good, job LEX 96
    "w003,2026-11-20,3m-ear-ultrafit,F-MIRE,22,21,75,3,18,,100",     # 4 PAR 75: impossible
    "w001,2026-11-20,3m-ear-ultrafit,F-MIRE,22,21,21.5,3,18,,100",   # 5 repeats row 2
    "w004,2026-13-01,3m-ear-ultrafit,X,22,21,20,3,18,,100",          # 6 bad date and method
]


def write_csv(path, text: str, encoding: str):
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("encoding", ["gbk", "utf-8"])
def test_csv_import_gbk_and_utf8(stack, site, tmp_path, encoding):
    reg = load_registry(site)
    ent = "ft" if encoding == "gbk" else "ft-mqtt"
    f = write_csv(tmp_path / f"fit-{encoding}.csv", HEADER_ZH + "\n".join(ROWS) + "\n",
                  encoding)
    reader, writer = stack.influx("reader"), stack.influx("writer")
    got = import_file(f, reg, reader, writer, enterprise=ent, today=TODAY)
    assert got.encoding == ("gb18030" if encoding == "gbk" else "utf-8")
    assert [n for n, _ in got.stored] == [2, 3]
    assert got.rejected_rows == (4, 6)
    assert {(e.row, e.column) for e in got.errors} == {(4, "par_binaural"), (6, "date"),
                                                       (6, "method")}
    assert [(d.row, d.first_row) for d in got.duplicates] == [(5, 2)]
    by = {r.test.worker: r for _, r in got.stored}
    # row 2: 21.5 − 3 = 18.5 ≥ 100 − 85 = 15 → pass; LEX − PAR = 78.5 → good
    assert (by["w001"].passed, by["w001"].effective_db, by["w001"].verdict.code) == \
        (True, 78.5, "good")
    # row 3: no exposure given; ft's job "press" has LEX 96 stored → needs 11, has 14 − 3 =
    # 11 → pass at the edge; cautions: 125 Hz 8 dB and L/R gap 18 dB. In ft-mqtt there is no
    # such job record → unjudged
    w2 = by["w002"]
    assert [c.code for c in w2.cautions] == ["low_125", "left_right_gap"]
    if ent == "ft":
        assert (w2.exposure_db, w2.passed, w2.effective_db) == (96.0, True, 82.0)
    else:
        assert (w2.exposure_db, w2.passed) == (None, None)
    stored = read_fit_tests(reader, ent, DAY, DAY, "Asia/Shanghai")
    assert [(r["worker"], r["method"], r["source"]) for r in stored] == \
        [("w001", "f_mire", "csv"), ("w002", "reat", "csv")]
    assert json.loads(stored[1]["cautions"]) == ["low_125", "left_right_gap"]
    # the same file again: nothing new, both rows reported as stored before
    again = import_file(f, reg, reader, writer, enterprise=ent, today=TODAY)
    assert (again.stored, again.already) == ((), (2, 3))
    assert len(read_fit_tests(reader, ent, DAY, DAY, "Asia/Shanghai")) == 2


def test_csv_missing_column_and_unknown_enterprise(stack, site, tmp_path):
    reg = load_registry(site)
    f = write_csv(tmp_path / "no-u.csv", "worker,date,protector,method,par_binaural\n"
                  "w1,2026-11-20,p,REAT,20\n", "utf-8")
    with pytest.raises(TableError, match="missing column.*par_u"):
        import_file(f, reg, stack.influx("reader"), stack.influx("writer"), enterprise="ft")
    g = write_csv(tmp_path / "ent.csv", "enterprise,worker,date,protector,method,"
                  "par_binaural,par_u\nnope,w1,2026-11-20,p,REAT,20,2\n", "utf-8")
    got = import_file(g, reg, stack.influx("reader"), stack.influx("writer"), today=TODAY)
    assert [(e.row, e.column) for e in got.errors] == [(2, "enterprise")]


def test_mqtt_listener_one_good_one_bad(stack, site):
    # the analysis account publishes (the ACL lets it write tingbao/v1/+/fittests); the
    # listener stores the good record and dead-letters the bad one with its reason
    reg = load_registry(site)
    endpoint = mqtt_endpoint(reg, stack_dir=stack.data_dir)
    reader, writer = stack.influx("reader"), stack.influx("writer")
    handled = []
    listener = FitTestListener(reg, endpoint, reader, writer, client_id="fit-test-listener",
                               on_handled=handled.append)
    listener.start()
    pub = mqtt_client(stack, "analysis")
    try:
        assert listener.ready.wait(10)
        good = {"worker": "w900", "date": "2026-11-21", "protector": "foam-plug-illustrative",
                "method": "F-MIRE", "par_left": 25, "par_right": 24, "par_binaural": 24.5,
                "par_u": 2.5, "exposure_db": 99.0, "att_125": 12.0}
        bad = {"worker": "w901", "date": "2026-11-21", "protector": "p", "method": "REAT",
               "par_binaural": 80, "par_u": 2}
        assert publish(pub, topic("ft-mqtt"), json.dumps(good)) < 128
        assert publish(pub, topic("ft-mqtt"), json.dumps(bad)) < 128
        wait_for(lambda: len(handled) == 2, 20, "two fit-test messages handled")
    finally:
        close(pub)
        listener.stop()
    assert [h.outcome for h in handled] == ["stored", "refused"]
    # 24.5 − 2.5 = 22 ≥ 99 − 85 = 14 → pass; LEX − PAR = 74.5 → acceptable
    (row,) = read_fit_tests(reader, "ft-mqtt", dt.date(2026, 11, 21), dt.date(2026, 11, 21),
                            "Asia/Shanghai")
    assert (row["worker"], row["passed"], row["source"], row["att_125"]) == \
        ("w900", True, "mqtt", 12.0)
    assert handled[0].result.verdict.code == "acceptable"
    letters = reader.query_rows(schema.dead_letters(stage=DEAD_LETTER_STAGE))
    assert len(letters) == 1
    assert "par_binaural" in letters[0]["reason"] and "impossible" in letters[0]["reason"]
    assert letters[0]["topic"] == "tingbao/v1/ft-mqtt/fittests"


def test_cli_list_and_import(stack, site, tmp_path):
    # tingbao fit-tests import of a file with a refused row exits 1 and names row and column;
    # list prints the stored tests of the day with pass/fail and the verdict
    f = write_csv(tmp_path / "cli.csv", "enterprise,worker,date,protector,method,par_binaural,"
                  "par_u,exposure_db\nft,w777,2026-11-22,p,REAT,20,2,95\n"
                  "ft,w778,2026-11-22,p,REAT,x,2,95\n", "utf-8")
    done = run_tingbao("fit-tests", "import", f, "--config", site, "--stack", stack.data_dir)
    assert done.returncode == 1, done.stderr
    assert "row 3, column par_binaural" in done.stdout
    done = run_tingbao("fit-tests", "list", "--config", site, "--stack", stack.data_dir,
                       "--from", "2026-11-22", "--enterprise", "ft", "--format", "json")
    assert done.returncode == 0, done.stderr
    (row,) = [json.loads(s) for s in done.stdout.splitlines()]
    # 20 − 2 = 18 ≥ 95 − 85 = 10 → pass; 95 − 20 = 75 → good
    assert (row["worker"], row["passed"], row["effective_db"], row["verdict"]) == \
        ("w777", True, 75.0, "good")
