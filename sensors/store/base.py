"""What every store backend offers, and `open_store(url)` to get one.

Readings travel as pandas DataFrames with READING_COLUMNS; a reading is identified by
(run, replication, machine, sensor, ts), so writing the same reading twice stores it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pandas as pd

READING_COLUMNS = ["run", "replication", "machine", "sensor", "ts", "value"]
STATE_COLUMNS = ["run", "replication", "machine", "ts", "state", "reason"]  # reason: a stop's downtime reason
SERIES_COLUMNS = ["run", "machine", "station", "sensor", "unit"]
AGGREGATES = ("mean", "min", "max", "last", "count")


class StoreError(Exception):
    """A store that cannot be opened or used; the message says what to fix."""


class Store(Protocol):
    """Write batches; query ranges raw or aggregated per interval; latest values; list series."""

    url: str

    def write(self, readings: pd.DataFrame) -> int:
        """Store readings (READING_COLUMNS); a reading already stored is ignored. Returns rows given."""
        ...

    def write_states(self, states: pd.DataFrame) -> None:
        """Store machine state changes (STATE_COLUMNS; without a reason column, none is known)."""
        ...

    def write_series(self, series: pd.DataFrame) -> None:
        """Store the sensor catalogue (SERIES_COLUMNS): which machine has which sensor, in which unit."""
        ...

    def query(self, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None, *,
              machines: Sequence[str] | None = None, sensors: Sequence[str] | None = None,
              run: str | None = None, every: str | None = None, agg: str = "mean") -> pd.DataFrame:
        """Readings in [start, end): raw, or one row per interval `every` (e.g. '1min') with `agg`."""
        ...

    def latest(self, *, machines: Sequence[str] | None = None, sensors: Sequence[str] | None = None,
               run: str | None = None) -> pd.DataFrame:
        """The newest reading of every series."""
        ...

    def series(self, run: str | None = None) -> pd.DataFrame:
        """Every series (run, machine, station, sensor, unit) known to the store."""
        ...

    def states(self, run: str | None = None) -> pd.DataFrame:
        """Machine state changes (STATE_COLUMNS), in time order per run, replication and machine."""
        ...

    def count(self, run: str | None = None) -> int:
        """How many readings are stored."""
        ...

    def close(self) -> None: ...


def check_agg(agg: str) -> str:
    if agg not in AGGREGATES:
        raise StoreError(f"aggregate {agg!r} is not one of {', '.join(AGGREGATES)}")
    return agg
