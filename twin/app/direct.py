"""A run straight into the store, with no bus in between (`twin run --no-stream`, training data, long runs).

Readings stay in columns from the sensor bank to the store: the bank's integer series ids, epoch
milliseconds and values, appended in large batches. Also what every run reports (`StreamStats`) and
how a run is named.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from sensors.bank import Readings, sensor_catalog
from sensors.bus.payloads import epoch_ms
from sensors.inject import Injection
from sensors.store import Store, StoreError, open_store
from sensors.store.base import SERIES_COLUMNS, ReadingBatch
from twin.app.runner import Background, PartFile, ProgressFn, run_scenario
from twin.model import Line
from twin.scenario import Scenario
from twin.truth import ProductFollower, StateFollower

if TYPE_CHECKING:
    from twin.app.cluster import Tasks


# State changes per insert when no readings come to carry them (a line without sensors). Every insert has a fixed
# cost (26,000 changes took DuckDB 15 ms, 250,000 took 40 ms), and DuckDB holds an insert's rows uncompressed until it
# commits: 250,000 changes at once raised a 30-day body_shop run's peak memory from 335 to 394 MB. From a row group's
# worth (122,880 rows) DuckDB writes them into its file at once, not first into its log and again at the next
# checkpoint: merging 20 serial-5 parts cost the store writer 0.31 s of CPU at 131,072 a batch, 0.43 s at 50,000; the
# 30-day body_shop run peaked at 332-334 MB (3 runs).
STATE_BATCH = 131_072


@dataclass
class StreamStats:
    """What a streamed run moved: readings generated and stored, messages, rejects, broker used."""

    run_id: str
    broker: str
    store: str
    readings: int = 0
    stored: int = 0
    messages: int = 0
    spilled: int = 0
    rejected: int = 0
    complete: bool = False
    held_s: float = 0.0  # wall seconds the simulation waited for the run's ingest (flow control)
    max_lead: int = 0  # the most messages published and not yet taken by the ingest, seen after a chunk
    notes: list[str] = field(default_factory=list)


def now_ms() -> dt.datetime:
    """UTC now to the millisecond, naive (as scenario start times are)."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000, tzinfo=None)


def run_id_for(scenario: Scenario, now: dt.datetime) -> str:
    return f"{scenario.line.name}-{now:%Y%m%dT%H%M%S}-{scenario.seed}"


class StoreSink:
    """Writes a run's readings, states and sensor catalogue straight into a store (no bus in between).

    Readings stay in columns (the bank's series ids, epoch milliseconds) and reach the store in batches of
    `batch` rows, written on a thread of their own while the simulation goes on; at most one batch is in
    flight, so memory is bounded by the batch, not by the run. `close()` writes the rest."""

    def __init__(self, store: Store, run_id: str, start_ms: int, batch: int = 250_000) -> None:
        self.store, self.run_id, self.start_ms, self.batch = store, run_id, start_ms, batch
        self.written = 0
        self._parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # replication, series, ts, value
        self._states: list[pa.Table] = []  # STATE_COLUMNS, handed over with readings or STATE_BATCH at a time
        self._state_rows = 0
        self._levels: list[tuple[int, str, int, int]] = []  # replication, station, epoch ms, parts waiting
        self._pending_rows = 0
        self._catalog: pd.DataFrame | None = None
        self._follower = StateFollower()
        self._products: list[tuple[int, str, int, str]] = []  # replication, machine, epoch ms, the product it is on
        self._product_follower = ProductFollower()
        self._background = Background("store-writer")

    def on_readings(self, line: Line, batch: Readings) -> None:
        if self._catalog is None:
            self._catalog = sensor_catalog(line).reset_index(drop=True).assign(run=self.run_id)
        if len(batch):
            self._parts.append((line.replication, batch.series, self._ms(batch.t), batch.value))
            self._pending_rows += len(batch)
        for m, t, states, reasons in self._follower.new(line):
            self._add_states(line.replication, pa.repeat(m.name, len(t)), t, pa.array(states, pa.string()),
                             pa.array(reasons, pa.string()))
        now = self.start_ms + round(line.env.now * 1000)
        self._levels += [(line.replication, name, now, level) for name, level in line.buffer_levels().items()]
        self._products += [(line.replication, m.name, self.start_ms + round(t * 1000), product)
                           for m, t, product in self._product_follower.new(line)]
        self.flush()

    def merge_part(self, part: Path) -> None:
        """Take one replication's part folder (from a worker: `runner.replication_part`) in row groups."""
        if self._catalog is None and (part / "sensors.parquet").exists():
            self._catalog = pd.read_parquet(part / "sensors.parquet").assign(run=self.run_id)
        if (part / "readings.arrow").exists():
            with PartFile(part / "readings.arrow") as source:
                for b in source.iter_batches(batch_size=1 << 19, columns=["replication", "series", "t", "value"]):
                    rep, series, t, value = (b.column(i).to_numpy() for i in range(4))
                    self._parts.append((int(rep[0]) if len(rep) else 0, series, self._ms(t), value))
                    self._pending_rows += len(t)
                    self.flush()
        if (part / "products.arrow").exists():  # what its machines were set up for (`truth.ProductFollower`)
            with PartFile(part / "products.arrow") as source:
                for b in source.iter_batches(batch_size=1 << 18):
                    self._products += zip(b.column("replication").to_pylist(), b.column("machine").to_pylist(),
                                          (self.start_ms + b.column("ms").to_numpy()).tolist(),
                                          b.column("product").to_pylist())
        if (part / "levels.arrow").exists():  # the buffers' levels at each step of the worker's simulation
            with PartFile(part / "levels.arrow") as source:
                for b in source.iter_batches(batch_size=1 << 18):
                    ms = self.start_ms + b.column("ms").to_numpy()
                    self._levels += zip(b.column("replication").to_pylist(), b.column("station").to_pylist(),
                                        ms.tolist(), b.column("level").to_pylist())
                    self.flush()
        # state changes in time order (`runner.state_changes`), a batch at a time: a 7-day bottling replication
        # has 2.8 million, which as one frame of Python strings held 0.5 GB
        with PartFile(part / "state-changes.arrow") as source:
            for b in source.iter_batches(batch_size=1 << 18):
                self._add_states(b.column("replication"), b.column("machine"), b.column("t").to_numpy(),
                                 b.column("state"), b.column("reason"))
                self.flush()

    def _add_states(self, replication: int | pa.Array, machine: pa.Array, t: np.ndarray, state: pa.Array,
                    reason: pa.Array) -> None:
        n = len(t)
        reps = pa.repeat(pa.scalar(replication, pa.int32()), n) if isinstance(replication, int) \
            else replication.cast(pa.int32())
        self._states.append(pa.table({
            "run": pa.repeat(self.run_id, n), "replication": reps, "machine": machine.cast(pa.string()),
            "ts": pa.array(self._ms(t), pa.timestamp("ms")), "state": state.cast(pa.string()),
            "reason": reason.cast(pa.string())}))
        self._state_rows += n

    def _ms(self, t: np.ndarray) -> np.ndarray:
        return self.start_ms + np.rint(t * 1000).astype(np.int64)

    def flush(self, whole: bool = False) -> None:
        """Hand readings over to the writer thread once `batch` of them have come, state changes with them or once
        STATE_BATCH have come without readings (a line without sensors), everything buffered with `whole`."""
        readings = states = None
        if self._parts and self._catalog is not None and (whole or self._pending_rows >= self.batch):
            reps, series, ts, values = zip(*self._parts)
            sizes = [len(x) for x in ts]
            readings = ReadingBatch(self._catalog[list(SERIES_COLUMNS)], np.concatenate(series),
                                    np.repeat(np.asarray(reps, dtype=np.int32), sizes), np.concatenate(ts),
                                    np.concatenate(values))
            self._parts, self._pending_rows = [], 0
        if self._states and (whole or readings is not None or self._state_rows >= STATE_BATCH):
            states = pa.concat_tables(self._states).combine_chunks()
            self._states, self._state_rows = [], 0
        levels = products = None
        if self._levels and (whole or len(self._levels) >= self.batch or readings is not None or states is not None):
            levels = pd.DataFrame(self._levels, columns=["replication", "station", "ts", "level"]).assign(
                run=self.run_id, ts=lambda d: pd.to_datetime(d.ts, unit="ms"))
            self._levels = []
        if self._products and (whole or readings is not None or states is not None or levels is not None):
            products = pd.DataFrame(self._products, columns=["replication", "machine", "ts", "product"]).assign(
                run=self.run_id, ts=lambda d: pd.to_datetime(d.ts, unit="ms"))
            self._products = []
        if readings is not None or states is not None or levels is not None or products is not None:
            self.written += self._background.submit(self._write, readings, states, levels, products) or 0

    def _write(self, readings: ReadingBatch | None, states: pa.Table | None,
               levels: pd.DataFrame | None = None, products: pd.DataFrame | None = None) -> int:
        with self.store.together():
            stored = self.store.append(readings) if readings is not None else 0
            if states is not None:
                self.store.write_states(states)
            if levels is not None:
                self.store.write_levels(levels)
            if products is not None:
                self.store.write_products(products)
        return stored

    def close(self) -> None:
        """Write everything still buffered and wait for it."""
        try:
            self.flush(whole=True)
        finally:
            self.written += self._background.close() or 0


def count_stored(store: Store, run: str, written: int) -> int:
    """The store's count of a run's readings; where the store cannot count (a line-protocol server without Flux,
    such as VictoriaMetrics, answers the query with an error), `written`, the writer's own count, stands."""
    try:
        return store.count(run)
    except StoreError:
        return written


def store_scenario(scenario: Scenario, out: Path, *, store_url: str | None = None,
                   progress: ProgressFn | None = None, inject: Injection | None = None,
                   tasks: Tasks | None = None) -> tuple[pd.DataFrame, pd.DataFrame, StreamStats]:
    """Run a scenario flat out, writing readings straight into the store; returns KPI summary, KPIs, stats.
    With `tasks` (worker processes or a cluster), replications run side by side."""
    run_id = run_id_for(scenario, now_ms())
    start_ms = epoch_ms(scenario.start)
    store_url = store_url or f"duckdb:///{(out / 'twin.duckdb').resolve()}"
    store = open_store(store_url)
    try:
        sink = StoreSink(store, run_id, start_ms)
        summary, kpis = run_scenario(scenario, out, progress, on_readings=sink.on_readings, on_part=sink.merge_part,
                                     finish=sink.close, extra={"run_id": run_id, "store": store_url}, inject=inject,
                                     tasks=tasks)
        stats = StreamStats(run_id, "", store_url, readings=sink.written,
                            stored=count_stored(store, run_id, sink.written), complete=True)
    finally:
        store.close()
    return summary, kpis, stats
