"""The pilot-evaluation report (``tingbao pilot-report``) on a real InfluxDB holding the
stored results of support/pilot_views.py: the PDF's text (poppler's pdftotext) carries the
stored numbers (rates, intervals, lower bounds, verdicts, the DiD and its cells, screening
counts) in Chinese and English, the Noto CJK font is embedded (pdffonts), the figures are
inlined SVG; a period without results says "no data yet" and exits 0; bad dates exit 2.
Page 1 and the forest-plot page are kept in tests/artifacts/ to look at."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support import pilot_views as fx
from support.commands import run_tingbao

from tingbao.collector import schema

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found: apt-get install poppler-utils", pytrace=False)
    return path


@pytest.fixture(scope="module")
def site(stack, tmp_path_factory):
    path = tmp_path_factory.mktemp("site") / "site.toml"
    path.write_text(fx.site_toml('name_zh = "听保试点"\nname_en = "tingbao pilot"')
                    + f'\n[stack]\ndata_dir = "{stack.data_dir}"\n', encoding="utf-8")
    stack.write_state()
    stack.influx("writer").write(fx.pilot_lines(), rp=schema.RP_FOREVER)
    return path


def _pdftext(pdf: Path) -> str:
    text = subprocess.run([_need("pdftotext"), str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    return " ".join(text.split())


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_pdf_has_the_numbers_both_languages_and_embedded_fonts(stack, site, tmp_path, lang):
    out = tmp_path / "out"
    r = run_tingbao("pilot-report", "--config", site, "--from", "2020-01-01", "--to",
                    "2025-12-31", "--lang", lang, "--out", out, "--stack", stack.data_dir,
                    timeout=240)
    assert r.returncode == 0, r.stderr
    html_path, pdf = out / "pilot-report-2020-01-01-2025-12-31.html", \
        out / "pilot-report-2020-01-01-2025-12-31.pdf"
    assert html_path.exists() and pdf.exists(), r.stdout
    html = html_path.read_text(encoding="utf-8")
    # self-contained; forest plots (2025, 2024, 2023), time lines (spot checks, at the ear),
    # DiD, screening: 7 figures
    assert html.count('<img src="data:image/svg+xml;base64,') == 7
    assert "<link" not in html and 'src="http' not in html
    assert fx.HOSTILE not in html and "&lt;img src=x" in html  # the hostile key as text
    text = _pdftext(pdf)
    flat = text.replace(" ", "")  # narrow cells break words over lines
    for s in ("听力保护行动试点评估报告", "Hearing-protection action pilot evaluation",
              "华隆机械厂", "Hualong Machinery", "尚未证实", "not yet shown", "已达到", "met",
              "未达到", "野聚类自助法", "wild cluster bootstrap", "53.7", "疑似职业性噪声聋",
              "GBZ 49", "GBZ 188", "现场抽查", "wear time at the ear"):
        assert s.replace(" ", "") in flat, s
    # the stored numbers: pilots 2025 164/200 = 82.0 % [76.1, 86.7], lower95 77.1 (Wilson,
    # statsmodels); at the ear 86.0 [84.2, 87.7] lower95 84.5; all 2024 67.0 [61.2, 72.4]
    for rate in fx.RATES:
        assert f"{rate.rate:.1f}" in text and f"[{rate.lo95:.1f}, {rate.hi95:.1f}]" in text
        assert f"{rate.lower95:.1f}" in text
    assert "200 (164)" in text and "1500 (1290)" in text
    # DiD (79.8 − 55.2) − (61.2 − 54.9) = +18.3 pp [+9.1, +27.5], the four cells
    assert "+18.3" in text and "[+9.1, +27.5]" in text
    assert all(f"{fx.DID[k]:.1f}" in text for k in ("pilot_base", "pilot_follow",
                                                    "comparison_base", "comparison_follow"))
    # screening of the pilot enterprise: 6 audiograms, 4 workers, 2 suspected (1 mild,
    # 1 moderate, 0 severe), 1 susceptible, 1 STS, 1 age-corrected STS, 1 overdue
    e = fx.SCREENING_EXPECTED
    row = " ".join(str(e[k]) for k in ("exams", "screened", "suspected", "mild", "moderate",
                                       "severe", "susceptible", "sts", "sts_age", "overdue"))
    assert row in text, row
    # fit tests 2 of 3 = 66.7 %
    assert "66.7" in text
    # Chinese first under zh, English first under en (title)
    zh_at = flat.index("听力保护行动试点评估报告")
    en_at = flat.index("Hearing-protectionactionpilotevaluation")
    assert (zh_at < en_at) == (lang == "zh")
    fonts = subprocess.run([_need("pdffonts"), str(pdf)], capture_output=True, text=True,
                           check=True).stdout.splitlines()[2:]
    cjk = [f for f in fonts if "CJK" in f]
    # the 'emb' column: a font line says yes/no for embedded, subset, unicode
    assert cjk and all(re.search(r"\byes\s+yes\s+(yes|no)\s+\d+\s+\d+$", f) for f in cjk), fonts
    # pages 1 and 3 (the forest plots) as PNG to look at
    prefix = tmp_path / "page"
    subprocess.run([_need("pdftoppm"), "-png", "-r", "60", "-f", "1", "-l", "3", str(pdf),
                    str(prefix)], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 3
    ARTIFACTS.mkdir(exist_ok=True)
    for i, png in enumerate(pages, 1):
        shutil.copyfile(png, ARTIFACTS / f"pilot-report-{lang}-page{i}.png")


def test_empty_period_says_no_data_and_bad_dates_exit_2(stack, site, tmp_path):
    r = run_tingbao("pilot-report", "--config", site, "--from", "2010-01-01", "--to",
                    "2012-12-31", "--out", tmp_path, "--stack", stack.data_dir, "--no-pdf",
                    timeout=120)
    assert r.returncode == 0, r.stderr
    assert "no pilot results stored" in r.stderr
    html = (tmp_path / "pilot-report-2010-01-01-2012-12-31.html").read_text(encoding="utf-8")
    assert "暂无数据" in html and "No data yet" in html
    r = run_tingbao("pilot-report", "--config", site, "--from", "2025-02-01", "--to",
                    "2025-01-01", "--out", tmp_path, "--stack", stack.data_dir)
    assert r.returncode == 2 and "before" in r.stderr
