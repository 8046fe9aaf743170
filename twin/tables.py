"""A plant's exported tables as MES and spreadsheet programs write them (CSV, Excel workbooks, Parquet): the CSV
delimiter and text encoding found from the file, and numbers written with a decimal comma (Excel's way in most
European locales) read as numbers. Shared by the logs `twin fit` reads and the run-to-failure tables `twin train`
reads; `with_decimal_point` also by the scenario's, the command line's and a gateway's refusals. Light to import
(pandas is loaded where a table is read)."""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def encoding(path: Path) -> str:
    """A text export's encoding: by its byte-order mark (UTF-8's; UTF-16's, as Excel's 'Unicode text' writes it),
    else UTF-8 when the whole file reads as UTF-8, else Windows-1252: Excel's 'CSV' in Western European locales
    writes 'Störung' with one byte for the 'ö', which UTF-8 refused. The file is read once through, a MB at a time."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
            if head.startswith(codecs.BOM_UTF8):
                return "utf-8-sig"
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                return "utf-16"
            decoder = codecs.getincrementaldecoder("utf-8")()
            chunk = head
            while chunk:
                decoder.decode(chunk)
                chunk = f.read(1 << 20)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "cp1252"
    except OSError:  # the reader that opens it next names the problem
        pass
    return "utf-8"


ENCODINGS = "UTF-8, UTF-16 with its byte-order mark, or Windows-1252 (Excel's CSV in Western Europe)"
PARQUET, EXCEL = (".parquet", ".pq"), (".xlsx", ".xlsm")


def is_text(path: Path) -> bool:
    """Whether `path` is read as delimited text (by its name: Parquet files and Excel workbooks are not)."""
    return path.suffix.lower() not in PARQUET + EXCEL


def read_frame(path: Path, sep: str | None = None,
               header: int | str | None = "infer") -> tuple[pd.DataFrame, str | None]:
    """A plant's table as written, and the delimiter it was read with (None but for text): Parquet; an Excel
    workbook's first sheet (openpyxl: dates and numbers as Excel typed them); or text in its encoding, with delimiter
    `sep` (r"\\s+": whitespace), else the one found from the file. ValueError or OSError saying why not: a workbook of
    Excel 97-2003, or a binary file named as text, is named as such, not read as garbled text."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix in PARQUET:
        return pd.read_parquet(path), None
    if suffix in EXCEL:
        try:
            return pd.read_excel(path, sheet_name=0, header=0 if header == "infer" else header, engine="openpyxl"), None
        except OSError:
            raise
        except Exception as e:  # a damaged workbook fails deep in zipfile or the XML parser, in any way
            raise ValueError(f"not a readable Excel workbook ({type(e).__name__}: {e})") from None
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"\xd0\xcf\x11\xe0") or suffix == ".xls":
        raise ValueError("an Excel 97-2003 workbook (.xls); save it as .xlsx or CSV")
    if head.startswith(b"PK\x03\x04"):
        raise ValueError("a zip archive, not text: an Excel workbook is read when its name ends in .xlsx")
    text = encoding(path)
    sep = sep or delimiter(path, text)
    return pd.read_csv(path, sep=sep, header=header, engine="python" if sep == r"\s+" else "c", encoding=text), sep


def delimiter(path: Path, encoding: str = "utf-8") -> str:
    """A CSV file's delimiter (',', ';', tab or '|') from its first lines; ',' when they do not tell."""
    try:
        with path.open(encoding=encoding, errors="replace", newline="") as f:
            sample = f.read(65536)
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
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
    comma at most, some with it. Mixed or other text is left as it is, for the column's own check to name. Only for
    ';' files: in a ',' or a tab-separated file '1,250' may be a thousand two hundred and fifty (English grouping)."""
    import pandas as pd

    for c in columns:
        if c not in df.columns or not pd.api.types.is_string_dtype(df[c]):
            continue
        text = df[c].dropna().astype(str).str.strip()
        text = text[text != ""]
        if len(text) and text.str.fullmatch(r"[+-]?\d+(?:,\d+)?").all() and text.str.contains(",").any():
            df[c] = pd.to_numeric(df[c].astype(str).str.strip().str.replace(",", ".", regex=False), errors="coerce")
