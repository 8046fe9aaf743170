"""Calibrate a scenario from a plant's machine-status log: time-to-failure and repair-time distributions per machine
type and fault mode, fitted by maximum likelihood with right-censoring (scipy.stats), the family chosen by AIC.

The log has one row per state change: timestamp, machine, state (the twin's state names: working, starved,
blocked, down, maintenance, setup, off_shift, waiting_operator) and, for a stop, the reason (the fault mode). The
machines' layout, cycle times, sensors and calendar come from a base scenario (the line as engineered); what the
log measures replaces its failure and repair times:

- a fault mode's life is the machine's operating time (its reliability clock: time working, or all time up for a
  'calendar' clock) from the end of the last repair of that mode, or of the last maintenance (which renews every
  wear mode), to the next failure of that mode; a life cut short by maintenance or by the log's end is
  right-censored; the part before a machine's first renewal is not used (its age at the log's start is unknown);
- a repair is a down period of that reason; one still going at the log's end is right-censored. Down time includes
  waiting for a technician: with repair crews the fitted repair times are upper bounds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
import re
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.clock import after_real, line_clock, local_clock, repeated_note
from twin.distributions import Distribution
from twin.model import STATES, UP_STATES
from twin.scenario import EXIT, MAX_POWER, Calendar, LineNow, MachineNow, Power, Scenario, Station, buffer_station
from twin.tables import (
    ENCODINGS,
    UTC_OFFSET,
    decimal_comma_hint,
    decimal_commas,
    first_row,
    read_frame,
    read_notes,
    title_hint,
)

# each family's scipy.stats law, by name: scipy.stats is loaded where a fit needs it (0.4 s), not by a what-if's
# reading of the line's state
FAMILIES = {"exponential": "expon", "weibull": "weibull_min", "lognormal": "lognorm", "gamma": "gamma"}
CYCLE_FAMILIES = {"normal": "norm", "lognormal": "lognorm", "gamma": "gamma"}
MIN_CYCLES = 30  # fewer clean cycles than this at a station: the base scenario's cycle time is kept
MIN_EVENTS = 5  # fewer failures (or repairs) than this: the base scenario's distribution is kept
WORKING = STATES[0]


class LogError(ValueError):
    """The status log cannot be used: the message names the file, the row or column, and the fix."""


class MeterError(LogError):
    """The energy log's meters, read whole, give a machine type an impossible power; the caller names the file."""


@dataclass
class Fitted:
    """One fitted time distribution: the chosen family, its scenario entry, and how it was chosen."""

    family: str
    spec: dict[str, Any]  # as a scenario file writes it
    mean: float
    events: int
    censored: int
    ks: float  # Kolmogorov-Smirnov distance of the data (Kaplan-Meier when censored) to the fitted law
    aic: dict[str, float] = field(default_factory=dict)
    law: Any = field(default=None, repr=False)  # the fitted law (a frozen scipy.stats distribution), for plots

    def shown(self) -> dict[str, Any]:
        """Its columns of the fit's table: family, mean in hours, KS distance, and the parameters as written."""
        return {"family": self.family, "mean [h]": self.mean / 3600, "KS": self.ks,
                "parameters": ", ".join(f"{k}={v}" for k, v in self.spec.items() if k != "dist")}


# any plant log's columns
LOG_COLUMNS = ("timestamp", "machine", "state", "reason", "station", "level", "energy", "power", "count", "start",
               "end", "duration", "result", "scrap")
#: a part log's `result` per part, as plants write it (case and spaces aside): good, or scrap
GOOD_RESULTS = ("good", "ok", "io", "i.o.", "gut", "pass", "passed", "accepted", "1", "true", "yes")
SCRAP_RESULTS = ("scrap", "nok", "nio", "n.i.o.", "ausschuss", "bad", "fail", "failed", "reject", "rejected", "0",
                 "false", "no")


@dataclass(frozen=True)
class LogFormat:
    """How a plant's export is written: its CSV delimiter (None: found from the file), its own column names as the
    twin's ('Zeitstempel' → timestamp), and its time format (strftime codes; None: ISO 8601)."""

    sep: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    time_format: str | None = None
    results: Mapping[str, str] = field(default_factory=dict)  # its own words for a part's result: 'Gutteil' → good
    products: Mapping[str, str] = field(default_factory=dict)  # its own names of the products: '4711' → juice-10


def _frame(path: Path, fmt: LogFormat) -> tuple[pd.DataFrame, str | None]:
    """A CSV, Excel or Parquet log as read, its names and text stripped and the plant's column names mapped by
    `fmt.columns`, and the CSV delimiter it was read with; LogError naming the file when it cannot be read."""
    want = {"machine", "station", *(theirs for theirs, ours in fmt.columns.items() if ours in ("machine", "station"))}
    try:
        df, sep = read_frame(path, fmt.sep, want=want)  # a workbook's sheet with the log, after a cover sheet
    except (OSError, ValueError) as e:
        raise LogError(f"{path}: not a readable CSV, Excel or Parquet file ({e})"
                       f"{f'; a CSV is read as {ENCODINGS}' if isinstance(e, UnicodeDecodeError) else ''}.") from None
    # 'timestamp, machine, state' and ' press-1 ': spaces around a field are the export's layout, not its names
    df.columns = [c.strip() if isinstance(c, str) else c for c in df.columns]
    for c in df.columns:
        if pd.api.types.is_string_dtype(df[c]):  # text (or missing) throughout
            df[c] = df[c].str.strip()
    for theirs, ours in fmt.columns.items():
        if theirs in df.columns and ours in df.columns and theirs != ours:
            raise LogError(f"{path}: --columns maps {theirs!r} to {ours}, a column the file has already; map only "
                           "the columns the file names its own way.")
        if "+" in theirs and theirs not in df.columns:  # 'Datum+Uhrzeit=timestamp': a date and a time column
            df = _joined_time(path, df, theirs, ours)
    df = df.rename(columns={k: v for k, v in fmt.columns.items() if k in df.columns})
    if twice := sorted({str(c) for c in df.columns[df.columns.duplicated()]}):
        raise LogError(f"{path}: two columns are named {twice[0]} (check --columns); give each of the twin's columns "
                       "one of the file's.")
    return df, sep


def _table(path: Path, need: tuple[str, ...], what: str, tz: str, fmt: LogFormat,
           frame: tuple[pd.DataFrame, str | None] | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """A log (`frame` if read already) with the columns `need` (the first a time: timestamp, or a stop list's start),
    and those times on the line's clock (time zone `tz`); LogError naming the file, row and column when not."""
    df, sep = frame if frame is not None else _frame(path, fmt)
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise LogError(f"{path}: column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing (found: "
                       f"{', '.join(map(str, df.columns)) or 'none'}). {what} Columns the file names its own way "
                       f"are mapped with --columns 'ITS_NAME={missing[0]}, …'.{title_hint(df)}")
    if sep == ";":  # a ';' export's '12,5' kW
        decimal_commas(df, ("level", "energy", "power", "count", "duration", "scrap"))
    if df.empty:  # fitted to nothing, then its validation ended in a traceback
        raise LogError(f"{path}: no rows under the header. {what}")
    for c in (c for c in need if c in ("machine", "station")):  # a row no machine or station owns: read as nan
        empty = (df[c].isna() | (df[c].astype(str).str.strip() == "")).to_numpy()
        if empty.any():
            at = int(np.flatnonzero(empty)[0]) + first_row(df)
            raise LogError(f"{path}: row {at}, column {c}: (empty); every row names its {c}: fill it in or remove "
                           "the row.")
    owner = df[need[1]] if need[1] in ("machine", "station") else None  # whose rows tell a repeated hour's passes
    return df, _times(path, df[need[0]], tz, fmt.time_format, owner)


def _joined_time(path: Path, df: pd.DataFrame, names: str, ours: str) -> pd.DataFrame:
    """`df` with the columns 'DATE+TIME' names (an export's date and time of day, as German MES reports give them:
    'Datum+Uhrzeit') joined into one column of that name, as text: '05.01.2026 06:00:00' for a --time-format, or
    ISO 8601 from a workbook's date and time cells. LogError when they map to another column or are not there."""
    parts = [p.strip() for p in names.split("+")]
    if ours != "timestamp":
        raise LogError(f"{path}: --columns '{names}={ours}': columns are joined only into the timestamp (a date "
                       "and a time of day); map one column to each of the others.")
    if absent := [p for p in parts if p not in df.columns]:
        raise LogError(f"{path}: --columns '{names}=timestamp': no column {absent[0]!r} (found: "
                       f"{', '.join(map(str, df.columns))}).")

    def text(column: pd.Series) -> pd.Series:
        if pd.api.types.is_datetime64_any_dtype(column):  # a workbook's date cell: its day (its time is 00:00)
            return column.dt.strftime("%Y-%m-%d")
        return column.astype(str).where(column.notna(), "").str.strip()

    joined = text(df[parts[0]])
    for p in parts[1:]:
        joined = joined + " " + text(df[p])
    return df.drop(columns=parts).assign(**{names: joined.str.strip()})


_ABBREVIATION = r"(?<![A-Za-z])([A-Z]{3,5})(?![A-Za-z])"  # a zone's name in a time: CET, CEST, EDT (not Oct, AM)
_GERMAN = {"MEZ": "CET", "MESZ": "CEST", "OEZ": "EET", "OESZ": "EEST", "WEZ": "WET", "WESZ": "WEST"}
_CALENDAR_WORDS = {*(dt.date(2026, m, 1).strftime("%b") for m in range(1, 13)),  # 25-OCT-2026: a month, no zone
                   *(dt.date(2026, 1, d).strftime("%a") for d in range(5, 12))}


@functools.lru_cache(maxsize=16)
def zone_names(zone: str) -> dict[str, str]:
    """The names a clock in `zone` writes its standard and summer time with, and their UTC offsets (+HH:MM): CET
    +01:00 and CEST +02:00 in Berlin (and German MES's MEZ, MESZ), EST and EDT in New York; UTC and GMT."""
    import zoneinfo

    here, out = zoneinfo.ZoneInfo(zone), {"UTC": "+00:00", "GMT": "+00:00"}
    for year in range(2000, 2041):
        for month in (1, 7):
            t = dt.datetime(year, month, 15, 12, tzinfo=here)
            name, off = t.tzname() or "", int(t.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
            if name.isalpha():
                out[name] = f"{'+' if off >= 0 else '-'}{abs(off) // 60:02d}:{abs(off) % 60:02d}"
    return {**out, **{de: out[en] for de, en in _GERMAN.items() if en in out}}


def _named_offsets(text: pd.Series, tz: str, time_format: str | None) -> tuple[pd.Series, str | None, str]:
    """Times whose zone is written by name (2026-10-25 02:30:00 CEST, or with --time-format's %Z) with the name as
    its UTC offset, which tells autumn's repeated hour's passes apart; the format with %z for %Z; and a name that is
    not the line's zone's ('' if none)."""
    found = text.str.extract(_ABBREVIATION, expand=False)
    if found.isna().all():
        return text, time_format, ""
    names = zone_names(tz)
    known = found.isin(list(names)).to_numpy()
    stranger = next((str(x) for x in found[~known & found.notna().to_numpy()] if x.title() not in _CALENDAR_WORDS), "")
    if not known.any():
        return text, time_format, stranger
    if time_format is None:  # ISO 8601, its offset right after the time
        swapped = text.str.replace(r"\s*" + _ABBREVIATION, lambda m: names.get(m[1], m[0]), regex=True)
    else:
        swapped = text.str.replace(_ABBREVIATION, lambda m: names.get(m[1], m[1]).replace(":", ""), regex=True)
        time_format = time_format.replace("%Z", "%z")
    return swapped.where(known, text), time_format, stranger


_LOCAL_DATE = re.compile(r"\s*(\d{1,2})([./-])(\d{1,2})\2(\d{4}|\d{2})"  # a date, day or month first
                         r"(?:([ T,]+)\d{1,2}:\d{2}(:\d{2})?(\s*)([AaPp][Mm])?)?.*")  # a time of day, 24 or 12 hours
# --time-format for numbers: Excel's date serials (days since 1899-12-30, the plant's local time, as a CSV saved from
# a column not formatted as dates holds them), or epoch seconds / milliseconds (UTC)
NUMBER_TIMES = {"excel": ("D", "days since 1899-12-30 (Excel's date serial)", False),
                "epoch": ("s", "seconds since 1970 (UTC)", True),
                "epoch-ms": ("ms", "milliseconds since 1970 (UTC)", True)}
_PLANT_YEARS = (pd.Timestamp("1971-01-01"), pd.Timestamp("2200-01-01"))


def _format_hint(value: str) -> str:
    """The --time-format a plant's non-ISO time asks for ('05.01.2026 06:00' → '%d.%m.%Y %H:%M'; with slashes,
    day or month first when the numbers tell, else both)."""
    m = _LOCAL_DATE.fullmatch(value)
    if m is None:
        return "give the log's own format with --time-format (strftime codes, e.g. '%d.%m.%Y %H:%M:%S')"
    sep, year = m[2], "%Y" if len(m[4]) == 4 else "%y"
    hours = "%H" if m[8] is None else "%I"  # 6:00:00 PM: a 12-hour clock
    clock = "" if m[5] is None else f"{m[5]}{hours}:%M{':%S' if m[6] else ''}{'' if m[8] is None else m[7] + '%p'}"
    day, month = f"%d{sep}%m{sep}{year}{clock}", f"%m{sep}%d{sep}{year}{clock}"
    if sep == "." or int(m[1]) > 12:
        return f"give its format with --time-format '{day}' (day first)"
    if int(m[3]) > 12:
        return f"give its format with --time-format '{month}' (month first)"
    return f"give its format with --time-format '{day}' (day first) or '{month}' (month first)"


def _number_hint(value: float) -> str:
    """How to read a number found as a time: the --time-format its size suggests, with the time it would read as."""
    for name, (unit, what, _) in NUMBER_TIMES.items():
        with contextlib.suppress(ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
            when = pd.Timestamp(value, unit=unit) if unit != "D" else pd.Timestamp("1899-12-30") + pd.Timedelta(
                days=value)
            if _PLANT_YEARS[0] <= when < _PLANT_YEARS[1]:
                return (f"read as {what} it is {when:%Y-%m-%d %H:%M:%S}: if so, give --time-format {name}"
                        + (" (or format the column as dates before saving the CSV)" if name == "excel" else "") + ".")
    return "write ISO 8601 (2026-01-05T06:00:00), or give --time-format excel, epoch or epoch-ms for numbers."


def _times(path: Path, raw: pd.Series, tz: str, time_format: str | None = None, groups: pd.Series | None = None,
           after: pd.Series | None = None) -> pd.Series:
    """Times as naive times on the line's clock: ISO 8601, or `time_format`'s (strftime codes); times with a UTC
    offset (a log across a daylight-saving change carries two) are converted to the line's zone `tz`, times without
    one are taken as its local time, the hour autumn's change repeats read as twin.clock reads it (by the file's
    order, or each of `groups`'s, and `after`: times they must not precede). Any other text is refused, never
    guessed: '05.01.2026' read as May 1st."""
    def bad(row: int, why: str) -> LogError:
        value = raw.iloc[row]
        shown = repr(value) if isinstance(value, str) else "(empty)" if pd.isna(value) else str(value)
        at = row + first_row(raw)  # the file's line (a workbook's row)
        return LogError(f"{path}: row {at} (line {at} of a CSV), column {raw.name}: {shown} {why}")

    if pd.api.types.is_datetime64_any_dtype(raw):  # Parquet times, Excel dates
        ts = raw
    elif time_format in NUMBER_TIMES:
        unit, what, utc = NUMBER_TIMES[time_format]
        number = pd.to_numeric(raw, errors="coerce")
        beyond = {"D": 1.3e5, "s": 9e9, "ms": 9e12}[unit]  # past 2200 (and within pandas' 2262): refused below
        # before the origin is before 1971 too (and -81183 days from 1899 is before pandas' 1677: an overflow)
        ts = pd.to_datetime(number.where((number >= 0) & (number < beyond)), unit=unit, utc=utc,
                            origin="1899-12-30" if unit == "D" else "unix").dt.round("ms")
        wall = ts.dt.tz_localize(None) if utc else ts
        wrong = (ts.isna() | (wall < _PLANT_YEARS[0]) | (wall >= _PLANT_YEARS[1])).to_numpy()
        if wrong.any():
            raise bad(int(np.flatnonzero(wrong)[0]), f"is not a plant's time in {what}, 1971 to 2200, as "
                      f"--time-format {time_format} reads times.")
    else:
        numeric = pd.to_numeric(raw, errors="coerce").notna().to_numpy()
        if numeric.any() and time_format is None:  # pandas reads a number as ns after 1970
            row = int(np.flatnonzero(numeric)[0])
            raise bad(row, f"is a number, not a time; {_number_hint(float(pd.to_numeric(raw.iloc[row])))}")
        text, parsed, stranger = _named_offsets(raw.astype(str).str.strip(), tz, time_format)
        ts = pd.to_datetime(text, errors="coerce", utc=True, format=parsed or "ISO8601")  # offsets mixed too
        offset = text.str.contains(UTC_OFFSET, regex=True).to_numpy() if parsed is None else \
            np.full(len(text), "%z" in parsed)
        if offset.any() and not offset.all() and not ts.isna().any():
            row = int(np.flatnonzero(~offset)[0])
            raise bad(row, f"has no UTC offset, row {int(np.flatnonzero(offset)[0]) + first_row(raw)}'s has one; write "
                      "every time with its offset, or none (then they are read as the line's local time).")
        if not offset.any():  # the line's clock already: a time without an offset was parsed as UTC, its wall time
            ts = ts.dt.tz_localize(None)
        if ts.isna().any():
            row = int(np.flatnonzero(ts.isna().to_numpy())[0])
            if pd.isna(raw.iloc[row]) or not str(raw.iloc[row]).strip():
                raise bad(row, "has no time; every row needs one (ISO 8601: 2026-01-05T06:00:00).")
            if stranger and stranger in str(raw.iloc[row]):
                raise bad(row, f"names its time zone {stranger}, not the line's ({tz}: "
                          f"{', '.join(zone_names(tz))}); write the time with its UTC offset (+01:00).")
            if time_format is not None:
                raise bad(row, f"does not match --time-format {time_format!r} (strftime codes: %d day, %m month, "
                          "%Y year, %H:%M:%S clock, %I:%M %p a 12-hour clock, %z UTC offset).")
            raise bad(row, f"is not a time in ISO 8601 (2026-01-05T06:00:00); {_format_hint(text.iloc[row])}.")
    if ts.isna().any():
        raise bad(int(np.flatnonzero(ts.isna().to_numpy())[0]), "is not a time; write ISO 8601 (2026-01-05T06:00:00).")
    wall = ts.dt.tz_localize(None) if ts.dt.tz is not None else ts
    outside = ((wall < _PLANT_YEARS[0]) | (wall >= _PLANT_YEARS[1])).to_numpy()
    if outside.any():  # a mistyped year: 1828 beside 2026 spans more than pandas' 292 years of time differences
        raise bad(int(np.flatnonzero(outside)[0]), "is not a plant's time, 1971 to 2200: is its year mistyped?")
    return line_clock(ts, tz) if ts.dt.tz is not None else local_clock(ts, tz, groups, after)


def read_parts(path: Path, tz: str = "UTC", fmt: LogFormat = LogFormat(), products: Collection[str] = ()
               ) -> pd.DataFrame:
    """A part-completion log (timestamp, machine: one row per part a machine finished, optionally its `result`: good
    or scrap, and on a line that makes `products` its `product`), or a part counter's readings (with a column count: a
    PLC's good-part count, read at intervals, and optionally `scrap`: its scrap counter read with it), as timestamp,
    machine and, per part, `scrap` (bool) where the log tells and `product`; for counters `count` (and `scrap`); times
    on the clock of a line in time zone `tz`."""
    df, ts = _table(path, ("timestamp", "machine"), "A part log has one row per part finished: timestamp, machine "
                    "(or a counter's readings: timestamp, machine, count).", tz, fmt)
    out = pd.DataFrame({"timestamp": ts, "machine": df["machine"].astype(str)})
    if products and "product" in df.columns and "count" not in df.columns:
        out = out.assign(product=_products(path, df, products, fmt.products))
    if "count" in df.columns:  # each row was read as one part: a counter read every minute made 1-minute cycles
        if "result" in df.columns:
            raise LogError(f"{path}: columns count and result: a counter's readings count parts, a result is one "
                           "part's; give a scrap counter as a column scrap beside count, or one row per part with "
                           "its result")
        v = _readings(path, df, "count", "a part count")
        out = out.assign(count=v.astype(float))
        if "scrap" in df.columns:  # a scrap counter read with the good one
            out = out.assign(scrap=_readings(path, df, "scrap", "a scrap count").astype(float))
        out = out[v.notna().to_numpy()]
    elif "result" in df.columns:
        out = out.assign(scrap=_results(path, df, fmt.results))
    elif "scrap" in df.columns:
        raise LogError(f"{path}: column scrap is a scrap counter's readings, beside a good-part counter's count "
                       "column; for one row per part, give its result (good or scrap) in a column result")
    return _noted(out.sort_values(["machine", "timestamp"], kind="stable").reset_index(drop=True), path, df,
                  [repeated_note(ts)])


def _products(path: Path, df: pd.DataFrame, products: Collection[str], own: Mapping[str, str]) -> np.ndarray:
    """A part log's `product` column as the line's product names (the plant's own mapped with --products); LogError
    naming the first row whose product the line does not make."""
    given = df["product"].astype(str).str.strip().where(df["product"].notna(), "")
    given = given.where(~given.str.fullmatch(r"\d+\.0"), given.str[:-2])  # material numbers a blank made floats
    named = given.map(lambda v: own.get(v, v))
    bad = ~named.isin(list(products))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        shown = repr(given.iloc[row]) if given.iloc[row] else "(empty)"
        raise LogError(f"{path}: row {row + first_row(df)}, column product: {shown} is not a product of the line "
                       f"({', '.join(products)}); name each part's product, or map the log's own names with "
                       f"--products '{given.iloc[row] or 'NAME'}={next(iter(products))}'")
    return named.to_numpy(dtype=object)


def _results(path: Path, df: pd.DataFrame, own: Mapping[str, str] | None = None) -> np.ndarray:
    """A part log's `result` column as scrap (True) or good (False) per row, in the plant's `own` words (mapped with
    --results) or the words plants use; LogError naming the first row whose result is neither."""
    words = df["result"].astype(str).str.strip().str.lower().where(df["result"].notna(), "")
    mapped = words.map({k.strip().lower(): v for k, v in (own or {}).items()})
    good = (mapped == "good") | (mapped.isna() & words.isin(GOOD_RESULTS))  # the plant's own words first
    scrap = (mapped == "scrap") | (mapped.isna() & words.isin(SCRAP_RESULTS))
    bad = ~(good | scrap)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        given = df["result"].iloc[row]
        shown = "(empty)" if not words.iloc[row] else repr(str(given))
        raise LogError(f"{path}: row {row + first_row(df)}, column result: {shown} is neither good ("
                       f"{', '.join(GOOD_RESULTS[:6])}, …) nor scrap ({', '.join(SCRAP_RESULTS[:6])}, …); write one "
                       "of those for each part (a part reworked and then good is good), or map the log's own words "
                       f"with --results '{str(given).strip() or 'WORD'}=good' (or =scrap)")
    return scrap.to_numpy(dtype=bool)


MAX_LEVEL = 10**9  # parts in one buffer: more is a unit mistake or a corrupt export


def read_levels(path: Path, tz: str = "UTC", fmt: LogFormat = LogFormat()) -> pd.DataFrame:
    """A buffer-level log (timestamp, station, level: parts waiting in front of the station); times as `read_parts`."""
    df, ts = _table(path, ("timestamp", "station", "level"), "A buffer log has timestamp, station, level.", tz, fmt)
    level = pd.to_numeric(df["level"], errors="coerce").to_numpy(dtype=float)
    # a count: finite, whole (2.5 was cut to 2), and below what a buffer holds (1e30 overflowed to a negative size)
    bad = ~np.isfinite(level) | (level < 0) | (level != np.round(level)) | (level > MAX_LEVEL)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        given = df["level"].iloc[row]
        shown = "(empty)" if pd.isna(given) or not str(given).strip() else repr(str(given))
        at = row + first_row(df)  # the file's line (a workbook's row)
        raise LogError(f"{path}: row {at}, column level: {shown} is not a part count (a whole number, 0 to "
                       f"{MAX_LEVEL:,}){decimal_comma_hint([given])}.")
    return _noted(pd.DataFrame({"timestamp": ts, "station": df["station"].astype(str),
                                "level": level.astype(np.int64)}), path, df, [repeated_note(ts)])


def _readings(path: Path, df: pd.DataFrame, column: str, what: str) -> pd.Series:
    """A meter's or a counter's `column` as numbers, NaN where a row gives none; LogError naming the first row whose
    value is no number 0 or more (`what`: 'a kWh reading')."""
    v = pd.to_numeric(df[column], errors="coerce")
    bad = (v.isna() & df[column].notna()) | (v < 0) | np.isinf(v)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        at = row + first_row(df)  # the file's line (a workbook's row)
        raise LogError(f"{path}: row {at}, column {column}: {str(df[column].iloc[row])!r} is not {what} (a "
                       f"number, 0 or more){decimal_comma_hint([df[column].iloc[row]])}.")
    return v


def read_energy(path: Path, tz: str = "UTC", fmt: LogFormat = LogFormat()) -> pd.DataFrame:
    """An energy log (timestamp, machine, and energy: a meter's kWh register, or power: kW readings) as timestamp,
    machine, sensor ('energy' or 'power'), value; times as `read_parts`."""
    df, ts = _table(path, ("timestamp", "machine"), "An energy log has timestamp, machine and energy (a meter's kWh "
                    "register) or power (kW readings).", tz, fmt)
    have = [c for c in ("energy", "power") if c in df.columns]
    if not have:
        raise LogError(f"{path}: no column energy (a meter's kWh register) or power (kW readings) (found: "
                       f"{', '.join(map(str, df.columns))}); map the meter's column with --columns 'ITS_NAME=energy'.")
    frames = []
    for c in have:
        v = _readings(path, df, c, "a kWh reading" if c == "energy" else "a power in kW")
        if c == "power" and (v > MAX_POWER).any():
            row = int(np.flatnonzero((v > MAX_POWER).to_numpy())[0])
            at = row + first_row(df)  # the file's line (a workbook's row)
            raise LogError(f"{path}: row {at}, column power: {str(df[c].iloc[row])!r} kW is more than any machine "
                           f"draws ({MAX_POWER:,} kW); are the readings in W? Give kW.")
        keep = v.notna().to_numpy()
        frames.append(pd.DataFrame({"timestamp": ts[keep].to_numpy(), "machine": df["machine"][keep].astype(str),
                                    "sensor": c, "value": v[keep].astype(float)}))
    out = pd.concat(frames, ignore_index=True)
    return _noted(out.sort_values(["machine", "sensor", "timestamp"], kind="stable").reset_index(drop=True), path, df,
                  [repeated_note(ts)])


POWER_GROUPS = Power.GROUPS
MIN_POWER_HOURS = 0.25  # a state's power is fitted from at least this much metered time in it


def _groups(states: np.ndarray) -> np.ndarray:
    """Each state's power group, as its index in POWER_GROUPS."""
    return np.array([POWER_GROUPS.index(Power.group(str(s))) for s in states], dtype=int)


def _group_hours(g: pd.DataFrame, origin: pd.Timestamp, end: float) -> Callable[[np.ndarray], np.ndarray]:
    """For one machine's state changes `g` (timestamp, state), a function giving, for times t (seconds since
    `origin`), the hours it had spent in each power group up to t (columns as POWER_GROUPS) since its first record."""
    t = (g.timestamp - origin).dt.total_seconds().to_numpy()
    group = _groups(g.state.to_numpy())
    knots = np.append(t, max(end, t[-1]))
    spent = np.zeros((len(knots), len(POWER_GROUPS)))
    np.add.at(spent, (np.arange(1, len(knots)), group), np.diff(knots))
    spent = np.cumsum(spent, axis=0) / 3600

    def at(x: np.ndarray) -> np.ndarray:
        return np.column_stack([np.interp(x, knots, spent[:, k]) for k in range(len(POWER_GROUPS))])

    return at


def fit_power(log: pd.DataFrame, energy: pd.DataFrame, sc: Scenario) -> tuple[dict[str, dict[str, float]],
                                                                            list[dict[str, Any]]]:
    """Each machine type's power by state from its machines' meters and their state log: kW readings averaged by the
    state each was taken in, or else a kWh register's increases fitted by non-negative least squares to the hours
    spent in each state between readings (`counter_steps`: a reset counts on from 0). A state with less than
    MIN_POWER_HOURS metered keeps the base's figure. Returns the fitted `power` entries and the table's rows."""
    from scipy.optimize import nnls

    from twin.counters import counter_steps

    origin, end = log.timestamp.min(), (log.timestamp.max() - log.timestamp.min()).total_seconds()
    kind_of = sc.type_names()
    per_type: dict[str, dict[str, list[np.ndarray]]] = {}
    metered = dict(tuple(energy.groupby("machine", sort=False)))
    for machine, g in log.groupby("machine", sort=False):
        mine = metered.get(machine)
        if mine is None or machine not in kind_of:
            continue
        hours = _group_hours(g, origin, end)
        first = (g.timestamp.min() - origin).total_seconds()
        acc = per_type.setdefault(kind_of[str(machine)], {"X": [], "y": [], "kw": [], "at": []})
        kw = mine[mine.sensor == "power"]
        t = (kw.timestamp - origin).dt.total_seconds().to_numpy()
        inside = (t >= first) & (t <= end)
        if inside.any():  # the state in force at each reading: the group whose hours grow there
            k = np.searchsorted((g.timestamp - origin).dt.total_seconds().to_numpy(), t[inside], side="right") - 1
            acc["kw"].append(kw.value.to_numpy()[inside])
            acc["at"].append(_groups(g.state.to_numpy()[k]))
        reg = mine[mine.sensor == "energy"]
        if len(reg) > 1:
            steps = counter_steps(reg.rename(columns={"timestamp": "ts"}).assign(sensor="energy"))
            t = (steps.ts - origin).dt.total_seconds().to_numpy()
            a, b = t[:-1], t[1:]
            ok = (a >= first) & (b <= end)
            acc["X"].append(hours(b[ok]) - hours(a[ok]))
            acc["y"].append(steps.value.to_numpy()[1:][ok])
    fitted: dict[str, dict[str, float]] = {}
    rows: list[dict[str, Any]] = []
    for mtype, acc in sorted(per_type.items()):
        base = sc.machine_types[mtype].power
        known = base.model_dump() if base is not None else {}
        if acc["kw"]:
            values, groups = np.concatenate(acc["kw"]), np.concatenate(acc["at"])
            got = {g: max(0.0, float(values[groups == k].mean())) for k, g in enumerate(POWER_GROUPS)
                   if (groups == k).sum() >= 3}  # a meter's noise around 0 kW off shift is no negative power
            how, n = "mean kW by state", len(values)
        elif sum(len(y) for y in acc["y"]):  # readings between two of the log's times
            X, y = np.vstack(acc["X"]), np.concatenate(acc["y"])
            use = [k for k in range(len(POWER_GROUPS)) if X[:, k].sum() >= MIN_POWER_HOURS]
            coef = nnls(X[:, use], y)[0] if use else np.empty(0)
            got = {POWER_GROUPS[k]: float(c) for k, c in zip(use, coef)}
            fit = X[:, use] @ coef if use else np.zeros(len(y))
            spread = float(((y - y.mean()) ** 2).sum())
            share = f"R² {1 - float(((y - fit) ** 2).sum()) / spread:.2f}" if spread > 0 else "one increase"
            how, n = f"kWh register, least squares ({share})", len(y)
        else:
            continue
        power = {**known, **got}
        if "working" not in power or "idle" not in power:
            rows.append({"machine type": mtype, "fault mode": "", "time": "power", "events": n, "censored": 0,
                         "family": "kept (no metered time working or waiting)", "mean [h]": np.nan,
                         "base mean [h]": np.nan, "KS": np.nan, "parameters": ""})
            continue
        fitted[mtype] = {k: round(v, 4) for k, v in power.items() if v is not None}
        if too := {g: v for g, v in fitted[mtype].items() if v > MAX_POWER}:
            g, v = next(iter(too.items()))
            raise MeterError(f"the energy log's meters give machine type {mtype} {v:,.0f} kW {g.replace('_', ' ')}, "
                             f"more than any machine draws ({MAX_POWER:,} kW): is the register in Wh, or are the "
                             "readings in W? Give kWh and kW.")
        shown = ", ".join(f"{g.replace('_', ' ')} {fitted[mtype][g]:g} kW" + ("" if g in got else " (kept)")
                          for g in POWER_GROUPS if g in fitted[mtype])
        was = ", ".join(f"{g.replace('_', ' ')} {v:g}" for g, v in known.items() if v is not None)
        rows.append({"machine type": mtype, "fault mode": "", "time": "power", "events": n, "censored": 0,
                     "family": how, "mean [h]": np.nan, "base mean [h]": np.nan, "KS": np.nan,
                     "parameters": shown + (f" (was {was})" if known else "")})
    return fitted, rows


_LOG_LAYOUT = ("A status log has timestamp, machine, state and, for stops, reason (a row per change of state); a stop "
               "list has start, end (or duration), machine and reason (a row per stop).")


def read_log(path: Path, tz: str = "UTC", states: dict[str, str] | None = None,
             fmt: LogFormat = LogFormat()) -> pd.DataFrame:
    """The status log (CSV, Excel or Parquet) as timestamp, machine, state, reason, sorted, its times on the clock of
    a line in time zone `tz` (times with a UTC offset are converted to it), the plant's state names translated by
    `states`; a stop list (start or timestamp, end or duration, machine, reason) read as the status log it implies
    (`stops_log`); LogError when unusable. `attrs["notes"]`, where any: what the reading left out or chose
    (`read_notes`)."""
    kind, read = _read_one(path, tz, states, fmt)
    out = stops_log(read, str(path)) if kind == "stops" else read
    if "notes" in read.attrs:
        out.attrs["notes"] = read.attrs["notes"]
    return out


def _read_one(path: Path, tz: str, states: dict[str, str] | None, fmt: LogFormat) -> tuple[str, pd.DataFrame]:
    """('status', the status log) or ('stops', a stop list's stops: machine, start, end, state, reason), with the
    notes of its reading in `attrs["notes"]` (`read_notes`)."""
    frame = _frame(path, fmt)
    cols = set(frame[0].columns)
    if "start" in cols and "timestamp" not in cols:
        kind, read = "stops", _stop_table(path, frame, tz, states, fmt)
    elif "timestamp" in cols and "state" not in cols and cols & {"end", "duration"} and "start" not in cols:
        # a stop list whose start is named timestamp (timestamp, duration, machine, reason)
        kind, read = "stops", _stop_table(path, (frame[0].rename(columns={"timestamp": "start"}), frame[1]), tz,
                                          states, fmt)
    else:
        df, ts = _table(path, ("timestamp", "machine", "state"), _LOG_LAYOUT, tz, fmt, frame)
        kind, read = "status", status_log(df, ts, str(path), states)
        read.attrs["clock"] = [repeated_note(ts)]
    return kind, _noted(read, path, frame[0], read.attrs.pop("clock"))


def _noted(out: pd.DataFrame, path: Path, df: pd.DataFrame, clock: Sequence[str]) -> pd.DataFrame:
    """A log read from `df` with the notes of its reading (`read_notes`, and how its times met autumn's repeated hour:
    `clock`, `repeated_note`s) in `attrs["notes"]`, where any."""
    if notes := read_notes(path, df) + [f"{path.name}: {n}" for n in clock if n]:
        out.attrs["notes"] = notes
    return out


def read_logs(paths: Sequence[Path], tz: str = "UTC", states: dict[str, str] | None = None,
              fmt: LogFormat = LogFormat()) -> pd.DataFrame:
    """Several exports of one line's log (a month each, as an MES exports them) read as one log (`read_log`): each
    file checked on its own, its mistakes named with it; all status logs or all stop lists. What overlapping exports
    hold twice (a row, a stop) and the rows that only repeat the state their machine ended the log before in are
    read once, counted in `attrs["twice"]`."""
    if len(paths) == 1:
        return read_log(paths[0], tz, states, fmt)
    read = [_read_one(p, tz, states, fmt) for p in paths]
    lists = [str(p) for p, (kind, _) in zip(paths, read) if kind == "stops"]
    if lists and len(lists) < len(paths):
        raise LogError(f"{', '.join(lists)}: {'a stop list' if len(lists) == 1 else 'stop lists'} (start, end), the "
                       "other logs status logs (timestamp, state); give logs of one kind.")
    name = ", ".join(str(p) for p in paths)
    both = pd.concat([x for _, x in read], ignore_index=True)
    twice = int(both.duplicated().sum())
    both = both.drop_duplicates(ignore_index=True)
    if lists:
        out = stops_log(both, name)
    else:
        out = status_log(both, both["timestamp"], name)
        twice += out.attrs["repeated"]
        out.attrs.update(repeated=sum(x.attrs["repeated"] for _, x in read),
                         ending=out.attrs["ending"] + sum(x.attrs["ending"] for _, x in read))
    out.attrs["twice"] = twice
    if notes := [n for _, x in read for n in x.attrs.get("notes", [])]:
        out.attrs["notes"] = notes
    return out


MAX_STOP = 10 * 365 * 86400.0  # seconds: a stop's duration beyond this is a unit mistake, not a stop


def _stop_durations(path: Path, raw: pd.Series) -> np.ndarray:
    """A stop list's durations in seconds: numbers are minutes (as MES stop lists give them), text h:mm:ss."""
    with np.errstate(over="ignore"):  # 1e308 minutes: inf, refused below
        minutes = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float) * 60
    clock = pd.to_timedelta(raw.astype(str).where(raw.astype(str).str.fullmatch(r"\s*\d+:\d{2}:\d{2}(\.\d+)?\s*"),
                                                  None), errors="coerce") / pd.Timedelta(seconds=1)
    seconds = np.where(np.isnan(minutes), clock.to_numpy(dtype=float), minutes)
    bad = ~np.isfinite(seconds) | (seconds < 0) | (seconds > MAX_STOP)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        given = raw.iloc[row]
        shown = "(empty)" if pd.isna(given) or not str(given).strip() else repr(str(given))
        at = row + first_row(raw)  # the file's line (a workbook's row)
        raise LogError(f"{path}: row {at}, column duration: {shown} is not a stop's length; write minutes "
                       f"(12.5) or h:mm:ss (0:12:30), 0 to 10 years{decimal_comma_hint([given])}.")
    return seconds


def _stop_table(path: Path, frame: tuple[pd.DataFrame, str | None], tz: str, states: dict[str, str] | None,
                fmt: LogFormat) -> pd.DataFrame:
    """A stop list (one row per stop: start, end or duration, machine, reason, and optionally a state such as
    maintenance, default down; as MES downtime reports give them) as its stops: machine, start, end, state, reason on
    the line's clock; LogError naming the row when unusable."""
    df = frame[0]
    length = "end" if "end" in df.columns or "duration" not in df.columns else "duration"
    df, start = _table(path, ("start", "machine", length), _LOG_LAYOUT, tz, fmt, frame)
    if length == "end":
        end = _times(path, df["end"], tz, fmt.time_format, df["machine"], start)
        early = (end < start).to_numpy()
        if early.any():
            row = int(np.flatnonzero(early)[0])
            at = row + first_row(df)  # the file's line (a workbook's row)
            raise LogError(f"{path}: row {at}, column end: {end.iloc[row]} is before the stop's start "
                           f"{start.iloc[row]}; a stop ends after it starts (check the two columns' order, or "
                           "--columns).")
    else:
        end = after_real(start, _stop_durations(path, df["duration"]), tz)
    given = df["state"].astype(object) if "state" in df.columns else pd.Series(None, index=df.index, dtype=object)
    unsaid = (given.isna() | (given.astype(str).str.strip() == "")).to_numpy()  # a stop: down
    state = pd.Series(np.where(unsaid, "down", given.astype(str).map(lambda x: (states or {}).get(x, x))),
                      index=df.index)
    bad = (~state.isin(STATES) | (state == WORKING)).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        at = row + first_row(df)  # the file's line (a workbook's row)
        raise LogError(f"{path}: row {at}, column state: {df['state'].iloc[row]!r} is not a state a machine stops "
                       f"in; use {', '.join(s for s in STATES if s != WORKING)} (leave the column out: every stop is "
                       f"down), or map the plant's names with --states '{df['state'].iloc[row]}=STATE, ...'.")
    reason = df["reason"].astype(str).where(df["reason"].notna(), "") if "reason" in df else \
        pd.Series("", index=df.index)
    out = pd.DataFrame({"machine": df["machine"].astype(str), "start": start, "end": end, "state": state,
                        "reason": reason})
    out.attrs["clock"] = [f"column {c}: {n}" for c, t in (("start", start), ("end", end)) if (n := repeated_note(t))]
    return out


def stops_log(stops: pd.DataFrame, name: str) -> pd.DataFrame:
    """A stop list's stops (`_stop_table`) as the status log they imply: each machine working from the list's first
    start to its last end but for its stops. Stops overlapping the one before on their machine are merged into it.
    `attrs["stops"]` counts the stops, `attrs["merged"]` those merged."""
    stops = stops.sort_values(["machine", "start", "end"], kind="stable")
    first = stops.start.min()
    rows: list[tuple[pd.Timestamp, str, str, str]] = []
    merged = 0
    for machine, g in stops.groupby("machine", sort=False):
        m = str(machine)
        own = [(first, m, WORKING, "")]  # working from the list's first start but for its stops
        at = first  # where the stop before ended
        for s, e, state_, why in zip(g.start, g.end, g.state, g.reason):
            if s < at:  # overlapping the stop before: one stop, to the later end
                merged += 1
                if e > at:
                    own[-1], at = (e, m, WORKING, ""), e
                continue
            if own[-1][0] == s:  # starting as the one before ends (or as the list starts): it never ran between
                own.pop()
            own += [(s, m, state_, why), (e, m, WORKING, "")]
            at = e
        rows += own
    log = pd.DataFrame(rows, columns=["timestamp", "machine", "state", "reason"])
    out = status_log(log, log["timestamp"], name)
    out.attrs.update(stops=len(stops), merged=merged + out.attrs["repeated"], repeated=0)
    return out


def parse_pairs(text: str, allowed: Collection[str], what: str, placeholder: str, example: str) -> dict[str, str]:
    """'Production=working, Breakdown=down' as the plant's names → the twin's (a `what`, one of `allowed`);
    ValueError saying what is wrong."""
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = (x.strip() for x in pair.rpartition("="))
        if not sep or not name:
            raise ValueError(f"{pair!r} is not PLANT_NAME={placeholder} (e.g. {example.split(', ')[-1]})")
        if value not in allowed:
            raise ValueError(f"{pair!r}: {value!r} is not a {what}; use "
                             f"{', '.join(allowed if isinstance(allowed, (list, tuple)) else sorted(allowed))}")
        if name in out:
            raise ValueError(f"{name!r} is mapped twice")
        out[name] = value
    if not out:
        raise ValueError(f"give PLANT_NAME={placeholder} pairs, e.g. '{example}'")
    return out


def parse_results(text: str) -> dict[str, str]:
    """'Gutteil=good, Ausschussteil=scrap' as the plant's words for a part's result → good or scrap."""
    return parse_pairs(text, ("good", "scrap"), "part result", "RESULT", "Gutteil=good, Ausschussteil=scrap")


def parse_states(text: str) -> dict[str, str]:
    """'Production=working, Breakdown=down' as the plant's state names → the twin's."""
    return parse_pairs(text, STATES, "machine state", "STATE", "Production=working, Breakdown=down")


def stop_modes(reasons: Any, modes: Sequence[str]) -> np.ndarray:
    """Each stop's fault mode as the fit takes it: its reason where that is one of `modes` (its machine type's), any
    stop the one mode of a type with one, else '' (a stop no fit or age counts). One rule for the fit, its
    validation's failures and the line's state a what-if starts from."""
    reasons = np.asarray(reasons, dtype=object)
    return np.where(np.isin(reasons, list(modes)), reasons, modes[0] if len(modes) == 1 else "")


def machine_modes(sc: Scenario) -> dict[str, list[str]]:
    """Each machine's fault modes (its type's), by machine name: what `stop_modes` takes a machine's stops as."""
    return {m: [f.name for f in sc.machine_type_of(s).fault_modes] for s in sc.stations for m in s.machine_names}


def unfitted_reasons(log: pd.DataFrame, sc: Scenario) -> pd.Series:
    """Stops ('down') whose reason names no fault mode of their machine's type, counted by reason, most first: not
    fitted (a type with one fault mode takes every stop as it, whatever the reason says)."""
    modes = machine_modes(sc)
    down = log[(log.state == "down") & log.machine.isin(list(modes))]
    lost = [r for m, r in zip(down.machine, down.reason.fillna("")) if not stop_modes([r], modes[m])[0]]
    return pd.Series(lost, dtype=object).value_counts()


def status_log(df: pd.DataFrame, ts: pd.Series, path: str, states: dict[str, str] | None = None) -> pd.DataFrame:
    """A status log's rows (machine, state, reason; their times `ts` on the line's clock) checked and sorted, whether
    from a file or a store's state records (`path` names it in errors), the plant's state names translated by
    `states` (the twin's own names stay valid), one row per change (rows repeating the state before are dropped, a
    reason given in a row after its stop's moved to it; counted in `attrs["repeated"]`; a reason given on the row
    that ends a stop without one is the stop's, counted in `attrs["ending"]`); LogError when unusable."""
    if states:
        df = df.assign(state=df["state"].astype(str).map(lambda s: states.get(s, s)))
    bad = ~df["state"].astype(str).isin(STATES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        at = row + first_row(df)  # the file's line (a workbook's row)
        raise LogError(f"{path}: row {at}, column state: {df['state'].iloc[row]!r} is not a machine state; use "
                       f"{', '.join(STATES)}, or map the plant's own names to them with --states "
                       f"'{df['state'].iloc[row]}=STATE, ...' (e.g. Breakdown=down).")
    if len(ts) and ts.max() <= ts.min():
        raise LogError(f"{path}: every row has the same timestamp ({ts.min()}): the log covers no time, so there is "
                       "nothing to fit failure and repair times from; give the state changes of a period (weeks or "
                       "months of them).")
    # a reason column empty throughout reads as numbers (NaN): text where given, "" where not, whatever its dtype
    reason = df["reason"].astype(str).where(df["reason"].notna(), "") if "reason" in df else \
        pd.Series("", index=df.index)
    out = pd.DataFrame({"timestamp": ts, "machine": df["machine"].astype(str), "state": df["state"].astype(str),
                        "reason": reason})
    out = out.sort_values(["machine", "timestamp"], kind="stable").reset_index(drop=True)
    # a row repeating its machine's state and reason is no change: a sampled log (a PLC polled each minute, a
    # historian's export) gave each minute of a stop as a repair of its own, 1,883 repairs of a minute, not 94
    same = ((out.machine == out.machine.shift()) & (out.state == out.state.shift())
            & (out.reason == out.reason.shift())).to_numpy()
    out = out[~same].reset_index(drop=True)
    # a stop logged at once and its reason in a row of its own when the operator gave it (no change of state in
    # between: the machine never ran): one stop, from the first row, for the reason given
    later = ((out.machine == out.machine.shift()) & (out.state == out.state.shift()) & (out.reason.shift() == "")
             & (out.reason != "")).to_numpy()
    if later.any():
        out.loc[np.flatnonzero(later) - 1, "reason"] = out.reason.to_numpy()[later]
        out = out[~later].reset_index(drop=True)
    # a stop's reason entered as the machine restarts (on the row that ends it, the stop's own empty): the stop's. A
    # machine type with several fault modes left such stops out of its fit as reasonless
    ending = ((out.machine == out.machine.shift()) & (out.state.shift() == "down") & (out.reason.shift() == "")
              & out.state.isin(["working", "starved", "blocked"]) & (out.reason != "")).to_numpy()
    if ending.any():
        out.loc[np.flatnonzero(ending) - 1, "reason"] = out.reason.to_numpy()[ending]
        out.loc[ending, "reason"] = ""
    out.attrs.update(repeated=int(same.sum() + later.sum()), ending=int(ending.sum()))  # said by `twin fit`
    return out


def wall_time(t: pd.Timestamp) -> dt.datetime:
    """A log's time as the datetime a scenario or a calendar takes, to the microsecond: a run's ground truth and the
    logs written from it keep nanoseconds, and pandas warned 'Discarding nonzero nanoseconds' at each conversion."""
    return pd.Timestamp(t).floor("us").to_pydatetime()


def state_at(log: pd.DataFrame, sc: Scenario, stamp: pd.Timestamp, source: str,
             buffers: dict[str, int] | None = None) -> LineNow:
    """The line's state at `stamp` from a status log's rows up to it (timestamp, machine, state, reason: a store's
    state records, or a plant's log file): each machine's state and how long it has been in it, the fault mode of a
    stop, and each fault mode's age since its last repair (or maintenance, for wear) on its reliability clock; a mode
    never renewed in the log has its age since the first row, a lower bound. Machines not in `sc` are left out."""
    log = log[log.timestamp <= stamp].sort_values(["machine", "timestamp"], kind="stable")
    types = {m: sc.machine_types[t] for m, t in sc.type_names().items()}
    machines = {}
    for machine, g in log.groupby("machine", sort=False):
        mt = types.get(str(machine))
        if mt is None:
            continue
        ts = g.timestamp.to_numpy()
        # to the nanosecond: np.datetime64(stamp) cut a log's last time to the microsecond, 'since' then negative
        spans = (np.append(ts[1:], pd.Timestamp(stamp).to_datetime64()) - ts) / np.timedelta64(1, "s")
        kinds = g.state.to_numpy()
        # a stop's mode as the fit takes it: a reasonless stop of a type with one mode is its repair too
        taken = stop_modes(g.reason.fillna("").to_numpy(), [f.name for f in mt.fault_modes])
        running = np.isin(kinds, [WORKING] if mt.clock == "operating" else list(UP_STATES))
        ages, unrenewed = {}, []
        for f in mt.fault_modes:
            renewed = (kinds == "down") & (taken == f.name)
            if f.kind == "wear":
                renewed |= kinds == "maintenance"
            last = np.flatnonzero(renewed)
            after = last[-1] + 1 if last.size else 0  # intervals since its last renewal (or the first record)
            ages[f.name] = float(spans[after:][running[after:]].sum())
            if not last.size:  # its age before the first record is not known: what it reached since is a floor
                unrenewed.append(f.name)
        machines[str(machine)] = MachineNow(state=str(kinds[-1]), since=float(spans[-1]),
                                            mode=str(taken[-1]) if kinds[-1] == "down" else "", ages=ages,
                                            unrenewed=unrenewed)
    return LineNow(taken=wall_time(stamp), source=source, machines=machines, buffers=buffers)


def off_shift_from(log: pd.DataFrame, calendar: Calendar) -> pd.DataFrame:
    """A stop list's log (each machine working between its stops, `stops_log`) off shift outside `calendar`'s shift
    windows, where the list has it working: a list shows stops, not the planned time, and a night read as working
    aged every machine's life (on a calendar clock, the model's stands still off shift). Stops keep their states."""
    from twin.model import ShiftCalendar

    start, end = log.timestamp.min(), log.timestamp.max()
    span = (end - start).total_seconds()
    plan = ShiftCalendar(calendar, wall_time(start), span)
    on = np.ravel(np.column_stack([plan.starts, plan.ends]))  # on at even knots, off at odd ones
    knots = start + pd.to_timedelta(on[(on > 0) & (on < span)], unit="s")
    out = []
    for machine, g in log.groupby("machine", sort=False):
        t = np.union1d(g.timestamp.to_numpy(), knots.to_numpy())
        k = np.searchsorted(g.timestamp.to_numpy(), t, side="right") - 1  # the list's row in effect at each time
        state, reason = g.state.to_numpy()[k], g.reason.to_numpy()[k]
        s = (t - start.to_datetime64()) / np.timedelta64(1, "s")
        i = np.searchsorted(on, s, side="right")  # an odd count of knots passed: on shift
        off = i % 2 == 0  # none passed, or no shift at all: off
        state = np.where(off & (state == WORKING), "off_shift", state)
        reason = np.where(state == "off_shift", "", reason)
        keep = np.append(True, (state[1:] != state[:-1]) | (reason[1:] != reason[:-1]))  # changes only
        out.append(pd.DataFrame({"timestamp": t[keep], "machine": machine, "state": state[keep],
                                 "reason": reason[keep]}))
    result = pd.concat(out, ignore_index=True)
    result.attrs = dict(log.attrs)
    return result


IDLE_GAP = 3.0  # a machine working by a stop list that made no part for over this many cycles was waiting


def waits_from_parts(log: pd.DataFrame, parts: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """A stop list's log (each machine working between its stops, `stops_log`) with the waits its part log shows, and
    how many: in a working period, a gap between two instants parts were finished at (or from the period's start to
    its first part) longer than IDLE_GAP of the machine's cycles (the median time per part there), beyond the log's
    time resolution, is a wait for parts or space ('starved': a list cannot tell it from blocked) until a cycle before
    the later parts. Machines with fewer than MIN_CYCLES such gaps stay as they are. A machine on an operating clock
    ages only while working: without this a stop list counted every wait to its lives."""
    out, waits = [log], 0
    end = log.timestamp.max()
    for machine, g in log.groupby("machine", sort=False):
        p = parts[parts.machine == machine]
        t, n = np.unique(p.timestamp.to_numpy(), return_counts=True)
        starts = g.timestamp.to_numpy()
        inside = (t >= starts[0]) & (t <= end.to_datetime64())
        t, n = t[inside], n[inside]
        if len(t) < MIN_CYCLES:
            continue
        k = np.searchsorted(starts, t, side="right") - 1  # the period each instant fell in
        working = g.state.to_numpy()[k] == WORKING
        first = np.append(True, k[1:] != k[:-1])  # the first instant of its period
        prev = np.where(first, starts[k], np.roll(t, 1))  # the instant before it in its period, or the period's start
        gap = (t - prev) / np.timedelta64(1, "s")
        inner = working & ~first
        if inner.sum() < MIN_CYCLES:
            continue
        cycle = float(np.median(gap[inner] / n[inner]))
        step = float(np.min(gap[inner][gap[inner] > 0], initial=0.0))  # the log's time resolution (a minute's log)
        idle = working & (gap > IDLE_GAP * cycle * n + step)
        if not idle.any():
            continue
        back = pd.to_timedelta(cycle * n[idle], unit="s").to_numpy()
        out.append(pd.DataFrame({"timestamp": np.concatenate([prev[idle], t[idle] - back]), "machine": machine,
                                 "state": ["starved"] * int(idle.sum()) + [WORKING] * int(idle.sum()), "reason": ""}))
        waits += int(idle.sum())
    if waits == 0:
        return log, 0
    both = pd.concat(out, ignore_index=True).sort_values(["machine", "timestamp"], kind="stable")
    both = both[~((both.machine == both.machine.shift(-1)) & (both.timestamp == both.timestamp.shift(-1)))]
    result = both.reset_index(drop=True)
    result.attrs = dict(log.attrs)
    return result, waits


def as_listed(log: pd.DataFrame, calendar: Calendar | None, parts: pd.DataFrame | None = None
              ) -> tuple[pd.DataFrame, bool, int | None]:
    """A log as `twin fit` and `twin whatif --from` read it: a stop list's (`stops_log`) without planned stops of its
    own off shift outside `calendar`'s shifts (`off_shift_from`), with the waits its part log `parts` shows
    (`waits_from_parts`); a status log as it is. Returns the log, whether it has planned stops of its own (else any
    calendar is `calendar`), and the waits read (None without a stop list and parts)."""
    if "stops" not in log.attrs:
        return log, True, None
    planned = bool((log.state == "off_shift").any())
    if not planned and calendar is not None:
        log = off_shift_from(log, calendar)
    if parts is None:
        return log, planned, None
    log, waits = waits_from_parts(log, parts)
    return log, planned, waits


def _product_cycles(st: Station, by_machine: Mapping[str, np.ndarray], made: Mapping[str, np.ndarray],
                    laws: dict[tuple[str, str, str], Any], update: dict[str, Any]) -> list[dict[str, Any]]:
    """A station whose cycle depends on the product (`cycle_times`), from a part log that names each part's: each of
    those products' cycle fitted from its parts' clean cycles, and `cycle_time` from the other products' (each at
    least MIN_CYCLES; else kept); the rows of the fit's table, the changes put in `update`."""
    rows = []
    cycles = np.concatenate([c for c in by_machine.values()] or [np.empty(0)])
    products = np.concatenate([made.get(m, np.full(len(c), None)) for m, c in by_machine.items()] or [np.empty(0)])
    row = {"machine type": f"station {st.name}", "time": "cycle", "censored": 0}
    for product, law in [*st.cycle_times.items(), ("", st.cycle_time)]:
        mine = cycles[products == product] if product else cycles[~np.isin(products, list(st.cycle_times))]
        shown = {**row, "fault mode": product or "other products", "events": len(mine),
                 "base mean [h]": law.mean / 3600}
        if len(mine) < MIN_CYCLES:
            rows.append({**shown, "family": "kept (too few clean cycles)", "mean [h]": law.mean / 3600,
                         "KS": np.nan, "parameters": ""})
            continue
        f = fit_cycle(mine)
        laws[(row["machine type"], product, "cycle")] = (f.law, mine, np.empty(0))
        if product:
            update.setdefault("cycle_times", dict(st.cycle_times))[product] = f.spec
        else:
            update["cycle_time"] = f.spec
        rows.append({**shown, **f.shown()})
    return rows


def clean_cycles(parts: pd.DataFrame, log: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per machine: its cycle times, free of the line's losses: the seconds between two instants it finished parts at
    while it stayed working the whole time (no wait for a part or for space, no stop in between), shared by the
    parts of the later instant. Several parts at one logged time are a multi-cavity tool's, or a log coarser than
    the cycle (a bottling line's 0.85 s logged to the second): each counts, so the mean is the time per part (the
    gaps between distinct times alone made a two-cavity press's cycle twice its time per part). And, where the log
    has a `product` column, per machine the product of each of those cycles (the part's that ended it; else empty)."""
    clean = _clean(parts, log)
    cycles = {m: np.repeat(per_part, n) for m, (per_part, n, _) in clean.items()}
    made = {m: np.repeat(products, n) for m, (_, n, products) in clean.items()} if "product" in parts else {}
    return cycles, made


def _clean(parts: pd.DataFrame, log: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per machine, its clean cycles (`clean_cycles`) as (seconds per part, parts finished at the instant that ended
    each, the product of the first of them: None without a product column), in one pass over the log."""
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for machine, p in parts.groupby("machine", sort=False):
        g = log[log.machine == machine]
        t, first, n = np.unique(p.timestamp.to_numpy(), return_index=True, return_counts=True)  # instants, parts
        if g.empty or len(t) < 2:
            continue
        change = g.timestamp.to_numpy()
        k = np.searchsorted(change, t, side="right") - 1  # the state each completion fell in
        state = np.where(k >= 0, g.state.to_numpy()[np.maximum(k, 0)], "")
        same = (k[1:] == k[:-1]) & (state[1:] == WORKING) & (k[:-1] >= 0)  # no state change between the two
        per_part = (t[1:] - t[:-1]).astype("timedelta64[ms]").astype(float) / 1000 / n[1:]
        made = p["product"].to_numpy(dtype=object)[first[1:]] if "product" in p else np.full(len(t) - 1, None)
        out[str(machine)] = (per_part[same], n[1:][same], made[same])
    return out


MIN_MINOR = 20  # fewer minor stops found in a machine type's clean cycles than this: none fitted, its cycles whole


@dataclass(frozen=True)
class MinorFit:
    """A machine type's minor stops as found in its machines' clean cycles (`minor_stops`): their lengths' law, the
    working time between them, and the cycles each machine's were (to leave out of its cycle-time fit)."""

    lengths: Fitted
    seen: np.ndarray  # the stops' lengths [s] it was fitted to
    every: float  # mean working time between stops [s] (their times taken as memoryless: exponential)
    long: dict[str, np.ndarray]  # per machine, which of its clean cycles held a stop
    cut: dict[str, float]  # per machine, the cycle [s] beyond which one did


def minor_stops(cycles: dict[str, np.ndarray], base: Scenario, made: Mapping[str, np.ndarray] | None = None
                ) -> dict[str, MinorFit]:
    """Per machine type, the minor stops its machines' clean cycles show (short stops an operator clears, logged as
    working): a cycle longer than the machine's median by 8 robust standard deviations (1.4826 × the median absolute
    deviation) and by half the median at least is one cycle with a stop of its excess over the median. Where `made`
    names each cycle's product, against that product's median and deviation (a filler's 2 s juice bottles beside its
    1 s water bottles were each read as a 1 s stop). Fitted where the type's machines show MIN_MINOR or more (at least
    MIN_CYCLES clean cycles a machine; not a batch's)."""
    stops: dict[str, list[np.ndarray]] = {}  # per machine type: each machine's stops' lengths
    work: dict[str, float] = {}  # per machine type: its machines' working time without the stops
    long: dict[str, dict[str, np.ndarray]] = {}
    cut: dict[str, dict[str, float]] = {}
    for st in base.stations:
        if st.batch is not None:
            continue
        t = st.machine_type
        for m in st.machine_names:
            x = cycles.get(m, np.empty(0))
            if len(x) < MIN_CYCLES:
                continue
            med, over = (np.full(len(x), v) for v in _stop_cut(x))  # each cycle's median, and the cut beyond it
            products = made.get(m) if made else None
            for k in dict.fromkeys(products) if products is not None else ():  # a product of enough cycles: its own
                at = products == k
                if np.count_nonzero(at) >= MIN_CYCLES:
                    med[at], over[at] = _stop_cut(x[at])
            cut.setdefault(t, {})[m] = float(over.min())
            long.setdefault(t, {})[m] = held = x > over
            stops.setdefault(t, []).append(x[held] - med[held])
            work[t] = work.get(t, 0.0) + float(x.sum() - (x[held] - med[held]).sum())
    fits = {}
    for t, each in stops.items():
        lengths = np.concatenate(each)
        if len(lengths) >= MIN_MINOR:
            fits[t] = MinorFit(fit_times(lengths, np.empty(0)), lengths, work[t] / len(lengths), long[t], cut[t])
    return fits


def _stop_cut(x: np.ndarray) -> tuple[float, float]:
    """Cycles' median, and the cycle beyond which one holds a minor stop: 8 robust standard deviations (1.4826 × the
    median absolute deviation; 1 % of the median where they are all alike) and half the median above it."""
    med = float(np.median(x))
    sd = 1.4826 * float(np.median(np.abs(x - med))) or 0.01 * med
    return med, max(med + 8 * sd, 1.5 * med)


MIN_ROUTED = 30  # fewer parts counted on a station's routes than this: the base scenario's shares are kept
MIN_JUDGED = 100  # fewer parts of a station with a result (good or scrap) than this: the base's scrap is kept


def fit_scrap(parts: pd.DataFrame, stations: list[Station], base: Scenario, log: pd.DataFrame | None = None
              ) -> list[dict[str, Any]]:
    """Each station's scrap probability from the results of the parts its machines finished (a part log's `result`,
    or scrap counters beside the good ones), with its 95 % Clopper-Pearson interval (updating `stations`; the rows of
    the fit's table), and with a status `log`, its start-up rejects (`startup_rejects`). Kept where the base makes
    scrap depend on the product or on wear (`scrap_by_product`, `scrap_increase`: a share over the log would fold both
    into one figure), for a batch station (scraps none here), and with fewer than MIN_JUDGED parts judged."""
    from scipy.stats import binomtest

    judged = parts[parts.scrap.notna()]
    rows = []
    for j, st in enumerate(stations):
        mine = judged[judged.machine.isin(st.machine_names)]
        k, n = int(mine.scrap.astype(bool).sum()), len(mine)
        if mine.empty or (st.batch is not None and not k):  # an oven that scrapped none: nothing to say
            continue
        row = {"machine type": f"station {st.name}", "fault mode": "", "time": "scrap", "events": k, "censored": 0,
               "mean [h]": np.nan, "base mean [h]": np.nan, "KS": np.nan}
        wear = [f.name for f in base.machine_types[st.machine_type].fault_modes if f.scrap_increase]
        if st.scrap_by_product and "product" in mine and not wear:  # each product's parts judged on their own
            rows += _product_scrap(st, mine, row, stations, j)
            continue
        why = (f"kept (its scrap rises with wear: {', '.join(wear)}'s scrap_increase)" if wear else
               "kept (its scrap is per product: scrap_by_product; a part log naming each part's product fits it)"
               if st.scrap_by_product else
               "kept (a batch station scraps no parts here)" if st.batch is not None else
               f"kept (only {n} parts with a result)" if n < MIN_JUDGED else "")
        startup = startup_rejects(mine, log) if log is not None and not why else None
        if startup is not None:  # the settled parts' share: the start-up rejects are fitted apart
            mine = mine[startup.settled]
            k, n = int(mine.scrap.astype(bool).sum()), len(mine)
        lo, hi = binomtest(k, n).proportion_ci(0.95, method="exact")
        aside = " (those just after a restart aside)" if startup else ""
        told = f"{k:,} of {n:,} parts scrapped{aside}: {k / n:.2%} (95 % CI {lo:.2%}–{hi:.2%}; was {st.scrap:.2%})"
        if why:
            rows.append({**row, "family": why, "parameters": told})
            continue
        update: dict[str, Any] = {"scrap": round(k / n, 6)}
        if startup is not None:
            update["startup_scrap"] = {"parts": startup.parts, "scrap": round(startup.share, 4)}
            was = st.startup_scrap
            rows.append({**row, "time": "startup rejects", "events": startup.restarts,
                         "family": "parts after a restart scrapped more often",
                         "parameters": f"the first {startup.parts} parts after each of {startup.restarts:,} restarts "
                                       f"(setup, repair, service): {startup.share:.1%} more scrapped (was "
                                       + (f"{was.parts} parts, {was.scrap:.1%})" if was is not None else "none)")})
        stations[j] = Station.model_validate({**st.model_dump(by_alias=True), **update})
        rows.append({**row, "events": k, "family": "share of its parts scrapped", "parameters": told})
    return rows


def _product_scrap(st: Station, judged: pd.DataFrame, row: dict[str, Any], stations: list[Station], j: int
                   ) -> list[dict[str, Any]]:
    """A station whose scrap depends on the product (`scrap_by_product`), from a part log that names each part's:
    each of those products' share of parts scrapped, and `scrap` from the other products' (each from MIN_JUDGED
    parts with a result at least; else kept), with their 95 % Clopper-Pearson intervals; `stations[j]` updated."""
    from scipy.stats import binomtest

    rows, update = [], {"scrap_by_product": dict(st.scrap_by_product)}
    for product, was in [*st.scrap_by_product.items(), ("", st.scrap)]:
        mine = judged[judged["product"] == product] if product else \
            judged[~judged["product"].isin(list(st.scrap_by_product))]
        k, n = int(mine.scrap.astype(bool).sum()), len(mine)
        shown = {**row, "fault mode": product or "other products", "events": k}
        if n < MIN_JUDGED:
            rows.append({**shown, "family": f"kept (only {n} parts with a result)", "parameters": f"was {was:.2%}"})
            continue
        lo, hi = binomtest(k, n).proportion_ci(0.95, method="exact")
        if product:
            update["scrap_by_product"][product] = round(k / n, 6)
        else:
            update["scrap"] = round(k / n, 6)
        rows.append({**shown, "family": "share of its parts scrapped", "parameters": f"{k:,} of {n:,} parts scrapped: "
                     f"{k / n:.2%} (95 % CI {lo:.2%}–{hi:.2%}; was {was:.2%})"})
    stations[j] = Station.model_validate({**st.model_dump(by_alias=True), **update})
    return rows


def fit_setups(log: pd.DataFrame, stations: list[Station], laws: dict[tuple[str, str, str], Any],
               parts: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Each station's changeover (setup) time from the setups its machines' status log shows (a setup's length: to
    the machine's next change of state; one under way at the log's start or end is left out), by AIC as lives are
    fitted, where it has MIN_EVENTS of them (updating `stations` and `laws`; the rows of the fit's table). A station
    whose setups depend on the product pair (`setup_matrix`) has them fitted per pair where a part log names each
    part's product, or the product changes are known (`_pair_setups`: a change is the first part of its product),
    else keeps them (the log does not say which pair); one without changeovers in the base says so."""
    end = log.timestamp.max()
    rows = []
    for j, st in enumerate(stations):
        seen: list[float] = []
        began: list[tuple[str, pd.Timestamp, float]] = []  # each setup's machine, start and length
        for m in st.machine_names:
            g = log[log.machine == m]
            if g.empty:
                continue
            lasted = durations(g.timestamp, end)
            setup = (g.state == "setup").to_numpy().copy()
            setup[0] = setup[-1] = False  # under way at the log's start, or still at its end: not whole
            seen += lasted[setup].tolist()
            began += [(m, t, d) for t, d in zip(g.timestamp.to_numpy()[setup], lasted[setup])]
        if not seen:
            continue
        row = {"machine type": f"station {st.name}", "fault mode": "", "time": "setup", "events": len(seen),
               "censored": 0, "KS": np.nan, "parameters": ""}
        if st.setup_matrix and parts is not None and "product" in parts:
            rows += _pair_setups(st, j, stations, began, parts, laws, row)
            continue
        base_mean = st.changeover.duration.mean / 3600 if st.changeover is not None else np.nan
        why = ("kept (its setups depend on the product pair: setup_matrix; the log does not say which)"
               if st.setup_matrix else
               "kept (the base has no changeover here: give it one, changeover: {every_parts, duration})"
               if st.changeover is None else "kept (too few setups)" if len(seen) < MIN_EVENTS else "")
        if why:
            rows.append({**row, "family": why, "mean [h]": float(np.mean(seen)) / 3600, "base mean [h]": base_mean})
            continue
        assert st.changeover is not None
        f = fit_times(np.asarray(seen), np.empty(0))
        laws[(row["machine type"], "", "setup")] = (f.law, np.asarray(seen), np.empty(0))
        stations[j] = Station.model_validate({**st.model_dump(by_alias=True), "changeover": {
            "every_parts": st.changeover.every_parts, "duration": f.spec}})
        rows.append({**row, "base mean [h]": base_mean, **f.shown()})
    return rows


def setup_pair(times: np.ndarray, made: np.ndarray, began: Any) -> tuple[str, str] | None:
    """A setup's product pair: the product of the machine's last part before it began (`times`, `made`: its parts, or
    the first part of each product it changed to, in time order) and of its first part after; None where those are
    one product (no changeover) or not both known."""
    k = int(np.searchsorted(times, began, side="right"))
    return (str(made[k - 1]), str(made[k])) if 0 < k < len(times) and made[k - 1] != made[k] else None


def _pair_setups(st: Station, j: int, stations: list[Station], began: list[tuple[str, Any, float]],
                 parts: pd.DataFrame, laws: dict[tuple[str, str, str], Any], row: dict[str, Any]
                 ) -> list[dict[str, Any]]:
    """A station's sequence-dependent setups (`setup_matrix`) per product pair: each setup's pair is the product of
    the machine's last part before it and of its first part after (a part log naming each part's product; a setup
    between parts of one product is no changeover and left out), each pair's time fitted by AIC from MIN_EVENTS
    setups or more (a pair the base lists as needing none, added); the others kept; `stations[j]` updated."""
    pairs: dict[tuple[str, str], list[float]] = {}
    by_machine = {m: (g.timestamp.to_numpy(), g["product"].to_numpy(dtype=object))
                  for m, g in parts[parts.machine.isin({m for m, _, _ in began})].groupby("machine", sort=False)}
    for m, t, lasted in began:
        times, made = by_machine.get(m, (np.empty(0, dtype="datetime64[ns]"), np.empty(0, dtype=object)))
        if (pair := setup_pair(times, made, t)) is not None:
            pairs.setdefault(pair, []).append(lasted)
    matrix = {a: dict(row_) for a, row_ in st.setup_matrix.items()}
    rows = []
    for (a, b), seen in sorted(pairs.items()):
        was = st.setup_matrix.get(a, {}).get(b)
        shown = {**row, "fault mode": f"{a} → {b}", "events": len(seen),
                 "base mean [h]": was.mean / 3600 if was is not None else 0.0}
        if len(seen) < MIN_EVENTS:
            rows.append({**shown, "family": "kept (too few setups)", "mean [h]": float(np.mean(seen)) / 3600})
            continue
        f = fit_times(np.asarray(seen), np.empty(0))
        laws[(row["machine type"], f"{a} → {b}", "setup")] = (f.law, np.asarray(seen), np.empty(0))
        matrix.setdefault(a, {})[b] = f.spec
        rows.append({**shown, **f.shown()})
    stations[j] = Station.model_validate({**st.model_dump(by_alias=True), "setup_matrix": matrix})
    return rows


MAX_STARTUP = 20  # the parts after a restart whose scrap is compared with the settled parts'
STOPS = ("setup", "down", "maintenance")  # the states a restart ends (start-up rejects follow)


@dataclass(frozen=True)
class Startup:
    """Start-up rejects found in a station's part results: the first `parts` after a restart are scrapped more often,
    by `share` of those the settled process would not have scrapped; `settled`: per part (row), whether it came
    later."""

    parts: int
    share: float
    restarts: int
    settled: np.ndarray


def startup_rejects(judged: pd.DataFrame, log: pd.DataFrame) -> Startup | None:
    """Whether a station's parts (timestamp, machine, scrap) after each restart of their machine (the end of a setup,
    a stop or a service in the status log) are scrapped more often than the settled ones (beyond MAX_STARTUP parts
    after one): the first k parts while the k-th alone is so at p < 0.01 (one-sided binomial test), where 10 restarts
    or more were seen; None where none is."""
    from scipy.stats import binomtest

    position = np.full(len(judged), np.inf)  # parts since the machine's last restart (inf: none seen before)
    restarts = 0
    for machine, rows in judged.groupby("machine", sort=False):
        g = log[log.machine == machine].sort_values("timestamp", kind="stable")
        stopped = g.state.isin(STOPS).to_numpy()
        ends = g.timestamp.to_numpy()[1:][stopped[:-1] & ~stopped[1:]]  # a stop's end: back to work
        restarts += len(ends)
        if not len(ends):
            continue
        order = np.argsort(rows.timestamp.to_numpy(), kind="stable")
        t = rows.timestamp.to_numpy()[order]
        last = np.searchsorted(ends, t, side="right") - 1  # the restart each part came after
        after = np.arange(len(t)) - np.searchsorted(t, ends[np.maximum(last, 0)], side="left") + 1
        where = np.flatnonzero(judged.index.isin(rows.index))[order]
        position[where] = np.where(last >= 0, after, np.inf)
    scrap = judged.scrap.astype(bool).to_numpy()
    settled = position > MAX_STARTUP
    if restarts < 10 or settled.sum() < MIN_JUDGED:
        return None
    base = scrap[settled].mean()
    parts = 0
    for k in range(1, MAX_STARTUP + 1):
        at = position == k
        if not at.any() or binomtest(int(scrap[at].sum()), int(at.sum()), base, alternative="greater").pvalue >= 0.01:
            break
        parts = k
    if not parts:
        return None
    early = scrap[position <= parts].mean()
    return Startup(parts, float((early - base) / (1 - base)) if base < 1 else 0.0, restarts, position > parts)


def fit_routes(parts: pd.DataFrame, stations: list[Station], base: Scenario) -> list[dict[str, Any]]:
    """Each probability route's share from the parts its stations finished (updating `stations`; the rows of the
    fit's table): where every way out of a station leads to a station fed by it alone (no other station, the source
    or an assembly counts there), the share of each is its parts over theirs; where one way leads elsewhere (the
    exit, a merge), that one takes what the station's good parts leave the others (for a station that scraps, only
    where the log gives each part's result: else a log may count its scrap or not). A station whose routes cannot be
    told apart by counting keeps the base's shares, and the row says why."""
    counted = parts.groupby("machine").size()
    made = [int(sum(counted.get(m, 0) for m in st.machine_names)) for st in stations]
    # where the log tells each part's result, a station's parts on its ways are the good ones it made
    judged = "scrap" in parts and parts.scrap.notna().all()
    good = parts[~parts.scrap.astype(bool)].groupby("machine").size() if judged else counted
    made_good = [int(sum(good.get(m, 0) for m in st.machine_names)) for st in stations]
    feeders: dict[int, set[int]] = {}
    for j in range(len(stations)):
        for t, _ in base.successors(j):
            feeders.setdefault(t, set()).add(j)
    entries = set(base.entries())
    rows = []
    for j, st in enumerate(stations):
        ways = base.successors(j)
        if st.route != "probability" or len(ways) < 2:
            continue
        alone = [t >= 0 and feeders[t] == {j} and t not in entries and not stations[t].assemble for t, _ in ways]
        names = [EXIT if t < 0 else stations[t].name for t, _ in ways]
        row = {"machine type": f"station {st.name}", "fault mode": "", "time": "routes", "censored": 0,
               "mean [h]": np.nan, "base mean [h]": np.nan, "KS": np.nan}
        if alone.count(False) > 1:
            rows.append({**row, "events": 0, "family": "kept (more than one way leads where other parts go too: "
                         "counting cannot tell them apart)", "parameters": ""})
            continue
        if not all(alone) and not judged and (st.scrap or st.scrap_by_product or any(
                f.scrap_increase for f in base.machine_types[st.machine_type].fault_modes)):
            rows.append({**row, "events": 0, "family": f"kept (a way to the exit or a merge is what {st.name}'s good "
                         "parts leave the others, but it scraps parts, which a part log may count or not)",
                         "parameters": ""})
            continue
        seen = [made[t] if ok else 0 for (t, _), ok in zip(ways, alone)]
        total = sum(seen) if all(alone) else made_good[j]
        if total < MIN_ROUTED or not all(made[t] for (t, _), ok in zip(ways, alone) if ok):
            rows.append({**row, "events": int(total), "family": "kept (too few parts counted on its ways)",
                         "parameters": ""})
            continue
        shares = [n / total for n in seen]
        if not all(alone):
            k = alone.index(False)
            shares[k] = 1 - sum(shares)
            if shares[k] < 0:  # more counted downstream than the station made: the logs do not cover one period
                rows.append({**row, "events": int(total), "family": f"kept (its ways counted more parts than "
                             f"{st.name} made)", "parameters": ""})
                continue
        shares = [round(x, 4) for x in shares]
        big = shares.index(max(shares))  # what rounding left over goes to the largest share (never below 0)
        shares[big] = round(1 - sum(x for k, x in enumerate(shares) if k != big), 4)
        routes = [r.model_copy(update={"p": x}) for r, x in zip(st.routes(), shares)]
        stations[j] = st.model_copy(update={"next": routes})
        rows.append({**row, "events": int(total), "family": "share of the parts counted on each way",
                     "parameters": ", ".join(f"{n} {x:.3f} (was {r.p:g})" for n, x, r in zip(names, shares,
                                                                                            st.routes()))})
    return rows


def _by_aic(families: dict[str, str], events: np.ndarray, censored: np.ndarray, what: str,
            spec_of: Callable[[str, tuple[float, ...]], dict[str, Any]]
            ) -> tuple[str, tuple[float, ...], dict[str, Any], dict[str, float]]:
    """Every family fitted by maximum likelihood (right-censored where `censored` holds times; location 0 but for
    the normal law), the lowest AIC chosen among those whose law a scenario file can hold (its entry `spec_of`): a
    gamma's shape is at most 1000 and a Weibull's 100 there, and a filler's cycle steadier than 3 % fitted a gamma of
    shape 1,200 that the fitted scenario refused (`twin fit` ended in a traceback). (family, parameters, its entry,
    AIC of each.)"""
    from pydantic import ValidationError
    from scipy import stats

    data = stats.CensoredData(uncensored=events, right=censored) if len(censored) else events
    fitted: dict[str, tuple[float, ...]] = {}
    aic = {}
    for name, law in families.items():
        dist = getattr(stats, law)
        # a family that cannot fit (times all alike, as a log at a coarse resolution gives) is passed over, silently:
        # scipy's warnings from inside its optimiser, with their file paths, only alarmed the user
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                params = dist.fit(data) if name == "normal" else dist.fit(data, floc=0)
            except (ValueError, RuntimeError, FloatingPointError):
                continue
            ll = float(np.sum(dist.logpdf(events, *params)) + np.sum(dist.logsf(censored, *params)))
        if not math.isfinite(ll):
            continue
        aic[name] = 2 * (1 if name == "exponential" else 2) - 2 * ll
        fitted[name] = params
    for name in sorted(aic, key=aic.__getitem__):
        spec = spec_of(name, fitted[name])
        try:
            _distribution().validate_python(spec)
        except ValidationError:
            continue
        return name, fitted[name], spec, aic
    raise LogError(f"no distribution family {'a scenario can hold ' if aic else ''}fits these {what}")


@functools.cache
def _distribution() -> Any:
    """The scenario files' distribution entry as a pydantic TypeAdapter, built once."""
    from pydantic import TypeAdapter

    return TypeAdapter(Distribution)


APART = 0.05  # a machine whose mean cycle differs from its station's others' by more than this share (and surely)


def _apart(by_machine: dict[str, np.ndarray]) -> set[str]:
    """The machines of a station that work at a speed of their own: each one's clean cycles against those of the
    machine with the most (the station's law), a mean more than APART off and Welch's t-test sure of it
    (p < 0.001); none where fewer than two machines have MIN_CYCLES."""
    from scipy import stats

    enough = {m: c for m, c in by_machine.items() if len(c) >= MIN_CYCLES}
    if len(enough) < 2:
        return set()
    ref = enough[max(enough, key=lambda m: len(enough[m]))]
    return {m for m, mine in enough.items() if abs(mine.mean() / ref.mean() - 1) > APART
            and stats.ttest_ind(mine, ref, equal_var=False).pvalue < 1e-3}


def fit_cycle(samples: np.ndarray) -> Fitted:
    """A cycle-time law (normal, lognormal or gamma) by maximum likelihood, the lowest AIC chosen."""
    from scipy import stats

    name, params, spec, aic = _by_aic(CYCLE_FAMILIES, samples, np.empty(0), "cycle times", lambda name, params: (
        {"dist": "normal", "mean": round(params[0], 3), "sd": round(params[1], 3)} if name == "normal"
        else _spec(name, params)))
    law = getattr(stats, CYCLE_FAMILIES[name])(*params)
    return Fitted(name, spec, float(law.mean()), len(samples), 0, float(stats.kstest(samples, law.cdf).statistic),
                  aic, law)


def fit_times(events: np.ndarray, censored: np.ndarray) -> Fitted:
    """Fit every family (location 0) to the times by maximum likelihood with right-censoring; the lowest AIC wins."""
    from scipy import stats

    name, params, spec, aic = _by_aic(FAMILIES, events, censored, "times", _spec)
    dist = getattr(stats, FAMILIES[name])(*params)
    if len(censored):  # the largest gap between the Kaplan-Meier curve (censoring-aware) and the fitted law
        km = stats.ecdf(stats.CensoredData(uncensored=events, right=censored)).cdf
        ks = float(np.max(np.abs(km.probabilities - dist.cdf(km.quantiles))))
    else:
        ks = float(stats.kstest(events, dist.cdf).statistic)
    return Fitted(name, spec, float(dist.mean()), len(events), len(censored), ks, aic, dist)


def _spec(name: str, params: tuple[float, ...]) -> dict[str, Any]:
    if name == "exponential":
        return {"dist": "exponential", "mean": round(params[1], 3)}
    if name == "weibull":
        return {"dist": "weibull", "shape": round(params[0], 4), "scale": round(params[2], 3)}
    if name == "gamma":
        return {"dist": "gamma", "shape": round(params[0], 4), "scale": round(params[2], 3)}
    s, scale = params[0], params[2]
    mean = scale * math.exp(s * s / 2)
    return {"dist": "lognormal", "mean": round(mean, 3), "sd": round(mean * math.sqrt(math.expm1(s * s)), 3)}


def durations(times: pd.Series, end: pd.Timestamp) -> np.ndarray:
    """Seconds each state of one machine lasted: until its next change, the last one until the log's end."""
    t = times.to_numpy()
    return np.diff(np.append(t, pd.Timestamp(end).to_datetime64())).astype("timedelta64[ms]").astype(float) / 1000


def observations(log: pd.DataFrame, sc: Scenario) -> dict[tuple[str, str, str], tuple[list[float], list[float]]]:
    """(machine type, fault mode, 'ttf' or 'repair') → (times observed, times censored), pooled over the type's
    machines."""
    types = sc.type_names()
    end = log.timestamp.max()
    out: dict[tuple[str, str, str], tuple[list[float], list[float]]] = {}

    def add(key: tuple[str, str, str], t: float, seen: bool) -> None:
        if t > 0:
            out.setdefault(key, ([], []))[0 if seen else 1].append(t)

    for machine, g in log.groupby("machine", sort=False):
        mtype = types.get(str(machine))
        if mtype is None:
            continue
        spec = sc.machine_types[mtype]
        modes = [f.name for f in spec.fault_modes]
        wear = {f.name for f in spec.fault_modes if f.kind == "wear"}
        running = {WORKING} if spec.clock == "operating" else set(UP_STATES)  # off shift the clock stands, as modelled
        dur = durations(g.timestamp, end)
        age: dict[str, float | None] = dict.fromkeys(modes)  # None: the age is unknown until the first renewal
        taken = stop_modes(g.reason.to_numpy(), modes)
        for state, mode, d, last in zip(g.state, taken, dur, np.arange(len(g)) == len(g) - 1):
            if state in running:
                for m in modes:
                    if age[m] is not None:
                        age[m] = age[m] + d  # type: ignore[operator]
            elif state == "down" and mode:
                add((mtype, mode, "repair"), d, not last)
                if age[mode] is not None:
                    add((mtype, mode, "ttf"), age[mode], True)  # type: ignore[arg-type]
                age[mode] = 0.0
            elif state == "maintenance":
                for m in wear:
                    if age[m] is not None:
                        add((mtype, m, "ttf"), age[m], False)  # type: ignore[arg-type]
                    age[m] = 0.0
        for m in modes:
            if age[m] is not None:
                add((mtype, m, "ttf"), age[m], False)  # type: ignore[arg-type]
    return out


SLOT = 15  # minutes: the grid on which a shift calendar is read from the log


def calendar_from(log: pd.DataFrame) -> dict[str, Any] | None:
    """The shift calendar the log's planned stops show (None if it has none): on a 15-minute grid, a slot of a
    weekday is planned downtime when the line (most of its machines) was off shift (or in a service) there on most
    such days. The
    week is read as one timeline, so a night shift that crosses midnight stays one shift of the day it starts on:
    each day is read from the hour its production most often starts, the shifts are the runs of on-shift slots of
    the most common day, working days those with at least half as many slots on shift (a day with fewer, an hour or
    more, its own shifts: `by_day`), and holidays the working days spent off shift throughout."""
    if not (log.state == "off_shift").any():
        return None
    start, end = log.timestamp.min().floor("D"), log.timestamp.max()
    grid = pd.date_range(start, end, freq=f"{SLOT}min")
    if len(grid) < 2 * 24 * 60 // SLOT:
        return None  # less than two days: no pattern to read
    off = np.zeros(len(grid))
    machines = log.machine.unique()
    for _, g in log.groupby("machine", sort=False):
        middle = (grid + pd.Timedelta(minutes=SLOT / 2)).to_numpy()  # a machine ends its part after the shift
        k = np.searchsorted(g.timestamp.to_numpy(), middle, side="right") - 1
        # a service in the planned stop counts as the stop (a plant servicing each night at 22:00 keeps its 22:00)
        off += np.where(k >= 0, np.isin(g.state.to_numpy()[np.maximum(k, 0)], ("off_shift", "maintenance")), False)
    frame = pd.DataFrame({"day": grid.day_of_week, "slot": grid.hour * 60 + grid.minute,
                          "off": off > len(machines) / 2})
    frame = frame[(grid >= log.timestamp.min()) & (grid < end)]
    typical = frame.groupby(["day", "slot"]).off.mean() > 0.5  # off on most such days
    per_day = 24 * 60 // SLOT
    week = np.zeros(7 * per_day, dtype=bool)  # on shift, Monday 00:00 to Sunday 24:00; a day not seen is off
    for (d, slot), is_off in typical.items():
        week[d * per_day + slot // SLOT] = not is_off
    if week.all() or not week.any():
        return None  # never off shift in a pattern: the line runs around the clock (or never)
    starts = np.flatnonzero(week & ~np.roll(week, 1))  # where production begins, the week read round
    anchor = int(pd.Series(starts % per_day).mode().min()) if len(starts) else 0
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    days = {d: tuple(np.roll(week, -(d * per_day + anchor))[:per_day]) for d in range(7)}  # each day from the anchor
    on = np.array(pd.Series([p for p in days.values() if any(p)]).value_counts().index[0])

    # a day with fewer than half the common day's slots on shift works shifts of its own (a short Saturday), when it
    # has an hour of them (less: a part finished after the last shift)
    own = {names[d]: _day_shifts(np.array(p), anchor) for d, p in days.items() if 4 <= sum(p) < on.sum() / 2}
    days_seen = dict(days)
    days = {d: p for d, p in days.items() if sum(p) >= on.sum() / 2}
    out: dict[str, Any] = {"shifts": _day_shifts(on, anchor), "days": [names[d] for d in sorted(days)]}
    if own:
        out["by_day"] = own
    out.update(_breaks_in(out, on, anchor, {names[d]: np.array(days_seen[d]) for d in days_seen
                                            if names[d] in own}))
    # a working day whose shifts the line spent off shift throughout is a holiday (the shifts counted from the
    # anchor, as above; only days the log covers whole)
    off_at = pd.Series(frame.off.to_numpy(), index=grid[frame.index])
    holidays = []
    for day in pd.date_range(start, end.floor("D"), freq="D"):
        first = day + pd.Timedelta(minutes=anchor * SLOT)
        slots = off_at[(off_at.index >= first) & (off_at.index < first + pd.Timedelta(days=1))].to_numpy()
        if day.day_of_week in days and len(slots) == per_day and slots[on].all():  # a common working day
            holidays.append(day.date().isoformat())
    if holidays:
        out["holidays"] = holidays
    return out


BREAK_SLOTS = 3  # a pause of at most 45 minutes between two runs of production in a day is a break, not shifts


def _breaks_in(cal: dict[str, Any], on: np.ndarray, anchor: int, own: dict[str, np.ndarray]) -> dict[str, Any]:
    """The common day's short pauses (a lunch break) as breaks within its shifts, {"shifts": ..., "breaks": ...}:
    a shift read as '06:00-12:00' and '12:30-14:00' is one shift with a break, as the plant's reports count it. Only
    where the calendar with them plans exactly the slots the log showed on every day type (a day of its own shifts
    that works through the pause keeps the pause as two shifts); else nothing."""
    runs = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int), [0]])))  # starts and ends of the runs of slots
    gaps = [(b, a) for b, a in zip(runs[1:-1:2], runs[2::2]) if a - b <= BREAK_SLOTS]  # a run's end, the next's start
    if not gaps:
        return {}
    merged = on.copy()
    for b, a in gaps:
        merged[b:a] = True
    texts = [_shift_texts((anchor + b) * SLOT, (anchor + a) * SLOT)[0] for b, a in gaps]
    shifts = _day_shifts(merged, anchor)
    try:
        trial = Calendar.model_validate({**cal, "shifts": shifts, "breaks": texts})
    except ValueError:
        return {}

    def slots(windows: list[tuple[float, float]]) -> set[int]:
        return {m for a, b in windows for m in range(int(a // 60 // SLOT), int(b // 60 // SLOT))}

    def seen(pattern: np.ndarray) -> set[int]:
        return {anchor + int(i) for i in np.flatnonzero(pattern)}

    common = next(d for d in cal["days"] if d not in cal.get("by_day", {}))
    if slots(trial.windows(common)) != seen(on) or any(slots(trial.windows(d)) != seen(p) for d, p in own.items()):
        return {}
    return {"shifts": shifts, "breaks": texts}


def _day_shifts(pattern: np.ndarray, anchor: int) -> list[str]:
    """A day's on-shift slots (counted from the anchor slot) as its shifts, one per run of slots."""
    runs = np.flatnonzero(np.diff(np.concatenate([[0], pattern.astype(int), [0]])))
    return [t for a, b in zip(runs[::2], runs[1::2]) for t in _shift_texts((anchor + a) * SLOT, (anchor + b) * SLOT)]


def _shift_texts(a: int, b: int) -> list[str]:
    """Minutes after a day's midnight (b up to a day later) as calendar shifts: one 'HH:MM-HH:MM', crossing
    midnight where it does; a whole day from a time other than midnight as two halves (a shift cannot start when it
    ends)."""
    def hhmm(m: int) -> str:
        return f"{m // 60:02d}:{m % 60:02d}"

    if b - a == 1440 and a % 1440:
        return _shift_texts(a, a + 720) + _shift_texts(a + 720, b)
    return [f"{hhmm(a % 1440)}-{hhmm(b % 1440 or 1440)}"]  # an end at midnight is 24:00


#: the columns of `fit_scenario`'s table of what was fitted
FIT_COLUMNS = ["machine type", "fault mode", "time", "events", "censored", "family", "mean [h]", "base mean [h]", "KS",
               "parameters"]


def fit_scenario(log: pd.DataFrame, base: Scenario, parts: pd.DataFrame | None = None,
                 levels: pd.DataFrame | None = None, energy: pd.DataFrame | None = None, calendar: bool = True,
                 products: pd.DataFrame | None = None) -> tuple[Scenario, pd.DataFrame]:
    """The base scenario with every fault mode's time to failure and repair time fitted from the log (where it has
    at least MIN_EVENTS of them), each station's cycle time from a part log (at least MIN_CYCLES clean cycles),
    each buffer's capacity from a buffer-level log (the most parts seen waiting), each machine type's power by state
    from its meters (`fit_power`), the shift calendar from the log's planned stops unless `calendar` is False (a
    stop list's off-shift time is the base's calendar already), and a table of what was fitted and how well (its
    `attrs["laws"]`: each fitted law with the times it was fitted to, by machine type, fault mode and time).
    `products` (timestamp, machine, product: when each machine began on another product, a store's product records)
    tells each setup's product pair where the part log names no products."""
    obs = observations(log, base)
    rows = []
    laws: dict[tuple[str, str, str], tuple[Any, np.ndarray, np.ndarray]] = {}  # each fit's law and its data
    stations = list(base.stations)
    minor: dict[str, MinorFit] = {}
    if parts is not None:
        cycles, made = clean_cycles(parts, log)
        minor = minor_stops(cycles, base, made)
        for fit in minor.values():  # a cycle with a stop in it is no cycle time: the stop is fitted on its own
            cycles.update({m: cycles[m][~long] for m, long in fit.long.items()})
            made.update({m: made[m][~long] for m, long in fit.long.items() if m in made})
        for i, st in enumerate(stations):
            by_machine = {m: cycles.get(m, np.empty(0)) for m in st.machine_names}
            if st.cycle_times and made:  # each product's cycles fitted on their own: its law, and the base's
                changed: dict[str, Any] = {}
                rows += _product_cycles(st, by_machine, made, laws, changed)
                if changed:
                    stations[i] = st.model_validate({**st.model_dump(by_alias=True), **changed})
                continue
            own = set(st.machine_cycle_times) | (set() if st.ideal_cycle_time is not None or st.cycle_times
                                                 else _apart(by_machine))
            samples = np.concatenate([c for m, c in by_machine.items() if m not in own] or [np.empty(0)])
            before = st.cycle_time.mean
            row = {"machine type": f"station {st.name}", "fault mode": "", "time": "cycle", "censored": 0,
                   "events": len(samples), "base mean [h]": before / 3600}
            update: dict[str, Any] = {}
            for m in sorted(own, key=st.machine_names.index):  # a machine of its own speed: its own law
                mine, was = by_machine[m], st.cycle_for(m).mean
                if len(mine) < MIN_CYCLES:
                    rows.append({**row, "fault mode": m, "events": len(mine), "base mean [h]": was / 3600,
                                 "family": "kept (too few clean cycles)", "mean [h]": was / 3600, "KS": np.nan,
                                 "parameters": ""})
                    continue
                f = fit_cycle(mine)
                laws[(row["machine type"], m, "cycle")] = (f.law, mine, np.empty(0))
                update.setdefault("machine_cycle_times", dict(st.machine_cycle_times))[m] = f.spec
                rows.append({**row, "fault mode": m, "events": len(mine), "base mean [h]": was / 3600, **f.shown()})
            if len(samples) < MIN_CYCLES or st.cycle_times or st.batch is not None:
                why = ("kept (too few clean cycles)" if len(samples) < MIN_CYCLES else "kept (per-product cycle times)"
                       if st.cycle_times else "kept (a batch's cycle: its parts come out together)")
                if own and len(own) == len(st.machine_names):
                    why = "kept (every machine has a cycle time of its own)"
                rows.append({**row, "family": why, "mean [h]": before / 3600, "KS": np.nan, "parameters": ""})
            else:
                f = fit_cycle(samples)
                laws[(row["machine type"], "", "cycle")] = (f.law, samples, np.empty(0))
                update["cycle_time"] = f.spec
                rows.append({**row, **f.shown()})
            if update:
                stations[i] = st.model_validate({**st.model_dump(by_alias=True), **update})
    if parts is not None:
        if "scrap" in parts:
            rows += fit_scrap(parts, stations, base, log)
        rows += fit_routes(parts, stations, base)
    if levels is not None:  # an assembly's buffers, one per feeder ('assy<shaft'), share its capacity
        levels = levels.assign(station=levels.station.astype(str).map(buffer_station))
        most = levels.groupby("station")["level"].max()
        for i, st in enumerate(stations):
            if st.name in most.index and st.buffer is not None:
                seen = int(most[st.name])
                stations[i] = stations[i].model_copy(update={"buffer": max(seen, 1),
                                                             "initial": min(stations[i].initial, max(seen, 1))})
                rows.append({"machine type": f"station {st.name}", "fault mode": "", "time": "buffer",
                             "events": int((levels.station == st.name).sum()), "censored": 0,
                             "family": "most parts seen waiting", "mean [h]": np.nan, "base mean [h]": np.nan,
                             "KS": np.nan, "parameters": f"buffer={max(seen, 1)} (was {st.buffer})"})
    rows += fit_setups(log, stations, laws, parts if parts is not None and "product" in parts else products)
    types = {k: v.model_copy(deep=True) for k, v in base.machine_types.items()}
    for mtype, fit in minor.items():
        spec = {"every": {"dist": "exponential", "mean": round(fit.every, 3)}, "duration": fit.lengths.spec}
        was = base.machine_types[mtype].minor_stops
        types[mtype] = types[mtype].model_validate({**types[mtype].model_dump(by_alias=True), "minor_stops": spec})
        laws[(mtype, "minor stops", "length")] = (fit.lengths.law, fit.seen, np.empty(0))
        cuts = ", ".join(f"{m} {c:.3g} s" for m, c in fit.cut.items())
        rows.append({"machine type": mtype, "fault mode": "minor stops", "time": "length", "events": fit.lengths.events,
                     "censored": 0, "base mean [h]": was.duration.mean / 3600 if was is not None else np.nan,
                     **fit.lengths.shown(),
                     "parameters": f"{fit.lengths.shown()['parameters']}; every {fit.every / 60:.3g} min of work "
                                   f"(was {'none' if was is None else f'{was.every.mean / 60:.3g} min'}); the cycles "
                                   f"longer than {cuts}"})
    for (mtype, mode, what), (seen, cut) in sorted(obs.items()):
        base_mode = next(f for f in base.machine_types[mtype].fault_modes if f.name == mode)
        before = (base_mode.ttf if what == "ttf" else base_mode.repair).mean
        if len(seen) < MIN_EVENTS:
            rows.append({"machine type": mtype, "fault mode": mode, "time": what, "events": len(seen),
                         "censored": len(cut), "family": "kept (too few events)", "mean [h]": before / 3600,
                         "base mean [h]": before / 3600, "KS": np.nan, "parameters": ""})
            continue
        f = fit_times(np.asarray(seen), np.asarray(cut))
        laws[(mtype, mode, what)] = (f.law, np.asarray(seen), np.asarray(cut))
        modes = types[mtype].fault_modes
        k = next(i for i, fm in enumerate(modes) if fm.name == mode)
        modes[k] = modes[k].model_validate({**modes[k].model_dump(by_alias=True), "ttf" if what == "ttf" else "repair":
                                            f.spec})
        rows.append({"machine type": mtype, "fault mode": mode, "time": what, "events": f.events,
                     "censored": f.censored, "base mean [h]": before / 3600, **f.shown()})
    if energy is not None:
        power, power_rows = fit_power(log, energy, base)
        rows += power_rows
        for mtype, p in power.items():
            types[mtype] = types[mtype].model_validate({**types[mtype].model_dump(by_alias=True), "power": p})
    update: dict[str, Any] = {"machine_types": types, "stations": stations}
    cal = calendar_from(log) if calendar else None
    if cal is not None:
        update["calendar"] = Calendar.model_validate(cal)  # a dict here made pydantic warn as the scenario is written
        rows.append({"machine type": "line", "fault mode": "", "time": "calendar", "events":
                     int((log.state == "off_shift").sum()), "censored": 0, "family": "planned stops in the log",
                     "mean [h]": np.nan, "base mean [h]": np.nan, "KS": np.nan,
                     "parameters": f"shifts {', '.join(cal['shifts'])} on {', '.join(cal['days'])}"
                                   + (f", breaks {', '.join(cal['breaks'])}" if cal.get("breaks") else "")
                                   + "".join(f", {d} {', '.join(w)}" for d, w in cal.get("by_day", {}).items())
                                   + (f", holidays {', '.join(cal['holidays'])}" if cal.get("holidays") else "")
                                   + f" (was {'none' if base.calendar is None else ', '.join(base.calendar.shifts)})"})
    rows += _service_times(log, base, update.get("calendar", base.calendar), types)  # `types` as the log serviced
    if parts is not None and "product" in parts and base.products:
        rows += _product_mix(parts, base, update)
    fitted = base.model_copy(update=update)
    table = pd.DataFrame(rows, columns=FIT_COLUMNS)  # in this order whichever row comes first
    table.attrs["laws"] = laws  # for the report's plot (`twin fit`): (law, times observed, times censored) in seconds
    return Scenario.model_validate(fitted.model_dump(by_alias=True)), table


def _product_mix(parts: pd.DataFrame, base: Scenario, update: dict[str, Any]) -> list[dict[str, Any]]:
    """A line releasing a random mix (products' `share`, no `release` plan): each product's share from the parts its
    entry stations made (MIN_JUDGED at least), into `update`; the row of the fit's table. A release plan (campaigns)
    is the line's schedule, not a law: kept, and said."""
    entry = {m for i in base.entries() for m in base.stations[i].machine_names}
    made = parts.loc[parts.machine.isin(entry), "product"].value_counts()
    n = int(made.sum())
    row = {"machine type": "line", "fault mode": "", "time": "product mix", "events": n, "censored": 0,
           "mean [h]": np.nan, "base mean [h]": np.nan, "KS": np.nan}
    was = base.product_mix()
    seen = ", ".join(f"{p} {made.get(p, 0) / n:.1%}" for p in was) if n else ""
    if base.release:
        return [{**row, "family": "kept (a release plan: release)", "parameters": seen}]
    if n < MIN_JUDGED:
        return [{**row, "family": f"kept (only {n} parts made at the entry stations)", "parameters": seen}]
    update["products"] = [p.model_copy(update={"share": max(round(float(made.get(p.name, 0)) / n, 6), 1e-6)})
                          for p in base.products]
    return [{**row, "family": "share of the parts released", "parameters": ", ".join(
        f"{p} {made.get(p, 0) / n:.1%} (was {w:.1%})" for p, w in was.items())}]


def _service_times(log: pd.DataFrame, base: Scenario, calendar: Calendar | None,
                   types: dict[str, Any]) -> list[dict[str, Any]]:
    """When each machine type's planned services came in the log: at least 4 of 5 in planned stops (the plant services
    off shift) makes it `when: off-shift`, at most 1 of 5 `at-once`, each said as a row of the fit's table; `types`
    updated in place. Only types on a policy that services, with 3 or more services in the log, on a calendar."""
    from twin.model import ShiftCalendar

    if calendar is None or not (log.state == "maintenance").any():
        return []
    start = log.timestamp.min()
    plan = ShiftCalendar(calendar, wall_time(start), (log.timestamp.max() - start).total_seconds())
    kind = base.type_names()
    began = log[(log.state == "maintenance") & (log.groupby("machine").state.shift() != "maintenance")]
    off = [(kind.get(str(m)), plan.next_start((t - start).total_seconds()) is not None)
           for m, t in zip(began.machine, began.timestamp)]
    rows = []
    for name, mtype in types.items():
        seen = [o for k, o in off if k == name]
        was = mtype.maintenance.when
        if mtype.maintenance.policy == "run-to-failure" or len(seen) < 3:
            continue
        share = sum(seen) / len(seen)
        when = "off-shift" if share >= 0.8 else "at-once" if share <= 0.2 else was
        if when != was:
            types[name] = mtype.model_validate({**mtype.model_dump(by_alias=True),
                                                "maintenance": {**mtype.maintenance.model_dump(by_alias=True),
                                                                "when": when}})
        rows.append({"machine type": name, "fault mode": "", "time": "service", "events": len(seen), "censored": 0,
                     "family": f"{sum(seen)} of {len(seen)} in planned stops", "mean [h]": np.nan,
                     "base mean [h]": np.nan, "KS": np.nan, "parameters": f"when: {when} (was {was})"})
    return rows


def log_from_run(states: pd.DataFrame, events: pd.DataFrame, start: pd.Timestamp, replication: int = 0
                 ) -> pd.DataFrame:
    """A status log as a plant would keep it, from a twin run's ground truth (states and events of one
    replication): for tests and for checking `twin fit` against a known truth."""
    st = states[states.replication == replication]
    fails = events[(events.replication == replication) & (events.event == "failure")][["machine", "t", "fault_mode"]]
    st = st.merge(fails.rename(columns={"t": "start", "fault_mode": "reason"}), on=["machine", "start"], how="left")
    st = st.sort_values(["machine", "start"])
    st = st[~((st.machine == st.machine.shift()) & (st.state.astype(str) == st.state.astype(str).shift()))]
    return pd.DataFrame({"timestamp": start + pd.to_timedelta(st.start.to_numpy(), unit="s"),
                         "machine": st.machine.astype(str).to_numpy(), "state": st.state.astype(str).to_numpy(),
                         "reason": st.reason.fillna("").to_numpy()})
