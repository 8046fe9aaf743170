"""A plant's exported tables as MES and spreadsheet programs write them: the CSV delimiter found from the file, and
numbers written with a decimal comma (Excel's way in most European locales) read as numbers. Shared by the logs
`twin fit` reads and the run-to-failure tables `twin train` reads."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd


def delimiter(path: Path) -> str:
    """A CSV file's delimiter (',', ';', tab or '|') from its first lines; ',' when they do not tell."""
    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as f:
            sample = f.read(65536)
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except (OSError, csv.Error):
        return ","


_DECIMAL_COMMA = re.compile(r"\s*[+-]?\d+,\d+\s*")


def decimal_comma_hint(values: Iterable[Any]) -> str:
    """What to do, as ' (...)' to end a refusal with, when one of `values` is a number written with a decimal comma
    ('12,5'); '' when none is."""
    if not any(isinstance(v, str) and _DECIMAL_COMMA.fullmatch(v) for v in values):
        return ""
    return (" (numbers with a decimal comma are read in a ';'-separated file, Excel's CSV in most European locales; "
            "elsewhere '1,250' may mean 1250: write them with a decimal point, or the file with ';')")


def decimal_commas(df: pd.DataFrame, columns: Iterable[str]) -> None:
    """The `columns` of a ';' file (Excel's CSV where the decimal mark is a comma, most European locales) that are
    written with a decimal comma ('12,5'), as numbers, in place: a column each of whose values is digits with one
    comma at most, some with it. Mixed or other text is left as it is, for the column's own check to name. Only for
    ';' files: in a ',' or a tab-separated file '1,250' may be a thousand two hundred and fifty (English grouping)."""
    for c in columns:
        if c not in df.columns or not pd.api.types.is_string_dtype(df[c]):
            continue
        text = df[c].dropna().astype(str).str.strip()
        text = text[text != ""]
        if len(text) and text.str.fullmatch(r"[+-]?\d+(?:,\d+)?").all() and text.str.contains(",").any():
            df[c] = pd.to_numeric(df[c].astype(str).str.strip().str.replace(",", ".", regex=False), errors="coerce")
