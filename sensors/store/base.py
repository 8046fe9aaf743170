"""What every store backend offers, and `open_store(url)` to get one.

The hot path hands readings over in columns (`ReadingBatch`: integer series ids, epoch milliseconds,
values; no Python object per reading). Idempotence comes from message identity: a batch may name the
message each row came in, and a message already stored is dropped whole, so an MQTT redelivery is
stored once without a per-row key check. `write(frame)` (READING_COLUMNS, strings) is the convenient
path for small batches: there a reading is identified by (run, replication, machine, sensor, ts), and
writing the same reading twice stores it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from twin.counters import counter_steps

READING_COLUMNS = ["run", "replication", "machine", "sensor", "ts", "value"]
STATE_COLUMNS = ["run", "replication", "machine", "ts", "state", "reason"]  # reason: a stop's downtime reason
SERIES_COLUMNS = ["run", "machine", "station", "sensor", "unit"]
LEVEL_COLUMNS = ["run", "replication", "station", "ts", "level"]  # parts waiting in front of a station
PRODUCT_COLUMNS = ["run", "replication", "machine", "ts", "product"]  # the product a machine is set up for
AGGREGATES = ("mean", "min", "max", "last", "count")


@dataclass
class ReadingBatch:
    """Readings in columns. `series` indexes the rows of `catalog` (SERIES_COLUMNS: run, machine, station,
    sensor, unit), `ts_ms` is epoch milliseconds (UTC). With `message_keys`, rows come grouped by message:
    message i has `message_sizes[i]` rows and identity `message_keys[i]` (a hash of its bytes)."""

    catalog: pd.DataFrame
    series: np.ndarray  # int32, a row of catalog
    replication: np.ndarray  # int32
    ts_ms: np.ndarray  # int64
    value: np.ndarray  # float64
    message_keys: np.ndarray | None = None  # int64 per message
    message_sizes: np.ndarray | None = None  # int64 per message, summing to the rows

    def __len__(self) -> int:
        return len(self.ts_ms)

    def frame(self) -> pd.DataFrame:
        """The rows as READING_COLUMNS (strings per row: for backends without a columnar path)."""
        cat = self.catalog
        return pd.DataFrame({
            "run": cat["run"].to_numpy(dtype=object)[self.series],
            "replication": self.replication,
            "machine": cat["machine"].to_numpy(dtype=object)[self.series],
            "sensor": cat["sensor"].to_numpy(dtype=object)[self.series],
            "ts": pd.to_datetime(self.ts_ms, unit="ms"),
            "value": self.value})


class StoreError(Exception):
    """A store that cannot be opened or used; the message says what to fix."""


class Store(Protocol):
    """Write batches; query ranges raw or aggregated per interval; latest values; list series."""

    url: str

    def write(self, readings: pd.DataFrame) -> int:
        """Store readings (READING_COLUMNS); a reading already stored is ignored. Returns rows given."""
        ...

    def append(self, batch: ReadingBatch) -> int:
        """Store readings given in columns (the hot path); the rows of a message already stored are dropped.
        Returns the rows stored."""
        ...

    def write_states(self, states: pd.DataFrame | pa.Table) -> None:
        """Store machine state changes (STATE_COLUMNS; without a reason column, none is known); a run's own
        writer hands them over as an Arrow table, with no Python object per change."""
        ...

    def write_levels(self, levels: pd.DataFrame | pa.Table) -> None:
        """Store buffer levels (LEVEL_COLUMNS): the parts waiting in front of each station, over time."""
        ...

    def write_products(self, products: pd.DataFrame | pa.Table) -> None:
        """Store the product each machine is set up for from a time on (PRODUCT_COLUMNS): a mixed line's changes."""
        ...

    def together(self) -> AbstractContextManager[None]:
        """The writes made inside it (readings, states, levels) are kept together: all or none, and with one commit
        where the store commits (DuckDB: one transaction, so one sync of its log for a batch's three kinds of rows)."""
        ...

    def write_series(self, series: pd.DataFrame) -> None:
        """Store the sensor catalogue (SERIES_COLUMNS): which machine has which sensor, in which unit."""
        ...

    def query(self, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None, *,
              machines: Sequence[str] | None = None, sensors: Sequence[str] | None = None,
              run: str | None = None, every: str | None = None, agg: str = "mean",
              replications: Sequence[int] | None = None, also: Sequence[str] = ()) -> pd.DataFrame:
        """Readings in [start, end): raw, or one row per interval `every` (e.g. '1min') with `agg`; of the given
        `replications` only (a dashboard showing one of a run's replications does not read the others). `also`: more
        aggregates of each interval, a column each named by it (a chart's min and max beside its mean, read in the
        same pass instead of one query each)."""
        ...

    def latest(self, *, machines: Sequence[str] | None = None, sensors: Sequence[str] | None = None,
               run: str | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
        """The newest reading of every series (before `end`: a counter's value as a time range opens)."""
        ...

    def series(self, run: str | None = None) -> pd.DataFrame:
        """Every series (run, machine, station, sensor, unit) known to the store."""
        ...

    def states(self, run: str | None = None, *, replication: int | None = None, start: pd.Timestamp | None = None,
               end: pd.Timestamp | None = None, last: bool = False) -> pd.DataFrame:
        """Machine state changes (STATE_COLUMNS) in [start, end), in time order per run, replication and machine;
        `last`: only each machine's last one there (its state at `end`), so that a dashboard or a what-if reads a
        line's state without reading its history."""
        ...

    def levels(self, run: str | None = None, *, replication: int | None = None, start: pd.Timestamp | None = None,
               end: pd.Timestamp | None = None, last: bool = False) -> pd.DataFrame:
        """Buffer levels (LEVEL_COLUMNS) in [start, end), in time order per run, replication and station; `last`:
        only each station's last one there."""
        ...

    def products(self, run: str | None = None, *, replication: int | None = None, start: pd.Timestamp | None = None,
                 end: pd.Timestamp | None = None, last: bool = False) -> pd.DataFrame:
        """The products machines were set up for (PRODUCT_COLUMNS) in [start, end), in time order per run,
        replication and machine; `last`: only each machine's last one there (what it is set up for at `end`)."""
        ...

    def count(self, run: str | None = None) -> int:
        """How many readings are stored."""
        ...

    def refused(self, error: Exception) -> bool:
        """Whether a failed write was refused for what it holds (the message is poison: dead-letter it), not because
        the store is away, busy or full (the message waits)."""
        ...

    def ping(self) -> bool:
        """Whether the store answers now (told apart from refusing a write: an outage waits, a refusal does not)."""
        ...

    def close(self) -> None: ...


def part_times(readings: pd.DataFrame, spread: bool = False) -> pd.DataFrame:
    """Part counters' readings (`counter_steps`) as one row per part counted (machine, sensor, ts: the reading that
    counted it), in the counters' order; `spread`: the parts of a reading evenly over the time since the one before
    it (an output per hour from a counter read every half hour), the last at the reading."""
    steps = counter_steps(readings)
    n = steps.value.round().astype(int).clip(lower=0).to_numpy()
    out = pd.DataFrame({col: np.repeat(steps[col].to_numpy(), n) for col in ("machine", "sensor", "ts")})
    if spread and len(out):
        prev = steps.groupby(["machine", "sensor"], sort=False).ts.shift(1).fillna(steps.ts).to_numpy()
        k = np.arange(len(out)) - np.repeat(np.cumsum(n) - n, n)  # a part's place among its reading's
        share = (k + 1) / np.repeat(np.maximum(n, 1), n)
        gap = np.repeat(steps.ts.to_numpy() - prev, n)
        out["ts"] = np.repeat(prev, n) + (gap * share).astype(gap.dtype)
    return out


def check_agg(agg: str) -> str:
    if agg not in AGGREGATES:
        raise StoreError(f"aggregate {agg!r} is not one of {', '.join(AGGREGATES)}")
    return agg


def check_also(every: str | None, also: Sequence[str]) -> list[str]:
    """A query's further aggregates (`also`), checked: known ones, and only for a query per interval."""
    if also and every is None:
        raise StoreError("further aggregates (also=...) need an interval (every=...): raw readings have none")
    return [check_agg(a) for a in also]


def rows_table(rows: pd.DataFrame | pa.Table, columns: Sequence[str]) -> pa.Table:
    """State changes or levels (given as a frame or as Arrow) as an Arrow table of exactly `columns`, in order; a
    missing or null `reason` is '' (no downtime reason known)."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows, preserve_index=False)
    n = table.num_rows
    out = {}
    for name in columns:
        col = table.column(name) if name in table.column_names else pa.nulls(n, pa.string())
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if name == "reason":
            col = pc.fill_null(col.cast(pa.string()), "")
        out[name] = col
    return pa.table(out)
