"""Tables that people fill in: CSV and XLSX files read into numbered rows, with per-row errors.

What Chinese offices export (issue 14, "Bad input"): CSV in UTF-8, UTF-8 with a byte-order
mark (Excel's "CSV UTF-8"), or GBK/GB18030 (Excel's default "CSV" on a Chinese Windows), and
XLSX workbooks. Surveys (``observations.py``), fit tests and audiograms are read through
:func:`read_table`; each importer then checks its rows one by one with :func:`collect_rows`,
keeps the good ones and reports every bad one as a :class:`RowError` naming the row and the
column, and reports repeated rows with :func:`split_duplicates`.

Decisions:

* **Encoding.** A UTF-8 BOM means ``utf-8-sig``. Otherwise the bytes are decoded as UTF-8
  strictly, then as GB18030 (a superset of GBK and GB2312) strictly; :attr:`Table.encoding`
  says which. A file whose lines differ (some UTF-8 with non-ASCII text, some only GB18030:
  two exports pasted together) is decoded line by line, each line with the first of the two
  that reads it, and :attr:`Table.encoding` is ``"utf-8+gb18030"`` with a note naming the
  GB18030 rows. Bytes neither reads are a :class:`TableError`. A GBK line can also be valid
  UTF-8 by accident: 女 is C5 AE in GBK, which UTF-8 reads as "Ů". Chinese text in UTF-8 is
  three bytes per character (U+0800 and up), while a GBK pair that happens to be valid UTF-8
  is always a two-byte sequence (U+0080–U+07FF: Latin, Greek, Cyrillic …, which Chinese
  forms do not hold). So a line that fails UTF-8 elsewhere in the file, or a file that
  reads as UTF-8 only through such pairs, is taken as GB18030 when its UTF-8 reading has
  only two-byte characters and its GB18030 reading is CJK (:func:`_gb_pair_only`). The
  price: a UTF-8 file whose only non-ASCII text is accented Latin ("ë" = C3 AB = GBK 毛) is
  read as GB18030; in Chinese survey forms that is the rarer case, and the encoding used is
  reported (:attr:`Table.encoding`).
* **Row numbers** are the ones a spreadsheet program shows: the first record of the file is
  row 1 (a CSV record with a quoted line break is still one row), an XLSX row its sheet row.
* **The header** is the first non-blank row, or, when the caller names ``required`` columns,
  the first row among the first :data:`HEADER_SEARCH_ROWS` that holds them all (a title row
  such as "2025年噪声防护抽查表" above the header is skipped). Header names are normalised
  (:func:`normalise_header`: Unicode NFKC so full-width letters become ASCII, whitespace
  trimmed, case folded, inner spaces and hyphens as ``_``) and then mapped through the
  caller's aliases (``{"日期": "date"}``). Two columns with one name are a TableError.
* **Cells** are text: stripped strings; ``""`` for an empty cell; an XLSX date (or datetime
  at midnight) as ``YYYY-MM-DD``, a datetime as ``YYYY-MM-DD HH:MM:SS``, a boolean as
  ``true``/``false``, an integral number as an integer (``1.0`` → ``1``). Blank rows are
  skipped without an error; a row with more cells than the header has columns is a row error.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import os
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["Duplicate", "HEADER_SEARCH_ROWS", "Row", "RowError", "RowInvalid", "RowProblems",
           "Table", "TableError", "Checked", "collect_rows", "decode_csv_bytes",
           "normalise_header", "read_table", "rejected_rows", "split_duplicates"]

T = TypeVar("T")

HEADER_SEARCH_ROWS = 10
"""With ``required`` columns, the header is looked for among this many first rows."""
XLSX_SUFFIXES = (".xlsx", ".xlsm")


class TableError(ValueError):
    """The file as a whole cannot be read (unreadable bytes, no header, a required column
    missing, an unknown sheet); the text says what to do."""


@dataclasses.dataclass(frozen=True)
class RowError:
    """One problem of one row: ``row`` as a spreadsheet shows it, ``column`` the normalised
    column name (None when the problem is the row as a whole), ``reason`` in plain words."""

    row: int
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.reason}"


class RowInvalid(ValueError):
    """Raised by a row parser: the row's errors (one or more :class:`RowError`)."""

    def __init__(self, errors: Sequence[RowError]):
        self.errors = tuple(errors)
        super().__init__("; ".join(map(str, self.errors)))


@dataclasses.dataclass(frozen=True)
class Row:
    """One data row: its ``number`` (spreadsheet row) and ``values`` (normalised column →
    stripped text; every header column present, ``""`` when empty)."""

    number: int
    values: Mapping[str, str]

    def __getitem__(self, column: str) -> str:
        return self.values[column]

    def get(self, column: str, default: str = "") -> str:
        return self.values.get(column, default)


@dataclasses.dataclass(frozen=True)
class Table:
    """A read table. ``encoding`` is ``utf-8``, ``utf-8-sig``, ``gb18030``,
    ``utf-8+gb18030`` (line by line) or ``xlsx``; ``sheet`` the XLSX sheet read; ``columns``
    the normalised header names (``raw_columns`` as written); ``header_row`` its row number;
    ``errors`` rows that could not be split into the columns (too many cells); ``notes``
    what a user should know (e.g. which rows were GB18030 in a mixed file)."""

    path: str
    encoding: str
    sheet: str | None
    columns: tuple[str, ...]
    raw_columns: tuple[str, ...]
    header_row: int
    rows: tuple[Row, ...]
    errors: tuple[RowError, ...] = ()
    notes: tuple[str, ...] = ()


# ------------------------------------------------------------------------------- headers
def normalise_header(name: object, aliases: Mapping[str, str] | None = None) -> str:
    """A header cell as a column name: NFKC, stripped, case-folded, runs of spaces, hyphens
    and slashes as one ``_``; then looked up in ``aliases`` (whose keys are normalised the
    same way), e.g. ``" Worker  Pseudonym"`` → ``worker_pseudonym``, ``"日期"`` with
    ``{"日期": "date"}`` → ``date``."""
    key = _header_key(name)
    return _alias_table(aliases).get(key, key) if aliases else key


def _header_key(name: object) -> str:
    """:func:`normalise_header` without the aliases."""
    text = unicodedata.normalize("NFKC", "" if name is None else str(name)).strip().casefold()
    out, gap = [], False
    for ch in text:
        if ch.isspace() or ch in "-/":
            gap = True
            continue
        if gap and out:
            out.append("_")
        gap = False
        out.append(ch)
    return "".join(out)


def _alias_table(aliases: Mapping[str, str] | None) -> dict[str, str]:
    """``aliases`` with their keys normalised (:func:`_header_key`), once per table read."""
    return {_header_key(k): v for k, v in (aliases or {}).items()}


# ------------------------------------------------------------------------------- decoding
def decode_csv_bytes(data: bytes) -> tuple[str, str, tuple[int, ...]]:
    """(text, encoding, gb_lines): ``data`` decoded as described in the module docstring.
    ``gb_lines`` are the 1-based physical lines decoded as GB18030 in a mixed file (empty
    otherwise). Raises TableError when neither UTF-8 nor GB18030 reads the bytes."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig", ()
        except UnicodeDecodeError as e:
            return _line_by_line(data[3:], e, bom=True)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        first_error = e
    else:
        if not _gb_pair_only(data):
            return text, "utf-8", ()
        return data.decode("gb18030"), "gb18030", ()
    lines = data.splitlines(keepends=True)
    utf8_non_ascii = any(not ln.isascii() and _reads_as_utf8(ln) and not _gb_pair_only(ln)
                         for ln in lines)
    if not utf8_non_ascii:
        try:
            return data.decode("gb18030"), "gb18030", ()
        except UnicodeDecodeError as e:
            raise TableError(f"the file is neither UTF-8 (byte {first_error.start}) nor "
                             f"GB18030/GBK (byte {e.start}); save it again as CSV UTF-8 "
                             f"(另存为 CSV UTF-8)") from None
    return _line_by_line(data, first_error, bom=False)


def _gb_pair_only(b: bytes) -> bool:
    """True when ``b`` has non-ASCII bytes, reads as UTF-8 only as two-byte characters
    (U+0080–U+07FF, none of them Chinese) and reads as GB18030 with every non-ASCII
    character at or above U+2E80 (CJK radicals, punctuation, ideographs, full-width forms):
    GBK text that is valid UTF-8 by accident."""
    if b.isascii():
        return False
    try:
        u, g = b.decode("utf-8"), b.decode("gb18030")
    except UnicodeDecodeError:
        return False
    return (all(ord(c) < 0x800 for c in u)
            and all(ord(c) >= 0x2E80 for c in g if not c.isascii()))


def _reads_as_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _line_by_line(data: bytes, first_error: UnicodeDecodeError, *, bom: bool
                  ) -> tuple[str, str, tuple[int, ...]]:
    parts, gb = [], []
    for i, ln in enumerate(data.splitlines(keepends=True), start=1):
        if _reads_as_utf8(ln) and not _gb_pair_only(ln):
            parts.append(ln.decode("utf-8"))
            continue
        try:
            parts.append(ln.decode("gb18030"))
        except UnicodeDecodeError:
            raise TableError(f"line {i} is neither UTF-8 nor GB18030/GBK; save the file "
                             f"again in one encoding (另存为 CSV UTF-8)") from None
        gb.append(i)
    return "".join(parts), "utf-8+gb18030", tuple(gb)


# ------------------------------------------------------------------------------- reading
def read_table(path: str | os.PathLike, *, aliases: Mapping[str, str] | None = None,
               required: Iterable[str] = (), sheet: str | None = None) -> Table:
    """Read a CSV (``.csv``/``.txt``; ``.tsv`` tab-separated; other CSVs sniffed among
    ``, ; \\t``) or XLSX (``.xlsx``/``.xlsm``: ``sheet`` by name, else the first) file.

    ``aliases`` maps header names (any case, Chinese or English) to the caller's column
    names; ``required`` (normalised names) must all be in the header, else TableError
    listing the missing ones and the columns found."""
    p = Path(path)
    required = tuple(required)
    suffix = p.suffix.lower()
    try:
        if suffix in XLSX_SUFFIXES:
            records, encoding, sheet_name, notes = _xlsx_records(p, sheet)
        else:
            if sheet is not None:
                raise TableError(f"{p.name}: --sheet applies to XLSX workbooks only")
            records, encoding, notes = _csv_records(p)
            sheet_name = None
    except OSError as e:
        raise TableError(f"{p}: cannot read ({e.strerror or e})") from None
    return _table(p, records, encoding, sheet_name, notes, aliases, required)


def _csv_records(p: Path) -> tuple[list[tuple[int, list[str]]], str, tuple[str, ...]]:
    data = p.read_bytes()
    text, encoding, gb_lines = decode_csv_bytes(data)
    sample = text[:4096]
    if p.suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records, gb_rows = [], []
    line_start = 1
    gb_set = set(gb_lines)
    for number, cells in enumerate(reader, start=1):
        line_end = reader.line_num
        if gb_set and any(ln in gb_set for ln in range(line_start, line_end + 1)):
            gb_rows.append(number)
        line_start = line_end + 1
        records.append((number, [c.strip() for c in cells]))
    notes = ()
    if gb_rows:
        notes = (f"mixed encodings: rows {_ranges(gb_rows)} were GB18030/GBK, the others "
                 f"UTF-8 (编码混合，已逐行识别)",)
    return records, encoding, notes


def _ranges(numbers: Sequence[int]) -> str:
    out, start, prev = [], None, None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = n
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)


def _xlsx_records(p: Path, sheet: str | None
                  ) -> tuple[list[tuple[int, list[str]]], str, str, tuple[str, ...]]:
    import zipfile

    import openpyxl

    try:
        wb = openpyxl.load_workbook(p, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise TableError(f"{p.name}: not a readable XLSX workbook ({e}); save it again as "
                         f"Excel .xlsx") from None
    try:
        if sheet is None:
            ws = wb.worksheets[0]
        elif sheet in wb.sheetnames:
            ws = wb[sheet]
        else:
            raise TableError(f"{p.name}: no sheet {sheet!r}; the sheets are "
                             f"{', '.join(wb.sheetnames)}")
        records = []
        for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
            records.append((number, [_cell_text(v) for v in values]))
        return records, "xlsx", ws.title, ()
    finally:
        wb.close()


def _cell_text(v: object) -> str:
    """An XLSX cell value as the text a CSV of it would hold (module docstring, "Cells")."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dt.datetime):
        if v.time() == dt.time(0):
            return v.date().isoformat()
        return v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _table(p: Path, records: list[tuple[int, list[str]]], encoding: str, sheet: str | None,
           notes: tuple[str, ...], aliases: Mapping[str, str] | None,
           required: tuple[str, ...]) -> Table:
    nonblank = [(n, cells) for n, cells in records if any(c for c in cells)]
    if not nonblank:
        raise TableError(f"{p.name}: the {'sheet' if sheet else 'file'} is empty; the first "
                         f"row must name the columns")
    table = _alias_table(aliases)

    def column(cell: str) -> str:
        key = _header_key(cell)
        return table.get(key, key)

    header_at = 0
    if required:
        for i, (_, cells) in enumerate(nonblank[:HEADER_SEARCH_ROWS]):
            names = {column(c) for c in cells}
            if all(r in names for r in required):
                header_at = i
                break
    header_row, raw = nonblank[header_at]
    while raw and not raw[-1]:
        raw = raw[:-1]
    columns = [column(c) for c in raw]
    seen: dict[str, int] = {}
    for i, c in enumerate(columns):
        if not c:
            continue
        if c in seen:
            raise TableError(f"{p.name}: columns {seen[c] + 1} ({raw[seen[c]]!r}) and {i + 1} "
                             f"({raw[i]!r}) both mean {c!r}; rename or delete one")
        seen[c] = i
    missing = [r for r in required if r not in seen]
    if missing:
        found = ", ".join(c for c in columns if c) or "none"
        raise TableError(f"{p.name}: missing column(s) {', '.join(missing)} (缺少列); the "
                         f"header (row {header_row}) has {found}")
    rows, errors = [], []
    for number, cells in nonblank[header_at + 1:]:
        extra = [c for c in cells[len(columns):] if c]
        if extra:
            errors.append(RowError(number, None, f"{len(cells)} cells but the header has "
                                                 f"{len(columns)} columns"))
            continue
        values = {c: (cells[i] if i < len(cells) else "") for i, c in enumerate(columns) if c}
        rows.append(Row(number, values))
    return Table(str(p), encoding, sheet, tuple(c for c in columns if c),
                 tuple(r for r, c in zip(raw, columns, strict=True) if c), header_row,
                 tuple(rows), tuple(errors), notes)


# ------------------------------------------------------------------------------- checking
class RowProblems:
    """The errors of one row, gathered while it is parsed, so that a row with three bad cells
    reports all three::

        p = RowProblems(row.number)
        date = p.take("date", parse_date, row["date"])   # None when it failed
        if date and date > today: p.add("date", "in the future")
        p.check()                                          # raises RowInvalid if any
    """

    def __init__(self, row: int):
        self.row = row
        self.errors: list[RowError] = []

    def add(self, column: str | None, reason: str) -> None:
        self.errors.append(RowError(self.row, column, reason))

    def take(self, column: str, convert: Callable[[str], T], text: str) -> T | None:
        """``convert(text)``; a ValueError (or TypeError) becomes an error of ``column``
        with the exception's text, and None is returned."""
        try:
            return convert(text)
        except (ValueError, TypeError) as e:
            self.add(column, str(e))
            return None

    def __bool__(self) -> bool:
        return bool(self.errors)

    def check(self) -> None:
        if self.errors:
            raise RowInvalid(self.errors)


@dataclasses.dataclass(frozen=True)
class Checked(Generic[T]):
    """The outcome of :func:`collect_rows`: ``good`` as (row number, parsed value) in file
    order, ``errors`` every problem of the rejected rows (several per row possible), and
    ``rejected`` the numbers of the rejected rows."""

    good: tuple[tuple[int, T], ...]
    errors: tuple[RowError, ...]

    @property
    def rejected(self) -> tuple[int, ...]:
        return rejected_rows(self.errors)


def rejected_rows(errors: Iterable[RowError]) -> tuple[int, ...]:
    """The numbers of the rows ``errors`` reject, ascending, each once (a row may have
    several errors)."""
    return tuple(sorted({e.row for e in errors}))


def collect_rows(rows: Iterable[Row], parse: Callable[[Row], T],
                 errors: Iterable[RowError] = ()) -> Checked[T]:
    """Parse every row with ``parse``; a row whose parser raises :class:`RowInvalid` is
    rejected with its errors, the others are kept. ``errors`` (e.g. :attr:`Table.errors`)
    are added in front. Other exceptions propagate: they are bugs, not bad input."""
    good, errs = [], list(errors)
    for row in rows:
        try:
            good.append((row.number, parse(row)))
        except RowInvalid as e:
            errs.extend(e.errors)
    return Checked(tuple(good), tuple(sorted(errs, key=lambda e: e.row)))


@dataclasses.dataclass(frozen=True)
class Duplicate:
    """Row ``row`` repeats the key of the earlier row ``first_row``."""

    row: int
    first_row: int
    key: Hashable

    def __str__(self) -> str:
        return f"row {self.row} repeats row {self.first_row} ({self.key})"


def split_duplicates(numbered: Iterable[tuple[int, T]], key: Callable[[T], Hashable]
                     ) -> tuple[list[tuple[int, T]], list[Duplicate]]:
    """(kept, duplicates): the first row of each ``key`` is kept, each later one reported."""
    first: dict[Hashable, int] = {}
    kept, dups = [], []
    for number, item in numbered:
        k = key(item)
        if k in first:
            dups.append(Duplicate(number, first[k], k))
        else:
            first[k] = number
            kept.append((number, item))
    return kept, dups
