"""The live page's pilot evaluation (``/pilot``, ``/api/pilot``) on a real InfluxDB through
Starlette's TestClient: before anything is stored it says "暂无数据 / no data yet" (HTTP 200,
no error); then the fixture points of support/pilot.py (the stored results of a pilot
evaluation, written as the analysis would) and the page's numbers against them: rates with
their 95 % intervals and one-sided lower bounds, the milestone verdicts (met only when the
lower bound reaches the milestone), observed beside edge, the difference in differences,
screening counts per enterprise by each worker's latest result, the fit-test pass rate; a
hostile key shown as text; both languages; bad dates refused."""

from __future__ import annotations

import html as htmlmod
import re
import tomllib

import pytest
from starlette.testclient import TestClient
from support import pilot_views as fx

from tingbao.analysis.alert_store import AlertStore
from tingbao.analysis.pilot_results import verdict
from tingbao.collector import schema
from tingbao.collector.registry.site import registry_from_mapping
from tingbao.dashboards.live.app import create_app
from tingbao.dashboards.live.data import FloorData


@pytest.fixture(scope="module")
def pilot(stack):
    reg = registry_from_mapping(tomllib.loads(fx.site_toml()))
    reader, writer = stack.influx("reader"), stack.influx("writer")
    app = create_app(reg, AlertStore(reader, writer), FloorData(reg, reader),
                     sse_period_s=0.0)
    before = {"page": TestClient(app).get("/pilot"),
              "page_en": TestClient(app).get("/pilot?lang=en"),
              "api": TestClient(app).get("/api/pilot")}
    writer.write(fx.pilot_lines(), rp=schema.RP_FOREVER)
    return {"app": app, "before": before, "reg": reg}


def _client(pilot) -> TestClient:
    """A client of its own (the language cookie of one test does not leak into another)."""
    return TestClient(pilot["app"])


def test_empty_store_says_no_data_yet(pilot):
    b = pilot["before"]
    assert b["page"].status_code == 200 and b["page_en"].status_code == 200
    assert "暂无数据" in b["page"].text and "No data yet" in b["page_en"].text
    assert 'id="pilot-empty"' in b["page"].text and "pilot.js" not in b["page"].text
    # both enterprises of this registry are survey-only (no [[meters]]): no floor to link to
    assert 'href="/floor/' not in b["page"].text and 'href="/pilot"' in b["page"].text
    api = b["api"].json()
    assert api["empty"] is True and api["rates"] == [] and api["did"] == []
    # the reference is there even without data: baseline 53.7 %, the registry's milestones
    assert api["baseline"]["value_pct"] == 53.7
    assert api["milestones"] == [[2023, 65.0], [2024, 70.0], [2025, 80.0]]


def _row(page: str, scope: str, key: str, period: str, source: str) -> str:
    key = re.escape(htmlmod.escape(key))
    m = re.search(f'<tr class="rate-row" data-scope="{scope}" data-key="{key}" '
                  f'data-period="{period}" data-source="{source}">(.*?)</tr>', page, re.S)
    assert m, (scope, key, period, source)
    return m.group(1)


def _cell(row: str, cls: str) -> str:
    m = re.search(f'class="{re.escape(cls)}' + r'[^"]*"[^>]*>(.*?)</(td|span)>', row, re.S)
    assert m, cls
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


def test_rates_intervals_and_verdicts_on_the_page(pilot):
    page = _client(pilot).get("/pilot").text
    assert "暂无数据" not in page
    for r in fx.RATES:
        row = _row(page, r.scope, r.key, r.period, r.source)
        # the stored numbers, printed to 0.1 %: e.g. pilots 2025 164/200 = 82.0 %,
        # Wilson [76.1, 86.7], lower95 77.1 (statsmodels, support/pilot.py)
        assert _cell(row, "rate") == f"{r.rate:.1f}"
        assert _cell(row, "ci") == f"[{r.lo95:.1f}, {r.hi95:.1f}]"
        assert _cell(row, "lower95") == f"{r.lower95:.1f}"
        assert _cell(row, "n").startswith(f"{r.n} ({r.x})")
    # the verdicts, independently: met needs lower95 ≥ milestone
    pilots_obs = _row(page, "group", "pilot", "2025", "observed")
    assert 'data-verdict="not_yet_shown"' in pilots_obs  # 77.1 < 80 ≤ 82.0
    assert "尚未证实" in pilots_obs and "已达到" not in pilots_obs
    assert 'data-verdict="met"' in _row(page, "group", "pilot", "2025", "edge")  # 84.5 ≥ 80
    assert 'data-verdict="not_met"' in _row(page, "group", "comparison", "2025", "observed")
    assert 'data-verdict="not_met"' in _row(page, "all", "all", "2024", "observed")  # 67 < 70
    assert 'data-verdict="met"' in _row(page, "enterprise", fx.PILOT, "2025", "observed")
    assert verdict(82.0, 77.11, 80.0) == "not_yet_shown" and verdict(80.0, 80.0, 80.0) == "met"
    assert verdict(79.9, 70.0, 80.0) == "not_met" and verdict(90.0, 85.0, None) is None
    # a bound on the milestone meets it, whatever the last bit after × 100 (0.8 → 79.99…)
    assert verdict(80.0, 79.99999999999999, 80.0) == "met"
    # observed and edge side by side (adjacent rows), with their source texts
    i_obs = page.index('data-key="pilot" data-period="2025" data-source="observed"')
    i_edge = page.index('data-key="pilot" data-period="2025" data-source="edge"')
    assert 0 < i_edge - i_obs < 3000
    assert "现场抽查" in page and "耳内实测佩戴时长" in page
    # method, design effect, clusters
    allrow = _row(page, "all", "all", "2024", "observed")
    assert "GEE" in allrow and "1.80" in allrow and _cell(allrow, "clusters") == "4"
    assert "设计效应" in _row(page, "industry", "machinery", "2024-Q3", "observed")
    # names from the registry; the baseline and the milestones
    assert "华隆机械厂" in page and "试点企业" in page and "机械制造" in page
    assert re.search(r'id="baseline">53.7 %<', page)
    assert "2025 80 %" in page and "2023 65 %" in page


def _erow(page: str, cls: str, enterprise: str) -> str:
    m = re.search(f'<tr class="{cls}" data-enterprise="{enterprise}">(.*?)</tr>', page, re.S)
    assert m, (cls, enterprise)
    return m.group(1)


def test_did_screening_fit_tests_and_data_basis(pilot):
    page = _client(pilot).get("/pilot").text
    did = re.search(r'<tr class="did-row" data-baseline="2023" data-followup="2025">(.*?)</tr>',
                    page, re.S).group(1)
    # (79.8 − 55.2) − (61.2 − 54.9) = 18.3 pp, interval [9.1, 27.5]
    d = fx.DID
    assert round((d["pilot_follow"] - d["pilot_base"])
                 - (d["comparison_follow"] - d["comparison_base"]), 1) == d["did_pp"]
    assert _cell(did, "did") == "+18.3" and _cell(did, "ci") == "[+9.1, +27.5]"
    for k in ("pilot_base", "pilot_follow", "comparison_base", "comparison_follow"):
        assert _cell(did, k) == f"{d[k]:.1f}"
    assert "野聚类自助法" in did and "3 / 3" in did
    scr = _erow(page, "screening-row", fx.PILOT)
    # 6 audiograms of 4 workers; by each worker's newer result: w1 mild, w2 moderate and
    # overdue, w3 susceptible + STS, w4 age-corrected STS (its older overdue does not count)
    for k, v in fx.SCREENING_EXPECTED.items():
        if k != "workers_examined":
            assert _cell(scr, k) == str(v), k
    fit = _erow(page, "fit-row", fx.PILOT)
    assert _cell(fit, "fit_tests") == "3" and _cell(fit, "fit_passed") == "2"
    assert _cell(fit, "fit_pass_pct") == "66.7"  # 2/3
    basis = _erow(page, "basis-row", fx.COMPARISON)
    assert _cell(basis, "observations") == "3" and _cell(basis, "observed_correct") == "2"
    pb = _erow(page, "basis-row", fx.PILOT)
    assert _cell(pb, "wear_days") == "2"


def test_api_matches_the_fixture(pilot):
    api = _client(pilot).get("/api/pilot?lang=en").json()
    assert api["empty"] is False
    got = {(r["scope"], r["key"], r["period"], r["source"]): r for r in api["rates"]}
    assert len(got) == len(fx.RATES)
    for r in fx.RATES:
        g = got[(r.scope, r.key, r.period, r.source)]
        assert g["rate"] == pytest.approx(r.rate, abs=0.005)
        assert g["lower95"] == pytest.approx(r.lower95, abs=0.005)
        assert g["milestone"] == r.milestone and g["met_stored"] == r.met
        assert g["verdict"] == verdict(r.rate, r.lower95, r.milestone)
        assert g["inconsistent"] is False
    assert got[("group", "pilot", "2025", "observed")]["label"] == "pilot enterprises"
    assert got[("industry", "machinery", "2024-Q3", "observed")]["kind"] == "quarter"
    (did,) = api["did"]
    assert did["did_pp"] == 18.3 and did["method"] == "wild_cluster_bootstrap"
    ents = {e["enterprise"]: e for e in api["enterprises"]}
    assert ents[fx.PILOT]["grades"] == {"mild": 1, "moderate": 1}
    assert ents[fx.PILOT]["exams"] == 6 and ents[fx.PILOT]["workers_examined"] == 4
    assert ents[fx.COMPARISON]["fit_tests"] == 0 and ents[fx.COMPARISON]["group"] == "comparison"
    # a range before the data: nothing, and said so
    old = _client(pilot).get("/api/pilot?from=2010-01-01&to=2019-12-31").json()
    assert old["empty"] is True and old["rates"] == []
    # only 2025: the 2023/2024 rates and the quarter drop out
    y25 = _client(pilot).get("/api/pilot?from=2025-01-01&to=2025-12-31").json()
    assert {r["period"] for r in y25["rates"]} == {"2025"}


def test_hostile_key_is_text_and_english_page(pilot):
    c = _client(pilot)
    page = c.get("/pilot?lang=en").text
    assert fx.HOSTILE not in page  # never as markup, in the table or in the JSON island
    assert htmlmod.escape(fx.HOSTILE) in page
    assert "\\u003cimg" in page  # the JSON for the charts escapes < too
    assert "not yet shown" in page and "Hualong Machinery" in page
    assert "one-sided 95 % lower bound" in page.lower() or "One-sided 95 % lower bound" in page
    assert 'id="nav-pilot"' in page
    assert c.get("/pilot?lang=zh").text.count("佩戴率") >= 3  # the cookie remembered en
    # bad dates: 400, a page and a JSON error
    assert c.get("/pilot?from=2025-13-01").status_code == 400
    r = c.get("/api/pilot?from=2025-06-01&to=2025-01-01")
    assert r.status_code == 400 and "from/to" in r.json()["error"]
    # the chart script and ECharts are served
    assert c.get("/static/pilot.js").status_code == 200


def test_both_languages_share_one_read_of_the_store(pilot, stack):
    # the /pilot cache holds the store's results per range, not per language: with a TTL
    # of 60 s, /api/pilot in zh then in en (same range) computes once (cache.computed + 1)
    # and each answer carries its own language's labels; apart from the labels (rates'
    # and enterprises' "label", the baseline's) the two answers are the same numbers
    reader = stack.influx("reader")
    app = create_app(pilot["reg"], AlertStore(reader, stack.influx("writer")),
                     FloorData(pilot["reg"], reader), sse_period_s=60.0)
    c = TestClient(app)
    before = app.state.cache.computed
    zh = c.get("/api/pilot?lang=zh&from=2020-01-01&to=2025-12-31").json()
    en = c.get("/api/pilot?lang=en&from=2020-01-01&to=2025-12-31").json()
    assert app.state.cache.computed == before + 1
    zh_label = {(r["scope"], r["key"]): r["label"] for r in zh["rates"]}
    en_label = {(r["scope"], r["key"]): r["label"] for r in en["rates"]}
    assert en_label[("group", "pilot")] == "pilot enterprises"
    assert zh_label[("group", "pilot")] != "pilot enterprises"
    assert en["baseline"]["label"] != zh["baseline"]["label"]

    def numbers(snap):
        return {**snap, "baseline": {**snap["baseline"], "label": None},
                "rates": [{**r, "label": None} for r in snap["rates"]],
                "enterprises": [{**e, "label": None} for e in snap["enterprises"]]}

    assert numbers(zh) == numbers(en) and len(zh["rates"]) == len(fx.RATES)
