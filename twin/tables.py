"""A plant's exported tables as MES and spreadsheet programs write them: the CSV delimiter found from the file, and
numbers written with a decimal comma (Excel's way in most European locales) read as numbers. Shared by the logs
`twin fit` reads and the run-to-failure tables `twin train` reads."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import pandas as pd


def delimiter(path: Path) -> str:
    """A CSV file's delimiter (',', ';', tab or '|') from its first lines; ',' when they do not tell."""
    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as f:
            sample = f.read(65536)
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except (OSError, csv.Error):
        return ","


def decimal_commas(df: pd.DataFrame, columns: Iterable[str]) -> None:
    """The `columns` of a table whose delimiter is not ',' that are written with a decimal comma ('12,5'), as
    numbers, in place: a column each of whose values is digits with one comma at most, some with it. Mixed or other
    text is left as it is, for the column's own check to name (a ',' file's '1,250' may mean 1250: never read here)."""
    for c in columns:
        if c not in df.columns or not pd.api.types.is_string_dtype(df[c]):
            continue
        text = df[c].dropna().astype(str).str.strip()
        text = text[text != ""]
        if len(text) and text.str.fullmatch(r"[+-]?\d+(?:,\d+)?").all() and text.str.contains(",").any():
            df[c] = pd.to_numeric(df[c].astype(str).str.strip().str.replace(",", ".", regex=False), errors="coerce")
