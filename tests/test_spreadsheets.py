"""analysis/spreadsheets.py: CSV in UTF-8, UTF-8 with BOM, GBK and mixed files, XLSX written
by openpyxl here; header aliases; per-row errors with the good rows kept; duplicates."""

from __future__ import annotations

import datetime as dt

import openpyxl
import pytest

from tingbao.analysis.spreadsheets import (
    RowProblems,
    TableError,
    collect_rows,
    decode_csv_bytes,
    normalise_header,
    read_table,
    rejected_rows,
    split_duplicates,
)

ALIASES = {"日期": "date", "企业": "enterprise", "是否佩戴": "wearing", "工号": "worker"}
TEXT = "日期,企业,是否佩戴,工号\n2025-03-04,佛山宏利,是,w-001\n2025-03-05,佛山宏利,否,w-002\n"


def test_header_normalisation():
    # NFKC turns the full-width "Ｄａｔｅ" into "Date"; case-folded; inner blanks/hyphens → "_"
    assert normalise_header("  Ｄａｔｅ ") == "date"
    assert normalise_header("Worker  Pseudonym") == "worker_pseudonym"
    assert normalise_header("worn-correctly") == "worn_correctly"
    assert normalise_header(" 日期 ", ALIASES) == "date"
    assert normalise_header("WORKER", {"Worker": "worker_id"}) == "worker_id"


@pytest.mark.parametrize("encoding, expect", [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"),
                                              ("gbk", "gb18030"), ("gb18030", "gb18030")])
def test_csv_encodings(tmp_path, encoding, expect):
    p = tmp_path / "s.csv"
    p.write_bytes(TEXT.encode(encoding))
    t = read_table(p, aliases=ALIASES, required=("date", "enterprise"))
    assert t.encoding == expect
    assert t.columns == ("date", "enterprise", "wearing", "worker")
    assert t.raw_columns == ("日期", "企业", "是否佩戴", "工号")
    # header is row 1, so the two records are rows 2 and 3, text intact in every encoding
    assert [(r.number, r["enterprise"], r["wearing"]) for r in t.rows] == [
        (2, "佛山宏利", "是"), (3, "佛山宏利", "否")]


def test_gbk_bytes_are_not_utf8():
    # "是" is E6 98 AF in UTF-8 and CA C7 in GBK; CA C7 is not valid UTF-8 (C7 is no
    # continuation byte), so the strict UTF-8 try fails and GB18030 reads it
    assert "是".encode("gbk") == b"\xca\xc7"
    assert decode_csv_bytes(b"a\n\xca\xc7\n") == ("a\n是\n", "gb18030", ())


def test_gbk_pairs_that_are_valid_utf8_are_read_as_gbk():
    # "女" is C5 AE in GBK; C5 is a UTF-8 two-byte lead and AE a continuation byte, so UTF-8
    # reads it as "Ů" (U+016E). Chinese in UTF-8 is three bytes a character, so a reading
    # with only U+0080–U+07FF characters whose GB18030 reading is CJK is GBK.
    assert "女".encode("gbk") == b"\xc5\xae" and b"\xc5\xae".decode("utf-8") == "\u016e"
    # a whole file that is valid UTF-8 only through such pairs
    assert decode_csv_bytes(b"sex\n\xc5\xae\n") == ("sex\n女\n", "gb18030", ())
    # a GBK file whose header fails UTF-8 and one row of which is valid UTF-8 by accident
    data = "性别,工号\n女,w-1\n男,w-2\n".encode("gbk")
    assert decode_csv_bytes(data) == ("性别,工号\n女,w-1\n男,w-2\n", "gb18030", ())
    # real UTF-8 Chinese (three-byte sequences) stays UTF-8, also beside a two-byte character
    assert decode_csv_bytes("女\n".encode()) == ("女\n", "utf-8", ())
    assert decode_csv_bytes("女,Zoë\n".encode()) == ("女,Zoë\n", "utf-8", ())
    # the price, stated: a file whose only non-ASCII text is Latin with accents in UTF-8
    # ("ë" = C3 AB, which is also GBK "毛") is read as GBK; Table.encoding says so
    assert decode_csv_bytes("Zoë\n".encode())[1] == "gb18030"


def test_mixed_file_decoded_line_by_line(tmp_path):
    header = "日期,企业,是否佩戴,工号\n".encode()
    utf8_row = "2025-03-04,佛山宏利,是,w-001\n".encode()
    gbk_row = "2025-03-05,江门协力,否,w-002\n".encode("gbk")
    p = tmp_path / "mixed.csv"
    p.write_bytes(header + utf8_row + gbk_row)
    t = read_table(p, aliases=ALIASES)
    assert t.encoding == "utf-8+gb18030"
    assert [r["enterprise"] for r in t.rows] == ["佛山宏利", "江门协力"]
    assert t.notes and "rows 3 were GB18030" in t.notes[0]


def test_undecodable_bytes(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_bytes(b"date\n\xff\xff\xff\n")  # 0xFF is neither a UTF-8 nor a GB18030 lead byte
    with pytest.raises(TableError, match="UTF-8"):
        read_table(p)


def test_xlsx_first_and_named_sheet(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "说明"
    ws.append(["本表为抽查记录"])
    data = wb.create_sheet("抽查")
    data.append(["2025年噪声防护抽查表"])  # a title row above the header
    data.append(["日期", "企业", "是否佩戴", "工号", "次数"])
    data.append([dt.datetime(2025, 3, 4), "佛山宏利", True, "w-001", 3.0])
    data.append([None, None, None, None, None])  # blank row: skipped silently
    data.append([dt.date(2025, 3, 5), "佛山宏利", "否", "w-002", 2.5])
    p = tmp_path / "s.xlsx"
    wb.save(p)
    t = read_table(p, aliases=ALIASES, sheet="抽查", required=("date", "worker"))
    assert (t.encoding, t.sheet, t.header_row) == ("xlsx", "抽查", 2)
    # sheet rows 3 and 5 (row 4 is blank); datetime at midnight → date, True → "true",
    # 3.0 → "3", 2.5 stays
    assert [(r.number, r["date"], r["wearing"], r["次数"]) for r in t.rows] == [
        (3, "2025-03-04", "true", "3"), (5, "2025-03-05", "否", "2.5")]
    first = read_table(p)
    assert first.sheet == "说明" and first.rows == ()
    with pytest.raises(TableError, match="no sheet 'x'; the sheets are 说明, 抽查"):
        read_table(p, sheet="x")


def test_missing_and_repeated_columns(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("日期,工号\n2025-01-01,w1\n", encoding="utf-8")
    with pytest.raises(TableError, match=r"missing column\(s\) enterprise"):
        read_table(p, aliases=ALIASES, required=("date", "enterprise"))
    p.write_text("日期,date\n2025-01-01,2025-01-01\n", encoding="utf-8")
    with pytest.raises(TableError, match="both mean 'date'"):
        read_table(p, aliases=ALIASES)


def test_row_errors_keep_good_rows_and_duplicates(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("date,n\n2025-01-01,1\n2025-13-01,x\n2025-01-02,2\n2025-01-01,1\n"
                 "2025-01-03,3,extra\n", encoding="utf-8")
    t = read_table(p)
    # row 6 has a third cell: a structural error, the row is not among t.rows
    assert [str(e) for e in t.errors] == ["row 6: 3 cells but the header has 2 columns"]

    def parse(row):
        probs = RowProblems(row.number)
        d = probs.take("date", dt.date.fromisoformat, row["date"])
        n = probs.take("n", int, row["n"])
        probs.check()
        return d, n

    checked = collect_rows(t.rows, parse, t.errors)
    # row 3 has two bad cells: both reported; rows 2, 4, 5 kept
    assert [r for r, _ in checked.good] == [2, 4, 5]
    assert checked.rejected == (3, 6)
    assert [(e.row, e.column) for e in checked.errors] == [(3, "date"), (3, "n"), (6, None)]
    # the helper the import outcomes share: rows 6, 3, 3 in any order → (3, 6), each once
    assert rejected_rows(reversed(checked.errors)) == (3, 6)
    kept, dups = split_duplicates(checked.good, key=lambda v: v)
    assert [r for r, _ in kept] == [2, 4]
    assert [str(d) for d in dups] == ["row 5 repeats row 2 ((datetime.date(2025, 1, 1), 1))"]
