"""A plant's exported tables as MES and spreadsheet programs write them (CSV, Excel workbooks, Parquet): the CSV
delimiter and text encoding found from the file, and numbers written with a decimal comma (Excel's way in most
European locales) read as numbers. Shared by the logs `twin fit` reads and the run-to-failure tables `twin train`
reads; `with_decimal_point` also by the scenario's, the command line's and a gateway's refusals. Light to import
(pandas is loaded where a table is read)."""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def encoding(head: bytes) -> str | None:
    """A text export's encoding by the byte-order mark its first bytes `head` begin with (UTF-8's; UTF-16's, as
    Excel's 'Unicode text' writes it), or UTF-16 without one by its zero bytes (a header's ASCII letters in UTF-16 are
    each a letter and a zero byte: Windows tools' 'Unicode' exports); None otherwise: then it is read as UTF-8, else
    as Windows-1252 (Excel's 'CSV' in Western European locales writes 'Störung' with one byte for the 'ö', which UTF-8
    refused)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    even, odd = head[0::2], head[1::2]
    if len(head) >= 8 and all(0x20 <= b < 0x7F for b in even) and not any(odd):
        return "utf-16-le"
    if len(head) >= 8 and all(0x20 <= b < 0x7F for b in odd) and not any(even):
        return "utf-16-be"
    return None


ENCODINGS = "UTF-8, UTF-16, or Windows-1252 (Excel's CSV in Western Europe)"
PARQUET, EXCEL = (".parquet", ".pq"), (".xlsx", ".xlsm")
UTC_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"  # an ISO 8601 time's UTC offset, at its end
OLE = b"\xd0\xcf\x11\xe0"  # an Office 97-2003 document's first bytes: an .xls, or a workbook saved with a password


def read_frame(path: Path, sep: str | None = None, header: int | str | None = "infer",
               want: Collection[str] = ()) -> tuple[pd.DataFrame, str | None]:
    """A plant's table as written, and the delimiter it was read with (None but for text): Parquet; an Excel
    workbook's first sheet (.xlsx, or Excel 97-2003's .xls; calamine: dates and numbers as Excel typed them), or the
    first to name a column of `want` where the first names none (a cover sheet before the table's: `attrs["sheet"]`);
    or text in its encoding, with delimiter `sep` (a character, or a pattern such as r"\\s+" for whitespace), else the
    one found from the file. ValueError or OSError saying why not: a binary file named as text is named as such, not
    read as garbled text."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix in PARQUET:
        return pd.read_parquet(path), None
    with path.open("rb") as f:
        head = f.read(8)
    ole, zipped = head.startswith(OLE), head.startswith(b"PK\x03\x04")
    if suffix in EXCEL and ole:  # calamine: 'Cannot detect file format'
        raise ValueError("an Office 97-2003 document, not an .xlsx workbook: a workbook saved with a password is one; "
                         "save it without a password")
    if suffix in EXCEL or (suffix == ".xls" and (ole or zipped)):
        try:
            # calamine (Rust): 200,000 rows of a status log read in 1.1 s, where openpyxl took 7.3 s; .xls too
            with pd.ExcelFile(path, engine="calamine") as book:
                df, above, title = _sheet_with(book, header, want)
            return _titled(df, above, title), None
        except OSError:
            raise
        except Exception as e:  # a damaged workbook fails deep in the zip, XML or OLE reader, in any way
            locked = "; a workbook saved with a password is one: save it without" if ole else ""
            raise ValueError(f"not a readable Excel workbook ({type(e).__name__}: {' '.join(str(e).split())}"
                             f"{locked})") from None
    if ole:
        raise ValueError("an Excel 97-2003 workbook or another Office document, not text: a workbook is read when its "
                         "name ends in .xls or .xlsx")
    if zipped:
        raise ValueError("a zip archive, not text: an Excel workbook is read when its name ends in .xlsx")
    if suffix == ".xls" and head.lstrip().startswith(b"<"):  # an MES's 'Excel export' that is a web page
        raise ValueError("a web page (HTML) named .xls, as some MES write their Excel exports: open it in Excel and "
                         "save it as .xlsx or CSV")
    # text named .xls (an MES's tab-separated 'Excel export') is read as the text it is
    bom = encoding(head)
    sep = sep or delimiter(path, bom or "utf-8")
    above, title = _title_lines(path, sep, bom or "utf-8") if len(sep) == 1 and header is not None else (0, "")
    tried = [bom] if bom else ["utf-8", "cp1252"]  # the file is read once unless UTF-8 refuses one of its bytes
    for text in tried[:-1]:
        try:
            return _titled(_read_text(path, sep, header, text, above), above, title), sep
        except UnicodeDecodeError:
            continue
    return _titled(_read_text(path, sep, header, tried[-1], above), above, title), sep


def _sheet_with(book: Any, header: int | str | None, want: Collection[str]) -> tuple[pd.DataFrame, int, str]:
    """A workbook's first sheet as a table (`_sheet`), or where it names no column of `want` (a cover sheet) the first
    sheet after it that does (`attrs["sheet"]`); `attrs["sheets"]` names them all, for `title_hint`."""
    sheets = list(book.sheet_names)

    def names(table: pd.DataFrame) -> bool:
        return bool({str(c).strip() for c in table.columns} & set(want))

    read = _sheet(book, 0, header)
    if want and not names(read[0]):
        found = next(((name, other) for name in sheets[1:] if names((other := _sheet(book, name, header))[0])), None)
        if found is not None:
            read = found[1]
            read[0].attrs["sheet"] = found[0]
    read[0].attrs["sheets"] = sheets
    return read


def _sheet(book: Any, sheet: int | str, header: int | str | None) -> tuple[pd.DataFrame, int, str]:
    """A workbook's sheet as a table, with the rows above its header row left out and the first of them
    (`_sheet_title`) where its header row is not its first."""
    import pandas as pd

    df = pd.read_excel(book, sheet_name=sheet, header=0 if header == "infer" else header)
    above, title = _sheet_title(df) if header == "infer" else (0, "")
    return (pd.read_excel(book, sheet_name=sheet, header=above) if above else df), above, title


def _sheet_title(df: pd.DataFrame) -> tuple[int, str]:
    """The rows above a sheet's header row and the first of them, when the row `df` was read with as its header is a
    title (one cell filled: 'Unnamed: 1' columns) above a table whose header row (the first to fill every column)
    reads as column names; (0, '') otherwise."""
    names = [str(c) for c in df.columns]
    if len(names) < 2 or sum(n.startswith("Unnamed: ") for n in names) < len(names) - 1:
        return 0, ""
    full = df.head(49).notna().all(axis=1).to_numpy()  # a header names every column (a row of data may leave some out)
    if not full.any() or not _names([str(x) for x in df.iloc[int(full.argmax())]]):
        return 0, ""
    return int(full.argmax()) + 1, next(n for n in names if not n.startswith("Unnamed: ")).strip()


def _titled(df: pd.DataFrame, above: int, title: str) -> pd.DataFrame:
    """`df` with the lines (or rows) left out above its header told: `attrs["first_row"]`, the line (row) number of
    its first row, for the messages that name a row; `attrs["title"]`, (lines above, the first of them) if any."""
    df.attrs["first_row"] = above + 2
    if above:
        df.attrs["title"] = (above, title)
    return df


def read_notes(path: Path, df: pd.DataFrame) -> list[str]:
    """What reading a plant's table (`read_frame`) left out or chose, as notes: a report's title above its header
    row, a workbook's sheet other than the first."""
    notes = []
    if "sheet" in df.attrs:
        notes.append(f"{path.name}: read from its sheet {df.attrs['sheet']!r}, the first ({df.attrs['sheets'][0]!r}) "
                     "holding no such table")
    if "title" in df.attrs:
        n, first = df.attrs["title"]
        rows = "row" if "sheets" in df.attrs else "line"
        lines = f"first {rows} ('{first}') lies" if n == 1 else f"first {n} {rows}s ('{first}', …) lie"
        notes.append(f"{path.name}: its {lines} above the table's header row, a report's title: left out")
    return notes


def first_row(df: pd.DataFrame | pd.Series) -> int:
    """The file's line (a workbook's row) number of a table's first row, as `read_frame` read it: 2 below a header
    in the first line, more below a report's title."""
    return int(df.attrs.get("first_row", 2))


def _read_text(path: Path, sep: str, header: int | str | None, text: str, above: int = 0) -> pd.DataFrame:
    """A text table read by pandas in encoding `text`, the `above` lines above its header left out; a row it refuses
    as a ValueError saying what to do."""
    import pandas as pd

    try:
        return pd.read_csv(path, sep=sep, header=header, engine="python" if len(sep) > 1 else "c", encoding=text,
                           skiprows=above or None)
    except pd.errors.ParserError as e:  # 'Expected 4 fields in line 1204, saw 5\n'
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if m is None:
            raise ValueError(" ".join(str(e).split())) from None
        raise ValueError(f"line {m[2]} has {m[3]} fields, the lines above it {m[1]}: a '{sep}' inside a field? Put "
                         "that field in double quotes, or give every line the header's fields") from None


def _names(cells: list[str]) -> bool:
    """Whether a row's cells read as column names: none empty or starting as a number or a date does."""
    return all(c.strip() and not c.strip()[0].isdigit() and c.strip()[0] not in "+-." for c in cells)


def _title_lines(path: Path, sep: str, encoding: str) -> tuple[int, str]:
    """The lines above a text table's header row and the first of them, when its first line is a title rather than
    the header (fewer fields than the table below, or as many, all but a few empty, as Excel pads every line of its
    CSV; pandas made the surplus columns of every row an index, each value then under another column's name, or
    failed with 'Expected 1 fields in line 4, saw 4'): the header is the first line below it that fills every field
    with a column name. (0, '') otherwise; ValueError where the first line has fewer fields than the table and no
    line below reads as its header (then it is not clear where the table starts)."""
    try:
        with path.open(encoding=encoding, errors="replace", newline="") as f:
            reader = csv.reader(f, delimiter=sep)
            rows = [(reader.line_num, r) for r in itertools.islice(reader, 50) if any(c.strip() for c in r)]
    except (OSError, csv.Error):  # the read names it
        return 0, ""
    widths = [len(r) for _, r in rows]
    if len(rows) < 3:
        return 0, ""
    wide = max(set(widths), key=lambda n: (widths.count(n), n))  # the table's: most lines have it (a ragged line
    if 2 * widths.count(wide) < len(rows):  # with a ',' too many in a field does not make it wider)
        return 0, ""
    (line, first), filled = rows[0], (lambda r: sum(bool(c.strip()) for c in r))
    if len(first) >= wide and 2 * filled(first) > wide:  # the header, in the first line
        return 0, ""
    header = next(((n, r) for n, r in rows[1:] if len(r) == wide and filled(r) == wide and _names(r)), None)
    if header is not None:
        return header[0] - 1, sep.join(c for c in first if c.strip()).strip()
    if len(first) < wide:
        below = next(n for n, r in rows if len(r) == wide)
        raise ValueError(f"line {below} has {wide} fields, line {line} only {len(first)}: a title or notes above the "
                         f"table? No line below it reads as its header (a column name in every field); remove the "
                         f"lines above the header row (if line {line} is the header, give it a name for every field)")
    return 0, ""


def title_hint(df: pd.DataFrame) -> str:
    """' ...' to end a refusal of missing columns with: when the row read as the header is a title above the table
    (one cell filled, the rest empty: a spreadsheet export's heading, 'Störungsbericht Linie 1'), and when a
    workbook has sheets besides the first, the one read (a cover sheet before the table's); '' otherwise."""
    names = [str(c) for c in df.columns]
    hint = ""
    if len(names) >= 2 and sum(n.startswith("Unnamed: ") for n in names) >= len(names) - 1:
        hint = (f" Its first row reads {names[0]!r} and nothing else: a title above the table? Remove the rows above "
                "its header row.")
    sheets = df.attrs.get("sheets", [])
    if len(sheets) > 1:
        hint += (f" The workbook's first sheet ({sheets[0]!r}) was read, its {len(sheets) - 1} other"
                 f"{'s' * (len(sheets) > 2)} ({', '.join(map(repr, sheets[1:4]))}{', …' if len(sheets) > 4 else ''}) "
                 "naming no such column either: move the table to the first sheet.")
    return hint


def delimiter(path: Path, encoding: str = "utf-8") -> str:
    """A CSV file's delimiter (',', ';', tab or '|') from its first lines, those above the table that hold none
    (a report's title, a blank line) left out; ',' when they do not tell."""
    try:
        with path.open(encoding=encoding, errors="replace", newline="") as f:
            lines = f.read(65536).splitlines(keepends=True)
        table = next((i for i, line in enumerate(lines) if any(d in line for d in ",;\t|")), 0)
        return csv.Sniffer().sniff("".join(lines[table:]), delimiters=",;\t|").delimiter
    except (OSError, csv.Error):
        return ","


_DECIMAL_COMMA = re.compile(r"\s*([+-]?\d+),(\d+)\s*")


def with_decimal_point(value: Any) -> str | None:
    """A number written with a decimal comma ('12,5', spaces around it allowed) as it is written with a point
    ('12.5'); None for anything else. Never read as the number itself: outside a ';' file '1,250' may mean 1250."""
    m = _DECIMAL_COMMA.fullmatch(value) if isinstance(value, str) else None
    return f"{m[1]}.{m[2]}" if m else None


def decimal_comma_hint(values: Iterable[Any]) -> str:
    """What to do, as ' (...)' to end a refusal with, when one of `values` is a number written with a decimal comma
    ('12,5'); '' when none is."""
    if not any(with_decimal_point(v) for v in values):
        return ""
    return (" (numbers with a decimal comma are read in a ';'-separated file, Excel's CSV in most European locales; "
            "elsewhere '1,250' may mean 1250: write them with a decimal point, or the file with ';')")


def decimal_commas(df: pd.DataFrame, columns: Iterable[str]) -> None:
    """The `columns` of a ';' file (Excel's CSV where the decimal mark is a comma, most European locales) that are
    written with a decimal comma ('12,5'), as numbers, in place: a column each of whose values is digits with one
    comma at most, some with it, the digits before it grouped by points or not ('12.345,6' kWh, as a cell formatted
    with thousands separators is written). Mixed or other text is left as it is, for the column's own check to name.
    Only for ';' files: in a ',' or a tab-separated file '1,250' may be a thousand two hundred and fifty (English
    grouping)."""
    import pandas as pd

    for c in columns:
        if c not in df.columns or not pd.api.types.is_string_dtype(df[c]):
            continue
        text = df[c].dropna().astype(str).str.strip()
        text = text[text != ""]
        if len(text) and text.str.fullmatch(r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?").all() \
                and text.str.contains(",").any():
            written = df[c].astype(str).str.strip().str.replace(".", "", regex=False)
            df[c] = pd.to_numeric(written.str.replace(",", ".", regex=False), errors="coerce")
